"""Saved tasks wake the runner (inotify on SQLite, NOTIFY on PostgreSQL): pickup never waits for the poll.

Every runner here polls and heartbeats once an hour (each step also claims), so a task that runs within
the tests' timeout was woken for.
"""

from pathlib import Path

import pytest

from app.task import Task
from app.taskrun import TaskRun
from tests import functions
from tests.conftest import wait_until
from tests.integration.test_runner import finished, make_task

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3600.0


@pytest.fixture(autouse=True)
def hourly_heartbeat(settings) -> None:
    settings.CONDUCTOR = {"HEARTBEAT": HOUR, "HEARTBEAT_TIMEOUT": 3 * HOUR}


def running(task: Task) -> bool:
    return TaskRun.objects.running().filter(task=task).exists()


def test_a_saved_task_wakes_an_idle_runner(start_runner) -> None:
    start_runner(poll=HOUR, threads=2)
    task = make_task(functions.add, args_in={"a": 1, "b": 2})
    wait_until(lambda: finished(task), message="the idle runner woke for the saved task")


def long_then_quick(start_runner, tmp_path: Path, threads: int) -> tuple[Task, Task, Path]:
    """A runner of ``threads`` threads, one of them on a task that runs until ``release`` exists, and a
    quick task saved meanwhile: (long, quick, release)."""
    release = tmp_path / "release"
    start_runner(poll=HOUR, threads=threads)
    long = make_task(functions.wait_for_file, args_in={"path": str(release)})
    wait_until(lambda: running(long))
    return long, make_task(functions.add, args_in={"a": 1, "b": 2}), release


def test_a_saved_task_wakes_a_runner_that_has_a_free_thread(start_runner, tmp_path: Path) -> None:
    long, quick, release = long_then_quick(start_runner, tmp_path, threads=2)
    wait_until(lambda: finished(quick), message="a runner with one busy thread woke for a saved task")
    assert running(long)
    release.touch()
    wait_until(lambda: finished(long))


def test_a_runner_with_every_thread_busy_claims_as_soon_as_one_frees(start_runner, tmp_path: Path) -> None:
    """Its watcher wakes nobody meanwhile (the gate); the run that ends makes it claim."""
    long, quick, release = long_then_quick(start_runner, tmp_path, threads=1)
    release.touch()
    wait_until(lambda: finished(long))
    wait_until(lambda: finished(quick), message="the freed thread took the task saved while it was busy")
