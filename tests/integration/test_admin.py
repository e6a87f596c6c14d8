"""The Django admin for tasks, runs and runners, through the test client on a real database.

Actions are checked by what they change in the database, by the message they report, and by what they
tell open dashboards and the runners through the channel layer (the same path as the dashboard's
commands).
"""

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from app import actions, lifecycle, registry
from app.bridge import RUNNERS_GROUP, runner_group
from app.fanout import FEED_GROUP
from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import MAX_SECONDS, Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db

TASKS = reverse("admin:conductor_task_changelist")
TASK_ADD = reverse("admin:conductor_task_add")
RUNS = reverse("admin:conductor_taskrun_changelist")
RUNNERS = reverse("admin:conductor_runnerprocess_changelist")
ADD = "tests.functions.add"


# --- helpers --------------------------------------------------------------------------------------


def make_task(**fields) -> Task:
    fields.setdefault("func", functions.add)
    fields.setdefault("args_in", {"a": 1})
    task = Task(**fields)
    task.save()
    return task


def make_runner(worker_id: str = "worker-1", **fields) -> RunnerProcess:
    fields.setdefault("host", "host-a")
    fields.setdefault("pid", 4321)
    fields.setdefault("threads", 8)
    return RunnerProcess.objects.create(worker_id=worker_id, **fields)


def make_running(task: Task, runner: RunnerProcess) -> TaskRun:
    """The task as a runner leaves it while a run is open: running, with a TaskRun not finished."""
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING, runner=runner)
    task.refresh_from_db()
    return TaskRun.objects.create(task=task, runner=runner, thread_name="conductor-task-1")


def make_run(task: Task, status: str = RunStatus.FINISHED, ago: float = 60, **fields) -> TaskRun:
    started = timezone.now() - timedelta(seconds=ago)
    fields.setdefault("duration", 1.5)
    return TaskRun.objects.create(
        task=task, status=status, started_at=started, finished_at=started + timedelta(seconds=1.5), **fields
    )


def change_url(obj) -> str:
    return reverse(f"admin:conductor_{obj._meta.model_name}_change", args=[obj.pk])


def shown_pks(response) -> set[int]:
    assert response.status_code == 200, response.status_code
    return {obj.pk for obj in response.context["cl"].result_list}


def act(client, action: str, *tasks: Task):
    """POST an action from the task changelist, as the browser does, and follow to the page that shows
    the message (so each message is read once)."""
    data = {"action": action, "_selected_action": [t.pk for t in tasks], "index": 0, "select_across": 0}
    return client.post(TASKS, data, follow=True)


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def only_message(response) -> tuple[str, str]:
    messages = list(get_messages(response.wsgi_request))
    assert len(messages) == 1, [str(m) for m in messages]
    return str(messages[0]), messages[0].level_tag


def staff_user(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password="x", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="conductor", codename__in=codenames)
    assert perms.count() == len(codenames), codenames
    user.user_permissions.add(*perms)
    return user


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(staff_user(django_user_model, "viewer", "view_task", "view_taskrun",
                                  "view_runnerprocess"))  # fmt: skip
    return client


@pytest.fixture
def changer_client(client, django_user_model):
    client.force_login(staff_user(django_user_model, "changer", "view_task", "change_task"))
    return client


# The channel layer: a test subscribes a channel to a group, like an open dashboard (or a runner) does.


class Listener:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.joined: list[tuple[str, str]] = []

    def join(self, group: str) -> str:
        channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(group, channel)
        self.joined.append((group, channel))
        return channel

    def received(self, channel: str) -> list[dict]:
        """Every message waiting on ``channel`` (the actions send before the response returns)."""

        async def drain() -> list[dict]:
            got = []
            while True:
                try:
                    got.append(await asyncio.wait_for(self.layer.receive(channel), timeout=0.2))
                except TimeoutError:
                    return got

        return async_to_sync(drain)()

    def leave(self) -> None:
        for group, channel in self.joined:
            async_to_sync(self.layer.group_discard)(group, channel)


@pytest.fixture
def listener(fresh_channel_layer):
    listening = Listener()  # receives on a fresh loop per call, which only the in-memory layer allows
    yield listening
    listening.leave()


def changed_tasks(messages: list[dict]) -> dict[int, dict]:
    """task pk -> state, from the task.changed events of the frames sent to the feed (app/fanout.py)."""
    found = {}
    for message in messages:
        assert message["type"] == "conductor.events", message
        for event in json.loads(message["frame"])["events"]:
            if event["type"] == "task.changed":
                found[event["task"]] = event["state"]
    return found


def wakes(messages: list[dict]) -> int:
    return sum(1 for m in messages if m == {"type": "runner.command", "command": "wake"})


# --- task changelist: columns, filters, search, date hierarchy -----------------------------------


def test_task_list_shows_the_columns(admin_client):
    runner = make_runner()
    task = make_task(name="nightly report", loop=True, interval=60, kill_time=30, db_use=True)
    Task.objects.filter(pk=task.pk).update(
        last_run=timezone.now() - timedelta(minutes=5), last_status=RunStatus.FAILED, paused=True
    )
    make_running(task, runner)

    response = admin_client.get(TASKS)

    assert response.status_code == 200
    html = response.content.decode()
    for column in ["name", "func", "status_shown", "next_run", "last_run", "last_status", "loop",
                   "interval", "kill_time", "db_use"]:  # fmt: skip
        assert f"column-{column}" in html, column
    row = re.search(r'<tr>\s*<td class="action-checkbox">.*?</tr>', html, re.S).group(0)
    assert "nightly report" in row
    assert ADD in row
    assert "Running (paused)" in row
    assert "Failed" in row  # the last run's outcome
    assert "60.0" in row
    assert "30.0" in row
    assert [str(t) for t in response.context["cl"].result_list] == [str(task)]


def test_task_list_is_newest_first(admin_client):
    first, second = make_task(name="first"), make_task(name="second")
    assert [t.pk for t in admin_client.get(TASKS).context["cl"].result_list] == [second.pk, first.pk]


@pytest.fixture
def varied_tasks():
    runner_a, runner_b = make_runner("worker-a"), make_runner("worker-b")
    tasks = {
        "waiting": make_task(name="waiting one"),
        "running_a": make_task(name="running on a", func=functions.say, args_in={"text": "x"}),
        "running_b": make_task(name="running on b", func=functions.stamp, args_in=None),
        "looping": make_task(name="looper", loop=True, interval=5),
        "db": make_task(name="database job", db_use=True),
        "paused": make_task(name="held", paused=True),
        "failed": make_task(name="broken"),
    }
    make_running(tasks["running_a"], runner_a)
    make_running(tasks["running_b"], runner_b)
    Task.objects.filter(pk=tasks["failed"].pk).update(
        status=TaskStatus.FAILED, last_status=RunStatus.FAILED, last_run=timezone.now()
    )
    return {"runner_a": runner_a, "runner_b": runner_b, **tasks}


