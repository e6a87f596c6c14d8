"""``manage.py runtasks`` as real subprocesses, stopped and killed with real signals.

Each test shares pytest-django's test database with the runners it starts (see conftest.py), creates
tasks with the ORM and reads what the runners recorded with the ORM.
"""

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.utils import timezone

from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.acceptance.conftest import REPO_ROOT, runner_env, sqlite_write_lock_free
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

#: Short heartbeats for the SIGKILL test (server/settings.py reads these into CONDUCTOR).
HEARTBEAT = 0.5
HEARTBEAT_TIMEOUT = 3.0
#: How long a runner may take to start (Django set-up, checks) on a loaded machine.
STARTUP = 30.0


def one_off_tasks(count: int, func: str = "tests.functions.add", **fields) -> list[Task]:
    """``count`` tasks due now, inserted in one statement (bulk_create skips Task.save)."""
    now = timezone.now()
    return Task.objects.bulk_create(
        [
            Task(
                name=f"task-{i}",
                task_id=uuid.uuid4().hex,
                func=func,
                args_in={"a": i, "b": 1} if func == "tests.functions.add" else None,
                next_run=now,
                **fields,
            )
            for i in range(count)
        ]
    )


def blocking_task(markers: Path, func: str = "tests.functions.touch_then_wait", **args) -> Task:
    args.setdefault("started", str(markers / "started"))
    args.setdefault("release", str(markers / "release"))
    return Task.objects.create(name="blocking", func=func, args_in=args)


def assert_nothing_running() -> None:
    running_tasks = list(Task.objects.running().values_list("name", flat=True))
    open_runs = list(TaskRun.objects.running().values_list("id", "status"))
    live_runners = list(RunnerProcess.objects.live().values_list("worker_id", "state"))
    assert running_tasks == [], f"tasks left running: {running_tasks}"
    assert open_runs == [], f"runs left open: {open_runs}"
    assert live_runners == [], f"runners left live: {live_runners}"


def runner_state(worker_id: str) -> str | None:
    return RunnerProcess.objects.filter(worker_id=worker_id).values_list("state", flat=True).first()


# 1. Many runners, one SQLite file: every task runs exactly once ---------------------------------


def test_four_runners_run_each_of_300_tasks_exactly_once(start_runtasks):
    runners = [start_runtasks("--threads", "4", "--poll", "0.2", "--worker-id", f"r{n}") for n in range(4)]
    wait_until(lambda: all(r.is_up() for r in runners), timeout=STARTUP)

    tasks = one_off_tasks(300)  # all due at once, so the four runners compete for them
    wait_until(
        lambda: (
            all(r.check_alive() for r in runners)
            and Task.objects.filter(status=TaskStatus.FINISHED).count() == 300
        ),
        timeout=60,
        interval=0.1,
    )

    for runner in runners:
        runner.terminate()
    codes = {runner.worker_id: runner.wait(30) for runner in runners}
    assert codes == {"r0": 0, "r1": 0, "r2": 0, "r3": 0}

    runs = list(TaskRun.objects.values("task_id", "status", "finished_at", "runner__worker_id"))
    assert len(runs) == 300
    assert len({run["task_id"] for run in runs}) == 300, "some task ran more than once"
    assert {run["status"] for run in runs} == {RunStatus.FINISHED}
    assert all(run["finished_at"] is not None for run in runs)
    expected = {task.pk: i + 1 for i, task in enumerate(tasks)}
    for task in Task.objects.all():
        assert task.status == TaskStatus.FINISHED
        assert task.output == expected[task.pk], task
        assert task.attempts == 1, task
    workers = {run["runner__worker_id"] for run in runs}
    assert len(workers) >= 2, f"only {workers} ran tasks: the runners did not compete"
    for runner in runners:
        assert "Traceback" not in runner.log(), runner.log_tail()
    assert set(RunnerProcess.objects.values_list("worker_id", "state")) == {
        (f"r{n}", RunnerState.STOPPED) for n in range(4)
    }
    assert_nothing_running()


# 2. SIGTERM: running tasks get the grace period -------------------------------------------------


def test_sigterm_lets_a_running_task_finish_within_grace(start_runtasks, marker_dir):
    task = blocking_task(marker_dir)
    runner = start_runtasks("--poll", "0.2", "--worker-id", "w", "--grace", "30")
    wait_until(lambda: runner.check_alive() and (marker_dir / "started").exists(), STARTUP)

    runner.terminate()
    wait_until(lambda: runner.check_alive() and runner_state("w") == RunnerState.STOPPING)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING  # still running in grace
    (marker_dir / "release").touch()

    assert runner.wait(20) == 0
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FINISHED
    assert run.output == "released"
    task.refresh_from_db()
    assert task.status == TaskStatus.FINISHED
    assert runner_state("w") == RunnerState.STOPPED
    assert_nothing_running()


