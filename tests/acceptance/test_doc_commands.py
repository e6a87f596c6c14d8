"""The shell commands of README.md and docs/ run as the pages show them, and print what they show.

Each page's blocks marked ``<!-- runnable ... -->`` run in order, as a reader would run them, in an
environment of the page's own (docs/README.md): a migrated SQLite file of its own, ``CONDUCTOR_VAR_DIR``
in a temporary directory, the in-memory channel layer, ``.venv/bin`` first on ``PATH``. A ``serves``
block is started and kept up (port 8000 becomes a free port) while the page's next blocks run, then
stopped with SIGTERM, and must exit 0. Where a page shows output (an ``<!-- output -->`` block), what the
commands print must match it (``...`` standing for any text). Blocks marked ``installed`` are what a
user's own project prints: tests/install/test_wheel.py runs them there.

Also here: runtasks' log level, which README.md and docs/deploy.md describe (``-v`` over
``CONDUCTOR_LOG_LEVEL``).
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import docblocks
from tests.acceptance.conftest import free_port, port_open

REPO_ROOT = docblocks.REPO_ROOT
COMMAND_TIMEOUT = 60


def runs_here(block: docblocks.Block) -> bool:
    """Runnable in this repository: ``installed`` blocks run in a new project (tests/install)."""
    return block.runnable and "installed" not in block.options


SERVE_TIMEOUT = 30
RUNNABLE_PAGES = [p for p in docblocks.pages() if any(map(runs_here, docblocks.blocks(p)))]


def base_env(tmp_path: Path, database: Path) -> dict[str, str]:
    """A reader's shell in this checkout: the test's own database, var/ and no Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_", "CONDUCTOR_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        CONDUCTOR_VAR_DIR=str(tmp_path / "var"),
        REDIS_URL="",
        PATH=f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        PYTHONUNBUFFERED="1",
    )
    return env


def env_file(page: Path, name: str, env: dict[str, str]) -> dict[str, str]:
    """The page's environment file, pointed at this test's database, var/ and (absent) Redis."""
    text = docblocks.marked_file(page, name)
    loaded = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    loaded.pop("CONDUCTOR_TASK_MODULES", None)  # an example project's modules
    keep = ("DATABASE_URL", "REDIS_URL", "CONDUCTOR_VAR_DIR")
    return {**env, **{k: v for k, v in loaded.items() if k not in keep},
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}  # fmt: skip


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each page (migrating costs seconds)."""
    directory = tmp_path_factory.mktemp("docs-db")
    database = directory / "db.sqlite3"
    env = base_env(directory, database)
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return database


class Server:
    """A ``serves`` block: its script runs with ``exec`` before its last command, so the signal reaches
    the server itself."""

    def __init__(self, block: docblocks.Block, script: str, env: dict[str, str], log: Path) -> None:
        self.block = block
        self.log_path = log
        self._log = log.open("wb")
        command = ["sh", "-e", "-c", docblocks.exec_last(script)]
        self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env,
                                      stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT)  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_up(self, port: int) -> None:
        """Until its output block's lines have appeared (8000 as ``port``), or else ``port`` is open."""
        expected = re.sub(r"\b8000\b", str(port), self.block.output.text) if self.block.output else None
        deadline = time.monotonic() + SERVE_TIMEOUT
        while not (docblocks.output_contains(expected, self.output()) if expected else port_open(port)):
            if self.popen.poll() is not None:
                pytest.fail(f"{self.block.where} exited with {self.popen.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.block.where} was not up within {SERVE_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(SERVE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"{self.block.where} did not stop within {SERVE_TIMEOUT} s:\n{self.output()}")
        finally:
            self._log.close()
        assert code == 0, f"{self.block.where} exited {code} on SIGTERM:\n{self.output()}"


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:  # a failed test's server, still up: only the processes this test started
        if server.popen.poll() is None:
            server.popen.kill()
            server.popen.wait()
            server._log.close()


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=docblocks.page_name)
def test_the_pages_runnable_commands_run_and_print_what_the_page_shows(page, tmp_path, migrated_database,
                                                                       servers):  # fmt: skip
    database = tmp_path / "db.sqlite3"
    shutil.copy(migrated_database, database)
    env = base_env(tmp_path, database)
    port = free_port()  # what 8000 stands for: the port of the last server started
    ran = 0
    for block in docblocks.blocks(page):
        if not runs_here(block):
            continue
        block_env = env_file(page, block.options["env"], env) if "env" in block.options else env
        if "serves" in block.options:
            stop_all(servers)
            port = free_port()
        script = re.sub(r"\b8000\b", str(port), block.text)
        if "serves" in block.options:
            servers.append(Server(block, script, block_env, tmp_path / f"serve-{block.line}.log"))
            servers[-1].wait_until_up(port)
        else:
            run_block(block, script, block_env)
        ran += 1
    stop_all(servers)

    assert ran == sum(map(runs_here, docblocks.blocks(page)))


def run_block(block: docblocks.Block, script: str, env: dict[str, str]) -> None:
    done = subprocess.run(["sh", "-e", "-c", script], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=COMMAND_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{done.stdout}"
    if block.output is not None:
        assert docblocks.output_matches(block.output.text, done.stdout), (
            f"{block.where} printed\n{done.stdout}\nwhile {block.output.where} shows\n{block.output.text}"
        )


def stop_all(servers: list[Server]) -> None:
    for server in servers:
        if server.popen.returncode is None:
            server.stop()


# runtasks' log level: -v given wins, else the logging settings (CONDUCTOR_LOG_LEVEL here) ----------


def runtasks_once(tmp_path: Path, database: Path, *args: str, **env: str) -> str:
    shutil.copy(database, tmp_path / "db.sqlite3")
    done = subprocess.run([sys.executable, "manage.py", "runtasks", "--once", *args], cwd=REPO_ROOT,
                          env={**base_env(tmp_path, tmp_path / "db.sqlite3"), **env}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


UP = re.compile(r"INFO +conductor\.runner: Runner \S+ up: ")
EVENT = re.compile(r"DEBUG +conductor\.events: runner\.up ")


@pytest.mark.parametrize(
    ("args", "env", "up", "events"),
    [
        pytest.param((), {}, True, False, id="default-INFO"),
        pytest.param((), {"CONDUCTOR_LOG_LEVEL": "WARNING"}, False, False, id="setting-WARNING"),
        pytest.param((), {"CONDUCTOR_LOG_LEVEL": "DEBUG"}, True, True, id="setting-DEBUG"),
        pytest.param(("-v", "1"), {"CONDUCTOR_LOG_LEVEL": "WARNING"}, True, False, id="v1-over-WARNING"),
        pytest.param(("-v", "0"), {"CONDUCTOR_LOG_LEVEL": "DEBUG"}, False, False, id="v0-over-DEBUG"),
        pytest.param(("-v", "2"), {}, True, True, id="v2"),
    ],
)
def test_runtasks_logs_at_the_level_v_gives_else_at_conductor_log_level(tmp_path, migrated_database, args,
                                                                         env, up, events):  # fmt: skip
    said = runtasks_once(tmp_path, migrated_database, *args, **env)

    assert bool(UP.search(said)) is up, said
    assert bool(EVENT.search(said)) is events, said
