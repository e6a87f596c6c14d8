"""Demo task functions, registered like any user's: ``make run`` loads a few tasks that use them."""

import logging
import random
import time

from app import register

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
def count_tasks() -> dict:
    """A db_use job: reads the database while no other db_use job runs."""
    from app.task import Task
    from app.taskrun import TaskRun

    return {"tasks": Task.objects.count(), "runs": TaskRun.objects.count()}


@register
def busy_loop(seconds: float = 60.0) -> int:
    """Computes for ``seconds`` in pure Python; with a shorter kill_time it gets interrupted."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
    return rounds
