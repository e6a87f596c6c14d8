"""Django's ``@task`` functions run by Conductor: how a call is stored, run and read back.

A function decorated with Django's ``@task`` on a Conductor backend is registered in Conductor's registry at
its own dotted path, as an *adapter*: a registered callable whose keyword arguments are the stored call,
``{"args": [...], "kwargs": {...}, "backend": "default"}``. So an enqueued call is an ordinary Conductor
Task (``func`` the function's dotted path, ``args_in`` the call) that any runner resolves through the
registry as usual: nothing else is ever imported or run, and ``args_in`` keeps its meaning (the keyword
arguments of what is registered). The adapter calls the function with Django's semantics (positional
arguments, a Django ``TaskContext`` first when ``takes_context``, coroutines, JSON return values) and sends
``task_started`` and ``task_finished`` where the function runs.
"""

import asyncio
import builtins
import inspect
import re
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.tasks import Task as DjangoTask
from django.tasks import TaskContext as DjangoTaskContext
from django.tasks import TaskResult, TaskResultStatus, task_backends
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from . import registry
from .execution import RunInterrupted
from .status import RunStatus, TaskStatus

#: The keys of a stored call in ``args_in``.
ARGS, KWARGS, BACKEND = "args", "kwargs", "backend"
#: The lines that start a traceback as Python prints it, each with the margin of the lines that follow:
#: the frames (indented further), then the exception's own line at that margin.
TRACEBACK_HEADERS = {
    "Traceback (most recent call last):": "",
    "  + Exception Group Traceback (most recent call last):": "  | ",
}
_EXCEPTION_NAME = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")
#: Runs that ended without the function raising: the exception Conductor raised (or would have).
RUN_STATUS_EXCEPTIONS = {
    RunStatus.TIMED_OUT: f"{__package__}.execution.TimeLimitExceeded",
    RunStatus.CANCELLED: f"{__package__}.execution.RunCancelled",
    RunStatus.INTERRUPTED: f"{__package__}.execution.RunInterrupted",
}
FAILED_RUNS = (RunStatus.FAILED, *RUN_STATUS_EXCEPTIONS)
TASK_STATUSES = {
    TaskStatus.WAITING: TaskResultStatus.READY,
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.FINISHED: TaskResultStatus.SUCCESSFUL,
}
#: Longest an async task's event loop sleeps, so that a time limit or a cancel reaches it that soon.
ASYNC_TICK = 0.05

_tasks: dict[str, DjangoTask] = {}  # dotted path -> the decorated Django task
_adapters: dict[str, Callable[..., Any]] = {}  # dotted path -> what is registered for it


# Registering -------------------------------------------------------------------------------------------


def register(task: DjangoTask) -> None:
    """Let the task's function run under Conductor (called when a Conductor backend validates it)."""
    path = task.module_path
    try:
        registered = registry.get(path)
    except registry.UnknownFunction:
        registered = None
    if registered is not None and registered is not _adapters.get(path):
        raise InvalidTask(
            f"{path} is registered with Conductor's @register too: decorate it with Django's @task or "
            "with @register, not both."
        )
    known = _tasks.get(path)
    if known is None or known.func is not task.func:  # first seen, or its module was reloaded
        _tasks[path] = task
    if registered is None:
        _adapters[path] = registry.register(_adapter(path, task.func))


def django_task(path: str) -> DjangoTask | None:
    """The Django task decorated at ``path`` in this process, if any."""
    return _tasks.get(path)


