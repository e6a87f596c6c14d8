"""Tests for app.wakeup's SqliteWatcher on a real SQLite file, with a second connection committing."""

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import wakeup
from app.wakeup import SqliteWatcher

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


@pytest.mark.parametrize("wanted", [True, False], ids=["wanted", "not-wanted"])
def test_a_commit_by_another_connection_wakes_the_watcher(watch, writer, wanted: bool) -> None:
    """A commit that is already visible wakes the runner whatever wanted() says: it costs no spin."""
    _, wakes = watch(wanted=lambda: wanted)
    commit_one(writer)
    assert wakes.wait()


def test_an_uncommitted_write_is_not_spun_for_when_not_wanted(watch, writer) -> None:
    asked = threading.Event()

    def wanted() -> bool:
        asked.set()
        return False

    _, wakes = watch(wanted=wanted)
    spill_uncommitted(writer)
    assert asked.wait(WAKE_TIMEOUT), "the WAL write reached the watcher"
    assert not wakes.wait(QUIET)  # nothing visible, and the runner will look anyway: no wake-up
    writer.execute("COMMIT")
    assert wakes.wait()  # the commit itself is seen, gate or not


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


def test_on_wal_write_skips_the_spin_when_not_wanted(unstarted, writer) -> None:
    watcher, wakes, probe = unstarted(wanted=lambda: False)
    last = wakeup._data_version(probe)
    version, recheck_at = watcher._on_wal_write(probe, last)
    assert (version, wakes.count) == (last, 0)
    assert recheck_at is not None  # a look is owed, in case a commit was on its way

    commit_one(writer)
    version, recheck_at = watcher._on_wal_write(probe, last)
    assert version != last
    assert (wakes.count, recheck_at) == (1, None)


def test_a_write_not_spun_for_is_looked_at_again_later_and_later_then_let_go() -> None:
    looks, due, left = [], 0.0, wakeup.RECHECKS
    while due is not None:
        looks.append(round(due, 6))
        due, left = SqliteWatcher._next_recheck(due, left)
    step = wakeup.VISIBILITY_WAIT
    assert looks == [round(step * (2**k - 2), 6) for k in range(1, wakeup.RECHECKS + 1)]


def test_on_wal_write_spins_then_wakes_when_wanted(unstarted) -> None:
    watcher, wakes, probe = unstarted()
    last = wakeup._data_version(probe)
    assert watcher._on_wal_write(probe, last) == (last, None)
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
