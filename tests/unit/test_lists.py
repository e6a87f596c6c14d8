"""Tests for app.lists: filters, search, sorts and keyset pages return the database's rows, bad input a
ListError naming the field."""

from datetime import timedelta

import pytest
from django.utils import timezone

from app.lists import MAX_LIMIT, ListError, encode_cursor, run_page, task_page
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun

pytestmark = pytest.mark.django_db


def make_tasks(count: int, **fields) -> list[Task]:
    tasks = []
    for n in range(count):
        given = {"func": "tests.functions.add", "args_in": {"a": n}, **fields}
        task = Task(name=f"{fields.get('queue', 'default')} job {n:03d}", run_in=3600, **given)
        task.save()
        tasks.append(task)
    return tasks


def all_pages(page_of, params: dict) -> list:
    rows, cursor = [], None
    while True:
        page = page_of({**params, **({"cursor": [cursor]} if cursor else {})})
        rows += page.rows
        if not (cursor := page.next_cursor):
            return rows


def test_pages_walk_every_matching_task_once_in_order():
    make_tasks(23, queue="mail")
    make_tasks(5, queue="other")
    rows = all_pages(task_page, {"queue": ["mail"], "limit": ["10"], "sort": ["name"]})
    assert [task.name for task in rows] == sorted(f"mail job {n:03d}" for n in range(23))


def test_pages_break_ties_by_id():
    tasks = make_tasks(7)
    Task.objects.update(name="same")  # every row the same sort value
    rows = all_pages(task_page, {"limit": ["3"], "sort": ["-name"]})
    assert [task.pk for task in rows] == sorted((task.pk for task in tasks), reverse=True)
    assert [task.pk for task in all_pages(task_page, {"limit": ["2"]})] == [task.pk for task in rows]


def test_filters_match_the_database():
    make_tasks(3, queue="mail")
    paused = make_tasks(2, queue="mail", paused=True)
    looping = make_tasks(2, loop=True, interval=60)
    assert {t.pk for t in task_page({"paused": ["true"]}).rows} == {t.pk for t in paused}
    assert {t.pk for t in task_page({"loop": ["true"]}).rows} == {t.pk for t in looping}
    assert len(task_page({"queue": ["mail"], "paused": ["false"]}).rows) == 3
    assert len(task_page({"status": [TaskStatus.WAITING, TaskStatus.RUNNING]}).rows) == 7
    assert task_page({"func": ["tests.functions.say"]}).rows == []


def test_search_finds_by_name_or_exact_task_id():
    [first, *_] = make_tasks(3, queue="mail")
    assert [t.pk for t in task_page({"q": ["JOB 001"]}).rows] == [Task.objects.get(name="mail job 001").pk]
    assert [t.pk for t in task_page({"q": [first.task_id]}).rows] == [first.pk]


def test_runs_filter_by_runner_status_queue_and_task():
    [mail] = make_tasks(1, queue="mail")
    [other] = make_tasks(1)
    runner = RunnerProcess.objects.create(worker_id="r1", host="h", pid=1)
    start = timezone.now()
    for n in range(12):
        TaskRun.objects.create(task=mail if n % 2 else other, runner=runner if n < 4 else None,
                               status=RunStatus.FAILED if n % 3 == 0 else RunStatus.FINISHED,
                               started_at=start + timedelta(seconds=n))  # fmt: skip
    assert len(all_pages(run_page, {"runner": ["r1"], "limit": ["1"]})) == 4
    assert len(all_pages(run_page, {"queue": ["mail"], "limit": ["5"]})) == 6
    assert len(all_pages(run_page, {"status": ["failed"], "limit": ["2"]})) == 4
    newest_first = all_pages(run_page, {"task": [str(mail.pk)], "limit": ["4"]})
    assert [run.started_at for run in newest_first] == sorted(
        (r.started_at for r in newest_first), reverse=True
    )


