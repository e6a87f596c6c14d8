"""The dashboard's WebSocket through the real ASGI stack (origin check, session auth, URL router).

Every test talks to ``server.asgi.application`` with a real user and a real database session, over the
in-memory channel layer (a fresh one per test). Protocol: docs/protocol.md.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from app import protocol
from app.bridge import DASHBOARD_GROUP
from app.consumers import CLOSE_FORBIDDEN, CLOSE_SIGNED_OUT, MAX_MESSAGE
from app.runnerprocess import RunnerProcess
from app.snapshot import run_state, runner_state, task_state
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from server.asgi import application
from tests import functions
from tests.conftest import DASHBOARD_PATH, GOOD_HOST, GOOD_ORIGIN, make_user, session_headers

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer"),
]

TIMEOUT = 5
db = database_sync_to_async
CHANGE_COMMANDS = ["run_now", "pause", "resume", "stop_loop"]


# Helpers --------------------------------------------------------------------------------------------


def editor():
    """Staff who may view, change and add tasks (not a superuser: the permissions are real)."""
    return make_user("editor", perms=("view_task", "change_task", "add_task"))


def viewer():
    return make_user("viewer", perms=("view_task",))


def the_editor():
    """The editor, made on first use: for tests that open many sockets as one user."""
    from django.contrib.auth.models import User

    return User.objects.filter(username="editor").first() or editor()


def make_task(func=functions.add, **fields: Any) -> Task:
    fields.setdefault("args_in", {"a": 1})
    task = Task(func=func, **fields)
    task.save()
    return task


def get_task(pk: int) -> Task:
    return Task.objects.get(pk=pk)


async def open_socket(
    user: Any = None, origin: bytes | None = GOOD_ORIGIN, host: bytes = GOOD_HOST, scheme: str = "ws"
) -> WebsocketCommunicator:
    headers = await db(session_headers)(user, origin, host)
    communicator = WebsocketCommunicator(application, DASHBOARD_PATH, headers=headers)
    communicator.scope["scheme"] = scheme  # read when the application starts, at connect()
    return communicator


@asynccontextmanager
async def dashboard(user: Any) -> AsyncIterator[WebsocketCommunicator]:
    """A connected dashboard whose first message (the snapshot) is kept as ``.snapshot``."""
    communicator = await open_socket(user)
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        communicator.snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
        assert communicator.snapshot["type"] == "snapshot"
        yield communicator
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


async def next_of(communicator: WebsocketCommunicator, *types: str) -> dict:
    """The next message of one of ``types``. Others are kept for a later call: live frames go to pages
    as they come (app/fanout.py), so a command's news may arrive before its reply."""
    held = communicator.__dict__.setdefault("held", [])
    for index, message in enumerate(held):
        if message["type"] in types:
            return held.pop(index)
    while True:
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        if message["type"] in types:
            return message
        held.append(message)


async def ask(communicator: WebsocketCommunicator, **content: Any) -> dict:
    """Send a command; its reply or error."""
    await communicator.send_json_to(content)
    return await next_of(communicator, "reply", "error")


async def still_open(communicator: WebsocketCommunicator) -> None:
    reply = await ask(communicator, type="ping", id="alive?")
    assert reply == {"type": "reply", "id": "alive?", "ok": True, "pong": True}


async def drain(communicator: WebsocketCommunicator) -> list[dict]:
    """Every message that arrives until the socket has been quiet for a moment."""
    messages = []
    while not await communicator.receive_nothing(timeout=0.2):
        messages.append(await communicator.receive_json_from())
    return messages


async def changed_event(communicator: WebsocketCommunicator, task_pk: int) -> dict:
    while True:
        message = await next_of(communicator, "events")
        for event in message["events"]:
            if event["type"] == "task.changed" and event["task"] == task_pk:
                return event


# Who may connect ----------------------------------------------------------------------------------


