"""The one seam through which live state leaves the runner.

``publish(kind, **data)`` puts an event on a bounded queue and returns at once: a task thread is never
blocked or slowed by whoever listens. One pump thread hands each event to the sinks: the log (always) and
whatever else subscribes (the dashboard's channel layer, tests). When the queue is full, events are
dropped and counted; the database stays the source of truth, so a listener can always resync from it.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import conf, dbclock

logger = logging.getLogger("conductor.events")

Event = dict[str, Any]
Sink = Callable[[Event], None]

#: Event types, in one place so listeners and docs agree.
RUNNER_UP = "runner.up"
RUNNER_STOPPING = "runner.stopping"
RUNNER_DOWN = "runner.down"
RUNNER_HEARTBEAT = "runner.heartbeat"
RUNNER_PRESUMED_DEAD = "runner.presumed_dead"
RUNNER_DEGRADED = "runner.degraded"
RUNNER_RECOVERED = "runner.recovered"
RUNNER_CLOCK_SKEW = "runner.clock_skew"
RUNS_RECOVERED = "runs.recovered"
THREAD_STARTED = "thread.started"
THREAD_FINISHED = "thread.finished"
TASK_CLAIMED = "task.claimed"
TASK_FINISHED = "task.finished"
TASK_FAILED = "task.failed"
TASK_TIMED_OUT = "task.timed_out"
TASK_INTERRUPTED = "task.interrupted"
TASK_CANCELLED = "task.cancelled"
TASK_OVERRUNNING = "task.overrunning"
TASK_RESULT = "task.result"
LATE_WRITE_REFUSED = "run.late_write_refused"
RUN_PROGRESS = "run.progress"
RUN_LOG = "run.log"
RUN_CANCEL_REQUESTED = "run.cancel_requested"
TASK_CHANGED = "task.changed"
TASK_DELETED = "task.deleted"


#: Most events handed to the sinks at once.
PUMP_BATCH = 500


def log_sink(event: Event) -> None:
    logger.debug("%s %s", event["type"], event, extra={"event": event})


class Publisher:
    """A bounded queue drained by one daemon thread into the registered sinks."""

    def __init__(self, maxsize: int | None = None) -> None:
        self._maxsize = maxsize  # None: EVENT_QUEUE_SIZE, read when the pump starts
        self._queue: queue.Queue[Event] = queue.Queue()
        self._sinks: list[Sink] = [log_sink]
        self._batch_sinks: list[Callable[[list[Event]], None]] = []  # take every event queued at once
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        # Seconds the database's clock is ahead of this process's, as the runner last measured it (its
        # heartbeats): events carry the database's time, which pages compare with heartbeats and snapshots.
        self.clock_offset = 0.0

    def database_time(self, local: float | None = None) -> float:
        """A ``time.time()`` value of this process (default: now) as the database's clock shows it."""
        return (time.time() if local is None else local) + self.clock_offset

    def publish(self, kind: str, **data: Any) -> None:
        self._ensure_pump()
        try:
            self._queue.put_nowait({"type": kind, "at": self.database_time(), **data})
        except queue.Full:
            self.dropped += 1

    def subscribe(self, sink: Sink) -> None:
        with self._lock:
            self._sinks = [*self._sinks, sink]

    def subscribe_batches(self, sink: Callable[[list[Event]], None]) -> None:
        """``sink`` gets lists of events: what was queued when the pump woke, in order."""
        with self._lock:
            self._batch_sinks = [*self._batch_sinks, sink]

    def has_subscribers(self) -> bool:
        return len(self._sinks) > 1 or bool(self._batch_sinks)  # more than the log sink

    def unsubscribe(self, sink: Callable[..., None]) -> None:
        with self._lock:  # bound methods are equal, not identical
            self._sinks = [s for s in self._sinks if s != sink]
            self._batch_sinks = [s for s in self._batch_sinks if s != sink]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every published event has reached the sinks; False on timeout."""
        # Woken by the pump's task_done(), not by polling (a sleep also fails under libfaketime).
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: not self._queue.unfinished_tasks, timeout)

    def _ensure_pump(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._queue.maxsize = (
                        conf.get().EVENT_QUEUE_SIZE if self._maxsize is None else self._maxsize
                    )
                    self._thread = threading.Thread(target=self._pump, name="conductor-events", daemon=True)
                    self._thread.start()

    def _pump(self) -> None:
        while True:
            batch = self._take_batch()
            for sink in self._batch_sinks:
                try:
                    sink(batch)
                except Exception:
                    logger.exception("Event sink %r failed on %d events", sink, len(batch))
            for event in batch:
                for sink in self._sinks:
                    try:
                        sink(event)
                    except Exception:
                        logger.exception("Event sink %r failed on %s", sink, event["type"])
            for _ in batch:
                self._queue.task_done()

    def _take_batch(self) -> list[Event]:
        """The next event (waiting for it), and every other one already queued: one hand-over for a burst."""
        batch = [self._queue.get()]
        while len(batch) < PUMP_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch


publisher = Publisher()


def listening() -> bool:
    """Whether an event published now would reach anyone: a subscriber, or the log at DEBUG level.

    Publishers on a hot path ask first, so that nobody pays for building events nobody reads.
    """
    return publisher.has_subscribers() or logger.isEnabledFor(logging.DEBUG)


def publish(kind: str, **data: Any) -> None:
    """Publish a live-state event; never blocks."""
    publisher.publish(kind, **data)


def set_clock_offset(offset: float) -> None:
    """The runner's measured offset from the database's clock, which its events' times are shifted by."""
    publisher.clock_offset = offset


def database_time(local: float | None = None) -> float:
    """This process's ``time.time()`` (default: now) by the database's clock, as last measured."""
    return publisher.database_time(local)


#: Where a web process's own state changes go at once (app/bridge.py's ``send_now``, installed at start-up).
_immediate_sinks: list[Callable[[Event], None]] = []


def subscribe_now(sink: Callable[[Event], None]) -> None:
    if sink not in _immediate_sinks:
        _immediate_sinks.append(sink)


def publish_now(kind: str, **data: Any) -> None:
    """Publish a state change a web process made (an action in the admin or on the dashboard).

    The same seam as ``publish``, but delivered before the action returns, so its reply never overtakes
    its news: the sinks send it to pages the way a runner's bridge sends runners' events.
    """
    # A web process measures no offset (it does not heartbeat): it reads the database's clock, once per
    # action, so its news is timed like the runners' whatever its own clock says.
    event: Event = {"type": kind, "at": dbclock.now().timestamp(), **data}
    logger.debug("%s %s", kind, event, extra={"event": event})
    for sink in _immediate_sinks:
        sink(event)


class Recorder:
    """Collects events for tests and tools, with a poll-with-timeout to wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["type"] == kind]

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching event within {timeout} s")
                self._changed.wait(left)


@contextmanager
def recording() -> Iterator[Recorder]:
    recorder = Recorder()
    publisher.subscribe(recorder)
    try:
        yield recorder
    finally:
        publisher.unsubscribe(recorder)
