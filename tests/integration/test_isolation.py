"""isolation="process": a task in a child process, killed at kill_time even when blocked in C.

Run both by Task.run() (in the calling thread) and by the runner in-process. A child process imports
the modules in the parent's CONDUCTOR['TASK_MODULES'] and the module of the function it runs.
"""

import gc
import os
import time
import warnings
from pathlib import Path

import pytest
from django.test import override_settings

from app import conf, isolation
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions, scheduling_functions
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

#: A run blocked for 30 s and killed at kill_time=1 must end long before 30 s (child start-up included).
WELL_BEFORE = 10.0


def make_task(func, **fields) -> Task:
    fields.setdefault("isolation", "process")
    task = Task(func=func, **fields)
    task.save()
    return task


def child_processes() -> list[int]:
    """Pids of this process's children running ``python -m app.child`` (others' tests have their own)."""
    found = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        parent = stat.rsplit(")", 1)[1].split()[1]
        if parent == me and b"app.child" in cmdline:
            found.append(int(entry.name))
    return found


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # Still there: only a zombie nobody reaped would do, and that would be a leak too.
    return False


def status_is(task: Task, *statuses: str) -> bool:
    task.refresh_from_db()
    return task.status in statuses


@pytest.fixture(autouse=True)
def no_child_left_behind():
    assert child_processes() == [], "a child process was left over before the test"
    yield
    assert child_processes() == [], "a child process outlived its run"


# kill_time ------------------------------------------------------------------------------------------


def test_task_run_kills_a_child_blocked_in_c_at_kill_time():
    task = make_task(functions.c_sleep, args_in={"seconds": 30}, kill_time=1)
    started = time.monotonic()
    run = task.run()
    elapsed = time.monotonic() - started
    assert run.status == RunStatus.TIMED_OUT
    assert 1 <= elapsed < WELL_BEFORE
    assert "killed at kill_time=1.0 s" in run.error
    assert run.output is None
    assert task.status == TaskStatus.TIMED_OUT
    assert child_processes() == []


def test_the_runner_kills_a_child_blocked_in_c_at_kill_time(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 30}, kill_time=1)
    running = start_runner()
    wait_until(lambda: status_is(task, TaskStatus.TIMED_OUT), timeout=WELL_BEFORE)
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.TIMED_OUT
    assert 1 <= run.duration < WELL_BEFORE
    assert "killed at kill_time=1.0 s" in run.error
    assert child_processes() == []
    assert running.runner.busy == 0  # its thread ended: the slot is free, no overrun
    assert running.stop() == 0


def test_the_killed_child_is_really_dead(start_runner, tmp_path):
    pid_file = tmp_path / "child.pid"
    task = make_task(scheduling_functions.pid_then_sleep,
                     args_in={"pid_file": str(pid_file), "seconds": 30}, kill_time=1.5)  # fmt: skip
    start_runner()
    [pid] = wait_until(child_processes, timeout=WELL_BEFORE)
    assert pid != os.getpid()
    wait_until(lambda: status_is(task, TaskStatus.TIMED_OUT), timeout=WELL_BEFORE)
    assert process_gone(pid)
    assert TaskRun.objects.get(task=task).status == RunStatus.TIMED_OUT
    if pid_file.exists():  # the function got to run before kill_time (start-up counts towards it)
        assert int(pid_file.read_text()) == pid


def test_a_timed_out_child_is_retried_in_a_new_child(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 30}, kill_time=0.8, max_attempts=2,
                     retry_delay=0.05, retry_delay_max=1)  # fmt: skip
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.TIMED_OUT), timeout=2 * WELL_BEFORE)
    runs = list(TaskRun.objects.filter(task=task).order_by("id"))
    assert [(run.attempt, run.status) for run in runs] == [(1, RunStatus.TIMED_OUT), (2, RunStatus.TIMED_OUT)]
    assert all(run.duration < WELL_BEFORE for run in runs)


# What comes back from a child -----------------------------------------------------------------------


def assert_said(run: TaskRun, text: str) -> None:
    assert run.status == RunStatus.FINISHED
    assert run.output == text
    assert f"printed: {text}" in run.log
    assert f"logged: {text}" in run.log
    assert run.error == ""


def test_task_run_brings_back_the_childs_result_output_and_log():
    task = make_task(functions.say, args_in={"text": "from the child"})
    run = task.run()
    assert_said(run, "from the child")
    assert task.status == TaskStatus.FINISHED
    assert task.output == "from the child"


def test_the_runner_brings_back_the_childs_result_output_and_log(start_runner):
    task = make_task(functions.say, args_in={"text": "hello, runner"})
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FINISHED), timeout=WELL_BEFORE)
    run = TaskRun.objects.get(task=task)
    assert_said(run, "hello, runner")
    assert run.thread_name == f"{task.name}#{run.pk}"  # the supervising thread, as for threads