def populate() -> dict[str, Any]:
    """A runner with one thread at its last heartbeat, a dead one, tasks and runs."""
    now = timezone.now()
    live = RunnerProcess.objects.create(
        worker_id="host-1", host="host", pid=101, threads=4, busy=1, heartbeat_at=now - timedelta(seconds=3)
    )
    dead = RunnerProcess.objects.create(
        worker_id="host-2", host="host", pid=102, threads=2, state=RunnerState.DEAD,
        heartbeat_at=now - timedelta(minutes=10),
        threads_state=[{"run": 999, "name": "ghost#999"}],  # a dead runner's threads are not shown
    )  # fmt: skip
    make_task(name="later", run_in=3600, loop=True, interval=60)
    done = make_task(name="done", args_in={"a": 2, "b": 3})
    running = make_task(name="busy", func=functions.busy, args_in={"seconds": 1})
    Task.objects.filter(pk=running.pk).update(status=TaskStatus.RUNNING, runner=live, attempts=1)
    Task.objects.filter(pk=done.pk).update(
        status=TaskStatus.FINISHED, output=5, last_status=RunStatus.FINISHED, last_run=now
    )
    open_run = TaskRun.objects.create(task=running, runner=live, thread_name="busy#1", progress=0.5)
    finished_run = TaskRun.objects.create(
        task=done, status=RunStatus.FINISHED, started_at=now - timedelta(seconds=1),
        finished_at=now, duration=1.0, output=5, error="Traceback\nValueError: old",
    )  # fmt: skip
    thread = {
        "run": open_run.pk, "task": running.pk, "task_name": "busy", "name": f"busy#{open_run.pk}",
        "ident": 12345, "daemon": True, "alive": True, "state": "running",
        "started_at": now.timestamp() - 2, "loop_count": 1, "progress": 0.5, "progress_message": "half",
    }  # fmt: skip
    RunnerProcess.objects.filter(pk=live.pk).update(threads_state=[thread])
    return {
        "live": RunnerProcess.objects.get(pk=live.pk),
        "dead": dead,
        "thread": thread,
        "tasks": list(Task.objects.order_by("status", "next_run")),
        "runs": [TaskRun.objects.select_related("task").get(pk=r.pk) for r in (open_run, finished_run)],
    }


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="the in-memory layer is what is tested")
async def test_staff_gets_a_snapshot_that_matches_the_database():
    world = await db(populate)()
    user = await db(editor)()
    async with dashboard(user) as page:
        snapshot = page.snapshot
        await still_open(page)
    assert snapshot["protocol"] == protocol.VERSION == 3
    assert abs(snapshot["at"] - timezone.now().timestamp()) < 30
    assert snapshot["user"] == {"name": "editor", "can_change": True, "can_add": True}
    # The in-memory layer cannot carry another process's runner events: the page is told so, and why.
    assert snapshot["live"]["ok"] is False
    assert "REDIS_URL" in snapshot["live"]["reason"]
    assert "--serve" in snapshot["live"]["reason"]

    functions_by_path = {f["path"]: f for f in snapshot["functions"]}
    assert functions_by_path["tests.functions.add"] == {
        "path": "tests.functions.add",
        "signature": "(a: int, b: int = 0) -> int",
        "doc": "",
    }
    assert functions_by_path["tests.functions.stamp"]["doc"].startswith("The wall-clock time")
    assert "server.demo.tasks.slow_job" in functions_by_path
    assert [f["path"] for f in snapshot["functions"]] == sorted(functions_by_path)

    live, dead = world["live"], world["dead"]
    assert [r["worker_id"] for r in snapshot["runners"]] == ["host-1", "host-2"]  # freshest first
    first = snapshot["runners"][0]
    expected = runner_state(live)
    assert first.keys() == expected.keys()
    assert {k: v for k, v in first.items() if k != "heartbeat_age"} == {
        k: v for k, v in expected.items() if k != "heartbeat_age"
    }
    assert first["state"] == "running"
    assert first["busy"] == 1
    assert 2.9 <= first["heartbeat_age"] < 30
    assert snapshot["runners"][1]["state"] == "dead"
    assert snapshot["runners"][1]["heartbeat_age"] >= 600

    assert snapshot["threads"] == [{**world["thread"], "runner": live.pk}]  # not the dead runner's

    assert snapshot["tasks"] == [task_state(t) for t in world["tasks"]]
    by_name = {t["name"]: t for t in snapshot["tasks"]}
    assert by_name["done"]["output"] == 5
    assert by_name["done"]["status"] == "finished"
    assert by_name["busy"]["runner"] == live.pk
    assert by_name["later"]["loop"] is True
    assert by_name["later"]["next_run"] > timezone.now().timestamp() + 3500

    assert {r["id"] for r in snapshot["runs"]} == {r.pk for r in world["runs"]}
    runs = {r["id"]: r for r in snapshot["runs"]}
    for run in world["runs"]:
        assert runs[run.pk] == run_state(run)
    finished = runs[world["runs"][1].pk]
    assert finished["error"] == "ValueError: old"  # the last line only
    assert finished["status"] == "finished"
    assert runs[world["runs"][0].pk]["progress"] == 0.5
    assert dead.pk not in {t["runner"] for t in snapshot["threads"]}


async def test_live_is_ok_when_the_runner_serves_the_dashboard_itself(monkeypatch):
    monkeypatch.setattr("app.livelayer.runner_in_process", True)
    async with dashboard(await db(viewer)()) as page:
        assert page.snapshot["live"] == {"ok": True, "reason": ""}
        assert page.snapshot["user"] == {"name": "viewer", "can_change": False, "can_add": False}


async def refused_with(user: Any, code: int) -> str:
    """Accepted first, so that the close code reaches the page, then told why and closed: no snapshot."""
    communicator = await open_socket(user)
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (error["type"], error["id"], error["field"]) == ("error", None, None)
        closed = await communicator.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": code}
        assert await communicator.receive_nothing()  # no snapshot leaked
        return error["error"]
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


async def test_anonymous_is_told_to_log_in_with_4001():
    assert (await refused_with(None, CLOSE_SIGNED_OUT)).startswith("Signed out: log in again.")


async def test_non_staff_is_told_to_log_in_even_with_the_permission():
    await refused_with(await db(make_user)("outsider", staff=False, perms=("view_task",)), CLOSE_SIGNED_OUT)


async def test_staff_without_view_permission_is_refused_with_4003():
    clerk = await db(make_user)("clerk", perms=("change_task", "add_task"))
    assert "conductor.view_task" in await refused_with(clerk, CLOSE_FORBIDDEN)


async def test_deactivated_staff_session_is_signed_out():
    user = await db(make_user)("leaver", perms=("view_task",))
    headers = await db(session_headers)(user)
    await db(type(user).objects.filter(pk=user.pk).update)(is_active=False)
    communicator = WebsocketCommunicator(application, DASHBOARD_PATH, headers=headers)
    try:
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "error"
        closed = await communicator.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


async def test_superuser_is_accepted():
    user = await db(make_user)("root", superuser=True)
    async with dashboard(user) as page:
        assert page.snapshot["user"] == {"name": "root", "can_change": True, "can_add": True}


async def handshake_accepted(**how: Any) -> bool:
    """Whether a logged-in editor's socket opened with these headers gets past the handshake."""
    communicator = await open_socket(await db(the_editor)(), **how)
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        if connected:
            assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        return connected
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


@pytest.mark.parametrize(
    "origin", [b"http://evil.example", b"http://localhost.evil.example", b"null", b"localhost", None]
)
async def test_foreign_or_missing_origin_is_refused_in_the_handshake(origin):
    assert not await handshake_accepted(origin=origin)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (b"localhost:8000", b"http://localhost:9000"),  # an app on another port of the same host
        (b"localhost:8000", b"http://localhost"),
        (b"localhost", b"http://localhost:8000"),
        (b"127.0.0.1:8000", b"http://localhost:8000"),  # the same machine under another name
    ],
)
async def test_a_page_on_another_port_or_host_name_is_refused(host, origin):
    assert not await handshake_accepted(host=host, origin=origin)


