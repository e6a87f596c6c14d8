"""django-tasks-db's worker-process tests, ported to ``manage.py runtasks`` subprocesses.

From django-tasks-db 0.13.0's sdist, ``tests/tests.py`` DatabaseWorkerProcessTestCase: its ``db_worker``
subprocess is ``runtasks`` here (``--once`` for ``--batch``), on the test database. Each test names the
test it was ported from. The originals wait with ``time.sleep(WORKER_STARTUP_TIME)``; these poll for the
state they need. Where Conductor's documented behaviour differs on purpose (docs/runner.md "Stopping"),
the test says so and checks Conductor's.
"""

import signal
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from app.execution import RunInterrupted
from app.task import Task
from app.taskrun import TaskRun
from tests.acceptance.conftest import RuntasksProcess
from tests.conformance import tasks as test_tasks
from tests.conformance.helpers import refreshed
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

#: How long a runner may take to start (Django set-up, checks) on a loaded machine.
STARTUP = 30.0
MODULES = {"CONDUCTOR_TASK_MODULES": "tests.functions,tests.conformance.tasks"}


def start_worker(start_runtasks: Any, *args: str, worker_id: str = "worker") -> RuntasksProcess:
    return start_runtasks("--worker-id", worker_id, "--poll", "0.2", *args, env=MODULES)


def unfinished_story(results: list[Any], processes: list[Any]) -> str:
    """Why results are unfinished after every worker exited: their tasks' rows, runs and the logs."""
    ids = [result.id for result in results if not result.is_finished]
    tasks = Task.objects.filter(task_id__in=ids).values("task_id", "status", "next_run", "attempts")
    runs = TaskRun.objects.filter(task__task_id__in=ids).values("task__task_id", "status", "runner", "error")
    logs = "\n".join(f"--- {process!r}\n{process.log()}" for process in processes)
    return f"unfinished tasks {list(tasks)}\nruns {list(runs)}\n{logs}"


def running(result: Any) -> bool:
    result.refresh()
    return result.status == TaskResultStatus.RUNNING


def test_run_subprocess(start_runtasks):
    """tests.py DatabaseWorkerProcessTestCase.test_run_subprocess."""
    result = test_tasks.noop_task.enqueue()
    process = start_worker(start_runtasks, "--once")
    assert process.wait(STARTUP) == 0
    assert result.status == TaskResultStatus.READY
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_interrupt_no_tasks(start_runtasks):
    """tests.py DatabaseWorkerProcessTestCase.test_interrupt_no_tasks."""
    process = start_worker(start_runtasks)
    wait_until(process.is_up, timeout=STARTUP)
    process.terminate()
    assert process.wait(5) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_signals(start_runtasks, sig):
    """tests.py DatabaseWorkerProcessTestCase.test_interrupt_signals (each subTest a case): a running
    task finishes before the worker exits."""
    result = test_tasks.sleep_for.enqueue(2)
    assert result.worker_ids == []
    process = start_worker(start_runtasks)
    wait_until(lambda: running(result), timeout=STARTUP)
    assert result.worker_ids == ["worker"]
    process.send(sig)
    assert process.wait(10) == 0
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_repeat_ctrl_c(start_runtasks):
    """tests.py DatabaseWorkerProcessTestCase.test_repeat_ctrl_c.

    Deviation by design: the original's worker exits 0 and records the task FAILED (SystemExit). A
    second signal makes runtasks stop at once with exit code 1, and the interrupted try is not the
    task's failure: it is READY again, to start afresh (docs/django-tasks.md "Signals").
    """
    result = test_tasks.hang.enqueue()
    process = start_worker(start_runtasks, "--grace", "60")
    wait_until(lambda: running(result), timeout=STARTUP)
    assert result.worker_ids == ["worker"]
    process.send(signal.SIGINT)
    # As a person presses Ctrl-C again: once the first is seen. Two signals a few ms apart can be merged
    # into one by the time Python runs its handler (POSIX keeps one pending signal of a kind).
    wait_until(lambda: "stopping:" in process.log(), timeout=STARTUP)
    assert process.check_alive()
    assert running(result)
    process.send(signal.SIGINT)
    assert process.wait(10) == 1
    result.refresh()
    assert (result.status, result.worker_ids) == (TaskResultStatus.READY, ["worker"])
    assert [error.exception_class for error in result.errors] == [RunInterrupted]


def test_kill(start_runtasks):
    """tests.py DatabaseWorkerProcessTestCase.test_kill: right after SIGKILL the task is still RUNNING.

    (The original stops there, its issue 46: the task stays RUNNING for ever. Conductor's other runners
    recover it after the heartbeat timeout: tests/acceptance/test_django_tasks.py.)
    """
    result = test_tasks.hang.enqueue()
    process = start_worker(start_runtasks)
    wait_until(lambda: running(result), timeout=STARTUP)
    process.kill()
    assert process.wait(5) == -signal.SIGKILL
    assert running(result)


@pytest.mark.parametrize(
    ("task_name", "exception"),
    [("failing_task_system_exit", SystemExit), ("failing_task_keyboard_interrupt", KeyboardInterrupt)],
    ids=["test_system_exit_task", "test_keyboard_interrupt_task"],
)
def test_base_exception_task(start_runtasks, task_name, exception):
    """tests.py DatabaseWorkerProcessTestCase.test_system_exit_task and test_keyboard_interrupt_task."""
    result = getattr(test_tasks, task_name).enqueue()
    process = start_worker(start_runtasks, "--once")
    assert process.wait(STARTUP) == 0
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is exception


def test_multiple_workers(start_runtasks):
    """tests.py DatabaseWorkerProcessTestCase.test_multiple_workers: each task runs once, and succeeds."""
    results = [test_tasks.sleep_for.enqueue(0.1) for _ in range(10)]
    processes = [start_worker(start_runtasks, "--once", worker_id=f"worker{n}") for n in range(3)]
    for process in processes:
        assert process.wait(STARTUP) == 0
    assert refreshed(*results), unfinished_story(results, processes)
    assert {result.status for result in results} == {TaskResultStatus.SUCCESSFUL}
    assert all(result.attempts == 1 for result in results)
