"""Demo task functions, registered like any user's: ``make run`` loads a few tasks that use them."""

import contextlib
import json
import logging
import random
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from app import register
from app.context import TaskContext

logger = logging.getLogger(__name__)


@register
def noop() -> None:
    """Does nothing; for throughput measurements."""


@register
def poll_feed(url: str = "https://example.com/feed.xml") -> dict:
    """Pretends to poll a feed and reports how many new items it saw."""
    new_items = random.randint(0, 5)
    logger.info("Polled %s: %d new items", url, new_items)
    return {"url": url, "new_items": new_items}


@register
def slow_job(seconds: float = 5.0, steps: int = 5) -> str:
    """Works for a while, printing its progress."""
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        print(f"step {step}/{steps} done")
    return f"finished {steps} steps in about {seconds} s"


@register
def failing_job(message: str = "the upstream service answered 503") -> None:
    """Always fails, to show how a failure is recorded."""
    raise RuntimeError(message)


@register
def count_tasks(context: TaskContext) -> dict:
    """A db_use job: counts rows while no other db_use job runs, and publishes the counts.

    It shows the fencing pattern (README, "Fencing from inside a task"): a run whose runner was frozen
    past the heartbeat timeout is recovered, and another db_use run may start meanwhile. So it asks
    ``context.still_owner()`` before its one irreversible step, and that step carries the run's fence:
    a report written by an older claim never replaces a newer one.
    """
    from app.task import Task
    from app.taskrun import TaskRun

    counts = {"tasks": Task.objects.count(), "runs": TaskRun.objects.count()}
    if not context.still_owner():
        logger.warning("Run of fence %s lost its claim: its counts are not published", context.fence)
        return {**counts, "published": False}
    return {**counts, "published": _publish_counts(counts, context.fence)}


def _publish_counts(counts: dict, fence: int) -> bool:
    """Replace the published report unless a newer claim already wrote one (its fence is higher)."""
    report = Path(settings.VAR_DIR) / "demo-counts.json"
    with contextlib.suppress(OSError, ValueError):
        if json.loads(report.read_text())["fence"] >= fence:
            return False
    partial = report.with_suffix(".partial")
    partial.write_text(json.dumps({**counts, "fence": fence}))
    partial.replace(report)  # a reader sees the old report or the new one, never half of one
    return True


@register
def busy_loop(seconds: float = 60.0) -> int:
    """Computes for ``seconds`` in pure Python; with a shorter kill_time it gets interrupted."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
    return rounds


@register
def import_batch(context: TaskContext, rows: int = 120, seconds: float = 50.0) -> int:
    """Imports rows for most of a minute, printing and reporting progress: the live stack, log and bar."""
    for row in range(1, rows + 1):
        if context.wait(seconds / rows):  # a cancel or a stopping runner ends it early, politely
            logger.info("Import stopped after %d of %d rows", row - 1, rows)
            return row - 1
        if row % 10 == 0:
            print(f"imported {row} of {rows} rows")
        context.report_progress(row / rows, f"{row} of {rows} rows")
    return rows


@register
def enqueue_burst(count: int = 200) -> int:
    """Saves a burst of short one-off tasks at once, so the charts and live rows have something to show."""
    from app.status import TaskStatus
    from app.task import Task

    # The demo runs for days: the previous bursts' finished items go, and their runs with them.
    Task.objects.filter(task_id__startswith="demo-burst-", status=TaskStatus.FINISHED).delete()
    tasks = [Task(name=f"burst item {n}", func=noop, task_id=f"demo-burst-{uuid.uuid4().hex[:12]}")
             for n in range(count)]  # fmt: skip
    for task in tasks:
        task.next_run = timezone.now()
    Task.objects.bulk_create(tasks)
    return count


@register
def stuck_in_c(seconds: float = 20.0) -> str:
    """Blocks in C (``time.sleep``) past its kill_time: a thread cannot be interrupted there, so the
    dashboard shows it overrunning until the call returns (use ``isolation="process"`` to kill it)."""
    time.sleep(seconds)
    return f"slept {seconds} s in C"