def test_sigterm_interrupts_a_task_still_running_when_grace_ends(start_runtasks, marker_dir):
    never = str(marker_dir / "never")
    task = Task.objects.create(
        name="never released", func="tests.functions.wait_for_file", args_in={"path": never, "timeout": 600}
    )
    runner = start_runtasks("--poll", "0.2", "--worker-id", "w", "--grace", "0.5")
    wait_until(lambda: runner.check_alive() and TaskRun.objects.filter(task=task).exists(), STARTUP)

    runner.terminate()
    signalled = time.monotonic()
    assert runner.wait(20) == 0
    assert time.monotonic() - signalled >= 0.5  # it did wait out the grace period

    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.INTERRUPTED
    assert run.finished_at is not None
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING
    assert task.next_run <= timezone.now()  # due again: the next runner picks it up
    assert task.runner is None
    assert runner_state("w") == RunnerState.STOPPED
    assert_nothing_running()


def test_sigterm_does_not_wait_for_a_task_blocked_in_c_beyond_grace(start_runtasks):
    """time.sleep cannot be interrupted: the runner gives up on it and exits, recording it."""
    task = Task.objects.create(name="asleep", func="tests.functions.c_sleep", args_in={"seconds": 600})
    runner = start_runtasks("--poll", "0.2", "--worker-id", "w", "--grace", "0.5")
    wait_until(lambda: runner.check_alive() and TaskRun.objects.filter(task=task).exists(), STARTUP)

    runner.terminate()
    signalled = time.monotonic()
    assert runner.wait(20) == 0
    assert time.monotonic() - signalled < 10  # grace 0.5 s + INTERRUPT_WAIT 1 s, not 600 s

    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.INTERRUPTED
    assert "stopped before this run ended" in run.error, run.error
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING
    assert_nothing_running()


# 3. A second signal stops at once ---------------------------------------------------------------


def test_second_sigterm_exits_at_once_with_code_1(start_runtasks, marker_dir):
    task = blocking_task(marker_dir, timeout=600)
    runner = start_runtasks("--poll", "0.2", "--worker-id", "w", "--grace", "60")
    wait_until(lambda: runner.check_alive() and (marker_dir / "started").exists(), STARTUP)

    runner.terminate()
    wait_until(lambda: runner.check_alive() and runner_state("w") == RunnerState.STOPPING)
    runner.terminate()
    signalled = time.monotonic()
    assert runner.wait(20) == 1
    assert time.monotonic() - signalled < 10, "did not stop at once (grace is 60 s)"

    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.INTERRUPTED
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING
    assert runner_state("w") == RunnerState.STOPPED
    assert_nothing_running()


# 4. SIGKILL: another runner recovers the work after the heartbeat timeout -----------------------


