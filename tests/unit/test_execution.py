"""Tests for app.execution: execute() runs one task's function and measures how it ended."""

import asyncio
import datetime
import decimal
import io
import math
import sys
import threading
import time
from pathlib import Path

import pytest

from app.context import TaskContext
from app.execution import RunCancelled, RunInterrupted, TimeLimitExceeded, execute, jsonable
from app.lifecycle import Outcome
from app.newthread import set_async_exc
from app.registry import register
from app.status import RunStatus
from app.task import Task
from tests import functions
from tests.conftest import wait_until

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


class InterruptibleRun:
    """execute() on a thread of its own, interrupted the way the runner does it."""

    def __init__(self, task: Task) -> None:
        self.context = TaskContext(task, run_id=None)
        self._outcome: list[Outcome] = []
        self.thread = threading.Thread(target=lambda: self._outcome.append(execute(task, self.context)))
        self.thread.start()

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        return self.context.interrupts.send(exc_type, lambda cls: set_async_exc(self.thread.ident, cls) == 1)

    def outcome(self) -> Outcome:
        self.thread.join(10)
        assert not self.thread.is_alive(), "the run did not end"
        return self._outcome[0]


def execute_in_a_thread(task: Task) -> Outcome:
    """As a worker runs it: not in the main thread, where a KeyboardInterrupt is Ctrl-C."""
    return InterruptibleRun(task).outcome()


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


@pytest.mark.parametrize("func", [raises_time_limit, raises_run_interrupted])
def test_conductors_interrupt_classes_raised_by_the_task_itself_fail_the_run(func):
    """Told apart by identity, not type: Conductor sent nothing into this run."""
    outcome = execute_in_a_thread(task_for(func, kill_time=2.5))

    assert outcome.status == RunStatus.FAILED
    assert outcome.error.startswith("Traceback (most recent call last)")


# --- BaseExceptions the task raises (issue 13) ----------------------------------------------------


@pytest.mark.parametrize(
    ("how", "last_line"),
    [
        ("SystemExit", "SystemExit: 1"),
        ("KeyboardInterrupt", "KeyboardInterrupt"),
        ("sys.exit", "SystemExit: 1"),
        ("exit", "SystemExit: None"),
        ("Departure", "tests.functions.Departure: leaving"),
    ],
)
def test_a_base_exception_the_task_raises_fails_the_run_with_its_traceback(how, last_line):
    outcome = execute_in_a_thread(task_for(functions.quits, {"how": how}))

    assert outcome.status == RunStatus.FAILED
    assert outcome.error.startswith("Traceback (most recent call last)")
    assert "in quits" in outcome.error
    assert outcome.error.rstrip().splitlines()[-1] == last_line


def test_keyboard_interrupt_in_the_main_thread_is_ctrl_c_and_stops_the_caller():
    """Task.run() in a shell: signals reach only the main thread, so there it is the person's Ctrl-C."""
    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyboardInterrupt):
        execute(task_for(functions.quits, {"how": "KeyboardInterrupt"}))


def test_the_time_limit_conductor_delivered_wins_over_the_system_exit_the_task_raised_then(tmp_path):
    journal = tmp_path / "journal"
    run = InterruptibleRun(task_for(functions.exits_after_time_limit, {"journal": str(journal)}, kill_time=1))
    wait_until(lambda: journal.exists())

    assert run.interrupt(TimeLimitExceeded) is True
    outcome = run.outcome()

    assert journal.read_text() == "started\ncaught TimeLimitExceeded\n"
    assert outcome.status == RunStatus.TIMED_OUT
    assert outcome.error.startswith("TimeLimitExceeded: ran longer than kill_time=1 s\n")
    assert "app.execution.TimeLimitExceeded" in outcome.error  # the interrupt, as Python formats it
    assert outcome.error.rstrip().endswith("SystemExit: 2")  # and what the task did next


@register
def returns_after_time_limit(journal: str) -> str:
    try:
        Path(journal).write_text("started\n")  # inside the try: the interrupt comes after this
        functions.busy(30)
    except TimeLimitExceeded:
        return "partial"
    return "whole"


