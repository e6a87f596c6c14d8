"""Children die with their runner: a SIGKILLed runner leaves no ``isolation="process"`` body running.

Two real ``runtasks`` processes on one database: the first runs a process-isolated task and is SIGKILLed
while the task's child is starting, or while its body runs; the second recovers the task and runs it
again. The judge is the journal the task's body writes (tests/journal_functions.py ``ticks``): each line
holds its time, the body's pid and its parent's pid. No line of a child of the dead runner may come
after the runner died, nor any line with parent pid 1 (an orphan); the second body starts after the
first one's last line; the first child is gone, and no ``conductor-run-*`` folder is left in the
runners' temp directory (their own, so that nothing else on the machine counts).
"""

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import orphans
from app.status import TaskStatus
from app.task import Task
from tests import journal_functions
from tests.acceptance.conftest import RuntasksProcess
from tests.acceptance.test_reliability import RUNNER_ARGS, SHORT_HEARTBEATS, STARTUP, assert_no_overlap
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("reliability"),  # SIGKILLs and timing: one after another, as the others
]

#: The recovering runner presumes the dead one dead after SHORT_HEARTBEATS' 1.5 s, then reruns the task.
RECOVERED_AND_RERUN = 40.0


@dataclass(frozen=True)
class Line:
    event: str
    at: float
    pid: int
    ppid: int


def journal(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [Line(event, float(at), int(pid), int(ppid)) for event, at, pid, ppid, *_ in lines]


def children_of(parent: int) -> list[int]:
    """Pids of ``python -m app.child`` processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if int(stat_fields[1]) == parent and b"app.child" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    """The runners' TMPDIR: where their run folders go."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture
def start_runner(start_runtasks, temp_dir):
    def start(worker_id: str) -> RuntasksProcess:
        env = {
            **SHORT_HEARTBEATS,
            "TMPDIR": str(temp_dir),
            "CONDUCTOR_TASK_MODULES": "tests.journal_functions",
        }
        runner = start_runtasks(*RUNNER_ARGS, "--worker-id", worker_id, env=env)
        wait_until(runner.is_up, STARTUP)
        return runner

    return start


def ticking_task(path: Path, seconds: float) -> Task:
    return Task.objects.create(
        name="ticks", func=journal_functions.ticks, args_in={"path": str(path), "seconds": seconds},
        isolation="process",
    )  # fmt: skip


def sigkill(runner: RuntasksProcess) -> float:
    """SIGKILL the runner; returns a time by which it was dead (its parent-death signals sent)."""
    runner.kill()
    assert runner.wait(10) == -signal.SIGKILL
    return time.time()


def finished(task: Task) -> bool:
    task.refresh_from_db()
    return task.status == TaskStatus.FINISHED


def assert_nothing_left(child: int, temp_dir: Path) -> None:
    wait_until(lambda: not orphans.is_running(child), 10, message=f"the orphan child {child} ended")
    wait_until(lambda: not list(temp_dir.glob("conductor-run-*")), 10, message="no run folder was left")


def body_spans(lines: list[Line]) -> list[tuple[float, float, int]]:
    """(first line, last line, pid) of each body: a body ran at least from the one to the other."""
    spans: dict[int, list[float]] = {}
    for line in lines:
        spans.setdefault(line.pid, []).append(line.at)
    return [(min(times), max(times), pid) for pid, times in spans.items()]


def test_a_runner_killed_while_its_child_starts_leaves_no_body_to_run(start_runner, temp_dir, tmp_path):
    path = tmp_path / "journal"
    first = start_runner("first")
    task = ticking_task(path, seconds=1)
    # Frozen as soon as it exists, long before Django is set up: as if its start were slow.
    [child] = wait_until(lambda: first.check_alive() and children_of(first.pid), 30, interval=0.002)
    os.kill(child, signal.SIGSTOP)
    assert journal(path) == [], "the child reached the body before the test could freeze it"
    second = start_runner("second")
    died = sigkill(first)
    os.kill(child, signal.SIGCONT)  # a child that outlived its runner would now go on to the body

    wait_until(lambda: second.check_alive() and finished(task), RECOVERED_AND_RERUN)
    lines = journal(path)
    assert {line.pid for line in lines} & {child} == set(), f"the orphan ran the body: {lines}"
    starts = [line for line in lines if line.event == "start"]
    assert [line.ppid for line in starts] == [second.pid], f"one body, started by the second runner: {lines}"
    assert starts[0].at > died
    assert_nothing_left(child, temp_dir)
    second.terminate()
    assert second.wait(30) == 0


def test_a_runner_killed_while_its_child_runs_takes_the_body_with_it(start_runner, temp_dir, tmp_path):
    path = tmp_path / "journal"
    first = start_runner("first")
    task = ticking_task(path, seconds=60)
    wait_until(lambda: first.check_alive() and any(line.event == "tick" for line in journal(path)), 30)
    [child] = {line.pid for line in journal(path)}
    second = start_runner("second")
    Task.objects.filter(pk=task.pk).update(args_in={"path": str(path), "seconds": 1})  # for the rerun
    died = sigkill(first)

    wait_until(lambda: second.check_alive() and finished(task), RECOVERED_AND_RERUN)
    lines = journal(path)
    first_body = [line for line in lines if line.pid == child]
    second_body = [line for line in lines if line.pid != child]
    assert first_body[-1].at < died, f"the first body ran on after its runner died: {first_body[-3:]}"
    assert "end" not in {line.event for line in first_body}
    assert {line.ppid for line in first_body} == {first.pid}
    assert {line.ppid for line in second_body} == {second.pid}, "one rerun, by the second runner"
    assert [line.event for line in second_body][:1] == ["start"]
    assert second_body[-1].event == "end"
    assert_no_overlap(body_spans(lines), "bodies of the task")
    assert_nothing_left(child, temp_dir)
    second.terminate()
    assert second.wait(30) == 0
