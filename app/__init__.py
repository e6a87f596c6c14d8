"""Conductor: a Django task server with a live thread dashboard.

``from conductor import register`` marks a function as runnable; ``sqlite_options()`` gives the SQLite
OPTIONS that make a database file a sound queue for many runners.
"""

from typing import Any

__version__ = "0.1.1"
__all__ = ["__version__", "register", "sqlite_options"]


def sqlite_options() -> dict[str, Any]:
    """WAL, a busy timeout and IMMEDIATE transactions: what makes SQLite a sound queue for many writers.

    For ``DATABASES["default"]["OPTIONS"]`` of a project on SQLite (system check conductor.W001 asks
    for them).
    """
    return {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }


def __getattr__(name: str) -> Any:
    # Imported on first use: this package is imported while INSTALLED_APPS loads, before models can be.
    if name == "register":
        from .registry import register

        return register
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