async def test_the_page_origin_with_a_port_and_with_the_default_port_written_out_is_accepted():
    assert await handshake_accepted(host=b"localhost:8000", origin=b"http://localhost:8000")
    assert await handshake_accepted(host=b"localhost:80", origin=b"http://localhost")
    assert await handshake_accepted(host=b"localhost", origin=b"http://LOCALHOST:80")


async def test_http_and_https_are_different_origins():
    assert not await handshake_accepted(scheme="ws", origin=b"https://localhost")
    assert not await handshake_accepted(scheme="wss", origin=b"http://localhost")
    assert await handshake_accepted(scheme="wss", origin=b"https://localhost")


async def test_behind_a_tls_proxy_its_header_decides_the_scheme(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    async def through_proxy(proto: bytes, origin: bytes) -> bool:
        communicator = await open_socket(await db(the_editor)(), origin=origin)
        communicator.scope["headers"].append((b"x-forwarded-proto", proto))
        try:
            return (await communicator.connect(timeout=TIMEOUT))[0]
        finally:
            await communicator.disconnect(timeout=TIMEOUT)

    assert await through_proxy(b"https", b"https://localhost")
    assert not await through_proxy(b"https", b"http://localhost")
    assert not await through_proxy(b"http", b"https://localhost")


async def test_a_trusted_origin_is_accepted_and_only_exactly(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com", "https://*.corp.example", "*"]
    assert await handshake_accepted(origin=b"https://dash.example.com")
    assert await handshake_accepted(origin=b"https://dash.example.com:443")
    assert await handshake_accepted(origin=b"https://a.b.corp.example")  # Django's subdomain syntax
    assert not await handshake_accepted(origin=b"http://dash.example.com")
    assert not await handshake_accepted(origin=b"https://dash.example.com:8443")
    assert not await handshake_accepted(origin=b"https://evildash.example.com")
    assert not await handshake_accepted(origin=b"https://evilcorp.example")
    assert not await handshake_accepted(origin=b"https://elsewhere.example")  # a bare * trusts nothing


async def test_allowed_hosts_star_accepts_no_foreign_origin(settings):
    settings.ALLOWED_HOSTS = ["*"]
    assert not await handshake_accepted(origin=b"http://evil.example")
    assert not await handshake_accepted(host=b"evil.example", origin=b"http://localhost")
    assert await handshake_accepted(host=b"dashboard.example", origin=b"http://dashboard.example")


async def test_a_host_outside_allowed_hosts_is_refused_even_with_its_own_origin(caplog):
    assert not await handshake_accepted(host=b"evil.example", origin=b"http://evil.example")
    assert not await handshake_accepted(host=b"", origin=b"http://localhost")
    refusals = [r for r in caplog.records if r.name == "conductor.origins"]
    assert [r.levelname for r in refusals] == ["INFO", "INFO"]
    assert "ALLOWED_HOSTS" in refusals[0].getMessage()
    assert "evil.example" in refusals[0].getMessage()


async def test_a_refused_origin_is_logged_once_saying_what_to_configure(caplog):
    assert not await handshake_accepted(host=b"localhost:8000", origin=b"http://localhost:9000")
    refusals = [r for r in caplog.records if r.name == "conductor.origins"]
    assert len(refusals) == 1
    assert refusals[0].levelname == "INFO"
    message = refusals[0].getMessage()
    assert "'http://localhost:9000'" in message
    assert "http://localhost:8000" in message  # the page's origin
    assert "CSRF_TRUSTED_ORIGINS" in message


async def test_a_closed_page_leaves_the_dashboard_group(fresh_channel_layer):
    async with dashboard(await db(viewer)()):
        assert len(fresh_channel_layer.groups[DASHBOARD_GROUP]) == 1
    assert not fresh_channel_layer.groups.get(DASHBOARD_GROUP)


# Signed out while connected ------------------------------------------------------------------------

#: "Within a second": how long a revoked socket may stay open.
REVOKED_WITHIN = 1.0


def session_key_of(communicator: WebsocketCommunicator) -> str:
    from django.conf import settings

    cookie = dict(communicator.scope["headers"])[b"cookie"].decode()
    return cookie.removeprefix(f"{settings.SESSION_COOKIE_NAME}=")


async def closed_signed_out(communicator: WebsocketCommunicator, code: int = CLOSE_SIGNED_OUT) -> str:
    """The socket is closed with ``code`` within REVOKED_WITHIN, after an error saying why; returns it."""
    told = await communicator.receive_output(timeout=REVOKED_WITHIN)
    assert told["type"] == "websocket.send", told
    error = json.loads(told["text"])
    assert (error["type"], error["id"], error["field"]) == ("error", None, None)
    assert await communicator.receive_output(timeout=REVOKED_WITHIN) == {
        "type": "websocket.close",
        "code": code,
    }
    assert await communicator.receive_nothing()  # nothing after the close
    return error["error"]


def log_out_through_the_admin(session_key: str) -> None:
    """What a browser does: POST /admin/logout/ with its session cookie (Django's logout())."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = session_key
    assert client.post("/admin/logout/").status_code == 200


def change_user(pk: int, **changes: Any) -> None:
    """An edit as the admin or a shell makes it: the user saved (post_save)."""
    from django.contrib.auth.models import User

    user = User.objects.get(pk=pk)
    for name, value in changes.items():
        setattr(user, name, value)
    user.save()


def set_password(pk: int, password: str) -> None:
    from django.contrib.auth.models import User

    user = User.objects.get(pk=pk)
    user.set_password(password)
    user.save()


async def test_logging_out_closes_the_open_dashboard_at_once():
    task = await db(make_task)(name="kept")
    async with dashboard(await db(editor)()) as page:
        await db(log_out_through_the_admin)(session_key_of(page))
        assert "log in again" in await closed_signed_out(page)
        await page.send_json_to({"type": "pause", "task": task.pk})  # too late: nobody listens
        assert await page.receive_nothing()
    assert (await db(get_task)(task.pk)).paused is False


async def test_logging_out_in_one_browser_leaves_the_other_browsers_session_open():
    user = await db(editor)()
    async with dashboard(user) as here, dashboard(user) as elsewhere:
        await db(log_out_through_the_admin)(session_key_of(here))
        await closed_signed_out(here)
        await still_open(elsewhere)


async def test_the_logout_signal_alone_closes_it_before_the_session_is_deleted():
    """Django sends user_logged_out before it deletes the session: the socket must not wait for that."""
    from django.contrib.auth import user_logged_out
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest

    user = await db(editor)()
    async with dashboard(user) as page:
        request = HttpRequest()
        request.session = SessionStore(session_key_of(page))
        await db(user_logged_out.send)(sender=type(user), request=request, user=user)
        await closed_signed_out(page)
        assert await db(request.session.exists)(request.session.session_key)  # still there


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"is_active": False}, id="deactivated"),
        pytest.param({"is_staff": False}, id="no-longer-staff"),
    ],
)
async def test_a_user_who_loses_active_staff_status_is_closed_at_once(change):
    user = await db(editor)()
    async with dashboard(user) as page, dashboard(await db(viewer)()) as other:
        await db(change_user)(user.pk, **change)
        await closed_signed_out(page)
        await still_open(other)  # only that user's sockets


async def test_a_password_change_closes_the_sockets_of_every_session():
    user = await db(editor)()
    async with dashboard(user) as page, dashboard(user) as second:
        await db(set_password)(user.pk, "a new long passphrase")
        await closed_signed_out(page)
        await closed_signed_out(second)


async def test_a_deleted_user_is_closed_at_once():
    user = await db(editor)()
    async with dashboard(user) as page:
        await db(type(user).objects.filter(pk=user.pk).delete)()
        await closed_signed_out(page)


async def test_losing_the_view_permission_closes_it_as_forbidden():
    from django.contrib.auth.models import Permission

    user = await db(editor)()
    async with dashboard(user) as page:
        view = await db(Permission.objects.get)(codename="view_task", content_type__app_label="conductor")
        await db(user.user_permissions.remove)(view)
        assert "may not view" in await closed_signed_out(page, CLOSE_FORBIDDEN)


async def test_a_saved_user_who_is_still_allowed_stays_connected():
    user = await db(editor)()
    async with dashboard(user) as page:
        await db(change_user)(user.pk, first_name="Ada")
        assert await page.receive_nothing(timeout=REVOKED_WITHIN)
        await still_open(page)


def quietly(action: str, pk: int, session_key: str) -> None:
    """Revocations that send no signal: only the next command can notice them."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session

    if action == "session-deleted":
        Session.objects.filter(session_key=session_key).delete()
    elif action == "session-expired":
        Session.objects.filter(session_key=session_key).update(expire_date=timezone.now())
    elif action == "password-changed":
        User.objects.filter(pk=pk).update(password="pbkdf2_sha256$1$salt$changed")
    else:
        User.objects.filter(pk=pk).update(**{action: False})


@pytest.mark.parametrize(
    "action", ["session-deleted", "session-expired", "password-changed", "is_active", "is_staff"]
)
@pytest.mark.parametrize("command", ["pause", "ping", "create"])
async def test_every_command_checks_the_session_again_first(action, command):
    task = await db(make_task)(name="untouched")
    commands = {
        "pause": {"type": "pause", "task": task.pk},
        "ping": {"type": "ping"},
        "create": {"type": "create", "func": "tests.functions.add", "args_in": {"a": 1}},
    }
    user = await db(editor)()
    async with dashboard(user) as page:
        await db(quietly)(action, user.pk, session_key_of(page))
        assert await page.receive_nothing()  # no signal: the socket does not know yet
        await page.send_json_to({**commands[command], "id": "after"})
        assert "log in again" in await closed_signed_out(page)
    assert [t.name for t in await db(list)(Task.objects.all())] == ["untouched"]
    assert (await db(get_task)(task.pk)).paused is False


async def test_a_permission_removed_while_connected_refuses_the_next_command():
    from django.contrib.auth.models import Permission

    task = await db(make_task)(name="guarded")
    user = await db(editor)()
    async with dashboard(user) as page:
        change = await db(Permission.objects.get)(codename="change_task", content_type__app_label="conductor")
        await db(user.user_permissions.remove)(change)
        error = await ask(page, type="pause", task=task.pk, id="p")
        assert error["error"] == "You need the conductor.change_task permission for pause."
        await still_open(page)  # may still view
    assert (await db(get_task)(task.pk)).paused is False


# Commands -------------------------------------------------------------------------------------------


async def test_run_now_makes_the_task_due_and_tells_every_dashboard():
    task = await db(make_task)(name="nightly", run_in=3600, paused=True)
    async with dashboard(await db(editor)()) as page, dashboard(await db(viewer)()) as other:
        reply = await ask(page, type="run_now", task=task.pk, id="r1")
        assert reply == {"type": "reply", "id": "r1", "ok": True, "message": "nightly queued to run now"}
        stored = await db(get_task)(task.pk)
        assert stored.next_run <= timezone.now()
        assert stored.paused is False
        assert stored.status == TaskStatus.WAITING
        event = await changed_event(other, task.pk)
        assert event["state"] == task_state(stored)
        assert (await changed_event(page, task.pk))["state"]["paused"] is False


async def test_task_changed_events_have_a_time_like_every_event():
    task = await db(make_task)(name="timed")
    async with dashboard(await db(editor)()) as page:
        await ask(page, type="pause", task=task.pk)
        event = await changed_event(page, task.pk)
    assert isinstance(event.get("at"), float)
    assert (event.get("task_id"), event.get("name")) == (task.task_id, "timed")


async def test_run_now_is_refused_while_the_task_runs():
    task = await db(make_task)(name="long-one")
    await db(Task.objects.filter(pk=task.pk).update)(status=TaskStatus.RUNNING)
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, type="run_now", task=task.pk, id=2)
        assert error["type"] == "error"
        assert error["id"] == 2
        assert error["field"] == "task"
        assert "long-one is running now" in error["error"]
        await still_open(page)


async def test_run_now_of_a_task_that_does_not_exist():
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, type="run_now", task=987654, id=None)
        assert error == {"type": "error", "id": None, "error": "There is no task 987654.", "field": "task"}
        error = await ask(page, type="pause", task=protocol.MAX_ID)  # the largest id a column holds
        assert error["field"] == "task"
        assert "There is no task" in error["error"]
        error = await ask(page, type="pause", task=2**70)  # beyond any integer column: not an id
        assert error["field"] == "task"
        assert error["error"].startswith("task: expects an id (a whole number from 1 to ")
        await still_open(page)


