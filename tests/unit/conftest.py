"""Fixtures shared by the unit tests of the runner's worker threads and its time limits."""

import queue
from collections.abc import Iterator

import pytest

from app.runner.workers import WorkerPool

REPORT_TIMEOUT = 10


class Reports:
    """What the pool's workers report, in order: (run id, outcome)."""

    def __init__(self) -> None:
        self.received: queue.SimpleQueue[tuple[int, object]] = queue.SimpleQueue()

    def __call__(self, run_id: int, outcome: object) -> None:
        self.received.put((run_id, outcome))

    def next(self) -> tuple[int, object]:
        return self.received.get(timeout=REPORT_TIMEOUT)


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def pool(reports: Reports) -> Iterator[WorkerPool]:
    workers = WorkerPool(2, reports)
    yield workers
    workers.close()
