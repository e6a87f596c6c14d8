"""django-tasks-db's backend and worker tests, ported to ConductorBackend with Conductor's runner.

From django-tasks-db 0.13.0's sdist, ``tests/tests.py``: DatabaseBackendTestCase (the public API) and
DatabaseBackendWorkerTestCase, whose ``db_worker --batch`` is ``runtasks --once`` here (the runner in this
process, ``run_worker``). Each test names the test it was ported from. Where the original reads or writes
its own model (DBTaskResult), the port uses the public API or Conductor's Task row.

Left out, being tests of django-tasks-db's own implementation rather than of the tasks API:
- query counts (``assertNumQueries`` in many tests): its own queries; the behaviour is ported without;
- ``test_task_name``, ``test_priority_range_check``, ``test_index_scan_for_ready``,
  ``test_run_after_null_0016_migration``: its model's properties, constraint, index and a migration;
- ``test_database_backend_app_missing``: a check that its app is installed (Conductor's backend is part
  of the app whose tables it writes);
- ``test_custom_id_function``, ``test_unknown_id_function``, ``test_postgres_db_id_function``,
  ``test_postgres_id_function_expression``: its ``id_function`` option;
- ``test_process_all_queues_excluding_one_queue``, ``test_exclude_queues_requires_processing_all_queues``,
  ``test_excluding_unknown_queue_processes_selected_queues``: ``db_worker --exclude-queues``, which
  runtasks does not have;
- ``test_doesnt_process_different_backend``, ``test_unknown_backend``, ``test_incorrect_backend``:
  ``db_worker --backend``; a Conductor runner serves every ConductorBackend alias;
- ``test_infinite_interval``, ``test_fractional_interval``, ``test_zero_interval``,
  ``test_too_long_worker_id``: db_worker's option parsing (two of them patch its Worker class);
  runtasks' own limits are tested in tests/unit/test_commands.py;
- DatabaseTaskResultTestCase, ConnectionExclusiveTranscationTestCase, DBTaskResultOrderingTestCase,
  DatabaseBackendPruneTaskResultsTestCase, AdminTestCase, CompatTestCase: its model's locking, ordering,
  admin, pruning command and import shims.
"""

import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.test import override_settings
from django.utils import timezone

from app import registry
from app.backends import ConductorBackend
from app.djangotasks import class_path
from app.status import TaskStatus
from app.task import Task as TaskRow
from tests.conformance import tasks as test_tasks
from tests.conformance.helpers import run_async

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "app.backends.ConductorBackend"
#: DatabaseBackendWorkerTestCase's TASKS, Conductor's backend for django-tasks-db's.
WORKER_TASKS = {"default": {"BACKEND": BACKEND, "QUEUES": ["default", "queue-1"]}}


@pytest.fixture
def worker_backends() -> Any:
    with override_settings(TASKS=WORKER_TASKS):
        yield


@pytest.fixture
def enqueued_signals() -> Any:
    received: list[tuple[type, Any]] = []

    def capture_signal(sender: type, task_result: Any, **kwargs: Any) -> None:
        received.append((sender, task_result))

    task_enqueued.connect(capture_signal, dispatch_uid="conformance_enqueue_signal", weak=False)
    yield received
    task_enqueued.disconnect(capture_signal, dispatch_uid="conformance_enqueue_signal")


def ready_count() -> int:
    """DBTaskResult.objects.ready().count(): rows waiting and due now."""
    return TaskRow.objects.filter(status=TaskStatus.WAITING, next_run__lte=timezone.now()).count()


def count(status: str) -> int:
    return TaskRow.objects.filter(status=status).count()


def task_count_in_new_connection() -> int:
    """What other connections see (DatabaseBackendTestCase.get_task_count_in_new_connection)."""
    new_connection = connections.create_connection("default")
    try:
        with new_connection.cursor() as cursor:
            cursor.execute(str(TaskRow.objects.values("id").query))
            return len(cursor.fetchall())
    finally:
        new_connection.close()