FILTERS = [
    # (id, query string built from the fixture, the names of the tasks it must show)
    ("status-running", lambda f: "status__exact=running", {"running_a", "running_b"}),
    ("status-failed", lambda f: "status__exact=failed", {"failed"}),
    ("status-waiting", lambda f: "status__exact=waiting", {"waiting", "looping", "db", "paused"}),
    ("paused", lambda f: "paused__exact=1", {"paused"}),
    ("func", lambda f: "func=tests.functions.say", {"running_a"}),
    ("loop", lambda f: "loop__exact=1", {"looping"}),
    ("db_use", lambda f: "db_use__exact=1", {"db"}),
    ("last_status", lambda f: "last_status__exact=failed", {"failed"}),
    ("runner", lambda f: f"runner__id__exact={f['runner_b'].pk}", {"running_b"}),
    ("status-and-runner", lambda f: f"status__exact=running&runner__id__exact={f['runner_a'].pk}",
     {"running_a"}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), [pytest.param(*c[1:], id=c[0]) for c in FILTERS])
def test_each_task_filter_narrows_the_list(admin_client, varied_tasks, query, expected):
    response = admin_client.get(f"{TASKS}?{query(varied_tasks)}")

    assert shown_pks(response) == {varied_tasks[name].pk for name in expected}


def test_task_list_offers_every_filter(admin_client, varied_tasks):
    response = admin_client.get(TASKS)

    titles = [spec.title for spec in response.context["cl"].filter_specs]
    assert titles == [
        "status",
        "paused",
        "func",
        "loop",
        "db use",
        "last status",
        "runner",
        "queue",
        "isolation",
    ]
    html = unescape(response.content.decode())
    assert f"?runner__id__exact={varied_tasks['runner_a'].pk}" in html
    assert "?func=tests.functions.say" in html


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        pytest.param("database", {"db"}, id="name"),
        pytest.param("RUNNING ON", {"running_a", "running_b"}, id="name-case-insensitive"),
        pytest.param("functions.stamp", {"running_b"}, id="func"),
        pytest.param("no such thing", set(), id="nothing"),
    ],
)
def test_task_search(admin_client, varied_tasks, term, expected):
    response = admin_client.get(TASKS, {"q": term})

    assert shown_pks(response) == {varied_tasks[name].pk for name in expected}


def test_task_search_by_task_id(admin_client, varied_tasks):
    task = varied_tasks["looping"]

    response = admin_client.get(TASKS, {"q": task.task_id})

    assert shown_pks(response) == {task.pk}


def test_task_list_has_a_date_hierarchy_on_next_run(admin_client):
    make_task(name="soon")
    make_task(name="next year", run_in=400 * 24 * 3600)

    response = admin_client.get(TASKS)

    assert response.context["cl"].date_hierarchy == "next_run"
    html = response.content.decode()
    assert 'class="toplinks"' in html
    assert "Filter by next run" in html
    year = timezone.now().year
    assert f"?next_run__year={year}" in html
    assert f"?next_run__year={year + 1}" in html or f"?next_run__year={year + 2}" in html
    assert shown_pks(admin_client.get(TASKS, {"next_run__year": year})) == {Task.objects.get(name="soon").pk}


# --- the add form --------------------------------------------------------------------------------


def test_add_form_offers_the_registered_functions_with_signature_and_docstring(admin_client):
    response = admin_client.get(TASK_ADD)

    assert response.status_code == 200
    form = response.context["adminform"].form
    values = [value for value, _ in form.fields["func"].choices]
    assert values == ["", *registry.names()]
    assert {ADD, "tests.functions.stamp", "server.demo.tasks.noop"} <= set(values)
    html = response.content.decode()
    for path in registry.names():
        assert f'<option value="{path}">' in html, path
    # Each function with its signature and its docstring's first line, as the field's help.
    assert escape("tests.functions.add(a: int, b: int = 0) -> int") in html
    assert escape("tests.functions.stamp() -> float") in html
    assert escape("The wall-clock time at the function's first line (pickup latency).") in html
    assert escape("tests.functions.busy(seconds: float = 30.0) -> int") in html
    assert escape("A pure-Python loop that swallows every Exception") in html
    # run_in only on creation; next_run is computed from it.
    assert 'name="run_in"' in html
    assert 'name="next_run' not in html
    assert 'name="args_in"' in html
    assert 'Keyword arguments as a JSON object, e.g. {"seconds": 5}' in html  # help texts are HTML


