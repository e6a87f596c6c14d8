"""Django ``@task`` functions the tests enqueue on Conductor's backend (TASKS in server/settings.py).

Runner subprocesses import this module through CONDUCTOR_TASK_MODULES (decorating registers each function
with Conductor). When DJANGO_TASK_SIGNALS names a file, every process appends one JSON line to it for each
Django task signal it sends, so a test can see which process sent what, and when.
"""

import asyncio
import json
import os
import time
from typing import Any

from django.dispatch import receiver
from django.tasks import task
from django.tasks.signals import task_enqueued, task_finished, task_started

SIGNALS_ENV = "DJANGO_TASK_SIGNALS"


class Boom(Exception):
    """A failure of the tests' own, so that its class path is not a builtin's."""


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task
def echo(label: str) -> str:
    return label


@task
def explode(message: str) -> None:
    raise Boom(message)


@task
def returns_a_set() -> set:
    return {1, 2}  # not JSON: the task fails, as Django requires


@task(takes_context=True)
def describe_context(context: Any, note: str) -> dict:
    result = context.task_result
    context.report_progress(1.0, "described")
    return {"attempt": context.attempt, "id": result.id, "status": result.status, "note": note,
            "workers": result.worker_ids, "stop_requested": context.stop_requested}  # fmt: skip


@task(takes_context=True, max_attempts=2, retry_delay=0)
def fails_once(context: Any) -> int:
    if context.attempt < 2:
        raise Boom(f"attempt {context.attempt} fails")
    return context.attempt


@task(takes_context=True)
def hangs_on_first_try(context: Any) -> int:
    if context.attempt == 1:
        context.wait(60)  # until its runner stops, or dies
    return context.attempt


@task(kill_time=0.5)
def spins(seconds: float = 30.0) -> int:
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
    return rounds


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@task(kill_time=0.5)
async def async_sleeps(seconds: float = 30.0) -> str:
    await asyncio.sleep(seconds)
    return "woke up"


@task(queue_name="fast", priority=5)
def in_fast_queue() -> str:
    return "fast"


@task(isolation="process")
def in_child_process(a: int, b: int) -> dict:
    return {"sum": a + b, "pid": os.getpid()}


@task(db_use=True, loop=True, interval=0.2, max_runs=2)
def loops_twice() -> float:
    return time.time()


def _log_signal(name: str, task_result: Any) -> None:
    path = os.environ.get(SIGNALS_ENV)
    if not path:
        return
    line = {"signal": name, "id": task_result.id, "status": task_result.status, "pid": os.getpid(),
            "attempts": task_result.attempts, "errors": len(task_result.errors)}  # fmt: skip
    with open(path, "a") as log:
        log.write(json.dumps(line) + "\n")


@receiver(task_enqueued)
def _enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log_signal("enqueued", task_result)


@receiver(task_started)
def _started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log_signal("started", task_result)


@receiver(task_finished)
def _finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log_signal("finished", task_result)
