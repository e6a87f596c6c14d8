"""Running one task's function and measuring how it ended."""

import inspect
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import capture, coroutines, events, registry
from .context import CONTEXT_PARAMETER, TaskContext, accepts_context
from .debugging import post_mortem
from .interrupts import Interrupts
from .lifecycle import Outcome, claim_now, finish
from .newthread import ThreadInterrupted
from .status import Isolation, RunStatus

logger = logging.getLogger("conductor.execution")


class TimeLimitExceeded(ThreadInterrupted):
    """Raised inside a task thread whose run passed its kill_time."""


class RunInterrupted(ThreadInterrupted):
    """Raised inside a task thread when its runner stops before the run ends."""


class RunCancelled(ThreadInterrupted):
    """Raised inside a task thread whose run was cancelled and did not end within the grace period."""


def execute(task: Any, context: TaskContext | None = None) -> Outcome:
    """Call the task's registered function with its arguments, capturing output and errors.

    Whatever the function raises, ``BaseException`` subclasses included, fails the run; only an
    interrupt Conductor delivered into this run (see app/interrupts.py) makes it timed out, cancelled
    or interrupted.
    """
    thread = threading.current_thread()
    context = context or TaskContext(task, run_id=None)
    started = time.time()
    if task.isolation == Isolation.PROCESS:
        return _execute_in_child(task, context, started)
    with capture.capturing(on_chunk=_live_log(task, context)) as log:
        context.log = log  # the runner reads the output so far when asked for the stack
        status, output, error = _run_function(task, context)
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


def run_at_once(task: Any) -> Any:
    """``Task.run()``: claim the task, run it in this thread and record the run; returns the TaskRun.

    Installed on the model by ``ConductorConfig.ready()``: the model cannot import what runs it.
    """
    if task.pk is None:
        task.save()
    claimed = claim_now(task)
    if claimed is None:
        raise RuntimeError(
            f"Task {task.task_id} cannot run now: it is already running"
            + (" or another db_use task holds the database lease." if task.db_use else ".")
        )
    claimed_task, run = claimed
    started = time.time()
    try:
        outcome = execute(claimed_task)
    except BaseException:  # e.g. Ctrl-C: record the run as failed, never leave it open
        finish(run, Outcome(RunStatus.FAILED, started, time.time(), error=traceback.format_exc()))
        raise
    finish(run, outcome)
    task.refresh_from_db()
    run.refresh_from_db()
    return run


def call(func: Callable[..., Any], kwargs: dict[str, Any], interrupts: Interrupts) -> Any:
    """``func(**kwargs)``, awaited when it returns an awaitable (``async def`` or not)."""
    result = func(**kwargs)
    if result is not None and inspect.isawaitable(result):  # None, most tasks' result, skips an ABC check
        return coroutines.run(result, interrupts)
    return result


def _run_function(task: Any, context: TaskContext) -> tuple[str, Any, str]:
    """(status, output, error) of one call of the task's function in this thread."""
    try:
        func = registry.get(task.func)
        kwargs = dict(task.args_in or {})
        if accepts_context(func):
            kwargs[CONTEXT_PARAMETER] = context
        output = jsonable(call(func, kwargs, context.interrupts))
    except BaseException as exc:
        return _ended_by(exc, task, context)
    if context.interrupts.delivered is not None:  # it caught Conductor's interrupt, then returned
        status = _status_after(context.interrupts.delivered)
        return status, output, _interrupt_message(task, status) + "The task caught it and returned.\n"
    return (RunStatus.CANCELLED if context.cancelled else RunStatus.FINISHED), output, ""


def _execute_in_child(task: Any, context: TaskContext, started: float) -> Outcome:
    from .isolation import execute_in_process

    try:
        return execute_in_process(task, context, _live_log(task, context))
    except BaseException as exc:  # interrupted while it waited, or the child could not even start
        status, _, error = _ended_by(exc, task, context)
        thread = threading.current_thread()
        return Outcome(status, started, time.time(), error=error, thread_name=thread.name,
                       thread_ident=thread.ident)  # fmt: skip


def _ended_by(exc: BaseException, task: Any, context: TaskContext) -> tuple[str, None, str]:
    """How a run ended that raised ``exc`` (this is called in its ``except`` block)."""
    delivered = context.interrupts.delivered
    if delivered is not None:  # it wins, even when the task then raised something else
        status = _status_after(delivered)
        if status == RunStatus.CANCELLED:  # its last line, which pages show, says what happened
            return status, None, traceback.format_exc() + CANCELLED_LATE
        return status, None, _interrupt_message(task, status) + traceback.format_exc()
    if _is_ctrl_c_of_the_person_at_the_terminal(exc):
        raise
    logger.exception("Task %s (%s) failed", task.name, task.func)
    if task.use_pdb:
        post_mortem(exc)
    return RunStatus.FAILED, None, traceback.format_exc()


CANCELLED_LATE = "Cancelled, and interrupted after the grace period\n"


def _status_after(delivered: BaseException) -> str:
    """The status of a run that Conductor's interrupt ``delivered`` reached."""
    if isinstance(delivered, TimeLimitExceeded):
        return RunStatus.TIMED_OUT
    if isinstance(delivered, RunCancelled):
        return RunStatus.CANCELLED
    return RunStatus.INTERRUPTED


def _interrupt_message(task: Any, status: str) -> str:
    if status == RunStatus.TIMED_OUT:
        return f"TimeLimitExceeded: ran longer than kill_time={task.kill_time} s\n"
    return ""


def _is_ctrl_c_of_the_person_at_the_terminal(exc: BaseException) -> bool:
    """Signals reach only the main thread: a KeyboardInterrupt there (``Task.run()`` in a shell) is
    Ctrl-C, which must stop the caller; in a worker thread it can only come from the task itself."""
    return isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread()


def _live_log(task: Any, context: TaskContext) -> Callable[[str], None]:
    def publish_chunk(text: str) -> None:
        events.publish(events.RUN_LOG, runner=context.runner, task=task.pk, task_id=task.task_id,
                       name=task.name, run=context.run_id, text=text)  # fmt: skip

    return publish_chunk


def jsonable(value: Any) -> Any:
    """The value itself when JSON can hold it, else its repr (a result is never lost to encoding)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value
