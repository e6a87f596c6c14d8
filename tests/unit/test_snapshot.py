"""Tests for app.snapshot: the JSON views match docs/protocol.md, and build_snapshot's shape and limits."""

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from app import conf, dbclock, events, registry, snapshot
from app.context import TaskContext
from app.lifecycle import Outcome
from app.runner.activerun import ActiveRun
from app.runnerprocess import RunnerProcess
from app.snapshot import (
    RECENT_RUNNERS,
    RECENT_RUNS,
    build_snapshot,
    epoch,
    function_info,
    last_line,
    live_status,
    run_outcome_state,
    run_state,
    runner_state,
    task_state,
)
from app.status import RunnerState, RunStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

PROTOCOL = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def documented_items() -> dict[str, set[str]]:
    """The field lists under "Snapshot items:" in docs/protocol.md, by item (runner, thread, task, run)."""
    section = PROTOCOL.split("Snapshot items:")[1].split("\n## ")[0]
    items = {}
    for entry in re.split(r"\n- ", "\n" + section.strip())[1:]:
        name = re.match(r"(\w+)", entry).group(1)
        items[name] = set(re.findall(r"`(\w+)`", entry))
    return items


def documented_events() -> set[str]:
    section = PROTOCOL.split("## Events")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([\w.]+)`", row.split("|")[1])}


def a_task(**fields) -> Task:
    values = {"pk": 3, "task_id": "abc", "name": "nightly", "func": "tests.functions.add", **fields}
    return Task(**values)


def a_runner(**fields) -> RunnerProcess:
    return RunnerProcess(pk=1, worker_id="host-1", host="host", pid=10, threads=4, **fields)


def test_the_documented_items_are_the_four_kinds():
    assert set(documented_items()) == {"runner", "thread", "task", "run"}


def test_task_state_has_every_documented_field():
    assert documented_items()["task"] <= set(task_state(a_task()))


def test_task_state_has_no_undocumented_field():
    assert set(task_state(a_task())) - documented_items()["task"] == set()


def test_run_state_has_the_documented_fields():
    run = TaskRun(pk=5, task=a_task())
    assert set(run_state(run)) == documented_items()["run"]


def test_runner_state_has_the_documented_fields():
    assert set(runner_state(a_runner())) == documented_items()["runner"]


def test_a_thread_as_a_runner_describes_it_has_the_documented_fields():
    thread = threading.Thread(target=lambda: None, name="nightly#5", daemon=True)
    active = ActiveRun(
        a_task(), TaskRun(pk=5), thread, TaskContext(a_task(), 5), time.monotonic(), deadline=None
    )
    # The snapshot adds the runner's id to each thread of its heartbeat.
    assert set(active.describe()) | {"runner"} == documented_items()["thread"]


@pytest.fixture
def runner_clock_behind() -> Iterator[float]:
    """This process's events timed as by a runner whose clock is 10 s behind the database's."""
    before = events.publisher.clock_offset
    events.set_clock_offset(10.0)
    yield 10.0
    events.set_clock_offset(before)


def test_run_outcome_state_is_a_run_with_its_log_tail(runner_clock_behind):
    run = TaskRun(pk=5, task=a_task(), status=RunStatus.RUNNING)
    outcome = Outcome(
        RunStatus.FAILED, 100.0, 102.5, output=None, error="Traceback\nValueError: no", log="x" * 5000,
        thread_name="nightly#5", thread_ident=77, progress=0.5, progress_message="half",
    )  # fmt: skip
    state = run_outcome_state(run, outcome)
    assert set(state) == documented_items()["run"] | {"log_tail"}
    assert state["status"] == "failed"
    # The outcome's times are the runner's clock; the page's are the database's.
    assert (state["started_at"], state["finished_at"], state["duration"]) == (110.0, 112.5, 2.5)
    assert state["error"] == "ValueError: no"
    assert state["log_tail"] == "x" * 2000
    assert (state["thread_name"], state["thread_ident"], state["progress"]) == ("nightly#5", 77, 0.5)


def test_every_event_kind_is_documented():
    kinds = {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and "." in value
    }
    kinds.discard(events.TASK_RESULT)  # sent to the asker as its own message type, not as an event
    assert kinds - documented_events() == set()
    assert documented_events() - kinds == set()


def test_task_state_values():
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    task = a_task(
        next_run=moment, last_run=None, output={"rows": list(range(1000))},
        error="Traceback\n  x\nKeyError: 'k'\n", status="waiting", last_status="",
    )  # fmt: skip
    state = task_state(task)
    assert state["next_run"] == moment.timestamp()
    assert state["last_run"] is None
    assert state["error"] == "KeyError: 'k'"
    assert isinstance(state["output"], str)  # a large output is cut to text
    assert len(state["output"]) <= 500
    assert state["status"] == "waiting"
    assert state["last_status"] == ""


def test_runner_state_heartbeat_age_is_measured_at_snapshot_time():
    now = timezone.now()
    runner = a_runner(heartbeat_at=now - timedelta(seconds=4.5), state=RunnerState.STOPPING)
    state = runner_state(runner, now)
    assert state["heartbeat_age"] == 4.5
    assert state["state"] == "stopping"
    assert state["heartbeat_at"] == epoch(runner.heartbeat_at)


@pytest.mark.parametrize(
    ("text", "line"), [("", ""), ("   \n", ""), ("one", "one"), ("a\nb\n\n", "b"), (None, "")]
)
def test_last_line(text, line):
    assert last_line(text) == line


def test_function_info_of_a_registered_function():
    assert function_info("tests.functions.say") == {
        "path": "tests.functions.say",
        "signature": "(text: str) -> str",
        "doc": "",
    }
    assert function_info("tests.functions.c_sleep")["doc"].startswith("Blocks in C")


def no_signature() -> None:
    pass


no_signature.__signature__ = "not a Signature"  # inspect.signature() raises TypeError


def test_function_info_when_there_is_no_signature(monkeypatch):
    monkeypatch.setattr(registry, "_functions", dict(registry._functions))
    registry.register(no_signature)
    info = function_info(f"{__name__}.no_signature")
    assert info["signature"] == "(...)"


def test_live_status(monkeypatch):
    monkeypatch.setattr("app.livelayer.runner_in_process", False)
    monkeypatch.setattr(snapshot, "layer_reaches_other_processes", lambda: False)
    status = live_status()
    assert status["ok"] is False
    # What configures a layer in any project; REDIS_URL only as what this repository's settings read.
    assert "CHANNEL_LAYERS" in status["reason"]
    assert "django-conductor[redis]" in status["reason"]
    assert "in Conductor's own project, REDIS_URL" in status["reason"]
    monkeypatch.setattr(snapshot, "layer_reaches_other_processes", lambda: True)
    assert live_status() == {"ok": True, "reason": ""}
    monkeypatch.setattr(snapshot, "layer_reaches_other_processes", lambda: False)
    monkeypatch.setattr("app.livelayer.runner_in_process", True)
    assert live_status() == {"ok": True, "reason": ""}


# build_snapshot -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_build_snapshot_shape_for_an_empty_database():
    result = build_snapshot(AnonymousUser())
    assert set(result) == {
        "type", "protocol", "at", "live", "clock_skew_warning", "user", "functions", "runners", "threads",
        "tasks", "runs",
    }  # fmt: skip
    assert result["type"] == "snapshot"
    assert result["protocol"] == 3  # docs/protocol.md: version 3
    assert set(result["live"]) == {"ok", "reason"}
    assert result["user"] == {"name": "", "can_change": False, "can_add": False}
    assert (result["runners"], result["threads"], result["tasks"], result["runs"]) == ([], [], [], [])
    assert [f["path"] for f in result["functions"]] == registry.names()
    assert all(set(f) == {"path", "signature", "doc"} for f in result["functions"])


@pytest.mark.django_db
def test_a_snapshot_is_timed_by_the_databases_clock_and_says_the_skew_warning():
    before = dbclock.now().timestamp()
    result = build_snapshot(AnonymousUser())
    assert before <= result["at"] <= dbclock.now().timestamp()  # the page's clock: heartbeats' and events'
    assert result["clock_skew_warning"] == conf.get().CLOCK_SKEW_WARNING


@pytest.mark.django_db
def test_build_snapshot_keeps_to_its_limits_newest_first(django_user_model):
    user = django_user_model.objects.create_superuser("admin", password=None)
    now = timezone.now()
    for number in range(RECENT_RUNNERS + 2):
        RunnerProcess.objects.create(
            worker_id=f"w{number}", host="h", pid=number + 1, heartbeat_at=now - timedelta(seconds=number),
            state=RunnerState.STOPPED if number % 2 else RunnerState.RUNNING,
            threads_state=[{"run": number, "name": f"t{number}"}],
        )  # fmt: skip
    task = Task(func=functions.add, args_in={"a": 1})
    task.save()
    TaskRun.objects.bulk_create(
        [TaskRun(task=task, started_at=now - timedelta(seconds=n)) for n in reversed(range(RECENT_RUNS + 5))]
    )  # claimed in the order they started, as runners do
    result = build_snapshot(user)
    assert result["user"] == {"name": "admin", "can_change": True, "can_add": True}
    assert [r["worker_id"] for r in result["runners"]] == [f"w{n}" for n in range(RECENT_RUNNERS)]
    # Only running (or stopping) runners' threads, each tagged with its runner.
    runner_ids = {r["worker_id"]: r["id"] for r in result["runners"]}
    assert [t["name"] for t in result["threads"]] == [f"t{n}" for n in range(0, RECENT_RUNNERS, 2)]
    assert all(t["runner"] == runner_ids[f"w{t['run']}"] for t in result["threads"])
    assert len(result["runs"]) == RECENT_RUNS
    starts = [r["started_at"] for r in result["runs"]]
    assert starts == sorted(starts, reverse=True)
    assert starts[0] == now.timestamp()  # the newest ones
    assert [t["id"] for t in result["tasks"]] == [task.pk]


@pytest.mark.django_db
def test_build_snapshot_leaves_out_threads_whose_run_ended_after_the_heartbeat(django_user_model):
    user = django_user_model.objects.create_superuser("admin", password=None)
    task = Task(func=functions.add, args_in={"a": 1})
    task.save()
    now = timezone.now()
    ended, running = TaskRun.objects.bulk_create(
        [TaskRun(task=task, started_at=now, status=RunStatus.FINISHED, finished_at=now),
         TaskRun(task=task, started_at=now, status=RunStatus.RUNNING)]
    )  # fmt: skip
    # The heartbeat was written while both ran; one ended since, and RECENT_RUNS newer runs hide it.
    TaskRun.objects.bulk_create(
        [
            TaskRun(task=task, started_at=now + timedelta(seconds=1), status=RunStatus.FINISHED)
            for _ in range(RECENT_RUNS)
        ]
    )
    RunnerProcess.objects.create(
        worker_id="w", host="h", pid=1, heartbeat_at=now, state=RunnerState.RUNNING,
        threads_state=[{"run": ended.pk, "name": "a"}, {"run": running.pk, "name": "b"}],
    )  # fmt: skip
    result = build_snapshot(user)
    assert ended.pk not in {run["id"] for run in result["runs"]}
    assert [thread["name"] for thread in result["threads"]] == ["b"]
