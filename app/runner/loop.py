"""The run loop behind ``manage.py runtasks``.

One main thread owns all bookkeeping: it claims due tasks, hands each run to a worker thread (a pool of
New_Threads, ``workers.py``), records every outcome, enforces time limits, heartbeats and recovers the
work of dead runners. Task threads only run functions and hand their outcome back through the inbox, so
database writes for bookkeeping never race each other. The main thread sleeps on the inbox: a finishing
task, a stop request or the next deadline wakes it, and an idle runner costs next to no CPU.

The policies are collaborators of their own: ``OutcomeBatch`` (when outcomes are recorded), ``Backlog``
(how many runs to claim, and those claimed ahead), ``TimeLimits`` (kill_time, cancels, stops, overruns),
``Heartbeats`` (heartbeats and recovery), ``Samples`` (the dashboard's history, written at heartbeats)
and ``Backoff`` (a database that went away).
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import DatabaseError, connections

from .. import conf, dbclock, events
from ..backoff import Backoff, one_line
from ..context import TaskContext
from ..execution import RunInterrupted, execute
from ..lifecycle import Claimer, Outcome, finish_many, give_back, mark_overrunning, sign_in
from ..runnerprocess import RunnerProcess
from ..status import Isolation, RunnerState, RunStatus
from . import news
from .activerun import ActiveRun
from .backlog import Backlog
from .heartbeats import Heartbeats, elapsed_clock
from .inbox import (
    DashboardCommand,
    DatabaseAnswers,
    Inbox,
    LayerHealth,
    Message,
    RunEnded,
    StopRequested,
    WakeUp,
)
from .limits import TimeLimits
from .outcomes import OutcomeBatch
from .samples import Samples
from .wakeup import SqliteWatcher, watcher_for_default_database
from .workers import Job, WorkerPool

logger = logging.getLogger("conductor.runner")
#: Longest wait between two tries to reach a database that went away, in seconds.
DATABASE_RETRY_MAX = 30.0
#: Characters of a running task's output sent with its stack, so a page that opens late sees them.
STACK_LOG_TAIL = 20000


class CommandChannel(Protocol):
    """Where dashboards' commands come from and replies go (``app.bridge.ChannelBridge``, given by
    ``runtasks``): the runner knows the web side only through this."""

    on_health: Callable[[str], None] | None
    dropped: int  # events its queue could not take, counted since it started

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
    def __init__(self, options: RunnerOptions | None = None, bridge: CommandChannel | None = None) -> None:
        self.options = options or RunnerOptions()
        self.bridge = bridge
        self.settings = conf.get()
        self.worker_id = self.options.worker_id or RunnerProcess.default_worker_id()
        self.record: RunnerProcess | None = None
        self.up = threading.Event()  # set once registered: tests and --serve wait on it
        self._inbox = Inbox()
        self._pool: WorkerPool | None = None
        self._active: dict[int, ActiveRun] = {}
        self._backlog = Backlog(self.options.threads, self.options.max_tasks)
        self._outcomes = OutcomeBatch()
        self._limits = TimeLimits(self.settings.INTERRUPT_WAIT, self.settings.CANCEL_GRACE)
        self._heartbeats = Heartbeats(self.settings, self.worker_id, self._publish, DATABASE_RETRY_MAX)
        self._samples = Samples(self.settings, self.worker_id)
        # Every step that touches the database waits for this after a failure (claims, recording,
        # heartbeats, recovery), so an outage costs one try per step of the backoff, not one per loop.
        first_retry = min(self.options.poll, DATABASE_RETRY_MAX)
        self._database = Backoff(first_retry, DATABASE_RETRY_MAX, f"Runner {self.worker_id}", "the database",
                                 logger)  # fmt: skip
        self._recorded = 0
        self._stop_requests = 0
        self._stopping_recorded = False
        self._next_poll = 0.0
        self._next_due: float | None = None
        self._nothing_due = False
        self._watcher: SqliteWatcher | None = None
        self._wake_pending = False
        self._layer_problem = ""

    # Public API -------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or, with once/max_tasks, until done). Returns the exit code."""
        self._sign_in()
        try:
            while not self._done():
                self._step()
        finally:
            self._shut_down()
        return 1 if self._stop_requests > 1 else 0

    def stop(self) -> None:
        """First call: stop claiming and let running tasks finish within grace. Second: stop now.

        Safe to call from a signal handler or any thread.
        """
        self._inbox.put(StopRequested())

    def command(self, message: dict[str, Any]) -> None:
        """A dashboard's command (``cancel``, ``stack``, ``wake``), from any thread."""
        self._inbox.put(DashboardCommand(message))

    @property
    def busy(self) -> int:
        return len(self._active)

    # Signing in, and the watcher's callbacks (from its thread) -----------------------------------

    def _sign_in(self) -> None:
        sent_at = elapsed_clock()
        self.record = sign_in(self.worker_id, self.options.threads)
        self._heartbeats.signed_in(sent_at)
        once_cutoff: datetime | None = dbclock.now() if self.options.once else None
        self._claimer = Claimer(self.record, self.options.queues, due_by=once_cutoff)
        self._heartbeats.recover_dead(self.record)
        self._heartbeats.measure_clock()  # before runner.up: its time is the database's, as every event's
        self._pool = WorkerPool(self.options.threads, self._report_done)
        self._watcher = watcher_for_default_database(
            self._wake, wanted=self._wake_wanted, reconnected=lambda: self._inbox.put(DatabaseAnswers())
        )
        if self.bridge is not None:
            self.bridge.on_health = lambda problem: self._inbox.put(LayerHealth(problem))
            self.bridge.listen_as_runner(self.worker_id, self.command)
        self.up.set()
        self._publish(events.RUNNER_UP, threads=self.options.threads, pid=self.record.pid)
        logger.info("Runner %s up: %d threads, poll every %s s, queues: %s", self.worker_id,
                    self.options.threads, self.options.poll,
                    ", ".join(self.options.queues) if self.options.queues else "all")  # fmt: skip

    def _wake(self) -> None:
        """Another process committed: look for due tasks now (one pending wake-up is enough)."""
        if not self._wake_pending:
            self._wake_pending = True
            self._inbox.put(WakeUp())

    def _wake_wanted(self) -> bool:
        """False while this runner will look at the database anyway (the watcher's gate).

        A pending wake-up makes another useless, and so do busy threads: the next run to end frees one,
        and the runner claims then, seeing every commit made before.
        """
        return not (self._wake_pending or len(self._active) >= self.options.threads)

    def _report_done(self, run_id: int, outcome: Outcome | None) -> None:
        """From a worker thread: the run ended (outcome None: it ended outside its task)."""
        self._inbox.put(RunEnded(run_id, outcome))

    # The loop ---------------------------------------------------------------------------------

    def _step(self) -> None:
        self._handle(self._inbox.receive(self._wait_time()))
        self._start_backlog()  # free threads get work before the bookkeeping below
        now = time.monotonic()
        self._collect_dead_threads()
        self._limits.police(self._active.values(), now)
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
            if self._outcomes.due(now, others_running=bool(self._active)) or retrying:
                self._record_outcomes()
            if self._heartbeats.due(now) or retrying:  # a retry always asks the database something
                self._beat(now)
            if not self._stop_requests:
                self._claim(now)
        except DatabaseError as exc:
            self._on_database_error(exc)
        else:
            self._on_database_ok()

    def _beat(self, now: float) -> None:
        threads_state = [active.describe() for active in self._active.values()]
        self._heartbeats.beat(self.record, threads_state, self.options.threads, now, self._events_dropped())
        self._samples.take(self.record, now)  # the dashboard's history; never raises

    def _events_dropped(self) -> int:
        """Live events this process dropped so far: its publisher's queue's and its bridge's (/metrics)."""
        return events.publisher.dropped + (self.bridge.dropped if self.bridge is not None else 0)

    def _handle(self, messages: list[Message]) -> None:
        for message in messages:
            match message:
                case RunEnded(run_id, outcome):
                    self._collect(run_id, outcome)
                case StopRequested():
                    self._on_stop()
                case WakeUp():
                    self._wake_pending = False  # a step follows: it claims what is due
                case DashboardCommand(command):
                    self._on_command(command)
                case LayerHealth(problem):
                    self._on_layer_health(problem)
                case DatabaseAnswers():
                    self._database.retry_soon(time.monotonic())

    def _wait_time(self) -> float:
        wake_at = self._database_work_at() + self._limits.wake_at(self._active.values())
        return max(0.0, min(wake_at) - time.monotonic())

    def _database_work_at(self) -> list[float]:
        """When the database is next wanted: the backoff's next try, while it cannot be reached."""
        if self._database.failing:
            return [self._database.retry_at]
        wake_at = [self._heartbeats.next_at]
        if not self._stop_requests:  # a stopping runner claims nothing: its poll and due times are past
            wake_at.append(self._next_poll)
            if self._next_due is not None:
                wake_at.append(self._next_due)
        if self._outcomes:
            wake_at.append(self._outcomes.record_by)
        return wake_at

    def _done(self) -> bool:
        if self._stop_requests > 1:
            return True
        if self._stop_requests:
            return not (self._active or self._backlog) or self._limits.grace_expired(time.monotonic())
        idle = not (self._active or self._backlog or self._outcomes)
        if self.options.max_tasks is not None and self._recorded >= self.options.max_tasks:
            return idle
        return self.options.once and self._nothing_due and idle

    # The database going away and coming back -----------------------------------------------------

    def _on_database_error(self, exc: DatabaseError) -> None:
        """Running tasks go on; bookkeeping waits for the backoff's next try (outcomes are kept meanwhile)."""
        self._database.failed(time.monotonic(), str(exc))
        if self._database.failures == 1:
            self._publish(events.RUNNER_DEGRADED, reason=f"database unreachable: {one_line(str(exc))}")
            self._heartbeats.database_lost()
        connections.close_all()  # a fresh connection next time

    def _on_database_ok(self) -> None:
        if self._database.succeeded():
            self._publish(events.RUNNER_RECOVERED)
            self._heartbeats.database_back(time.monotonic())

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

    # Claiming and starting --------------------------------------------------------------------

    def _claim(self, now: float) -> None:
        free = self._backlog.capacity(running=len(self._active))
        if free <= 0:
            return
        claimed = self._claimer.claim(free)
        self._backlog.add(claimed)
        self._start_backlog()
        self._nothing_due = not claimed
        self._next_poll = now + self.options.poll
        self._next_due = self._when_next_due() if len(claimed) < free else None

    def _start_backlog(self) -> None:
        """Start claimed runs on free threads (none once the grace after a stop has run out)."""
        if self._backlog and self._heartbeats.lapsed():
            self._give_back_backlog()
        while (
            self._backlog and len(self._active) < self.options.threads and not self._limits.interrupting_all
        ):
            self._start(*self._backlog.next())

    def _give_back_backlog(self) -> None:
        """Others may have presumed this runner dead (it was stopped, or cut off): what it claimed ahead
        may have been recovered and started elsewhere, so none of it starts here. Each run is recorded
        interrupted, due again (fenced: refused if it was recovered), and the runner heartbeats, signing
        in again if it was presumed dead, before it claims anything more."""
        dropped = self._backlog.drop()
        now = time.time()
        reason = (f"runner {self.worker_id} had no heartbeat through for over "
                  f"{self._heartbeats.timeout - self._heartbeats.interval:g} s when this run was to start "
                  "(it may have been presumed dead); given back without starting")  # fmt: skip
        for _, run in dropped:
            self._outcomes.add(run, Outcome(RunStatus.INTERRUPTED, now, now, error=reason), time.monotonic())
        logger.warning("Runner %s: no heartbeat got through for too long; %d runs claimed ahead given back "
                       "unstarted", self.worker_id, len(dropped))  # fmt: skip
        self._heartbeats.next_at = 0.0
        self._nothing_due = False  # what it gave back is due again: --once must not end before it looks

    def _when_next_due(self) -> float | None:
        """The monotonic time the next waiting task falls due (by the database's clock), if in the future."""
        at = self._claimer.next_due_at()
        if at is None:
            return None
        wait = self._heartbeats.local_deadline(at)
        return time.monotonic() + wait if wait > 0 else None

    def _start(self, task: Any, run: Any) -> None:
        context = TaskContext(task, run.pk, attempt=task.attempts, runner=self.worker_id, fence=run.fence)
        job = Job(run.pk, f"{task.name}#{run.pk}", lambda: execute(task, context))
        thread = self._pool.take().submit(job)
        started = time.monotonic()
        # A process-isolated run enforces its own kill_time by killing its child process.
        deadline = started + task.kill_time if task.kill_time and task.isolation == Isolation.THREAD else None
        self._active[run.pk] = ActiveRun(task, run, thread, context, started, deadline)
        if events.listening():
            news.announce_start(self._publish, task, run, thread)

    # Collecting and recording outcomes --------------------------------------------------------

    def _collect(self, run_id: int, outcome: Outcome | None) -> None:
        active = self._active.pop(run_id, None)
        if active is None:
            return  # already collected as lost by _collect_dead_threads
        self._pool.give_back(active.thread.worker)
        if events.listening():
            news.announce_thread_end(self._publish, active.task, active.run, active.thread)
        if outcome is None:
            now = time.time()
            outcome = Outcome(RunStatus.INTERRUPTED, now, now, error="interrupted outside the task")
        if active.overrunning:
            active.run.status = RunStatus.TIMED_OUT
        self._outcomes.add(active.run, outcome, time.monotonic())
        self._backlog.ran(outcome.duration)

    def _collect_dead_threads(self) -> None:
        """A thread that died without reporting (interrupted at the wrong moment) is not lost."""
        dead = [a for a in self._active.values() if not a.thread.is_alive()]
        if not dead:
            return
        self._drain_finished()  # a dead thread has always put its report, if it got to it
        for active in dead:
            self._collect(active.run.pk, None)

    def _record_outcomes(self) -> None:
        batch = self._outcomes.take()
        if not batch:
            return
        try:
            accepted = finish_many(batch, refresh=events.listening())
        except DatabaseError:
            self._outcomes.put_back(batch)  # kept, and tried again next step
            raise
        self._recorded += len(batch)
        for (run, outcome), ok in zip(batch, accepted, strict=True):
            news.log_end(run, outcome, ok)
        if events.listening():
            for (run, outcome), ok in zip(batch, accepted, strict=True):
                news.announce_end(self._publish, run, outcome, ok)

    def _record_overruns(self) -> None:
        """Record overrunning runs as timed out; only then say so (the event promises the record)."""
        overruns = self._limits.overruns
        while overruns:
            active = overruns[0]
            mark_overrunning(active.run)
            overruns.pop(0)
            logger.warning(
                "Task %s (run %s) passed kill_time=%s s and is blocked where it cannot be interrupted; "
                "recorded as timed out, still running, holding its slot until it returns",
                active.task.name, active.run.pk, active.task.kill_time,
            )  # fmt: skip
            self._publish(events.TASK_OVERRUNNING, **news.describe(active.task, active.run),
                          thread=active.thread.name, elapsed=time.monotonic() - active.started)  # fmt: skip

    # Stopping ---------------------------------------------------------------------------------

    def _on_stop(self) -> None:
        self._stop_requests += 1
        now = time.monotonic()
        if self._stop_requests == 1:
            logger.info("Runner %s stopping: %d running tasks get %s s to finish (signal again to stop now)",
                        self.worker_id, len(self._active), self.options.grace)  # fmt: skip
            self._limits.start_grace(self._active.values(), self.options.grace, now)
            self._publish(events.RUNNER_STOPPING, grace=self.options.grace)
        else:
            logger.warning("Runner %s stopping now: interrupting %d tasks", self.worker_id, self.busy)
            self._limits.interrupt_all(self._active.values(), RunInterrupted, now)

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
        give_up_at = max(self._limits.stop_deadline or 0.0, time.monotonic())
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
        leftover = give_back(self.record, f"runner {self.worker_id} stopped before this run ended")
        if leftover:
            logger.warning("%d runs did not end in time; recorded as interrupted", len(leftover))
        return leftover

    def _wait_for_retry(self) -> None:
        """Until the backoff's next try, take in runs that end; a second stop request ends the tries."""
        for message in self._inbox.receive(max(0.0, self._database.retry_at - time.monotonic())):
            if isinstance(message, RunEnded):
                self._collect(message.run_id, message.outcome)
            elif isinstance(message, StopRequested):
                self._on_stop()

    def _log_left_open(self) -> None:
        logger.error(
            "Runner %s exits without reaching the database: %d outcomes not recorded; its open runs stay "
            "running until another runner recovers them (%s s after its last heartbeat)",
            self.worker_id, len(self._outcomes), self.settings.HEARTBEAT_TIMEOUT,
        )  # fmt: skip

    def _say_goodbye(self, interrupted: list[int] | None) -> None:
        if self._pool is not None:
            self._pool.close()  # idle workers end; one still stuck in a task is a daemon thread
        self._publish(events.RUNNER_DOWN, interrupted_runs=interrupted or [])
        logger.info("Runner %s down after %d runs", self.worker_id, self._recorded)
        events.publisher.flush(timeout=2)
        connections.close_all()  # this thread's connections; the runner may run on any thread

    def _drain_finished(self) -> None:
        for message in self._inbox.receive(0):
            if isinstance(message, RunEnded):
                self._collect(message.run_id, message.outcome)

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
                                  "stack": active.stack(), "log": log,
                                  "at": events.database_time()})  # fmt: skip

    def _cancel(self, active: ActiveRun, by: str) -> None:
        """Ask the task to stop; interrupt it if it has not ended after CANCEL_GRACE seconds."""
        if self._limits.cancel(active, time.monotonic()):
            logger.info("Run %s of %s cancelled by %s", active.run.pk, active.task.name, by or "someone")
            self._publish(events.RUN_CANCEL_REQUESTED, **news.describe(active.task, active.run), by=by)

    def _reply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        if self.bridge is not None and message.get("reply_to"):
            self.bridge.send(message["reply_to"], {**reply, "request": message.get("request")})

    def _publish(self, kind: str, **data: Any) -> None:
        events.publish(kind, runner=self.worker_id, **data)
