"""Django's public tasks API end to end: ``enqueue()`` here, ``manage.py runtasks`` in a subprocess.

The tasks are tests/django_task_functions.py on TASKS["default"] (Conductor's backend, server/settings.py);
the runners import that module through CONDUCTOR_TASK_MODULES, which registers them.
"""

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

from app import djangotasks, registry
from tests import django_task_functions as tasks
from tests.acceptance.conftest import RuntasksProcess
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

#: How long a runner may take to start (Django set-up, checks) on a loaded machine.
STARTUP = 30.0
MODULES = {"CONDUCTOR_TASK_MODULES": "tests.functions,tests.django_task_functions"}
SHORT_HEARTBEATS = {"CONDUCTOR_HEARTBEAT": "0.3", "CONDUCTOR_HEARTBEAT_TIMEOUT": "1.5"}


def start(start_runtasks: Any, worker_id: str, *args: str, **env: str) -> RuntasksProcess:
    runner = start_runtasks("--worker-id", worker_id, "--poll", "0.2", *args, env={**MODULES, **env})
    wait_until(runner.is_up, timeout=STARTUP)
    return runner


def all_finished(*results: Any) -> bool:
    for result in results:
        result.refresh()
    return all(result.is_finished for result in results)


def signals_sent(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_results_errors_context_retries_and_signals_come_back_from_the_runner(
    start_runtasks, tmp_path, monkeypatch
):
    signal_log = tmp_path / "signals.jsonl"
    monkeypatch.setenv(tasks.SIGNALS_ENV, str(signal_log))  # this process and the runner log signals
    results = [tasks.add.enqueue(2, b=3), tasks.explode.enqueue("bad input"),
               tasks.describe_context.enqueue(note="hi"), tasks.fails_once.enqueue(),
               tasks.async_add.enqueue(20, 22)]  # fmt: skip
    runner = start(start_runtasks, "django")
    wait_until(lambda: all_finished(*results), timeout=STARTUP)
    added, exploded, described, flaky, async_added = results

    assert (added.status, added.return_value, added.worker_ids, added.args, added.kwargs) == (
        TaskResultStatus.SUCCESSFUL, 5, ["django"], [2], {"b": 3})  # fmt: skip
    assert added.enqueued_at <= added.started_at <= added.finished_at
    assert async_added.return_value == 42
    assert exploded.status == TaskResultStatus.FAILED
    [error] = exploded.errors
    assert error.exception_class is tasks.Boom
    assert "raise Boom(message)\ntests.django_task_functions.Boom: bad input" in error.traceback
    assert described.return_value == {"attempt": 1, "id": described.id, "status": "RUNNING", "note": "hi",
                                      "workers": ["django"], "stop_requested": False}  # fmt: skip
    assert (flaky.return_value, flaky.worker_ids) == (2, ["django", "django"])
    assert [e.exception_class_path for e in flaky.errors] == ["tests.django_task_functions.Boom"]

    # task_enqueued was sent here; task_started and task_finished in the runner, around each try.
    wait_until(lambda: len(signals_sent(signal_log)) == 5 + 2 * 6)  # the last run is recorded first
    sent = signals_sent(signal_log)
    assert {(s["signal"], s["pid"]) for s in sent} == {
        ("enqueued", os.getpid()), ("started", runner.pid), ("finished", runner.pid)}  # fmt: skip
    by_result = {result.id: [(s["signal"], s["status"], s["attempts"]) for s in sent if s["id"] == result.id]
                 for result in results}  # fmt: skip
    assert by_result[added.id] == [("enqueued", "READY", 0), ("started", "RUNNING", 1),
                                   ("finished", "SUCCESSFUL", 1)]  # fmt: skip
    assert by_result[exploded.id][2] == ("finished", "FAILED", 1)
    assert by_result[flaky.id] == [("enqueued", "READY", 0), ("started", "RUNNING", 1),
                                   ("finished", "FAILED", 1), ("started", "RUNNING", 2),
                                   ("finished", "SUCCESSFUL", 2)]  # fmt: skip
    runner.terminate()
    assert runner.wait() == 0


def test_priority_order_deferral_and_queues_served_by_named_runners(start_runtasks):
    low, high = tasks.echo.using(priority=-5).enqueue("low"), tasks.echo.using(priority=50).enqueue("high")
    middle, fast = tasks.echo.enqueue("middle"), tasks.in_fast_queue.enqueue()
    runner = start(start_runtasks, "one-thread", "--threads", "1", "--queue", "default")
    wait_until(lambda: all_finished(low, high, middle), timeout=STARTUP)
    assert sorted([low, middle, high], key=lambda r: r.started_at) == [high, middle, low]

    run_after = timezone.now() + timedelta(seconds=1)
    deferred = tasks.echo.using(run_after=run_after, priority=100).enqueue("later")
    assert deferred.task.run_after == run_after
    wait_until(lambda: all_finished(deferred), timeout=STARTUP)
    assert deferred.started_at >= run_after
    assert deferred.return_value == "later"

    fast.refresh()  # queue "fast": not served by a runner of queue "default"
    assert (fast.status, fast.task.queue_name, fast.task.priority) == (TaskResultStatus.READY, "fast", 5)
    fast_runner = start(start_runtasks, "fast-one", "--queue", "fast")
    wait_until(lambda: all_finished(fast), timeout=STARTUP)
    assert (fast.return_value, fast.worker_ids) == ("fast", ["fast-one"])
    for process in (runner, fast_runner):
        process.terminate()
        assert process.wait() == 0


def test_the_task_of_a_killed_runner_is_run_again_by_another(start_runtasks):
    result = tasks.hangs_on_first_try.enqueue()
    doomed = start(start_runtasks, "doomed", **SHORT_HEARTBEATS)
    wait_until(lambda: result.refresh() or result.status == TaskResultStatus.RUNNING, timeout=STARTUP)
    doomed.kill()
    doomed.wait()
    survivor = start(start_runtasks, "survivor", **SHORT_HEARTBEATS)
    wait_until(lambda: all_finished(result), timeout=STARTUP)
    assert (result.status, result.return_value, result.worker_ids) == (
        "SUCCESSFUL",
        2,
        ["doomed", "survivor"],
    )
    [lost] = result.errors
    assert lost.exception_class_path == "app.execution.RunInterrupted"
    assert "runner doomed" in lost.traceback
    assert "recovered by survivor" in lost.traceback
    survivor.terminate()
    assert survivor.wait() == 0


def test_a_runner_that_never_imported_the_task_fails_it_saying_how_to_make_it_import_it(start_runtasks):
    result = tasks.echo.enqueue("unseen")  # tests.django_task_functions is not among its task modules
    runner = start(start_runtasks, "forgetful", CONDUCTOR_TASK_MODULES="tests.functions")
    wait_until(lambda: all_finished(result), timeout=STARTUP)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is registry.UnknownFunction
    message = error.traceback.splitlines()[-1]
    assert message.startswith(f"{djangotasks.class_path(registry.UnknownFunction)}: ")
    assert "'tests.django_task_functions.echo' is not a registered task function" in message
    assert "CONDUCTOR['TASK_MODULES']" in message
    assert "Django @task function is registered by its decorator" in message
    runner.terminate()
    assert runner.wait() == 0