def add_data(**overrides) -> dict:
    data = {"name": "nightly", "func": ADD, "args_in": '{"a": 2, "b": 3}', "interval": "100",
            "run_in": "0", "kill_time": "", "conn": "", "task_id": "", "timezone": "UTC",
            "catch_up": "once", "isolation": "thread", "max_attempts": "1", "retry_delay": "10",
            "retry_delay_max": "3600", "priority": "0", "queue": "default"}  # fmt: skip
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_valid_add_creates_a_waiting_task(admin_client):
    before = timezone.now()

    response = admin_client.post(TASK_ADD, add_data(kill_time="30", db_use="on"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    task = Task.objects.get()
    assert task.name == "nightly"
    assert task.func == ADD
    assert task.args_in == {"a": 2, "b": 3}
    assert task.kill_time == 30
    assert task.db_use is True
    assert task.loop is False
    assert task.status == TaskStatus.WAITING
    assert len(task.task_id) == 32  # filled in
    assert before <= task.next_run <= timezone.now()
    assert any("nightly" in text for text in texts(response))


def test_add_honours_run_in(admin_client):
    before = timezone.now()

    response = admin_client.post(TASK_ADD, add_data(run_in="3600"))

    assert response.status_code == 302
    task = Task.objects.get()
    assert task.run_in == 3600
    assert before + timedelta(seconds=3600) <= task.next_run <= timezone.now() + timedelta(seconds=3600)


def test_add_a_looping_task_without_arguments(admin_client):
    response = admin_client.post(
        TASK_ADD, add_data(func="tests.functions.stamp", args_in="", loop="on", interval="2.5")
    )

    assert response.status_code == 302
    task = Task.objects.get()
    assert (task.func, task.args_in, task.loop, task.interval) == ("tests.functions.stamp", None, True, 2.5)


INVALID_ADDS = [
    # (id, overrides, field, text the error must contain)
    ("func-unregistered", {"func": "tests.functions.nope"}, "func",
     "Select a valid choice. tests.functions.nope is not one of the available choices."),
    ("func-empty", {"func": ""}, "func", "This field is required."),
    ("args-not-json", {"args_in": '{"a": 1'}, "args_in", "Enter a valid JSON."),
    ("args-list", {"args_in": "[1, 2]"}, "args_in",
     'args_in must be a JSON object of keyword arguments, e.g. {"url": "https://example.com"}; got list.'),
    ("args-string", {"args_in": '"a"'}, "args_in", "args_in must be a JSON object of keyword arguments"),
    ("args-unknown-kwarg", {"args_in": '{"a": 1, "c": 3}'}, "args_in",
     f"The arguments do not fit {ADD}: got an unexpected keyword argument 'c'."),
    ("args-missing-required", {"args_in": '{"b": 1}'}, "args_in",
     f"The arguments do not fit {ADD}: missing a required argument: 'a'."),
    ("args-none-but-required", {"args_in": ""}, "args_in",
     f"The arguments do not fit {ADD}: missing a required argument: 'a'."),
    ("args-nan", {"args_in": '{"a": NaN}'}, "args_in", "args_in must be plain JSON"),
    ("loop-interval-0", {"loop": "on", "interval": "0"}, "interval",
     f"A looping task needs an interval above 0 and up to {MAX_SECONDS:.0f} seconds (got 0.0); "
     "set it to the seconds between runs, e.g. 60."),
    ("interval-negative", {"interval": "-1"}, "interval",
     f"interval must be 0 to {MAX_SECONDS:.0f} seconds (got -1.0)."),
    ("run_in-negative", {"run_in": "-5"}, "run_in",
     f"run_in must be 0 to {MAX_SECONDS:.0f} seconds (got -5.0)."),
    ("run_in-too-far", {"run_in": "1e12"}, "run_in", f"run_in must be 0 to {MAX_SECONDS:.0f} seconds"),
    ("kill_time-0", {"kill_time": "0"}, "kill_time",
     f"kill_time must be above 0 and up to {MAX_SECONDS:.0f} seconds (got 0.0); "
     "leave it empty for no time limit."),
    ("kill_time-negative", {"kill_time": "-3"}, "kill_time", "leave it empty for no time limit."),
    ("interval-not-a-number", {"interval": "soon"}, "interval", "Enter a number."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "field", "message"), [pytest.param(*c[1:], id=c[0]) for c in INVALID_ADDS]
)
def test_invalid_add_shows_the_error_on_its_field(admin_client, overrides, field, message):
    response = admin_client.post(TASK_ADD, add_data(**overrides))

    assert response.status_code == 200
    assert not Task.objects.exists()
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors.as_data()
    assert any(message in text for text in errors[field]), errors[field]
    # Shown on the page beside the field (Django links the error list to its field by id).
    html = response.content.decode()
    assert f'id="id_{field}_error"' in html
    assert escape(message) in html


def test_invalid_json_reports_only_that_it_is_not_json(admin_client):
    """A syntax error in args_in must not also be reported as the arguments "missing" (they were given)."""
    response = admin_client.post(TASK_ADD, add_data(args_in='{"a": 1'))

    assert response.context["adminform"].form.errors["args_in"] == ["Enter a valid JSON."]


def test_unregistered_func_reports_one_error(admin_client):
    response = admin_client.post(TASK_ADD, add_data(func="os.system"))

    errors = response.context["adminform"].form.errors["func"]
    assert len(errors) == 1, errors


def test_several_errors_each_on_its_own_field(admin_client):
    response = admin_client.post(
        TASK_ADD, add_data(args_in='{"z": 1}', loop="on", interval="0", run_in="-1", kill_time="0")
    )

    errors = response.context["adminform"].form.errors
    assert set(errors) == {"args_in", "interval", "run_in", "kill_time"}
    assert not Task.objects.exists()


# --- the change form -----------------------------------------------------------------------------


def test_change_form_has_no_run_in_and_shows_recent_runs(admin_client):
    task = make_task(name="with history")
    old = make_run(task, RunStatus.FAILED, ago=3600, error="Traceback ...")
    new = make_run(task, RunStatus.FINISHED, ago=60, duration=2.25)
    other = make_run(make_task(name="someone else"), ago=30)

    response = admin_client.get(change_url(task))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="run_in"' not in html
    assert 'name="next_run_0"' in html  # the next run can be moved on an existing task
    assert "recent runs" in html.lower()
    links = re.findall(r'<a href="/admin/conductor/taskrun/(\d+)/change/">', html)
    assert links == [str(new.pk), str(old.pk)]  # newest first, only this task's runs
    assert str(other.pk) not in links
    assert "2.250 s" in html
    assert "Failed" in html


def test_change_form_shows_at_most_twenty_recent_runs(admin_client):
    task = make_task()
    runs = [make_run(task, ago=1000 - i) for i in range(25)]

    html = admin_client.get(change_url(task)).content.decode()

    links = re.findall(r'<a href="/admin/conductor/taskrun/(\d+)/change/">', html)
    assert links == [str(r.pk) for r in reversed(runs[-20:])]


def test_change_form_without_runs_says_so(admin_client):
    assert "No runs yet." in admin_client.get(change_url(make_task())).content.decode()


def test_change_form_saves_a_valid_edit(admin_client):
    task = make_task(name="before")
    data = add_data(name="after", args_in='{"a": 7}', loop="on", interval="30")
    data.pop("run_in")
    next_run = timezone.now() + timedelta(days=1)
    data.update({"next_run_0": next_run.strftime("%Y-%m-%d"), "next_run_1": next_run.strftime("%H:%M:%S"),
                 "task_id": task.task_id})  # fmt: skip

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    task.refresh_from_db()
    assert (task.name, task.args_in, task.loop, task.interval) == ("after", {"a": 7}, True, 30)
    assert abs((task.next_run - next_run).total_seconds()) < 1


def test_change_form_refuses_an_invalid_edit_on_its_field(admin_client):
    task = make_task(name="before")
    data = add_data(args_in='{"a": 2, "nope": 1}', task_id=task.task_id)
    data.pop("run_in")

    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    assert (
        "got an unexpected keyword argument 'nope'" in response.context["adminform"].form.errors["args_in"][0]
    )
    task.refresh_from_db()
    assert task.args_in == {"a": 1}


def test_change_form_of_a_task_whose_function_is_gone_says_so_on_func(admin_client):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(func="tests.functions.removed_since")

    page = admin_client.get(change_url(task))
    assert page.status_code == 200
    assert '<option value="tests.functions.removed_since" selected>' in page.content.decode()

    data = add_data(func="tests.functions.removed_since", task_id=task.task_id)
    data.pop("run_in")
    response = admin_client.post(change_url(task), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["func"]
    assert "'tests.functions.removed_since' is not a registered task function" in errors["func"][0]
    assert "(from app import register)" in errors["func"][0]


# --- task actions ----------------------------------------------------------------------------------


def test_the_action_menu_lists_every_action(admin_client):
    make_task()

    html = admin_client.get(TASKS).content.decode()

    for name, label in [("run_now", "Run now"), ("stop_loop", "Stop looping"), ("pause", "Pause"),
                        ("resume", "Resume"), ("cancel_running", "Cancel the running run"),
                        ("duplicate", "Duplicate")]:  # fmt: skip
        assert f'<option value="{name}">{label}</option>' in html, name


def test_run_now_makes_tasks_due_and_tells_dashboards_and_runners(admin_client, listener):
    dashboard, runners = listener.join(FEED_GROUP), listener.join(RUNNERS_GROUP)
    later = make_task(name="later", run_in=3600)
    paused = make_task(name="held", paused=True, run_in=3600)
    done = make_task(name="done")
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.FINISHED)
    before = timezone.now()

    response = act(admin_client, "run_now", later, paused, done)

    assert response.redirect_chain == [(TASKS, 302)]
    assert only_message(response) == ("3 tasks queued to run now", "success")
    for task in (later, paused, done):
        task.refresh_from_db()
        assert task.status == TaskStatus.WAITING
        assert task.paused is False
        assert before <= task.next_run <= timezone.now()
    assert list(lifecycle.due().order_by("pk")) == [later, paused, done]
    changed = changed_tasks(listener.received(dashboard))
    assert set(changed) == {later.pk, paused.pk, done.pk}
    assert changed[paused.pk]["paused"] is False
    assert changed[done.pk]["status"] == "waiting"
    assert wakes(listener.received(runners)) == 3


def test_run_now_with_a_running_task_reports_both(admin_client):
    first, second = make_task(name="first"), make_task(name="second")
    busy = make_task(name="clean up")
    make_running(busy, make_runner())

    response = act(admin_client, "run_now", first, busy, second)

    assert only_message(response) == (
        "2 tasks queued to run now; 1 not: clean up is running now; it will not be started twice",
        "warning",
    )
    busy.refresh_from_db()
    assert busy.status == TaskStatus.RUNNING  # never started twice


def test_run_now_only_on_running_tasks_is_an_error(admin_client):
    busy = make_task(name="clean up")
    make_running(busy, make_runner())

    assert only_message(act(admin_client, "run_now", busy)) == (
        "0 tasks queued to run now; 1 not: clean up is running now; it will not be started twice",
        "error",
    )


def test_run_now_of_one_task_uses_the_singular(admin_client):
    assert only_message(act(admin_client, "run_now", make_task())) == ("1 task queued to run now", "success")


def test_stop_looping(admin_client, listener):
    dashboard = listener.join(FEED_GROUP)
    waiting_loop = make_task(name="poller", loop=True, interval=10)
    running_loop = make_task(name="syncer", loop=True, interval=10)
    make_running(running_loop, make_runner())
    one_off = make_task(name="one off")

    response = act(admin_client, "stop_loop", waiting_loop, running_loop, one_off)

    assert only_message(response) == ("2 tasks will not run again; 1 not: one off is not looping", "warning")
    waiting_loop.refresh_from_db()
    running_loop.refresh_from_db()
    one_off.refresh_from_db()
    assert (waiting_loop.loop, waiting_loop.status) == (False, TaskStatus.STOPPED)
    assert (running_loop.loop, running_loop.status) == (False, TaskStatus.RUNNING)  # its run goes on
    assert (one_off.loop, one_off.status) == (False, TaskStatus.WAITING)
    changed = changed_tasks(listener.received(dashboard))
    assert set(changed) == {waiting_loop.pk, running_loop.pk}
    assert changed[waiting_loop.pk]["status"] == "stopped"


def test_pause_and_resume(admin_client, listener):
    dashboard, runners = listener.join(FEED_GROUP), listener.join(RUNNERS_GROUP)
    active, held = make_task(name="active"), make_task(name="held", paused=True)

    response = act(admin_client, "pause", active, held)

    assert only_message(response) == ("1 task paused; 1 not: held is already paused", "warning")
    active.refresh_from_db()
    assert active.paused is True
    changed = changed_tasks(listener.received(dashboard))
    assert set(changed) == {active.pk}
    assert changed[active.pk]["paused"] is True
    assert wakes(listener.received(runners)) == 0  # pausing wakes nobody

    response = act(admin_client, "resume", active, held)

    assert only_message(response) == ("2 tasks resumed", "success")
    assert not Task.objects.filter(paused=True).exists()
    assert set(changed_tasks(listener.received(dashboard))) == {active.pk, held.pk}
    assert wakes(listener.received(runners)) == 2

    response = act(admin_client, "resume", active)

    assert only_message(response) == ("0 tasks resumed; 1 not: active is already not paused", "error")


def test_cancel_running_asks_the_runner_that_runs_it(admin_client, listener):
    runner = make_runner("worker-cancel")
    to_runner = listener.join(runner_group(runner.worker_id))
    busy = make_task(name="long job")
    run = make_running(busy, runner)
    idle = make_task(name="idle job")

    response = act(admin_client, "cancel_running", busy, idle)

    assert only_message(response) == ("1 task asked to cancel; 1 not: idle job was not running", "warning")
    assert listener.received(to_runner) == [
        {
            "type": "runner.command",
            "command": "cancel",
            "run": run.pk,
            "by": "admin",
            "reply_to": None,
            "request": None,
        }
    ]
    run.refresh_from_db()
    assert run.finished_at is None  # the runner records the cancel, not the admin


def test_cancel_of_a_run_started_without_a_runner_is_refused(admin_client):
    """Task.run() records runs with no runner: nobody could act on a cancel, so it is refused."""
    task = make_task(name="inline")
    TaskRun.objects.create(task=task, runner=None)

    assert only_message(act(admin_client, "cancel_running", task)) == (
        "0 tasks asked to cancel; 1 not: inline was not running",
        "error",
    )


def test_duplicate_creates_waiting_copies(admin_client, listener):
    dashboard, runners = listener.join(FEED_GROUP), listener.join(RUNNERS_GROUP)
    original = make_task(name="report", args_in={"a": 4, "b": 5}, loop=True, interval=30, kill_time=9,
                         db_use=True, paused=True, run_in=3600)  # fmt: skip
    Task.objects.filter(pk=original.pk).update(status=TaskStatus.FAILED, last_status=RunStatus.FAILED)
    before = timezone.now()

    response = act(admin_client, "duplicate", original)

    assert only_message(response) == ("1 task duplicated", "success")
    copy = Task.objects.exclude(pk=original.pk).get()
    assert copy.name == "report (copy)"
    assert (copy.func, copy.args_in, copy.loop, copy.interval, copy.kill_time, copy.db_use) == (
        ADD,
        {"a": 4, "b": 5},
        True,
        30,
        9,
        True,
    )
    assert copy.status == TaskStatus.WAITING
    assert copy.paused is False
    assert copy.last_status == ""
    assert copy.task_id != original.task_id
    assert before <= copy.next_run <= timezone.now()  # waiting to run at once
    assert set(changed_tasks(listener.received(dashboard))) == {copy.pk}
    assert wakes(listener.received(runners)) == 1
    original.refresh_from_db()
    assert original.name == "report"


#: A value other than the default for every field of a task's definition but its name.
EVERY_FIELD = {
    "func": ADD, "conn": "specific.inbox!1", "args_in": {"a": 1, "b": 2}, "loop": True, "interval": 45,
    "run_in": 0, "kill_time": 12, "db_use": True, "use_pdb": True, "cron": "*/5 * * * *",
    "timezone": "Europe/Berlin", "start_at": datetime(2030, 6, 1, tzinfo=UTC),
    "expires_at": datetime(2099, 1, 1, tzinfo=UTC),
    "max_runs": 9, "catch_up": "skip", "max_attempts": 4, "retry_delay": 3.5, "retry_delay_max": 40,
    "isolation": "process", "priority": 6, "queue": "reports",
}  # fmt: skip


def test_duplicate_copies_every_field_of_the_definition(admin_client):
    """The copy keeps the whole definition (Task.definition_fields()): a field added to the model later
    must get a value here, so it cannot be forgotten by duplicate."""
    assert set(EVERY_FIELD) == set(Task.definition_fields()) - {"name"}
    original = make_task(name="nightly", **EVERY_FIELD)

    act(admin_client, "duplicate", original)

    copy = Task.objects.exclude(pk=original.pk).get()
    assert {name: getattr(copy, name) for name in EVERY_FIELD} == EVERY_FIELD
    assert copy.name == "nightly (copy)"


def test_duplicate_of_several_tasks(admin_client):
    tasks = [make_task(name=f"t{i}") for i in range(3)]

    assert only_message(act(admin_client, "duplicate", *tasks)) == ("3 tasks duplicated", "success")
    assert sorted(Task.objects.filter(name__endswith="(copy)").values_list("name", flat=True)) == [
        "t0 (copy)", "t1 (copy)", "t2 (copy)"
    ]  # fmt: skip


def test_duplicate_of_a_task_whose_function_is_gone_is_reported_not_a_crash(admin_client):
    fine = make_task(name="fine")
    gone = make_task(name="orphan")
    Task.objects.filter(pk=gone.pk).update(func="tests.functions.removed_since")

    response = act(admin_client, "duplicate", fine, gone)

    assert response.redirect_chain == [(TASKS, 302)]
    text, level = only_message(response)
    assert text.startswith("1 task duplicated; 1 not: ")
    assert "orphan" in text
    assert "is not a registered task function" in text
    assert level == "warning"


def test_an_action_with_nothing_selected_changes_nothing(admin_client):
    task = make_task(run_in=3600)

    response = admin_client.post(TASKS, {"action": "run_now", "index": 0})

    assert response.status_code == 302
    assert any("Items must be selected" in text for text in texts(response))
    task.refresh_from_db()
    assert task.next_run > timezone.now() + timedelta(minutes=50)


def test_an_action_reports_html_in_task_names_escaped(admin_client):
    held = make_task(name="<b>held</b>", paused=True)

    response = act(admin_client, "pause", held)
    page = response.content.decode()  # the changelist the action redirected to, showing the message

    assert only_message(response)[0] == "0 tasks paused; 1 not: <b>held</b> is already paused"
    assert "&lt;b&gt;held&lt;/b&gt; is already paused" in page
    assert "<b>held</b>" not in page


# --- runs ----------------------------------------------------------------------------------------


@pytest.fixture
def varied_runs():
    runner_a, runner_b = make_runner("worker-a"), make_runner("worker-b")
    task_x, task_y = make_task(name="task x"), make_task(name="task y")
    runs = {
        "old_ok": make_run(task_x, RunStatus.FINISHED, ago=3000, runner=runner_a),
        "failed": make_run(task_x, RunStatus.FAILED, ago=2000, runner=runner_b, error="ValueError: boom"),
        "timed_out": make_run(task_y, RunStatus.TIMED_OUT, ago=1000, runner=runner_a),
        "new_ok": make_run(task_y, RunStatus.FINISHED, ago=10, runner=runner_b),
    }
    return {"runner_a": runner_a, "runner_b": runner_b, "task_x": task_x, "task_y": task_y, **runs}


def test_run_list_is_newest_first_with_duration(admin_client, varied_runs):
    response = admin_client.get(RUNS)

    assert [r.pk for r in response.context["cl"].result_list] == [
        varied_runs[name].pk for name in ["new_ok", "timed_out", "failed", "old_ok"]
    ]
    html = response.content.decode()
    for column in ["id", "task", "status", "started_at", "duration_shown", "runner", "thread_name"]:
        assert f"column-{column}" in html, column
    assert "1.500 s" in html


RUN_FILTERS = [
    ("status-failed", lambda f: "status__exact=failed", {"failed"}),
    ("status-timed-out", lambda f: "status__exact=timed_out", {"timed_out"}),
    ("status-finished", lambda f: "status__exact=finished", {"old_ok", "new_ok"}),
    ("task", lambda f: f"task__id__exact={f['task_y'].pk}", {"timed_out", "new_ok"}),
    ("runner", lambda f: f"runner__id__exact={f['runner_b'].pk}", {"failed", "new_ok"}),
    ("task-and-runner", lambda f: f"task__id__exact={f['task_x'].pk}&runner__id__exact={f['runner_a'].pk}",
     {"old_ok"}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), [pytest.param(*c[1:], id=c[0]) for c in RUN_FILTERS])
def test_each_run_filter_narrows_the_list(admin_client, varied_runs, query, expected):
    response = admin_client.get(f"{RUNS}?{query(varied_runs)}")

    assert shown_pks(response) == {varied_runs[name].pk for name in expected}


def test_run_search_by_task_name(admin_client, varied_runs):
    assert shown_pks(admin_client.get(RUNS, {"q": "task y"})) == {
        varied_runs["timed_out"].pk,
        varied_runs["new_ok"].pk,
    }


def test_run_page_shows_output_traceback_and_log_escaped_in_pre(admin_client):
    run = make_run(
        make_task(name="noisy"),
        RunStatus.FAILED,
        output={"note": "<i>x</i>"},
        error='Traceback (most recent call last):\n  File "t.py", line 1\nValueError: a < b',
        log="printed: <script>alert(1)</script>\nINFO logged: done",
        thread_name="conductor-task-3",
    )

    response = admin_client.get(change_url(run))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "<pre>printed: &lt;script&gt;alert(1)&lt;/script&gt;\nINFO logged: done</pre>" in html
    assert (
        "<pre>Traceback (most recent call last):\n  File &quot;t.py&quot;, line 1\nValueError: a &lt; b</pre>"
        in html
    )
    assert "<pre>{\n  &quot;note&quot;: &quot;&lt;i&gt;x&lt;/i&gt;&quot;\n}</pre>" in html
    assert "<i>x</i>" not in html
    for label in ["Output", "Traceback", "Printed and logged", "Duration"]:
        assert f"<label>{label}:</label>" in html, label
    assert "1.500 s" in html
    assert "conductor-task-3" in html


def test_run_page_links_to_its_task_page_with_the_run_open(admin_client):
    task = make_task(name="linked")
    run = make_run(task, RunStatus.FINISHED)

    html = admin_client.get(change_url(run)).content.decode()

    assert f'href="/dashboard/tasks/{task.task_id}/?run={run.pk}" data-testid="live-page-link"' in html


def test_run_page_is_read_only(admin_client):
    run = make_run(make_task(), RunStatus.FAILED)

    html = admin_client.get(change_url(run)).content.decode()

    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html
    for field in ["status", "error", "log", "task", "runner"]:
        assert f'name="{field}"' not in html, field
    assert "Close" in html


def test_run_add_page_is_refused(admin_client):
    assert admin_client.get(reverse("admin:conductor_taskrun_add")).status_code == 403
    assert admin_client.post(reverse("admin:conductor_taskrun_add"), {"task": 1}).status_code == 403
    assert 'href="/admin/conductor/taskrun/add/"' not in admin_client.get(RUNS).content.decode()
    assert (
        'href="/admin/conductor/taskrun/add/"'
        not in admin_client.get(reverse("admin:index")).content.decode()
    )


def test_run_change_post_is_refused(admin_client):
    run = make_run(make_task(), RunStatus.FAILED, error="original")

    response = admin_client.post(change_url(run), {"status": "finished", "error": "rewritten"})

    assert response.status_code == 403
    run.refresh_from_db()
    assert (run.status, run.error) == (RunStatus.FAILED, "original")


def test_runs_and_runners_cannot_be_deleted_from_the_admin(admin_client):
    runner = make_runner()
    task = make_task(name="busy")
    run = make_running(task, runner)

    run_delete = reverse("admin:conductor_taskrun_delete", args=[run.pk])
    runner_delete = reverse("admin:conductor_runnerprocess_delete", args=[runner.pk])
    assert admin_client.get(run_delete).status_code == 403
    assert admin_client.post(run_delete, {"post": "yes"}).status_code == 403
    assert admin_client.post(runner_delete, {"post": "yes"}).status_code == 403
    assert "delete_selected" not in admin_client.get(RUNS).content.decode()
    assert TaskRun.objects.filter(pk=run.pk).exists()
    assert RunnerProcess.objects.filter(pk=runner.pk).exists()


# --- runners -------------------------------------------------------------------------------------


def test_runner_list_shows_host_pid_heartbeat_age_and_threads(admin_client):
    now = timezone.now()
    fresh = make_runner("fresh", host="alpha", pid=1111, threads=8, busy=3, heartbeat_at=now)
    stale = make_runner("stale", host="beta", pid=2222, threads=4, busy=4,
                        heartbeat_at=now - timedelta(seconds=60))  # fmt: skip
    stopped = make_runner("stopped", host="gamma", pid=3333, threads=2, busy=0,
                          state=RunnerState.STOPPED, heartbeat_at=now - timedelta(hours=2))  # fmt: skip

    response = admin_client.get(RUNNERS)

    assert response.status_code == 200
    html = response.content.decode()
    columns = ["worker_id", "host", "pid", "state_shown", "started_at", "heartbeat_shown", "threads_shown"]
    for column in columns:
        assert f"column-{column}" in html, column
    rows = {
        worker: next(row for row in re.findall(r"<tr>.*?</tr>", html, re.S) if f">{worker}</a>" in row)
        for worker in ["fresh", "stale", "stopped"]
    }
    assert all(text in rows["fresh"] for text in ["alpha", "1111", "3/8"]), rows["fresh"]
    assert "stale)" not in rows["fresh"]
    assert all(text in rows["stale"] for text in ["beta", "2222", "4/4"]), rows["stale"]
    assert re.search(r"<strong[^>]*>6[01] s \(stale\)</strong>", rows["stale"]), rows["stale"]
    assert "(stale)" not in rows["stopped"]  # a stopped runner is not expected to beat
    assert re.search(r">7[12]\d\d s<", rows["stopped"]), rows["stopped"]
    assert [r.pk for r in response.context["cl"].result_list] == [fresh.pk, stale.pk, stopped.pk]


def test_a_degraded_runner_says_what_it_cannot_reach(admin_client):
    make_runner("cut-off", degraded="channel layer unreachable: ConnectionError: refused")
    make_runner("healthy")

    html = admin_client.get(RUNNERS).content.decode()

    rows = re.findall(r"<tr>.*?</tr>", html, re.S)
    cut_off = next(row for row in rows if ">cut-off</a>" in row)
    healthy = next(row for row in rows if ">healthy</a>" in row)
    assert "(degraded: channel layer unreachable: ConnectionError: refused)" in cut_off
    assert "degraded" not in healthy


def test_runner_within_the_heartbeat_timeout_is_not_stale(admin_client, settings):
    make_runner("recent", heartbeat_at=timezone.now() - timedelta(seconds=10))

    assert "(stale)" not in admin_client.get(RUNNERS).content.decode()

    settings.CONDUCTOR = {**settings.CONDUCTOR, "HEARTBEAT_TIMEOUT": 5}
    assert "(stale)" in admin_client.get(RUNNERS).content.decode()


def test_runner_pages_are_read_only(admin_client):
    runner = make_runner(busy=2)

    page = admin_client.get(change_url(runner))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(change_url(runner), {"busy": 0, "state": "dead"}).status_code == 403
    assert admin_client.get(reverse("admin:conductor_runnerprocess_add")).status_code == 403
    runner.refresh_from_db()
    assert (runner.busy, runner.state) == (2, RunnerState.RUNNING)


def test_task_and_runner_change_pages_link_to_their_dashboard_pages(admin_client):
    task, runner = make_task(), make_runner()
    task_page = admin_client.get(change_url(task)).content.decode()
    assert f'href="{reverse("conductor:task", args=[task.task_id])}"' in task_page
    runner_page = admin_client.get(change_url(runner)).content.decode()
    assert f'href="{reverse("conductor:runner", args=[runner.worker_id])}"' in runner_page


# --- index summary and links -----------------------------------------------------------------------


def test_admin_index_shows_the_live_summary(admin_client):
    now = timezone.now()
    up = make_runner("up")
    make_runner("stale", heartbeat_at=now - timedelta(seconds=60))
    make_runner("gone", state=RunnerState.DEAD)
    make_runner("stopping", state=RunnerState.STOPPING)
    for name in ["a", "b", "c"]:
        make_running(make_task(name=name), up)
    task = make_task(name="flaky")
    make_run(task, RunStatus.FAILED, ago=600)
    make_run(task, RunStatus.TIMED_OUT, ago=1200)
    make_run(task, RunStatus.FAILED, ago=2 * 3600)  # more than an hour ago
    make_run(task, RunStatus.FINISHED, ago=60)
    make_run(task, RunStatus.INTERRUPTED, ago=60)

    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert response.context["conductor_summary"] == {
        "runners_up": 2,  # running and stopping with a fresh heartbeat
        "tasks_running": 3,
        "failures_last_hour": 2,
    }
    html = response.content.decode()
    summary = html.split('id="conductor-summary"')[1].split("</div>")[0]
    assert ">2 runners up</a>" in summary
    assert ">3 tasks running</a>" in summary
    assert ">2 failures in the last hour</a>" in summary
    assert 'href="/dashboard/"' in summary
    assert f'href="{TASKS}?status__exact=running"' in summary


def test_admin_index_summary_uses_the_singular(admin_client):
    up = make_runner("only")
    make_running(make_task(), up)
    make_run(make_task(), RunStatus.FAILED, ago=10)

    summary = admin_client.get(reverse("admin:index")).content.decode().split('id="conductor-summary"')[1]

    assert ">1 runner up</a>" in summary
    assert ">1 task running</a>" in summary
    assert ">1 failure in the last hour</a>" in summary


def test_admin_index_summary_when_nothing_is_up(admin_client):
    response = admin_client.get(reverse("admin:index"))

    assert response.context["conductor_summary"] == {
        "runners_up": 0, "tasks_running": 0, "failures_last_hour": 0
    }  # fmt: skip
    assert ">0 runners up</a>" in response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        reverse("admin:index"),
        TASKS,
        TASK_ADD,
        RUNS,
        RUNNERS,
        reverse("admin:conductor_lease_changelist"),
        pytest.param(
            reverse("admin:password_change"),
            id="password_change",
        ),
    ],
)
def test_every_admin_page_links_to_the_dashboard(admin_client, url):
    response = admin_client.get(url)

    assert response.status_code == 200
    userlinks = response.content.decode().split('id="user-tools"')[1].split("</div>")[0]
    assert '<a href="/dashboard/">Dashboard</a>' in userlinks


