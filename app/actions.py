"""Staff actions on tasks and runs: one code path for the dashboard's commands and the admin's actions.

Each action changes the database (the source of truth), then tells every open dashboard and wakes the
runners through the channel layer, so a runner reacts the same way whoever asked. Actions that do not
apply raise TaskActionError with the reason.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError

from . import events
from .bridge import RUNNERS_GROUP, runner_group
from .rows import row_of
from .task import PROTECTED_FIELDS, Task, TaskActionError
from .taskrun import TaskRun

logger = logging.getLogger("conductor.actions")

__all__ = ["PROTECTED_FIELDS", "TaskActionError", "announce", "announce_deleted", "cancel", "create",
           "duplicate", "pause", "request_stack", "resume", "run_now", "stop_loop",
           "withheld_fields"]  # fmt: skip


def run_now(task: Task) -> str:
    message = task.request_run_now()
    announce(task.pk, wake=True)
    return message


def stop_loop(task: Task) -> str:
    message = task.stop_looping()
    announce(task.pk)
    return message


def pause(task: Task) -> str:
    message = task.set_paused(True)
    announce(task.pk)
    return message


def resume(task: Task) -> str:
    message = task.set_paused(False)
    announce(task.pk, wake=True)
    return message


#: Task fields that only users with the matching permission may set: conn sends every run's output and
#: traceback to a socket, use_pdb opens a debugger on the runner's terminal.


def withheld_fields(user: Any) -> set[str]:
    """The protected fields ``user`` may not set."""
    return {field for field, permission in PROTECTED_FIELDS.items() if not user.has_perm(permission)}


def create(fields: dict[str, Any], conn: str | None = None, by: Any = None) -> Task:
    """A new task, validated like any other (ValidationError names the field).

    ``conn`` is the requesting socket's own channel, where its results go back. ``fields`` may set a
    protected field only for a user (``by``) with its permission.
    """
    setting = {field for field in PROTECTED_FIELDS if fields.get(field) not in (None, False)}
    refused = setting - _allowed_fields(by)
    if refused:
        raise ValidationError(
            {field: f"You need the {PROTECTED_FIELDS[field]} permission to set {field}." for field in refused}
        )
    task = Task(**{"conn": conn, **fields})
    task.save()
    announce(task.pk, wake=True)
    return task


def duplicate(task: Task, by: Any) -> Task:
    """A copy of every field of the task's definition (``Task.definition_fields()``), waiting to run at
    once; ``conn`` and ``use_pdb`` only if ``by`` may set them."""
    allowed = _allowed_fields(by)
    kept = [name for name in Task.definition_fields() if name not in PROTECTED_FIELDS or name in allowed]
    copy = Task(**{name: getattr(task, name) for name in kept})
    copy.name = f"{task.name} (copy)"[:200]
    copy.run_in = 0  # waiting to run at once, on its schedule if it has one
    try:
        copy.save()
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
        raise TaskActionError(f"{task.name} cannot be copied: {problems}") from exc
    announce(copy.pk, wake=True)
    return copy


def _allowed_fields(user: Any) -> set[str]:
    """Nobody (None) may set a protected field: every action is taken on behalf of someone."""
    return set() if user is None else set(PROTECTED_FIELDS) - withheld_fields(user)


def cancel(run: TaskRun, by: str, reply_to: str | None = None, request: Any = None) -> str:
    _to_runner(run, "cancel", by, reply_to, request)
    return f"Cancel of run {run.pk} ({run.task.name}) requested"


def request_stack(run: TaskRun, by: str, reply_to: str, request: Any = None) -> None:
    _to_runner(run, "stack", by, reply_to, request)


def running_run(run_pk: int) -> TaskRun:
    run = TaskRun.objects.select_related("runner", "task").filter(pk=run_pk).first()
    if run is None:
        raise TaskActionError(f"There is no run {run_pk}.")
    if run.finished_at is not None or run.runner is None:
        raise TaskActionError(f"Run {run_pk} is not running on a runner.")
    return run


def _to_runner(run: TaskRun, command: str, by: str, reply_to: str | None, request: Any) -> None:
    message = {"type": "runner.command", "command": command, "run": run.pk, "by": by,
               "reply_to": reply_to, "request": request}  # fmt: skip
    _group_send(runner_group(run.runner.worker_id), message)


def announce(task_pk: int, wake: bool = False) -> None:
    """Tell every open dashboard how the task is now; with wake, make runners look at once."""
    task = Task.objects.get(pk=task_pk)
    events.publish_now(events.TASK_CHANGED, task=task.pk, task_id=task.task_id, name=task.name,
                       task_row=row_of(task))  # fmt: skip
    if wake:  # on PostgreSQL the update itself woke the runners (a trigger); this reaches the others
        _group_send(RUNNERS_GROUP, {"type": "runner.command", "command": "wake"})


def announce_deleted(task_pk: int) -> None:
    events.publish_now(events.TASK_DELETED, task=task_pk)


def _group_send(group: str, message: dict[str, Any]) -> None:
    """Send from sync code; inside a web request this runs on the server's own event loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.exception("Could not tell %s; open pages will catch up at their next snapshot", group)
