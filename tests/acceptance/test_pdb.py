"""``use_pdb`` at a real terminal: ``manage.py runtasks`` inside tmux, driven with keys, read off the pane.

Each test starts its own tmux server on a private socket (``tmux -L``), killed at teardown. The pane is
read with ``capture-pane`` (its whole history), polled until what the test waits for shows.
"""

import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.acceptance.conftest import REPO_ROOT, runner_env
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def tmux_installed() -> None:
    """A missing tmux fails these tests (never skips them): `make test` installs it."""
    assert shutil.which("tmux"), (
        "tmux is not installed: run `make test` (it installs it) or apt-get install tmux"
    )


#: How long a runner may take to start and reach a prompt on a loaded machine.
STARTUP = 30.0
#: pdb's location line for the frame that raised, in tests/functions.py's fail().
LOCATION = re.compile(r"^> \S*tests/functions\.py\(\d+\)fail\(\)$", re.MULTILINE)
PROMPT = "(Pdb) "
#: The one line a run's log keeps of a session.
#: Short heartbeats, so that a session outlasts the time after which a silent runner is presumed dead.
HEARTBEATS = {"CONDUCTOR_HEARTBEAT": "0.5", "CONDUCTOR_HEARTBEAT_TIMEOUT": "1.5"}
SESSION_NOTE = "[conductor] use_pdb: debugging session on the runner's terminal"
EXITED = re.compile(r"^runtasks exited with status (\d+)$", re.MULTILINE)


