"""app.lease: a system-wide exclusive right (the db_use lease), taken by one conditional write."""

import pytest

from app.lease import DB_USE, Lease
from app.runnerprocess import RunnerProcess
from app.task import Task
from tests import functions

pytestmark = pytest.mark.django_db


def make_task(name: str = "t") -> Task:
    task = Task(name=name, func=functions.add, args_in={"a": 1}, db_use=True)
    task.save()
    return task


def test_the_first_acquire_creates_the_lease_row_and_takes_it():
    task = make_task()

    assert Lease.objects.acquire(DB_USE, task.pk, runner_id=None)

    lease = Lease.objects.get(name=DB_USE)
    assert lease.task_id == task.pk
    assert lease.acquired_at is not None
    assert str(lease) == f"db_use (held by task {task.pk})"


def test_a_held_lease_is_refused_to_another_task():
    first, second = make_task("first"), make_task("second")
    assert Lease.objects.acquire(DB_USE, first.pk, runner_id=None)

    assert not Lease.objects.acquire(DB_USE, second.pk, runner_id=None)
    assert Lease.objects.get(name=DB_USE).task_id == first.pk


def test_release_frees_it_only_for_the_task_that_holds_it():
    first, second = make_task("first"), make_task("second")
    Lease.objects.acquire(DB_USE, first.pk, runner_id=None)

    Lease.objects.release(DB_USE, second.pk)
    assert Lease.objects.get(name=DB_USE).task_id == first.pk
    Lease.objects.release(DB_USE, first.pk)

    lease = Lease.objects.get(name=DB_USE)
    assert (lease.task_id, lease.runner_id, lease.acquired_at) == (None, None, None)
    assert str(lease) == "db_use (free)"
    assert Lease.objects.acquire(DB_USE, second.pk, runner_id=None)


def test_release_held_by_frees_every_lease_of_those_runners():
    runner = RunnerProcess.objects.create(worker_id="holder", host="h", pid=1)
    other = RunnerProcess.objects.create(worker_id="other", host="h", pid=2)
    task = make_task()
    Lease.objects.acquire(DB_USE, task.pk, runner_id=runner.pk)

    assert Lease.objects.release_held_by([other.pk]) == 0
    assert Lease.objects.release_held_by([runner.pk]) == 1
    assert Lease.objects.get(name=DB_USE).task_id is None
