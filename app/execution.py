"""Running one task's function and measuring how it ended."""

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import capture, events, registry
from .context import CONTEXT_PARAMETER, TaskContext, accepts_context
from .debugging import post_mortem
from .newthread import ThreadInterrupted
from .status import Isolation, RunStatus
from .taskrun import Outcome

logger = logging.getLogger("conductor.execution")


class TimeLimitExceeded(ThreadInterrupted):
    """Raised inside a task thread whose run passed its kill_time."""


class RunInterrupted(ThreadInterrupted):
    """Raised inside a task thread when its runner stops before the run ends."""


class RunCancelled(ThreadInterrupted):
    """Raised inside a task thread whose run was cancelled and did not end within the grace period."""


def execute(task: Any, context: TaskContext | None = None) -> Outcome:
    """Call the task's registered function with its arguments, capturing output and errors."""
    thread = threading.current_thread()
    context = context or TaskContext(task, run_id=None)
    if task.isolation == Isolation.PROCESS:
        from .isolation import execute_in_process

        started = time.time()
        try:
            return execute_in_process(task, context, _live_log(task, context))
        except Exception:  # the child could not even start: a failure (retried as such), not a crash
            return Outcome(RunStatus.FAILED, started, time.time(), error=traceback.format_exc(),
                           thread_name=thread.name, thread_ident=thread.ident)  # fmt: skip
    started = time.time()
    output, error = None, ""
    with capture.capturing(on_chunk=_live_log(task, context)) as log:
        context.log = log  # the runner reads the output so far when asked for the stack
        try:
            func = registry.get(task.func)
            kwargs = dict(task.args_in or {})
            if accepts_context(func):
                kwargs[CONTEXT_PARAMETER] = context
            output = jsonable(func(**kwargs))
            status = RunStatus.CANCELLED if context.cancelled else RunStatus.FINISHED
        except TimeLimitExceeded:
            status, error = RunStatus.TIMED_OUT, _timeout_message(task)
        except RunCancelled:
            status, error = RunStatus.CANCELLED, "Cancelled, and interrupted after the grace period\n"
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
        progress=context.progress,
        progress_message=context.progress_message,
    )


def _live_log(task: Any, context: TaskContext) -> Callable[[str], None]:
    def publish_chunk(text: str) -> None:
        events.publish(events.RUN_LOG, runner=context.runner, task=task.pk, task_id=task.task_id,
                       name=task.name, run=context.run_id, text=text)  # fmt: skip

    return publish_chunk


def _timeout_message(task: Any) -> str:
    return f"TimeLimitExceeded: ran longer than kill_time={task.kill_time} s\n" + (traceback.format_exc())


def jsonable(value: Any) -> Any:
    """The value itself when JSON can hold it, else its repr (a result is never lost to encoding)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value
