"""Fixtures for acceptance tests: ``manage.py runtasks`` as real subprocesses on the test database.

The test process and its runners share one database: pytest-django's test database (a SQLite file, or a
PostgreSQL test database), which the subprocesses reach through ``DATABASE_URL``. Tests create tasks and
read results with the ORM, so they need ``@pytest.mark.django_db(transaction=True)``: the runners must
see what the test commits, and the test must see what the runners commit.
"""

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as connect_websocket

from app.runnerprocess import RunnerProcess
from app.status import RunnerState

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 60


def subprocess_database_url() -> str:
    """A DATABASE_URL that points a subprocess at the test database this process uses now.

    Call it inside a test that has database access: only then is ``connection.settings_dict`` the test
    database's (pytest-django rewrites NAME to the test database, with xdist's suffix).
    """
    settings = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        name = str(settings["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError(
                f"The test database is {name!r}, which other processes cannot open: set "
                "DATABASES['default']['TEST']['NAME'] to a file path."
            )
        return f"sqlite:///{Path(name).resolve()}"
    if vendor == "postgresql":
        user = quote(settings.get("USER") or "", safe="")
        password = quote(settings.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings.get("HOST") or ""
        if host.startswith("/"):  # a Unix socket directory goes in the query string
            netloc, query = credentials, f"?host={quote(host, safe='')}"
        else:
            netloc = credentials + (f"[{host}]" if ":" in host else host)
            query = ""
        if settings.get("PORT"):
            netloc += f":{settings['PORT']}"
        return f"postgres://{netloc}/{quote(settings['NAME'], safe='')}{query}"
    raise RuntimeError(f"acceptance tests do not know how to reach a {vendor} test database")


def runner_env(**extra: str) -> dict[str, str]:
    """The environment of a runner subprocess: the test database and the tests' task functions."""
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(
        DATABASE_URL=subprocess_database_url(),
        DJANGO_SETTINGS_MODULE="server.settings",
        CONDUCTOR_TASK_MODULES="tests.functions",
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        CONDUCTOR_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class RuntasksProcess:
    """One ``manage.py runtasks`` subprocess, its output going to a log file under tmp_path."""

    command = ["manage.py", "runtasks"]

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log_path = log_path
        self.worker_id = _option_value(args, "--worker-id")
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, *self.command, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()

    def __repr__(self) -> str:
        return f"<runtasks {' '.join(self.args)} pid={self.pid} rc={self.popen.returncode}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def send(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def terminate(self) -> None:
        self.send(signal.SIGTERM)

    def kill(self) -> None:
        self.send(signal.SIGKILL)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code; fails the test (with the log's tail) if it does not exit in time."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self!r} did not exit within {timeout} s\n{self.log_tail()}") from None

    def check_alive(self) -> bool:
        """True while running; fails the test (with the log's tail) once it has exited."""
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(f"{self!r} exited early with code {code}\n{self.log_tail()}")
        return True

    def record(self) -> RunnerProcess | None:
        """This runner's RunnerProcess row, once it has signed in."""
        query = RunnerProcess.objects.filter(pid=self.pid)
        if self.worker_id:
            query = query.filter(worker_id=self.worker_id)
        return query.first()

    def is_up(self) -> bool:
        self.check_alive()
        record = self.record()
        return record is not None and record.state == RunnerState.RUNNING

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log().splitlines()[-lines:]
        return f"--- last {len(text)} lines of {self.log_path} ---\n" + "\n".join(text)

    def close(self) -> None:
        """Kill it if it still runs (only this process, by its pid) and release the log file."""
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(10)
        finally:
            self._log.close()


def _option_value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    item.stash.setdefault(_failed_phases, set())
    if report.failed:
        item.stash[_failed_phases].add(report.when)
    return report


_failed_phases = pytest.StashKey[set[str]]()


@pytest.fixture
def start_runtasks(
    request: pytest.FixtureRequest, transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., RuntasksProcess]]:
    """Start ``manage.py runtasks *args`` on the test database; killed at teardown if still running.

    Depends on ``transactional_db`` so that its teardown (killing leftovers) runs before the database
    is flushed. On failure the tail of each runner's log is printed.
    """
    started: list[RuntasksProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> RuntasksProcess:
        name = _option_value(list(args), "--worker-id") or f"runner{len(started) + 1}"
        log_path = tmp_path / f"runtasks-{name}-{len(started) + 1}.log"
        process = RuntasksProcess(list(args), log_path, runner_env(**(env or {})))
        started.append(process)
        return process

    yield start

    leftovers = [p for p in started if p.popen.poll() is None]
    failed = bool(request.node.stash.get(_failed_phases, set()))
    if failed or leftovers:
        for process in started:  # the logs first: close() ends the log files
            print(f"\n{process!r}\n{process.log_tail()}")
    for process in started:
        process.close()
    if leftovers and not failed:
        pytest.fail(f"runners still running at teardown (killed): {leftovers}")


@pytest.fixture
def marker_dir(tmp_path: Path) -> Path:
    """A directory for the started/release files that tests and task functions exchange."""
    path = tmp_path / "markers"
    path.mkdir()
    return path


# Live state: a web server subprocess and dashboards connected to it over WebSocket ----------------

#: How long a dashboard waits for one message or event (runners and web servers in other processes).
LIVE_WAIT = 15.0


def sqlite_write_lock_free(timeout: float = 1.0) -> bool:
    """Whether a write transaction can begin now (False while a stopped process holds SQLite's lock)."""
    if connection.vendor != "sqlite":
        return True
    probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=timeout)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_env() -> dict[str, str]:
    """REDIS_URL and a channel prefix of the test's own, so that parallel runs never mix.

    Redis must be running (scripts/require-services.py says how to start it): a test needing it fails
    rather than skips when it is down.
    """
    return {"REDIS_URL": TEST_REDIS_URL, "CHANNELS_PREFIX": f"conductor-test-{uuid.uuid4().hex[:8]}"}


#: The environment of a process on the in-memory channel layer (an empty REDIS_URL counts as unset).
IN_MEMORY_ENV = {"REDIS_URL": ""}


class WebProcess(RuntasksProcess):
    """The web server (daphne serving server.asgi) as a subprocess; "up" means it accepts connections."""

    command = ["-m", "daphne"]

    def __init__(self, port: int, log_path: Path, env: dict[str, str]) -> None:
        self.port = port
        super().__init__(["-b", "127.0.0.1", "-p", str(port), "server.asgi:application"], log_path, env)

    def __repr__(self) -> str:
        return f"<daphne port={self.port} pid={self.pid} rc={self.popen.returncode}>"

    def record(self) -> None:
        return None  # a web server has no RunnerProcess row

    def is_up(self) -> bool:
        self.check_alive()
        return port_open(self.port)


@pytest.fixture
def start_web(
    request: pytest.FixtureRequest, transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., WebProcess]]:
    """Start daphne on a free port, on the test database; killed at teardown (logs shown on failure).

    ``env`` adds to runner_env(): redis_env() for channels-redis, IN_MEMORY_ENV for the in-memory layer.
    """
    started: list[WebProcess] = []

    def start(env: dict[str, str] | None = None, port: int | None = None) -> WebProcess:
        log_path = tmp_path / f"daphne-{len(started) + 1}.log"
        process = WebProcess(port or free_port(), log_path, runner_env(**(env or {})))
        started.append(process)
        return process

    yield start

    if request.node.stash.get(_failed_phases, set()):
        for process in started:
            print(f"\n{process!r}\n{process.log_tail()}")  # before close(), which closes the log
    for process in started:
        process.close()


class DashboardSocket:
    """A dashboard's WebSocket (docs/protocol.md); keeps every message and event it has received.

    The waits look through everything received so far, then read more until a deadline: events come
    in batches, and what a test waits for may have arrived with an earlier message.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.connection.send(json.dumps(message))

    def receive(self, timeout: float = LIVE_WAIT) -> dict[str, Any]:
        message = json.loads(self.connection.recv(timeout=timeout))
        self.messages.append(message)
        if message.get("type") == "events":
            self.events.extend(message["events"])
        return message

    def wait_for_message(
        self, predicate: Callable[[dict], Any], what: str, timeout: float = LIVE_WAIT
    ) -> dict[str, Any]:
        return self._wait(lambda: next((m for m in self.messages if predicate(m)), None), what, timeout)

    def wait_for_event(
        self, predicate: Callable[[dict], Any], what: str, timeout: float = LIVE_WAIT
    ) -> dict[str, Any]:
        return self._wait(lambda: next((e for e in self.events if predicate(e)), None), what, timeout)

    def snapshot(self, timeout: float = LIVE_WAIT) -> dict[str, Any]:
        """The latest snapshot received (the one sent on connect, unless another was asked for)."""
        return self.wait_for_message(lambda m: m.get("type") == "snapshot", "a snapshot", timeout)

    def _wait(self, found: Callable[[], Any], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while (result := found()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; received: {self.summary()}")
            try:
                self.receive(left)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                raise AssertionError(
                    f"the socket closed ({exc}) while waiting for {what}; received: {self.summary()}"
                ) from None
        return result

    def summary(self, last: int = 30) -> str:
        def describe(message: dict) -> str:
            if message.get("type") != "events":
                return str(message.get("type"))
            return "events[" + ",".join(e["type"] for e in message["events"]) + "]"

        kinds = [describe(m) for m in self.messages[-last:]]
        return f"{len(self.messages)} messages, last {len(kinds)}: {kinds}"


def staff_session_key(username: str = "staff") -> str:
    """A staff superuser logged in through a real database session; returns the session key."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_superuser(username, f"{username}@example.com", "not-used")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


@pytest.fixture
def open_dashboard(transactional_db: None) -> Iterator[Callable[..., DashboardSocket]]:
    """Connect dashboards to ``ws://127.0.0.1:<port>/ws/dashboard/`` (as a staff superuser by default).

    ``logged_in=False`` connects anonymously. Every socket is closed at teardown.
    """
    from django.conf import settings

    staff_keys: list[str] = []
    with contextlib.ExitStack() as sockets:

        def open_socket(port: int, logged_in: bool = True) -> DashboardSocket:
            headers = {}
            if logged_in:
                if not staff_keys:
                    staff_keys.append(staff_session_key())
                headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={staff_keys[0]}"
            connection = sockets.enter_context(
                connect_websocket(
                    f"ws://127.0.0.1:{port}/ws/dashboard/",
                    origin=f"http://127.0.0.1:{port}",
                    additional_headers=headers,
                    proxy=None,
                    open_timeout=LIVE_WAIT,
                    close_timeout=2,
                )
            )
            return DashboardSocket(connection)

        yield open_socket