def test_object_pages_link_to_the_dashboard(admin_client):
    task = make_task()
    run = make_run(task)
    runner = make_runner()
    for url in [change_url(task), change_url(run), change_url(runner)]:
        assert '<a href="/dashboard/">Dashboard</a>' in admin_client.get(url).content.decode(), url


def test_the_dashboard_links_back_to_the_admin(admin_client):
    response = admin_client.get(reverse("conductor:dashboard"))

    assert response.status_code == 200
    assert 'href="/admin/"' in response.content.decode()


def test_anonymous_is_sent_to_the_login(client):
    for url in [reverse("admin:index"), TASKS, RUNS, RUNNERS]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


# --- permissions -----------------------------------------------------------------------------------


def test_view_only_staff_sees_the_lists(viewer_client):
    task = make_task(name="visible")
    run = make_run(task)
    runner = make_runner()

    assert shown_pks(viewer_client.get(TASKS)) == {task.pk}
    assert shown_pks(viewer_client.get(RUNS)) == {run.pk}
    assert shown_pks(viewer_client.get(RUNNERS)) == {runner.pk}
    for url in [change_url(task), change_url(run), change_url(runner)]:
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        assert 'name="_save"' not in response.content.decode()
    index = viewer_client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert "conductor_summary" in index.context