def test_runs_filter_by_the_queue_and_function_they_ran_in():
    [mail] = make_tasks(1, queue="mail")
    [other] = make_tasks(1, func="tests.functions.say", args_in={"text": "hi"})
    before = [TaskRun.objects.create(task=task, status=RunStatus.FINISHED) for task in (mail, mail, other)]
    Task.objects.filter(pk=mail.pk).update(queue="post", func="tests.functions.say")  # edited since
    after = TaskRun.objects.create(task=Task.objects.get(pk=mail.pk), status=RunStatus.FINISHED)

    def pks(params: dict) -> list[int]:
        return [run.pk for run in all_pages(run_page, {**params, "limit": ["1"]})]

    assert pks({"queue": ["mail"]}) == [before[1].pk, before[0].pk]  # newest first
    assert pks({"queue": ["post"]}) == [after.pk]
    assert pks({"queue": ["mail", "post"], "status": ["failed"]}) == []
    assert pks({"func": ["tests.functions.add"]}) == [before[1].pk, before[0].pk]
    assert pks({"func": ["tests.functions.say"]}) == [after.pk, before[2].pk]
    assert pks({"func": ["tests.functions.say"], "queue": ["default"]}) == [before[2].pk]


#: (params, the field named): bad input to the task list.
BAD_TASK_LIST_INPUT = [
    ({"colour": ["red"]}, "colour"),
    ({"status": ["sleeping"]}, "status"),
    ({"loop": ["yes"]}, "loop"),
    ({"sort": ["priority"]}, "sort"),
    ({"sort": ["name"], "cursor": [encode_cursor(5, 1)]}, "cursor"),
    ({"limit": ["0"]}, "limit"),
    ({"limit": [str(MAX_LIMIT + 1)]}, "limit"),
    ({"limit": ["ten"]}, "limit"),
    ({"cursor": ["not a cursor!"]}, "cursor"),
    ({"cursor": [encode_cursor(1, "one")]}, "cursor"),
    ({"q": ["x" * 201]}, "q"),
    ({"q": ["a", "b"]}, "q"),
    ({"queue": [""]}, "queue"),
    # '²' is a digit to str.isdigit() but not to int(): refused, not a 500.
    ({"limit": ["\u00b2"]}, "limit"),
    # PostgreSQL text cannot hold NUL: refused before any query reaches it.
    ({"q": ["job\x00"]}, "q"),
    ({"queue": ["mail\x00"]}, "queue"),
    ({"sort": ["name"], "cursor": [encode_cursor("job\x00", 1)]}, "cursor"),
]
#: The same for the run list.
BAD_RUN_LIST_INPUT = [
    ({"task": ["abc"]}, "task"),
    ({"task": ["\u00b2"]}, "task"),
    ({"q": ["\x00"]}, "q"),
    ({"runner": ["r\x00"]}, "runner"),
    ({"q": [" "]}, "q"),
]


@pytest.mark.parametrize(
    ("page", "params", "field"),
    [(task_page, *case) for case in BAD_TASK_LIST_INPUT] + [(run_page, *case) for case in BAD_RUN_LIST_INPUT],
)
def test_bad_input_names_the_field(page, params, field):
    with pytest.raises(ListError) as caught:
        page(params)
    assert caught.value.field == field


def test_runs_search_by_their_task_name_or_exact_task_id():
    [mail, other] = make_tasks(2, queue="mail")
    runs = {task.pk: TaskRun.objects.create(task=task, status=RunStatus.FINISHED) for task in (mail, other)}
    assert [r.pk for r in run_page({"q": ["JOB 001"]}).rows] == [runs[other.pk].pk]
    assert [r.pk for r in run_page({"q": [mail.task_id]}).rows] == [runs[mail.pk].pk]
    assert run_page({"q": ["zzz"]}).rows == []


@pytest.mark.parametrize("most", [100, 3])  # the tasks' ids read first, or too many: a subquery
def test_runs_search_finds_the_same_runs_whoever_matches_first(monkeypatch, most):
    monkeypatch.setattr("app.lists.MOST_SEARCHED_TASKS", most)
    tasks = make_tasks(5, queue="mail")
    runs = [TaskRun.objects.create(task=task, status=RunStatus.FINISHED) for task in tasks for _ in range(2)]
    found = all_pages(run_page, {"q": ["job"], "limit": ["3"]})
    assert [r.pk for r in found] == sorted((r.pk for r in runs), reverse=True)
