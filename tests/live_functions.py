"""Task functions that take a TaskContext (registered when test_live_runner.py imports this module)."""

import time

from app.context import TaskContext
from app.registry import register


@register
def until_cancelled(context: TaskContext, seconds: float = 30.0) -> str:
    """Waits, reporting nothing, until it is asked to stop (cancel or runner stop): ends cleanly."""
    if context.wait(seconds):
        return "stopped cleanly"
    return "never asked to stop"


@register
def in_steps(context: TaskContext, steps: int = 5, pause: float = 0.15) -> int:
    """Prints and reports its progress after each step."""
    for step in range(1, steps + 1):
        time.sleep(pause)
        print(f"step {step} done")
        context.report_progress(step / steps, f"step {step} of {steps}")
    return steps
