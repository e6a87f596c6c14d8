"""Task functions the benchmark runs; registered through CONDUCTOR_TASK_MODULES=bench.functions."""

import time

from app.registry import register


@register
def noop() -> None:
    """Does nothing: drain throughput measures Conductor's overhead alone."""


@register
def stamp() -> float:
    """The wall-clock time at the function's first line (pickup latency)."""
    return time.time()