# DatabaseBackendTestCase -----------------------------------------------------------------------------


def test_using_correct_backend():
    """tests.py DatabaseBackendTestCase.test_using_correct_backend."""
    assert default_task_backend == task_backends["default"]
    assert isinstance(task_backends["default"], ConductorBackend)
    assert (default_task_backend.alias, default_task_backend.options) == ("default", {})


@pytest.mark.parametrize("task_name", ["noop_task", "noop_task_async"])
def test_enqueue_task(enqueued_signals, task_name):
    """tests.py DatabaseBackendTestCase.test_enqueue_task (each subTest a case)."""
    queued = getattr(test_tasks, task_name)
    result = queued.enqueue(1, two=3)
    assert uuid.UUID(result.id).version == 4
    assert result.status == TaskResultStatus.READY
    assert not result.is_finished
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018
    assert result.task == queued
    assert (result.args, result.kwargs, result.attempts) == ([1], {"two": 3}, 0)
    assert enqueued_signals == [(ConductorBackend, result)]


@pytest.mark.parametrize("task_name", ["noop_task", "noop_task_async"])
def test_enqueue_task_async(enqueued_signals, task_name):
    """tests.py DatabaseBackendTestCase.test_enqueue_task_async."""
    queued = getattr(test_tasks, task_name)
    result = run_async(queued.aenqueue())
    assert uuid.UUID(result.id).version == 4
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.attempts) == ([], {}, 0)
    assert enqueued_signals == [(ConductorBackend, result)]


def test_get_result():
    """tests.py DatabaseBackendTestCase.test_get_result."""
    result = default_task_backend.enqueue(test_tasks.noop_task, [], {})
    assert default_task_backend.get_result(result.id) == result


def test_get_result_async():
    """tests.py DatabaseBackendTestCase.test_get_result_async."""

    async def body() -> tuple[Any, Any]:
        result = await default_task_backend.aenqueue(test_tasks.noop_task, [], {})
        return result, await default_task_backend.aget_result(result.id)

    result, new_result = run_async(body())
    assert result == new_result


def test_refresh_result(run_worker):
    """tests.py DatabaseBackendTestCase.test_refresh_result (the runner runs it; no direct UPDATE)."""
    result = default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, [], {})
    run_worker()
    assert (result.status, result.is_finished, result.attempts) == (TaskResultStatus.READY, False, 0)
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    result.refresh()
    assert None not in (result.started_at, result.last_attempted_at, result.finished_at)
    assert (result.status, result.is_finished, result.return_value, result.attempts) == (
        TaskResultStatus.SUCCESSFUL, True, 42, 1)  # fmt: skip


def test_refresh_result_async(run_worker):
    """tests.py DatabaseBackendTestCase.test_refresh_result_async."""
    result = run_async(default_task_backend.aenqueue(test_tasks.calculate_meaning_of_life, [], {}))
    run_worker()
    assert result.status == TaskResultStatus.READY
    run_async(result.arefresh())
    assert (result.status, result.return_value, result.attempts) == (TaskResultStatus.SUCCESSFUL, 42, 1)


@pytest.mark.parametrize(
    "result_id", ["6a1f4c0e-93b2-4d8e-9c57-2f0a8b3e1d74", "123"], ids=["uuid", "not-a-uuid"]
)
def test_get_missing_result(result_id):
    """tests.py DatabaseBackendTestCase.test_get_missing_result and test_invalid_uuid."""
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)


@pytest.mark.parametrize(
    "result_id", ["6a1f4c0e-93b2-4d8e-9c57-2f0a8b3e1d74", "123"], ids=["uuid", "not-a-uuid"]
)
def test_async_get_missing_result(result_id):
    """tests.py DatabaseBackendTestCase.test_async_get_missing_result and test_async_invalid_uuid."""
    with pytest.raises(TaskResultDoesNotExist):
        run_async(default_task_backend.aget_result(result_id))


