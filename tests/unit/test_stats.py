"""Tests for app.stats: the charts' aggregates are the database's numbers."""

from datetime import timedelta

import pytest
from django.utils import timezone

from app.stats import charts
from app.status import RunStatus
from app.task import Task
from app.taskrun import TaskRun

pytestmark = pytest.mark.django_db


def test_runs_per_minute_durations_and_depth():
    now = timezone.now().replace(second=30, microsecond=0)
    task = Task(name="t", func="tests.functions.add", args_in={"a": 1}, queue="mail", run_in=3600)
    task.save()
    for n, duration in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        TaskRun.objects.create(task=task, status=RunStatus.FINISHED, duration=duration,
                               finished_at=now - timedelta(minutes=n % 2))  # fmt: skip
    TaskRun.objects.create(task=task, status=RunStatus.FAILED, duration=0.5, finished_at=now)
    TaskRun.objects.create(
        task=task, status=RunStatus.FINISHED, duration=9.0, finished_at=now - timedelta(hours=2)
    )

    result = charts(now + timedelta(seconds=1))

    minutes = {row["minute"]: row for row in result["runs_per_minute"]}
    this_minute = minutes[now.replace(second=0).timestamp()]
    assert (this_minute["queue"], this_minute["finished"], this_minute["failed"]) == ("mail", 3, 1)
    assert minutes[(now - timedelta(minutes=1)).replace(second=0).timestamp()]["finished"] == 2
    [durations] = result["durations"]
    assert durations["runs"] == 6
    assert (durations["p50"], durations["p95"], durations["p99"]) == (3.0, 100.0, 100.0)
    [depth] = result["queue_depth"]
    assert (depth["queue"], depth["waiting"], depth["due"]) == ("mail", 1, 0)


def test_charts_group_runs_by_the_queue_and_function_they_ran_in():
    now = timezone.now().replace(second=30, microsecond=0)
    task = Task(name="t", func="tests.functions.add", args_in={"a": 1}, queue="mail", run_in=3600)
    task.save()
    TaskRun.objects.create(task=task, status=RunStatus.FINISHED, duration=1.0, finished_at=now)
    Task.objects.filter(pk=task.pk).update(queue="post", func="tests.functions.say")  # edited since
    TaskRun.objects.create(task=Task.objects.get(pk=task.pk), status=RunStatus.FAILED, duration=2.0,
                           finished_at=now)  # fmt: skip

    result = charts(now + timedelta(seconds=1))

    by_queue = {row["queue"]: (row["finished"], row["failed"]) for row in result["runs_per_minute"]}
    assert by_queue == {"mail": (1, 0), "post": (0, 1)}
    by_function = {row["func"]: row["runs"] for row in result["durations"]}
    assert by_function == {"tests.functions.add": 1, "tests.functions.say": 1}
