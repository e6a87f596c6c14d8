"""The runner's policing of time limits (app.runner.limits.TimeLimits), on real worker threads."""

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from app.context import TaskContext
from app.newthread import ThreadInterrupted
from app.runner.activerun import ActiveRun
from app.runner.limits import TimeLimits
from app.runner.workers import Job, WorkerPool
from app.status import RunStatus

TIMEOUT = 10
WAIT = 1.0  # interrupt_wait
CANCEL_GRACE = 5.0
NOW = 1000.0  # monotonic times are given, not read: the policy is tested, not the clock


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker waiting


def in_python_until(release: threading.Event) -> str:
    """Python bytecode all along, so an interrupt is delivered at once."""
    try:
        while not release.is_set():
            sum(range(100))
    except ThreadInterrupted as exc:
        return type(exc).__name__
    return "released"


def start(pool: WorkerPool, work, deadline: float | None = None, run_id: int = 1) -> ActiveRun:
    """``work`` running on a worker (returned once it runs: an interrupt reaches only a run in progress)."""
    task = SimpleNamespace(pk=run_id, task_id="t", name="limited", kill_time=1)
    run = SimpleNamespace(pk=run_id, status=RunStatus.RUNNING)
    running = threading.Event()

    def call() -> object:
        running.set()
        return work()

    thread = pool.take().submit(Job(run_id, f"limited#{run_id}", call))
    assert running.wait(TIMEOUT)
    return ActiveRun(task, run, thread, TaskContext(task, run_id), NOW - 1, deadline)


def limits() -> TimeLimits:
    return TimeLimits(interrupt_wait=WAIT, cancel_grace=CANCEL_GRACE)


def test_a_run_past_its_kill_time_is_interrupted_with_time_limit_exceeded(pool, reports, release):
    active = start(pool, lambda: in_python_until(release), deadline=NOW)
    policing = limits()

    policing.police([active], NOW - 0.5)
    assert active.interrupted_at is None  # not yet
    policing.police([active], NOW)

    assert active.interrupted_at == NOW
    assert reports.next() == (1, "TimeLimitExceeded")


def test_a_run_blocked_in_c_past_its_interrupt_is_an_overrun_recorded_timed_out(pool, release):
    active = start(pool, lambda: release.wait(TIMEOUT), deadline=NOW)
    policing = limits()
    policing.police([active], NOW)

    policing.police([active], NOW + WAIT)

    assert active.overrunning
    assert active.run.status == RunStatus.TIMED_OUT
    assert policing.overruns == [active]
    assert policing.next_check(active) == float("inf")  # nothing more to do until it returns


def test_a_cancelled_run_is_asked_first_and_interrupted_after_the_grace(pool, reports, release):
    active = start(pool, lambda: in_python_until(release))
    policing = limits()

    assert policing.cancel(active, NOW)
    assert not policing.cancel(active, NOW)  # once
    assert active.context.cancelled
    assert policing.next_check(active) == NOW + CANCEL_GRACE
    policing.police([active], NOW + CANCEL_GRACE)

    assert reports.next() == (1, "RunCancelled")


def test_a_stop_gives_grace_then_interrupts_everything(pool, reports, release):
    active = start(pool, lambda: in_python_until(release))
    policing = limits()

    policing.start_grace([active], grace=10, now=NOW)
    assert active.context.stop_requested
    assert NOW + 10 in policing.wake_at([active])
    policing.police([active], NOW + 9)
    assert not policing.interrupting_all

    policing.police([active], NOW + 10)

    assert policing.interrupting_all
    assert reports.next() == (1, "RunInterrupted")
    assert not policing.grace_expired(NOW + 10)
    assert policing.grace_expired(NOW + 10 + WAIT)


def test_next_check_is_the_kill_time_then_the_wait_after_an_interrupt(pool, release):
    active = start(pool, lambda: in_python_until(release), deadline=NOW + 3)
    policing = limits()
    assert policing.next_check(active) == NOW + 3

    policing.police([active], NOW + 3)

    assert policing.next_check(active) == NOW + 3 + WAIT


def test_a_run_without_a_time_limit_is_never_checked(pool, release):
    active = start(pool, lambda: in_python_until(release))
    assert limits().wake_at([active]) == [float("inf")]
