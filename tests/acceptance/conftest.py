"""Fixtures for acceptance tests: ``manage.py runtasks`` as real subprocesses on the test database.

The test process and its runners share one database: pytest-django's test database (a SQLite file, or a
PostgreSQL test database), which the subprocesses reach through ``DATABASE_URL``. Tests create tasks and
read results with the ORM, so they need ``@pytest.mark.django_db(transaction=True)``: the runners must
see what the test commits, and the test must see what the runners commit.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

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

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log_path = log_path
        self.worker_id = _option_value(args, "--worker-id")
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "manage.py", "runtasks", *args],
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
    for process in started:
        process.close()
    failed = bool(request.node.stash.get(_failed_phases, set()))
    if failed or leftovers:
        for process in started:
            print(f"\n{process!r}\n{process.log_tail()}")
    if leftovers and not failed:
        pytest.fail(f"runners still running at teardown (killed): {leftovers}")


@pytest.fixture
def marker_dir(tmp_path: Path) -> Path:
    """A directory for the started/release files that tests and task functions exchange."""
    path = tmp_path / "markers"
    path.mkdir()
    return path