def test_view_only_staff_has_no_actions(viewer_client):
    make_task()

    response = viewer_client.get(TASKS)

    html = response.content.decode()
    assert response.context["action_form"] is None or not response.context["cl"].actions
    for action in ["run_now", "stop_loop", "pause", "resume", "cancel_running", "duplicate"]:
        assert f'value="{action}"' not in html, action
    assert f'href="{TASK_ADD}"' not in html


@pytest.mark.parametrize("action", ["run_now", "stop_loop", "pause", "resume", "cancel_running", "duplicate"])
def test_view_only_staff_cannot_act(viewer_client, listener, action):
    dashboard, runners = listener.join(FEED_GROUP), listener.join(RUNNERS_GROUP)
    runner = make_runner()
    to_runner = listener.join(runner_group(runner.worker_id))
    looping = make_task(name="looper", loop=True, interval=10, run_in=3600)
    paused = make_task(name="held", paused=True, run_in=3600)
    running = make_task(name="busy")
    make_running(running, runner)
    before = {t.pk: (t.loop, t.paused, t.status, t.next_run) for t in Task.objects.all()}

    response = act(viewer_client, action, looping, paused, running)

    assert response.status_code in (200, 302, 403)
    after = {t.pk: (t.loop, t.paused, t.status, t.next_run) for t in Task.objects.all()}
    assert after == before
    assert Task.objects.count() == 3
    assert listener.received(dashboard) == []
    assert listener.received(runners) == []
    assert listener.received(to_runner) == []


