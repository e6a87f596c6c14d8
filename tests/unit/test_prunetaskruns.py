"""``manage.py prunetaskruns --older-than DAYS [--keep-failed] [--dry-run]`` on a real database."""

import io
import math
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app.management.commands.prunetaskruns import CHUNK
from app.status import RunStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


@pytest.fixture
def task() -> Task:
    task = Task(name="history", func=functions.add, args_in={"a": 1})
    task.save()
    return task


def make_run(task: Task, status: str, finished_days_ago: float | None, started_days_ago: float = 400):
    """A run that started ``started_days_ago`` and finished ``finished_days_ago`` (None: still open)."""
    now = timezone.now()
    finished = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
    return TaskRun.objects.create(
        task=task,
        status=status,
        started_at=now - timedelta(days=started_days_ago),
        finished_at=finished,
        duration=None if finished is None else 1.0,
    )


def prune(*arguments: str) -> str:
    out = io.StringIO()
    call_command("prunetaskruns", *arguments, stdout=out)
    return out.getvalue()


def remaining(runs: dict[str, TaskRun]) -> set[str]:
    left = set(TaskRun.objects.values_list("pk", flat=True))
    return {name for name, run in runs.items() if run.pk in left}


@pytest.fixture
def history(task) -> dict[str, TaskRun]:
    return {
        "old_finished": make_run(task, RunStatus.FINISHED, 40),
        "old_failed": make_run(task, RunStatus.FAILED, 40),
        "old_timed_out": make_run(task, RunStatus.TIMED_OUT, 40),
        "old_interrupted": make_run(task, RunStatus.INTERRUPTED, 40),
        "old_cancelled": make_run(task, RunStatus.CANCELLED, 31),
        "new_finished": make_run(task, RunStatus.FINISHED, 29, started_days_ago=29),
        "new_failed": make_run(task, RunStatus.FAILED, 1, started_days_ago=1),
        # Open runs are never touched, however long ago they started.
        "running": make_run(task, RunStatus.RUNNING, None),
        "overrunning": make_run(task, RunStatus.TIMED_OUT, None),
    }


def test_deletes_finished_runs_older_than_the_days_given(history):
    output = prune("--older-than", "30")

    assert remaining(history) == {"new_finished", "new_failed", "running", "overrunning"}
    assert output.startswith("Deleted 5 runs finished before ")
    assert output.rstrip().endswith("UTC.")


def test_keeps_the_task_itself(history, task):
    prune("--older-than", "30")

    task.refresh_from_db()
    assert Task.objects.filter(pk=task.pk).exists()


def test_keep_failed_keeps_failed_and_timed_out_runs(history):
    output = prune("--older-than", "30", "--keep-failed")

    assert remaining(history) == {
        "old_failed", "old_timed_out", "new_finished", "new_failed", "running", "overrunning"
    }  # fmt: skip
    assert output.startswith("Deleted 3 runs ")


def test_dry_run_deletes_nothing_and_says_how_many(history):
    before = TaskRun.objects.count()

    output = prune("--older-than", "30", "--dry-run")

    assert TaskRun.objects.count() == before
    assert output.startswith("Would delete 5 runs finished before ")


def test_dry_run_with_keep_failed(history):
    output = prune("--older-than", "30", "--dry-run", "--keep-failed")

    assert output.startswith("Would delete 3 runs ")
    assert len(remaining(history)) == len(history)


def test_the_cutoff_is_now_minus_the_days(history):
    output = prune("--older-than", "30", "--dry-run")

    cutoff = timezone.now() - timedelta(days=30)
    assert f"before {cutoff:%Y-%m-%d} " in output


def test_fractional_days(task):
    hour_old = make_run(task, RunStatus.FINISHED, 1 / 24)
    ten_minutes_old = make_run(task, RunStatus.FINISHED, 10 / (24 * 60))

    output = prune("--older-than", "0.02")  # about 29 minutes

    assert output.startswith("Deleted 1 runs ")
    assert not TaskRun.objects.filter(pk=hour_old.pk).exists()
    assert TaskRun.objects.filter(pk=ten_minutes_old.pk).exists()


def test_nothing_to_delete(task):
    make_run(task, RunStatus.FINISHED, 1)

    assert prune("--older-than", "30").startswith("Deleted 0 runs ")
    assert prune("--older-than", "30", "--dry-run").startswith("Would delete 0 runs ")
    assert TaskRun.objects.count() == 1


def test_many_runs_are_deleted_in_chunks(task):
    total = 2500
    old = timezone.now() - timedelta(days=90)
    TaskRun.objects.bulk_create(
        [
            TaskRun(task=task, status=RunStatus.FINISHED, started_at=old, finished_at=old, duration=0.1)
            for _ in range(total)
        ],
        batch_size=500,
    )
    keep = make_run(task, RunStatus.FINISHED, 1)

    with CaptureQueriesContext(connection) as queries:
        output = prune("--older-than", "30")

    assert output.startswith(f"Deleted {total} runs ")
    assert list(TaskRun.objects.values_list("pk", flat=True)) == [keep.pk]
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert len(deletes) >= math.ceil(total / CHUNK), deletes  # never one statement for everything
    assert total > CHUNK


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("x", "--older-than takes a number of days, got 'x'", id="x"),
        pytest.param("", "--older-than takes a number of days, got ''", id="empty"),
        pytest.param("0", "--older-than takes a number of days above 0 and under 36500, got '0'", id="zero"),
        pytest.param(
            "-1", "--older-than takes a number of days above 0 and under 36500, got '-1'", id="negative"
        ),
        pytest.param(
            "nan", "--older-than takes a number of days above 0 and under 36500, got 'nan'", id="nan"
        ),
    ],
)
def test_bad_older_than_is_refused_naming_the_option(history, value, message):
    with pytest.raises(CommandError) as caught:
        prune("--older-than", value)

    assert str(caught.value) == message
    assert len(remaining(history)) == len(history)


@pytest.mark.parametrize("value", ["inf", "1e9", "36500"])
def test_too_many_days_is_refused(history, value):
    with pytest.raises(CommandError) as caught:
        prune("--older-than", value)

    assert str(caught.value).startswith("--older-than ")
    assert f"got {value!r}" in str(caught.value)
    assert len(remaining(history)) == len(history)


@pytest.mark.parametrize("value", ["inf", "1e9"])
def test_too_many_days_message_says_the_limit(value):
    with pytest.raises(CommandError) as caught:
        prune("--older-than", value)

    assert "36500" in str(caught.value)


def test_older_than_is_required(history):
    with pytest.raises(CommandError) as caught:
        prune()

    assert "--older-than" in str(caught.value)
    assert len(remaining(history)) == len(history)


def test_from_manage_py_keyword_form(history):
    out = io.StringIO()
    call_command("prunetaskruns", older_than="30", keep_failed=True, dry_run=True, stdout=out)

    assert out.getvalue().startswith("Would delete 3 runs ")
