"""Live state end to end: runners and web servers as real subprocesses, dashboards as WebSocket clients.

Through Redis, ``manage.py runtasks`` and daphne run in separate processes (each test with a channel
prefix of its own, so parallel runs never mix); embedded, ``runtasks --serve`` is both in one process on
the in-memory layer. A test connects a dashboard (a staff superuser with a real database session),
changes the database with the ORM or sends commands over the socket, and waits for what the protocol
(docs/protocol.md) says must arrive. Redis must be running: these tests fail, never skip, without it.
"""

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from channels.layers import InMemoryChannelLayer
from websockets.exceptions import ConnectionClosed

from app.bridge import ChannelBridge
from app.fanout import FEED_GROUP
from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.acceptance.conftest import (
    IN_MEMORY_ENV,
    LIVE_WAIT,
    free_port,
    port_open,
    redis_env,
)
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

#: How long a runner or web server may take to start (Django set-up, checks) on a loaded machine.
STARTUP = 30.0
#: Longer than two of channels-redis's 5 s BZPOPMIN timeouts.
IDLE = 12.0
#: Task events in the order one run produces them.
RUN_EVENTS = ["task.claimed", "thread.started", "thread.finished", "task.finished"]


def event_of(kind: str, task: Task):
    return lambda event: event["type"] == kind and event.get("task") == task.pk


def events_of(dashboard, task: Task) -> list[str]:
    return [e["type"] for e in dashboard.events if e.get("task") == task.pk and e["type"] != "task.changed"]


def add_task(a: int = 1, b: int = 2, **fields) -> Task:
    return Task.objects.create(name=f"add-{uuid.uuid4().hex[:6]}", func="tests.functions.add",
                               args_in={"a": a, "b": b}, **fields)  # fmt: skip


def blocking_task(markers, **fields) -> Task:
    args = {"started": str(markers / "started"), "release": str(markers / "release"), "timeout": 600}
    return Task.objects.create(
        name="blocking", func="tests.functions.touch_then_wait", args_in=args, **fields
    )


