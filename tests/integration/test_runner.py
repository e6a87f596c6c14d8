"""The runner in-process, on a real SQLite file (or PostgreSQL), with real threads."""

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from app import events, lifecycle
from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def make_task(func, **fields) -> Task:
    task = Task(func=func, **fields)
    task.save()
    return task


def finished(task: Task, status: str = TaskStatus.FINISHED) -> bool:
    task.refresh_from_db()
    return task.status == status


def test_one_off_task_runs_once_and_is_recorded(start_runner):
    task = make_task(functions.add, args_in={"a": 2, "b": 3})
    running = start_runner()
    wait_until(lambda: finished(task))
    assert task.output == 5
    assert task.last_status == RunStatus.FINISHED
    assert task.attempts == 1
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FINISHED
    assert run.output == 5
    assert run.runner.worker_id == running.runner.worker_id
    assert run.thread_name == f"{task.name}#{run.pk}"
    assert run.thread_ident
    assert run.finished_at >= run.started_at
    assert run.duration is not None
    assert run.duration >= 0
    assert running.stop() == 0


def test_run_in_delays_the_first_run(start_runner):
    task = make_task(functions.stamp, run_in=0.5)
    task.next_run_at_creation = task.next_run
    start_runner()
    wait_until(lambda: finished(task))
    run = TaskRun.objects.get(task=task)
    assert run.scheduled_for == task.next_run_at_creation
    assert task.output >= run.scheduled_for.timestamp()
    assert run.scheduled_for >= task.created_at + timedelta(seconds=0.5) - timedelta(milliseconds=50)


def test_looping_task_keeps_its_schedule_without_drift(start_runner):
    task = make_task(functions.stamp, loop=True, interval=0.5)
    first = task.next_run
    start_runner()
    wait_until(lambda: TaskRun.objects.filter(task=task, finished_at__isnull=False).count() >= 4)
    runs = list(TaskRun.objects.filter(task=task).order_by("scheduled_for")[:4])
    for number, run in enumerate(runs):
        # Scheduled times are exact multiples of the interval from the first: no drift piles up.
        assert run.scheduled_for == first + timedelta(seconds=0.5 * number)
        assert run.output >= run.scheduled_for.timestamp()
    assert Task.objects.get(pk=task.pk).loop


def test_overrun_of_a_looping_task_runs_next_at_once_never_twice_at_a_time(start_runner):
    task = make_task(functions.hold, loop=True, interval=0.05, args_in={"seconds": 0.15})
    start_runner(threads=4)
    wait_until(lambda: TaskRun.objects.filter(task=task, finished_at__isnull=False).count() >= 4)
    runs = list(TaskRun.objects.filter(task=task, finished_at__isnull=False).order_by("started_at"))
    for earlier, later in itertools.pairwise(runs):
        assert earlier.output["end"] <= later.output["start"]  # one instance at a time


def test_failure_is_recorded_with_its_traceback(start_runner):
    task = make_task(functions.fail, args_in={"message": "upstream said 503"})
    start_runner()
    wait_until(lambda: finished(task, TaskStatus.FAILED))
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FAILED
    assert "Traceback" in run.error
    assert "ValueError: upstream said 503" in run.error
    assert task.error == run.error


def test_unregistered_function_never_runs(start_runner):
    # bulk_create skips validation, as a raw write to the database would.
    Task.objects.bulk_create(
        [
            Task(
                task_id="sneaky",
                func="os.system",
                args_in={"command": "touch /tmp/owned"},
                next_run=timezone.now(),
            )
        ]
    )
    start_runner()
    task = Task.objects.get(task_id="sneaky")
    wait_until(lambda: finished(task, TaskStatus.FAILED))
    assert "not a registered task function" in task.error


def test_kill_time_interrupts_a_pure_python_loop(start_runner):
    task = make_task(functions.busy, args_in={"seconds": 60}, kill_time=0.3)
    with events.recording() as recorded:
        start_runner()
        wait_until(lambda: finished(task, TaskStatus.TIMED_OUT), timeout=20)
        recorded.wait_for(lambda e: e["type"] == events.TASK_TIMED_OUT and e["task"] == task.pk)
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.TIMED_OUT
    assert "kill_time=0.3" in run.error
    assert run.duration < 30  # it did not run its 60 seconds