async def test_stop_loop_stops_a_waiting_looping_task_and_refuses_a_one_off():
    looping = await db(make_task)(name="poller", loop=True, interval=30)
    one_off = await db(make_task)(name="once")
    async with dashboard(await db(editor)()) as page:
        reply = await ask(page, type="stop_loop", task=looping.pk, id="s")
        assert reply["ok"] is True
        assert reply["message"] == "poller will not run again"
        stored = await db(get_task)(looping.pk)
        assert stored.status == TaskStatus.STOPPED
        assert stored.loop is False
        assert (await changed_event(page, looping.pk))["state"]["status"] == "stopped"
        error = await ask(page, type="stop_loop", task=one_off.pk, id="t")
        assert error["type"] == "error"
        assert error["field"] == "task"
        assert error["error"] == "once is not looping"
        assert (await db(get_task)(one_off.pk)).status == TaskStatus.WAITING
        await still_open(page)


async def test_pause_and_resume_and_their_refusals():
    task = await db(make_task)(name="report")
    async with dashboard(await db(editor)()) as page:
        assert (await ask(page, type="pause", task=task.pk))["message"] == "report paused"
        assert (await db(get_task)(task.pk)).paused is True
        error = await ask(page, type="pause", task=task.pk, id="again")
        assert (error["type"], error["id"], error["field"]) == ("error", "again", "task")
        assert error["error"] == "report is already paused"
        assert (await ask(page, type="resume", task=task.pk))["message"] == "report resumed"
        assert (await db(get_task)(task.pk)).paused is False
        error = await ask(page, type="resume", task=task.pk)
        assert error["error"] == "report is already not paused"
        await still_open(page)


