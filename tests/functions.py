"""Task functions the tests run; registered through CONDUCTOR_TASK_MODULES=tests.functions."""

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from app.execution import TimeLimitExceeded
from app.registry import register

logger = logging.getLogger(__name__)


@register
def add(a: int, b: int = 0) -> int:
    return a + b


@register
def stamp() -> float:
    """The wall-clock time at the function's first line (pickup latency)."""
    return time.time()


@register
def say(text: str) -> str:
    print(f"printed: {text}")
    logger.info("logged: %s", text)
    return text


@register
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@register
def busy(seconds: float = 30.0) -> int:
    """A pure-Python loop that swallows every Exception (but not Conductor's interrupts)."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            rounds += 1
    return rounds


@register
def c_sleep(seconds: float) -> str:
    """Blocks in C (time.sleep): cannot be interrupted before it returns."""
    time.sleep(seconds)
    return "slept"


@register
def hold(seconds: float) -> dict:
    """Records when it held its slot; used to prove db_use runs never overlap."""
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time()}


@register
def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """Runs until ``path`` exists (a test creates it), so a test controls when it ends."""
    deadline = time.monotonic() + timeout
    marker = Path(path)
    while not marker.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return "released"


@register
def touch_then_wait(started: str, release: str, timeout: float = 30.0) -> str:
    """Signals that it started (creates ``started``), then waits for ``release``."""
    Path(started).touch()
    return wait_for_file(release, timeout)


# Tasks that leave by BaseException (issue 13): each is the task's own failure -------------------------


class Departure(BaseException):
    """A custom BaseException, as some libraries raise to unwind."""


@register
def quits(how: str) -> None:
    """Leaves the way ``how`` names; what it raises never is an Exception."""
    if how == "SystemExit":
        raise SystemExit(1)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if how == "sys.exit":
        sys.exit(1)
    if how == "exit":
        exit()  # the site builtin argparse-style scripts call
    if how == "Departure":
        raise Departure("leaving")
    raise ValueError(f"unknown way to quit: {how!r}")


@register
def quits_in_a_child(how: str) -> None:
    """``sys.exit(3)`` or ``os._exit(3)``, before the child can report a result."""
    print("about to leave", flush=True)
    if how == "os._exit":
        os._exit(3)
    sys.exit(3)


@register
def exits_after_time_limit(journal: str, seconds: float = 30.0) -> None:
    """Catches Conductor's TimeLimitExceeded (noting it in ``journal``), then calls sys.exit(2)."""
    try:
        Path(journal).write_text("started\n")  # inside the try: the interrupt comes after this
        busy(seconds)
    except TimeLimitExceeded:
        Path(journal).write_text("started\ncaught TimeLimitExceeded\n")
        sys.exit(2)


# async def tasks (issue 12 item 5) ----------------------------------------------------------------


@register
async def async_add(a: int, b: int = 0) -> int:
    await asyncio.sleep(0)
    return a + b


@register
async def async_fail(message: str = "async boom") -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


@register
async def async_say(text: str, context) -> str:
    """Prints, logs and reports progress between awaits."""
    print(f"printed: {text}")
    await asyncio.sleep(0)
    logger.info("logged: %s", text)
    context.report_progress(0.5, f"half of {text}")
    await asyncio.sleep(0)
    return text


@register
async def async_wait(journal: str, seconds: float = 30.0) -> str:
    """Writes "started" to ``journal``, awaits ``seconds``, and notes there a CancelledError it gets."""
    path = Path(journal)
    path.write_text("started\n")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError as exc:
        path.write_text(f"started\nCancelledError: {' '.join(map(str, exc.args))}\n")
        raise
    return "slept"


@register
def returns_a_coroutine(a: int, b: int = 0):
    """Not ``async def``, yet what it returns must be awaited."""
    return async_add(a, b)


@register
async def async_count_tasks(name: str) -> int:
    """Django's async ORM API from an async task (a sync query here would raise SynchronousOnlyOperation)."""
    from app.task import Task

    return await Task.objects.filter(name=name).acount()


@register
def database_name() -> str:
    """The database this process's default connection uses (for isolation="process": the parent's)."""
    from django.db import connection

    return str(connection.settings_dict["NAME"])