@override_settings(CONDUCTOR={"INTERRUPT_WAIT": 0.2})
def test_thread_blocked_in_c_is_reported_overrunning_and_holds_its_slot(start_runner, tmp_path):
    task = make_task(functions.c_sleep, args_in={"seconds": 1.5}, kill_time=0.2, db_use=True)
    with events.recording() as recorded:
        start_runner()
        recorded.wait_for(lambda e: e["type"] == events.TASK_OVERRUNNING, timeout=10)
        run = TaskRun.objects.get(task=task)
        assert run.status == RunStatus.TIMED_OUT
        assert run.finished_at is None
        assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING  # still held
        assert Task.objects.get(pk=task.pk).runner is not None
        from app.lease import Lease

        assert Lease.objects.get(name="db_use").task_id == task.pk  # lease held until it ends
        wait_until(lambda: finished(task, TaskStatus.TIMED_OUT), timeout=10)
    run.refresh_from_db()
    assert run.status == RunStatus.TIMED_OUT
    assert run.finished_at is not None
    assert Lease.objects.get(name="db_use").task_id is None


def test_db_use_tasks_never_overlap_across_runners(start_runner):
    tasks = [make_task(functions.hold, args_in={"seconds": 0.1}, db_use=True) for _ in range(6)]
    others = [make_task(functions.hold, args_in={"seconds": 0.1}) for _ in range(4)]
    start_runner(threads=4, worker_id="one")
    start_runner(threads=4, worker_id="two")
    wait_until(lambda: all(finished(t) for t in tasks + others), timeout=20)
    spans = sorted((t.output["start"], t.output["end"]) for t in tasks)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    runs = sorted(TaskRun.objects.filter(task__db_use=True), key=lambda r: r.started_at)
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.started_at
    # Plain tasks did run alongside db_use ones: only db_use is exclusive.
    plain = sorted((t.output["start"], t.output["end"]) for t in others)
    assert any(start < spans[-1][1] and end > spans[0][0] for start, end in plain)


def test_print_and_logging_are_captured_per_run(start_runner):
    task = make_task(functions.say, args_in={"text": "hello"})
    quiet = make_task(functions.add, args_in={"a": 1})
    start_runner()
    wait_until(lambda: finished(task) and finished(quiet))
    assert "printed: hello" in task.runs.get().log
    assert "logged: hello" in task.runs.get().log
    assert quiet.runs.get().log == ""


def test_conn_gets_the_result_through_the_live_state_seam(start_runner):
    task = make_task(functions.add, args_in={"a": 40, "b": 2}, conn="dashboard-client-7")
    with events.recording() as recorded:
        start_runner()
        event = recorded.wait_for(lambda e: e["type"] == events.TASK_RESULT)
    assert event["conn"] == "dashboard-client-7"
    assert event["output"] == 42
    assert event["status"] == "finished"
    assert event["task_id"] == task.task_id


def test_state_changes_are_published(start_runner):
    with events.recording() as recorded:
        running = start_runner(worker_id="events")
        task = make_task(functions.add, args_in={"a": 1})  # saved after the runner started
        recorded.wait_for(lambda e: e["type"] == events.TASK_FINISHED)
        recorded.wait_for(lambda e: e["type"] == events.RUNNER_HEARTBEAT, timeout=10)
        running.stop()
        recorded.wait_for(lambda e: e["type"] == events.RUNNER_DOWN)
    kinds = [e["type"] for e in recorded.events if e.get("task") in (None, task.pk)]
    for kind in (events.RUNNER_UP, events.TASK_CLAIMED, events.THREAD_STARTED,
                 events.THREAD_FINISHED, events.TASK_FINISHED, events.RUNNER_DOWN):  # fmt: skip
        assert kind in kinds
    assert kinds.index(events.TASK_CLAIMED) < kinds.index(events.TASK_FINISHED)
    started = recorded.of_type(events.THREAD_STARTED)[0]
    assert started["ident"]
    assert started["thread"].endswith(f"#{started['run']}")
    assert all(e["runner"] == "events" for e in recorded.events if "runner" in e)


