"""Policing time limits: kill_time, the grace of a cancel, the grace of a stop, and overruns.

The runner interrupts a thread by raising an exception in it (``app/interrupts.py``), at most once per
run. A thread blocked in C does not notice: ``interrupt_wait`` seconds after its interrupt it is an
overrun, recorded timed out (when it passed its kill_time) while it keeps its slot until it returns.
"""

import logging
from collections.abc import Iterable

from ..debugging import is_debugging
from ..execution import RunCancelled, RunInterrupted, TimeLimitExceeded
from ..status import RunStatus
from .activerun import ActiveRun

logger = logging.getLogger("conductor.runner")
NEVER = float("inf")


class TimeLimits:
    def __init__(self, interrupt_wait: float, cancel_grace: float) -> None:
        self.interrupt_wait = interrupt_wait
        self.cancel_grace = cancel_grace
        self.stop_deadline: float | None = None  # when a stopping runner's grace ends
        self.grace_interrupt_at: float | None = None  # when everything left was interrupted
        self.overruns: list[ActiveRun] = []  # timed out by kill_time, not yet recorded so

    @property
    def interrupting_all(self) -> bool:
        """The grace of a stop is over (or a second stop came): nothing more starts."""
        return self.grace_interrupt_at is not None

    def next_check(self, active: ActiveRun) -> float:
        """When ``active`` next needs looking at (monotonic)."""
        if active.cancel_deadline is not None:
            return active.cancel_deadline
        if active.overrunning:
            return NEVER
        if active.interrupted_at is not None:
            return active.interrupted_at + self.interrupt_wait
        return active.deadline if active.deadline is not None else NEVER

    def wake_at(self, actives: Iterable[ActiveRun]) -> list[float]:
        """Every moment a limit falls due."""
        moments = [self.next_check(active) for active in actives]
        if self.stop_deadline is not None:
            moments.append(self.stop_deadline)
        if self.grace_interrupt_at is not None:
            moments.append(self.grace_interrupt_at + self.interrupt_wait)
        return moments

    def police(self, actives: Iterable[ActiveRun], now: float) -> None:
        """Interrupt what passed its limit; note overruns; after a stop's grace, interrupt everything."""
        actives = list(actives)
        for active in actives:
            if active.cancel_deadline is not None and now >= active.cancel_deadline:
                active.cancel_deadline = None
                self.interrupt(active, RunCancelled, now)
            if active.interrupted_at is None:
                if active.deadline is not None and now >= active.deadline:
                    self._on_kill_time(active, now)
            elif not active.overrunning and now >= active.interrupted_at + self.interrupt_wait:
                self._overran(active)
        if self.stop_deadline is not None and now >= self.stop_deadline and not self.interrupting_all:
            self.interrupt_all(actives, RunInterrupted, now)

    def cancel(self, active: ActiveRun, now: float) -> bool:
        """Ask the run to stop, and interrupt it if it has not ended ``cancel_grace`` seconds later.
        False when it was cancelled already."""
        if active.context.cancelled:
            return False
        active.context.request_stop(cancel=True)
        active.cancel_deadline = now + self.cancel_grace
        return True

    def start_grace(self, actives: Iterable[ActiveRun], grace: float, now: float) -> None:
        """A stop: running tasks are asked to stop and get ``grace`` seconds to finish."""
        self.stop_deadline = now + grace
        for active in actives:
            active.context.request_stop()

    def grace_expired(self, now: float) -> bool:
        """Everything was interrupted, and what did not end has had its ``interrupt_wait``."""
        return self.interrupting_all and now >= self.grace_interrupt_at + self.interrupt_wait

    def interrupt_all(self, actives: Iterable[ActiveRun], exc_type: type[BaseException], now: float) -> None:
        self.grace_interrupt_at = now
        for active in actives:
            if active.interrupted_at is None:
                self.interrupt(active, exc_type, now)

    def interrupt(self, active: ActiveRun, exc_type: type[BaseException], now: float) -> None:
        active.interrupted_at = now
        if active.context.interrupts.send(exc_type, active.thread.interrupt):
            logger.info("Interrupting %s (%s)", active.thread.name, exc_type.__name__)

    def _on_kill_time(self, active: ActiveRun, now: float) -> None:
        if not is_debugging(active.thread.ident):
            self.interrupt(active, TimeLimitExceeded, now)
            return
        # Its function has already failed; kill_time limits the function, not the person at its debugger.
        active.deadline = None
        logger.info("Task %s (run %s) is at its debugger past kill_time=%s s: kill_time lifted for this run",
                    active.task.name, active.run.pk, active.task.kill_time)  # fmt: skip

    def _overran(self, active: ActiveRun) -> None:
        """A thread that did not end when interrupted (blocked in C): timed out, still holding its slot."""
        if not active.thread.is_alive():
            return  # it has just ended; its outcome is on the way
        active.overrunning = True
        if active.deadline is None:
            return  # interrupted for a stop or a cancel, not for time: the run's end records it
        active.run.status = RunStatus.TIMED_OUT
        self.overruns.append(active)  # recorded with the books, when the database answers
