"""Tests for app.taskrun: a run made with the ORM records its task's queue and function, as a claim does."""

import pytest

from app.task import Task
from app.taskrun import TaskRun

pytestmark = pytest.mark.django_db


def make_task(queue: str = "mail") -> Task:
    task = Task(name="job", func="tests.functions.add", args_in={"a": 1}, queue=queue, run_in=3600)
    task.save()
    return task


def stored(run: TaskRun) -> tuple[str, str]:
    return TaskRun.objects.values_list("queue", "func").get(pk=run.pk)


def test_create_and_bulk_create_take_the_task_queue_and_function():
    task = make_task()
    created = TaskRun.objects.create(task=task)
    [bulk] = TaskRun.objects.bulk_create([TaskRun(task=task)])
    assert stored(created) == stored(bulk) == ("mail", "tests.functions.add")


def test_given_values_are_kept_and_saving_again_copies_nothing():
    task = make_task()
    run = TaskRun.objects.create(task=task, queue="then", func="tests.functions.say")
    assert stored(run) == ("then", "tests.functions.say")
    task.queue = "post"
    task.save()
    ran = TaskRun.objects.create(task=task)
    Task.objects.filter(pk=task.pk).update(queue="later")
    TaskRun.objects.get(pk=ran.pk).save()  # an existing run keeps where it ran
    assert stored(ran) == ("post", "tests.functions.add")
