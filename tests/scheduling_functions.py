"""Task functions for the scheduling, retry and isolation tests.

Imported at the top of the test modules that use them (so @register runs in the test process). A child
process of ``isolation="process"`` imports the modules in CONDUCTOR['TASK_MODULES']; tests that run these
functions in a child list this module there (override_settings), or in CONDUCTOR_TASK_MODULES for
subprocess runners.
"""

import os
import time
from pathlib import Path

from app.registry import register


@register
def fail_once(marker: str) -> str:
    """Fails on its first call (leaving ``marker`` behind to remember it), succeeds from then on."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise ConnectionError("first try fails")
    return "second time lucky"


@register
def halfway(context) -> str:
    """Reports progress from wherever it runs (its context: a TaskContext, or a child's stand-in)."""
    context.report_progress(0.5, "half")
    return "done"


@register
def pid_then_sleep(pid_file: str, seconds: float) -> str:
    """Writes its process id to ``pid_file``, then blocks in C (time.sleep) for ``seconds``."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@register
def whoami() -> int:
    """The id of the process that ran it."""
    return os.getpid()


@register
def interrupted() -> None:
    """As if the user pressed Ctrl-C while the task ran in their shell."""
    raise KeyboardInterrupt


@register
def until_stopped(context, started: str, timeout: float = 30.0) -> str:
    """Creates ``started``, then works until asked to stop (cancel, or its runner stopping)."""
    Path(started).touch()
    deadline = time.monotonic() + timeout
    while not context.stop_requested:
        if time.monotonic() > deadline:
            raise TimeoutError("never asked to stop")
        time.sleep(0.01)
    return "stopped cleanly"