def stored_call(func: str) -> TaskRow:
    """A row that no enqueue() could write (save() refuses unregistered paths), as the original's create."""
    call = {"args": [["exit", "1"]], "kwargs": {}, "backend": "default"}
    TaskRow.objects.bulk_create(
        [TaskRow(task_id=uuid.uuid4().hex, func=func, args_in=call, next_run=timezone.now())]
    )
    return TaskRow.objects.get(func=func)


@pytest.mark.parametrize("func", ["subprocess.check_output", "missing.func"])
def test_invalid_or_missing_task_path(func):
    """tests.py DatabaseBackendTestCase.test_invalid_task_path and test_missing_task_path.

    The originals expect SuspiciousOperation / ImportError from their model; Conductor imports nothing
    named in the database, and reading such a row back as a Django result is refused.
    """
    row = stored_call(func)
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task in this process"):
        default_task_backend.get_result(row.task_id)


def test_check():
    """tests.py DatabaseBackendTestCase.test_check."""
    assert list(default_task_backend.check()) == []


def test_doesnt_wait_until_transaction_commit():
    """tests.py DatabaseBackendTestCase.test_doesnt_wait_until_transaction_commit."""
    with transaction.atomic():
        result = test_tasks.noop_task.enqueue()
        assert result.enqueued_at is not None
        assert TaskRow.objects.count() == 1
        if connection.vendor != "sqlite":  # SQLite locks the database during this transaction
            assert task_count_in_new_connection() == 0
    if connection.vendor != "sqlite":
        assert task_count_in_new_connection() == 1


def test_enqueue_logs(caplog):
    """tests.py DatabaseBackendTestCase.test_enqueue_logs."""
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    result = test_tasks.noop_task.enqueue()
    lines = [record.getMessage() for record in caplog.records if record.name == "django.tasks"]
    assert len(lines) == 1
    assert "enqueued" in lines[0]
    assert result.id in lines[0]


@pytest.mark.parametrize("use_tz", [True, False])
def test_run_after_tz(use_tz):
    """tests.py DatabaseBackendTestCase.test_run_after_tz (each subTest a case)."""
    with override_settings(USE_TZ=use_tz):
        result = test_tasks.noop_task.enqueue()
        assert default_task_backend.get_result(result.id).task.run_after is None


def only_default_queue() -> Any:
    """The original's settings: no QUEUES, so Django's default, ["default"] (this project's accepts any)."""
    return override_settings(TASKS={"default": {"BACKEND": BACKEND}})


def test_validate_on_enqueue():
    """tests.py DatabaseBackendTestCase.test_validate_on_enqueue."""
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["unknown_queue"]}}):
        task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")
    with (
        only_default_queue(),
        pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"),
    ):
        task_with_custom_queue_name.enqueue()


def test_validate_on_aenqueue():
    """tests.py DatabaseBackendTestCase.test_validate_on_aenqueue."""
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["unknown_queue"]}}):
        task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")
    with (
        only_default_queue(),
        pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"),
    ):
        run_async(task_with_custom_queue_name.aenqueue())


# DatabaseBackendWorkerTestCase ------------------------------------------------------------------------


