"""The run loop behind ``manage.py runtasks``.

One main thread owns all bookkeeping: it claims due tasks, hands each run to a worker thread (a pool of
New_Threads, app/workers.py), records every outcome (in batches, one transaction each), enforces
kill_time, heartbeats and recovers the work of dead runners. Task threads only run functions and hand
their outcome back through a queue, so database writes for bookkeeping never race each other. The main
thread sleeps on that queue: a finishing task, a stop request or the next deadline wakes it, and an
idle runner costs next to no CPU.
"""

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import DatabaseError, connections
from django.utils import timezone

from . import conf, events
from .activerun import ActiveRun
from .backoff import Backoff, one_line
from .context import TaskContext
from .debugging import is_debugging
from .execution import RunCancelled, RunInterrupted, TimeLimitExceeded, execute
from .lifecycle import Claimer, Outcome, finish_many, give_back, mark_overrunning, recover_stale, sign_in
from .runnerprocess import RunnerProcess
from .status import Isolation, RunnerState, RunStatus
from .task import Task
from .taskrun import TaskRun
from .wakeup import SqliteWatcher, watcher_for_default_database
from .workers import Job, WorkerPool

logger = logging.getLogger("conductor.runner")
#: Longest wait between two tries to reach a database that went away, in seconds.
DATABASE_RETRY_MAX = 30.0
#: Characters of a running task's output sent with its stack, so a page that opens late sees them.
STACK_LOG_TAIL = 20000

#: While recent runs are shorter than PREFETCH_MAX_RUN seconds (on average), claim up to this many runs per
#: thread ahead of free threads: a drain of short tasks then costs one claim per batch, not one per run.
#: Longer tasks are never claimed ahead, so they are never held back from other runners.
PREFETCH_PER_THREAD = 4
PREFETCH_MAX_RUN = 0.02
#: Outcomes are recorded in batches, one transaction (and commit) each: they wait until RECORD_BATCH are in
#: hand, nothing else runs, or the first has waited RECORD_DELAY seconds (too short for anyone to notice).
RECORD_BATCH = 64
RECORD_DELAY = 0.005

STATUS_EVENTS = {
    RunStatus.CANCELLED: events.TASK_CANCELLED,
    RunStatus.FINISHED: events.TASK_FINISHED,
    RunStatus.FAILED: events.TASK_FAILED,
    RunStatus.TIMED_OUT: events.TASK_TIMED_OUT,
    RunStatus.INTERRUPTED: events.TASK_INTERRUPTED,
}


class CommandChannel(Protocol):
    """Where dashboards' commands come from and replies go (``app.bridge.ChannelBridge``, given by
    ``runtasks``): the runner knows the web side only through this."""

    on_health: Callable[[str], None] | None

    def listen_as_runner(self, worker_id: str, on_message: Callable[[dict], None]) -> None: ...

    def send(self, channel: str, message: dict) -> None: ...

    def stop_listening(self) -> None: ...


@dataclass
class RunnerOptions:
    threads: int = field(default_factory=lambda: conf.get().THREADS)
    poll: float = field(default_factory=lambda: conf.get().POLL)
    grace: float = field(default_factory=lambda: conf.get().GRACE)
    once: bool = False
    max_tasks: int | None = None
    worker_id: str | None = None
    queues: list[str] | None = None  # None: every queue