@contextlib.contextmanager
def socket_listening() -> Iterator[int]:
    """A port taken by a listening socket of this process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def assert_goes_waiting_running_finished(dashboard, task: Task, output) -> dict:
    """The task, created waiting, is seen claimed (running) and then finished through events."""
    assert task.status == TaskStatus.WAITING
    claimed = dashboard.wait_for_event(event_of("task.claimed", task), f"task.claimed of {task.name}")
    assert claimed["state"]["status"] == TaskStatus.RUNNING
    assert claimed["state"]["id"] == task.pk
    assert claimed["name"] == task.name
    assert claimed["task_id"] == task.task_id
    finished = dashboard.wait_for_event(event_of("task.finished", task), f"task.finished of {task.name}")
    assert finished["state"]["status"] == TaskStatus.FINISHED
    assert finished["status"] == RunStatus.FINISHED
    assert finished["output"] == output
    assert finished["run"] == claimed["run"]
    assert finished["run_state"]["status"] == RunStatus.FINISHED
    assert events_of(dashboard, task) == RUN_EVENTS, "events of one run out of order or missing"
    assert finished["at"] >= claimed["at"]
    return finished


@pytest.fixture
def redis_pair(start_runtasks, start_web):
    """A runner and a web server in two processes that meet only through Redis; both up.

    Runners still running at the end are stopped with SIGTERM (and must exit) before start_runtasks
    looks for leftovers.
    """
    runners = []

    def start(*runner_args: str, runner_env_extra: dict | None = None):
        env = redis_env()
        web = start_web(env=env)
        runner = start_runtasks("--poll", "0.2", "--worker-id", "far", *runner_args,
                                env={**env, **(runner_env_extra or {})})  # fmt: skip
        runners.append(runner)
        wait_until(lambda: web.is_up() and runner.is_up(), STARTUP)
        return runner, web

    yield start
    for runner in runners:
        if runner.returncode is None:
            runner.terminate()
            runner.wait(30)


# Through Redis: runner and web server in separate processes -------------------------------------


def test_through_redis_a_dashboard_sees_a_task_go_waiting_running_finished(redis_pair, open_dashboard):
    runner, web = redis_pair()
    dashboard = open_dashboard(web.port)

    snapshot = dashboard.snapshot()
    assert snapshot["protocol"] == 3
    assert snapshot["live"] == {"ok": True, "reason": ""}
    assert snapshot["user"]["can_add"] is True
    assert [(r["worker_id"], r["state"]) for r in snapshot["runners"]] == [("far", RunnerState.RUNNING)]
    assert "tests.functions.add" in [f["path"] for f in snapshot["functions"]]

    # Created with the ORM, not the socket: the runner finds it in the database. Paused first, so
    # that the web server's snapshot shows it waiting before the runner may take it.
    task = add_task(2, 3, paused=True)
    dashboard.send({"type": "snapshot"})
    waiting = dashboard.wait_for_message(
        lambda m: m["type"] == "snapshot" and any(t["id"] == task.pk for t in m["tasks"]), "a later snapshot"
    )
    assert [t["status"] for t in waiting["tasks"] if t["id"] == task.pk] == [TaskStatus.WAITING]
    Task.objects.filter(pk=task.pk).update(paused=False)
    assert_goes_waiting_running_finished(dashboard, task, output=5)
    task.refresh_from_db()
    assert task.status == TaskStatus.FINISHED

    # A fresh snapshot, read from the database by the web server, agrees with the events.
    dashboard.messages.clear()
    dashboard.send({"type": "snapshot"})
    tasks = {t["id"]: t for t in dashboard.snapshot()["tasks"]}
    assert tasks[task.pk]["status"] == TaskStatus.FINISHED
    assert tasks[task.pk]["output"] == 5

    # Whether runner.down reaches the page here is a race: see the bridge test at the end.
    runner.terminate()
    assert runner.wait(30) == 0
    assert web.check_alive()


def test_through_redis_create_from_the_socket_gets_the_task_result_from_the_runner(
    redis_pair, open_dashboard
):
    runner, web = redis_pair()
    asker = open_dashboard(web.port)
    onlooker = open_dashboard(web.port)
    asker.snapshot()
    onlooker.snapshot()

    asker.send({"type": "create", "id": "c1", "func": "tests.functions.add", "args_in": {"a": 20, "b": 22},
                "name": "from the socket"})  # fmt: skip
    reply = asker.wait_for_message(lambda m: m.get("id") == "c1", "the reply to create")
    assert reply["type"] == "reply", reply
    assert reply["ok"] is True
    task_pk = reply["task"]["id"]
    assert reply["task"]["status"] == TaskStatus.WAITING

    result = asker.wait_for_message(lambda m: m["type"] == "task.result", "task.result")
    assert result["task"] == task_pk
    assert result["name"] == "from the socket"
    assert result["status"] == RunStatus.FINISHED
    assert result["output"] == 42
    assert result["error"] == ""
    assert result["runner"] == "far"
    run = TaskRun.objects.get(task_id=task_pk)
    assert result["run"] == run.pk
    assert run.status == RunStatus.FINISHED
    assert run.output == 42

    # Every dashboard sees the task change; only the asker gets its result.
    for dashboard in (asker, onlooker):
        changed = dashboard.wait_for_event(
            lambda e: e["type"] == "task.changed" and e["task"] == task_pk, "task.changed"
        )
        # Read when the web server announced it: the runner may have taken it already.
        assert changed["state"]["status"] in (TaskStatus.WAITING, TaskStatus.RUNNING, TaskStatus.FINISHED)
        finished = dashboard.wait_for_event(
            lambda e: e["type"] == "task.finished" and e["task"] == task_pk, "task.finished"
        )
        assert finished["output"] == 42
    # A result sent to the wrong channel would have come before the task.finished that followed it.
    assert [m for m in onlooker.messages if m["type"] == "task.result"] == []
    assert [m for m in asker.messages if m["type"] == "task.result"] == [result]
    assert runner.check_alive()


def test_through_redis_the_runner_answers_stack_for_its_running_thread(
    redis_pair, open_dashboard, marker_dir
):
    runner, web = redis_pair()
    dashboard = open_dashboard(web.port)
    dashboard.snapshot()
    task = blocking_task(marker_dir)
    claimed = dashboard.wait_for_event(event_of("task.claimed", task), "task.claimed")
    wait_until(lambda: runner.check_alive() and (marker_dir / "started").exists(), LIVE_WAIT)
    run_pk = claimed["run"]

    dashboard.send({"type": "stack", "id": "s1", "run": run_pk})
    stack = dashboard.wait_for_message(lambda m: m.get("id") == "s1", "the stack")
    assert stack["type"] == "stack", stack
    assert stack["run"] == run_pk
    assert stack["thread"] == f"blocking#{run_pk}"
    assert "touch_then_wait" in stack["stack"], stack["stack"]
    # Innermost call last: the function waiting for the file is below the one that called it.
    assert stack["stack"].rindex("wait_for_file") > stack["stack"].rindex("touch_then_wait")

    # A run that is not running is refused by the web server, naming the field.
    dashboard.send({"type": "stack", "id": "s2", "run": run_pk + 1000})
    refused = dashboard.wait_for_message(lambda m: m.get("id") == "s2", "the refusal")
    assert refused["type"] == "error"
    assert refused["field"] == "run"

    (marker_dir / "release").touch()
    finished = dashboard.wait_for_event(event_of("task.finished", task), "task.finished")
    assert finished["output"] == "released"


def test_through_redis_cancel_stops_a_run_in_the_runner_process(redis_pair, open_dashboard, marker_dir):
    runner, web = redis_pair(runner_env_extra={"CONDUCTOR_CANCEL_GRACE": "0.5"})
    dashboard = open_dashboard(web.port)
    dashboard.snapshot()
    task = blocking_task(marker_dir)  # never released: only the cancel can end it
    claimed = dashboard.wait_for_event(event_of("task.claimed", task), "task.claimed")
    wait_until(lambda: runner.check_alive() and (marker_dir / "started").exists(), LIVE_WAIT)

    dashboard.send({"type": "cancel", "id": "x1", "run": claimed["run"]})
    reply = dashboard.wait_for_message(lambda m: m.get("id") == "x1", "the reply to cancel")
    assert reply["type"] == "reply", reply
    assert f"Cancel of run {claimed['run']}" in reply["message"]

    requested = dashboard.wait_for_event(event_of("run.cancel_requested", task), "run.cancel_requested")
    assert requested["by"] == "staff"
    assert requested["runner"] == "far"
    cancelled = dashboard.wait_for_event(event_of("task.cancelled", task), "task.cancelled")
    assert cancelled["run"] == claimed["run"]
    assert cancelled["status"] == RunStatus.CANCELLED
    assert cancelled["run_state"]["status"] == RunStatus.CANCELLED
    assert cancelled["state"]["status"] == TaskStatus.STOPPED
    assert TaskRun.objects.get(pk=claimed["run"]).status == RunStatus.CANCELLED
    assert Task.objects.get(pk=task.pk).status == TaskStatus.STOPPED
    assert runner.check_alive()


def test_through_redis_an_idle_dashboard_stays_connected(start_web, open_dashboard):
    """Without a runner there are no heartbeats: the dashboard's channel-layer receive sits idle."""
    web = start_web(env=redis_env())  # REDIS_URL as an operator would set it
    wait_until(web.is_up, STARTUP)
    dashboard = open_dashboard(web.port)
    assert dashboard.snapshot()["live"]["ok"] is True

    with pytest.raises(TimeoutError):  # nothing to say for longer than two BZPOPMIN timeouts
        dashboard.receive(timeout=IDLE)
    dashboard.send({"type": "ping", "id": "p1"})
    pong = dashboard.wait_for_message(lambda m: m.get("id") == "p1", "pong")
    assert pong["pong"] is True
    assert "Traceback" not in web.log(), web.log_tail()


