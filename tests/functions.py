"""Task functions the tests run; registered through CONDUCTOR_TASK_MODULES=tests.functions."""

import contextlib
import logging
import time
from pathlib import Path

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
