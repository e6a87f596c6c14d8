"""Tests for app.context: what a running task sees (progress reports, stop requests) and who gets one."""

import math
import threading
import time
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from app import context as context_module
from app import events, registry
from app.context import PROGRESS_EVENT_GAP, TaskContext, accepts_context
from app.execution import execute
from app.status import RunStatus
from app.task import Task

_run_ids = iter(range(10_000_000, 20_000_000))


def make_context(**task: object) -> TaskContext:
    fields = {"pk": 7, "task_id": "t-7", "name": "importer", **task}
    return TaskContext(SimpleNamespace(**fields), run_id=next(_run_ids), attempt=2)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """app.context's own view of time.monotonic, set by the test."""
    fake = Clock()
    monkeypatch.setattr(context_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def progress_events(recorder: events.Recorder, run_id: int) -> list[dict]:
    assert events.publisher.flush(timeout=5)
    return [e for e in recorder.of_type(events.RUN_PROGRESS) if e["run"] == run_id]


# report_progress ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", ["0.5", None, True, False, [0.5], math.nan, math.inf, -math.inf])
def test_progress_must_be_a_finite_number(fraction):
    context = make_context()
    with pytest.raises(TypeError, match=r"progress must be a number from 0 to 1, got "):
        context.report_progress(fraction)
    assert context.progress is None


@pytest.mark.parametrize("fraction", [-0.01, 1.0001, 2, -1])
def test_progress_must_be_from_0_to_1(fraction):
    context = make_context()
    with pytest.raises(ValueError, match=rf"progress must be from 0 to 1, got {fraction}"):
        context.report_progress(fraction)
    assert context.progress is None


def test_progress_is_kept_as_a_float_with_a_short_message():
    context = make_context()
    context.report_progress(0, "starting")
    assert context.progress == 0.0
    assert isinstance(context.progress, float)
    context.report_progress(1, 42)
    assert (context.progress, context.progress_message) == (1.0, "42")
    context.report_progress(0.5, "x" * 500)
    assert context.progress_message == "x" * 200


def test_a_progress_event_names_the_task_and_run():
    context = make_context()
    with events.recording() as recorded:
        context.report_progress(0.25, "a quarter")
        [event] = progress_events(recorded, context.run_id)
    assert event["type"] == "run.progress"
    assert isinstance(event["at"], float)
    assert {k: event[k] for k in ("task", "task_id", "name", "run", "progress", "message")} == {
        "task": 7,
        "task_id": "t-7",
        "name": "importer",
        "run": context.run_id,
        "progress": 0.25,
        "message": "a quarter",
    }


def test_progress_events_are_throttled_but_the_value_is_always_kept(clock):
    context = make_context()
    with events.recording() as recorded:
        context.report_progress(0.1, "one")  # published: the first
        clock.now += PROGRESS_EVENT_GAP / 2
        context.report_progress(0.2, "two")  # too soon
        assert (context.progress, context.progress_message) == (0.2, "two")
        clock.now += PROGRESS_EVENT_GAP * 0.4
        context.report_progress(0.3, "three")  # still within the gap of "one"
        clock.now += PROGRESS_EVENT_GAP
        context.report_progress(0.4, "four")  # published
        context.report_progress(1.0, "done")  # the final one is always published ...
        context.report_progress(1.0, "done again")  # ... every time
        sent = progress_events(recorded, context.run_id)
    assert [(e["progress"], e["message"]) for e in sent] == [
        (0.1, "one"),
        (0.4, "four"),
        (1.0, "done"),
        (1.0, "done again"),
    ]
    assert (context.progress, context.progress_message) == (1.0, "done again")


def test_many_quick_reports_publish_a_handful_of_events():
    context = make_context()
    with events.recording() as recorded:
        started = time.monotonic()
        for step in range(1, 10_001):
            context.report_progress(step / 20_000)
        elapsed = time.monotonic() - started
        sent = progress_events(recorded, context.run_id)
    assert 1 <= len(sent) <= elapsed / PROGRESS_EVENT_GAP + 2
    assert context.progress == 0.5


# Stop requests ------------------------------------------------------------------------------------


def test_a_new_context_is_not_stopped():
    context = make_context()
    assert not context.stop_requested
    assert not context.cancelled
    assert (context.task_pk, context.task_id, context.task_name, context.attempt) == (7, "t-7", "importer", 2)
    assert context.wait(0.01) is False


def test_wait_wakes_up_when_a_stop_is_requested():
    context = make_context()
    timer = threading.Timer(0.05, context.request_stop)
    started = time.monotonic()
    timer.start()
    try:
        assert context.wait(30) is True
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert context.stop_requested
    assert not context.cancelled  # a runner stopping is not a cancel
    assert context.wait(30) is True  # stays set: returns at once


def test_cancel_sets_the_cancelled_flag_for_good():
    context = make_context()
    context.request_stop(cancel=True)
    assert context.stop_requested
    assert context.cancelled
    context.request_stop()  # the runner stopping afterwards does not undo the cancel
    assert context.cancelled


# Which functions get a context --------------------------------------------------------------------


def takes_context(n: int, context: TaskContext) -> int:
    return n


def takes_context_by_keyword(*, context: TaskContext = None) -> str:
    return "ok"


def stops_itself(context: TaskContext) -> str:
    assert isinstance(context, TaskContext)
    context.request_stop(cancel=True)
    return "ended early"


def plain(n: int) -> int:
    return n


def takes_anything(**kwargs: object) -> dict:
    return kwargs


class NoSignature:
    __signature__ = "not a Signature"

    def __call__(self) -> None:
        pass


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (takes_context, True),
        (takes_context_by_keyword, True),
        (lambda context: None, True),
        (plain, False),
        (takes_anything, False),  # only a parameter of that name gets one
        (NoSignature(), False),
        (len, False),
        ("not callable", False),
    ],
)
def test_accepts_context(func, expected):
    assert accepts_context(func) is expected


