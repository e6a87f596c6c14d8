"""Django's own tests of its tasks framework, ported to run on ConductorBackend with Conductor's runner.

From Django 6.1.3's sdist, ``tests/tasks/``: ``test_tasks.py`` (TaskTestCase), ``test_custom_backend.py``
(CustomTaskTestCase), ``test_dummy_backend.py`` (the parts that hold for any queueing backend: a task
waits, READY, until a worker runs it) and ``test_immediate_backend.py`` (what a task's run gives, here
run by Conductor's runner instead of at enqueue). Each test names the test it was ported from. Keep them
passing on every Django upgrade: compare with the new sdist's ``tests/tasks/``.

Left out, being tests of Django's toy backends' own features:
- test_tasks.py ``test_get_backend``'s ImmediateBackend class check (ported with a second Conductor alias);
- test_custom_backend.py CustomBackendTestCase (all five: the custom backend classes defined in that
  file, their logging ``prefix`` option, an abstract backend without ``enqueue``, and a backend without
  async or priority support, where Conductor supports both);
- test_dummy_backend.py ``test_using_correct_backend`` (DummyBackend class), ``test_clear`` (its
  in-memory ``clear()``), ``test_validate_disallowed_async_task`` (patches the dummy's
  ``supports_async_task``; Conductor supports async tasks);
- test_immediate_backend.py ``test_using_correct_backend`` (ImmediateBackend class),
  ``test_throws_keyboard_interrupt`` (the enqueuer runs the task and sees its KeyboardInterrupt; with a
  queue the enqueuer never runs it: django-tasks-db's ``test_keyboard_interrupt_task`` is the queueing
  form, in test_tasks_db_worker_process.py), ``test_cannot_get_result`` and ``test_cannot_refresh_result``
  (ImmediateBackend stores no results), ``test_cannot_pass_run_after`` (it cannot defer; Conductor can).
"""