def _adapter(path: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def run_django_task(
        args: list | None = None, kwargs: dict | None = None, backend: str | None = None, context: Any = None
    ) -> Any:
        args, kwargs = args or [], kwargs or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError(f'{path} is a Django task: its args_in is {{"args": [...], "kwargs": {{...}}}}')
        return run(path, args, kwargs, backend, context)

    # Registered under the function's own path and name; the admin and dashboard show this call form.
    run_django_task.__module__ = func.__module__
    run_django_task.__qualname__ = func.__qualname__
    run_django_task.__name__ = func.__name__
    summary = (inspect.getdoc(func) or "").partition("\n")[0]
    run_django_task.__doc__ = (
        f"Django task {func.__name__}{inspect.signature(func)}, called with args_in "
        f'{{"args": [...], "kwargs": {{...}}}}. {summary}'
    ).strip()
    return run_django_task


# Running (in the runner's task thread, or a child process) -----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConductorTaskContext(DjangoTaskContext):
    """Django's TaskContext (``task_result``, ``attempt``) plus Conductor's live side of the run."""

    run: Any  # Conductor's app.context.TaskContext of this run

    @property
    def stop_requested(self) -> bool:
        """True once the run was cancelled or its runner is stopping: end soon, cleanly."""
        return self.run.stop_requested

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when a stop is requested; True if it was."""
        return self.run.wait(seconds)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Report how far the run is (0 to 1) with a short message; shown live on the dashboard."""
        self.run.report_progress(fraction, message)


def run(path: str, args: list, kwargs: dict, alias: str | None, context: Any) -> Any:
    """Call the Django task at ``path`` for the Conductor run ``context``, sending Django's signals."""
    if context is None:
        raise RuntimeError(f"{path} is a Django task: enqueue it, or run it as a Conductor task")
    backend = task_backends[alias or _tasks[path].backend]
    result = backend.get_result(context.task_id)
    task_started.send(sender=type(backend), task_result=result)
    try:
        if result.task.takes_context:
            args = [ConductorTaskContext(task_result=result, run=context), *args]
        value = normalize_json(_call(result.task.func, args, kwargs))  # not JSON: fails, as in Django
    except BaseException as exc:
        if _interrupted_by_runner(exc, context):
            raise  # the runner stops and gives the task back (READY): this try has not finished
        _fail(result, class_path(type(exc)), traceback.format_exc())
        task_finished.send(sender=type(backend), task_result=result)  # in the handler: exc_info is set
        raise
    if context.cancelled:  # it saw stop_requested and returned early: Conductor records it cancelled
        _fail(result, RUN_STATUS_EXCEPTIONS[RunStatus.CANCELLED], "Cancelled; the function returned early.\n")
    else:
        _finish(result, TaskResultStatus.SUCCESSFUL, _return_value=value)
    task_finished.send(sender=type(backend), task_result=result)
    return value


def _interrupted_by_runner(exc: BaseException, context: Any) -> bool:
    """Whether Conductor's stop reached this run (by identity, as app/interrupts.py records it: a task
    that raises RunInterrupted itself has failed; one that caught the stop is still interrupted)."""
    delivered = getattr(getattr(context, "interrupts", None), "delivered", None)
    return isinstance(delivered, RunInterrupted)


def _fail(result: TaskResult, exception_class_path: str, text: str) -> None:
    error = TaskError(exception_class_path=exception_class_path, traceback=text)
    _finish(result, TaskResultStatus.FAILED, errors=[*result.errors, error])


def _finish(result: TaskResult, status: TaskResultStatus, **fields: Any) -> None:
    # TaskResult is frozen; Django's own backends update it in place the same way.
    for name, value in {"status": status, "finished_at": timezone.now(), **fields}.items():
        object.__setattr__(result, name, value)


def _call(func: Callable[..., Any], args: list, kwargs: dict) -> Any:
    if inspect.iscoroutinefunction(func):
        return asyncio.run(_ticking(func(*args, **kwargs)))
    return func(*args, **kwargs)


async def _ticking(work: Coroutine[Any, Any, Any]) -> Any:
    """Await ``work`` on a loop that wakes every ASYNC_TICK.

    The runner stops a run (kill_time, cancel, shutdown) by raising an exception in its thread, which
    Python delivers only while the thread runs bytecode: an event loop waiting in select() for a long
    sleep would not notice. Waking often delivers it; if it lands in the ticker, the work ends with it.
    """
    job = asyncio.ensure_future(work)
    ticker = asyncio.ensure_future(_tick())
    try:
        await asyncio.wait({job, ticker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ticker.cancel()
        if not job.done():
            job.cancel()
    if job.done() and not job.cancelled():
        return job.result()
    raise ticker.exception() or asyncio.CancelledError()


async def _tick() -> None:
    while True:
        await asyncio.sleep(ASYNC_TICK)


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Reading back --------------------------------------------------------------------------------------------


def result_of(row: Any, task: DjangoTask, alias: str) -> TaskResult:
    """The TaskResult of a Conductor Task row that stores a Django task call."""
    runs = list(row.runs.select_related("runner").order_by("started_at", "pk"))
    call = row.args_in or {}
    status = TASK_STATUSES.get(row.status, TaskResultStatus.FAILED)
    finished = status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    result = TaskResult(
        task=task.using(
            priority=_priority(row.priority), queue_name=row.queue, run_after=row.start_at, backend=alias
        ),
        id=row.task_id,
        status=status,
        enqueued_at=row.created_at,
        started_at=runs[0].started_at if runs else None,
        last_attempted_at=runs[-1].started_at if runs else None,
        finished_at=(runs[-1].finished_at if runs else row.updated_at) if finished else None,
        args=call.get(ARGS) or [],
        kwargs=call.get(KWARGS) or {},
        backend=alias,
        errors=[_error(run) for run in runs if run.status in FAILED_RUNS],
        worker_ids=[run.runner.worker_id if run.runner else "" for run in runs],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", row.output)
    return result


def _priority(priority: int) -> int:
    # Conductor's priority has no bounds (the admin may set any); Django's must be within its range.
    return max(TASK_MIN_PRIORITY, min(TASK_MAX_PRIORITY, priority))


def _error(run: Any) -> TaskError:
    # Conductor's own interrupts first: their text may quote a traceback of something else.
    path = RUN_STATUS_EXCEPTIONS.get(run.status) or raised_class_path(run.error) or "builtins.Exception"
    return TaskError(exception_class_path=path, traceback=run.error)


def raised_class_path(text: str) -> str | None:
    """The dotted path of the exception a traceback as Python formats it ends with, or None if none.

    The runner stores only the traceback's text, so this is where a failed run's class comes from. It is
    the first line at the margin after the last traceback's frames (those are indented further); lines
    after it (a message's further lines, notes, sub-exceptions) cannot be mistaken for it.
    """
    lines = text.splitlines()
    starts = [number for number, line in enumerate(lines) if line in TRACEBACK_HEADERS]
    if not starts:
        return None
    margin = TRACEBACK_HEADERS[lines[starts[-1]]]
    for line in lines[starts[-1] + 1 :]:
        if not line.startswith(margin):
            return None
        named = line[len(margin) :]
        if named[:1].strip():
            found = _EXCEPTION_NAME.match(named)
            return _class_path_of_name(found.group(1)) if found else None
    return None


def _class_path_of_name(name: str) -> str | None:
    if "." in name:
        return name
    # Python leaves out the module of builtins (and of __main__, which no task function lives in).
    builtin = getattr(builtins, name, None)
    return f"builtins.{name}" if isinstance(builtin, type) and issubclass(builtin, BaseException) else None
