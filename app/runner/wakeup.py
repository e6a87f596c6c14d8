"""Waking the runner as soon as another process commits to the database.

A timed poll cannot be both quick and cheap (a loop that merely wakes 50 times a second costs real CPU on
small machines), so on SQLite the runner watches the database's directory with inotify: a write to the
``-wal`` file wakes the watcher, which confirms with ``PRAGMA data_version`` that a commit is visible
before it wakes the runner. On PostgreSQL, saving a task sends NOTIFY and runners LISTEN. The runner's
own slow poll stays as the safety net (bulk inserts notify nobody), and is all there is elsewhere.
"""

import logging
import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

logger = logging.getLogger("conductor.wakeup")

#: How long a watcher spins for a commit to become visible after the WAL file changed.
VISIBILITY_WAIT = 0.005
#: Seconds between two looks at ``PRAGMA data_version`` while spinning.
SPIN_STEP = 0.0002
#: How many more looks a write that was not spun for gets, each twice as late as the one before: a writer
#: preempted between its WAL write and its commit (a loaded machine) must not leave the runner asleep.
RECHECKS = 5


def _always() -> bool:
    return True


class SqliteWatcher:
    """Calls ``wake()`` (from its own thread) when another connection commits to the SQLite file.

    ``wanted()`` (default: always True) says whether a wake-up would still help. False promises that the
    runner looks at the database after this moment anyway (a wake-up is pending, or every thread is busy
    and the next to end makes it claim again): a commit seen while not wanted wakes nobody, and WAL
    writes are then looked at no more than once per VISIBILITY_WAIT. Without the gate a draining runner's
    own commits (each writes the WAL in several calls) cost a look, a spin and a wake-up each, for nothing.

    A WAL write is seen before its commit shows in the shared index, so a write whose commit is not
    visible yet is spun for (when wanted), and looked at again later, RECHECKS times, twice as late each
    time: a writer preempted between the two must not leave an idle runner asleep until the next poll.
    """

    def __init__(
        self, database: Path, wake: Callable[[], None], wanted: Callable[[], bool] = _always
    ) -> None:
        from inotify_simple import INotify, flags

        self.database = database
        self.wake = wake
        self.wanted = wanted
        self._inotify = INotify()
        self._inotify.add_watch(str(database.parent), flags.MODIFY | flags.CREATE)
        self._wal_name = database.name + "-wal"
        self._stop_read, self._stop_write = os.pipe()  # wakes the blocked poll() on stop()
        self._thread = threading.Thread(target=self._watch, name="conductor-wakeup", daemon=True)
        self._baseline_read = threading.Event()

    def start(self) -> "SqliteWatcher":
        """Starts watching; returns once every later commit is sure to be seen."""
        self._thread.start()
        self._baseline_read.wait(timeout=5)
        return self

    def stop(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=2)
        for fd in (self._stop_read, self._stop_write):
            os.close(fd)
        self._inotify.close()

    def _watch(self) -> None:
        probe = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, isolation_level=None)
        events = select.poll()
        events.register(self._inotify.fileno(), select.POLLIN)
        events.register(self._stop_read, select.POLLIN)
        stop_only = select.poll()
        stop_only.register(self._stop_read, select.POLLIN)
        try:
            last = _data_version(probe)
            self._baseline_read.set()
            recheck_at: float | None = None  # when to look again at a write whose commit was not seen
            rechecks_left = 0
            while True:
                # Blocks without waking while nothing happens (no timeout unless a look is owed): no idle CPU.
                timeout = None if recheck_at is None else max(0.0, recheck_at - time.monotonic()) * 1000
                ready = {fd for fd, _ in events.poll(timeout)}
                if self._stop_read in ready:
                    return
                if self._inotify.fileno() in ready and self._wal_written():
                    busy = not self.wanted()
                    # Seen or not, a busy runner looks anyway: its commit is only looked at again later.
                    last, visible = (_data_version(probe), False) if busy else self._on_wal_write(probe, last)
                    if not visible and recheck_at is None:
                        recheck_at, rechecks_left = time.monotonic() + VISIBILITY_WAIT, RECHECKS
                    if busy and stop_only.poll(VISIBILITY_WAIT * 1000):  # let its writes pile up a while
                        return
                if recheck_at is not None and time.monotonic() >= recheck_at:
                    recheck_at, rechecks_left = self._next_recheck(recheck_at, rechecks_left)
                    if (version := _data_version(probe)) != last:
                        last = version
                        if self.wanted():
                            recheck_at = None
                            self.wake()
        except Exception:
            logger.exception("Database watcher failed; the runner falls back to polling")
        finally:
            self._baseline_read.set()
            probe.close()

    def _wal_written(self) -> bool:
        return any(event.name == self._wal_name for event in self._inotify.read(timeout=0))

    @staticmethod
    def _next_recheck(previous: float, rechecks_left: int) -> tuple[float | None, int]:
        """When to look again after the look due at ``previous``: twice as late each time, then not at all."""
        if rechecks_left <= 1:
            return None, 0
        gap = VISIBILITY_WAIT * 2 ** (RECHECKS - rechecks_left + 1)
        return previous + gap, rechecks_left - 1

    def _on_wal_write(self, probe: sqlite3.Connection, last: int) -> tuple[int, bool]:
        """Spins briefly for the commit of a WAL write, then wakes the runner: (data version, commit seen)."""
        version = _data_version(probe)
        deadline = time.monotonic() + VISIBILITY_WAIT
        while version == last and time.monotonic() <= deadline:
            time.sleep(SPIN_STEP)
            version = _data_version(probe)
        self.wake()  # even unseen: looking costs an idle runner little, and the commit may be there by then
        return version, version != last


