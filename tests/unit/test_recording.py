"""lifecycle.finish_many: one fenced UPDATE ... RETURNING per batch; run.task left as the database has it."""

import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from app import lifecycle
from app.lease import DB_USE, Lease
from app.lifecycle import REFUSED, Outcome, recording
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db


def claimed(count: int = 1, runner: RunnerProcess | None = None, **fields) -> list[TaskRun]:
    """``count`` new tasks, claimed: their open runs (each run's ``task`` is the claimed task)."""
    for _ in range(count):
        Task(func=functions.add, args_in={"a": 1}, **fields).save()
    runs = [run for _, run in lifecycle.claim(runner, limit=count)]
    assert len(runs) == count
    return runs


def outcome(status: str = RunStatus.FINISHED, **fields) -> Outcome:
    now = time.time()
    return Outcome(status, now - 1, now, **fields)


def columns(task: Task) -> dict:
    """Every column of the task, with the type of its value (1 and 1.0, or 1 and True, are not alike)."""
    return {
        f.attname: (getattr(task, f.attname), type(getattr(task, f.attname)))
        for f in Task._meta.concrete_fields
    }


def test_run_task_is_left_as_the_database_has_it():
    runs = claimed(3, loop=True, interval=60, kill_time=5, max_attempts=2)
    batch = [
        (runs[0], outcome()),
        (runs[1], outcome(RunStatus.FAILED)),
        (runs[2], outcome(RunStatus.INTERRUPTED)),
    ]

    assert lifecycle.finish_many(batch) == [True, True, True]

    for run in runs:
        assert columns(run.task) == columns(Task.objects.get(pk=run.task_id))


def test_run_task_shows_changes_made_by_others_during_the_run():
    [run] = claimed(runner=RunnerProcess.objects.create(worker_id="w", host="h", pid=1))
    assert run.task.runner is not None
    Task.objects.get(pk=run.task_id).set_paused(True)

    lifecycle.finish(run, outcome())

    assert run.task.paused
    assert run.task.runner_id is None
    assert run.task.runner is None  # the cached runner went with its id


def test_a_batch_is_one_update_of_its_tasks_and_one_per_kind_of_run_without_reading_back():
    runs = claimed(4)
    Task.objects.filter(pk=runs[3].task_id).update(fence=F("fence") + 1)  # claimed again since

    with CaptureQueriesContext(connection) as queries:
        lifecycle.finish_many([(run, outcome()) for run in runs])

    # Besides the test's transaction, PostgreSQL's batches read the server's clock once (app/dbclock.py).
    sql = [
        query["sql"]
        for query in queries
        if "SAVEPOINT" not in query["sql"] and "_timestamp()" not in query["sql"]
    ]
    pattern = r'(?:(\d+) times: )?(?:WITH o \(.*?\) AS \(VALUES (.*)\) )?(\w+) "(\w+)"'
    shapes = [re.match(pattern, statement).groups() for statement in sql]
    assert [(times, verb, table) for times, _, verb, table in shapes] == [
        (None, "UPDATE", "conductor_task"),
        ("3", "UPDATE", "conductor_taskrun"),  # accepted
        ("1", "UPDATE", "conductor_taskrun"),  # refused
    ]
    assert shapes[0][1].count("), (") == 3  # one row of outcomes per run


def test_a_large_batch_is_recorded_a_statement_per_chunk(monkeypatch):
    monkeypatch.setattr(recording, "OUTCOMES_PER_STATEMENT", 2)
    runs = claimed(5)
    Task.objects.filter(pk=runs[2].task_id).update(fence=F("fence") + 1)  # claimed again since

    with CaptureQueriesContext(connection) as queries:
        accepted = lifecycle.finish_many([(run, outcome(output=n)) for n, run in enumerate(runs)])

    assert accepted == [True, True, False, True, True]
    assert sum('UPDATE "conductor_task" SET' in query["sql"] for query in queries) == 3
    assert [run.task.output for run in runs] == [0, 1, None, 3, 4]


