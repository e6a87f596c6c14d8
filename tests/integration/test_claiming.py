"""Tests for app.lifecycle.claiming: what a claim changes, in how many statements, that it is exclusive."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app import lifecycle
from app.lease import DB_USE, Lease
from app.lifecycle import Claimer
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db(transaction=True)


def make_tasks(count: int, **fields) -> list[Task]:
    return [
        Task.objects.create(name=f"t{n}", func=functions.add, args_in={"a": n}, **fields)
        for n in range(count)
    ]


def make_runner(worker_id: str = "claimer") -> RunnerProcess:
    return RunnerProcess.objects.create(worker_id=worker_id, host="h", pid=1, threads=8)


def test_a_claim_flips_tasks_to_running_and_opens_a_saved_run_for_each():
    runner = make_runner()
    tasks = make_tasks(3)

    claimed = lifecycle.claim(runner, limit=8)

    assert sorted(task.pk for task, _ in claimed) == sorted(t.pk for t in tasks)
    for task, run in claimed:
        stored_task, stored_run = Task.objects.get(pk=task.pk), TaskRun.objects.get(pk=run.pk)
        assert (stored_task.status, stored_task.runner_id, stored_task.fence) == (
            TaskStatus.RUNNING,
            runner.pk,
            1,
        )
        assert (task.status, task.runner_id, task.fence, task.attempt) == (
            TaskStatus.RUNNING,
            runner.pk,
            1,
            1,
        )
        assert stored_task.attempts == stored_task.attempt == 1
        assert stored_task.period_start == stored_task.next_run  # a new series keeps when it was due
        assert stored_run.task_id == task.pk
        assert run.task is task
        assert (stored_run.runner_id, stored_run.fence, stored_run.attempt) == (runner.pk, 1, 1)
        assert stored_run.status == RunStatus.RUNNING
        assert stored_run.finished_at is None
        assert stored_run.scheduled_for == stored_task.next_run
        assert stored_run.started_at == run.started_at
        assert not run._state.adding  # a saved row: finishing it updates, never inserts


def test_a_claim_takes_the_highest_priority_then_the_longest_due_up_to_the_limit():
    now = timezone.now()
    low_old = Task.objects.create(func=functions.add, args_in={"a": 1}, priority=0)
    high = Task.objects.create(func=functions.add, args_in={"a": 2}, priority=5)
    low_older = Task.objects.create(func=functions.add, args_in={"a": 3}, priority=0)
    Task.objects.filter(pk=low_old.pk).update(next_run=now - timedelta(seconds=10))
    Task.objects.filter(pk=low_older.pk).update(next_run=now - timedelta(seconds=20))

    first = lifecycle.claim(make_runner(), limit=2)

    assert [task.pk for task, _ in sorted(first, key=lambda pair: pair[1].pk)] == [high.pk, low_older.pk]
    assert Task.objects.get(pk=low_old.pk).status == TaskStatus.WAITING


def test_expired_tasks_are_marked_expired_and_never_claimed():
    [expired, fine] = make_tasks(2)
    Task.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    claimed = lifecycle.claim(make_runner(), limit=8)

    assert [task.pk for task, _ in claimed] == [fine.pk]
    assert Task.objects.get(pk=expired.pk).status == TaskStatus.EXPIRED
    assert not TaskRun.objects.filter(task=expired).exists()


def test_paused_future_and_other_queue_tasks_are_left_alone():
    [paused, later, elsewhere, mine] = make_tasks(4)
    Task.objects.filter(pk=paused.pk).update(paused=True)
    Task.objects.filter(pk=later.pk).update(next_run=timezone.now() + timedelta(hours=1))
    Task.objects.filter(pk=elsewhere.pk).update(queue="other")

    claimed = lifecycle.claim(make_runner(), limit=8, queues=["default"])

    assert [task.pk for task, _ in claimed] == [mine.pk]


def test_due_by_leaves_tasks_that_fell_due_later():
    [early, late] = make_tasks(2)
    cutoff = timezone.now()
    Task.objects.filter(pk=early.pk).update(next_run=cutoff - timedelta(seconds=1))
    Task.objects.filter(pk=late.pk).update(next_run=cutoff + timedelta(microseconds=1))

    claimed = lifecycle.claim(make_runner(), limit=8, due_by=cutoff)

    assert [task.pk for task, _ in claimed] == [early.pk]


def test_due_shows_the_orm_exactly_what_a_claim_takes():
    now = timezone.now()
    due = make_tasks(2)
    make_tasks(1, paused=True)
    make_tasks(1, next_run=now + timedelta(hours=1))
    make_tasks(1, status=TaskStatus.FINISHED)

    shown = set(lifecycle.due().values_list("pk", flat=True))

    assert shown == {task.pk for task in due}
    assert {task.pk for task, _ in lifecycle.claim(make_runner(), limit=8)} == shown


def test_db_use_tasks_are_claimed_one_at_a_time_with_the_lease():
    runner = make_runner()
    make_tasks(3, db_use=True)
    [plain] = make_tasks(1)

    claimed = lifecycle.claim(runner, limit=8)

    db_tasks = [task for task, _ in claimed if task.db_use]
    assert len(db_tasks) == 1
    assert plain.pk in [task.pk for task, _ in claimed]
    assert Lease.objects.get(name=DB_USE).task_id == db_tasks[0].pk
    assert lifecycle.claim(runner, limit=8) == []  # the lease is held: no second db_use task


def test_each_run_records_the_queue_and_function_its_task_had_at_the_claim():
    """The claim's INSERT copies them (PostgreSQL: the one statement; SQLite: the multi-row INSERT), for
    plain and db_use claims and Task.run() alike; a later edit of the task leaves its runs as they ran."""
    mail = Task.objects.create(name="mail", func=functions.add, args_in={"a": 1}, queue="mail")
    [locked] = make_tasks(1, db_use=True, queue="db")
    inline = Task.objects.create(name="inline", func=functions.stamp, queue="now", run_in=3600)

    claimed = lifecycle.claim(make_runner(), limit=8)
    ran_now = inline.run()

    routes = {(task.pk, task.queue, task.func) for task, _ in claimed} | {(inline.pk, "now", STAMP)}
    assert routes == {(mail.pk, "mail", ADD), (locked.pk, "db", ADD), (inline.pk, "now", STAMP)}
    for task, run in [*claimed, (inline, ran_now)]:
        stored = TaskRun.objects.get(pk=run.pk)
        assert (stored.queue, stored.func) == (run.queue, run.func) == (task.queue, task.func)
    Task.objects.filter(pk=mail.pk).update(queue="post", func=STAMP)
    assert TaskRun.objects.filter(task=mail).values_list("queue", "func").get() == ("mail", ADD)


ADD, STAMP = "tests.functions.add", "tests.functions.stamp"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement claim is PostgreSQL's")
def test_a_full_claim_on_postgresql_is_one_statement():
    make_tasks(6)
    runner = make_runner()

    with CaptureQueriesContext(connection) as queries:
        claimed = lifecycle.claim(runner, limit=4)

    assert len(claimed) == 4
    assert len(queries) == 1, [q["sql"] for q in queries]  # nothing left free, so no db_use look
    assert "FOR UPDATE SKIP LOCKED" in queries[0]["sql"]
    assert TaskRun.objects.count() == 4  # the statement ran once


def test_runners_claiming_at_once_never_claim_a_task_twice():
    tasks = make_tasks(120)
    runners = [make_runner(f"r{n}") for n in range(4)]
    claimed: dict[str, list[int]] = {r.worker_id: [] for r in runners}
    start = threading.Barrier(len(runners))

    def claim_all(runner: RunnerProcess) -> None:
        try:
            start.wait()
            while batch := lifecycle.claim(runner, limit=7):
                claimed[runner.worker_id].extend(task.pk for task, _ in batch)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim_all, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    every_claim = [pk for pks in claimed.values() for pk in pks]
    assert sorted(every_claim) == sorted(task.pk for task in tasks)  # each exactly once
    assert TaskRun.objects.count() == len(tasks)
    for runner in runners:
        assert set(Task.objects.filter(runner=runner).values_list("pk", flat=True)) == set(
            claimed[runner.worker_id]
        )


def test_claims_after_a_full_one_keep_the_claim_order_and_its_rules():
    now = timezone.now()
    claimer = Claimer(make_runner())
    due = [Task.objects.create(func=functions.add, args_in={"a": n}, priority=n % 3) for n in range(9)]
    [paused, later, expired] = make_tasks(3)
    Task.objects.filter(pk=paused.pk).update(paused=True)
    Task.objects.filter(pk=later.pk).update(next_run=now + timedelta(hours=1))
    Task.objects.filter(pk=expired.pk).update(expires_at=now - timedelta(seconds=1))
    order = sorted(due, key=lambda t: (-t.priority, t.next_run, t.pk))

    batches = [claimer.claim(3) for _ in range(4)]  # all but the first follow a full claim

    assert [[task.pk for task, _ in batch] for batch in batches] == [
        [t.pk for t in order[:3]],
        [t.pk for t in order[3:6]],
        [t.pk for t in order[6:]],
        [],
    ]
    assert Task.objects.get(pk=expired.pk).status == TaskStatus.EXPIRED
    assert Task.objects.get(pk=paused.pk).status == Task.objects.get(pk=later.pk).status == TaskStatus.WAITING
