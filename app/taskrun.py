"""TaskRun: the record of one execution of a task."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from app.lease import DB_USE, Lease
from app.status import RunStatus, TaskStatus


@dataclass
class Outcome:
    """How one execution ended, as measured in the thread that ran it."""

    status: str
    started: float
    finished: float
    output: Any = None
    error: str = ""
    log: str = ""
    thread_name: str = ""
    thread_ident: int | None = None
    progress: float | None = None
    progress_message: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


REFUSED = (
    "Result refused: the run had been recovered (its runner was presumed dead) and its task given back.\n"
)


class TaskRunQuerySet(models.QuerySet):
    def running(self) -> "TaskRunQuerySet":
        return self.filter(finished_at__isnull=True)


class TaskRun(models.Model):
    task = models.ForeignKey("app.Task", on_delete=models.CASCADE, related_name="runs")
    runner = models.ForeignKey(
        "app.RunnerProcess", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    fence = models.PositiveBigIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=1)
    thread_name = models.CharField(max_length=200, blank=True, default="")
    thread_ident = models.BigIntegerField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    log = models.TextField(blank=True, default="", help_text="What the run printed and logged.")
    progress = models.FloatField(null=True, blank=True, help_text="Last reported progress, 0 to 1.")
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When this failed try is retried.")
    progress_message = models.CharField(max_length=200, blank=True, default="")

    objects = TaskRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["runner", "finished_at"], name="run_runner_open"),
            models.Index(fields=["task", "-started_at"], name="run_task_recent"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of task {self.task_id} ({self.status})"

    def finish(self, outcome: Outcome) -> bool:
        """Record the outcome on the run and its task, in one transaction.

        Refused (returns False) when the run was already closed by recovery or its task was claimed
        again since: a late writer can never overwrite a newer run's result.
        """
        with transaction.atomic():
            return self._finish(outcome, timezone.now())

    def _finish(self, outcome: Outcome, now: datetime) -> bool:
        from app.task import Task

        if self.status == RunStatus.TIMED_OUT:
            outcome.status = RunStatus.TIMED_OUT  # reported as overrunning: it stays timed out
        task = self.task
        retry_at = task.retry_at_after(outcome.status, now)
        # The task first, fenced: only the run its current claim opened may record a result.
        updated = Task.objects.filter(pk=task.pk, fence=self.fence, status=TaskStatus.RUNNING).update(
            **task.fields_after_run(outcome.status, now, retry_at, started=_at(outcome.started)),
            runner=None,
            last_run=_at(outcome.started),
            last_status=outcome.status,
            output=outcome.output,
            error=outcome.error,
            updated_at=now,
        )
        if not updated:  # recovered elsewhere, maybe run again: this late result must not count
            self._close(outcome, RunStatus.INTERRUPTED, REFUSED + outcome.error)
            return False
        self._close(outcome, outcome.status, outcome.error, retry_at)
        if task.db_use:
            Lease.objects.release(DB_USE, task.pk)
        return True

    def _close(self, outcome: Outcome, status: str, error: str, retry_at: datetime | None = None) -> int:
        return TaskRun.objects.filter(pk=self.pk, finished_at__isnull=True).update(
            status=status,
            started_at=_at(outcome.started),
            finished_at=_at(outcome.finished),
            duration=outcome.duration,
            output=outcome.output,
            error=error,
            log=outcome.log,
            thread_name=outcome.thread_name,
            thread_ident=outcome.thread_ident,
            progress=outcome.progress,
            progress_message=outcome.progress_message,
            retry_at=retry_at,
        )

    @classmethod
    def finish_many(cls, finished: list[tuple["TaskRun", Outcome]]) -> list[bool]:
        """Finish several runs in one transaction (one commit instead of many)."""
        now = timezone.now()
        with transaction.atomic():
            return [run._finish(outcome, now) for run, outcome in finished]

    def mark_overrunning(self) -> bool:
        """Record that the run passed its kill_time and could not be interrupted yet."""
        self.status = RunStatus.TIMED_OUT
        marked = TaskRun.objects.filter(
            pk=self.pk, finished_at__isnull=True, status=RunStatus.RUNNING
        ).update(status=RunStatus.TIMED_OUT)
        return marked == 1