def test_a_refused_run_and_a_newer_run_of_the_same_task_in_one_batch():
    """Outcomes are matched to tasks by id and fence: the newer claim's run is the one that counts."""
    [old] = claimed()
    Task.objects.filter(pk=old.task_id).update(status=TaskStatus.WAITING)  # recovered, as if elsewhere
    [new] = [run for _, run in lifecycle.claim(None, limit=1)]
    assert (new.task_id, new.fence) == (old.task_id, old.fence + 1)

    assert lifecycle.finish_many([(old, outcome(output="late")), (new, outcome(output="new"))]) == [
        False,
        True,
    ]

    assert Task.objects.get(pk=new.task_id).output == "new"


def test_a_loop_stopped_during_the_run_ends_with_the_status_of_a_one_off():
    [run] = claimed(loop=True, interval=3600)
    scheduled = run.task.next_run
    Task.objects.get(pk=run.task_id).stop_looping()

    assert lifecycle.finish_many([(run, outcome(RunStatus.FAILED))]) == [True]

    assert (run.task.status, run.task.loop, run.task.next_run) == (TaskStatus.FAILED, False, scheduled)
    assert (run.task.attempt, run.task.run_count) == (0, 1)


def test_a_loop_goes_on_to_its_next_period():
    [run] = claimed(loop=True, interval=3600)
    scheduled = run.task.next_run

    lifecycle.finish(run, outcome())

    assert (run.task.status, run.task.next_run) == (TaskStatus.WAITING, scheduled + timedelta(seconds=3600))
    assert (run.task.attempt, run.task.run_count, run.task.last_status) == (0, 1, RunStatus.FINISHED)


def test_a_loop_that_reached_max_runs_ends():
    [run] = claimed(loop=True, interval=3600, max_runs=1)

    lifecycle.finish(run, outcome())

    assert (run.task.status, run.task.loop, run.task.run_count) == (TaskStatus.FINISHED, True, 1)


def test_a_failed_try_with_tries_left_waits_for_its_retry():
    [run] = claimed(max_attempts=3)

    lifecycle.finish(run, outcome(RunStatus.FAILED, error="boom"))

    stored = TaskRun.objects.get(pk=run.pk)
    assert (run.task.status, run.task.next_run) == (TaskStatus.WAITING, stored.retry_at)
    assert (run.task.attempt, run.task.run_count, run.task.error) == (1, 0, "boom")
    assert (stored.status, stored.error) == (RunStatus.FAILED, "boom")


def test_an_interrupted_run_makes_its_task_due_now_and_keeps_its_try():
    [run] = claimed(max_attempts=3)
    before = time.time()

    lifecycle.finish(run, outcome(RunStatus.INTERRUPTED))

    assert run.task.status == TaskStatus.WAITING
    assert before <= run.task.next_run.timestamp() <= time.time()
    assert (run.task.attempt, run.task.run_count) == (1, 0)


def test_an_overrunning_run_stays_timed_out():
    [run] = claimed()
    assert lifecycle.mark_overrunning(run)

    lifecycle.finish(run, outcome(RunStatus.FINISHED))

    assert TaskRun.objects.get(pk=run.pk).status == RunStatus.TIMED_OUT
    assert run.task.status == TaskStatus.TIMED_OUT


