"""ConductorBackend (app/backends.py) through Django's public tasks API, with the runner in-process.

The tasks are the ones in tests/django_task_functions.py, on TASKS["default"] (server/settings.py).
"""

import asyncio
import os
import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings
from django.utils import timezone

from app import registry
from app.backends import ConductorBackend, ConductorTask
from app.status import RunStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import django_task_functions as tasks
from tests.conftest import wait_until

CONDUCTOR = "app.backends.ConductorBackend"
TWO_BACKENDS = {"default": {"BACKEND": CONDUCTOR, "QUEUES": []}, "other": {"BACKEND": CONDUCTOR}}


def plain(x: int = 0) -> int:
    """Decorated inside the tests that need it, with the options under test."""
    return x


def takes_no_context(note: str) -> str:
    return note


def finished(result: Any) -> bool:
    result.refresh()
    return result.is_finished


# Decorating: Django's rules, Conductor's options, and registration ------------------------------------


def test_the_backend_supports_every_feature_of_django_tasks():
    backend = task_backends["default"]
    assert isinstance(backend, ConductorBackend)
    assert (backend.supports_defer, backend.supports_priority, backend.supports_get_result,
            backend.supports_async_task) == (True, True, True, True)  # fmt: skip
    assert isinstance(tasks.add, ConductorTask)


def test_decorating_registers_the_function_with_conductor_at_its_own_path():
    assert tasks.add.module_path == "tests.django_task_functions.add"
    assert "tests.django_task_functions.add" in registry.names()
    help_text = registry.get("tests.django_task_functions.add").__doc__
    assert help_text.startswith("Django task add(a: int, b: int = 0) -> int")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"kil_time": 5},
            "Unknown @task option 'kil_time' for the Conductor backend; its options are: kill_time",
        ),
        ({"kill_time": -1}, "invalid Conductor options: kill_time: kill_time must be above 0"),
        ({"loop": True, "interval": 0}, "interval: A looping task needs an interval above 0"),
        ({"isolation": "fork"}, "isolation: Value 'fork' is not a valid choice."),
        ({"cron": "every day"}, "cron: 'every day' is not a cron expression"),
        ({"max_runs": 3}, "max_runs: max_runs limits a looping task"),
        ({"queue_name": "a,b"}, "queue name 'a,b' cannot be served by runtasks --queue"),
        ({"priority": 101}, "priority must be a whole number between -100 and 100."),
        ({"takes_context": True}, "Task takes context but does not have a first argument of 'context'."),
    ],
)
def test_bad_decorations_get_invalid_task_with_the_reason(options, message):
    with pytest.raises(InvalidTask) as raised:
        task(**options)(takes_no_context)
    assert message in str(raised.value)


def test_run_after_must_be_aware_and_functions_must_be_module_level():
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))

    def local() -> None: ...

    with pytest.raises(InvalidTask, match="Task function must be defined at a module level"):
        task(local)


def test_an_unknown_option_is_both_invalid_task_and_the_type_error_django_expects():
    with pytest.raises(TypeError) as raised:
        task(unknown_param=123)(plain)
    assert isinstance(raised.value, InvalidTask)
    assert "Unknown @task option 'unknown_param'" in str(raised.value)


def registered_twice(x: int) -> int:
    return x


def test_a_function_registered_with_register_cannot_become_a_django_task_too():
    registry.register(registered_twice)
    with pytest.raises(InvalidTask, match="decorate it with Django's @task or with @register, not both"):
        task(registered_twice)


# Enqueuing ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_saves_a_conductor_task_and_returns_a_ready_result():
    run_after = timezone.now() + timedelta(hours=1)
    result = tasks.add.using(priority=7, queue_name="slow", run_after=run_after).enqueue(2, b=(3, 4))
    row = Task.objects.get(task_id=result.id)
    assert (row.name, row.func, row.priority, row.queue, row.start_at, row.next_run) == (
        "add", "tests.django_task_functions.add", 7, "slow", run_after, run_after)  # fmt: skip
    assert row.args_in == {"args": [2], "kwargs": {"b": [3, 4]}, "backend": "default"}
    assert (result.status, result.args, result.kwargs, result.backend) == (
        TaskResultStatus.READY, [2], {"b": [3, 4]}, "default")  # fmt: skip
    assert result.enqueued_at == row.created_at
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None, None, None)
    assert (result.errors, result.worker_ids) == ([], [])
    assert result.task.priority == 7
    assert result.task.run_after == run_after
    again = tasks.add.get_result(result.id)
    assert (again.id, again.status, again.args, again.kwargs) == (result.id, "READY", [2], {"b": [3, 4]})
    with pytest.raises(ValueError, match="Task has not finished yet"):
        again.return_value  # noqa: B018


