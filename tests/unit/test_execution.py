"""Tests for app.execution: execute() runs one task's function and measures how it ended."""

import datetime
import decimal
import io
import math
import sys
import threading
import time

import pytest

from app.execution import RunInterrupted, TimeLimitExceeded, execute, jsonable
from app.registry import register
from app.status import RunStatus
from app.task import Task
from app.taskrun import Outcome
from tests import functions

calls: list[str] = []


@register
def returns_a_set() -> set:
    return {1, 2}


@register
def returns_a_datetime() -> datetime.datetime:
    return datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


@register
def returns_inf() -> float:
    return math.inf


@register
def raises_time_limit() -> None:
    raise TimeLimitExceeded()


@register
def raises_run_interrupted() -> None:
    raise RunInterrupted()


def not_registered() -> None:
    """Deliberately not registered: execute() must never call it."""
    calls.append("not_registered")


def task_for(func, args_in=None, **kwargs) -> Task:
    """An unsaved Task: execute() needs no database."""
    return Task(func=func, args_in=args_in, **kwargs)


def test_finished_outcome_has_the_output_and_timing():
    before = time.time()
    outcome = execute(task_for(functions.add, {"a": 2, "b": 3}))
    after = time.time()

    assert isinstance(outcome, Outcome)
    assert outcome.status == RunStatus.FINISHED
    assert outcome.output == 5
    assert outcome.error == ""
    assert before <= outcome.started <= outcome.finished <= after
    assert outcome.duration == outcome.finished - outcome.started


def test_execute_runs_in_the_calling_thread():
    outcome = execute(task_for(functions.stamp))

    assert outcome.thread_ident == threading.get_ident()
    assert outcome.thread_name == threading.current_thread().name


def test_args_in_none_calls_without_arguments():
    before = time.time()

    outcome = execute(task_for(functions.stamp, None))

    assert outcome.status == RunStatus.FINISHED
    assert outcome.output >= before


def test_log_captures_prints_and_log_records():
    outcome = execute(task_for(functions.say, {"text": "hello"}))

    assert outcome.output == "hello"
    assert "printed: hello\n" in outcome.log
    assert "INFO tests.functions: logged: hello" in outcome.log


def test_failed_outcome_has_the_traceback():
    outcome = execute(task_for(functions.fail, {"message": "kaboom"}))

    assert outcome.status == RunStatus.FAILED
    assert outcome.output is None
    assert outcome.error.startswith("Traceback (most recent call last)")
    assert "raise ValueError(message)" in outcome.error
    assert outcome.error.rstrip().endswith("ValueError: kaboom")


def test_failing_task_with_use_pdb_does_not_hang_without_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "__stdin__", io.StringIO())  # not a terminal, even under pytest -s

    outcome = execute(task_for(functions.fail, {"message": "no pdb"}, use_pdb=True))

    assert outcome.status == RunStatus.FAILED
    assert "ValueError: no pdb" in outcome.error
    assert outcome.log.count("[conductor] use_pdb skipped: the runner has no terminal") == 1


def test_unregistered_function_fails_without_being_called():
    calls.clear()

    outcome = execute(task_for("tests.unit.test_execution.not_registered"))

    assert calls == []
    assert outcome.status == RunStatus.FAILED
    assert "UnknownFunction" in outcome.error
    assert "'tests.unit.test_execution.not_registered' is not a registered task function" in outcome.error


def test_arguments_that_do_not_fit_fail_the_run():
    outcome = execute(task_for(functions.add, {"a": 1, "zzz": 2}))

    assert outcome.status == RunStatus.FAILED
    assert "unexpected keyword argument 'zzz'" in outcome.error


def test_non_json_output_is_stored_as_its_repr():
    assert execute(task_for(returns_a_set)).output == "{1, 2}"
    assert execute(task_for(returns_a_datetime)).output == repr(returns_a_datetime())


def test_time_limit_exceeded_is_a_timed_out_outcome():
    outcome = execute(task_for(raises_time_limit, kill_time=2.5))

    assert outcome.status == RunStatus.TIMED_OUT
    assert outcome.error.startswith("TimeLimitExceeded: ran longer than kill_time=2.5 s\n")


def test_run_interrupted_is_an_interrupted_outcome():
    outcome = execute(task_for(raises_run_interrupted))

    assert outcome.status == RunStatus.INTERRUPTED
    assert "RunInterrupted" in outcome.error


# --- jsonable ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 3, 2.5, "text", [1, "a"], {"k": [1, {"n": None}]}],
)
def test_jsonable_keeps_what_json_can_hold(value):
    assert jsonable(value) == value


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), decimal.Decimal("1.5"), b"bytes", {"k": {1, 2}}, datetime.date(2024, 1, 2)],
)
def test_jsonable_replaces_the_rest_by_its_repr(value):
    assert jsonable(value) == repr(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, -math.inf], {"k": math.nan}])
def test_jsonable_replaces_non_finite_floats(value):
    assert jsonable(value) == repr(value)


def test_non_finite_output_is_stored_as_its_repr():
    outcome = execute(task_for(returns_inf))

    assert outcome.status == RunStatus.FINISHED
    assert outcome.output == "inf"
