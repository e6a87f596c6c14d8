"""Running one task's function and measuring how it ended."""

import json
import logging
import threading
import time
import traceback
from typing import Any

from app import capture, registry
from app.newthread import ThreadInterrupted, post_mortem
from app.status import RunStatus
from app.taskrun import Outcome

logger = logging.getLogger("conductor.execution")


class TimeLimitExceeded(ThreadInterrupted):
    """Raised inside a task thread whose run passed its kill_time."""


class RunInterrupted(ThreadInterrupted):
    """Raised inside a task thread when its runner stops before the run ends."""


def execute(task: Any) -> Outcome:
    """Call the task's registered function with its arguments, capturing output and errors."""
    thread = threading.current_thread()
    started = time.time()
    output, error = None, ""
    with capture.capturing() as log:
        try:
            func = registry.get(task.func)
            output = jsonable(func(**(task.args_in or {})))
            status = RunStatus.FINISHED
        except TimeLimitExceeded:
            status, error = RunStatus.TIMED_OUT, _timeout_message(task)
        except ThreadInterrupted:
            status, error = RunStatus.INTERRUPTED, traceback.format_exc()
        except Exception as exc:
            status, error = RunStatus.FAILED, traceback.format_exc()
            logger.exception("Task %s (%s) failed", task.name, task.func)
            if task.use_pdb:
                post_mortem(exc)
    return Outcome(
        status=status,
        started=started,
        finished=time.time(),
        output=output,
        error=error,
        log=log.getvalue(),
        thread_name=thread.name,
        thread_ident=thread.ident,
    )


def _timeout_message(task: Any) -> str:
    return f"TimeLimitExceeded: ran longer than kill_time={task.kill_time} s\n" + (traceback.format_exc())


def jsonable(value: Any) -> Any:
    """The value itself when JSON can hold it, else its repr (a result is never lost to encoding)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value