def test_the_function_really_runs_in_another_process():
    task = make_task(scheduling_functions.whoami)
    run = task.run()
    assert run.status == RunStatus.FINISHED
    assert isinstance(run.output, int)
    assert run.output != os.getpid()
    assert process_gone(run.output)
    thread_task = make_task(scheduling_functions.whoami, isolation="thread")
    assert thread_task.run().output == os.getpid()


@pytest.mark.parametrize("how", ["task.run", "runner"])
def test_a_failing_child_is_failed_with_its_traceback(how, start_runner):
    task = make_task(functions.fail, args_in={"message": "child says no"})
    if how == "task.run":
        run = task.run()
    else:
        start_runner()
        wait_until(lambda: status_is(task, TaskStatus.FAILED), timeout=WELL_BEFORE)
        run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FAILED
    assert "Traceback (most recent call last)" in run.error
    assert "ValueError: child says no" in run.error
    assert "ValueError: child says no" in run.log  # printed where the run's output goes, too
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "ValueError: child says no" in task.error


@pytest.mark.parametrize(
    ("how", "said"),
    [("sys.exit", "SystemExit: 3"), ("os._exit", "The child process exited with status 3 without a result.")],
)
def test_a_child_that_exits_before_reporting_fails_with_its_exit_status(start_runner, how, said):
    task = make_task(functions.quits_in_a_child, args_in={"how": how})
    running = start_runner(threads=1)
    wait_until(lambda: status_is(task, TaskStatus.FAILED), timeout=WELL_BEFORE)
    next_one = make_task(functions.add, args_in={"a": 1}, isolation="thread")
    wait_until(lambda: status_is(next_one, TaskStatus.FINISHED), timeout=WELL_BEFORE)

    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FAILED
    assert run.error.rstrip().splitlines()[-1] == said
    assert "about to leave" in run.log
    assert running.stop() == 0


@pytest.mark.parametrize("how", ["task.run", "runner"])
def test_an_async_task_is_awaited_in_its_child_with_its_output_and_progress(how, start_runner):
    task = make_task(functions.async_say, args_in={"text": "async child"})
    if how == "task.run":
        run = task.run()
    else:
        start_runner()
        wait_until(lambda: status_is(task, TaskStatus.FINISHED), timeout=WELL_BEFORE)
        run = TaskRun.objects.get(task=task)
    assert_said(run, "async child")
    assert (run.progress, run.progress_message) == (0.5, "half of async child")


@pytest.mark.parametrize("how", ["task.run", "runner"])
def test_progress_reported_in_a_child_is_kept_on_the_run(how, start_runner):
    task = make_task(scheduling_functions.halfway)
    if how == "task.run":
        run = task.run()
    else:
        start_runner()
        wait_until(lambda: status_is(task, TaskStatus.FINISHED), timeout=WELL_BEFORE)
        run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FINISHED
    assert run.output == "done"
    assert (run.progress, run.progress_message) == (0.5, "half")
    assert "conductor-progress" not in run.log  # the progress line is relayed, not logged


def test_a_function_outside_task_modules_runs_in_the_child_as_it_was_registered():
    assert "tests.scheduling_functions" not in conf.get().TASK_MODULES
    task = make_task(scheduling_functions.whoami)
    run = task.run()
    assert run.status == RunStatus.FINISHED, run.error
    assert run.output != os.getpid()


def test_an_unregistered_function_never_runs_in_a_child():
    # A raw write skips validation; the child refuses what is not registered, as a thread does.
    Task.objects.bulk_create([Task(task_id="sneaky", func="os.getpid", isolation="process")])
    run = Task.objects.get(task_id="sneaky").run()
    assert run.status == RunStatus.FAILED
    assert "'os.getpid' is not a registered task function" in run.error


# Stopping the runner and cancelling -----------------------------------------------------------------


def test_stopping_the_runner_with_no_grace_ends_the_child(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 30})
    running = start_runner(grace=0)
    wait_until(lambda: child_processes(), timeout=WELL_BEFORE)
    [pid] = child_processes()
    stopped_at = time.monotonic()
    running.stop()
    assert time.monotonic() - stopped_at < WELL_BEFORE
    assert process_gone(pid)
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.INTERRUPTED
    assert run.finished_at is not None
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING  # given back, due again


def test_stopping_the_runner_lets_a_thread_finish_within_the_grace(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 1.5}, isolation="thread")
    running = start_runner(grace=30)
    wait_until(lambda: TaskRun.objects.filter(task=task).exists())
    running.stop()
    run = TaskRun.objects.get(task=task)
    assert (run.status, run.output) == (RunStatus.FINISHED, "slept"), run.error


def test_stopping_the_runner_lets_a_child_finish_within_the_grace(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 1.5})
    running = start_runner(grace=30)
    wait_until(lambda: child_processes(), timeout=WELL_BEFORE)
    running.stop()
    run = TaskRun.objects.get(task=task)
    assert (run.status, run.output) == (RunStatus.FINISHED, "slept"), run.error


