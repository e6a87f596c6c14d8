"""Tests for app.stats: the charts' aggregates are the database's numbers."""

from datetime import timedelta

import pytest
from django.utils import timezone

from app.history import HeartbeatSample, QueueDepthSample
from app.runnerprocess import RunnerProcess
from app.stats import charts, depth_history, heartbeats
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
    # Nearest rank of 6 durations (0.5, 1, 2, 3, 4, 100): p50 is the 3rd, p95 and p99 the 6th.
    assert (durations["p50"], durations["p95"], durations["p99"]) == (2.0, 100.0, 100.0)
    [depth] = result["queue_depth"]
    assert (depth["queue"], depth["waiting"], depth["due"]) == ("mail", 1, 0)


def test_the_depth_history_is_the_last_hours_samples_after_since():
    now = timezone.now()
    for minutes, waiting in ((90, 7), (50, 5), (10, 3)):
        bucket = now - timedelta(minutes=minutes)
        for queue in ("mail", "default"):
            QueueDepthSample.objects.create(bucket=bucket, queue=queue, waiting=waiting)

    history = depth_history(now)

    assert [(row["at"], row["queue"], row["waiting"]) for row in history] == [
        ((now - timedelta(minutes=50)).timestamp(), "default", 5),
        ((now - timedelta(minutes=50)).timestamp(), "mail", 5),
        ((now - timedelta(minutes=10)).timestamp(), "default", 3),
        ((now - timedelta(minutes=10)).timestamp(), "mail", 3),
    ]  # the 90-minute-old bucket is outside the charts' hour
    assert set(history[0]) == {"at", "queue", "due", "waiting", "running"}
    assert [row["waiting"] for row in depth_history(now, since=history[1]["at"])] == [3, 3]


def test_a_runners_heartbeats_are_its_last_hours_oldest_first_after_since():
    now = timezone.now()
    runner = RunnerProcess.objects.create(worker_id="r", host="h", pid=1)
    other = RunnerProcess.objects.create(worker_id="other", host="h", pid=2)
    for seconds in (4000, 30, 20, 10):
        HeartbeatSample.objects.create(runner=runner, at=now - timedelta(seconds=seconds), busy=seconds // 10)
    HeartbeatSample.objects.create(runner=other, at=now, busy=99)

    beats = heartbeats(runner, now)

    assert [beat["busy"] for beat in beats] == [3, 2, 1]
    assert set(beats[0]) == {"at", "busy", "threads", "clock_offset", "events_dropped"}
    assert [beat["busy"] for beat in heartbeats(runner, now, since=beats[0]["at"])] == [2, 1]


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


@pytest.mark.parametrize("durations", [[7.0], [2.0, 2.0, 2.0]])
def test_a_function_with_one_run_or_equal_runs_has_every_percentile(durations):
    now = timezone.now()
    task = Task(name="t", func="tests.functions.add", args_in={"a": 1}, run_in=3600)
    task.save()
    for duration in durations:
        TaskRun.objects.create(task=task, status=RunStatus.FINISHED, duration=duration, finished_at=now)

    [row] = charts(now + timedelta(seconds=1))["durations"]

    assert (row["p50"], row["p95"], row["p99"]) == (durations[0],) * 3
