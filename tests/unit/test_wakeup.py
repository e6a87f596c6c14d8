"""Tests for app.runner.wakeup's SqliteWatcher on a real SQLite file, with a second connection committing."""

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.runner import wakeup
from app.runner.wakeup import SqliteWatcher

#: Generous: how long a test waits for a wake-up that must come (speed is the bench's business).
WAKE_TIMEOUT = 10.0
#: How long a test watches for a wake-up that must not come; a slow machine can only make it pass.
QUIET = 0.3


class Wakes:
    """Counts wake-ups and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    def wait(self, timeout: float = WAKE_TIMEOUT) -> bool:
        woke = self._event.wait(timeout)
        self._event.clear()
        return woke


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "watched.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x BLOB)")
    return path


@pytest.fixture
def writer(database: Path) -> Iterator[sqlite3.Connection]:
    """Another connection: the watcher sees its commits as another process's."""
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    yield connection
    connection.close()


@pytest.fixture
def watch(database: Path) -> Iterator[Callable[..., tuple[SqliteWatcher, Wakes]]]:
    started: list[SqliteWatcher] = []

    def start(wanted: Callable[[], bool] = wakeup._always) -> tuple[SqliteWatcher, Wakes]:
        wakes = Wakes()
        watcher = SqliteWatcher(database, wakes, wanted).start()
        started.append(watcher)
        return watcher, wakes

    yield start
    for watcher in started:
        watcher.stop()


def commit_one(writer: sqlite3.Connection) -> None:
    writer.execute("INSERT INTO t VALUES (x'00')")


def spill_uncommitted(writer: sqlite3.Connection) -> None:
    """Write WAL frames without committing: a small page cache spills a large transaction to the WAL."""
    writer.execute("PRAGMA cache_size=1")
    writer.execute("BEGIN IMMEDIATE")
    for _ in range(50):
        writer.execute("INSERT INTO t VALUES (zeroblob(4000))")


class Gate:
    """A wanted() the test flips, and a record of whether the watcher asked it."""

    def __init__(self, open_: bool) -> None:
        self.open = open_
        self.asked = threading.Event()

    def __call__(self) -> bool:
        self.asked.set()
        return self.open


def test_a_commit_by_another_connection_wakes_the_watcher(watch, writer) -> None:
    _, wakes = watch()
    commit_one(writer)
    assert wakes.wait()


@pytest.mark.parametrize(
    ("write", "then_commit"),
    [
        (commit_one, commit_one),
        (spill_uncommitted, lambda writer: writer.execute("COMMIT")),
    ],
    ids=["commit", "uncommitted-write"],
)
def test_a_write_seen_while_the_runner_is_busy_wakes_nobody(watch, writer, write, then_commit) -> None:
    """Not wanted: the runner looks anyway (its next run to end makes it claim), so a wake-up is waste."""
    gate = Gate(open_=False)
    _, wakes = watch(wanted=gate)
    write(writer)
    assert gate.asked.wait(WAKE_TIMEOUT), "the WAL write reached the watcher"
    assert not wakes.wait(QUIET)
    gate.open = True
    then_commit(writer)
    assert wakes.wait()  # idle again: the next commit wakes it


def test_an_uncommitted_write_still_wakes_when_wanted(watch, writer) -> None:
    """The default: a WAL write whose commit does not show within the spin wakes the runner anyway."""
    _, wakes = watch()
    spill_uncommitted(writer)
    assert wakes.wait()
    writer.execute("ROLLBACK")


@pytest.fixture
def unstarted(database: Path) -> Iterator[Callable[..., tuple[SqliteWatcher, Wakes, sqlite3.Connection]]]:
    """A watcher whose thread never runs, and a probe: the test drives _on_wal_write itself."""
    made: list[tuple[SqliteWatcher, sqlite3.Connection]] = []

    def make(wanted: Callable[[], bool] = wakeup._always) -> tuple[SqliteWatcher, Wakes, sqlite3.Connection]:
        wakes = Wakes()
        watcher = SqliteWatcher(database, wakes, wanted)
        probe = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
        made.append((watcher, probe))
        return watcher, wakes, probe

    yield make
    for watcher, probe in made:
        probe.close()
        watcher._inotify.close()
        for fd in (watcher._stop_read, watcher._stop_write):
            os.close(fd)


def test_on_wal_write_wakes_for_a_visible_commit_and_says_it_saw_it(unstarted, writer) -> None:
    watcher, wakes, probe = unstarted()
    last = wakeup._data_version(probe)
    commit_one(writer)
    version, visible = watcher._on_wal_write(probe, last)
    assert (version != last, visible, wakes.count) == (True, True, 1)


def test_a_write_not_spun_for_is_looked_at_again_later_and_later_then_let_go() -> None:
    looks, due, left = [], 0.0, wakeup.RECHECKS
    while due is not None:
        looks.append(round(due, 6))
        due, left = SqliteWatcher._next_recheck(due, left)
    step = wakeup.VISIBILITY_WAIT
    assert looks == [round(step * (2**k - 2), 6) for k in range(1, wakeup.RECHECKS + 1)]


def test_on_wal_write_spins_then_wakes_even_unseen_and_says_so(unstarted) -> None:
    """The caller looks again later at a commit it did not see: (version, False)."""
    watcher, wakes, probe = unstarted()
    last = wakeup._data_version(probe)
    assert watcher._on_wal_write(probe, last) == (last, False)
    assert wakes.count == 1


def test_watcher_for_default_database_passes_wanted_on(monkeypatch, tmp_path: Path) -> None:
    made = {}

    class Recording:
        def __init__(self, database: Path, wake: Callable[[], None], wanted: Callable[[], bool]) -> None:
            made.update(database=database, wanted=wanted)

        def start(self) -> "Recording":
            return self

    def wanted() -> bool:
        return True

    monkeypatch.setattr(wakeup, "SqliteWatcher", Recording)
    monkeypatch.setattr(wakeup.connection, "vendor", "sqlite")
    monkeypatch.setitem(wakeup.connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    assert isinstance(wakeup.watcher_for_default_database(lambda: None, wanted=wanted), Recording)
    assert made == {"database": tmp_path / "db.sqlite3", "wanted": wanted}
