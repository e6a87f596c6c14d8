"""Recent history for the dashboard's charts, written by runners: queue depth and each runner's heartbeats.

The database is the one source: a page opened now draws the last hour from these rows, not only what it
has seen since it opened. Runners write them at their heartbeats (app/runner/samples.py) and prune what is
older than ``HISTORY_RETENTION``, a bounded batch at a time; every read and delete walks an index.

Queue depth is sampled once per ``DEPTH_BUCKET`` for the whole system, by whichever runner gets there
first: a cheap look for the bucket's rows comes first, so N runners do not each run the GROUP BY over the
tasks, and the unique (bucket, queue) with an insert that ignores conflicts keeps one row when two race.
"""

from datetime import UTC, datetime
from typing import Any

from django.db import models
from django.db.models import Count, Q

from . import dbclock
from .runnerprocess import RunnerProcess
from .status import TaskStatus
from .task import Task

#: Seconds per queue-depth sample. Three default heartbeats (5 s) fall in each, so one runner fills every
#: bucket even when a heartbeat is late; an hour is 240 points per queue (a 600-pixel chart has no room
#: for more); and the GROUP BY over the tasks runs at most four times a minute, however many runners.
DEPTH_BUCKET = 15
#: Most rows one prune deletes: a delete holds its locks briefly, and the next heartbeat does more.
PRUNE_BATCH = 1000


def depth_by_queue(now: Any) -> list[dict[str, Any]]:
    """[{queue, due, waiting, running}] as the tasks are now (``now``: a datetime or ``dbclock.Now()``).

    One GROUP BY: due is waiting, not paused and next_run passed (the lifecycle's ``due``).
    """
    rows = Task.objects.values("queue").annotate(
        due=Count("id", filter=Q(status=TaskStatus.WAITING, paused=False, next_run__lte=now)),
        waiting=Count("id", filter=Q(status=TaskStatus.WAITING)),
        running=Count("id", filter=Q(status=TaskStatus.RUNNING)),
    )
    return list(rows.order_by("queue"))


def bucket_of(timestamp: float) -> datetime:
    """The start of the depth bucket that a database time (epoch seconds) falls in."""
    return datetime.fromtimestamp(timestamp - timestamp % DEPTH_BUCKET, tz=UTC)


class PrunableQuerySet(models.QuerySet):
    time_field = ""

    def prune(self, older_than: float) -> int:
        """Delete up to PRUNE_BATCH rows older than ``older_than`` seconds by the database's clock, oldest
        first (an index range); returns how many. Nothing to delete costs one indexed read, no write."""
        old = self.filter(**{f"{self.time_field}__lt": dbclock.Now(minus=older_than)})
        ids = list(old.order_by(self.time_field).values_list("pk", flat=True)[:PRUNE_BATCH])
        if not ids:
            return 0
        deleted, _ = self.model.objects.filter(pk__in=ids).delete()
        return deleted


class QueueDepthQuerySet(PrunableQuerySet):
    time_field = "bucket"

    def record(self, bucket: datetime) -> bool:
        """Sample the queues' depth for ``bucket`` unless a runner already did; whether this one did."""
        if self.filter(bucket=bucket).exists():  # an index probe: most heartbeats stop here
            return False
        self.write(bucket)
        return True

    def write(self, bucket: datetime) -> None:
        """The queues' depth now, as ``bucket``'s rows; where a runner that raced this one wrote first, its
        rows stay (INSERT ... ON CONFLICT DO NOTHING; INSERT OR IGNORE on SQLite)."""
        rows = [QueueDepthSample(bucket=bucket, **row) for row in depth_by_queue(dbclock.Now())]
        self.bulk_create(rows, ignore_conflicts=True)


class QueueDepthSample(models.Model):
    bucket = models.DateTimeField(help_text="Start of the sampled interval, by the database's clock.")
    queue = models.CharField(max_length=100)
    due = models.PositiveIntegerField(default=0)
    waiting = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)

    objects = QueueDepthQuerySet.as_manager()

    class Meta:
        verbose_name = "queue depth sample"
        # Backs the existence check, the charts' range read and pruning (all lead with bucket).
        constraints = [models.UniqueConstraint(fields=["bucket", "queue"], name="depth_bucket_queue")]

    def __str__(self) -> str:
        counts = f"{self.due} due, {self.waiting} waiting, {self.running} running"
        return f"{self.queue} at {self.bucket}: {counts}"


class HeartbeatQuerySet(PrunableQuerySet):
    time_field = "at"

    def record(self, runner: RunnerProcess) -> "HeartbeatSample":
        """A sample of what ``runner`` recorded at its heartbeat, at the database's time."""
        return self.create(
            runner=runner, at=dbclock.Now(), busy=runner.busy, threads=runner.threads,
            clock_offset=runner.clock_offset, events_dropped=runner.events_dropped,
        )  # fmt: skip


class HeartbeatSample(models.Model):
    # No index of its own: (runner, at) below serves lookups by runner and cascades too.
    runner = models.ForeignKey(RunnerProcess, on_delete=models.CASCADE, related_name="+", db_index=False)
    at = models.DateTimeField()
    busy = models.PositiveIntegerField(default=0)
    threads = models.PositiveIntegerField(default=0)
    clock_offset = models.FloatField(null=True, blank=True)
    events_dropped = models.PositiveBigIntegerField(
        default=0, help_text="Live events this runner had dropped since it started (cumulative)."
    )

    objects = HeartbeatQuerySet.as_manager()

    class Meta:
        verbose_name = "heartbeat sample"
        indexes = [
            models.Index(fields=["runner", "at"], name="beat_runner_at"),  # a runner's page
            models.Index(fields=["at"], name="beat_at"),  # pruning
        ]

    def __str__(self) -> str:
        return f"heartbeat of runner {self.runner_id} at {self.at}"