@pytest.mark.django_db
def test_per_task_options_override_the_backends_options():
    backend = {"BACKEND": CONDUCTOR, "QUEUES": [], "OPTIONS": {"kill_time": 60, "max_attempts": 3}}
    with override_settings(TASKS={"default": backend}):
        limited = task(kill_time=5, db_use=True, isolation="process")(plain)
        row = Task.objects.get(task_id=limited.enqueue(1).id)
    assert (row.kill_time, row.max_attempts, row.db_use, row.isolation) == (5, 3, True, "process")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (
            [{1, 2}],
            TypeError,
            "Task arguments must be JSON serializable (they are stored as JSON): Unsupported",
        ),
        ([float("nan")], ValueError, "Task arguments must be JSON serializable"),
        ([{1: "one"}], TypeError, "Task arguments must come back unchanged from JSON"),
    ],
)
def test_arguments_that_json_cannot_give_back_are_refused(args, error, message):
    with pytest.raises(error) as raised:
        tasks.echo.enqueue(*args)
    assert message in str(raised.value)
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_enqueue_with_invalid_backend_options_is_improperly_configured():
    bad = {"default": {"BACKEND": CONDUCTOR, "OPTIONS": {"kill_time": 0}}}
    invalid = re.escape("TASKS['default']['OPTIONS'] is invalid: kill_time")
    with override_settings(TASKS=bad), pytest.raises(ImproperlyConfigured, match=invalid):
        tasks.add.enqueue(1)
    assert not Task.objects.exists()


# Reading results back ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_result_of_an_unknown_id_or_another_kind_of_task_says_so():
    with pytest.raises(TaskResultDoesNotExist, match="No task result with id 'nope'"):
        default_task_backend.get_result("nope")
    conductor_task = Task.objects.create(func="tests.functions.add", args_in={"a": 1})
    with pytest.raises(
        TaskResultDoesNotExist, match=r"is a Conductor task of tests\.functions\.add, not a Django"
    ):
        default_task_backend.get_result(conductor_task.task_id)
    result = tasks.add.enqueue(1)
    with pytest.raises(TaskResultMismatch):  # Django's own check, on Conductor's result
        tasks.echo.get_result(result.id)


@pytest.mark.django_db
def test_a_result_belongs_to_the_backend_it_was_enqueued_on():
    with override_settings(TASKS=TWO_BACKENDS):
        result = tasks.add.using(backend="other").enqueue(1)
        assert result.backend == "other"
        assert tasks.add.using(backend="other").get_result(result.id).backend == "other"
        with pytest.raises(
            TaskResultDoesNotExist, match="belongs to the task backend 'other', not 'default'"
        ):
            tasks.add.get_result(result.id)


# System checks ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_system_checks_report_bad_options_and_unservable_queues():
    bad = {"BACKEND": CONDUCTOR, "QUEUES": ["default", "a,b"], "OPTIONS": {"kil_time": 5, "isolation": "vm"}}
    with override_settings(TASKS={"default": bad}):
        messages = [m for m in checks.run_checks() if m.id.startswith("conductor.E10")]
    options, queues = "TASKS['default']['OPTIONS'] is invalid", "TASKS['default']['QUEUES']"
    assert [(m.id, m.msg) for m in messages] == [
        ("conductor.E101", f"{options}: unknown option 'kil_time'."),
        ("conductor.E101", f"{options}: isolation: Value 'vm' is not a valid choice."),
        ("conductor.E102", f"{queues}: queue name 'a,b' cannot be served by runtasks --queue: "
                           "use a name of 1 to 100 characters without commas or surrounding spaces."),
    ]  # fmt: skip
    assert "kill_time, db_use, loop" in messages[0].hint
    with override_settings(TASKS={"default": {"BACKEND": CONDUCTOR, "OPTIONS": []}}):
        assert [m.msg for m in default_task_backend.check()] == [
            "TASKS['default']['OPTIONS'] is invalid: Conductor's options must be a dict, got list."
        ]
    assert default_task_backend.check() == []


# Running, in the runner -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_runner_runs_django_tasks_and_results_come_from_its_records(start_runner):
    runner = start_runner(threads=4).runner
    added, exploded = tasks.add.enqueue(2, b=3), tasks.explode.enqueue("bad input")
    wait_until(lambda: finished(added) and finished(exploded))
    assert (added.status, added.return_value, added.worker_ids) == ("SUCCESSFUL", 5, [runner.worker_id])
    run = TaskRun.objects.get(task__task_id=added.id)
    assert (added.started_at, added.last_attempted_at, added.finished_at) == (
        run.started_at, run.started_at, run.finished_at)  # fmt: skip
    assert exploded.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        exploded.return_value  # noqa: B018
    [error] = exploded.errors
    assert error.exception_class is tasks.Boom
    # Exactly as Python formats it: the exception's own line ends it.
    assert error.traceback.endswith("raise Boom(message)\ntests.django_task_functions.Boom: bad input\n")


@pytest.mark.django_db(transaction=True)
def test_context_retries_and_progress(start_runner):
    runner = start_runner().runner
    described, flaky = tasks.describe_context.enqueue(note="hi"), tasks.fails_once.enqueue()
    wait_until(lambda: finished(described) and finished(flaky))
    assert described.return_value == {"attempt": 1, "id": described.id, "status": "RUNNING", "note": "hi",
                                      "workers": [runner.worker_id], "stop_requested": False}  # fmt: skip
    assert TaskRun.objects.get(task__task_id=described.id).progress == 1.0
    # Each try is a TaskRun: attempts, worker ids and the first try's error come from them.
    assert (flaky.status, flaky.return_value, flaky.attempts) == ("SUCCESSFUL", 2, 2)
    assert [e.exception_class_path for e in flaky.errors] == ["tests.django_task_functions.Boom"]
    assert "Boom: attempt 1 fails" in flaky.errors[0].traceback
    assert flaky.last_attempted_at > flaky.started_at


