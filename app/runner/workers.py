"""The runner's task threads: a pool of long-lived ``New_Thread`` workers, one run at a time each.

Starting a thread per run costs more than a short task itself, so each of the runner's ``--threads``
slots is a worker thread that takes runs from its own queue. While it runs one, the worker is renamed
``<task name>#<run id>``, as a thread per run would be, and ``RunThread`` is how the runner sees the
thread of that one run: alive until the run has reported, interruptible only while that run executes.

Interrupting a pooled thread must never hit the next run. So an interrupt is sent only while the
worker is *armed* for the run it targets (under a lock), at most once, and the worker disarms and
cancels any exception still pending before it takes its next run.
"""

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from .. import coroutines
from ..newthread import New_Thread, set_async_exc

logger = logging.getLogger("conductor.workers")


@dataclass(eq=False)
class Job:
    """One run handed to a worker: ``call()`` returns its outcome, ``report`` receives it."""

    run_id: int
    name: str
    call: Callable[[], Any]
    reported: bool = False  # set once, by the worker, after the outcome exists


class Worker:
    def __init__(self, index: int, report: Callable[[int, Any], None]) -> None:
        self.index = index
        self._report = report
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._armed: Job | None = None
        self.thread = New_Thread(self._serve, name=self.idle_name, daemon=True)

    @property
    def idle_name(self) -> str:
        return f"conductor-worker-{self.index}"

    def start(self) -> "Worker":
        self.thread.start()
        return self

    def submit(self, job: Job) -> "RunThread":
        self._jobs.put(job)
        return RunThread(self, job)

    def close(self) -> None:
        """End the thread once it has run what it was given."""
        self._jobs.put(None)

    def interrupt(self, job: Job, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` in this worker if, and only while, it executes ``job``; at most once."""
        with self._lock:
            if self._armed is not job:
                return False
            self._armed = None
            return set_async_exc(self.thread.ident, exc_type) == 1

    def _serve(self) -> None:
        with coroutines.loop_per_thread():  # the runs of async functions share this thread's loop
            while (job := self._jobs.get()) is not None:
                outcome = self._perform(job)
                job.reported = True
                self._report(job.run_id, outcome)

    def _perform(self, job: Job) -> Any:
        outcome = None
        try:
            try:
                self.thread.name = job.name
                with self._lock:
                    self._armed = job
                outcome = job.call()
            finally:
                self._disarm()
        except BaseException as exc:  # an interrupt landing just outside the call (the task's own are in it)
            logger.warning(
                "Run %s on %s ended by %s outside its task", job.run_id, job.name, type(exc).__name__
            )
        finally:
            close_old_connections()  # as after a request: a worker thread lives long
            self.thread.name = self.idle_name
        return outcome

    def _disarm(self) -> None:
        with self._lock:
            self._armed = None
        set_async_exc(threading.get_ident(), None)  # one sent just before disarming must not hit the next run


class RunThread:
    """The thread of one run, as the runner tracks it (a worker of the pool, for that run only)."""

    daemon = True  # a run stuck in C must not keep a stopped runner's process alive

    def __init__(self, worker: Worker, job: Job) -> None:
        self.worker = worker
        self.job = job
        self.name = job.name

    @property
    def ident(self) -> int | None:
        return self.worker.thread.ident

    def is_alive(self) -> bool:
        """True until the run has reported its outcome (and while its worker lives)."""
        return not self.job.reported and self.worker.thread.is_alive()

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        return self.worker.interrupt(self.job, exc_type)


class WorkerPool:
    """``size`` started workers; ``take()`` an idle one, ``give_back()`` it once its run is collected."""

    def __init__(self, size: int, report: Callable[[int, Any], None]) -> None:
        self._report = report
        self._count = 0
        self._closed = False
        self._idle = [self._new_worker() for _ in range(size)]

    def _new_worker(self) -> Worker:
        self._count += 1
        return Worker(self._count, self._report).start()

    def take(self) -> Worker:
        return self._idle.pop()

    def give_back(self, worker: Worker) -> None:
        """Idle again; a worker whose thread died (it never should) is replaced."""
        if self._closed:
            worker.close()
        else:
            self._idle.append(worker if worker.thread.is_alive() else self._new_worker())

    def close(self) -> None:
        """End the idle workers now, and each busy one when it is given back."""
        self._closed = True
        for worker in self._idle:
            worker.close()
        self._idle = []