def test_view_only_staff_cannot_add_or_change_tasks(viewer_client):
    task = make_task(name="original")

    assert viewer_client.get(TASK_ADD).status_code == 403
    assert viewer_client.post(TASK_ADD, add_data()).status_code == 403
    data = add_data(name="renamed", task_id=task.task_id)
    data.pop("run_in")
    assert viewer_client.post(change_url(task), data).status_code == 403
    delete = reverse("admin:conductor_task_delete", args=[task.pk])
    assert viewer_client.post(delete, {"post": "yes"}).status_code == 403
    task.refresh_from_db()
    assert task.name == "original"
    assert Task.objects.count() == 1


def test_staff_without_view_permission_is_refused(client, django_user_model):
    client.force_login(staff_user(django_user_model, "nobody"))
    make_task()

    assert client.get(TASKS).status_code == 403
    assert client.get(RUNS).status_code == 403
    assert client.get(RUNNERS).status_code == 403


def test_staff_with_change_permission_can_act(changer_client, listener):
    dashboard = listener.join(FEED_GROUP)
    task = make_task(name="mine", run_in=3600)

    html = changer_client.get(TASKS).content.decode()
    for action in ["run_now", "stop_loop", "pause", "resume", "cancel_running"]:
        assert f'<option value="{action}">' in html, action
    assert '<option value="duplicate">' not in html  # that one needs add_task

    assert only_message(act(changer_client, "pause", task)) == ("1 task paused", "success")
    assert only_message(act(changer_client, "run_now", task)) == ("1 task queued to run now", "success")
    task.refresh_from_db()
    assert task.paused is False
    assert task.next_run <= timezone.now()
    assert set(changed_tasks(listener.received(dashboard))) == {task.pk}


