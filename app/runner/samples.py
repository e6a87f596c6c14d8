"""The history runners write for the dashboard (app/history.py): at each heartbeat, a sample of this
runner, the queues' depth once per bucket for the whole system, and, once a minute, a prune of what is
older than ``HISTORY_RETENTION``.

History is for looking back, not for running tasks: a sample that cannot be written is logged (once until
sampling works again) and skipped, never the runner's end. A database that went away is noticed by the
runner's own next step, which backs off as for any outage.
"""

import logging
import time
from typing import Any

from ..history import PRUNE_BATCH, HeartbeatSample, QueueDepthSample, bucket_of
from ..runnerprocess import RunnerProcess

logger = logging.getLogger("conductor.runner")
#: Seconds between prunes by one runner; a prune that found a full batch goes on at the next heartbeat.
PRUNE_EVERY = 60.0


class Samples:
    def __init__(self, settings: Any, worker_id: str) -> None:
        self.retention = settings.HISTORY_RETENTION
        self.worker_id = worker_id
        self.prune_at = 0.0  # monotonic
        self.failing = False

    def take(self, record: RunnerProcess, now: float) -> None:
        """Sample ``record`` as its heartbeat just wrote it (``now``: monotonic); never raises."""
        try:
            self._write(record, now)
        except Exception as exc:  # history must never stop the runner (module docstring)
            if not self.failing:
                logger.warning("Runner %s could not write the dashboard's history (%s: %s); skipped until "
                               "it can", self.worker_id, type(exc).__name__, exc)  # fmt: skip
            self.failing = True
        else:
            if self.failing:
                logger.info("Runner %s writes the dashboard's history again", self.worker_id)
            self.failing = False

    def _write(self, record: RunnerProcess, now: float) -> None:
        HeartbeatSample.objects.record(record)
        # The database's time, by the offset the heartbeat just measured (0 on SQLite: one machine's clock).
        QueueDepthSample.objects.record(bucket_of(time.time() + (record.clock_offset or 0.0)))
        if now >= self.prune_at:
            self.prune_at = now + PRUNE_EVERY
            pruned = [queryset.prune(self.retention) for queryset in (HeartbeatSample.objects,
                                                                      QueueDepthSample.objects)]  # fmt: skip
            if any(count >= PRUNE_BATCH for count in pruned):
                self.prune_at = now  # more is left: the next heartbeat goes on
