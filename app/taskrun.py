"""TaskRun: the record of one execution of a task (app/lifecycle/ opens and closes it)."""

from django.db import models
from django.utils import timezone

from .status import RunStatus


class TaskRunQuerySet(models.QuerySet):
    def running(self) -> "TaskRunQuerySet":
        return self.filter(finished_at__isnull=True)


class TaskRun(models.Model):
    task = models.ForeignKey("conductor.Task", on_delete=models.CASCADE, related_name="runs")
    runner = models.ForeignKey(
        "conductor.RunnerProcess", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
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
            # The dashboard's lists and charts (app/lists.py, app/stats.py; plans in docs/dashboard.md).
            models.Index(fields=["task", "id"], name="run_task_page"),
            models.Index(fields=["status", "id"], name="run_status_page"),
            models.Index(fields=["runner", "id"], name="run_runner_page"),
            models.Index(fields=["finished_at"], name="run_finished"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of task {self.task_id} ({self.status})"