def test_refused_runs_in_a_mixed_batch():
    runner = RunnerProcess.objects.create(worker_id="lost", host="h", pid=1)
    [lost], [kept] = claimed(runner=runner), claimed(db_use=True)
    [again, accepted] = claimed(2)
    lifecycle.recover(RunnerProcess.objects.filter(pk=runner.pk), "presumed dead in a test")
    Task.objects.filter(pk=again.task_id).update(fence=F("fence") + 1)  # claimed again since
    refused_tasks = [columns(run.task) for run in (lost, again)]
    batch = [
        (lost, outcome(output="late")),
        (again, outcome(output="late")),
        (accepted, outcome(output=1)),
    ]

    assert lifecycle.finish_many(batch) == [False, False, True]

    assert [columns(run.task) for run in (lost, again)] == refused_tasks  # left as they were
    assert TaskRun.objects.get(pk=lost.pk).error == "presumed dead in a test"  # closed by recovery
    stored = TaskRun.objects.get(pk=again.pk)
    assert (stored.status, stored.output) == (RunStatus.INTERRUPTED, "late")
    assert stored.error.startswith(REFUSED)
    assert Task.objects.get(pk=again.task_id).status == TaskStatus.RUNNING
    assert (accepted.task.status, accepted.task.output) == (TaskStatus.FINISHED, 1)
    assert kept.task.status == TaskStatus.RUNNING  # not in the batch


def test_the_db_use_lease_is_freed_by_an_accepted_run_only():
    [run] = claimed(db_use=True)
    assert Lease.objects.get(name=DB_USE).task_id == run.task_id

    assert lifecycle.finish_many([(run, outcome())]) == [True]

    assert Lease.objects.get(name=DB_USE).task_id is None


def test_the_db_use_lease_is_freed_even_if_db_use_was_cleared_during_the_run():
    [run] = claimed(db_use=True)
    Task.objects.filter(pk=run.task_id).update(db_use=False)

    lifecycle.finish(run, outcome())

    assert Lease.objects.get(name=DB_USE).task_id is None
    assert not run.task.db_use


def test_the_db_use_lease_of_a_newer_claim_is_kept():
    [run] = claimed(db_use=True)
    Task.objects.filter(pk=run.task_id).update(fence=F("fence") + 1)  # claimed again since

    assert lifecycle.finish_many([(run, outcome())]) == [False]

    assert Lease.objects.get(name=DB_USE).task_id == run.task_id


@pytest.mark.parametrize(
    "output",
    [
        {
            "city": "Zürich",
            "greeting": "こんにちは ✓",
            "nested": {"list": [1, 2.5, None, True, {"deep": ["é"]}]},
        },
        ["a", ["b", ["c"]], {}],
        'plain text with a quote " and a backslash \\',
        0,
        False,
        None,
    ],
)
def test_json_outputs_round_trip(output):
    [run] = claimed()

    lifecycle.finish(run, outcome(output=output))

    assert run.task.output == output
    assert type(run.task.output) is type(output)
    assert Task.objects.get(pk=run.task_id).output == output
    assert TaskRun.objects.get(pk=run.pk).output == output


def test_a_whole_number_float_stays_a_float():
    [run] = claimed(loop=True, interval=60.0, kill_time=5.0, retry_delay=1.0, max_runs=9)

    lifecycle.finish(run, outcome())

    for field in ("interval", "kill_time", "retry_delay", "retry_delay_max", "run_in"):
        assert type(getattr(run.task, field)) is float, field
    assert (run.task.interval, run.task.kill_time) == (60.0, 5.0)
    assert type(run.task.loop) is bool
    assert run.task.next_run.tzinfo is not None


def test_an_empty_batch_records_nothing():
    assert lifecycle.finish_many([]) == []


def test_without_refresh_the_same_is_recorded_and_run_task_is_left_alone():
    runs = claimed(2, loop=True, interval=60)
    before = [columns(run.task) for run in runs]

    assert lifecycle.finish_many(
        [(runs[0], outcome()), (runs[1], outcome(RunStatus.FAILED))], refresh=False
    ) == [
        True,
        True,
    ]

    assert [columns(run.task) for run in runs] == before  # nobody asked for the new states
    stored = [Task.objects.get(pk=run.task_id) for run in runs]
    assert [task.status for task in stored] == [TaskStatus.WAITING, TaskStatus.WAITING]  # loops go on
    assert [task.last_status for task in stored] == [RunStatus.FINISHED, RunStatus.FAILED]
    assert [TaskRun.objects.get(pk=run.pk).status for run in runs] == [RunStatus.FINISHED, RunStatus.FAILED]