# Embedded: runtasks --serve, the in-memory layer ------------------------------------------------


def test_runtasks_serve_streams_live_state_on_the_in_memory_layer(start_runtasks, open_dashboard):
    port = free_port()
    runner = start_runtasks("--serve", f"127.0.0.1:{port}", "--poll", "0.2", "--worker-id", "embedded",
                            env=IN_MEMORY_ENV)  # fmt: skip
    wait_until(lambda: runner.is_up() and port_open(port), STARTUP)
    assert f"Dashboard: http://127.0.0.1:{port}/dashboard/" in runner.log()
    dashboard = open_dashboard(port)

    snapshot = dashboard.snapshot()
    assert snapshot["live"] == {"ok": True, "reason": ""}
    assert [r["worker_id"] for r in snapshot["runners"]] == ["embedded"]

    task = add_task(4, 5)
    assert_goes_waiting_running_finished(dashboard, task, output=9)

    dashboard.send({"type": "create", "id": "c1", "func": "tests.functions.add", "args_in": {"a": 1}})
    created = dashboard.wait_for_message(lambda m: m.get("id") == "c1", "the reply to create")
    assert created["type"] == "reply", created
    result = dashboard.wait_for_message(lambda m: m["type"] == "task.result", "task.result")
    assert (result["task"], result["status"], result["output"]) == (created["task"]["id"], "finished", 1)

    runner.terminate()
    dashboard.wait_for_event(lambda e: e["type"] == "runner.down", "runner.down")
    assert runner.wait(30) == 0
    assert "Traceback" not in runner.log(), runner.log_tail()


# The in-memory layer across processes: said, not silently broken ---------------------------------


def test_a_separate_web_server_on_the_in_memory_layer_says_live_state_is_off(start_web, open_dashboard):
    web = start_web(env=IN_MEMORY_ENV)  # and no runner in its process
    wait_until(web.is_up, STARTUP)
    dashboard = open_dashboard(web.port)

    live = dashboard.snapshot()["live"]
    assert live["ok"] is False
    assert "--serve" in live["reason"], live
    assert "REDIS_URL" in live["reason"], live


