"""Heartbeats and recovery: this runner says it lives, and gives back the work of runners that died.

Every ``HEARTBEAT`` seconds the runner updates its row and recovers runners silent for over
``HEARTBEAT_TIMEOUT``. A runner others presumed dead (it was paused too long) signs in again. While the
database is unreachable nobody can heartbeat, so nobody is presumed dead until this runner has been back
long enough for the others to sign in again too.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from .. import events
from ..lifecycle import recover_stale
from ..runnerprocess import RunnerProcess

logger = logging.getLogger("conductor.runner")


class Heartbeats:
    def __init__(self, settings: Any, worker_id: str, publish: Callable[..., None], retry_max: float) -> None:
        self.interval = settings.HEARTBEAT
        self.timeout = settings.HEARTBEAT_TIMEOUT
        self.worker_id = worker_id
        self.publish = publish
        self.retry_max = retry_max  # the longest another runner may wait between tries of the database
        self.next_at = 0.0
        self.recover_not_before = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def beat(self, record: RunnerProcess, threads_state: list[dict], threads: int, now: float) -> None:
        """Heartbeat (signing in again if presumed dead), then recover the runners that died."""
        self.next_at = now + self.interval
        if not record.heartbeat(threads_state):
            logger.error(
                "Runner %s was presumed dead by others (heartbeat older than %s s); its runs were "
                "recovered and their late results will be refused. Signing in again.",
                self.worker_id,
                self.timeout,
            )
            self.publish(events.RUNNER_PRESUMED_DEAD)
            record.revive()
        self.recover_dead(record)
        self.publish(events.RUNNER_HEARTBEAT, busy=len(threads_state), threads=threads)

    def recover_dead(self, record: RunnerProcess) -> None:
        if time.monotonic() < self.recover_not_before:
            return
        for dead, reason, run_ids in recover_stale(self.timeout, by=record):
            logger.warning("%s: %d runs interrupted and due again", reason, len(run_ids))
            self.publish(events.RUNS_RECOVERED, dead_runner=dead.worker_id, runs=run_ids)

    def database_lost(self) -> None:
        """Others cannot heartbeat either: presume no one dead until this runner is back."""
        self.recover_not_before = float("inf")

    def database_back(self, now: float) -> None:
        """Heartbeat at once; give the others a full backoff to sign in before any is presumed dead, or
        their running tasks would be run a second time."""
        self.recover_not_before = now + max(self.timeout, self.retry_max + self.interval)
        self.next_at = 0.0
