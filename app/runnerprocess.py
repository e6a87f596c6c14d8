"""A registered ``runtasks`` process: who it is, where it runs, and whether it is still alive.

Signing in and recovering a dead runner's work are the lifecycle's (app/lifecycle/recovery.py).
"""

import os
import socket
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from . import dbclock, orphans
from .status import RunnerState

LIVE_STATES = (RunnerState.RUNNING, RunnerState.STOPPING)


class RunnerQuerySet(models.QuerySet):
    def live(self) -> "RunnerQuerySet":
        return self.filter(state__in=LIVE_STATES)

    def stale(self, timeout: float) -> "RunnerQuerySet":
        """Live-looking runners whose heartbeat is older than ``timeout`` seconds, by the database's clock."""
        return self.live().filter(heartbeat_at__lt=dbclock.Now(minus=timeout))


class RunnerProcess(models.Model):
    worker_id = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    state = models.CharField(max_length=20, choices=RunnerState.choices, default=RunnerState.RUNNING)
    threads = models.PositiveIntegerField(default=0, help_text="Most task threads at once.")
    busy = models.PositiveIntegerField(default=0, help_text="Task threads running now.")
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    threads_state = models.JSONField(
        default=list, blank=True, help_text="Its task threads at the last heartbeat."
    )
    degraded = models.CharField(
        max_length=500, blank=True, default="", help_text="What it cannot reach now (empty: healthy)."
    )
    clock_offset = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds the database's clock is ahead of this runner's (negative: behind), as measured "
        "at its last heartbeat.",
    )
    events_dropped = models.PositiveBigIntegerField(
        default=0,
        help_text="Live events it dropped since it started (its publisher's and its channel bridge's "
        "queues), as of its last heartbeat.",
    )

    objects = RunnerQuerySet.as_manager()

    class Meta:
        verbose_name = "runner"
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.state})"

    @staticmethod
    def default_worker_id() -> str:
        return f"{socket.gethostname()}-{os.getpid()}"

    def ensure_gone(self, now: datetime | None = None) -> None:
        """Refuse to take over a worker id whose process still runs (``now``: the database's time)."""
        if self.state not in LIVE_STATES:
            return
        same_host = self.host == socket.gethostname()
        if same_host and self.pid != os.getpid() and orphans.is_running(self.pid):
            raise RuntimeError(
                f"worker id {self.worker_id!r} is in use by a live runner (pid {self.pid} on "
                f"{self.host}); stop it or choose another --worker-id"
            )
        if not same_host and self.heartbeat_at > (now or dbclock.now()) - timedelta(seconds=60):
            raise RuntimeError(
                f"worker id {self.worker_id!r} is in use by a runner on {self.host} that "
                "heartbeat in the last minute; choose another --worker-id"
            )

    def heartbeat(
        self, threads_state: list[dict], clock_offset: float | None = None, events_dropped: int = 0
    ) -> bool:
        """Record that this runner lives (by the database's clock); False when others had already presumed
        it dead."""
        self.clock_offset, self.busy, self.events_dropped = clock_offset, len(threads_state), events_dropped
        alive = RunnerProcess.objects.filter(pk=self.pk, state__in=LIVE_STATES).update(
            heartbeat_at=dbclock.Now(), busy=self.busy, threads_state=threads_state,
            clock_offset=clock_offset, events_dropped=events_dropped,
        )  # fmt: skip
        return alive == 1

    def set_state(self, state: str) -> None:
        self.state = state
        self.save(update_fields=["state"])

    def set_degraded(self, reason: str) -> None:
        """Record what this runner cannot reach ("" once it reaches everything again)."""
        self.degraded = reason[: RunnerProcess._meta.get_field("degraded").max_length]
        self.save(update_fields=["degraded"])

    def revive(self) -> None:
        """Sign in again after being presumed dead (its old runs were recovered meanwhile)."""
        self.state = RunnerState.RUNNING
        self.heartbeat_at = dbclock.now()
        self.stopped_at = None
        self.save(update_fields=["state", "heartbeat_at", "stopped_at"])
