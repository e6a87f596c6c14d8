"""Tests for app.api: the dashboard's JSON views answer staff only, 400 with the field on bad input."""

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from app import dbclock
from app.history import HeartbeatSample, QueueDepthSample
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(make_user("viewer", perms=("view_task",)))
    return client


def test_only_staff_with_the_view_permission_read_the_lists(client):
    url = reverse("conductor:api-tasks")
    assert client.get(url).status_code == 401
    client.force_login(make_user("clerk", staff=False, perms=("view_task",)))
    assert client.get(url).status_code == 403
    client.force_login(make_user("staff-no-perm"))
    assert client.get(url).status_code == 403


def test_a_list_page_and_its_cursor(staff):
    for n in range(3):
        Task(name=f"job {n}", func="tests.functions.add", args_in={"a": n}, run_in=60).save()
    first = staff.get(reverse("conductor:api-tasks"), {"limit": 2, "sort": "name"}).json()
    assert [item["name"] for item in first["items"]] == ["job 0", "job 1"]
    second = staff.get(
        reverse("conductor:api-tasks"), {"limit": 2, "sort": "name", "cursor": first["next"]}
    ).json()
    assert ([item["name"] for item in second["items"]], second["next"]) == (["job 2"], None)


def test_bad_parameters_are_400_with_the_field(staff):
    response = staff.get(reverse("conductor:api-runs"), {"limit": 1000})
    assert response.status_code == 400
    assert response.json()["field"] == "limit"
    assert staff.get(reverse("conductor:api-tasks"), {"cursor": "%%%"}).json()["field"] == "cursor"
    # Were 500s: '²' passed str.isdigit() then failed int(); PostgreSQL refused the NUL (DataError).
    for name, params in [("api-tasks", {"limit": "\u00b2"}), ("api-runs", {"task": "\u00b2"}),
                         ("api-tasks", {"q": "a\x00"}), ("api-runs", {"queue": "\x00"})]:  # fmt: skip
        response = staff.get(reverse(f"conductor:{name}"), params)
        assert (response.status_code, response.json()["field"]) == (400, *params)


def test_a_task_that_does_not_exist_is_404(staff):
    assert staff.get(reverse("conductor:api-task", args=["no-such-task"])).status_code == 404


def test_a_cron_task_lists_its_next_five_runs_in_its_time_zone(staff):
    task = Task(name="nightly", func="tests.functions.add", args_in={"a": 1}, cron="30 2 * * *",
                timezone="Europe/Berlin")  # fmt: skip
    task.save()
    detail = staff.get(reverse("conductor:api-task", args=[task.task_id])).json()
    upcoming = [datetime.fromisoformat(moment) for moment in detail["upcoming"]]
    assert len(upcoming) == 5
    berlin = ZoneInfo("Europe/Berlin")
    assert all(
        (m.hour, m.minute, m.utcoffset()) == (2, 30, m.astimezone(berlin).utcoffset()) for m in upcoming
    )
    assert detail["definition"]["cron"] == "30 2 * * *"


def test_an_interval_task_lists_its_next_runs_one_interval_apart(staff):
    task = Task(name="every minute", func="tests.functions.add", args_in={"a": 1}, loop=True, interval=60)
    task.save()
    upcoming = staff.get(reverse("conductor:api-task", args=[task.task_id])).json()["upcoming"]
    gaps = {(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
            for a, b in itertools.pairwise(upcoming)}  # fmt: skip
    assert (len(upcoming), gaps) == (5, {60.0})


def running(task: Task, due: datetime) -> None:
    """As a claim leaves it: running, its period the time it was due, a run started then."""
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING, next_run=due, period_start=due)
    TaskRun.objects.create(task=task, status=RunStatus.RUNNING, started_at=due, scheduled_for=due)


def upcoming_of(staff, task: Task) -> list[datetime]:
    detail = staff.get(reverse("conductor:api-task", args=[task.task_id])).json()
    return [datetime.fromisoformat(moment) for moment in detail["upcoming"]]


def test_a_running_interval_task_lists_the_runs_after_this_one(staff):
    # The demo's import job: runs 50 s of every 60 s, so it is mostly seen running.
    task = Task(name="imports", func="tests.functions.add", args_in={"a": 1}, loop=True, interval=60)
    task.save()
    due = dbclock.now() - timedelta(seconds=50)
    running(task, due)
    assert upcoming_of(staff, task) == [due + timedelta(seconds=60 * k) for k in range(1, 6)]
    # The run going on counts against max_runs; expires_at ends the list too.
    Task.objects.filter(pk=task.pk).update(max_runs=4, run_count=1)
    assert upcoming_of(staff, task) == [due + timedelta(seconds=60), due + timedelta(seconds=120)]
    Task.objects.filter(pk=task.pk).update(max_runs=None, expires_at=due + timedelta(seconds=150))
    assert upcoming_of(staff, task) == [due + timedelta(seconds=60), due + timedelta(seconds=120)]
    Task.objects.filter(pk=task.pk).update(loop=False)  # a one-off run: nothing to come
    assert upcoming_of(staff, task) == []