def _data_version(probe: sqlite3.Connection) -> int:
    return probe.execute("PRAGMA data_version").fetchone()[0]


#: The PostgreSQL channel on which saved tasks wake the runners.
CHANNEL = "conductor_tasks"
#: Connection options of the database settings that the LISTEN connection must share.
LIBPQ_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout",
                 "options", "application_name", "target_session_attrs")  # fmt: skip
#: Longest a PostgreSQL watcher blocks before it looks whether it should stop.
LISTEN_SLICE = 1.0
#: Seconds between tries to LISTEN again after the connection was lost.
LISTEN_RETRY = 5.0
#: Longest wait at start for the first LISTEN (a database that neither answers nor refuses).
FIRST_LISTEN_WAIT = 5.0


class PostgresWatcher:
    """Calls ``wake()`` when a task is saved anywhere: LISTEN on a connection of its own.

    After losing its connection it tries again every LISTEN_RETRY seconds, and calls ``reconnected()``
    once it listens again: the database answers, which a runner waiting out a backoff wants to know.
    """

    def __init__(
        self, settings_dict: dict, wake: Callable[[], None], reconnected: Callable[[], None] | None = None
    ) -> None:
        self.settings_dict = settings_dict
        self.wake = wake
        self.reconnected = reconnected
        self._failures = 0
        self._stopped = threading.Event()
        self._first_try = threading.Event()  # set once LISTEN is on, or has failed once
        self._thread = threading.Thread(target=self._watch, name="conductor-wakeup", daemon=True)

    def start(self) -> "PostgresWatcher":
        """Started, and listening unless the database refused: a task saved after this returns wakes the
        runner (before, one saved between the runner's first claim and its LISTEN waited for the poll)."""
        self._thread.start()
        self._first_try.wait(timeout=FIRST_LISTEN_WAIT)
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=LISTEN_SLICE + 2)

    def _watch(self) -> None:
        while not self._stopped.is_set():
            try:
                self._listen()
            except Exception as exc:
                self._on_failure(exc)
                self._stopped.wait(LISTEN_RETRY)

    def _on_failure(self, exc: Exception) -> None:
        """Logged once per outage (with a traceback only for what is not a lost connection)."""
        from psycopg import OperationalError

        self._failures += 1
        self._first_try.set()
        retrying = f"polling meanwhile, retrying every {LISTEN_RETRY} s"
        if self._failures > 1:
            logger.debug("LISTEN still failing (try %d): %s", self._failures, exc)
        elif isinstance(exc, OperationalError):
            logger.warning("LISTEN for new tasks failed (%s); %s", " ".join(str(exc).split()), retrying)
        else:
            logger.exception("LISTEN for new tasks failed; %s", retrying)

    def _on_listening(self) -> None:
        if not self._failures:
            return
        logger.info("LISTEN for new tasks again after %d failed tries", self._failures)
        self._failures = 0
        if self.reconnected is not None:
            self.reconnected()
        self.wake()  # notifications sent meanwhile were lost

    def _listen(self) -> None:
        import psycopg

        params = {
            "dbname": self.settings_dict["NAME"],
            "user": self.settings_dict.get("USER") or None,
            "password": self.settings_dict.get("PASSWORD") or None,
            "host": self.settings_dict.get("HOST") or None,
            "port": self.settings_dict.get("PORT") or None,
        }
        options = self.settings_dict.get("OPTIONS", {})
        params.update({key: options[key] for key in LIBPQ_OPTIONS if key in options})  # TLS and the like
        with psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if v}) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            self._first_try.set()
            self._on_listening()
            while not self._stopped.is_set():
                for _ in listener.notifies(timeout=LISTEN_SLICE):
                    self.wake()


def watcher_for_default_database(
    wake: Callable[[], None],
    wanted: Callable[[], bool] = _always,
    reconnected: Callable[[], None] | None = None,
) -> SqliteWatcher | PostgresWatcher | None:
    """A started watcher for the default database, or None where only polling works.

    ``wanted`` is SqliteWatcher's gate (PostgreSQL delivers one notification per commit: nothing to gate).
    ``reconnected`` is called when PostgreSQL's LISTEN connection is back after it was lost.
    """
    if connection.vendor == "postgresql":
        return PostgresWatcher(connection.settings_dict, wake, reconnected).start()
    if connection.vendor != "sqlite":
        return None
    database = Path(connection.settings_dict["NAME"])
    try:
        return SqliteWatcher(database, wake, wanted).start()
    except (ImportError, OSError) as exc:
        logger.info("No inotify wake-ups (%s); polling every few seconds instead", exc)
        return None
