"""The runner's heartbeats and recovery of dead runners (app.runner.heartbeats.Heartbeats)."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from app import events
from app.lifecycle import claim, sign_in
from app.runner.heartbeats import Heartbeats
from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db
SETTINGS = SimpleNamespace(HEARTBEAT=5.0, HEARTBEAT_TIMEOUT=15.0, CLOCK_SKEW_WARNING=2.0)
NOW = 1000.0


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind: str, **data: object) -> None:
        self.events.append((kind, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@pytest.fixture
def published() -> Published:
    return Published()


def heartbeats(published: Published) -> Heartbeats:
    return Heartbeats(SETTINGS, "me", published, retry_max=30.0)


def silent_runner_with_a_run(worker_id: str = "dead") -> tuple[RunnerProcess, TaskRun]:
    runner = sign_in(worker_id, threads=1)
    Task(func=functions.add, args_in={"a": 1}).save()
    [(_, run)] = claim(runner, limit=1)
    RunnerProcess.objects.filter(pk=runner.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    return runner, run


def test_a_beat_records_the_threads_and_schedules_the_next(published):
    me = sign_in("me", threads=2)
    beats = heartbeats(published)
    assert beats.due(NOW)

    beats.beat(me, [{"run": 1}], threads=2, now=NOW)

    assert RunnerProcess.objects.get(pk=me.pk).busy == 1
    assert not beats.due(NOW + 4.9)
    assert beats.due(NOW + 5)
    assert published.events[-1] == (
        events.RUNNER_HEARTBEAT,
        {"busy": 1, "threads": 2, "clock_offset": beats.offset},
    )


def test_the_offset_measured_at_a_beat_times_this_processs_events(published, monkeypatch):
    monkeypatch.setattr(events.publisher, "clock_offset", 99.0)  # restored after the test
    me = sign_in("me", threads=2)
    beats = heartbeats(published)

    beats.beat(me, [], threads=2, now=NOW)

    assert events.publisher.clock_offset == beats.offset != 99.0


def test_a_beat_recovers_a_runner_silent_for_longer_than_the_timeout(published):
    dead, run = silent_runner_with_a_run()
    me = sign_in("me", threads=2)

    heartbeats(published).beat(me, [], threads=2, now=NOW)

    assert TaskRun.objects.get(pk=run.pk).status == RunStatus.INTERRUPTED
    assert Task.objects.get(pk=run.task_id).status == TaskStatus.WAITING
    assert RunnerProcess.objects.get(pk=dead.pk).state == RunnerState.DEAD
    assert (events.RUNS_RECOVERED, {"dead_runner": "dead", "runs": [run.pk]}) in published.events


def test_a_runner_presumed_dead_signs_in_again(published):
    me = sign_in("me", threads=2)
    RunnerProcess.objects.filter(pk=me.pk).update(state=RunnerState.DEAD)

    heartbeats(published).beat(me, [], threads=2, now=NOW)

    assert RunnerProcess.objects.get(pk=me.pk).state == RunnerState.RUNNING
    assert published.kinds()[0] == events.RUNNER_PRESUMED_DEAD


def test_nobody_is_presumed_dead_while_the_database_was_away_and_just_after(published):
    _, run = silent_runner_with_a_run()
    me = sign_in("me", threads=2)
    beats = heartbeats(published)

    beats.database_lost()
    beats.recover_dead(me)
    beats.database_back(now=0.0)  # monotonic 0: the window it opens is long over
    assert beats.due(NOW)  # back: a heartbeat at once

    assert TaskRun.objects.get(pk=run.pk).status == RunStatus.RUNNING  # not while it was away
    beats.recover_dead(me)
    assert TaskRun.objects.get(pk=run.pk).status == RunStatus.INTERRUPTED