def test_duplicate_needs_the_add_permission(changer_client, django_user_model, client):
    task = make_task(name="mine")

    response = act(changer_client, "duplicate", task)

    assert Task.objects.count() == 1
    assert "1 task duplicated" not in texts(response)

    adder = staff_user(django_user_model, "adder", "view_task", "add_task")
    client.force_login(adder)
    html = client.get(TASKS).content.decode()
    assert '<option value="duplicate">' in html
    assert '<option value="run_now">' not in html
    assert only_message(act(client, "duplicate", task)) == ("1 task duplicated", "success")
    assert Task.objects.filter(name="mine (copy)").exists()


def test_change_permission_alone_does_not_add(changer_client):
    assert changer_client.get(TASK_ADD).status_code == 403
    assert changer_client.post(TASK_ADD, add_data()).status_code == 403
    assert not Task.objects.exists()


def test_change_permission_on_tasks_does_not_open_runs(changer_client):
    run = make_run(make_task())

    assert changer_client.get(RUNS).status_code == 403
    assert changer_client.get(change_url(run)).status_code == 403


def change_data(task: Task, **overrides) -> dict:
    """The change form as the browser posts it for ``task``, with ``overrides``."""
    data = add_data(name=task.name, args_in='{"a": 1}', task_id=task.task_id)
    data.pop("run_in")
    if task.next_run:
        data.update({"next_run_0": f"{task.next_run:%Y-%m-%d}", "next_run_1": f"{task.next_run:%H:%M:%S}"})
    data.update(overrides)
    return data


def test_change_form_clearing_task_id_fills_it_in_again(admin_client):
    """The field's help says "Filled in when empty."."""
    task = make_task()

    response = admin_client.post(change_url(task), change_data(task, task_id=""))

    assert response.status_code in (200, 302)
    task.refresh_from_db()
    assert task.task_id, "an existing task was saved with an empty task_id"


def test_change_form_clearing_next_run_of_a_waiting_task_is_refused_or_filled_in(admin_client):
    task = make_task()

    response = admin_client.post(change_url(task), change_data(task, next_run_0="", next_run_1=""))

    task.refresh_from_db()
    refused = response.status_code == 200 and "next_run" in response.context["adminform"].form.errors
    assert refused or lifecycle.due().filter(pk=task.pk).exists(), (task.status, task.next_run)


def test_run_list_offers_its_filters_and_shows_open_runs(admin_client):
    runner = make_runner()
    run = make_running(make_task(name="in progress"), runner)
    make_run(make_task(name="done"))

    response = admin_client.get(RUNS)

    titles = [spec.title for spec in response.context["cl"].filter_specs]
    assert titles == ["status", "queue", "function", "runner", "finished at"]
    assert response.context["cl"].date_hierarchy is None  # no index serves it (app/admin.py)
    assert shown_pks(admin_client.get(RUNS, {"status__exact": "running"})) == {run.pk}
    row = next(r for r in re.findall(r"<tr>.*?</tr>", response.content.decode(), re.S) if "in progress" in r)
    assert '<td class="field-duration_shown">-</td>' in row  # no duration until it ends


def test_run_list_filters_by_the_queue_and_function_each_run_ran_in(admin_client):
    mail = make_task(name="mail", queue="mail")
    sent = [make_run(mail, ago=30), make_run(mail, ago=20)]
    other = make_run(make_task(name="other", func=functions.stamp, args_in={}))
    Task.objects.filter(pk=mail.pk).update(queue="post", func="tests.functions.stamp")  # edited since
    later = make_run(Task.objects.get(pk=mail.pk), ago=10)

    by_queue = admin_client.get(RUNS, {"queue": "mail"})

    assert [run.pk for run in by_queue.context["cl"].result_list] == [sent[1].pk, sent[0].pk]  # newest first
    assert "mail" not in dict(_choices(by_queue, "queue"))  # offered: the queues tasks have now
    assert ("post", "post") in _choices(by_queue, "queue")
    assert shown_pks(admin_client.get(RUNS, {"queue": "post"})) == {later.pk}
    assert shown_pks(admin_client.get(RUNS, {"func": ADD})) == {sent[0].pk, sent[1].pk}
    assert shown_pks(admin_client.get(RUNS, {"func": "tests.functions.stamp"})) == {other.pk, later.pk}
    assert shown_pks(admin_client.get(RUNS, {"func": ADD, "status__exact": "failed"})) == set()


