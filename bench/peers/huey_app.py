"""huey's app: SqliteHuey with its defaults (WAL among them) on BENCH_PEER_DB; no Django.

A drain's span comes from huey's own signals, in the worker thread: SIGNAL_EXECUTING just before the function
is called, SIGNAL_COMPLETE after its result (if any) is stored.
"""

import os
import time

from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING

from bench.peers.span import span

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_PEER_DB", "huey.sqlite3"))


@huey.task()
def noop() -> None:
    """Does nothing: drain throughput measures the runner's overhead alone."""


@huey.task()
def stamp() -> float:
    """The wall-clock time at the function's first line (pickup latency)."""
    return time.time()


@huey.signal(SIGNAL_EXECUTING)
def on_executing(signal: str, task: object) -> None:
    span.started()


@huey.signal(SIGNAL_COMPLETE)
def on_complete(signal: str, task: object) -> None:
    span.finished()
