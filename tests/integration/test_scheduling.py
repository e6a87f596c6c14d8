"""Windows, limits, catch-up, retries, priorities and queues, with the runner in-process on real threads.

Timing is read from what the runner recorded (scheduled_for, started_at, finished_at, retry_at); waits
poll the database with deadlines.
"""

import itertools
from datetime import timedelta

import pytest
from django.contrib import admin
from django.utils import timezone

from app import actions
from app.status import CatchUp, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions, scheduling_functions
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

#: What the recording of a run may add to a delay measured from its finished_at (one runner step).
RECORDING_SLACK = timedelta(seconds=0.5)


def make_task(func, **fields) -> Task:
    task = Task(func=func, **fields)
    task.save()
    return task


def status_is(task: Task, *statuses: str) -> bool:
    task.refresh_from_db()
    return task.status in statuses


def runs_of(task: Task) -> list[TaskRun]:
    return list(TaskRun.objects.filter(task=task).order_by("id"))


def finished_runs(task: Task, count: int) -> list[TaskRun] | None:
    runs = list(TaskRun.objects.filter(task=task, finished_at__isnull=False).order_by("id"))
    return runs if len(runs) >= count else None


# Windows and limits ---------------------------------------------------------------------------------


def test_a_due_task_past_its_expiry_is_marked_expired_and_never_run(start_runner):
    now = timezone.now()
    expired = make_task(functions.stamp, expires_at=now - timedelta(seconds=1))
    in_time = make_task(functions.stamp, expires_at=now + timedelta(hours=1))
    start_runner()
    wait_until(lambda: status_is(in_time, TaskStatus.FINISHED))
    wait_until(lambda: status_is(expired, TaskStatus.EXPIRED))
    assert not TaskRun.objects.filter(task=expired).exists()
    assert expired.last_run is None
    assert expired.attempts == 0
    assert expired.output is None
    assert TaskRun.objects.filter(task=in_time, status=RunStatus.FINISHED).count() == 1


def test_a_task_is_not_run_before_its_start_at(start_runner):
    start_at = timezone.now() + timedelta(seconds=1.5)
    later = make_task(functions.stamp, start_at=start_at)
    assert later.next_run == start_at
    now_task = make_task(functions.stamp)
    start_runner()
    wait_until(lambda: status_is(now_task, TaskStatus.FINISHED))
    if timezone.now() < start_at - timedelta(seconds=0.1):  # the runner has looked: still waiting
        assert status_is(later, TaskStatus.WAITING)
        assert not TaskRun.objects.filter(task=later).exists()
    wait_until(lambda: status_is(later, TaskStatus.FINISHED))
    run = TaskRun.objects.get(task=later)
    assert run.scheduled_for == start_at
    assert run.started_at >= start_at
    assert later.output >= start_at.timestamp()  # the function's own clock


def test_max_runs_ends_a_loop_after_exactly_that_many_runs(start_runner):
    task = make_task(functions.stamp, loop=True, interval=0.2, max_runs=3)
    first = task.next_run
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FINISHED))
    runs = runs_of(task)
    assert [run.status for run in runs] == [RunStatus.FINISHED] * 3
    assert runs[0].scheduled_for == first
    # (On the 0.2 s grid unless a run overran it on a loaded machine: then the next one ran at once.)
    assert runs[0].scheduled_for < runs[1].scheduled_for < runs[2].scheduled_for
    assert task.run_count == 3
    assert task.loop  # still a loop; it just ran its course
    # A poll later, still three: a finished task is never claimed again.
    poll_done = timezone.now() + timedelta(seconds=0.5)
    wait_until(lambda: timezone.now() > poll_done)
    assert TaskRun.objects.filter(task=task).count() == 3


def _overdue_loop(interval: float, periods: float, **fields) -> tuple[Task, object]:
    """A looping task whose next run was ``periods`` intervals ago, as after downtime of the runners."""
    task = make_task(functions.stamp, loop=True, interval=interval, run_in=3600, **fields)
    missed = timezone.now() - timedelta(seconds=interval * periods)
    Task.objects.filter(pk=task.pk).update(next_run=missed)
    return task, missed


