"""django-q2's task functions, and the hooks that record a drain's span (bench/peers/span.py).

The start comes from ``pre_execute`` in the worker, just before the function is called; the end from
``post_execute`` in the monitor, after it saved the result and acknowledged (deleted) the queued task: the
point where a task is done for django-q2's ORM broker.
"""

import time

from django.apps import AppConfig


def noop() -> None:
    """Does nothing: drain throughput measures the runner's overhead alone."""


def stamp() -> float:
    """The wall-clock time at the function's first line (pickup latency)."""
    return time.time()


def on_pre_execute(**kwargs: object) -> None:
    from bench.peers.span import span

    span.started()


def on_post_execute(task: dict, **kwargs: object) -> None:
    from bench.peers.span import span

    if task.get("success"):
        span.finished()


class BenchQ2Config(AppConfig):
    name = "bench.peers.q2_app"
    label = "bench_q2"

    def ready(self) -> None:
        from django_q.signals import post_execute, pre_execute

        pre_execute.connect(on_pre_execute, dispatch_uid="bench-span-start")
        post_execute.connect(on_post_execute, dispatch_uid="bench-span-end")