async def test_create_saves_a_task_whose_results_come_back_to_this_socket(fresh_channel_layer):
    async with dashboard(await db(editor)()) as page, dashboard(await db(viewer)()) as other:
        reply = await ask(
            page, type="create", id="c1", func="tests.functions.add", args_in={"a": 1, "b": 2}, run_in=3600
        )
        assert reply["type"] == "reply"
        assert reply["id"] == "c1"
        assert reply["message"] == "add created"  # named after the function when no name is given
        state = reply["task"]
        stored = await db(get_task)(state["id"])
        assert state == task_state(stored)
        assert stored.func == "tests.functions.add"
        assert stored.args_in == {"a": 1, "b": 2}
        assert stored.status == TaskStatus.WAITING
        assert stored.next_run > timezone.now() + timedelta(seconds=3500)
        assert stored.conn
        assert (await changed_event(other, stored.pk))["state"]["id"] == stored.pk
        # conn is this consumer's channel: what a runner sends there reaches this socket, not the other.
        await fresh_channel_layer.send(
            stored.conn, {"type": "task.result", "task": stored.pk, "status": "finished", "output": 3}
        )
        result = await next_of(page, "task.result")
        assert result == {"type": "task.result", "task": stored.pk, "status": "finished", "output": 3}
        assert "task.result" not in [m["type"] for m in await drain(other)]


async def test_create_with_every_field():
    async with dashboard(await db(editor)()) as page:
        reply = await ask(
            page, type="create", func="tests.functions.say", args_in={"text": "hi"}, name="greeter",
            run_in=60, kill_time=5, loop=True, interval=120, db_use=True,
        )  # fmt: skip
        task = reply["task"]
        assert (task["name"], task["kill_time"], task["loop"], task["interval"], task["db_use"]) == (
            "greeter", 5, True, 120, True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"func": "os.system", "args_in": {"command": "true"}}, "func", "not a registered task function"),
        ({"args_in": {"a": 1}}, "func", "required for create: a string of 1 to 255 characters"),
        ({"func": "tests.functions.add", "args_in": {"c": 1}}, "args_in", "do not fit tests.functions.add"),
        ({"func": "tests.functions.add"}, "args_in", "missing a required argument: 'a'"),
        ({"func": "tests.functions.add", "args_in": [1, 2]}, "args_in", "JSON object"),
        ({"func": "tests.functions.add", "args_in": {"a": 1}, "run_in": -1}, "run_in", "0 to 316224000"),
        ({"func": "tests.functions.add", "args_in": {"a": 1}, "kill_time": 0}, "kill_time", "above 0"),
        ({"func": "tests.functions.add", "args_in": {"a": 1}, "interval": "soon"}, "interval",
         'a number (JSON, not a string), 0 to 316224000; got "soon"'),
        ({"func": "tests.functions.add", "args_in": {"a": 1}, "loop": True, "interval": 0}, "interval",
         "looping task needs an interval"),
        ({"func": "tests.functions.add", "args_in": {"a": 1}, "name": "x" * 201}, "name",
         "1 to 200 characters"),
        ({"func": "tests.functions.add", "args_in": {"a": 1}, "loop": "often"}, "loop", "true or false"),
    ],
)  # fmt: skip
async def test_create_refuses_an_invalid_task_naming_the_field(fields, field, words):
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, type="create", id="bad", **fields)
        assert error["type"] == "error"
        assert error["id"] == "bad"
        assert error["field"] == field
        assert error["error"].startswith(f"{field}: ")
        assert words in error["error"]
        assert not await db(Task.objects.exists)()
        await still_open(page)