def test_catch_up_once_after_downtime_runs_once_then_keeps_the_interval(start_runner):
    interval = 2.0
    task, missed = _overdue_loop(interval, periods=5.5, catch_up=CatchUp.ONCE)
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.WAITING) and task.last_run is not None)
    first = runs_of(task)[0]
    assert first.scheduled_for == missed
    assert first.status == RunStatus.FINISHED
    # Once, not 5 times, and not twice: the next run is an interval after this one.
    assert first.started_at + timedelta(seconds=interval) <= task.next_run
    assert task.next_run <= first.finished_at + timedelta(seconds=interval) + RECORDING_SLACK
    assert TaskRun.objects.filter(task=task).count() == 1


@pytest.mark.parametrize("catch_up", [CatchUp.ONCE, CatchUp.SKIP])
def test_catch_up_of_a_cron_task_after_downtime_runs_once(start_runner, catch_up):
    task = make_task(functions.stamp, cron="* * * * *", catch_up=catch_up)
    missed = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    Task.objects.filter(pk=task.pk).update(next_run=missed)  # five minutes of downtime
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.WAITING) and task.last_run is not None)
    [run] = runs_of(task)
    assert run.scheduled_for == missed
    # Next on the calendar (the next whole minute), never at once again.
    assert task.next_run > run.finished_at
    assert task.next_run.second == task.next_run.microsecond == 0
    assert task.next_run - run.started_at <= timedelta(minutes=1)


def test_catch_up_skip_after_downtime_runs_once_and_goes_on_on_the_original_grid(start_runner):
    interval = 2.0
    task, missed = _overdue_loop(interval, periods=5.5, catch_up=CatchUp.SKIP)
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.WAITING) and task.last_run is not None)
    [run] = runs_of(task)  # one run for the missed periods, not five
    assert run.scheduled_for == missed
    periods = (task.next_run - missed) / timedelta(seconds=interval)
    assert periods == pytest.approx(round(periods), abs=1e-5)  # on the original grid
    assert run.finished_at < task.next_run <= run.finished_at + timedelta(seconds=interval) + RECORDING_SLACK
    assert round(periods) in (6, 7)
    # The next run keeps to that grid.
    [_, second] = wait_until(lambda: finished_runs(task, 2))
    assert second.scheduled_for == missed + timedelta(seconds=interval * round(periods))


# Retries --------------------------------------------------------------------------------------------


def test_a_failing_task_is_tried_max_attempts_times_with_exponential_backoff(start_runner):
    task = make_task(functions.fail, args_in={"message": "flaky upstream"}, max_attempts=3,
                     retry_delay=0.2, retry_delay_max=10)  # fmt: skip
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FAILED))
    runs = runs_of(task)
    assert [run.attempt for run in runs] == [1, 2, 3]
    assert [run.status for run in runs] == [RunStatus.FAILED] * 3
    assert all("ValueError: flaky upstream" in run.error for run in runs)
    for attempt, (run, following) in enumerate(itertools.pairwise(runs), start=1):
        delay = timedelta(seconds=0.2 * 2 ** (attempt - 1))
        assert run.retry_at is not None
        # Equal jitter: half the delay at least, the whole delay at most (plus the recording step).
        assert delay / 2 <= run.retry_at - run.finished_at <= delay + RECORDING_SLACK
        assert following.scheduled_for == run.retry_at  # the retry ran when it was scheduled to
        assert following.started_at >= run.retry_at
    assert runs[-1].retry_at is None  # the last try: no more
    assert task.attempt == 0  # reset: the next run starts from attempt 1 again
    assert task.attempts == 3
    assert task.last_status == RunStatus.FAILED


@pytest.mark.parametrize("how", ["sys.exit", "KeyboardInterrupt", "Departure"])
def test_a_task_leaving_by_a_base_exception_is_retried_per_max_attempts_then_fails(start_runner, how):
    task = make_task(functions.quits, args_in={"how": how}, max_attempts=2, retry_delay=0.05,
                     retry_delay_max=1)  # fmt: skip
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FAILED))
    first, second = runs_of(task)
    assert [first.status, second.status] == [RunStatus.FAILED, RunStatus.FAILED]
    assert [first.attempt, second.attempt] == [1, 2]
    assert (first.retry_at is not None, second.retry_at) == (True, None)
    assert all(run.error.startswith("Traceback (most recent call last)") for run in (first, second))
    assert (task.attempts, task.attempt, task.last_status) == (2, 0, RunStatus.FAILED)


