"""Conductor's settings, read from ``settings.CONDUCTOR`` with typed defaults.

Every key is optional. ``app/checks.py`` rejects bad values at start-up with a hint, so the rest of the
code can trust what it reads here.
"""

from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed


@dataclass(frozen=True)
class ConductorSettings:
    #: Extra modules whose registered functions may run (each installed app's tasks.py is always loaded).
    TASK_MODULES: list[str] = field(default_factory=list)
    #: Most task threads a runner runs at once.
    THREADS: int = 8
    #: Seconds between safety-net polls of the database for due tasks. Saved tasks wake the runner at once
    #: (inotify on SQLite, LISTEN/NOTIFY on PostgreSQL); the poll finds the rest (bulk inserts, raw SQL,
    #: databases with no wake-ups), and each poll costs an idle runner CPU.
    POLL: float = 5.0
    #: Seconds between a runner's heartbeats (each an UPDATE and a look for dead runners).
    HEARTBEAT: float = 5.0
    #: A runner silent for this many seconds is presumed dead and its runs are recovered. At least three
    #: heartbeats (checks.py), so one or two late heartbeats never cost a live runner its work.
    HEARTBEAT_TIMEOUT: float = 15.0
    #: Seconds a stopping runner lets running tasks finish before it interrupts them.
    GRACE: float = 10.0
    #: Seconds a thread may take to end after being interrupted before it is reported as overrunning.
    INTERRUPT_WAIT: float = 1.0
    #: Seconds a cancelled run gets to end by itself (it sees stop_requested) before being interrupted.
    CANCEL_GRACE: float = 5.0
    #: Most characters of log and print output kept per run (the end is kept; the start is cut).
    LOG_LIMIT: int = 65536
    #: Most live-state events waiting to be published; beyond it events are dropped and counted.
    EVENT_QUEUE_SIZE: int = 10000

    @classmethod
    def from_django(cls) -> "ConductorSettings":
        raw = getattr(django_settings, "CONDUCTOR", {}) or {}
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})


_current: ConductorSettings | None = None


def get() -> ConductorSettings:
    """Conductor's settings as they are now (read once, and again after override_settings changes them)."""
    global _current
    if _current is None:
        _current = ConductorSettings.from_django()
    return _current


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _current
    if setting == "CONDUCTOR":
        _current = None


setting_changed.connect(_forget)
