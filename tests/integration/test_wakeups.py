"""Saved tasks wake the runner (inotify on SQLite, NOTIFY on PostgreSQL): pickup never waits for the poll.

Every runner here polls and heartbeats once an hour (each step also claims), so a task that runs within
the tests' timeout was woken for.
"""

from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from app.runner.wakeup import CHANNEL
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


def test_tasks_inserted_by_bulk_create_wake_an_idle_runner(start_runner) -> None:
    """No save() runs for them: on PostgreSQL a trigger notifies, on SQLite the file's watcher sees it."""
    start_runner(poll=HOUR, threads=2)
    tasks = [
        Task(name=f"bulk {n}", task_id=f"bulk-{n}", func="tests.functions.add", args_in={"a": n})
        for n in range(3)
    ]
    for task in tasks:
        task.next_run = timezone.now()
    Task.objects.bulk_create(tasks)
    wait_until(lambda: Task.objects.filter(name__startswith="bulk ", status="finished").count() == 3,
               message="the idle runner woke for rows from bulk_create")  # fmt: skip


def test_a_raw_update_that_makes_a_task_due_wakes_an_idle_runner(start_runner) -> None:
    task = make_task(functions.add, args_in={"a": 1}, run_in=HOUR)
    start_runner(poll=HOUR, threads=2)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Task._meta.db_table} SET next_run = %s WHERE id = %s", [timezone.now(), task.pk]
        )
    wait_until(lambda: finished(task), message="the idle runner woke for a task made due by raw SQL")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="NOTIFY is PostgreSQL's")
def test_only_writes_that_make_tasks_due_notify() -> None:
    import psycopg

    settings_dict = connection.settings_dict
    with psycopg.connect(dbname=settings_dict["NAME"], user=settings_dict["USER"], host=settings_dict["HOST"],
                         port=settings_dict["PORT"] or 5432, autocommit=True) as listener:  # fmt: skip
        listener.execute(f"LISTEN {CHANNEL}")
        task = make_task(functions.add, args_in={"a": 1})
        assert notifications(listener) == 1  # the insert
        Task.objects.filter(pk=task.pk).update(name="renamed")
        Task.objects.filter(pk=task.pk).update(status="running")
        assert notifications(listener) == 0  # neither made a task due
        Task.objects.filter(pk=task.pk).update(status="waiting", next_run=timezone.now())
        assert notifications(listener) == 1


def notifications(listener) -> int:
    """How many notifications arrive now (each write above has committed: autocommit)."""
    return sum(1 for _ in listener.notifies(timeout=0.3))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN is PostgreSQL's")
def test_the_watcher_listens_once_started() -> None:
    """A task saved right after the runner started (after its first claim) must wake it: start() returns
    once LISTEN is on, so no notification falls before it (one did, seen as this file's first test
    failing once in a loaded run: the idle runner never woke)."""
    import threading

    from app.runner.wakeup import PostgresWatcher

    woken = threading.Event()
    watcher = PostgresWatcher(connection.settings_dict, woken.set).start()
    try:
        make_task(functions.add, args_in={"a": 1})  # at once: no wait between start() and the NOTIFY
        assert woken.wait(10), "the task saved just after start() woke nobody"
    finally:
        watcher.stop()
