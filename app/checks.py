"""System checks: every bad Conductor setting is reported with what to change."""

import math
from dataclasses import fields

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections

from app.conf import ConductorSettings

POSITIVE_NUMBERS = ("POLL", "HEARTBEAT", "HEARTBEAT_TIMEOUT", "INTERRUPT_WAIT", "CANCEL_GRACE")
POSITIVE_INTEGERS = ("THREADS", "LOG_LIMIT", "EVENT_QUEUE_SIZE")


def _error(message: str, hint: str, number: int) -> Error:
    return Error(message, hint=hint, id=f"conductor.E{number:03d}")


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list:
    raw = getattr(settings, "CONDUCTOR", {})
    if not isinstance(raw, dict):
        return [_error("CONDUCTOR must be a dict.", "Set CONDUCTOR = {} or a dict of settings.", 1)]
    known = {f.name for f in fields(ConductorSettings)}
    errors = [
        _error(
            f"CONDUCTOR has an unknown key {key!r}.",
            f"Remove it or use one of: {', '.join(sorted(known))}.",
            2,
        )
        for key in raw
        if key not in known
    ]
    errors += _check_numbers(raw)
    errors += _check_task_modules(raw.get("TASK_MODULES", []))
    if not errors:
        errors += _check_heartbeat(ConductorSettings.from_django())
    return errors


def _check_numbers(raw: dict) -> list:
    errors = []
    for key in POSITIVE_NUMBERS + POSITIVE_INTEGERS:
        if key not in raw:
            continue
        value = raw[key]
        wanted = int if key in POSITIVE_INTEGERS else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, wanted)
            or not (math.isfinite(value) and value > 0)
        ):
            kind = "a positive whole number" if key in POSITIVE_INTEGERS else "a positive number"
            errors.append(
                _error(
                    f"CONDUCTOR[{key!r}] is {value!r}; it must be {kind}.",
                    f"Set CONDUCTOR[{key!r}] to {kind} of seconds or items, "
                    f"or remove it to use the default ({getattr(ConductorSettings, key)}).",
                    3,
                )
            )
    if "GRACE" in raw and (
        isinstance(raw["GRACE"], bool)
        or not isinstance(raw["GRACE"], int | float)
        or not (math.isfinite(raw["GRACE"]) and raw["GRACE"] >= 0)
    ):
        errors.append(
            _error(
                f"CONDUCTOR['GRACE'] is {raw['GRACE']!r}; it must be a finite number of seconds >= 0.",
                "Set it to how long a stopping runner waits for running tasks, e.g. 10.",
                3,
            )
        )
    return errors


def _check_task_modules(modules) -> list:
    if not isinstance(modules, list | tuple) or not all(isinstance(m, str) for m in modules):
        return [
            _error(
                "CONDUCTOR['TASK_MODULES'] must be a list of dotted module names.",
                "For example ['myproject.jobs'], or set CONDUCTOR_TASK_MODULES=myproject.jobs.",
                4,
            )
        ]
    return []


def _check_heartbeat(conf: ConductorSettings) -> list:
    if conf.HEARTBEAT_TIMEOUT >= 3 * conf.HEARTBEAT:
        return []
    return [
        _error(
            f"CONDUCTOR['HEARTBEAT_TIMEOUT'] ({conf.HEARTBEAT_TIMEOUT}) is less than three "
            f"heartbeats ({conf.HEARTBEAT} s each): live runners would be declared dead.",
            "Raise HEARTBEAT_TIMEOUT to at least 3 x HEARTBEAT.",
            6,
        )
    ]


@register(Tags.database, deploy=False)
def check_sqlite_wal(app_configs=None, databases=None, **kwargs) -> list:
    """SQLite without WAL and IMMEDIATE transactions fails under concurrent runners."""
    config = connections.databases.get("default", {})
    if config.get("ENGINE") != "django.db.backends.sqlite3":
        return []
    options = config.get("OPTIONS", {})
    problems = []
    if "journal_mode=wal" not in options.get("init_command", "").lower().replace(" ", ""):
        problems.append("init_command does not set PRAGMA journal_mode=WAL")
    if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
        problems.append('transaction_mode is not "IMMEDIATE"')
    if not problems:
        return []
    return [
        Warning(
            "The SQLite database is not set up for concurrent runners: " + "; ".join(problems) + ".",
            hint="Use server.settings.sqlite_options() as the database OPTIONS.",
            id="conductor.W001",
        )
    ]