def test_run_enqueued_task(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_run_enqueued_task."""
    result = test_tasks.noop_task.enqueue()
    assert ready_count() == 1
    assert result.status == TaskResultStatus.READY
    run_worker()
    assert (result.status, result.attempts) == (TaskResultStatus.READY, 0)
    result.refresh()
    assert None not in (result.started_at, result.last_attempted_at, result.finished_at)
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert (result.status, result.attempts) == (TaskResultStatus.SUCCESSFUL, 1)
    assert ready_count() == 0


def test_batch_processes_all_tasks(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_batch_processes_all_tasks."""
    for _ in range(3):
        test_tasks.noop_task.enqueue()
    test_tasks.failing_task_value_error.enqueue()
    assert ready_count() == 4
    run_worker()
    assert (ready_count(), count(TaskStatus.FINISHED), count(TaskStatus.FAILED)) == (0, 3, 1)


def test_no_tasks(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_no_tasks."""
    assert run_worker() == 0


def test_doesnt_process_different_queue(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_doesnt_process_different_queue."""
    result = test_tasks.noop_task.using(queue_name="queue-1").enqueue()
    assert ready_count() == 1
    run_worker(queues=["default"])
    assert ready_count() == 1
    run_worker(queues=[result.task.queue_name])
    assert ready_count() == 0


def test_process_all_queues(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_process_all_queues (no --queue for --queue-name=*)."""
    test_tasks.noop_task.using(queue_name="queue-1").enqueue()
    run_worker(queues=["default"])
    assert ready_count() == 1
    run_worker()
    assert ready_count() == 0


def test_failing_task(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_failing_task."""
    result = test_tasks.failing_task_value_error.enqueue()
    assert ready_count() == 1
    run_worker()
    assert result.status == TaskResultStatus.READY
    result.refresh()
    assert None not in (result.started_at, result.last_attempted_at, result.finished_at)
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert result.errors[0].exception_class is ValueError
    traceback = result.errors[0].traceback
    assert traceback.endswith("ValueError: This task failed due to ValueError\n"), traceback
    assert ready_count() == 0


def test_complex_exception(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_complex_exception."""
    result = test_tasks.complex_exception.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback
    assert ready_count() == 0


def test_complex_return_value(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_complex_return_value.

    The original's message is json's "is not JSON serializable"; Conductor checks the value as Django
    does (django.utils.json.normalize_json): "Unsupported type".
    """
    result = test_tasks.complex_return_value.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result._return_value is None
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback


@pytest.mark.parametrize(("option", "value"), [("--poll", "-1"), ("--max-tasks", "-1"), ("--max-tasks", "0")])
def test_invalid_worker_options(option, value):
    """tests.py DatabaseBackendWorkerTestCase.test_negative_interval, test_negative_max_tasks,
    test_zero_max_tasks (db_worker --interval is runtasks --poll)."""
    with pytest.raises(CommandError, match=option):
        call_command("runtasks", option, value)


def test_empty_worker_id():
    """tests.py DatabaseBackendWorkerTestCase.test_empty_worker_id."""
    with pytest.raises(CommandError, match="--worker-id: must not be empty"):
        call_command("runtasks", "--worker-id", "")


def test_run_after(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_run_after."""
    result = test_tasks.noop_task.using(run_after=timezone.now() + timedelta(hours=10)).enqueue()
    assert (TaskRow.objects.count(), ready_count()) == (1, 0)
    run_worker()
    assert (TaskRow.objects.count(), ready_count(), count(TaskStatus.FINISHED)) == (1, 0, 0)
    now = timezone.now()
    TaskRow.objects.filter(task_id=result.id).update(start_at=now, next_run=now)
    assert ready_count() == 1
    run_worker()
    assert (ready_count(), count(TaskStatus.FINISHED)) == (0, 1)


def test_run_after_priority(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_run_after_priority.

    The original reads its model's ordering; here the order is the one a single-thread runner starts
    the due tasks in: higher priority first, and the future ones wait. One deviation: among equal
    priorities the original starts the earlier ``run_after`` first; Conductor starts the earlier
    ``next_run``, and a ``run_after`` already past is due "now" when enqueued, so the two priority-20
    tasks run in the order they were enqueued.
    """
    now = timezone.now()
    old_task = test_tasks.noop_task.using(priority=20, run_after=now - timedelta(hours=2)).enqueue()
    very_old_task = test_tasks.noop_task.using(priority=20, run_after=now - timedelta(hours=10)).enqueue()
    far_future = test_tasks.noop_task.using(run_after=now + timedelta(hours=10)).enqueue()
    high_far_future = test_tasks.noop_task.using(priority=10, run_after=now + timedelta(hours=10)).enqueue()
    future = test_tasks.noop_task.using(run_after=now + timedelta(hours=2)).enqueue()
    high_priority = test_tasks.noop_task.using(priority=10).enqueue()
    low_priority = test_tasks.noop_task.using(priority=2).enqueue()
    lower_priority = test_tasks.noop_task.using(priority=-2).enqueue()
    run_worker(threads=1)
    ran = [very_old_task, old_task, high_priority, low_priority, lower_priority]
    for result in [*ran, far_future, high_far_future, future]:
        result.refresh()
    in_start_order = sorted(ran, key=lambda result: result.started_at)
    assert {result.id for result in in_start_order[:2]} == {very_old_task.id, old_task.id}
    assert in_start_order[2:] == ran[2:]
    assert {far_future.status, high_far_future.status, future.status} == {TaskResultStatus.READY}


def test_verbose_logging(worker_backends, run_worker, caplog):
    """tests.py DatabaseBackendWorkerTestCase.test_verbose_logging (the django.tasks lines of the run)."""
    caplog.set_level(logging.INFO, logger="django.tasks")
    result = test_tasks.noop_task.enqueue()
    run_worker()
    lines = [record.getMessage() for record in caplog.records if record.name == "django.tasks"]
    assert lines == [
        f"Task id={result.id} path=tests.conformance.tasks.noop_task state=RUNNING",
        f"Task id={result.id} path=tests.conformance.tasks.noop_task state=SUCCESSFUL",
    ]


@pytest.mark.parametrize(
    "func", ["subprocess.check_output", "missing.func", "tests.conformance.tasks.some_test"]
)
def test_worker_fails_what_is_not_a_task(worker_backends, run_worker, func):
    """tests.py DatabaseBackendWorkerTestCase.test_invalid_task_path, test_missing_task_path,
    test_task_import_string: the worker fails the row (the original's ImportError is UnknownFunction:
    Conductor runs registered functions only and never imports a path read from the database)."""
    row = stored_call(func)
    run_worker()
    row.refresh_from_db()
    assert row.status == TaskStatus.FAILED
    assert registry.UnknownFunction.__name__ in row.error
    last_line = row.error.splitlines()[-1]
    assert last_line.startswith(f"{class_path(registry.UnknownFunction)}: '{func}' is not a registered")


def test_worker_doesnt_exit_on_failure(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_worker_doesnt_exit_on_failure."""
    result = test_tasks.exit_task.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite locks the entire database (as the original)"
)
def test_worker_with_locked_rows(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_worker_with_locked_rows."""
    result_1 = test_tasks.noop_task.enqueue()
    new_connection = connections.create_connection("default")
    with transaction.atomic():
        locked_tasks_query = str(TaskRow.objects.select_for_update().query)
    try:
        with new_connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(locked_tasks_query)
            assert len(cursor.fetchall()) == 1
        result_2 = test_tasks.noop_task.enqueue()
        run_worker()
    finally:
        new_connection.close()
    result_1.refresh()
    result_2.refresh()
    assert (result_1.status, result_2.status) == (TaskResultStatus.READY, TaskResultStatus.SUCCESSFUL)


def test_max_tasks(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_max_tasks (runtasks --max-tasks, without --once)."""
    results = [test_tasks.noop_task.enqueue() for _ in range(5)]
    run_worker(once=False, max_tasks=2, threads=1)
    for result in results:
        result.refresh()
    statuses = [result.status for result in results]
    assert (statuses.count(TaskResultStatus.SUCCESSFUL), statuses.count(TaskResultStatus.READY)) == (2, 3)


def test_takes_context(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_takes_context."""
    result = test_tasks.get_task_id.enqueue()
    run_worker()
    result.refresh()
    assert result.return_value == result.id


def test_context(worker_backends, run_worker):
    """tests.py DatabaseBackendWorkerTestCase.test_context."""
    result = test_tasks.checks_context.enqueue(1)
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