def test_sigkilled_runner_is_recovered_by_another_within_heartbeat_timeout(start_runtasks, marker_dir):
    heartbeat = {"CONDUCTOR_HEARTBEAT": str(HEARTBEAT), "CONDUCTOR_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT)}
    task = blocking_task(marker_dir, timeout=600)
    runner_a = start_runtasks("--poll", "0.2", "--worker-id", "a", env=heartbeat)
    started = marker_dir / "started"
    wait_until(lambda: runner_a.check_alive() and started.exists(), STARTUP)
    first_run = TaskRun.objects.get(task=task)

    runner_a.kill()
    assert runner_a.wait(10) == -signal.SIGKILL
    killed_at = timezone.now()
    started.unlink()
    # The killed runner had no chance to clean up: its run and task still look alive.
    assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING
    assert runner_state("a") == RunnerState.RUNNING

    runner_b = start_runtasks("--poll", "0.2", "--worker-id", "b", env=heartbeat)
    # Whatever timeout the runner uses (settings default 15 s), it must recover within it + slack.
    wait_until(lambda: runner_b.check_alive() and started.exists(), STARTUP + 15 + 5)

    first_run.refresh_from_db()
    assert first_run.status == RunStatus.INTERRUPTED
    assert "runner a " in first_run.error, first_run.error
    assert "recovered by b" in first_run.error, first_run.error
    # The reason names the timeout the runners used: the short one from the environment.
    timeout = float(re.search(r"for over ([\d.]+) s", first_run.error).group(1))
    assert timeout == HEARTBEAT_TIMEOUT
    recovered_after = (first_run.finished_at - killed_at).total_seconds()
    assert recovered_after <= timeout + 5, f"recovered {recovered_after:.1f} s after the kill"
    assert runner_state("a") == RunnerState.DEAD

    (marker_dir / "release").touch()
    wait_until(
        lambda: (
            runner_b.check_alive() and Task.objects.filter(pk=task.pk, status=TaskStatus.FINISHED).exists()
        ),
        timeout=20,
    )
    second_run = TaskRun.objects.exclude(pk=first_run.pk).get(task=task)
    assert second_run.runner.worker_id == "b"
    assert second_run.status == RunStatus.FINISHED
    assert second_run.attempt == 2

    runner_b.terminate()
    assert runner_b.wait(20) == 0
    assert runner_state("a") == RunnerState.DEAD
    assert runner_state("b") == RunnerState.STOPPED
    assert_nothing_running()


# 5-7. --once, bad options, --max-tasks ----------------------------------------------------------


def test_once_runs_what_is_due_then_exits_0(start_runtasks):
    due = one_off_tasks(5)
    future = Task.objects.create(name="later", func="tests.functions.add", args_in={"a": 1}, run_in=3600)

    runner = start_runtasks("--once", "--poll", "0.2", "--worker-id", "w")
    assert runner.wait(STARTUP) == 0

    assert set(Task.objects.filter(pk__in=[t.pk for t in due]).values_list("status", flat=True)) == {
        TaskStatus.FINISHED
    }
    assert TaskRun.objects.filter(status=RunStatus.FINISHED).count() == 5
    future.refresh_from_db()
    assert future.status == TaskStatus.WAITING
    assert not TaskRun.objects.filter(task=future).exists()
    assert runner_state("w") == RunnerState.STOPPED
    assert_nothing_running()


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("--threads", "0", "whole number above 0"),
        ("--threads", "many", "whole number above 0"),
        ("--poll", "abc", "number of seconds"),
        ("--poll", "0", "seconds above 0"),
        ("--max-tasks", "-1", "whole number above 0"),
        ("--grace", "-2", "seconds >= 0"),
    ],
)
def test_bad_options_exit_non_zero_saying_what_is_wrong(option, value, hint):
    result = subprocess.run(
        [sys.executable, "manage.py", "runtasks", option, value],
        cwd=REPO_ROOT,
        env=runner_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP,
    )
    assert result.returncode != 0
    assert option in result.stderr, result.stderr  # which option is wrong,
    assert value in result.stderr, result.stderr  # what it was given,
    assert hint in result.stderr, result.stderr  # and what it takes
    assert "Traceback" not in result.stderr, result.stderr
    assert not RunnerProcess.objects.exists(), "a runner signed in despite a bad option"


def test_max_tasks_exits_0_after_exactly_that_many_runs(start_runtasks):
    one_off_tasks(10)
    runner = start_runtasks("--max-tasks", "5", "--poll", "0.2", "--worker-id", "w")
    assert runner.wait(STARTUP) == 0

    assert TaskRun.objects.count() == 5
    assert TaskRun.objects.filter(status=RunStatus.FINISHED).count() == 5
    assert Task.objects.filter(status=TaskStatus.FINISHED).count() == 5
    assert Task.objects.filter(status=TaskStatus.WAITING, attempts=0).count() == 5
    assert runner_state("w") == RunnerState.STOPPED
    assert_nothing_running()


def test_a_task_calling_sys_exit_fails_after_its_tries_and_the_runner_goes_on(start_runtasks):
    """Issue 13: such a task was re-run at once, for ever, recorded interrupted, its traceback lost."""
    quitter = Task.objects.create(name="quits", func="tests.functions.quits", args_in={"how": "sys.exit"},
                                  max_attempts=2, retry_delay=0.05, retry_delay_max=1)  # fmt: skip
    runner = start_runtasks("--max-tasks", "3", "--threads", "1", "--poll", "0.2", "--worker-id", "w")
    wait_until(lambda: runner.check_alive() and Task.objects.get(pk=quitter.pk).status == TaskStatus.FAILED,
               timeout=STARTUP)  # fmt: skip
    after = Task.objects.create(name="after", func="tests.functions.add", args_in={"a": 2, "b": 3})
    assert runner.wait(STARTUP) == 0  # its third run was the next task: none was spent re-running quits

    runs = list(TaskRun.objects.filter(task=quitter).order_by("attempt"))
    assert [(run.attempt, run.status) for run in runs] == [(1, RunStatus.FAILED), (2, RunStatus.FAILED)]
    assert all(run.error.rstrip().endswith("SystemExit: 1") and "in quits" in run.error for run in runs)
    quitter.refresh_from_db()
    assert (quitter.status, quitter.attempts) == (TaskStatus.FAILED, 2)
    after.refresh_from_db()
    assert (after.status, after.output) == (TaskStatus.FINISHED, 5)
    assert "ended by SystemExit" not in runner.log()
    assert_nothing_running()


