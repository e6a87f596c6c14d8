"""Task functions that leave a journal outside Conductor's tables, to judge what really ran.

Registered by CONDUCTOR_TASK_MODULES=tests.journal_functions (tests/acceptance/test_db_restart.py,
test_orphans.py).
"""

import os
import threading
import time

from app.registry import register


@register
def journal(path: str, key: int, seconds: float = 0.0) -> int:
    """Sleeps ``seconds``, then appends ``key`` to the file at ``path`` (one write, O_APPEND: never torn)."""
    time.sleep(seconds)
    _append(path, f"{key} {os.getpid()}")
    return key


def note(path: str, event: str, *details: object) -> None:
    """One journal line: the event, when (epoch seconds), this process and its parent, then details."""
    _append(
        path,
        " ".join(str(part) for part in (event, f"{time.time():.6f}", os.getpid(), os.getppid(), *details)),
    )


@register
def ticks(path: str, seconds: float) -> str:
    """A body that shows it is alive: ``start``, a ``tick`` every 50 ms for ``seconds``, then ``end``."""
    note(path, "start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        note(path, "tick")
        time.sleep(0.05)
    note(path, "end")
    return "ticked"


@register
def owner_until_released(path: str, release: str, context) -> int | None:
    """Notes its fence and whether it owns its claim, waits for the file ``release``, then notes it again."""
    note(path, "fence", context.fence, context.still_owner())
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    note(path, "owner", context.fence, context.still_owner())
    return context.fence


@register
def clocked(path: str, key: str, seconds: float = 0.0) -> str:
    """Notes ``start`` and ``end`` around ``seconds`` of work, each at the database's time (read by a query):
    the one clock that runners with skewed clocks share. Lines: event, key, database epoch seconds, pid."""
    _append(path, f"start {key} {database_time():.6f} {os.getpid()}")
    # Not time.sleep(): under libfaketime (tests/acceptance/test_clock_skew.py) Python's absolute
    # clock_nanosleep fails with EINVAL; a timed wait on a lock does not.
    threading.Event().wait(seconds)
    _append(path, f"end {key} {database_time():.6f} {os.getpid()}")
    return key


def database_time() -> float:
    """The database's clock now, in epoch seconds: PostgreSQL's server clock; on SQLite, this machine's."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        return float(cursor.fetchone()[0])


def _append(path: str, line: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{line}\n".encode())
    finally:
        os.close(descriptor)