def test_runtasks_without_serve_or_redis_warns_that_dashboards_will_not_update(start_runtasks):
    runner = start_runtasks("--poll", "0.2", "--worker-id", "alone", env=IN_MEMORY_ENV)
    warning = wait_until(
        lambda: (
            runner.check_alive()
            and next((line for line in runner.log().splitlines() if "in-memory channel layer" in line), None)
        ),
        STARTUP,
    )
    assert "WARNING" in warning
    assert "--serve" in warning
    assert "REDIS_URL" in warning
    wait_until(runner.is_up, STARTUP)

    task = add_task(1, 1)  # it still runs tasks
    wait_until(
        lambda: runner.check_alive() and Task.objects.filter(pk=task.pk, status=TaskStatus.FINISHED).exists()
    )
    runner.terminate()
    assert runner.wait(30) == 0


def test_an_anonymous_socket_is_closed_with_4001_by_a_separate_web_server(start_web, open_dashboard):
    web = start_web(env=redis_env())
    wait_until(web.is_up, STARTUP)
    dashboard = open_dashboard(web.port, logged_in=False)
    assert dashboard.receive(LIVE_WAIT)["type"] == "error"  # why: "Signed out: log in again."
    with pytest.raises(ConnectionClosed) as closed:
        dashboard.receive(LIVE_WAIT)  # accepted, then closed at once: no snapshot
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001


# Bad --serve addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("127.0.0.1:notaport", "expected HOST:PORT"),
        ("127.0.0.1:", "expected HOST:PORT"),
        ("127.0.0.1:70000", "the port must be 1 to 65535, got 70000"),
        ("127.0.0.1:0", "the port must be 1 to 65535, got 0"),
    ],
)
def test_a_malformed_serve_address_exits_non_zero_saying_what_is_wrong(start_runtasks, address, hint):
    runner = start_runtasks("--serve", address, "--worker-id", "bad", env=IN_MEMORY_ENV)
    assert runner.wait(STARTUP) != 0
    log = runner.log()
    assert "--serve" in log, log
    assert hint in log, log
    assert "Traceback" not in log, log
    assert not RunnerProcess.objects.exists(), "a runner signed in despite a bad --serve"


@pytest.mark.parametrize("busy", ["port in use", "unknown host"])
def test_a_serve_address_that_cannot_be_listened_on_exits_non_zero_saying_why(start_runtasks, busy):
    with socket_listening() as port:
        address = f"127.0.0.1:{port}" if busy == "port in use" else "no-such-host.invalid:8123"
        runner = start_runtasks("--serve", address, "--worker-id", "busy", env=IN_MEMORY_ENV)
        try:
            # Fixed, it exits before signing in; with the bug, the runner comes up without a dashboard.
            wait_until(lambda: runner.returncode is not None or runner.record() is not None, STARTUP)
            assert runner.returncode is not None, "runtasks --serve runs on though nothing listens"
            assert runner.returncode != 0
            log = runner.log()
            assert "--serve" in log, log
            assert address in log, log
            assert "Traceback" not in log, log
        finally:
            if runner.returncode is None:
                runner.kill()  # the fixture would otherwise fail the teardown
                runner.wait(10)


# Stopping: the runner's last events -----------------------------------------------------------------


class SlowLayer(InMemoryChannelLayer):
    """A layer whose group_send takes a while (Redis over a slow network); says when one starts."""

    delay = 0.5

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sending = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        self.sending.set()
        await asyncio.sleep(self.delay)
        await super().group_send(group, message)


def test_a_stopping_bridge_delivers_the_batch_it_is_sending():
    """Deterministic form of a race seen end to end: runtasks with REDIS_URL exits 0, runner.down lost."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-bridge-loop", daemon=True)
    thread.start()

    def on_loop(coroutine, timeout: float = LIVE_WAIT):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    try:
        layer = SlowLayer()
        channel = on_loop(layer.new_channel())
        on_loop(layer.group_add(FEED_GROUP, channel))
        bridge = ChannelBridge(loop=loop, layer=layer).start()
        bridge.sink_batch([{"type": "runner.down", "at": time.time(), "runner": "r", "interrupted_runs": []}])
        assert layer.sending.wait(LIVE_WAIT), "the bridge never sent the event"
        bridge.stop()  # while that group_send is still under way

        async def receive():
            try:
                return await asyncio.wait_for(layer.receive(channel), timeout=SlowLayer.delay + 2)
            except TimeoutError:
                return None

        message = on_loop(receive())
        assert message is not None, "the event being sent when the bridge stopped was lost"
        assert [e["type"] for e in json.loads(message["frame"])["events"]] == ["runner.down"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(LIVE_WAIT)
        loop.close()