# Beyond the brief: restarts and a paused (not dead) runner ----------------------------------------


def test_sigkilled_runner_restarted_under_its_worker_id_recovers_its_runs_at_once(start_runtasks, marker_dir):
    task = blocking_task(marker_dir, timeout=600)
    first = start_runtasks("--poll", "0.2", "--worker-id", "a")  # default 15 s heartbeat timeout
    started = marker_dir / "started"
    wait_until(lambda: first.check_alive() and started.exists(), STARTUP)
    first_run = TaskRun.objects.get(task=task)
    first.kill()
    first.wait(10)
    started.unlink()

    again = start_runtasks("--poll", "0.2", "--worker-id", "a")
    restarted = time.monotonic()
    wait_until(lambda: again.check_alive() and started.exists(), STARTUP)
    assert time.monotonic() - restarted < 10, "waited for the heartbeat timeout instead"
    first_run.refresh_from_db()
    assert first_run.status == RunStatus.INTERRUPTED
    assert "restarted" in first_run.error, first_run.error

    (marker_dir / "release").touch()
    wait_until(lambda: Task.objects.filter(pk=task.pk, status=TaskStatus.FINISHED).exists())
    again.terminate()
    assert again.wait(20) == 0
    assert TaskRun.objects.filter(task=task).count() == 2
    assert_nothing_running()


def test_paused_runner_resuming_after_recovery_has_its_late_result_refused(start_runtasks, marker_dir):
    """SIGSTOP (a frozen VM, a debugger) looks dead; on SIGCONT its old run must not write back."""
    heartbeat = {
        "CONDUCTOR_HEARTBEAT": str(HEARTBEAT),
        "CONDUCTOR_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
    }
    task = blocking_task(marker_dir, timeout=600)
    runner_a = start_runtasks("--poll", "0.2", "--worker-id", "a", env=heartbeat)
    started = marker_dir / "started"
    wait_until(lambda: runner_a.check_alive() and started.exists(), STARTUP)
    first_run = TaskRun.objects.get(task=task)

    for _ in range(20):  # never freeze it inside a write: that would stall every other runner
        runner_a.send(signal.SIGSTOP)
        if sqlite_write_lock_free():
            break
        runner_a.send(signal.SIGCONT)
    else:
        pytest.fail("runner a always held the write lock when stopped")
    try:
        started.unlink()
        runner_b = start_runtasks("--poll", "0.2", "--worker-id", "b", env=heartbeat)
        wait_until(lambda: runner_b.check_alive() and started.exists(), STARTUP + 15)
        (marker_dir / "release").touch()
        wait_until(lambda: Task.objects.filter(pk=task.pk, status=TaskStatus.FINISHED).exists())
    finally:
        runner_a.send(signal.SIGCONT)

    # a's thread sees the release file too and ends; its result must be refused.
    wait_until(lambda: runner_a.check_alive() and "its result was refused" in runner_a.log(), 20)
    first_run.refresh_from_db()
    assert first_run.status == RunStatus.INTERRUPTED
    assert first_run.output is None
    second_run = TaskRun.objects.exclude(pk=first_run.pk).get(task=task)
    assert second_run.runner.worker_id == "b"
    assert second_run.status == RunStatus.FINISHED
    task.refresh_from_db()
    assert task.status == TaskStatus.FINISHED
    assert task.attempts == 2
    assert task.last_run == second_run.started_at
    wait_until(lambda: runner_state("a") == RunnerState.RUNNING)  # signed in again

    for runner in (runner_a, runner_b):
        runner.terminate()
    assert runner_a.wait(20) == 0
    assert runner_b.wait(20) == 0
    assert TaskRun.objects.filter(task=task).count() == 2
    assert_nothing_running()


def test_a_live_runners_worker_id_cannot_be_taken_over(start_runtasks):
    live = start_runtasks("--poll", "0.2", "--worker-id", "x")
    wait_until(live.is_up, STARTUP)

    second = start_runtasks("--poll", "0.2", "--worker-id", "x")
    assert second.wait(STARTUP) != 0
    assert "in use by a live runner" in second.log(), second.log_tail()
    record = RunnerProcess.objects.get(worker_id="x")
    assert (record.pid, record.state) == (live.pid, RunnerState.RUNNING)

    live.terminate()
    assert live.wait(20) == 0
    assert_nothing_running()