class Pane:
    """``manage.py runtasks`` in the one pane of a private tmux server."""

    def __init__(self, runtasks_args: list[str], env: dict[str, str]) -> None:
        self.socket = f"conductor-pdb-{uuid.uuid4().hex[:10]}"
        runtasks = " ".join([sys.executable, "manage.py", "runtasks", *runtasks_args])
        # Not exec'd: the shell stays to print the exit code (tmux's own pane_dead_status proved unreliable).
        command = f'cd {REPO_ROOT} && {runtasks}; echo "runtasks exited with status $?"'
        # The server starts with this environment, and its pane's shell inherits it.
        self._tmux("new-session", "-d", "-x", "220", "-y", "50", command, env=env)
        self._tmux("set-option", "-g", "remain-on-exit", "on")  # read the pane after the shell exits
        self.socket_path = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=env,
                                capture_output=True, text=True, check=True, timeout=10)  # fmt: skip
        return result.stdout

    def text(self) -> str:
        """Everything the pane has shown, wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-")

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-l", line)
        self.press("Enter")

    def press(self, key: str) -> None:
        self._tmux("send-keys", key)

    def wait_for(self, pattern: str | re.Pattern, count: int = 1, timeout: float = 15.0) -> str:
        """The pane's text once ``pattern`` shows on it ``count`` times; the text in the failure if not."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))

        def shown() -> str | None:
            text = self.text()
            return text if len(regex.findall(text)) >= count else None

        try:
            return wait_until(shown, timeout=timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(
                f"{pattern!r} not shown {count}x within {timeout} s; pane:\n{self.text()}"
            ) from None

    def exit_status(self, timeout: float = STARTUP) -> int:
        """The runner's exit code, which the pane's shell prints when the runner has exited."""
        text = self.wait_for(EXITED, timeout=timeout)
        return int(EXITED.search(text).group(1))

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        self.socket_path.unlink(missing_ok=True)  # tmux leaves it behind when killed


@pytest.fixture
def start_in_tmux(transactional_db: None) -> Iterator:
    """Start ``runtasks *args`` in a fresh tmux; the tmux server (and the runner) killed at teardown."""
    panes: list[Pane] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Pane:
        pane = Pane(["--poll", "0.5", *args], runner_env(**(env or {})))
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.kill()


def failing(name: str, message: str, **fields) -> Task:
    task = Task(name=name, func="tests.functions.fail", args_in={"message": message}, use_pdb=True, **fields)
    task.save()
    return task


def finished_run(task: Task, timeout: float = 15.0) -> TaskRun:
    return wait_until(
        lambda: TaskRun.objects.filter(task=task).exclude(status=RunStatus.RUNNING).first(),
        timeout=timeout,
        message=f"a recorded run of {task.name}",
    )


def test_the_debugger_reads_and_writes_the_terminal_not_the_runs_log(start_in_tmux):
    task = failing("pdb-one", "needle-7f3a")
    pane = start_in_tmux("--max-tasks", "1")

    pane.wait_for(PROMPT, timeout=STARTUP)
    pane.wait_for(LOCATION)
    pane.type("p message")
    pane.wait_for("'needle-7f3a'")  # p shows the repr, which the traceback never does
    pane.type("q")

    run = finished_run(task)
    assert run.status == RunStatus.FAILED
    assert run.error.rstrip().endswith("ValueError: needle-7f3a")
    assert "(Pdb)" not in run.log
    assert "'needle-7f3a'" not in run.log
    assert not LOCATION.search(run.log)
    assert run.log.count(SESSION_NOTE) == 1
    assert pane.exit_status() == 0


def test_two_failing_runs_take_turns_at_the_terminal(start_in_tmux):
    first, second = failing("pdb-a", "from-a"), failing("pdb-b", "from-b")
    pane = start_in_tmux("--threads", "2", "--max-tasks", "2")

    pane.wait_for("failed too; its debugger opens when the current session ends", timeout=STARTUP)
    text = pane.wait_for(PROMPT)  # after the session's first line, which names the run that holds it
    holder = re.search(r"\[conductor\] (pdb-[ab])#\d+ failed: ValueError", text).group(1)
    waiter = "pdb-b" if holder == "pdb-a" else "pdb-a"
    pane.type("p message")
    text = pane.wait_for(f"'from-{holder[-1]}'")
    assert re.search(rf"\[conductor\] {waiter}#\d+ failed too", text)
    assert not re.search(rf"\[conductor\] {waiter}#\d+ failed: ValueError", text)  # ... and no session yet
    assert text.count(PROMPT) == 2  # the holder's first prompt and the one after "p message"

    pane.type("q")
    pane.wait_for(re.compile(rf"\[conductor\] {waiter}#\d+ failed: ValueError"))
    pane.wait_for(PROMPT, count=3)
    pane.type("p message")
    pane.wait_for(f"'from-{waiter[-1]}'")
    pane.type("c")

    for task in (first, second):
        run = finished_run(task)
        assert run.status == RunStatus.FAILED
        assert run.log.count(SESSION_NOTE) == 1
        assert "(Pdb)" not in run.log
    assert pane.exit_status() == 0


def test_kill_time_is_lifted_while_a_person_debugs(start_in_tmux):
    task = failing("pdb-slow-human", "still-here", kill_time=1)
    pane = start_in_tmux("--max-tasks", "1")

    pane.wait_for(PROMPT, timeout=STARTUP)
    pane.wait_for("is at its debugger past kill_time=1.0 s: kill_time lifted for this run")
    pane.type("p message")  # the session outlived kill_time and still answers
    pane.wait_for("'still-here'")
    pane.type("q")

    run = finished_run(task)
    assert run.status == RunStatus.FAILED
    assert run.error.rstrip().endswith("ValueError: still-here")
    assert pane.exit_status() == 0


def test_the_runner_heartbeats_and_runs_other_tasks_while_a_session_is_open(start_in_tmux):
    failing("pdb-open", "left-open")
    pane = start_in_tmux("--worker-id", "pdb-runner", env=HEARTBEATS)
    pane.wait_for(PROMPT, timeout=STARTUP)
    opened = timezone.now()

    other = Task(name="meanwhile", func="tests.functions.add", args_in={"a": 2, "b": 3})
    other.save()
    run = finished_run(other)
    assert (run.status, run.output) == (RunStatus.FINISHED, 5)
    past_timeout = opened + timedelta(seconds=2 * float(HEARTBEATS["CONDUCTOR_HEARTBEAT_TIMEOUT"]))
    runner = wait_until(
        lambda: RunnerProcess.objects.filter(worker_id="pdb-runner", heartbeat_at__gt=past_timeout).first(),
        message="a heartbeat two heartbeat timeouts into the session",
    )
    assert runner.state == RunnerState.RUNNING

    pane.type("p message")  # still the same session
    pane.wait_for("'left-open'")
    pane.type("q")
    pane.press("C-c")
    assert pane.exit_status() == 0


def test_stopping_the_runner_ends_a_session_and_keeps_the_failure(start_in_tmux):
    task = failing("pdb-stopped", "ctrl-c")
    pane = start_in_tmux("--grace", "0.5")

    pane.wait_for(PROMPT, timeout=STARTUP)
    pane.wait_for(LOCATION)
    pane.press("C-c")  # what a person does: SIGINT to the runner, which then stops

    pane.wait_for("debugging session ended by RunInterrupted")
    run = finished_run(task)
    assert run.status == RunStatus.FAILED
    assert "ended by RunInterrupted" in run.log
    assert pane.exit_status() == 0


def test_without_a_terminal_use_pdb_is_skipped_and_the_failure_recorded(start_runtasks, tmp_path: Path):
    task = failing("pdb-no-tty", "nobody-there")
    runner = start_runtasks("--max-tasks", "1")  # stdin from /dev/null, output to a file

    assert runner.wait(timeout=STARTUP) == 0
    run = TaskRun.objects.get(task=task)
    assert run.status == RunStatus.FAILED
    assert run.error.rstrip().endswith("ValueError: nobody-there")
    assert run.log.count("[conductor] use_pdb skipped: the runner has no terminal") == 1
    assert "WARNING conductor.debugging: use_pdb skipped for pdb-no-tty#" in runner.log()
    assert SESSION_NOTE not in run.log