@pytest.mark.django_db(transaction=True)
def test_time_limits_stop_sync_and_async_tasks_and_non_json_results_fail(start_runner):
    start_runner(threads=4)
    results = [tasks.spins.enqueue(), tasks.async_sleeps.enqueue(), tasks.returns_a_set.enqueue()]
    results.append(tasks.async_add.enqueue(2, 5))
    wait_until(lambda: all(finished(result) for result in results), timeout=15)
    spun, slept, returned_set, added = results
    for limited in (spun, slept):
        assert limited.status == TaskResultStatus.FAILED
        assert [e.exception_class_path for e in limited.errors] == ["app.execution.TimeLimitExceeded"]
        assert (limited.finished_at - limited.started_at).total_seconds() < 5
    assert [e.exception_class_path for e in returned_set.errors] == ["builtins.TypeError"]
    assert "Unsupported type: <class 'set'>" in returned_set.errors[0].traceback
    assert added.return_value == 7


@pytest.mark.django_db(transaction=True)
def test_process_isolation_and_looping_with_db_use(start_runner):
    start_runner(threads=4)
    child, looped = tasks.in_child_process.enqueue(1, b=2), tasks.loops_twice.enqueue()
    wait_until(lambda: finished(child) and finished(looped), timeout=20)
    assert child.return_value["sum"] == 3
    assert child.return_value["pid"] != os.getpid()
    assert (looped.status, looped.attempts) == ("SUCCESSFUL", 2)
    assert Task.objects.get(task_id=looped.id).db_use


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result(start_runner):
    start_runner()

    async def enqueue_and_wait() -> Any:
        try:
            result = await tasks.async_add.aenqueue(20, 22)
            while not result.is_finished:
                await asyncio.sleep(0.02)
                await result.arefresh()
            return await tasks.async_add.aget_result(result.id)
        finally:  # the connection of the thread that ran the ORM for us
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    result = asyncio.run(asyncio.wait_for(enqueue_and_wait(), timeout=10))
    assert (result.status, result.return_value) == ("SUCCESSFUL", 42)


@pytest.fixture
def signals() -> Any:
    """Every Django task signal sent in this process: (signal, status, thread name, exception or None)."""
    import sys

    sent: list[tuple[str, str, str, Any]] = []
    receivers = {}
    for name, signal in (("enqueued", task_enqueued), ("started", task_started), ("finished", task_finished)):

        def receive(sender: Any, task_result: Any, name: str = name, **kwargs: Any) -> None:
            assert sender is ConductorBackend
            sent.append((name, task_result.status, threading.current_thread().name, sys.exc_info()[1]))

        receivers[signal] = receive
        signal.connect(receive)
    yield sent
    for signal, receive in receivers.items():
        signal.disconnect(receive)


@pytest.mark.django_db(transaction=True)
def test_signals_are_sent_on_enqueue_and_where_the_function_starts_and_ends(start_runner, signals):
    added, exploded = tasks.add.enqueue(1), tasks.explode.enqueue("no")
    assert signals == [("enqueued", "READY", "MainThread", None)] * 2
    start_runner(threads=1)
    wait_until(lambda: finished(added) and finished(exploded))
    wait_until(lambda: len(signals) == 6)  # the runner records a run just after its function ends
    threads = [f"add#{TaskRun.objects.get(task__task_id=added.id).pk}",
               f"explode#{TaskRun.objects.get(task__task_id=exploded.id).pk}"]  # fmt: skip
    assert signals[2:4] == [
        ("started", "RUNNING", threads[0], None),
        ("finished", "SUCCESSFUL", threads[0], None),
    ]
    assert signals[4][:3] == ("started", "RUNNING", threads[1])
    assert signals[5][:3] == ("finished", "FAILED", threads[1])
    assert isinstance(signals[5][3], tasks.Boom)  # sent while handling the exception, as Django does


@pytest.mark.django_db(transaction=True)
def test_a_conductor_run_of_a_django_task_is_recorded_like_any_other():
    result = tasks.echo.enqueue("direct")
    run = Task.objects.get(task_id=result.id).run()  # Task.run(): in this thread, no runner
    assert (run.status, run.output) == (RunStatus.FINISHED, "direct")
    result.refresh()
    assert (result.status, result.return_value, result.worker_ids) == ("SUCCESSFUL", "direct", [""])


@pytest.mark.django_db(transaction=True)
def test_a_stored_call_of_the_wrong_shape_fails_its_run_with_the_reason():
    row = Task.objects.create(func="tests.django_task_functions.echo", args_in={"args": {"label": "x"}})
    run = row.run()
    assert run.status == RunStatus.FAILED
    assert 'its args_in is {"args": [...], "kwargs": {...}}' in run.error