def test_retries_stop_at_the_first_success(start_runner, tmp_path):
    marker = tmp_path / "failed-once"
    task = make_task(scheduling_functions.fail_once, args_in={"marker": str(marker)}, max_attempts=5,
                     retry_delay=0.05, retry_delay_max=1)  # fmt: skip
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.FINISHED))
    first, second = runs_of(task)
    assert (first.attempt, first.status) == (1, RunStatus.FAILED)
    assert "ConnectionError: first try fails" in first.error
    assert first.retry_at is not None
    assert (second.attempt, second.status, second.output) == (2, RunStatus.FINISHED, "second time lucky")
    assert second.retry_at is None
    assert task.output == "second time lucky"
    assert task.attempt == 0


def test_a_timed_out_try_is_retried_too(start_runner):
    task = make_task(functions.busy, args_in={"seconds": 60}, kill_time=0.3, max_attempts=2,
                     retry_delay=0.05, retry_delay_max=1)  # fmt: skip
    start_runner()
    wait_until(lambda: status_is(task, TaskStatus.TIMED_OUT), timeout=20)
    first, second = runs_of(task)
    assert [first.status, second.status] == [RunStatus.TIMED_OUT, RunStatus.TIMED_OUT]
    assert [first.attempt, second.attempt] == [1, 2]
    assert first.retry_at is not None
    assert second.retry_at is None
    assert second.scheduled_for == first.retry_at
    assert task.attempt == 0


#: Long enough that the retry ends well within the period even on a loaded machine (else "once" catch-up).
LOOP_INTERVAL = 3.0


def _loop_failing_once(tmp_path) -> Task:
    marker = tmp_path / "failed-once"
    return make_task(scheduling_functions.fail_once, args_in={"marker": str(marker)}, loop=True,
                     interval=LOOP_INTERVAL, max_attempts=3, retry_delay=0.05, retry_delay_max=1)  # fmt: skip


def test_a_looping_task_retries_a_failed_period_and_starts_each_period_at_attempt_one(start_runner, tmp_path):
    task = _loop_failing_once(tmp_path)
    start_runner()
    runs = wait_until(lambda: finished_runs(task, 3))
    assert [(run.attempt, run.status) for run in runs[:3]] == [
        (1, RunStatus.FAILED),
        (2, RunStatus.FINISHED),
        (1, RunStatus.FINISHED),  # the next period starts from attempt 1
    ]
    assert runs[0].retry_at is not None
    assert runs[1].scheduled_for == runs[0].retry_at
    assert runs[2].scheduled_for > runs[1].scheduled_for


def test_a_looping_task_retries_a_failed_period_then_keeps_its_grid(start_runner, tmp_path):
    task = _loop_failing_once(tmp_path)
    first_scheduled = task.next_run
    start_runner()
    runs = wait_until(lambda: finished_runs(task, 3))
    # The period after the retried one is on the loop's own grid: retries do not shift it.
    periods = (runs[2].scheduled_for - first_scheduled) / timedelta(seconds=LOOP_INTERVAL)
    assert periods == pytest.approx(round(periods), abs=1e-5)


def test_a_task_waiting_for_a_retry_shows_its_attempt_and_run_now_resets_it(start_runner):
    task = make_task(functions.fail, max_attempts=3, retry_delay=60, retry_delay_max=60)
    task_admin = admin.site._registry[Task]
    assert task_admin.attempt_shown(task) == "- of 3"
    running = start_runner()
    wait_until(lambda: status_is(task, TaskStatus.WAITING) and task.attempt == 1)
    [first] = runs_of(task)
    assert task.next_run == first.retry_at
    assert 30 <= (first.retry_at - first.finished_at).total_seconds() <= 60 + RECORDING_SLACK.total_seconds()
    assert task_admin.attempt_shown(task) == "1 of 3"
    running.stop()  # so that nothing claims it between run now and the checks

    assert actions.run_now(task) == f"{task.name} queued to run now"
    task.refresh_from_db()
    assert task.attempt == 0  # run now starts the series again
    assert task.next_run < first.retry_at
    assert task_admin.attempt_shown(task) == "- of 3"
    start_runner()
    wait_until(lambda: finished_runs(task, 2))
    second = runs_of(task)[1]
    assert second.attempt == 1  # attempt 1 again, not 2
    assert second.scheduled_for < first.retry_at  # it did not wait for the retry
    wait_until(lambda: status_is(task, TaskStatus.WAITING) and task.attempt == 1)
    assert task_admin.attempt_shown(task) == "1 of 3"