def test_stopping_the_runner_asks_a_child_that_takes_context_to_stop(start_runner, tmp_path):
    started = tmp_path / "started"
    task = make_task(scheduling_functions.until_stopped, args_in={"started": str(started)})
    running = start_runner(grace=30)
    wait_until(started.exists, timeout=WELL_BEFORE)
    stopped_at = time.monotonic()
    running.stop()
    assert time.monotonic() - stopped_at < WELL_BEFORE  # it ended when asked, not at the grace's end
    run = TaskRun.objects.get(task=task)
    assert (run.status, run.output) == (RunStatus.FINISHED, "stopped cleanly"), run.error


def test_a_cancelled_child_is_stopped_and_recorded_as_cancelled(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 30})
    running = start_runner()
    wait_until(lambda: child_processes(), timeout=WELL_BEFORE)
    [pid] = child_processes()
    run = TaskRun.objects.get(task=task)
    # What the runner's ChannelBridge delivers for app.actions.cancel (this runner has no bridge).
    running.runner.command({"command": "cancel", "run": run.pk, "by": "test"})
    wait_until(lambda: status_is(task, TaskStatus.STOPPED), timeout=WELL_BEFORE)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "stopped on request" in run.error
    assert process_gone(pid)


# Regressions ----------------------------------------------------------------------------------------


def test_the_childs_output_pipe_is_closed():
    task = make_task(functions.add, args_in={"a": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert task.run().status == RunStatus.FINISHED
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_the_child_uses_the_parents_test_database_whatever_its_environment_says(monkeypatch, tmp_path):
    from django.db import connection

    elsewhere = tmp_path / "elsewhere.sqlite3"  # what this repository's settings would read in the child
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{elsewhere}")
    run = make_task(functions.database_name).run()
    assert (run.status, run.output) == (RunStatus.FINISHED, str(connection.settings_dict["NAME"])), run.error
    assert not elsewhere.exists() or elsewhere.stat().st_size == 0


def test_the_childs_import_path_is_the_projects_and_not_the_interpreters():
    path = isolation.import_path()
    assert str(Path.cwd().resolve()) in path  # where manage.py (here: pytest) runs
    assert not [entry for entry in path if "site-packages" in entry or entry == os.path.dirname(os.__file__)]


def test_override_settings_does_not_break_process_isolation():
    task = make_task(functions.add, args_in={"a": 2, "b": 2})
    with override_settings(CONDUCTOR={"TASK_MODULES": ["tests.functions"]}):
        run = task.run()
    assert (run.status, run.output) == (RunStatus.FINISHED, 4), run.error


@override_settings(CONDUCTOR={"TASK_MODULES": ["tests.functions", "tests.scheduling_functions"]})
def test_override_settings_does_not_break_process_isolation_in_the_runner(start_runner):
    task = make_task(scheduling_functions.halfway)
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FINISHED, TaskStatus.FAILED), timeout=WELL_BEFORE)
    run = TaskRun.objects.get(task=task)
    assert (run.status, run.output, run.progress) == (RunStatus.FINISHED, "done", 0.5), run.error


def test_the_childs_output_pipe_is_closed_when_its_thread_is_interrupted(start_runner):
    task = make_task(functions.c_sleep, args_in={"seconds": 30})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        running = start_runner(grace=0)
        wait_until(lambda: child_processes(), timeout=WELL_BEFORE)
        running.stop()
        gc.collect()
    assert TaskRun.objects.get(task=task).status == RunStatus.INTERRUPTED
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def _child_cannot_start(monkeypatch):
    def refuse(*arguments):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(isolation, "_start_child", refuse)


def test_task_run_records_a_child_that_cannot_start_as_failed(monkeypatch):
    task = make_task(functions.add, args_in={"a": 1})
    _child_cannot_start(monkeypatch)
    run = task.run()
    assert run.status == RunStatus.FAILED
    assert "Too many open files" in run.error
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert not TaskRun.objects.filter(task=task, finished_at__isnull=True).exists()


def test_task_run_interrupted_by_ctrl_c_never_leaves_the_task_running():
    task = make_task(scheduling_functions.interrupted, isolation="thread")
    with pytest.raises(KeyboardInterrupt):
        task.run()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED  # not "running" for ever, with nobody to recover it
    run = TaskRun.objects.get(task=task)
    assert run.finished_at is not None
    assert "KeyboardInterrupt" in run.error
    assert task.request_run_now().endswith("queued to run now")


def test_a_child_that_cannot_start_fails_the_run_instead_of_looping(start_runner, monkeypatch):
    task = make_task(functions.add, args_in={"a": 1}, max_attempts=2, retry_delay=0.05)
    _child_cannot_start(monkeypatch)
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FAILED), timeout=WELL_BEFORE)
    runs = list(TaskRun.objects.filter(task=task).order_by("id"))
    assert [(run.attempt, run.status) for run in runs] == [(1, RunStatus.FAILED), (2, RunStatus.FAILED)]
    assert all("Too many open files" in run.error for run in runs)