def test_a_task_that_catches_its_time_limit_and_returns_is_timed_out_with_its_output(tmp_path):
    journal = tmp_path / "journal"
    run = InterruptibleRun(task_for(returns_after_time_limit, {"journal": str(journal)}, kill_time=1))
    wait_until(lambda: journal.exists())

    assert run.interrupt(TimeLimitExceeded) is True
    outcome = run.outcome()

    assert (outcome.status, outcome.output) == (RunStatus.TIMED_OUT, "partial")
    assert outcome.error == (
        "TimeLimitExceeded: ran longer than kill_time=1 s\nThe task caught it and returned.\n"
    )


def test_an_interrupt_is_sent_at_most_once_per_run(tmp_path):
    journal = tmp_path / "journal"
    run = InterruptibleRun(task_for(functions.exits_after_time_limit, {"journal": str(journal)}, kill_time=1))
    wait_until(lambda: journal.exists())

    assert run.interrupt(TimeLimitExceeded) is True
    assert run.interrupt(RunInterrupted) is False
    assert run.outcome().status == RunStatus.TIMED_OUT


# --- async def and awaitables (issue 12 item 5) ----------------------------------------------------


@register
async def leaves_a_task_behind(journal: str) -> str:
    """Starts a task it never awaits: it must not outlive the run."""

    async def lingers() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            Path(journal).write_text("cancelled with its run\n")
            raise

    leftovers.append(asyncio.get_running_loop().create_task(lingers()))
    await asyncio.sleep(0)
    return "left"


leftovers: list[asyncio.Task] = []


def test_an_async_function_is_awaited():
    outcome = execute(task_for(functions.async_add, {"a": 2, "b": 3}))

    assert (outcome.status, outcome.output, outcome.error) == (RunStatus.FINISHED, 5, "")


def test_a_plain_function_returning_a_coroutine_is_awaited():
    outcome = execute(task_for(functions.returns_a_coroutine, {"a": 2, "b": 3}))

    assert (outcome.status, outcome.output) == (RunStatus.FINISHED, 5)


def test_an_async_function_that_raises_fails_with_its_traceback():
    outcome = execute(task_for(functions.async_fail, {"message": "async kaboom"}))

    assert outcome.status == RunStatus.FAILED
    assert "in async_fail" in outcome.error
    assert outcome.error.rstrip().endswith("ValueError: async kaboom")


def test_an_async_function_prints_logs_and_reports_progress_into_its_run():
    outcome = execute(task_for(functions.async_say, {"text": "hello"}))

    assert outcome.output == "hello"
    assert "printed: hello\n" in outcome.log
    assert "INFO tests.functions: logged: hello" in outcome.log
    assert (outcome.progress, outcome.progress_message) == (0.5, "half of hello")


@pytest.mark.parametrize(
    ("interrupt", "status"),
    [(TimeLimitExceeded, RunStatus.TIMED_OUT), (RunCancelled, RunStatus.CANCELLED)],
)
def test_an_interrupt_cancels_the_coroutine_at_its_await(tmp_path, interrupt, status):
    journal = tmp_path / "journal"
    run = InterruptibleRun(task_for(functions.async_wait, {"journal": str(journal)}, kill_time=1))
    wait_until(lambda: journal.exists())

    assert run.interrupt(interrupt) is True
    outcome = run.outcome()

    assert outcome.status == status
    assert journal.read_text() == f"started\nCancelledError: {interrupt.__name__}: cancelled by Conductor\n"
    assert "CancelledError" in outcome.error


def test_tasks_an_async_run_leaves_behind_are_cancelled_when_it_ends(tmp_path):
    journal = tmp_path / "journal"

    outcome = execute(task_for(leaves_a_task_behind, {"journal": str(journal)}))

    assert outcome.output == "left"
    assert journal.read_text() == "cancelled with its run\n"
    assert leftovers.pop().cancelled()


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
