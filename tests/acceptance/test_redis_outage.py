"""Redis goes away and comes back: tasks go on, the dashboard shows the runner degraded, news resumes.

A private ``redis-server`` (Debian's, on a free port, keeping nothing on disk) serves one runner and one
web server as real subprocesses; it is killed with SIGKILL and started again on the same port, as an
operator's Redis might crash and be restarted by systemd, forgetting every group membership.
"""

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.runnerprocess import RunnerProcess
from app.status import TaskStatus
from app.task import Task
from tests.acceptance.conftest import free_port, port_open
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

STARTUP = 30.0
#: Heartbeats (2 s) carry the news, so a lost layer is noticed within a few seconds.
NOTICE = 20.0


class RedisServer:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (Debian's redis-server package provides it)"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: port_open(self.port), 10)

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    if server.popen.poll() is None:
        server.kill()


def runner_row(worker_id: str) -> RunnerProcess:
    return RunnerProcess.objects.get(worker_id=worker_id)


def add_task(a: int, b: int) -> Task:
    return Task.objects.create(name=f"add-{uuid.uuid4().hex[:6]}", func="tests.functions.add",
                               args_in={"a": a, "b": b})  # fmt: skip


def snapshot_of(dashboard, predicate, what: str) -> dict:
    """Ask for snapshots until one satisfies ``predicate``."""
    found: list[dict] = []

    def ask() -> bool:
        request = f"s-{uuid.uuid4().hex[:6]}"
        dashboard.send({"type": "snapshot", "id": request})
        seen = len(dashboard.messages)
        snapshot = dashboard.wait_for_message(
            lambda m: m.get("type") == "snapshot" and dashboard.messages.index(m) >= seen, "a snapshot"
        )
        found.append(snapshot)
        return predicate(snapshot)

    wait_until(ask, NOTICE, message=f"no snapshot with {what}; last: {found[-1:]}")
    return found[-1]


def news_of_a_new_task(dashboard) -> bool:
    task = add_task(4, 4)
    try:
        dashboard.wait_for_event(
            lambda e: e["type"] == "task.finished" and e.get("task") == task.pk, "task.finished", 3
        )
    except AssertionError:
        return False
    return True


def test_a_runner_that_loses_redis_runs_tasks_shows_degraded_and_recovers(
    redis_server, start_runtasks, start_web, open_dashboard
):
    env = {"REDIS_URL": redis_server.url, "CHANNELS_PREFIX": f"outage-{uuid.uuid4().hex[:6]}"}
    web = start_web(env=env)
    runner = start_runtasks("--poll", "0.2", "--worker-id", "cut-off", env=env)
    wait_until(lambda: web.is_up() and runner.is_up(), STARTUP)
    dashboard = open_dashboard(web.port)
    assert dashboard.snapshot()["live"]["ok"] is True

    redis_server.kill()

    wait_until(lambda: runner_row("cut-off").degraded, NOTICE, message="runner never recorded degraded")
    assert "channel layer unreachable" in runner_row("cut-off").degraded
    during = add_task(2, 3)  # tasks go on without Redis
    wait_until(lambda: Task.objects.get(pk=during.pk).status == TaskStatus.FINISHED, NOTICE)
    assert Task.objects.get(pk=during.pk).output == 5
    # The page stays open on the database view and shows why.
    snapshot = snapshot_of(
        dashboard,
        lambda s: [r["state"] for r in s["runners"] if r["worker_id"] == "cut-off"] == ["degraded"],
        "the runner degraded",
    )
    assert snapshot["live"]["ok"] is False
    assert "Redis" in snapshot["live"]["reason"]
    assert "channel layer unreachable" in snapshot["runners"][0]["degraded_reason"]

    redis_server.start()  # the same port, empty: every group membership is forgotten

    wait_until(lambda: not runner_row("cut-off").degraded, NOTICE, message="runner stayed degraded")
    dashboard.wait_for_message(
        lambda m: m.get("type") == "snapshot" and m["live"]["ok"] and m["runners"][0]["state"] == "running",
        "a snapshot saying live state is back",
        NOTICE,
    )
    # News flows again on the same page, without a reload. Events are delivered at most once (a message
    # sent as Redis came back may be lost, which pages see as a gap in seq), so a few tasks may be needed.
    wait_until(lambda: news_of_a_new_task(dashboard), NOTICE, message="no live events after Redis came back")
    log = runner.log()
    assert "channel layer unreachable" in log
    assert "reaches the channel layer again" in log
    runner.terminate()
    assert runner.wait() == 0