async def test_create_refuses_unknown_fields_naming_them():
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, type="create", func="tests.functions.add", args_in={"a": 1}, colour="red")
        assert error["type"] == "error"
        assert "colour" in error["error"]
        assert "func" in error["error"]  # and says what a task takes
        assert not await db(Task.objects.exists)()
        await still_open(page)


async def test_create_takes_every_field_of_a_tasks_definition():
    """The dashboard creates what the admin can: the fields come from the model, not a list of its own."""
    fields = {"func": "tests.functions.add", "args_in": {"a": 1}, "name": "nightly", "cron": "30 2 * * *",
              "timezone": "Europe/Berlin", "queue": "reports", "priority": 7, "max_attempts": 3,
              "retry_delay": 2.5, "isolation": "process", "catch_up": "skip", "max_runs": 4, "kill_time": 30,
              "expires_at": 4102444800}  # fmt: skip
    async with dashboard(await db(editor)()) as page:
        reply = await ask(page, type="create", **fields)
        assert reply["type"] == "reply", reply
    task = await db(Task.objects.get)(name="nightly")
    for name, value in fields.items():
        stored = getattr(task, name)
        assert (stored.timestamp() if name == "expires_at" else stored) == value, name


def make_runs() -> dict[str, int]:
    task = make_task(name="tally")
    runner = RunnerProcess.objects.create(worker_id="far-away", host="elsewhere", pid=7)
    done = TaskRun.objects.create(task=task, runner=runner, finished_at=timezone.now(), status="finished")
    inline = TaskRun.objects.create(task=task, runner=None)  # Task.run() in a shell: no runner to ask
    return {"done": done.pk, "inline": inline.pk}


@pytest.mark.parametrize("command", ["cancel", "stack"])
async def test_cancel_and_stack_of_a_run_that_is_not_running(command):
    runs = await db(make_runs)()
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, type=command, run=runs["done"], id=command)
        assert error == {
            "type": "error", "id": command, "field": "run",
            "error": f"Run {runs['done']} is not running on a runner.",
        }  # fmt: skip
        error = await ask(page, type=command, run=runs["inline"])
        assert error["error"] == f"Run {runs['inline']} is not running on a runner."
        error = await ask(page, type=command, run=424242)
        assert error["error"] == "There is no run 424242."
        assert error["field"] == "run"
        await still_open(page)


async def test_cancel_of_an_open_run_is_passed_on_to_its_runner():
    def open_run() -> TaskRun:
        task = make_task(name="crunch")
        runner = RunnerProcess.objects.create(worker_id="far-away", host="elsewhere", pid=7)
        return TaskRun.objects.create(task=task, runner=runner)

    run = await db(open_run)()
    async with dashboard(await db(editor)()) as page:
        reply = await ask(page, type="cancel", run=run.pk, id=9)
        assert reply == {
            "type": "reply", "id": 9, "ok": True, "message": f"Cancel of run {run.pk} (crunch) requested",
        }  # fmt: skip


async def test_snapshot_on_request_reads_the_database_again():
    async with dashboard(await db(viewer)()) as page:
        assert page.snapshot["tasks"] == []
        task = await db(make_task)(name="fresh")
        await page.send_json_to({"type": "snapshot", "id": 1})
        snapshot = await next_of(page, "snapshot")
        assert [t["name"] for t in snapshot["tasks"]] == ["fresh"]
        assert snapshot["tasks"][0]["id"] == task.pk
        reply = await ask(page, type="ping", id={"any": ["json", 1]})
        assert reply == {"type": "reply", "id": {"any": ["json", 1]}, "ok": True, "pong": True}


@pytest.mark.parametrize("command", [*CHANGE_COMMANDS, "cancel", "create"])
async def test_each_command_checks_its_permission(command):
    task = await db(make_task)(name="guarded", loop=True, interval=10, paused=command == "resume")
    async with dashboard(await db(viewer)()) as page:
        content = {"type": command, "id": command}
        if command == "cancel":
            content["run"] = 1
        elif command == "create":
            content.update(func="tests.functions.add", args_in={"a": 1})
        else:
            content["task"] = task.pk
        error = await ask(page, **content)
        permission = "conductor.add_task" if command == "create" else "conductor.change_task"
        assert error["type"] == "error"
        assert error["id"] == command
        assert error["error"] == f"You need the {permission} permission for {command}."
        await still_open(page)
    stored = await db(get_task)(task.pk)
    assert (stored.loop, stored.paused, stored.status) == (True, command == "resume", TaskStatus.WAITING)
    assert stored.next_run > timezone.now() - timedelta(minutes=1)
    assert await db(Task.objects.count)() == 1


async def test_a_viewer_may_snapshot_ping_and_stack():
    runs = await db(make_runs)()
    async with dashboard(await db(viewer)()) as page:
        await still_open(page)
        error = await ask(page, type="stack", run=runs["done"])
        assert error["error"].endswith("is not running on a runner.")  # past the permission check
        await page.send_json_to({"type": "snapshot"})
        assert (await next_of(page, "snapshot"))["user"]["name"] == "viewer"