def test_task_run_in_the_calling_thread_records_a_retry_too():
    task = make_task(functions.fail, max_attempts=2, retry_delay=30, retry_delay_max=30)
    run = task.run()
    assert (run.status, run.attempt) == (RunStatus.FAILED, 1)
    assert run.retry_at is not None
    assert task.status == TaskStatus.WAITING
    assert task.next_run == run.retry_at
    run = task.run()  # by hand, before the retry is due: the second and last try
    assert (run.status, run.attempt, run.retry_at) == (RunStatus.FAILED, 2, None)
    assert (task.status, task.attempt) == (TaskStatus.FAILED, 0)


# Priorities and queues ------------------------------------------------------------------------------


def test_higher_priority_runs_first_among_due_tasks(start_runner):
    now = timezone.now()
    tasks = {}
    # Lower priorities were due earlier, so priority, not due time, decides.
    for priority, due_ago in [(0, 30), (5, 20), (10, 10), (-3, 40)]:
        task = make_task(functions.stamp, name=f"p{priority}", priority=priority, run_in=3600)
        Task.objects.filter(pk=task.pk).update(next_run=now - timedelta(seconds=due_ago))
        tasks[priority] = task
    start_runner(threads=1)
    wait_until(lambda: all(status_is(task, TaskStatus.FINISHED) for task in tasks.values()))
    runs = list(TaskRun.objects.filter(task__in=tasks.values()).order_by("started_at"))
    assert [run.task.name for run in runs] == ["p10", "p5", "p0", "p-3"]
    outputs = [run.output for run in runs]
    assert outputs == sorted(outputs)  # in the order the functions really ran


def test_equal_priorities_run_in_due_order(start_runner):
    now = timezone.now()
    tasks = []
    for name, due_ago in [("second", 10), ("third", 5), ("first", 20)]:
        task = make_task(functions.stamp, name=name, priority=1, run_in=3600)
        Task.objects.filter(pk=task.pk).update(next_run=now - timedelta(seconds=due_ago))
        tasks.append(task)
    start_runner(threads=1)
    wait_until(lambda: all(status_is(task, TaskStatus.FINISHED) for task in tasks))
    runs = TaskRun.objects.filter(task__in=tasks).order_by("started_at")
    assert [run.task.name for run in runs] == ["first", "second", "third"]


def test_a_runner_serving_queue_a_runs_only_queue_a_tasks(start_runner):
    in_a = [make_task(functions.add, args_in={"a": n}, queue="a") for n in range(3)]
    in_b = make_task(functions.add, args_in={"a": 10}, queue="b")
    in_default = make_task(functions.add, args_in={"a": 20})
    assert in_default.queue == "default"
    running = start_runner(queues=["a"])
    wait_until(lambda: all(status_is(task, TaskStatus.FINISHED) for task in in_a))
    # Let it poll once more after finishing queue a: the others are due but not its.
    polled = timezone.now() + timedelta(seconds=0.5)
    wait_until(lambda: timezone.now() > polled)
    for other in (in_b, in_default):
        assert status_is(other, TaskStatus.WAITING)
        assert not TaskRun.objects.filter(task=other).exists()
    running.stop()
    everyone = start_runner()
    wait_until(lambda: status_is(in_b, TaskStatus.FINISHED) and status_is(in_default, TaskStatus.FINISHED))
    assert TaskRun.objects.get(task=in_b).runner.worker_id == everyone.runner.worker_id


def test_a_runner_serving_several_queues_runs_each_of_them(start_runner):
    tasks = {name: make_task(functions.add, args_in={"a": 1}, queue=name) for name in ("a", "b", "c")}
    start_runner(queues=["a", "b"])
    wait_until(
        lambda: status_is(tasks["a"], TaskStatus.FINISHED) and status_is(tasks["b"], TaskStatus.FINISHED)
    )
    polled = timezone.now() + timedelta(seconds=0.5)
    wait_until(lambda: timezone.now() > polled)
    assert status_is(tasks["c"], TaskStatus.WAITING)


def test_expiry_applies_to_the_queues_a_runner_serves(start_runner):
    past = timezone.now() - timedelta(seconds=1)
    mine = make_task(functions.stamp, queue="a", expires_at=past)
    other = make_task(functions.stamp, queue="b", expires_at=past)
    control = make_task(functions.stamp, queue="a")
    start_runner(queues=["a"])
    wait_until(lambda: status_is(control, TaskStatus.FINISHED))
    wait_until(lambda: status_is(mine, TaskStatus.EXPIRED))
    assert status_is(other, TaskStatus.WAITING)  # left to the runners of queue b