@pytest.fixture
def registered(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_functions", dict(registry._functions))
    for func in (takes_context, takes_context_by_keyword, stops_itself, plain):
        registry.register(func)


def path(func: object) -> str:
    return registry.dotted_path(func)


@pytest.mark.usefixtures("registered")
def test_context_is_not_an_argument_in_args_in():
    assert registry.signature_errors(path(takes_context), {"n": 1}) is None
    assert registry.signature_errors(path(takes_context_by_keyword), {}) is None
    assert "missing a required argument: 'n'" in registry.signature_errors(path(takes_context), {})
    assert registry.signature_errors(path(takes_context), {"n": 1, "context": {}}) == (
        "'context' is given by Conductor (a TaskContext), not in args_in"
    )
    # A function without a context parameter: "context" is just an unknown argument.
    assert "unexpected keyword argument 'context'" in registry.signature_errors(
        path(plain), {"n": 1, "context": 1}
    )


@pytest.mark.usefixtures("registered")
def test_a_task_passing_context_in_args_in_is_invalid():
    Task(func=path(takes_context), args_in={"n": 1}).clean()
    with pytest.raises(ValidationError) as caught:
        Task(func=path(takes_context), args_in={"n": 1, "context": None}).clean()
    assert "is given by Conductor" in caught.value.message_dict["args_in"][0]


@pytest.mark.usefixtures("registered")
def test_execute_hands_the_context_to_the_function_and_honours_a_cancel():
    task = Task(pk=1, task_id="x", name="self-stopper", func=path(stops_itself))
    context = TaskContext(task, run_id=None)
    outcome = execute(task, context)
    assert outcome.status == RunStatus.CANCELLED
    assert outcome.output == "ended early"
    plain_task = Task(pk=2, task_id="y", name="plain", func=path(takes_context), args_in={"n": 5})
    assert execute(plain_task).output == 5  # a context of its own when none is given