# Malformed messages -------------------------------------------------------------------------------


BAD_TEXT = [
    pytest.param(json.dumps({"type": "ping", "id": 1, "pad": "x" * MAX_MESSAGE}), "too large", id="big"),
    pytest.param("{oops", "Not JSON", id="not-json"),
    pytest.param("", "Not JSON", id="empty"),
    pytest.param('["ping"]', "JSON object", id="array"),
    pytest.param('"ping"', "JSON object", id="string"),
    pytest.param("42", "JSON object", id="number"),
    pytest.param("null", "JSON object", id="null"),
]


@pytest.mark.parametrize(("text", "words"), BAD_TEXT)
async def test_bad_text_frames_get_an_error_and_the_socket_stays_open(text, words):
    async with dashboard(await db(editor)()) as page:
        await page.send_input({"type": "websocket.receive", "text": text})
        error = await next_of(page, "error")
        assert error["id"] is None
        assert words in error["error"]
        await still_open(page)


async def test_a_binary_frame_gets_an_error():
    async with dashboard(await db(editor)()) as page:
        await page.send_to(bytes_data=json.dumps({"type": "ping"}).encode())
        error = await next_of(page, "error")
        assert error == {"type": "error", "id": None, "error": "Send JSON text messages, not binary ones.",
                         "field": None}  # fmt: skip
        await still_open(page)


async def test_a_message_just_under_the_limit_is_read():
    async with dashboard(await db(editor)()) as page:
        text = json.dumps({"type": "ping", "id": ""})  # the id may be any JSON: it pads the message
        text = text.replace('"id": ""', '"id": "' + "x" * (MAX_MESSAGE - len(text)) + '"')
        assert len(text) == MAX_MESSAGE
        await page.send_to(text_data=text)
        assert (await next_of(page, "reply", "error"))["pong"] is True


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        ({"type": "explode", "id": 3}, "type", "Unknown type 'explode'"),
        ({"id": 3}, "type", "Unknown type None"),
        ({"type": "run_now", "id": 3}, "task", "task: required for run_now: an id (a whole number from 1"),
        ({"type": "run_now", "id": 3, "task": "1"}, "task", 'got "1"'),
        ({"type": "pause", "id": 3, "task": True}, "task", "got true"),
        ({"type": "resume", "id": 3, "task": None}, "task", "got null"),
        ({"type": "stop_loop", "id": 3, "task": 1.0}, "task", "got 1.0"),
        ({"type": "run_now", "id": 3, "task": [1]}, "task", "got [1]"),
        ({"type": "run_now", "id": 3, "task": 0}, "task", "task: expects an id"),
        ({"type": "pause", "id": 3, "task": -5}, "task", "got -5"),
        ({"type": "cancel", "id": 3, "run": "7"}, "run", "run: expects an id (a whole number from 1 to "),
        ({"type": "cancel", "id": 3}, "run", "run: required for cancel"),
        ({"type": "stack", "id": 3, "run": False}, "run", "got false"),
        (
            {"type": "ping", "id": 3, "task": 1},
            "task",
            "task: ping takes no field 'task' (it takes no fields)",
        ),
        (
            {"type": "pause", "id": 3, "task": 1, "run": 2},
            "run",
            "pause takes no field 'run' (it takes task)",
        ),
    ],
)
async def test_malformed_commands_get_an_error_naming_the_field(content, field, words):
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, **content)
        assert error["type"] == "error"
        assert error["id"] == 3
        assert error["field"] == field
        assert words in error["error"]
        if field == "type":
            known = "cancel, create, pause, ping, resume, run_now, snapshot, stack, stop_loop"
            assert f"known types: {known}." in error["error"]
        await still_open(page)


@pytest.mark.parametrize("kind", [["ping"], {"name": "ping"}, 1, None])
async def test_a_type_that_is_not_a_string_gets_an_error(kind):
    async with dashboard(await db(editor)()) as page:
        error = await ask(page, type=kind, id=1)
        assert error["type"] == "error"
        assert error["field"] == "type"
        assert error["error"].startswith("Unknown type")
        await still_open(page)


async def test_deeply_nested_json_gets_an_error():
    async with dashboard(await db(editor)()) as page:
        await page.send_to(text_data="[" * 5000 + "]" * 5000)  # 10 KB, but too deep to decode
        error = await next_of(page, "error")
        assert error["id"] is None
        assert error["error"].startswith("Not JSON")
        await still_open(page)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_are_not_json(constant):
    async with dashboard(await db(editor)()) as page:
        await page.send_to(text_data=f'{{"type": "ping", "id": {constant}}}')
        text = await page.receive_from(timeout=TIMEOUT)
        error = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text}"))
        assert error["type"] == "error"
        assert error["id"] is None
        assert error["error"].startswith("Not JSON")
        await still_open(page)


# Strict messages: every field of every command, generated from app/protocol.py's declaration ---------

#: A value of each JSON type, and which of them each kind of field accepts.
JSON_VALUES = {
    "string": "5",
    "whole number": 5,
    "fraction": 0.5,
    "true": True,
    "false": False,
    "null": None,
    "array": [5],
    "object": {"a": 5},
}
ACCEPTED = {
    "id": {"whole number"},
    "integer": {"whole number"},
    "number": {"whole number", "fraction"},
    "string": {"string"},
    "boolean": {"true", "false"},
    "object": {"object"},
}
#: A valid value of each kind, for the fields beside the one under test.
VALID = {
    "id": 1,
    "integer": 1,
    "number": 1,
    "string": "tests.functions.add",
    "boolean": False,
    "object": {"a": 1},
}
FIELDS = [
    pytest.param(kind, name, id=f"{kind}.{name}")
    for kind, command in protocol.COMMANDS.items()
    for name in command.fields
]