def test_a_running_cron_task_lists_its_next_times_after_now_in_its_time_zone(staff):
    # Every hour on the hour in Kolkata (UTC+05:30): at half past in UTC.
    task = Task(name="hourly", func="tests.functions.add", args_in={"a": 1}, cron="0 * * * *",
                timezone="Asia/Kolkata")  # fmt: skip
    task.save()
    now = dbclock.now()
    due = now.replace(minute=30, second=0, microsecond=0)
    due -= timedelta(hours=1) if due > now else timedelta(0)  # the slot this run was due for
    running(task, due)
    upcoming = upcoming_of(staff, task)
    assert upcoming == [due + timedelta(hours=k) for k in range(1, 6)]
    assert {(m.minute, m.utcoffset()) for m in upcoming} == {(0, timedelta(hours=5, minutes=30))}


def test_a_run_shows_its_traceback_and_log(staff):
    task = Task(name="t", func="tests.functions.add", args_in={"a": 1})
    task.save()
    run = TaskRun.objects.create(
        task=task, status=RunStatus.FAILED, error="Traceback...\nValueError: x\n", log="hello\n"
    )
    detail = staff.get(reverse("conductor:api-run", args=[run.pk])).json()
    assert (detail["error"], detail["log"], detail["task_id"]) == (run.error, "hello\n", task.task_id)
    assert detail["admin_url"] == f"/admin/conductor/taskrun/{run.pk}/change/"  # and back (test_admin)


def test_charts_answer_staff(staff):
    assert set(staff.get(reverse("conductor:api-charts")).json()) == {
        "at",
        "runs_per_minute",
        "queue_depth",
        "queue_depth_history",
        "durations",
    }


def test_the_history_views_answer_what_came_after_since(staff):
    runner = RunnerProcess.objects.create(worker_id="r1", host="h", pid=1)
    now = dbclock.now()
    for seconds in (20, 10):
        HeartbeatSample.objects.create(runner=runner, at=now - timedelta(seconds=seconds), busy=seconds)
        QueueDepthSample.objects.create(bucket=now - timedelta(seconds=seconds), queue="q", due=seconds)
    url = reverse("conductor:api-runner", args=["r1"])
    chart_url = reverse("conductor:api-charts")

    beats = staff.get(url).json()["heartbeats"]
    history = staff.get(chart_url).json()["queue_depth_history"]

    assert ([b["busy"] for b in beats], [h["due"] for h in history]) == ([20, 10], [20, 10])
    since = {"since": f"{beats[0]['at']:.6f}"}
    assert [b["busy"] for b in staff.get(url, since).json()["heartbeats"]] == [10]
    assert [h["due"] for h in staff.get(chart_url, since).json()["queue_depth_history"]] == [10]


@pytest.mark.parametrize(
    ("query", "field"),
    [({"since": "yesterday"}, "since"), ({"since": "nan"}, "since"), ({"since": "١٢"}, "since"),
     ({"since": ["1", "2"]}, "since"), ({"until": "1"}, "until")],
)  # fmt: skip
def test_a_bad_since_is_400_with_the_field(staff, query, field):
    RunnerProcess.objects.create(worker_id="r1", host="h", pid=1)
    for url in (reverse("conductor:api-charts"), reverse("conductor:api-runner", args=["r1"])):
        response = staff.get(url, query)
        assert (response.status_code, response.json()["field"]) == (400, field)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("task", "No task with task_id 'nope': deleted or mistyped."),
        ("runner", "No runner with worker_id 'nope': deleted or mistyped."),
    ],
)
def test_a_missing_task_or_runner_page_is_a_404_in_the_dashboard_layout(staff, page, message):
    response = staff.get(reverse(f"conductor:{page}", args=["nope"]))
    html = response.content.decode()
    assert response.status_code == 404
    assert response.templates[0].name == "conductor/notfound.html"
    assert message in html
    assert f'href="{reverse("conductor:dashboard")}"' in html


def test_the_missing_id_is_shown_escaped(staff):
    html = staff.get(reverse("conductor:task", args=["<i>x"])).content.decode()
    assert "No task with task_id '&lt;i&gt;x'" in html
    assert "<i>x" not in html


def test_a_missing_task_or_runner_is_a_json_404(staff):
    response = staff.get(reverse("conductor:api-runner", args=["no-such-runner"]))
    assert (response.status_code, response.json()["field"]) == (404, None)


def test_the_task_and_runner_pages_are_for_staff_and_link_back_to_the_admin(client, staff):
    task = Task(name="nightly", func="tests.functions.add", args_in={"a": 1}, run_in=60)
    task.save()
    page = staff.get(reverse("conductor:task", args=[task.task_id]))
    assert page.status_code == 200
    assert reverse("admin:conductor_task_change", args=[task.pk]) in page.content.decode()
    client.logout()
    assert client.get(reverse("conductor:task", args=[task.task_id])).status_code == 302