class Runner:
    def __init__(self, options: RunnerOptions | None = None, bridge: "CommandChannel | None" = None) -> None:
        self.options = options or RunnerOptions()
        self.bridge = bridge
        self.settings = conf.get()
        self.worker_id = self.options.worker_id or RunnerProcess.default_worker_id()
        self.record: RunnerProcess | None = None
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pool: WorkerPool | None = None
        self._active: dict[int, ActiveRun] = {}
        self._backlog: collections.deque[tuple[Task, TaskRun]] = collections.deque()  # claimed ahead
        self._recent_run: float | None = None  # moving average of run durations, seconds
        self._unrecorded: list[tuple[TaskRun, Outcome]] = []
        self._record_by = 0.0  # monotonic time by which the waiting outcomes are recorded
        self._claimed = 0
        self._recorded = 0
        self._stop_requests = 0
        self._stop_deadline: float | None = None
        self._grace_interrupt_at: float | None = None
        self._next_poll = 0.0
        self._next_heartbeat = 0.0
        self._next_due: float | None = None
        self._nothing_due = False
        self._once_cutoff: datetime | None = None
        self._watcher: SqliteWatcher | None = None
        self._wake_pending = False
        # Every step that touches the database waits for this after a failure (claims, recording,
        # heartbeats, recovery), so an outage costs one try per step of the backoff, not one per loop.
        first_retry = min(self.options.poll, DATABASE_RETRY_MAX)
        self._database = Backoff(first_retry, DATABASE_RETRY_MAX, f"Runner {self.worker_id}", "the database",
                                 logger)  # fmt: skip
        self._overruns_unrecorded: list[ActiveRun] = []
        self._stopping_recorded = False
        self._layer_problem = ""
        self._recover_not_before = 0.0
        self.up = threading.Event()  # set once registered: tests and --serve wait on it

    # Public API -------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or, with once/max_tasks, until done). Returns the exit code."""
        self.record = sign_in(self.worker_id, self.options.threads)
        self._once_cutoff = timezone.now() if self.options.once else None
        self._claimer = Claimer(self.record, self.options.queues, due_by=self._once_cutoff)
        self._recover_stale()
        self._pool = WorkerPool(self.options.threads, self._report_done)
        self._watcher = watcher_for_default_database(
            self._wake, wanted=self._wake_wanted, reconnected=self._database_answers
        )
        if self.bridge is not None:
            self.bridge.on_health = lambda problem: self._inbox.put(("layer", problem))
            self.bridge.listen_as_runner(
                self.worker_id, lambda message: self._inbox.put(("command", message))
            )
        self.up.set()
        self._publish(events.RUNNER_UP, threads=self.options.threads, pid=self.record.pid)
        logger.info(
            "Runner %s up: %d threads, poll every %s s, queues: %s",
            self.worker_id,
            self.options.threads,
            self.options.poll,
            ", ".join(self.options.queues) if self.options.queues else "all",
        )
        try:
            while not self._done():
                self._step()
        finally:
            self._shut_down()
        return 1 if self._stop_requests > 1 else 0

    def stop(self) -> None:
        """First call: stop claiming and let running tasks finish within grace. Second: stop now.

        Safe to call from a signal handler or any thread (SimpleQueue.put is reentrant).
        """
        self._inbox.put(("stop", None))

    def _wake(self) -> None:
        """Another process committed: look for due tasks now (one pending wake-up is enough)."""
        if not self._wake_pending:
            self._wake_pending = True
            self._inbox.put(("wake", None))

    def _database_answers(self) -> None:
        """From the watcher's thread: its own connection got through, so the next try need not wait."""
        self._inbox.put(("database answers", None))

    def _wake_wanted(self) -> bool:
        """False while this runner will look at the database anyway (the watcher's gate, from its thread).

        A pending wake-up makes another useless, and so do busy threads: the next run to end frees one,
        and the runner claims then, seeing every commit made before.
        """
        return not (self._wake_pending or len(self._active) >= self.options.threads)

    @property
    def busy(self) -> int:
        return len(self._active)

    # The loop ---------------------------------------------------------------------------------

    def _step(self) -> None:
        self._handle(self._receive(self._wait_time()))
        self._start_backlog()  # free threads get work before the bookkeeping below
        now = time.monotonic()
        self._police(now)
        self._start_backlog()  # policing collects runs that ended meanwhile: their threads are free
        if self._database.ready(now):
            self._keep_books(now)

    def _keep_books(self, now: float) -> None:
        """Everything that touches the database; a database error ends it until the backoff's next try."""
        retrying = self._database.failing
        try:
            self._record_degraded()
            self._record_overruns()
            if self._stop_requests and not self._stopping_recorded:
                self.record.set_state(RunnerState.STOPPING)
                self._stopping_recorded = True
            if self._should_record(now) or retrying:
                self._record_outcomes()
            if now >= self._next_heartbeat or retrying:  # a retry always asks the database something
                self._heartbeat(now)
            if not self._stop_requests:
                self._claim(now)
        except DatabaseError as exc:
            self._on_database_error(exc)
        else:
            self._on_database_ok()

    def _handle(self, messages: list[tuple[str, Any]]) -> None:
        for kind, payload in messages:
            if kind == "done":
                self._collect(*payload)
            elif kind == "stop":
                self._on_stop()
            elif kind == "wake":
                self._wake_pending = False
            elif kind == "command":
                self._on_command(payload)
            elif kind == "layer":
                self._on_layer_health(payload)
            elif kind == "database answers":
                self._database.retry_soon(time.monotonic())

    def _on_database_error(self, exc: DatabaseError) -> None:
        """Running tasks go on; bookkeeping waits for the backoff's next try (outcomes are kept meanwhile)."""
        self._database.failed(time.monotonic(), str(exc))
        if self._database.failures == 1:
            self._publish(events.RUNNER_DEGRADED, reason=f"database unreachable: {one_line(str(exc))}")
            # Others cannot heartbeat either: presume no one dead until this runner is back (below).
            self._recover_not_before = float("inf")
        connections.close_all()  # a fresh connection next time

    def _on_database_ok(self) -> None:
        if self._database.succeeded():
            self._publish(events.RUNNER_RECOVERED)
            # Others could not heartbeat either, and their next try may be a full backoff away: give
            # them that long to sign in again before any is presumed dead, or their running tasks would
            # be run a second time.
            wait = max(self.settings.HEARTBEAT_TIMEOUT, DATABASE_RETRY_MAX + self.settings.HEARTBEAT)
            self._recover_not_before = time.monotonic() + wait
            self._next_heartbeat = 0.0

    def _on_layer_health(self, problem: str) -> None:
        """The channel layer (Redis) went away or came back: tasks go on either way, only news waits."""
        self._layer_problem = problem
        if problem:
            logger.error("Runner %s: %s; tasks go on, live state waits until it is back",
                         self.worker_id, problem)  # fmt: skip
            self._publish(events.RUNNER_DEGRADED, reason=problem)
        else:
            logger.info("Runner %s reaches the channel layer again", self.worker_id)
            self._publish(events.RUNNER_RECOVERED)

    def _record_degraded(self) -> None:
        """The database says what this runner cannot reach: dashboards read it when no news comes."""
        if self.record.degraded != self._layer_problem:
            self.record.set_degraded(self._layer_problem)

    def _receive(self, timeout: float) -> list[tuple[str, Any]]:
        try:
            messages = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                messages.append(self._inbox.get_nowait())
            except queue.Empty:
                return messages

    def _wait_time(self) -> float:
        wake_at = self._database_work_at()
        for active in self._active.values():
            wake_at.append(self._next_check(active))
        if self._stop_deadline is not None:
            wake_at.append(self._stop_deadline)
        if self._grace_interrupt_at is not None:
            wake_at.append(self._grace_interrupt_at + self.settings.INTERRUPT_WAIT)
        return max(0.0, min(wake_at) - time.monotonic())

    def _database_work_at(self) -> list[float]:
        """When the database is next wanted: the backoff's next try, while it cannot be reached."""
        if self._database.failing:
            return [self._database.retry_at]
        wake_at = [self._next_poll, self._next_heartbeat]
        if self._next_due is not None:
            wake_at.append(self._next_due)
        if self._unrecorded:
            wake_at.append(self._record_by)
        return wake_at

    def _next_check(self, active: ActiveRun) -> float:
        if active.cancel_deadline is not None:
            return active.cancel_deadline
        if active.overrunning:
            return float("inf")
        if active.interrupted_at is not None:
            return active.interrupted_at + self.settings.INTERRUPT_WAIT
        return active.deadline if active.deadline is not None else float("inf")

    def _done(self) -> bool:
        if self._stop_requests > 1:
            return True
        if self._stop_requests:
            return not (self._active or self._backlog) or self._grace_expired()
        idle = not (self._active or self._backlog or self._unrecorded)
        if self.options.max_tasks is not None and self._recorded >= self.options.max_tasks:
            return idle
        return self.options.once and self._nothing_due and idle

    def _grace_expired(self) -> bool:
        started = self._grace_interrupt_at
        return started is not None and time.monotonic() >= started + self.settings.INTERRUPT_WAIT

    # Claiming and starting --------------------------------------------------------------------

    def _capacity(self) -> int:
        free = self.options.threads - len(self._active) - len(self._backlog)
        if self._recent_run is not None and self._recent_run < PREFETCH_MAX_RUN:
            if len(self._backlog) > self.options.threads:
                return 0  # work enough queued: claim again in one larger batch, not a few at a time
            free += PREFETCH_PER_THREAD * self.options.threads
        if self.options.max_tasks is not None:
            free = min(free, self.options.max_tasks - self._claimed)
        return free

    def _claim(self, now: float) -> None:
        free = self._capacity()
        if free <= 0:
            return
        claimed = self._claimer.claim(free)
        self._backlog.extend(claimed)
        self._start_backlog()
        self._claimed += len(claimed)
        self._nothing_due = not claimed
        self._next_poll = now + self.options.poll
        self._next_due = self._when_next_due() if len(claimed) < free else None

    def _start_backlog(self) -> None:
        """Start claimed runs on free threads (none once the grace after a stop has run out)."""
        while self._backlog and len(self._active) < self.options.threads and self._grace_interrupt_at is None:
            self._start(*self._backlog.popleft())

    def _when_next_due(self) -> float | None:
        """The monotonic time the next waiting task falls due, if in the future."""
        at = self._claimer.next_due_at()
        if at is None:
            return None
        wait = (at - timezone.now()).total_seconds()
        return time.monotonic() + wait if wait > 0 else None

    def _start(self, task: Task, run: TaskRun) -> None:
        context = TaskContext(task, run.pk, attempt=task.attempts, runner=self.worker_id)
        job = Job(run.pk, f"{task.name}#{run.pk}", lambda: execute(task, context))
        thread = self._pool.take().submit(job)
        started = time.monotonic()
        # A process-isolated run enforces its own kill_time by killing its child process.
        deadline = started + task.kill_time if task.kill_time and task.isolation == Isolation.THREAD else None
        self._active[run.pk] = ActiveRun(task, run, thread, context, started, deadline)
        if not events.listening():
            return
        self._publish(events.TASK_CLAIMED, **self._describe(task, run), task_row=row_of(task))
        self._publish(
            events.THREAD_STARTED,
            **self._describe(task, run),
            thread=thread.name,
            ident=thread.ident,
            daemon=thread.daemon,
        )

    def _report_done(self, run_id: int, outcome: Outcome | None) -> None:
        """From a worker thread: the run ended (outcome None: it ended outside its task)."""
        self._inbox.put(("done", (run_id, outcome)))

    # Recording outcomes -----------------------------------------------------------------------

    def _collect(self, run_id: int, outcome: Outcome | None) -> None:
        active = self._active.pop(run_id, None)
        if active is None:
            return  # already collected as lost by _collect_dead_threads
        self._pool.give_back(active.thread.worker)
        if outcome is None:
            now = time.time()
            outcome = Outcome(RunStatus.INTERRUPTED, now, now, error="interrupted outside the task")
        if active.overrunning:
            active.run.status = RunStatus.TIMED_OUT
        if not self._unrecorded:
            self._record_by = time.monotonic() + RECORD_DELAY
        self._unrecorded.append((active.run, outcome))
        previous = self._recent_run if self._recent_run is not None else outcome.duration
        self._recent_run = 0.8 * previous + 0.2 * outcome.duration

    def _should_record(self, now: float) -> bool:
        if not self._unrecorded:
            return False
        return len(self._unrecorded) >= RECORD_BATCH or now >= self._record_by or not self._active

    def _record_outcomes(self) -> None:
        if not self._unrecorded:
            return
        batch, self._unrecorded = self._unrecorded, []
        try:
            accepted = finish_many(batch, refresh=events.listening())
        except DatabaseError:
            self._unrecorded = batch + self._unrecorded  # kept, and tried again next step
            raise
        self._recorded += len(batch)
        for (run, outcome), ok in zip(batch, accepted, strict=True):
            self._log_outcome(run, outcome, ok)
        if events.listening():
            for (run, outcome), ok in zip(batch, accepted, strict=True):
                # finish_many left each accepted run's task as the database now has it.
                self._announce(run, outcome, ok)

    def _log_outcome(self, run: TaskRun, outcome: Outcome, accepted: bool) -> None:
        if not accepted:
            logger.warning(
                "Run %s of %s ended after it was recovered elsewhere; its result was refused",
                run.pk,
                run.task.name,
            )
        elif outcome.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            logger.warning("Task %s run %s %s: %s", run.task.name, run.pk, outcome.status,
                           _last_line(outcome.error))  # fmt: skip

    def _announce(self, run: TaskRun, outcome: Outcome, accepted: bool) -> None:
        task = run.task
        described = self._describe(task, run)
        self._publish(
            events.THREAD_FINISHED,
            **described,
            thread=outcome.thread_name,
            ident=outcome.thread_ident,
        )
        if not accepted:
            self._publish(events.LATE_WRITE_REFUSED, **described)
            return
        result = {
            "status": str(outcome.status),
            "duration": outcome.duration,
            "output": outcome.output,
        }
        first_error_line = _last_line(outcome.error)
        self._publish(
            STATUS_EVENTS[outcome.status],
            **described,
            **result,
            error=first_error_line,
            task_row=row_of(task),  # finish_many left it as the database now has it
            run_row=row_of(run),
            outcome=dict(vars(outcome)),
        )
        if task.conn:
            self._publish(events.TASK_RESULT, **described, **result, conn=task.conn, error=outcome.error)

    # Limits, heartbeats, recovery -------------------------------------------------------------

    def _collect_dead_threads(self) -> None:
        """A thread that died without reporting (interrupted at the wrong moment) is not lost."""
        dead = [a for a in self._active.values() if not a.thread.is_alive()]
        if not dead:
            return
        self._drain_finished()  # a dead thread has always put its report, if it got to it
        for active in dead:
            self._collect(active.run.pk, None)

    def _police(self, now: float) -> None:
        self._collect_dead_threads()
        for active in list(self._active.values()):
            if active.cancel_deadline is not None and now >= active.cancel_deadline:
                active.cancel_deadline = None
                self._interrupt(active, RunCancelled, now)
            if active.interrupted_at is None:
                if active.deadline is not None and now >= active.deadline:
                    self._on_kill_time(active, now)
            elif not active.overrunning and now >= active.interrupted_at + self.settings.INTERRUPT_WAIT:
                self._report_overrun(active)
        grace_over = self._stop_deadline is not None and now >= self._stop_deadline
        if grace_over and self._grace_interrupt_at is None:
            self._interrupt_all(RunInterrupted, now)

    def _on_kill_time(self, active: ActiveRun, now: float) -> None:
        if not is_debugging(active.thread.ident):
            self._interrupt(active, TimeLimitExceeded, now)
            return
        # Its function has already failed; kill_time limits the function, not the person at its debugger.
        active.deadline = None
        logger.info("Task %s (run %s) is at its debugger past kill_time=%s s: kill_time lifted for this run",
                    active.task.name, active.run.pk, active.task.kill_time)  # fmt: skip

    def _interrupt(self, active: ActiveRun, exc_type: type[BaseException], now: float) -> None:
        active.interrupted_at = now
        if active.context.interrupts.send(exc_type, active.thread.interrupt):
            logger.info("Interrupting %s (%s)", active.thread.name, exc_type.__name__)

    def _interrupt_all(self, exc_type: type[BaseException], now: float) -> None:
        self._grace_interrupt_at = now
        for active in self._active.values():
            if active.interrupted_at is None:
                self._interrupt(active, exc_type, now)

    def _report_overrun(self, active: ActiveRun) -> None:
        """A thread that did not end when interrupted (blocked in C): timed out, still holding."""
        if not active.thread.is_alive():
            return  # it has just ended; its outcome is on the way
        active.overrunning = True
        if active.deadline is None:
            return  # interrupted for shutdown, not for time: shutdown records it
        active.run.status = RunStatus.TIMED_OUT
        self._overruns_unrecorded.append(active)  # recorded with the books, when the database answers

    def _record_overruns(self) -> None:
        """Record overrunning runs as timed out; only then say so (the event promises the record)."""
        while self._overruns_unrecorded:
            active = self._overruns_unrecorded[0]
            mark_overrunning(active.run)
            self._overruns_unrecorded.pop(0)
            logger.warning(
                "Task %s (run %s) passed kill_time=%s s and is blocked where it cannot be interrupted; "
                "recorded as timed out, still running, holding its slot until it returns",
                active.task.name,
                active.run.pk,
                active.task.kill_time,
            )
            self._publish(
                events.TASK_OVERRUNNING,
                **self._describe(active.task, active.run),
                thread=active.thread.name,
                elapsed=time.monotonic() - active.started,
            )

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.settings.HEARTBEAT
        if not self.record.heartbeat([active.describe() for active in self._active.values()]):
            logger.error(
                "Runner %s was presumed dead by others (heartbeat older than %s s); its runs were "
                "recovered and their late results will be refused. Signing in again.",
                self.worker_id,
                self.settings.HEARTBEAT_TIMEOUT,
            )
            self._publish(events.RUNNER_PRESUMED_DEAD)
            self.record.revive()
        self._recover_stale()
        self._publish(events.RUNNER_HEARTBEAT, busy=len(self._active), threads=self.options.threads)

    def _recover_stale(self) -> None:
        if time.monotonic() < self._recover_not_before:
            return
        for dead, reason, run_ids in recover_stale(self.settings.HEARTBEAT_TIMEOUT, by=self.record):
            logger.warning("%s: %d runs interrupted and due again", reason, len(run_ids))
            self._publish(events.RUNS_RECOVERED, dead_runner=dead.worker_id, runs=run_ids)

    # Stopping ---------------------------------------------------------------------------------

    def _on_stop(self) -> None:
        self._stop_requests += 1
        if self._stop_requests == 1:
            self._stop_deadline = time.monotonic() + self.options.grace
            logger.info(
                "Runner %s stopping: %d running tasks get %s s to finish (signal again to stop now)",
                self.worker_id,
                len(self._active),
                self.options.grace,
            )
            for active in self._active.values():
                active.context.request_stop()
            self._publish(events.RUNNER_STOPPING, grace=self.options.grace)
        else:
            logger.warning("Runner %s stopping now: interrupting %d tasks", self.worker_id, self.busy)
            self._interrupt_all(RunInterrupted, time.monotonic())

    def _shut_down(self) -> None:
        """Leave nothing running: record what ended, give back what did not."""
        if self._watcher is not None:
            self._watcher.stop()
        if self.bridge is not None:
            self.bridge.stop_listening()
        leftover: list[int] | None = None
        try:
            leftover = self._close_books()
        finally:
            self._say_goodbye(leftover)

    def _close_books(self) -> list[int] | None:
        """The last bookkeeping, tried with the backoff until the grace period is over.

        Returns the runs recorded interrupted, or None when the database did not answer in time: then
        what is not recorded stays open for another runner to recover, and the process still exits.
        """
        give_up_at = max(self._stop_deadline or 0.0, time.monotonic())
        self._database.retry_soon(time.monotonic())  # at least one try, however long the current step
        while True:
            self._drain_finished()
            if self._database.ready(time.monotonic()):
                try:
                    return self._record_and_give_back()
                except DatabaseError as exc:
                    self._on_database_error(exc)
            if self._stop_requests > 1 or self._database.retry_at > give_up_at:
                self._log_left_open()
                return None
            self._wait_for_retry()

    def _record_and_give_back(self) -> list[int]:
        try:
            self._record_outcomes()
        except Exception as exc:
            if not isinstance(exc, DatabaseError):
                self._give_back_unfinished()  # a bug must not leave runs open; kept outcomes wait otherwise
            raise
        return self._give_back_unfinished()

    def _give_back_unfinished(self) -> list[int]:
        reason = f"runner {self.worker_id} stopped before this run ended"
        leftover = give_back(self.record, reason)
        if leftover:
            logger.warning("%d runs did not end in time; recorded as interrupted", len(leftover))
        return leftover

    def _wait_for_retry(self) -> None:
        """Until the backoff's next try, take in runs that end; a second stop request ends the tries."""
        for kind, payload in self._receive(max(0.0, self._database.retry_at - time.monotonic())):
            if kind == "done":
                self._collect(*payload)
            elif kind == "stop":
                self._on_stop()

    def _log_left_open(self) -> None:
        logger.error(
            "Runner %s exits without reaching the database: %d outcomes not recorded; its open runs stay "
            "running until another runner recovers them (%s s after its last heartbeat)",
            self.worker_id,
            len(self._unrecorded),
            self.settings.HEARTBEAT_TIMEOUT,
        )

    def _say_goodbye(self, interrupted: list[int] | None) -> None:
        if self._pool is not None:
            self._pool.close()  # idle workers end; one still stuck in a task is a daemon thread
        self._publish(events.RUNNER_DOWN, interrupted_runs=interrupted or [])
        logger.info("Runner %s down after %d runs", self.worker_id, self._recorded)
        events.publisher.flush(timeout=2)
        connections.close_all()  # this thread's connections; the runner may run on any thread

    def _drain_finished(self) -> None:
        for kind, payload in self._receive(0):
            if kind == "done":
                self._collect(*payload)

    # Commands from dashboards ------------------------------------------------------------------

    def _on_command(self, message: dict[str, Any]) -> None:
        command = message.get("command")
        if command == "wake":
            return  # a step follows every message; it claims what is due
        active = self._active.get(message.get("run"))
        if active is None:
            self._reply(
                message, {"type": "command.failed", "error": "that run is not running on this runner"}
            )
        elif command == "cancel":
            self._cancel(active, message.get("by", ""))
        elif command == "stack":
            log = active.context.log.tail(STACK_LOG_TAIL) if active.context.log is not None else ""
            self._reply(message, {"type": "thread.stack", "run": active.run.pk, "thread": active.thread.name,
                                  "stack": active.stack(), "log": log, "at": time.time()})  # fmt: skip

    def _cancel(self, active: ActiveRun, by: str) -> None:
        """Ask the task to stop; interrupt it if it has not ended after CANCEL_GRACE seconds."""
        if active.context.cancelled:
            return
        active.context.request_stop(cancel=True)
        active.cancel_deadline = time.monotonic() + self.settings.CANCEL_GRACE
        logger.info("Run %s of %s cancelled by %s", active.run.pk, active.task.name, by or "someone")
        self._publish(events.RUN_CANCEL_REQUESTED, **self._describe(active.task, active.run), by=by)

    def _reply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        if self.bridge is not None and message.get("reply_to"):
            self.bridge.send(message["reply_to"], {**reply, "request": message.get("request")})

    # Events -----------------------------------------------------------------------------------

    def _describe(self, task: Task, run: TaskRun) -> dict[str, Any]:
        return {"task": task.pk, "task_id": task.task_id, "name": task.name, "run": run.pk}

    def _publish(self, kind: str, **data: Any) -> None:
        events.publish(kind, runner=self.worker_id, **data)


def row_of(instance: Any) -> dict[str, Any]:
    """A model instance's field values (plain data: the web side makes the page's JSON of them)."""
    return {field.attname: instance.__dict__[field.attname] for field in instance._meta.concrete_fields}


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text and text.strip() else ""
