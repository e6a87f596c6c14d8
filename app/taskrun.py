"""TaskRun: the record of one execution of a task (app/lifecycle/ opens and closes it)."""

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.utils import timezone

from .status import RunStatus


class TaskRunQuerySet(models.QuerySet):
    def running(self) -> "TaskRunQuerySet":
        return self.filter(finished_at__isnull=True)

    def bulk_create(self, objs: Iterable["TaskRun"], *args: Any, **kwargs: Any) -> list["TaskRun"]:
        objs = list(objs)
        for run in objs:
            run.fill_from_task()
        return super().bulk_create(objs, *args, **kwargs)


class TaskRun(models.Model):
    # No index of their own: run_task_page (task, id) and run_runner_open / run_runner_page (runner, ...)
    # begin with these columns and serve every lookup by them; each index more is work for every claim.
    task = models.ForeignKey("conductor.Task", on_delete=models.CASCADE, related_name="runs", db_index=False)
    runner = models.ForeignKey(
        "conductor.RunnerProcess", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        db_index=False,
    )  # fmt: skip
    # The task's queue and function when this run was opened (the claim copies them): what the run history
    # shows after the task is edited, and what the runs lists filter and the charts group on, without a join.
    queue = models.CharField(max_length=100, default="", help_text="The task's queue when this run began.")
    func = models.CharField(
        max_length=255, default="", help_text="The task's function (dotted path) when this run began."
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
            # The dashboard's lists and charts (app/lists.py, app/stats.py; plans in docs/dashboard.md).
            models.Index(fields=["task", "id"], name="run_task_page"),
            models.Index(fields=["status", "id"], name="run_status_page"),
            models.Index(fields=["runner", "id"], name="run_runner_page"),
            models.Index(fields=["finished_at"], name="run_finished"),
            models.Index(fields=["queue", "id"], name="run_queue_page"),
            models.Index(fields=["func", "id"], name="run_func_page"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of task {self.task_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            self.fill_from_task()
        super().save(*args, **kwargs)

    def fill_from_task(self) -> None:
        """Fill an empty ``queue`` or ``func`` from the task as it is now, as a claim does in SQL: runs made
        with the ORM (tests, tools) record where and what they ran like the runner's own."""
        if self.task_id is not None and not (self.queue and self.func):
            self.queue = self.queue or self.task.queue
            self.func = self.func or self.task.func