def test_a_threads_end_is_published_before_its_outcome_is_recorded(start_runner, tmp_path):
    """The threads panel shows threads at work: during a burst outcomes wait to be recorded in batches
    (runner/outcomes.py), and a thread's end used to wait with them (64 rows for 8 threads)."""
    started, release = tmp_path / "started", tmp_path / "release"
    with events.recording() as recorded:
        start_runner(worker_id="ends")
        paths = {"started": str(started), "release": str(release)}
        task = make_task(functions.touch_then_wait, args_in=paths)
        wait_until(started.exists)
        with transaction.atomic():
            # This transaction writes the task (a row lock on PostgreSQL, the write lock on SQLite): the
            # runner cannot record the outcome until it ends.
            Task.objects.filter(pk=task.pk).update(priority=F("priority"))
            release.touch()
            recorded.wait_for(lambda e: e["type"] == events.THREAD_FINISHED and e["task"] == task.pk)
            assert TaskRun.objects.get(task=task).status == RunStatus.RUNNING
            assert not recorded.of_type(events.TASK_FINISHED)
        recorded.wait_for(lambda e: e["type"] == events.TASK_FINISHED and e["task"] == task.pk)
    assert TaskRun.objects.get(task=task).status == RunStatus.FINISHED


@override_settings(CONDUCTOR={"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 1.0})
def test_runs_of_a_dead_runner_are_recovered_and_redone(start_runner):
    long_ago = timezone.now() - timedelta(minutes=5)
    dead = RunnerProcess.objects.create(
        worker_id="crashed", host="elsewhere", pid=1, heartbeat_at=long_ago, threads=1
    )
    task = make_task(functions.add, args_in={"a": 1})
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING, runner=dead, fence=1)
    lost = TaskRun.objects.create(task=task, runner=dead, fence=1)
    start_runner()
    wait_until(lambda: finished(task))
    lost.refresh_from_db()
    assert lost.status == RunStatus.INTERRUPTED
    assert "crashed" in lost.error
    assert lost.finished_at is not None
    assert RunnerProcess.objects.get(pk=dead.pk).state == RunnerState.DEAD
    assert TaskRun.objects.filter(task=task, status=RunStatus.FINISHED).count() == 1
    # The crashed runner's late result is refused: it cannot overwrite the newer run.
    from app.lifecycle import Outcome

    assert not lifecycle.finish(lost, Outcome(RunStatus.FINISHED, 0.0, 1.0, output="stale"))
    assert Task.objects.get(pk=task.pk).output == 1


def test_stop_lets_running_tasks_finish(start_runner, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    task = make_task(functions.touch_then_wait, args_in={"started": str(started), "release": str(release)})
    running = start_runner(grace=30)
    wait_until(started.exists)
    running.runner.stop()
    wait_until(lambda: RunnerProcess.objects.get().state == RunnerState.STOPPING)
    Path(release).touch()
    running.thread.join(15)
    assert running.exit_code == 0
    assert finished(task)
    assert not Task.objects.running().exists()
    assert not TaskRun.objects.running().exists()
    assert RunnerProcess.objects.get().state == RunnerState.STOPPED


@override_settings(CONDUCTOR={"INTERRUPT_WAIT": 0.3})
def test_grace_expiry_interrupts_and_gives_the_task_back(start_runner):
    task = make_task(functions.busy, args_in={"seconds": 60})
    running = start_runner(grace=0.2)
    wait_until(lambda: Task.objects.running().exists())
    assert running.stop() == 0
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.INTERRUPTED
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING
    assert task.next_run <= timezone.now()
    assert not TaskRun.objects.running().exists()


def test_once_runs_what_is_due_and_returns(start_runner):
    due = [make_task(functions.add, args_in={"a": n}) for n in range(5)]
    later = make_task(functions.add, args_in={"a": 0}, run_in=3600)
    running = start_runner(once=True)
    running.thread.join(20)
    assert not running.thread.is_alive()
    assert running.exit_code == 0
    assert all(finished(t) for t in due)
    later.refresh_from_db()
    assert later.status == TaskStatus.WAITING


def test_max_tasks_stops_after_that_many_runs(start_runner):
    for n in range(6):
        make_task(functions.add, args_in={"a": n})
    running = start_runner(max_tasks=4, threads=2)
    running.thread.join(20)
    assert running.exit_code == 0
    assert TaskRun.objects.count() == 4
    assert Task.objects.waiting().count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="cuts live PostgreSQL sessions")
def test_a_runner_that_loses_the_database_keeps_its_task_and_recovers(start_runner, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    task = make_task(functions.touch_then_wait, args_in={"started": str(started), "release": str(release)})
    with events.recording() as recorded:
        start_runner(poll=0.1)
        wait_until(started.exists)
        with connection.cursor() as cursor:  # every other session of this database is cut, as by a failover
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        recorded.wait_for(lambda e: e["type"] == events.RUNNER_DEGRADED, timeout=15)
        release.touch()  # the running task went on meanwhile; its result is recorded once back
        recorded.wait_for(lambda e: e["type"] == events.RUNNER_RECOVERED, timeout=30)
        wait_until(lambda: finished(task), timeout=30)
    assert TaskRun.objects.get(task=task).status == RunStatus.FINISHED


# A task's own BaseException is its failure; Conductor's interrupts are told apart by identity -------


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
def test_a_base_exception_fails_the_task_and_its_thread_runs_the_next(start_runner, how, last_line):
    quitter = make_task(functions.quits, args_in={"how": how})
    running = start_runner(threads=1)
    wait_until(lambda: finished(quitter, TaskStatus.FAILED))
    next_one = make_task(functions.add, args_in={"a": 2, "b": 3})
    wait_until(lambda: finished(next_one))

    run = TaskRun.objects.get(task=quitter)
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Traceback (most recent call last)")
    assert run.error.rstrip().splitlines()[-1] == last_line
    assert quitter.error == run.error
    assert next_one.output == 5
    assert next_one.runs.get().thread_ident == run.thread_ident  # the same worker thread, unharmed
    assert running.thread.is_alive()
    assert running.stop() == 0


def test_a_task_that_catches_its_time_limit_then_calls_sys_exit_is_timed_out(start_runner, tmp_path):
    journal = tmp_path / "journal"
    task = make_task(functions.exits_after_time_limit, args_in={"journal": str(journal)}, kill_time=0.5)
    start_runner()
    wait_until(lambda: finished(task, TaskStatus.TIMED_OUT), timeout=20)

    run = TaskRun.objects.get(task=task)
    assert journal.read_text() == "started\ncaught TimeLimitExceeded\n"
    assert run.status == RunStatus.TIMED_OUT
    assert run.error.startswith("TimeLimitExceeded: ran longer than kill_time=0.5 s\n")
    assert run.error.rstrip().endswith("SystemExit: 2")


# async def tasks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [functions.async_add, functions.returns_a_coroutine])
def test_an_async_task_is_awaited_by_the_runner(start_runner, func):
    task = make_task(func, args_in={"a": 2, "b": 3})
    start_runner()
    wait_until(lambda: finished(task))
    assert task.output == 5
    assert task.runs.get().status == RunStatus.FINISHED


def test_an_async_task_that_raises_fails(start_runner):
    task = make_task(functions.async_fail, args_in={"message": "async upstream said 503"})
    start_runner()
    wait_until(lambda: finished(task, TaskStatus.FAILED))
    assert task.runs.get().error.rstrip().endswith("ValueError: async upstream said 503")


def test_an_async_task_prints_logs_and_reports_progress_into_its_run(start_runner):
    task = make_task(functions.async_say, args_in={"text": "hello"})
    start_runner()
    wait_until(lambda: finished(task))
    run = task.runs.get()
    assert "printed: hello\n" in run.log
    assert "INFO tests.functions: logged: hello" in run.log
    assert (run.progress, run.progress_message) == (0.5, "half of hello")


def test_kill_time_cancels_an_async_task_at_its_await(start_runner, tmp_path):
    journal = tmp_path / "journal"
    task = make_task(functions.async_wait, args_in={"journal": str(journal)}, kill_time=0.3)
    start_runner()
    wait_until(lambda: finished(task, TaskStatus.TIMED_OUT), timeout=20)

    run = task.runs.get()
    assert journal.read_text() == "started\nCancelledError: TimeLimitExceeded: cancelled by Conductor\n"
    assert run.status == RunStatus.TIMED_OUT
    assert run.error.startswith("TimeLimitExceeded: ran longer than kill_time=0.3 s\n")
    assert run.duration < 10


@override_settings(CONDUCTOR={"CANCEL_GRACE": 0.2})
def test_cancel_cancels_an_async_task_at_its_await(start_runner, tmp_path):
    journal = tmp_path / "journal"
    task = make_task(functions.async_wait, args_in={"journal": str(journal)})
    running = start_runner()
    wait_until(lambda: journal.exists())
    run = task.runs.get()
    # What the runner's ChannelBridge delivers for app.actions.cancel (this runner has no bridge).
    running.runner.command({"command": "cancel", "run": run.pk, "by": "test"})
    wait_until(lambda: finished(task, TaskStatus.STOPPED), timeout=20)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert journal.read_text() == "started\nCancelledError: RunCancelled: cancelled by Conductor\n"


def test_an_async_task_can_use_the_async_orm(start_runner):
    task = make_task(functions.async_count_tasks, name="counted", args_in={"name": "counted"})
    start_runner()
    wait_until(lambda: finished(task))
    assert task.output == 1
