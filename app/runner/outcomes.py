"""When outcomes are recorded: in batches, one transaction (and commit) each.

They wait until ``size`` are in hand, no other run is in flight, or the first has waited ``delay``
seconds (too short for anyone to notice). A batch the database refused is put back, first in line.
"""

from typing import Any

from ..lifecycle import Outcome

#: Defaults: outcomes per batch, and the longest the first of them waits, in seconds.
RECORD_BATCH = 64
RECORD_DELAY = 0.005

Finished = tuple[Any, Outcome]  # (run, its outcome)


class OutcomeBatch:
    def __init__(self, size: int = RECORD_BATCH, delay: float = RECORD_DELAY) -> None:
        self.size = size
        self.delay = delay
        self._waiting: list[Finished] = []
        self.record_by = 0.0  # monotonic time by which the waiting outcomes are recorded

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, run: Any, outcome: Outcome, now: float) -> None:
        if not self._waiting:
            self.record_by = now + self.delay
        self._waiting.append((run, outcome))

    def due(self, now: float, others_running: bool) -> bool:
        """Whether to record now: a full batch, the first waited long enough, or nothing else runs."""
        if not self._waiting:
            return False
        return len(self._waiting) >= self.size or now >= self.record_by or not others_running

    def take(self) -> list[Finished]:
        batch, self._waiting = self._waiting, []
        return batch

    def put_back(self, batch: list[Finished]) -> None:
        """A batch that could not be recorded: kept, ahead of what came since, for the next try."""
        self._waiting = batch + self._waiting
