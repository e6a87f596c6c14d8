"""Conductor's settings, read from ``settings.CONDUCTOR`` and ``CONDUCTOR_*`` environment variables.

Every key is optional. A key set in ``settings.CONDUCTOR`` wins; any key it leaves out may come from the
environment as ``CONDUCTOR_<KEY>`` (TASK_MODULES comma-separated, numbers as numbers), in any project
that installs Conductor. ``checks.py`` rejects bad values at start-up with a hint, so the rest of the
code can trust what it reads here.
"""

import os
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
    #: Seconds a runner's clock may differ from the database's before it warns (``runner.clock_skew``).
    #: Conductor compares times by the database's clock only, so skew does not break it; it shows a host
    #: whose NTP broke.
    CLOCK_SKEW_WARNING: float = 2.0
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
    #: Seconds of history (queue depth, heartbeats) runners keep for the dashboard's charts; older samples
    #: are pruned at heartbeats. At least the charts' hour (checks.py), or the charts would show a gap.
    HISTORY_RETENTION: float = 4500.0
    #: A bearer token that may read /metrics (``Authorization: Bearer <token>``); empty: none.
    METRICS_TOKEN: str = ""
    #: Client addresses (REMOTE_ADDR) that may read /metrics without a token; empty: none.
    METRICS_ALLOWED_IPS: list[str] = field(default_factory=list)

    @classmethod
    def from_django(cls) -> "ConductorSettings":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in raw_settings().items() if key in known})


#: Settings that the environment gives as numbers (``CONDUCTOR_THREADS=4``).
ENV_NUMBERS = ("THREADS", "POLL", "HEARTBEAT", "HEARTBEAT_TIMEOUT", "CLOCK_SKEW_WARNING", "GRACE",
               "INTERRUPT_WAIT", "CANCEL_GRACE", "LOG_LIMIT", "EVENT_QUEUE_SIZE",
               "HISTORY_RETENTION")  # fmt: skip
#: Seconds the dashboard's charts look back (app/stats.py); HISTORY_RETENTION may not be shorter.
CHARTS_WINDOW = 3600.0


def from_environment(environ: os._Environ | dict[str, str] = os.environ) -> dict[str, Any]:
    """The ``CONDUCTOR_*`` variables as settings; a malformed number stays text so checks.py names it."""
    found: dict[str, Any] = {}
    if (modules := environ.get("CONDUCTOR_TASK_MODULES")) is not None:
        found["TASK_MODULES"] = [m.strip() for m in modules.split(",") if m.strip()]
    for name in ENV_NUMBERS:
        if (text := environ.get(f"CONDUCTOR_{name}")) is not None:
            try:
                found[name] = float(text) if "." in text else int(text)
            except ValueError:
                found[name] = text
    if (token := environ.get("CONDUCTOR_METRICS_TOKEN")) is not None:
        found["METRICS_TOKEN"] = token
    if (addresses := environ.get("CONDUCTOR_METRICS_ALLOWED_IPS")) is not None:
        found["METRICS_ALLOWED_IPS"] = [a.strip() for a in addresses.split(",") if a.strip()]
    return found


def raw_settings() -> Any:
    """``settings.CONDUCTOR`` over the environment's values, unchecked (it may not even be a dict)."""
    configured = getattr(django_settings, "CONDUCTOR", {})
    if configured is None:
        configured = {}
    if not isinstance(configured, dict):
        return configured
    return {**from_environment(), **configured}


def setting_name(key: str) -> str:
    """How the user gave ``key``, for messages: ``CONDUCTOR['KEY']``, or the environment variable when the
    value came from there (a message naming a dict the user never wrote would send them looking for it)."""
    configured = getattr(django_settings, "CONDUCTOR", None) or {}
    if not (isinstance(configured, dict) and key in configured) and f"CONDUCTOR_{key}" in os.environ:
        return f"CONDUCTOR_{key} (in the environment)"
    return f"CONDUCTOR[{key!r}]"


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
