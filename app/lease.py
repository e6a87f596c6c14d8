"""Leases in the database: system-wide exclusive rights, such as the one ``db_use`` tasks share."""

from django.db import models

from . import dbclock

DB_USE = "db_use"


class LeaseQuerySet(models.QuerySet):
    def acquire(self, name: str, task_id: int, runner_id: int | None) -> bool:
        """Take the lease if it is free; one conditional write, so two runners can never both win."""
        taken = self.filter(name=name, task__isnull=True).update(
            task_id=task_id, runner_id=runner_id, acquired_at=dbclock.Now()
        )
        if not taken and not self.filter(name=name).exists():
            self.get_or_create(name=name)  # a lease row is created on first use (or after a flush)
            return self.acquire(name, task_id, runner_id)
        return taken == 1

    def release(self, name: str, task_id: int) -> None:
        self.filter(name=name, task_id=task_id).update(task=None, runner=None, acquired_at=None)

    def release_held_by(self, runner_ids: list[int]) -> int:
        return self.filter(runner_id__in=runner_ids).update(task=None, runner=None, acquired_at=None)


class Lease(models.Model):
    name = models.CharField(max_length=100, primary_key=True)
    task = models.ForeignKey(
        "conductor.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    runner = models.ForeignKey(
        "conductor.RunnerProcess", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acquired_at = models.DateTimeField(null=True, blank=True)

    objects = LeaseQuerySet.as_manager()

    def __str__(self) -> str:
        holder = f"held by task {self.task_id}" if self.task_id else "free"
        return f"{self.name} ({holder})"
