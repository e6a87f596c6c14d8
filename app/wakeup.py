"""Waking the runner as soon as another process commits to the database.

A timed poll cannot be both quick and cheap (a loop that merely wakes 50 times a second costs real CPU on
small machines), so on SQLite the runner watches the database's directory with inotify: a write to the
``-wal`` file wakes the watcher, which confirms with ``PRAGMA data_version`` that a commit is visible
before it wakes the runner. The runner's own slow poll stays as the safety net, and is all there is on
other databases or systems without inotify.
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


class SqliteWatcher:
    """Calls ``wake()`` (from its own thread) when another connection commits to the SQLite file."""

    def __init__(self, database: Path, wake: Callable[[], None]) -> None:
        from inotify_simple import INotify, flags

        self.database = database
        self.wake = wake
        self._inotify = INotify()
        self._inotify.add_watch(str(database.parent), flags.MODIFY | flags.CREATE)
        self._wal_name = database.name + "-wal"
        self._stop_read, self._stop_write = os.pipe()  # wakes the blocked poll() on stop()
        self._thread = threading.Thread(target=self._watch, name="conductor-wakeup", daemon=True)

    def start(self) -> "SqliteWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=2)
        for fd in (self._stop_read, self._stop_write):
            os.close(fd)
        self._inotify.close()

    def _watch(self) -> None:
        probe = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, isolation_level=None)
        poller = select.poll()
        poller.register(self._inotify.fileno(), select.POLLIN)
        poller.register(self._stop_read, select.POLLIN)
        try:
            last = _data_version(probe)
            while True:
                ready = {fd for fd, _ in poller.poll()}  # blocks without waking: no idle CPU
                if self._stop_read in ready:
                    return
                changes = self._inotify.read(timeout=0)
                if any(event.name == self._wal_name for event in changes):
                    last = self._wake_when_visible(probe, last)
        except Exception:
            logger.exception("Database watcher failed; the runner falls back to polling")
        finally:
            probe.close()

    def _wake_when_visible(self, probe: sqlite3.Connection, last: int) -> int:
        deadline = time.monotonic() + VISIBILITY_WAIT
        while True:
            version = _data_version(probe)
            if version != last or time.monotonic() > deadline:
                self.wake()
                return version
            time.sleep(0.0002)


def _data_version(probe: sqlite3.Connection) -> int:
    return probe.execute("PRAGMA data_version").fetchone()[0]


def watcher_for_default_database(wake: Callable[[], None]) -> SqliteWatcher | None:
    """A started watcher for the default database, or None where only polling works."""
    if connection.vendor != "sqlite":
        return None
    database = Path(connection.settings_dict["NAME"])
    try:
        return SqliteWatcher(database, wake).start()
    except (ImportError, OSError) as exc:
        logger.info("No inotify wake-ups (%s); polling every few seconds instead", exc)
        return None