def _choices(response, title: str) -> list[tuple[str, str]]:
    spec = next(spec for spec in response.context["cl"].filter_specs if spec.title == title)
    return list(spec.lookup_choices)


def test_runner_list_filters_by_state(admin_client):
    live = make_runner("live")
    make_runner("dead", state=RunnerState.DEAD)

    assert shown_pks(admin_client.get(RUNNERS, {"state__exact": "running"})) == {live.pk}


def test_lease_pages_are_read_only(admin_client):
    from app.lease import DB_USE, Lease

    task = make_task(db_use=True)
    Lease.objects.acquire(DB_USE, task.pk, None)
    lease = Lease.objects.get(name=DB_USE)

    assert admin_client.get(reverse("admin:conductor_lease_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:conductor_lease_add")).status_code == 403
    url = reverse("admin:conductor_lease_change", args=[lease.pk])
    assert admin_client.post(url, {"task": "", "runner": ""}).status_code == 403
    lease.refresh_from_db()
    assert lease.task_id == task.pk


# --- conn and use_pdb: only with their own permissions -------------------------------------------------
# conn sends every run's output and traceback to a socket; use_pdb opens a debugger on the runner's
# terminal. Staff who may add or change tasks must not set them without can_set_conn / can_use_pdb.

ATTACKER_SOCKET = "specific.inmemory!attacker"
PERMISSIONS = {"conn": "conductor.can_set_conn", "use_pdb": "conductor.can_use_pdb"}


def protected_inputs(html: str) -> set[str]:
    return {name for name in ("conn", "use_pdb") if f'name="{name}"' in html}


def test_add_form_hides_conn_and_use_pdb_from_staff_without_their_permissions(client, django_user_model):
    client.force_login(staff_user(django_user_model, "adder", "view_task", "add_task"))

    assert protected_inputs(client.get(TASK_ADD).content.decode()) == set()


def test_a_forged_add_of_conn_and_use_pdb_sets_neither(client, django_user_model):
    client.force_login(staff_user(django_user_model, "adder", "view_task", "add_task"))

    response = client.post(TASK_ADD, add_data(conn=ATTACKER_SOCKET, use_pdb="on"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    task = Task.objects.get()
    assert (task.name, task.conn, task.use_pdb) == ("nightly", None, False)


def test_a_forged_change_of_conn_and_use_pdb_changes_neither(client, django_user_model):
    client.force_login(staff_user(django_user_model, "changer", "view_task", "change_task"))
    set_by_someone_allowed = make_task(name="watched", conn="specific.inmemory!owner", use_pdb=True)
    plain = make_task(name="plain")

    html = client.get(change_url(set_by_someone_allowed)).content.decode()
    assert protected_inputs(html) == set()
    client.post(change_url(set_by_someone_allowed), change_data(set_by_someone_allowed, conn=ATTACKER_SOCKET))
    response = client.post(change_url(plain), change_data(plain, conn=ATTACKER_SOCKET, use_pdb="on"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    set_by_someone_allowed.refresh_from_db()
    assert (set_by_someone_allowed.conn, set_by_someone_allowed.use_pdb) == ("specific.inmemory!owner", True)
    plain.refresh_from_db()
    assert (plain.conn, plain.use_pdb) == (None, False)


@pytest.mark.parametrize(("codename", "field"), [("can_set_conn", "conn"), ("can_use_pdb", "use_pdb")])
def test_each_permission_shows_and_sets_its_own_field_only(client, django_user_model, codename, field):
    client.force_login(staff_user(django_user_model, "trusted", "view_task", "add_task", codename))
    assert protected_inputs(client.get(TASK_ADD).content.decode()) == {field}

    response = client.post(TASK_ADD, add_data(conn="specific.inmemory!mine", use_pdb="on"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    task = Task.objects.get()
    assert (task.conn, task.use_pdb) == (
        ("specific.inmemory!mine", False) if field == "conn" else (None, True)
    )


def test_superusers_see_and_set_both(admin_client):
    assert protected_inputs(admin_client.get(TASK_ADD).content.decode()) == {"conn", "use_pdb"}


def test_duplicate_without_can_use_pdb_drops_use_pdb(client, django_user_model):
    original = make_task(name="debugged", use_pdb=True)
    client.force_login(staff_user(django_user_model, "adder", "view_task", "add_task"))

    assert only_message(act(client, "duplicate", original)) == ("1 task duplicated", "success")

    assert Task.objects.get(name="debugged (copy)").use_pdb is False


def test_duplicate_with_can_use_pdb_keeps_it(client, django_user_model):
    original = make_task(name="debugged", use_pdb=True, conn="specific.inmemory!owner")
    client.force_login(staff_user(django_user_model, "debugger", "view_task", "add_task", "can_use_pdb"))

    act(client, "duplicate", original)

    copy = Task.objects.get(name="debugged (copy)")
    assert (copy.use_pdb, copy.conn) == (True, None)  # results go to nobody's socket but the creator's


@pytest.mark.parametrize("field", ["conn", "use_pdb"])
def test_actions_create_refuses_a_protected_field_without_its_permission(django_user_model, field):
    adder = staff_user(django_user_model, "adder", "view_task", "add_task")
    value = ATTACKER_SOCKET if field == "conn" else True

    for who in (adder, None):
        with pytest.raises(ValidationError) as refused:
            actions.create({"name": "sneaky", "func": ADD, "args_in": {"a": 1}, field: value}, by=who)
        assert refused.value.message_dict == {
            field: [f"You need the {PERMISSIONS[field]} permission to set {field}."]
        }
    assert not Task.objects.exists()


def test_actions_create_sets_protected_fields_for_a_user_with_the_permissions(admin_user):
    task = actions.create({"name": "debugged", "func": ADD, "args_in": {"a": 1}, "use_pdb": True,
                           "conn": "specific.inmemory!mine"}, by=admin_user)  # fmt: skip

    assert (task.use_pdb, task.conn) == (True, "specific.inmemory!mine")


def test_actions_create_gives_results_to_the_requesting_socket_without_a_permission(django_user_model):
    """The dashboard's create: conn is the creating socket's own channel, which needs no permission."""
    task = actions.create({"name": "mine", "func": ADD, "args_in": {"a": 1}}, conn="specific.inmemory!own")

    assert task.conn == "specific.inmemory!own"


def test_every_field_of_the_task_form_is_in_exactly_one_fieldset():
    from app.admin import TASK_FIELDSETS, TaskForm

    grouped = [field for _, options in TASK_FIELDSETS for field in options["fields"]]
    assert sorted(grouped) == sorted(TaskForm.Meta.fields)
    assert set(Task.definition_fields()) <= set(grouped)


def test_the_add_form_is_grouped_and_shows_no_arguments_as_an_empty_object(admin_client):
    page = admin_client.get(TASK_ADD).content.decode()
    for title in ("What runs", "Schedule", "Limits", "Retries", "Routing", "Advanced"):
        assert f">{title}<" in page, title
    assert re.search(r'<textarea name="args_in"[^>]*>\s*\{\}</textarea>', page)
    assert ">null<" not in page
