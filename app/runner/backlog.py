"""How many runs to claim, and the runs claimed ahead of free threads.

While recent runs are short (a moving average under ``PREFETCH_MAX_RUN`` seconds), the runner claims up
to ``PREFETCH_PER_THREAD`` runs per thread ahead of free threads and starts them as threads free up: a
drain of short tasks then costs one claim per batch, not one per run. It refills in one batch once the
backlog falls to ``threads``. Longer tasks are never claimed ahead, so one runner does not hold back
work that another could start.
"""

import collections
from typing import Any

PREFETCH_PER_THREAD = 4
PREFETCH_MAX_RUN = 0.02
#: Weight of the newest run in the moving average of run durations.
RECENT_WEIGHT = 0.2

Claimed = tuple[Any, Any]  # (task, run)


class Backlog:
    def __init__(self, threads: int, max_tasks: int | None = None) -> None:
        self.threads = threads
        self.max_tasks = max_tasks
        self.claimed = 0  # runs claimed in all
        self.recent_run: float | None = None  # moving average of run durations, seconds
        self._runs: collections.deque[Claimed] = collections.deque()

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, claimed: list[Claimed]) -> None:
        self._runs.extend(claimed)
        self.claimed += len(claimed)

    def next(self) -> Claimed:
        return self._runs.popleft()

    def drop(self) -> list[Claimed]:
        """Every run claimed ahead, taken out: none of them is to start."""
        dropped = list(self._runs)
        self._runs.clear()
        return dropped

    def ran(self, duration: float) -> None:
        """A run took ``duration`` seconds: the moving average decides whether to claim ahead."""
        previous = self.recent_run if self.recent_run is not None else duration
        self.recent_run = (1 - RECENT_WEIGHT) * previous + RECENT_WEIGHT * duration

    def capacity(self, running: int) -> int:
        """How many runs to claim now, with ``running`` runs on threads."""
        free = self.threads - running - len(self._runs)
        if self.recent_run is not None and self.recent_run < PREFETCH_MAX_RUN:
            if len(self._runs) > self.threads:
                return 0  # work enough queued: claim again in one larger batch, not a few at a time
            free += PREFETCH_PER_THREAD * self.threads
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self.claimed)
        return free
