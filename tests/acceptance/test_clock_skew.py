"""One clock: runners whose clocks are wrong keep every guarantee, and a runner presumed dead starts nothing.

Skewed runners run under libfaketime (``LD_PRELOAD``, ``FAKETIME=+30s``; monotonic clocks left alone),
on PostgreSQL, whose server clock libfaketime does not touch: that is the one clock Conductor times by
(app/dbclock.py). On SQLite everything lives on one machine, whose clock is the database's, so the skew
tests do not apply there. The judge is the journal the task bodies write (tests/journal_functions.py
``clocked``): each body notes ``start`` and ``end`` with the database server's time, read by a query, so
the lines of processes with different clocks compare. Conductor's rows are checked too, but second.
"""

import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection, transaction

from app import dbclock
from app.checks import check_clock_skew
from app.lease import DB_USE, Lease
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import journal_functions
from tests.acceptance.conftest import (
    IN_MEMORY_ENV,
    REPO_ROOT,
    RuntasksProcess,
    free_port,
    port_open,
    runner_env,
    sqlite_write_lock_free,
)
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
#: The issue's measurements were made with these: a runner is presumed dead 5 s after its last heartbeat.
CLOCKS = {
    "CONDUCTOR_HEARTBEAT": "1",
    "CONDUCTOR_HEARTBEAT_TIMEOUT": "5",
    "CONDUCTOR_TASK_MODULES": "tests.journal_functions",
}
STARTUP = 45.0
#: Longer than the heartbeat timeout: a runner that misjudged another's heartbeat would recover it meanwhile.
LONG_RUN = 7.0
#: How late a task saved with run_in may start, by the database's clock: a wake-up, a claim, a thread.
WAKE_LATENCY = 0.5
RUN_IN = 20
JOURNAL = "tests.journal_functions.clocked"  # registered here by importing journal_functions
#: How far from the database's time an event may be stamped: a round trip, the offset's error.
EVENT_TOLERANCE = 1.0
#: A page asks for snapshots when a running runner's heartbeat is older (static/conductor/render/runners.js).
SILENT_RUNNER_S = 10
FLAPPING = ("presumed dead", "Signing in again", "lost its heartbeat")

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="one machine: the local clock is the database's"
)


@dataclass(frozen=True)
class Line:
    event: str
    key: str
    at: float  # the database's time, epoch seconds
    pid: int


