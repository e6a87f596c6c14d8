"""Task functions that leave a journal outside Conductor's tables, to judge what really ran.

Registered by CONDUCTOR_TASK_MODULES=tests.journal_functions (tests/acceptance/test_db_restart.py).
"""

import os
import time

from app.registry import register


@register
def journal(path: str, key: int, seconds: float = 0.0) -> int:
    """Sleeps ``seconds``, then appends ``key`` to the file at ``path`` (one write, O_APPEND: never torn)."""
    time.sleep(seconds)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(descriptor)
    return key