import dataclasses
import logging
import pickle
import re
from datetime import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.tasks import (
    DEFAULT_TASK_QUEUE_NAME,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.test import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from app.backends import ConductorBackend, ConductorTask
from app.task import Task as ConductorTaskRow
from tests.conformance import tasks as test_tasks
from tests.conformance.helpers import run_async

BACKEND = "app.backends.ConductorBackend"
#: test_tasks.py's TASKS, with Conductor in place of DummyBackend ("default") and ImmediateBackend.
TASK_TEST_CASE_TASKS = {
    "default": {"BACKEND": BACKEND, "QUEUES": ["default", "queue_1"]},
    "immediate": {"BACKEND": BACKEND, "QUEUES": []},
    "missing": {"BACKEND": "does.not.exist"},
}
PRIORITY_MESSAGE = f"priority must be a whole number between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}."

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def task_test_case_backends() -> Any:
    with override_settings(TASKS=TASK_TEST_CASE_TASKS, USE_TZ=True):
        yield


# test_tasks.py, TaskTestCase ---------------------------------------------------------------------------


def test_using_correct_backend(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_using_correct_backend (Conductor's backend for DummyBackend)."""
    assert default_task_backend == task_backends["default"]
    assert isinstance(task_backends["default"], ConductorBackend)


def test_task_decorator():
    """test_tasks.py TaskTestCase.test_task_decorator."""
    assert isinstance(test_tasks.noop_task, Task)
    assert isinstance(test_tasks.noop_task_async, Task)
    assert isinstance(test_tasks.noop_task_from_bare_decorator, Task)


def test_enqueue_task(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_enqueue_task (the stored row for DummyBackend.results)."""
    result = test_tasks.noop_task.enqueue()
    assert result.status == TaskResultStatus.READY
    assert result.task == test_tasks.noop_task
    assert (result.args, result.kwargs) == ([], {})
    assert ConductorTaskRow.objects.filter(task_id=result.id).exists()


def test_enqueue_task_async(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_enqueue_task_async."""
    result = run_async(test_tasks.noop_task.aenqueue())
    assert result.status == TaskResultStatus.READY
    assert result.task == test_tasks.noop_task
    assert (result.args, result.kwargs) == ([], {})
    assert ConductorTaskRow.objects.filter(task_id=result.id).exists()


def test_enqueue_with_invalid_argument():
    """test_tasks.py TaskTestCase.test_enqueue_with_invalid_argument."""
    with pytest.raises(TypeError, match=re.escape("Unsupported type")):
        test_tasks.noop_task.enqueue(datetime.now())


def test_aenqueue_with_invalid_argument():
    """test_tasks.py TaskTestCase.test_aenqueue_with_invalid_argument."""
    with pytest.raises(TypeError, match=re.escape("Unsupported type")):
        run_async(test_tasks.noop_task.aenqueue(datetime.now()))


def test_using_priority():
    """test_tasks.py TaskTestCase.test_using_priority."""
    assert test_tasks.noop_task.priority == 0
    assert test_tasks.noop_task.using(priority=1).priority == 1
    assert test_tasks.noop_task.priority == 0


def test_using_queue_name(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_using_queue_name."""
    assert test_tasks.noop_task.queue_name == DEFAULT_TASK_QUEUE_NAME
    assert test_tasks.noop_task.using(queue_name="queue_1").queue_name == "queue_1"
    assert test_tasks.noop_task.queue_name == DEFAULT_TASK_QUEUE_NAME


def test_using_run_after():
    """test_tasks.py TaskTestCase.test_using_run_after."""
    now = timezone.now()
    assert test_tasks.noop_task.run_after is None
    assert test_tasks.noop_task.using(run_after=now).run_after == now
    assert test_tasks.noop_task.run_after is None


def test_using_unknown_backend(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_using_unknown_backend."""
    assert test_tasks.noop_task.backend == "default"
    with pytest.raises(InvalidTaskBackend, match=re.escape("The connection 'unknown' doesn't exist.")):
        test_tasks.noop_task.using(backend="unknown")


def test_using_missing_backend(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_using_missing_backend."""
    assert test_tasks.noop_task.backend == "default"
    with pytest.raises(
        InvalidTaskBackend, match=re.escape("Could not find backend 'does.not.exist': No module named")
    ):
        test_tasks.noop_task.using(backend="missing")


def test_using_creates_new_instance():
    """test_tasks.py TaskTestCase.test_using_creates_new_instance."""
    new_task = test_tasks.noop_task.using()
    assert new_task == test_tasks.noop_task
    assert new_task is not test_tasks.noop_task


def test_chained_using():
    """test_tasks.py TaskTestCase.test_chained_using."""
    now = timezone.now()
    run_after_task = test_tasks.noop_task.using(run_after=now)
    assert run_after_task.run_after == now
    priority_task = run_after_task.using(priority=10)
    assert (priority_task.priority, priority_task.run_after) == (10, now)
    assert run_after_task.priority == 0


def test_refresh_result(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_refresh_result: refreshing an unchanged result changes nothing."""

    async def body() -> None:
        result = await test_tasks.noop_task.aenqueue()
        original_result = dataclasses.asdict(result)
        await result.arefresh()
        assert dataclasses.asdict(result) == original_result

    run_async(body())
    result = test_tasks.noop_task.enqueue()
    original_result = dataclasses.asdict(result)
    result.refresh()
    assert dataclasses.asdict(result) == original_result


def test_naive_datetime():
    """test_tasks.py TaskTestCase.test_naive_datetime."""
    with pytest.raises(InvalidTask, match=re.escape("run_after must be an aware datetime.")):
        test_tasks.noop_task.using(run_after=datetime.now())


def test_invalid_priority():
    """test_tasks.py TaskTestCase.test_invalid_priority."""
    for priority in (-101, 101, 3.1):
        with pytest.raises(InvalidTask) as raised:
            test_tasks.noop_task.using(priority=priority)
        assert str(raised.value) == PRIORITY_MESSAGE
    for priority in (100, -100, 0):
        test_tasks.noop_task.using(priority=priority)


def test_unknown_queue_name(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_unknown_queue_name (a second Conductor alias for "immediate")."""
    with pytest.raises(InvalidTask, match=re.escape("Queue 'queue-2' is not valid for backend.")):
        test_tasks.noop_task.using(queue_name="queue-2")
    # Validation is bypassed when the backend's QUEUES is an empty list.
    assert test_tasks.noop_task.using(queue_name="queue-2", backend="immediate").queue_name == "queue-2"


def test_call_task():
    """test_tasks.py TaskTestCase.test_call_task."""
    assert test_tasks.calculate_meaning_of_life.call() == 42


def test_call_task_async():
    """test_tasks.py TaskTestCase.test_call_task_async."""
    assert run_async(test_tasks.calculate_meaning_of_life.acall()) == 42


def test_call_async_task():
    """test_tasks.py TaskTestCase.test_call_async_task."""
    assert run_async(test_tasks.noop_task_async.acall()) is None


def test_call_async_task_sync():
    """test_tasks.py TaskTestCase.test_call_async_task_sync."""
    assert test_tasks.noop_task_async.call() is None


def test_get_result():
    """test_tasks.py TaskTestCase.test_get_result (also test_dummy_backend.py's)."""
    result = default_task_backend.enqueue(test_tasks.noop_task, (), {})
    assert test_tasks.noop_task.get_result(result.id) == result
    assert default_task_backend.get_result(result.id) == result


def test_get_result_async():
    """test_tasks.py TaskTestCase.test_get_result_async (also test_dummy_backend.py's)."""

    async def body() -> tuple[Any, Any, Any]:
        result = await default_task_backend.aenqueue(test_tasks.noop_task, (), {})
        return (
            result,
            await test_tasks.noop_task.aget_result(result.id),
            await default_task_backend.aget_result(result.id),
        )

    result, by_task, by_backend = run_async(body())
    assert result == by_task == by_backend


def test_get_missing_result():
    """test_tasks.py TaskTestCase.test_get_missing_result (also test_dummy_backend.py's)."""
    with pytest.raises(TaskResultDoesNotExist):
        test_tasks.noop_task.get_result("123")
    with pytest.raises(TaskResultDoesNotExist):
        run_async(test_tasks.noop_task.aget_result("123"))
    with pytest.raises(TaskResultDoesNotExist):
        run_async(default_task_backend.aget_result("123"))


def test_get_incorrect_result():
    """test_tasks.py TaskTestCase.test_get_incorrect_result."""
    result = default_task_backend.enqueue(test_tasks.noop_task_async, (), {})
    with pytest.raises(TaskResultMismatch, match=re.escape("Task does not match")):
        test_tasks.noop_task.get_result(result.id)


def test_get_incorrect_result_async():
    """test_tasks.py TaskTestCase.test_get_incorrect_result_async."""

    async def body() -> None:
        result = await default_task_backend.aenqueue(test_tasks.noop_task_async, (), {})
        await test_tasks.noop_task.aget_result(result.id)

    with pytest.raises(TaskResultMismatch, match=re.escape("Task does not match")):
        run_async(body())


def test_invalid_function():
    """test_tasks.py TaskTestCase.test_invalid_function."""

    def not_at_module_level() -> None: ...  # for the original's bound method

    for invalid_function in [any, not_at_module_level]:
        with pytest.raises(InvalidTask, match=re.escape("Task function must be defined at a module level.")):
            task()(invalid_function)


def test_get_backend(task_test_case_backends):
    """test_tasks.py TaskTestCase.test_get_backend (a second Conductor alias for "immediate")."""
    assert test_tasks.noop_task.backend == "default"
    assert isinstance(test_tasks.noop_task.get_backend(), ConductorBackend)
    immediate_task = test_tasks.noop_task.using(backend="immediate")
    assert immediate_task.backend == "immediate"
    assert immediate_task.get_backend() is task_backends["immediate"]


def test_name():
    """test_tasks.py TaskTestCase.test_name."""
    assert test_tasks.noop_task.name == "noop_task"
    assert test_tasks.noop_task_async.name == "noop_task_async"


def test_module_path():
    """test_tasks.py TaskTestCase.test_module_path."""
    assert test_tasks.noop_task.module_path == "tests.conformance.tasks.noop_task"
    assert test_tasks.noop_task_async.module_path == "tests.conformance.tasks.noop_task_async"
    assert import_string(test_tasks.noop_task.module_path) is test_tasks.noop_task
    assert import_string(test_tasks.noop_task_async.module_path) is test_tasks.noop_task_async


def test_pickle_task():
    """test_tasks.py TaskTestCase.test_pickle_task."""
    assert pickle.loads(pickle.dumps(test_tasks.noop_task)) == test_tasks.noop_task


def test_unpickle_arbitrary_string():
    """test_tasks.py TaskTestCase.test_unpickle_arbitrary_string."""
    with pytest.raises(
        ValueError, match=re.escape("Expected 'does.not.exist.fake_task' to point to a Task instance.")
    ):
        Task._reconstruct({"func": "does.not.exist.fake_task"})


def test_unpickle_non_task_object():
    """test_tasks.py TaskTestCase.test_unpickle_non_task_object."""
    with pytest.raises(ValueError, match=re.escape("Expected 'builtins.any' to point to a Task instance.")):
        Task._reconstruct({"func": "builtins.any"})


def test_pickle_task_result():
    """test_tasks.py TaskTestCase.test_pickle_task_result."""
    result = test_tasks.noop_task.enqueue()
    assert pickle.loads(pickle.dumps(result)) == result


def test_no_backends():
    """test_tasks.py TaskTestCase.test_no_backends."""
    with override_settings(TASKS={}), pytest.raises(InvalidTaskBackend):
        test_tasks.noop_task.enqueue()


def failed_result(run_worker: Any) -> Any:
    result = test_tasks.failing_task_value_error.enqueue()
    run_worker()
    result.refresh()
    assert len(result.errors) == 1
    return result


def test_task_error_invalid_exception(run_worker):
    """test_tasks.py TaskTestCase.test_task_error_invalid_exception (the runner for ImmediateBackend)."""
    result = failed_result(run_worker)
    object.__setattr__(result.errors[0], "exception_class_path", "subprocess.run")
    with pytest.raises(ValueError, match=re.escape("'subprocess.run' does not reference a valid exception.")):
        result.errors[0].exception_class  # noqa: B018


def test_task_error_unknown_module(run_worker):
    """test_tasks.py TaskTestCase.test_task_error_unknown_module (the runner for ImmediateBackend)."""
    result = failed_result(run_worker)
    object.__setattr__(result.errors[0], "exception_class_path", "does.not.exist")
    with pytest.raises(ImportError):
        result.errors[0].exception_class  # noqa: B018


def test_takes_context_without_taking_context():
    """test_tasks.py TaskTestCase.test_takes_context_without_taking_context."""
    with pytest.raises(
        InvalidTask, match=re.escape("Task takes context but does not have a first argument of 'context'.")
    ):
        task(takes_context=True)(test_tasks.calculate_meaning_of_life.func)


def test_run_after_in_decorator():
    """test_tasks.py TaskTestCase.test_run_after_in_decorator."""
    with pytest.raises(
        TypeError, match=re.escape("run_after cannot be defined statically with the @task decorator.")
    ):
        task(run_after=timezone.now())(test_tasks.calculate_meaning_of_life.func)


# test_custom_backend.py, CustomTaskTestCase: the backend's own task class (ConductorTask) --------------


def test_custom_task_default_values():
    """test_custom_backend.py CustomTaskTestCase.test_custom_task_default_values (Conductor's options)."""
    my_task = task()(test_tasks.noop_task.func)
    assert isinstance(my_task, ConductorTask)
    assert (my_task.kill_time, my_task.max_attempts, my_task.conductor_options) == (None, None, {})


def test_custom_task_with_custom_values():
    """test_custom_backend.py CustomTaskTestCase.test_custom_task_with_custom_values."""
    my_task = task(kill_time=5, max_attempts=600)(test_tasks.noop_task.func)
    assert isinstance(my_task, ConductorTask)
    assert (my_task.kill_time, my_task.max_attempts) == (5, 600)


def test_custom_task_with_standard_and_custom_values():
    """test_custom_backend.py CustomTaskTestCase.test_custom_task_with_standard_and_custom_values."""
    my_task = task(priority=10, queue_name="high", kill_time=10, max_attempts=1000)(test_tasks.noop_task.func)
    assert isinstance(my_task, ConductorTask)
    assert (my_task.priority, my_task.queue_name, my_task.kill_time, my_task.max_attempts) == (
        10, "high", 10, 1000)  # fmt: skip
    assert my_task.takes_context is False
    assert my_task.run_after is None


def test_custom_task_invalid_kwarg():
    """test_custom_backend.py CustomTaskTestCase.test_custom_task_invalid_kwarg."""
    with pytest.raises(TypeError):
        task(unknown_param=123)(test_tasks.noop_task.func)


# test_dummy_backend.py: what holds for any backend that queues -----------------------------------------


@pytest.mark.parametrize("task_name", ["noop_task", "noop_task_async"])
def test_dummy_enqueue_task(task_name):
    """test_dummy_backend.py DummyBackendTestCase.test_enqueue_task: READY until a worker runs it."""
    queued = getattr(test_tasks, task_name)
    result = queued.enqueue(1, two=3)
    assert result.status == TaskResultStatus.READY
    assert result.is_finished is False
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    with pytest.raises(ValueError, match=re.escape("Task has not finished yet")):
        result.return_value  # noqa: B018
    assert result.task == queued
    assert (result.args, result.kwargs, result.attempts) == ([1], {"two": 3}, 0)
    assert default_task_backend.get_result(result.id) == result


@pytest.mark.parametrize("task_name", ["noop_task", "noop_task_async"])
def test_dummy_enqueue_task_async(task_name):
    """test_dummy_backend.py DummyBackendTestCase.test_enqueue_task_async."""
    queued = getattr(test_tasks, task_name)
    result = run_async(queued.aenqueue())
    assert result.status == TaskResultStatus.READY
    assert result.is_finished is False
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    with pytest.raises(ValueError, match=re.escape("Task has not finished yet")):
        result.return_value  # noqa: B018
    assert result.task == queued
    assert (result.args, result.kwargs, result.attempts) == ([], {}, 0)


def test_dummy_refresh_result(run_worker):
    """test_dummy_backend.py DummyBackendTestCase.test_refresh_result (the runner finishes it)."""
    result = default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, (), {})
    run_worker()
    assert result.status == TaskResultStatus.READY
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_dummy_refresh_result_async(run_worker):
    """test_dummy_backend.py DummyBackendTestCase.test_refresh_result_async (the runner finishes it)."""
    result = run_async(default_task_backend.aenqueue(test_tasks.calculate_meaning_of_life, (), {}))
    run_worker()
    assert result.status == TaskResultStatus.READY
    run_async(result.arefresh())
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_dummy_enqueue_logs(caplog):
    """test_dummy_backend.py DummyBackendTestCase.test_enqueue_logs: enqueuing logs one line."""
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    result = test_tasks.noop_task.enqueue()
    lines = [record.getMessage() for record in caplog.records if record.name == "django.tasks"]
    assert len(lines) == 1
    assert "enqueued" in lines[0]
    assert result.id in lines[0]


def test_dummy_errors():
    """test_dummy_backend.py DummyBackendTestCase.test_errors."""
    assert test_tasks.noop_task.enqueue().errors == []


def test_dummy_check():
    """test_dummy_backend.py DummyBackendTestCase.test_check."""
    assert list(default_task_backend.check()) == []


def test_dummy_takes_context():
    """test_dummy_backend.py DummyBackendTestCase.test_takes_context."""
    assert test_tasks.get_task_id.enqueue().status == TaskResultStatus.READY


def queue_1_only() -> Any:
    return override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["queue-1"]}})


def test_validate_on_enqueue():
    """test_dummy_backend.py and test_immediate_backend.py, test_validate_on_enqueue."""
    task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")
    with (
        queue_1_only(),
        pytest.raises(InvalidTask, match=re.escape("Queue 'unknown_queue' is not valid for backend")),
    ):
        task_with_custom_queue_name.enqueue()
    assert not ConductorTaskRow.objects.exists()


def test_validate_on_aenqueue():
    """test_dummy_backend.py and test_immediate_backend.py, test_validate_on_aenqueue."""
    task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")
    with (
        queue_1_only(),
        pytest.raises(InvalidTask, match=re.escape("Queue 'unknown_queue' is not valid for backend")),
    ):
        run_async(task_with_custom_queue_name.aenqueue())


def test_doesnt_wait_until_transaction_commit_by_default():
    """test_dummy_backend.py and test_immediate_backend.py (their TransactionTestCase), same name.

    Conductor, like them, does not wait for the commit: the row is written in the caller's transaction.
    """
    with transaction.atomic():
        result = test_tasks.noop_task.enqueue()
        assert result.enqueued_at is not None
        assert ConductorTaskRow.objects.filter(task_id=result.id).exists()
    assert ConductorTaskRow.objects.filter(task_id=result.id).exists()
    assert connection.in_atomic_block is False


# test_immediate_backend.py: what a run gives, the runner running it ---------------------------------


def assert_ran(result: Any) -> None:
    assert result.is_finished is True
    assert None not in (result.started_at, result.last_attempted_at, result.finished_at)
    assert result.enqueued_at <= result.started_at <= result.finished_at


@pytest.mark.parametrize("task_name", ["noop_task", "noop_task_async"])
def test_immediate_enqueue_task(run_worker, task_name):
    """test_immediate_backend.py ImmediateBackendTestCase.test_enqueue_task."""
    queued = getattr(test_tasks, task_name)
    result = queued.enqueue(1, two=3)
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert_ran(result)
    assert result.return_value is None
    assert result.task == queued
    assert (result.args, result.kwargs, result.attempts) == ([1], {"two": 3}, 1)


@pytest.mark.parametrize("task_name", ["noop_task", "noop_task_async"])
def test_immediate_enqueue_task_async(run_worker, task_name):
    """test_immediate_backend.py ImmediateBackendTestCase.test_enqueue_task_async."""
    queued = getattr(test_tasks, task_name)
    result = run_async(queued.aenqueue())
    run_worker()
    run_async(result.arefresh())
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert_ran(result)
    assert result.return_value is None
    assert (result.args, result.kwargs, result.attempts) == ([], {}, 1)


CATCHES = [
    pytest.param(
        "failing_task_value_error", ValueError, "This task failed due to ValueError", id="ValueError"
    ),
    pytest.param(
        "failing_task_system_exit",
        SystemExit,
        "This task failed due to SystemExit",
        id="SystemExit",
    ),
]


@pytest.mark.parametrize(("task_name", "exception", "message"), CATCHES)
def test_catches_exception(run_worker, caplog, task_name, exception, message):
    """test_immediate_backend.py ImmediateBackendTestCase.test_catches_exception (one case per subTest)."""
    caplog.set_level(logging.ERROR, logger="django.tasks")
    result = getattr(test_tasks, task_name).enqueue()
    run_worker()
    errors = [r for r in caplog.records if r.name == "django.tasks" and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert message in logging.Formatter().format(errors[0])  # the traceback is logged with it
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match=re.escape("Task failed")):
        result.return_value  # noqa: B018
    assert_ran(result)
    assert result.errors[0].exception_class is exception
    assert result.errors[0].traceback.endswith(f"{exception.__name__}: {message}\n"), result.errors[
        0
    ].traceback
    assert (result.args, result.kwargs) == ([], {})


def test_complex_exception(run_worker):
    """test_immediate_backend.py ImmediateBackendTestCase.test_complex_exception."""
    result = test_tasks.complex_exception.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match=re.escape("Task failed")):
        result.return_value  # noqa: B018
    assert_ran(result)
    assert result._return_value is None
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback


def test_complex_return_value(run_worker):
    """test_immediate_backend.py ImmediateBackendTestCase.test_complex_return_value."""
    result = test_tasks.complex_return_value.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert_ran(result)
    assert result._return_value is None
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback


def test_result(run_worker):
    """test_immediate_backend.py ImmediateBackendTestCase.test_result."""
    result = default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, [], {})
    run_worker()
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


def test_result_async(run_worker):
    """test_immediate_backend.py ImmediateBackendTestCase.test_result_async."""
    result = run_async(default_task_backend.aenqueue(test_tasks.calculate_meaning_of_life, [], {}))
    run_worker()
    run_async(result.arefresh())
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


def django_task_lines(caplog: Any) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "django.tasks"]


def test_enqueue_logs(run_worker, caplog):
    """test_immediate_backend.py ImmediateBackendTestCase.test_enqueue_logs (enqueued, then the runner's)."""
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    result = test_tasks.noop_task.enqueue()
    run_worker()
    lines = django_task_lines(caplog)
    assert len(lines) == 3
    assert "enqueued" in lines[0]
    assert "state=RUNNING" in lines[1]
    assert "state=SUCCESSFUL" in lines[2]
    assert all(result.id in line for line in lines)


def test_failed_logs(run_worker, caplog):
    """test_immediate_backend.py ImmediateBackendTestCase.test_failed_logs."""
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    result = test_tasks.failing_task_value_error.enqueue()
    run_worker()
    lines = django_task_lines(caplog)
    assert len(lines) == 3
    assert "state=RUNNING" in lines[1]
    assert "state=FAILED" in lines[2]
    assert all(result.id in line for line in lines[1:])


def test_successful_task_no_none_in_logs(run_worker, caplog):
    """test_immediate_backend.py ImmediateBackendTestCase.test_successful_task_no_none_in_logs."""
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    result = test_tasks.noop_task.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert all("None" not in line for line in django_task_lines(caplog))


def test_immediate_takes_context(run_worker):
    """test_immediate_backend.py ImmediateBackendTestCase.test_takes_context."""
    result = test_tasks.get_task_id.enqueue()
    run_worker()
    result.refresh()
    assert result.return_value == result.id


def test_immediate_context(run_worker):
    """test_immediate_backend.py ImmediateBackendTestCase.test_context."""
    result = test_tasks.checks_context.enqueue(1)
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