def read_journal(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        event, key, at, pid = text.split()
        lines.append(Line(event, key, float(at), int(pid)))
    return lines


def bodies(path: Path) -> dict[str, list[tuple[float, float, int]]]:
    """Each key's bodies: (start, end, pid), paired in journal order per pid."""
    started: dict[tuple[str, int], list[float]] = defaultdict(list)
    found: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for line in read_journal(path):
        if line.event == "start":
            started[(line.key, line.pid)].append(line.at)
        else:
            found[line.key].append((started[(line.key, line.pid)].pop(0), line.at, line.pid))
    return found


def started(path: Path, key: str) -> bool:
    return any(line.event == "start" and line.key == key for line in read_journal(path))


def clocked_task(path: Path, key: str, seconds: float = 0.0, **fields) -> Task:
    return Task.objects.create(
        name=key, func=JOURNAL, args_in={"path": str(path), "key": key, "seconds": seconds}, **fields
    )


@pytest.fixture
def libfaketime() -> Path:
    if not LIBFAKETIME.exists():
        pytest.fail(f"libfaketime is missing ({LIBFAKETIME}); make test installs it (package faketime)")
    return LIBFAKETIME


def skewed(library: Path, skew: str) -> dict[str, str]:
    """The environment of a process whose wall clock is ``skew`` off (monotonic clocks left alone)."""
    return {"LD_PRELOAD": str(library), "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def clock_of(env: dict[str, str]) -> float:
    """How far ahead of this process's clock a process started with ``env`` finds itself."""
    command = [sys.executable, "-c", "import time; print(time.time())"]
    before = time.time()
    output = subprocess.run(command, env={**runner_env(), **env}, capture_output=True, text=True, check=True)
    return float(output.stdout) - (before + time.time()) / 2


def save_from(env: dict[str, str], **task: object) -> int:
    """Save a Task (``Task.save()``, as a web process does) in a process started with ``env``; its id."""
    code = f"from app.task import Task; t = Task(**{task!r}); t.save(); print(t.pk)"
    output = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO_ROOT, env=runner_env(**CLOCKS, **env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert output.returncode == 0, output.stderr
    return int(output.stdout.split()[-1])


def finished(*tasks: Task) -> bool:
    return Task.objects.filter(pk__in=[t.pk for t in tasks], status=TaskStatus.FINISHED).count() == len(tasks)


def assert_no_flapping(*runners: RuntasksProcess) -> None:
    for runner in runners:
        log = runner.log()
        assert not [word for word in FLAPPING if word in log], f"{runner!r} flapped:\n{runner.log_tail()}"


@postgresql_only
@pytest.mark.parametrize("skew", ["+30s", "-30s", "+15s"])
def test_a_runner_with_a_skewed_clock_keeps_every_guarantee(skew, start_runtasks, libfaketime, tmp_path):
    journal = tmp_path / "journal"
    offset_env = skewed(libfaketime, skew)
    seconds = float(skew.removesuffix("s"))
    assert abs(clock_of(offset_env) - seconds) < 2, "libfaketime does not shift the clock"

    healthy = start_runtasks("--threads", "1", "--poll", "30", "--queue", "default", "--worker-id", "healthy",
                             env=CLOCKS)  # fmt: skip
    wait_until(healthy.is_up, STARTUP)
    healthy_long = clocked_task(journal, "healthy-long", LONG_RUN)
    wait_until(lambda: healthy.check_alive() and started(journal, "healthy-long"), 30)

    # Joins while the healthy runner runs a task longer than the heartbeat timeout.
    off = start_runtasks("--threads", "1", "--poll", "30", "--queue", "default,skewed",
                         "--worker-id", "skewed", env={**CLOCKS, **offset_env})  # fmt: skip
    saved_from = time.time()
    before = dbclock.now()
    delayed_pk = save_from(offset_env, name="delayed", func=JOURNAL, queue="skewed", run_in=RUN_IN,
                           args_in={"path": str(journal), "key": "delayed"})  # fmt: skip
    after = dbclock.now()
    wait_until(off.is_up, STARTUP)
    skewed_long = clocked_task(journal, "skewed-long", LONG_RUN, queue="skewed")
    leased = [clocked_task(journal, f"db-use-{n}", 1.5, db_use=True) for n in range(2)]
    delayed = Task.objects.get(pk=delayed_pk)
    wait_until(lambda: off.check_alive() and finished(healthy_long, skewed_long, *leased, delayed),
               RUN_IN + 30 - (time.time() - saved_from))  # fmt: skip

    found = bodies(journal)
    # Each body ran once, where it was claimed, and no running task was taken from a live runner.
    assert {key: len(runs) for key, runs in found.items()} == {
        "healthy-long": 1, "skewed-long": 1, "db-use-0": 1, "db-use-1": 1, "delayed": 1,
    }  # fmt: skip
    assert found["healthy-long"][0][2] == healthy.pid
    assert found["skewed-long"][0][2] == off.pid
    assert found["delayed"][0][2] == off.pid
    assert not TaskRun.objects.exclude(status=RunStatus.FINISHED).exists()
    assert_no_flapping(healthy, off)
    # db_use: one at a time across both runners.
    first, second = sorted(found["db-use-0"] + found["db-use-1"])
    assert first[1] <= second[0], f"db_use bodies overlapped: {found}"
    assert Lease.objects.get(name=DB_USE).task_id is None
    # run_in counts from the database's clock, and the skewed runner woke on time by that clock.
    assert before.timestamp() + RUN_IN <= delayed.next_run.timestamp() <= after.timestamp() + RUN_IN
    late = found["delayed"][0][0] - delayed.next_run.timestamp()
    assert 0 <= late <= WAKE_LATENCY, f"delayed started {late:.3f} s after its due time"
    # The skew shows: the runner's row, its warning, the system check.
    record = RunnerProcess.objects.get(worker_id="skewed")
    assert abs(record.clock_offset + seconds) < 1
    assert abs(RunnerProcess.objects.get(worker_id="healthy").clock_offset) < 1
    direction = "ahead of" if seconds > 0 else "behind"
    assert f"{abs(seconds):.1f} s {direction} the database's" in off.log()
    assert "CLOCK_SKEW_WARNING" not in healthy.log()
    warnings = check_clock_skew(databases=["default"])
    assert [(w.id, "skewed" in w.msg) for w in warnings] == [("conductor.W004", True)]

    for runner in (healthy, off):
        runner.terminate()
        assert runner.wait(20) == 0


@postgresql_only
@pytest.mark.parametrize("skew", ["+30s", "-30s"])
def test_a_task_saved_by_a_skewed_process_is_stamped_by_the_databases_clock(skew, libfaketime, tmp_path):
    """Pages keep the state with the newest updated_at: one stamped 30 s ahead would hide the runners'."""
    before = dbclock.now()
    pk = save_from(skewed(libfaketime, skew), name="stamped", func=JOURNAL,
                   args_in={"path": str(tmp_path / "journal"), "key": "stamped"})  # fmt: skip
    after = dbclock.now()

    stored = Task.objects.get(pk=pk)
    assert before <= stored.created_at <= after, (before, stored.created_at, after)
    assert stored.updated_at == stored.created_at == stored.next_run


@postgresql_only
def test_a_skewed_runner_times_its_pages_and_events_by_the_databases_clock(
    start_runtasks, open_dashboard, libfaketime, tmp_path
):
    """A runner 30 s behind serves the dashboard itself: its snapshot, its events (heartbeats, a run's)
    and its web side's news (a task created from the page) are all the database's time, so a page does
    not show its heartbeats 30 s old (late, and asking for snapshots all the time)."""
    port = free_port()
    since = dbclock.now().timestamp() - EVENT_TOLERANCE
    runner = start_runtasks("--serve", f"127.0.0.1:{port}", "--poll", "0.2", "--worker-id", "behind",
                            env={**CLOCKS, **IN_MEMORY_ENV, **skewed(libfaketime, "-30s")})  # fmt: skip
    wait_until(lambda: runner.is_up() and port_open(port), STARTUP)
    dashboard = open_dashboard(port)
    snapshot = dashboard.snapshot()
    assert since <= snapshot["at"] <= dbclock.now().timestamp() + EVENT_TOLERANCE
    assert [(r["worker_id"], round(r["clock_offset"])) for r in snapshot["runners"]] == [("behind", 30)]

    args = {"path": str(tmp_path / "journal"), "key": "page", "seconds": 0.2}
    dashboard.send({"type": "create", "id": "c1", "func": JOURNAL, "args_in": args})
    done = dashboard.wait_for_event(lambda e: e["type"] == "task.finished", "task.finished")
    dashboard.wait_for_event(
        lambda e: e["type"] == "runner.heartbeat" and e["at"] > done["at"], "a heartbeat"
    )
    until = dbclock.now().timestamp() + EVENT_TOLERANCE

    kinds = {e["type"] for e in dashboard.events}
    assert {"runner.heartbeat", "task.changed", "task.claimed", "thread.started", "task.finished"} <= kinds
    late = [(e["type"], until - e["at"]) for e in dashboard.events if not since <= e["at"] <= until]
    assert not late, f"events not timed by the database's clock (seconds before now): {late}"
    times = done["run_state"]["started_at"], done["run_state"]["finished_at"]
    assert all(since <= at <= until for at in times), (since, times, until)
    heartbeat = max(e["at"] for e in dashboard.events if e["type"] == "runner.heartbeat")
    assert dbclock.now().timestamp() - heartbeat < SILENT_RUNNER_S  # render/runners.js: not late on the page
    runner.terminate()
    assert runner.wait(20) == 0


def test_a_runner_presumed_dead_starts_none_of_the_runs_it_claimed_ahead(start_runtasks, tmp_path):
    """SIGSTOP a runner holding runs claimed ahead until another recovers them; after SIGCONT it starts
    none of them (they ran elsewhere) and signs in again."""
    journal, blocker_journal, release = tmp_path / "journal", tmp_path / "blocker", tmp_path / "release"
    frozen = start_runtasks("--threads", "1", "--poll", "0.2", "--worker-id", "frozen", env=CLOCKS)
    wait_until(frozen.is_up, STARTUP)
    warm_up = [keyed_task(journal, key) for key in range(10)]  # short runs: the runner claims ahead
    wait_until(lambda: frozen.check_alive() and finished(*warm_up), 30)
    with transaction.atomic():  # seen at once: one claim takes the blocker and the runs behind it
        Task.objects.create(
            name="blocker", func=journal_functions.owner_until_released, priority=10,
            args_in={"path": str(blocker_journal), "release": str(release)},
        )  # fmt: skip
        ahead = [keyed_task(journal, key) for key in range(100, 104)]
    wait_until(lambda: frozen.check_alive() and blocker_journal.exists(), 30)
    claimed_ahead = TaskRun.objects.filter(task__in=ahead, runner__worker_id="frozen")
    assert claimed_ahead.count() == 4, "the runner did not claim ahead"

    freeze(frozen)
    try:
        other = start_runtasks("--threads", "4", "--poll", "0.2", "--worker-id", "other", env=CLOCKS)
        wait_until(lambda: other.check_alive() and finished(*ahead), STARTUP + 15)
    finally:
        frozen.send(signal.SIGCONT)
    wait_until(lambda: frozen.check_alive() and "Signing in again" in frozen.log(), 20)
    release.touch()  # both blockers end: under the old code the frozen one's thread took a run claimed ahead
    owners = lambda: [line for line in blocker_journal.read_text().splitlines() if line.startswith("owner")]  # noqa: E731
    wait_until(lambda: len(owners()) == 2, 20)
    for runner in (frozen, other):  # a stopping runner starts what it claimed ahead within its grace
        runner.terminate()
        assert runner.wait(20) == 0

    ran = [line.split() for line in journal.read_text().splitlines()]
    ahead_ran = {int(key): int(pid) for key, pid in ran if int(key) >= 100}
    assert len([key for key, _ in ran if int(key) >= 100]) == 4, f"a run claimed ahead ran twice: {ran}"
    assert set(ahead_ran.values()) == {other.pid}, f"the frozen runner (pid {frozen.pid}) started: {ran}"
    assert "runs claimed ahead given back unstarted" in frozen.log()


def keyed_task(path: Path, key: int) -> Task:
    return Task.objects.create(name=f"journal-{key}", func=journal_functions.journal,
                               args_in={"path": str(path), "key": key})  # fmt: skip


def freeze(runner: RuntasksProcess) -> None:
    """SIGSTOP, never inside an SQLite write (that would stall every other runner)."""
    for _ in range(20):
        runner.send(signal.SIGSTOP)
        if connection.vendor != "sqlite" or sqlite_write_lock_free():
            return
        runner.send(signal.SIGCONT)
    pytest.fail(f"{runner!r} always held the write lock when stopped")