async def test_every_kind_of_field_is_covered_here():
    assert set(ACCEPTED) == set(protocol.KINDS)


def valid_message(kind: str) -> dict:
    declared = protocol.COMMANDS[kind].fields
    return {"type": kind, **{name: VALID[f.kind] for name, f in declared.items() if f.required}}


def out_of_range(declaration: protocol.Field) -> list[Any]:
    """Values of the right JSON type just beyond the declared limits."""
    if declaration.kind == "id":
        return [0, -1, protocol.MAX_ID + 1]
    if declaration.kind == "number":
        low = [declaration.above] if declaration.above is not None else [declaration.minimum - 0.001]
        return [*low, declaration.maximum + 0.001, declaration.maximum * 2]
    if declaration.kind == "integer":
        return [declaration.minimum - 1, declaration.maximum + 1]
    if declaration.kind == "string":
        return ["x" * (declaration.maximum + 1), *([""] if declaration.min_length else [])]
    if declaration.kind == "object":
        return [{"a": "x" * declaration.maximum}]
    return []


def database_state() -> tuple:
    return (list(Task.objects.order_by("pk").values()), list(TaskRun.objects.order_by("pk").values()))


async def refused_naming(page: WebsocketCommunicator, message: dict, field: str) -> str:
    error = await ask(page, **message, id="bad")
    assert (error["type"], error["id"], error["field"]) == ("error", "bad", field), (message, error)
    assert error["error"].startswith(f"{field}: "), error
    return error["error"]


async def refused_changing_nothing(messages: list[tuple[dict, str]]) -> list[str]:
    """Send each (message, field) as an editor on a page with a task and a run; each is refused naming
    the field, and the database is as it was."""
    task = await db(make_task)(name="bystander", loop=True, interval=30)
    await db(TaskRun.objects.create)(task=task)
    before = await db(database_state)()
    async with dashboard(await db(make_user)("boss", superuser=True)) as page:
        errors = [await refused_naming(page, message, field) for message, field in messages]
        await still_open(page)
    assert await db(database_state)() == before
    return errors


@pytest.mark.parametrize(("kind", "name"), FIELDS)
async def test_a_field_of_another_json_type_is_refused_naming_it(kind, name):
    declaration = protocol.COMMANDS[kind].fields[name]
    wrong = [value for label, value in JSON_VALUES.items() if label not in ACCEPTED[declaration.kind]]
    errors = await refused_changing_nothing([({**valid_message(kind), name: v}, name) for v in wrong])
    assert all(f"expects {declaration.expects()}; got " in error for error in errors)


@pytest.mark.parametrize(("kind", "name"), FIELDS)
async def test_a_value_beyond_the_limits_is_refused_naming_it(kind, name):
    declaration = protocol.COMMANDS[kind].fields[name]
    beyond = out_of_range(declaration)
    await refused_changing_nothing([({**valid_message(kind), name: value}, name) for value in beyond])


@pytest.mark.parametrize("kind", protocol.COMMANDS)
async def test_unknown_fields_are_refused_naming_them(kind):
    unknown = ["extra", "conn", "use_pdb", "pk", "__proto__"]
    await refused_changing_nothing([({**valid_message(kind), name: 1}, name) for name in unknown])


@pytest.mark.parametrize(
    "kind", [k for k, c in protocol.COMMANDS.items() if any(f.required for f in c.fields.values())]
)
async def test_a_missing_required_field_is_refused_naming_it(kind):
    required = [name for name, f in protocol.COMMANDS[kind].fields.items() if f.required]
    messages = [({k: v for k, v in valid_message(kind).items() if k != name}, name) for name in required]
    await refused_changing_nothing(messages)


async def test_the_coercions_of_protocol_1_are_refused():
    """What version 1 let through (issue 14): a name that is an object, run_in and loop as strings."""
    create = {"type": "create", "func": "tests.functions.noop"}
    errors = await refused_changing_nothing([
        ({**create, "name": {"a": 1}}, "name"),
        ({**create, "run_in": "5"}, "run_in"),
        ({**create, "loop": "1"}, "loop"),
        ({**create, "loop": 1}, "loop"),
        ({**create, "interval": True}, "interval"),
        ({**create, "args_in": "{}"}, "args_in"),
    ])  # fmt: skip
    assert errors[0] == 'name: expects a string of 1 to 200 characters; got {"a": 1}.'


async def test_a_fraction_for_a_whole_number_field_is_refused_not_cut():
    """Version 2 stored priority 1.5 as 1 and max_runs 2.7 as 2 (issue 14)."""
    create = {"type": "create", "func": "tests.functions.noop"}
    errors = await refused_changing_nothing([
        ({**create, "priority": 1.5}, "priority"),
        ({**create, "max_runs": 2.7}, "max_runs"),
        ({**create, "max_attempts": 2.5}, "max_attempts"),
    ])  # fmt: skip
    assert errors[0] == (
        "priority: expects a whole number (JSON, not a string or a fraction), "
        "-2147483648 to 2147483647; got 1.5."
    )


async def test_a_number_too_large_for_a_float_is_refused():
    async with dashboard(await db(editor)()) as page:
        await page.send_to(text_data='{"type": "create", "func": "tests.functions.add", "run_in": 1e400}')
        error = await next_of(page, "error")
        assert error["field"] == "run_in"
    assert not await db(Task.objects.exists)()


async def test_values_at_the_limits_are_accepted():
    async with dashboard(await db(editor)()) as page:
        reply = await ask(
            page, type="create", func="tests.functions.add", args_in={"a": 1}, name="n" * 200,
            run_in=protocol.MAX_SECONDS, kill_time=protocol.MAX_SECONDS, interval=0,
        )  # fmt: skip
        assert reply["type"] == "reply", reply
        assert reply["task"]["kill_time"] == protocol.MAX_SECONDS
