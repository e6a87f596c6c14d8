"""Tests for app.actions: what the admin's and the dashboard's actions do, and what they tell others.

News of a changed task goes through app/events.py (``publish_now``) and reaches the feed as a frame, as
runners' events do; commands for runners go to their groups. A real in-memory channel layer carries both.
"""

import json

import pytest
from django.core.exceptions import ValidationError

from app import actions, dbclock
from app.bridge import RUNNERS_GROUP, runner_group
from app.fanout import FEED_GROUP
from app.runnerprocess import RunnerProcess
from app.status import TaskStatus
from app.task import Task, TaskActionError
from app.taskrun import TaskRun
from tests.conftest import make_user
from tests.integration.test_admin import Listener

pytestmark = pytest.mark.django_db


@pytest.fixture
def listener(fresh_channel_layer):
    listening = Listener()
    yield listening
    listening.leave()


def saved(**fields) -> Task:
    task = Task(name="t", func="tests.functions.add", args_in={"a": 1}, **fields)
    task.save()
    return task


def news(listener: Listener, channel: str) -> list[dict]:
    """The events of the frames that reached the feed, and every frame's (source, seq)."""
    frames = [json.loads(message["frame"]) for message in listener.received(channel)]
    return [
        dict(event, _seq=(frame["source"], frame["seq"])) for frame in frames for event in frame["events"]
    ]


def test_pause_and_resume_change_the_task_and_tell_the_feed_and_the_runners(listener):
    feed, runners = listener.join(FEED_GROUP), listener.join(RUNNERS_GROUP)
    task = saved(run_in=60)

    assert actions.pause(task) == "t paused"
    assert Task.objects.get(pk=task.pk).paused is True
    actions.resume(Task.objects.get(pk=task.pk))

    told = news(listener, feed)
    assert [(e["type"], e["state"]["paused"]) for e in told] == [
        ("task.changed", True),
        ("task.changed", False),
    ]
    first, second = (event["_seq"] for event in told)
    assert first[0] == second[0]  # one source,
    assert second[1] == first[1] + 1  # consecutive frames: no gap for pages to resync on
    assert {"type": "runner.command", "command": "wake"} in listener.received(runners)  # resume wakes


def test_run_now_makes_a_task_due_and_refuses_a_running_one(listener):
    task = saved(run_in=3600, paused=True)
    actions.run_now(task)
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.paused) == (TaskStatus.WAITING, False)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING)
    with pytest.raises(TaskActionError):
        actions.run_now(Task.objects.get(pk=task.pk))


def test_stop_loop_refuses_a_one_off(listener):
    with pytest.raises(TaskActionError):
        actions.stop_loop(saved())


def test_create_refuses_protected_fields_without_their_permissions(listener):
    clerk = make_user("clerk", perms=("add_task",))
    with pytest.raises(ValidationError) as refused:
        actions.create({"func": "tests.functions.add", "args_in": {"a": 1}, "use_pdb": True}, by=clerk)
    assert "use_pdb" in refused.value.message_dict
    task = actions.create(
        {"func": "tests.functions.add", "args_in": {"a": 1}}, conn="specific.me!1", by=clerk
    )
    assert task.conn == "specific.me!1"  # the asking socket's own channel needs no permission


def test_duplicate_keeps_the_definition_and_withholds_what_the_user_may_not_set(listener):
    original = saved(loop=True, interval=30, queue="mail", priority=3, use_pdb=True, max_attempts=2)
    copy = actions.duplicate(original, by=make_user("editor", perms=("add_task",)))
    kept = [name for name in Task.definition_fields() if name not in ("name", "use_pdb")]
    assert {n: getattr(copy, n) for n in kept} == {n: getattr(original, n) for n in kept}
    assert (copy.name, copy.use_pdb) == ("t (copy)", False)


def test_delete_news_names_only_the_task(listener):
    feed = listener.join(FEED_GROUP)
    actions.announce_deleted(41)
    [event] = news(listener, feed)
    assert (event["type"], event["task"]) == ("task.deleted", 41)


def test_a_web_processs_news_is_timed_by_the_databases_clock(listener):
    feed = listener.join(FEED_GROUP)
    before = dbclock.now().timestamp()
    actions.announce_deleted(41)
    after = dbclock.now().timestamp()
    [event] = news(listener, feed)
    assert before <= event["at"] <= after  # as the runners' events and the snapshot's "at" are


def test_cancel_goes_to_the_runner_that_runs_the_run_and_others_are_refused(listener):
    runner = RunnerProcess.objects.create(worker_id="far", host="h", pid=1)
    run = TaskRun.objects.create(task=saved(), runner=runner)
    inbox = listener.join(runner_group("far"))

    actions.cancel(actions.running_run(run.pk), by="editor", reply_to="specific.me!1", request=5)

    [command] = listener.received(inbox)
    assert (command["command"], command["run"], command["by"], command["request"]) == (
        "cancel",
        run.pk,
        "editor",
        5,
    )
    with pytest.raises(TaskActionError, match="no run"):
        actions.running_run(10**9)
