"""Heartbeats and recovery: this runner says it lives, and gives back the work of runners that died.

Every ``HEARTBEAT`` seconds the runner measures its clock's offset from the database's, updates its row
and recovers runners silent for over ``HEARTBEAT_TIMEOUT`` (both by the database's clock). A runner
others presumed dead (it was paused too long) signs in again. While the database is unreachable nobody
can heartbeat, so nobody is presumed dead until this runner has been back long enough for the others to
sign in again too.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from .. import dbclock, events
from ..lifecycle import recover_stale
from ..runnerprocess import RunnerProcess

logger = logging.getLogger("conductor.runner")


def elapsed_clock() -> float:
    """Seconds on a clock that runs while the process is stopped and the machine suspended, and that
    no one sets: CLOCK_BOOTTIME where there is one (Linux), else the monotonic clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


class Heartbeats:
    def __init__(self, settings: Any, worker_id: str, publish: Callable[..., None], retry_max: float) -> None:
        self.interval = settings.HEARTBEAT
        self.timeout = settings.HEARTBEAT_TIMEOUT
        self.skew_warning = settings.CLOCK_SKEW_WARNING
        self.worker_id = worker_id
        self.publish = publish
        self.retry_max = retry_max  # the longest another runner may wait between tries of the database
        self.next_at = 0.0
        self.recover_not_before = 0.0
        self.offset = 0.0  # the database's clock minus this process's, in seconds
        self.skewed = False
        self.sent_at = elapsed_clock()  # when the last heartbeat that got through was sent

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def signed_in(self, sent_at: float) -> None:
        """Signing in wrote the first heartbeat; it was sent at ``sent_at`` (``elapsed_clock()``)."""
        self.sent_at = sent_at

    def lapsed(self) -> bool:
        """Whether others may be presuming this runner dead by now: its last heartbeat that got through
        was sent more than ``HEARTBEAT_TIMEOUT`` minus one heartbeat ago.

        Counted from before it was sent, on a clock that runs while the process is stopped: never less
        than the database's own count from the heartbeat it recorded. One heartbeat early, since a
        runner that recovers it may be about to.
        """
        return elapsed_clock() - self.sent_at > self.timeout - self.interval

    def beat(
        self,
        record: RunnerProcess,
        threads_state: list[dict],
        threads: int,
        now: float,
        events_dropped: int = 0,
    ) -> None:
        """Heartbeat (signing in again if presumed dead), then recover the runners that died.

        ``events_dropped``: live events this process has dropped so far, recorded for /metrics."""
        self.next_at = now + self.interval
        sent_at = elapsed_clock()
        self.measure_clock()
        if not record.heartbeat(threads_state, self.offset, events_dropped):
            logger.error(
                "Runner %s was presumed dead by others (heartbeat older than %s s); its runs were "
                "recovered and their late results will be refused. Signing in again.",
                self.worker_id,
                self.timeout,
            )
            self.publish(events.RUNNER_PRESUMED_DEAD)
            record.revive()
        self.sent_at = sent_at
        self.recover_dead(record)
        # The offset too: pages show it live, not only when it first passes the warning (runner.clock_skew).
        self.publish(
            events.RUNNER_HEARTBEAT, busy=len(threads_state), threads=threads, clock_offset=self.offset
        )

    def measure_clock(self) -> None:
        """Measure this process's clock against the database's; warn once when it drifts past the limit."""
        self.offset = dbclock.measure_offset()
        events.set_clock_offset(self.offset)  # this process's events are timed by the database's clock
        skewed = abs(self.offset) > self.skew_warning
        if skewed and not self.skewed:
            direction = "behind" if self.offset > 0 else "ahead of"
            logger.warning(
                "Runner %s: this machine's clock is %.1f s %s the database's (CLOCK_SKEW_WARNING is %s s). "
                "Conductor times everything by the database's clock, so tasks are safe; fix this host's NTP.",
                self.worker_id, abs(self.offset), direction, self.skew_warning,
            )  # fmt: skip
            self.publish(events.RUNNER_CLOCK_SKEW, offset=self.offset, limit=self.skew_warning)
        elif self.skewed and not skewed:
            logger.info("Runner %s: clock within %s s of the database's again (%.3f s)",
                        self.worker_id, self.skew_warning, self.offset)  # fmt: skip
        self.skewed = skewed

    def local_deadline(self, at: Any) -> float:
        """Seconds until the database's clock shows ``at``, by the offset measured at the last heartbeat."""
        return dbclock.local_deadline(at, self.offset)

    def recover_dead(self, record: RunnerProcess) -> None:
        if time.monotonic() < self.recover_not_before:
            return
        for dead, reason, run_ids in recover_stale(self.timeout, by=record):
            logger.warning("%s: %d runs interrupted and due again", reason, len(run_ids))
            self.publish(events.RUNS_RECOVERED, dead_runner=dead.worker_id, runs=run_ids)

    def database_lost(self) -> None:
        """Others cannot heartbeat either: presume no one dead until this runner is back."""
        self.recover_not_before = float("inf")

    def database_back(self, now: float) -> None:
        """Heartbeat at once; give the others a full backoff to sign in before any is presumed dead, or
        their running tasks would be run a second time."""
        self.recover_not_before = now + max(self.timeout, self.retry_max + self.interval)
        self.next_at = 0.0
