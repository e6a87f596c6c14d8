"""What the runner tells: its events about runs, as plain data, and its log lines about outcomes.

Events carry plain values (``task_row``, ``run_row``, ``outcome``: field values as the models and
``Outcome`` hold them); the web side (``app.snapshot.page_event``) makes the page's JSON of them.
Events are built only when someone listens (``events.listening()``).
"""

import logging
from collections.abc import Callable
from typing import Any

from .. import events
from ..lifecycle import Outcome
from ..rows import row_of
from ..status import RunStatus

logger = logging.getLogger("conductor.runner")

Publish = Callable[..., None]

STATUS_EVENTS = {
    RunStatus.CANCELLED: events.TASK_CANCELLED,
    RunStatus.FINISHED: events.TASK_FINISHED,
    RunStatus.FAILED: events.TASK_FAILED,
    RunStatus.TIMED_OUT: events.TASK_TIMED_OUT,
    RunStatus.INTERRUPTED: events.TASK_INTERRUPTED,
}


def describe(task: Any, run: Any) -> dict[str, Any]:
    """The fields every task event carries."""
    return {"task": task.pk, "task_id": task.task_id, "name": task.name, "run": run.pk}


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text and text.strip() else ""


def announce_start(publish: Publish, task: Any, run: Any, thread: Any) -> None:
    publish(events.TASK_CLAIMED, **describe(task, run), task_row=row_of(task))
    publish(events.THREAD_STARTED, **describe(task, run), thread=thread.name, ident=thread.ident,
            daemon=thread.daemon)  # fmt: skip


def announce_thread_end(publish: Publish, task: Any, run: Any, thread: Any) -> None:
    """The run's thread is done and free, as soon as the runner knows: its outcome is recorded later, in a
    batch (runner/outcomes.py), and a page's threads panel shows the threads at work, not the runs
    waiting for their record (up to 64 of them for 8 threads during a burst)."""
    publish(events.THREAD_FINISHED, **describe(task, run), thread=thread.name, ident=thread.ident)


def announce_end(publish: Publish, run: Any, outcome: Outcome, accepted: bool) -> None:
    """A recorded run: its result (or that it was refused as late)."""
    task = run.task  # an accepted run's task as the database now has it (lifecycle.finish_many)
    described = describe(task, run)
    if not accepted:
        publish(events.LATE_WRITE_REFUSED, **described)
        return
    result = {"status": str(outcome.status), "duration": outcome.duration, "output": outcome.output}
    publish(STATUS_EVENTS[outcome.status], **described, **result, error=last_line(outcome.error),
            task_row=row_of(task), run_row=row_of(run), outcome=dict(vars(outcome)))  # fmt: skip
    if task.conn:
        publish(events.TASK_RESULT, **described, **result, conn=task.conn, error=outcome.error)


def log_end(run: Any, outcome: Outcome, accepted: bool) -> None:
    if not accepted:
        logger.warning("Run %s of %s ended after it was recovered elsewhere; its result was refused",
                       run.pk, run.task.name)  # fmt: skip
    elif outcome.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        logger.warning(
            "Task %s run %s %s: %s", run.task.name, run.pk, outcome.status, last_line(outcome.error)
        )
