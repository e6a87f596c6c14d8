"""``manage.py runtasks --queue a,b``: a runner subprocess that serves some queues and leaves the rest."""

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import scheduling_functions  # noqa: F401 - registers the functions
from tests.acceptance.conftest import REPO_ROOT, runner_env
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

STARTUP = 30.0
TASK_MODULES = "tests.functions,tests.scheduling_functions"


def queued_task(queue: str, func: str = "tests.functions.add", args_in: dict | None = None, **fields) -> Task:
    return Task.objects.create(
        name=f"in-{queue}", task_id=uuid.uuid4().hex, func=func, queue=queue,
        args_in=args_in if args_in is not None else {"a": 1, "b": 2}, **fields,
    )  # fmt: skip


def status_is(task: Task, status: str) -> bool:
    task.refresh_from_db()
    return task.status == status


def test_runtasks_with_queues_a_and_b_runs_those_and_leaves_queue_c_waiting(start_runtasks):
    tasks = {queue: [queued_task(queue) for _ in range(2)] for queue in ("a", "b", "c")}
    runner = start_runtasks("--queue", "a,b", "--worker-id", "ab", "--poll", "0.2",
                            env={"CONDUCTOR_TASK_MODULES": TASK_MODULES})  # fmt: skip
    wait_until(runner.is_up, timeout=STARTUP)
    served = tasks["a"] + tasks["b"]
    wait_until(lambda: all(status_is(task, TaskStatus.FINISHED) for task in served), timeout=STARTUP)
    for task in served:
        run = TaskRun.objects.get(task=task)
        assert (run.status, run.output) == (RunStatus.FINISHED, 3)
        assert run.runner.worker_id == "ab"
    # A few polls later queue c is still untouched: due, but not this runner's.
    polled = timezone.now() + timedelta(seconds=1)
    wait_until(lambda: runner.check_alive() and timezone.now() > polled)
    for task in tasks["c"]:
        assert status_is(task, TaskStatus.WAITING)
        assert not TaskRun.objects.filter(task=task).exists()
    assert "queues: a, b" in runner.log()
    runner.terminate()
    assert runner.wait() == 0


def test_runtasks_with_a_queue_serves_by_priority_and_runs_the_process_isolated_too(start_runtasks):
    low = queued_task("a", priority=0)
    high = queued_task("a", priority=9, isolation="process", func="tests.scheduling_functions.whoami",
                       args_in={})  # fmt: skip
    runner = start_runtasks("--queue", "a", "--threads", "1", "--worker-id", "solo", "--poll", "0.2",
                            env={"CONDUCTOR_TASK_MODULES": TASK_MODULES})  # fmt: skip
    wait_until(runner.is_up, timeout=STARTUP)
    wait_until(lambda: status_is(low, TaskStatus.FINISHED) and status_is(high, TaskStatus.FINISHED),
               timeout=STARTUP)  # fmt: skip
    first, second = TaskRun.objects.filter(task__in=[low, high]).order_by("id")
    assert (first.task_id, second.task_id) == (high.pk, low.pk)
    assert first.output not in (runner.pid, None)  # ran in a child of the runner, not in the runner
    runner.terminate()
    assert runner.wait() == 0


@pytest.mark.parametrize("queues", ["", "a,,b", ",", "a, ,b"])
def test_runtasks_refuses_an_empty_queue_name(queues, transactional_db):
    done = subprocess.run(
        [sys.executable, "manage.py", "runtasks", "--queue", queues],
        cwd=REPO_ROOT,
        env=runner_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP,
    )
    assert done.returncode == 2
    assert (
        f"argument --queue: takes queue names separated by commas (e.g. default,reports), got {queues!r}"
        in (done.stderr)
    )
    assert "Runner" not in done.stderr  # refused before a runner came up
