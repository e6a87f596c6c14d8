"""app.runner.workers: pooled New_Thread workers, one run at a time; interrupts hit only their run."""

import asyncio
import threading
import time

from app import coroutines
from app.interrupts import Interrupts
from app.newthread import ThreadInterrupted
from app.runner.workers import Job, WorkerPool
from tests.conftest import wait_until

TIMEOUT = 10


def busy_until(release: threading.Event) -> str:
    """Python bytecode all along (so an interrupt is delivered), until released."""
    try:
        while not release.is_set():
            time.sleep(0.001)
    except ThreadInterrupted as exc:
        return f"interrupted by {type(exc).__name__}"
    return "released"


def test_a_worker_runs_a_job_under_the_run_name_and_reports_its_outcome(pool, reports):
    seen = {}

    def call() -> str:
        seen["name"] = threading.current_thread().name
        return "done"

    worker = pool.take()
    thread = worker.submit(Job(7, "report#7", call))

    assert reports.next() == (7, "done")
    assert seen["name"] == "report#7"
    assert thread.name == "report#7"
    assert thread.ident == worker.thread.ident
    assert thread.daemon is True
    wait_until(lambda: worker.thread.name == worker.idle_name)
    assert not thread.is_alive()


def test_a_run_is_alive_until_it_has_reported(pool, reports):
    release = threading.Event()
    thread = pool.take().submit(Job(1, "slow#1", lambda: busy_until(release)))
    assert thread.is_alive()
    release.set()
    assert reports.next() == (1, "released")
    assert not thread.is_alive()


def test_an_interrupt_reaches_its_own_run_and_never_the_next(pool, reports):
    release = threading.Event()
    worker = pool.take()
    first = worker.submit(Job(1, "first#1", lambda: busy_until(release)))
    wait_until(lambda: worker.thread.name == "first#1")

    assert first.interrupt(ThreadInterrupted) is True
    assert first.interrupt(ThreadInterrupted) is False  # at most once
    assert reports.next() == (1, "interrupted by ThreadInterrupted")

    pool.give_back(worker)
    second_release = threading.Event()
    second = pool.take().submit(Job(2, "second#2", lambda: busy_until(second_release)))
    assert first.interrupt(ThreadInterrupted) is False  # the old run's handle cannot touch the new run
    second_release.set()
    assert reports.next() == (2, "released")
    assert not second.is_alive()


def test_a_job_that_raises_system_exit_is_reported_without_an_outcome_and_the_worker_lives_on(pool, reports):
    def leave() -> None:
        raise SystemExit(3)

    worker = pool.take()
    worker.submit(Job(1, "exits#1", leave))
    assert reports.next() == (1, None)
    worker.submit(Job(2, "after#2", lambda: "still here"))
    assert reports.next() == (2, "still here")


def test_close_ends_idle_workers_and_busy_ones_when_given_back(reports):
    workers = WorkerPool(2, reports)
    busy = workers.take()
    idle = workers._idle[0]
    release = threading.Event()
    busy.submit(Job(1, "busy#1", lambda: busy_until(release)))

    workers.close()
    idle.thread.join(TIMEOUT)
    assert not idle.thread.is_alive()
    assert busy.thread.is_alive()

    release.set()
    assert reports.next() == (1, "released")
    workers.give_back(busy)
    busy.thread.join(TIMEOUT)
    assert not busy.thread.is_alive()


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_the_coroutines_of_a_worker_share_its_event_loop_which_ends_with_the_worker(reports):
    workers = WorkerPool(2, reports)
    first, second = workers.take(), workers.take()
    first.submit(Job(1, "async#1", lambda: coroutines.run(running_loop(), Interrupts())))
    first.submit(Job(2, "async#2", lambda: coroutines.run(running_loop(), Interrupts())))
    second.submit(Job(3, "async#3", lambda: coroutines.run(running_loop(), Interrupts())))
    loops = dict(reports.next() for _ in range(3))

    assert loops[1] is loops[2]  # one loop per worker thread, kept between its runs
    assert loops[3] is not loops[1]  # and none shared between threads
    assert not loops[1].is_closed()
    workers.give_back(first)
    workers.give_back(second)
    workers.close()
    first.thread.join(TIMEOUT)
    assert loops[1].is_closed()
