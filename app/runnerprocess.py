"""A registered ``runtasks`` process: who it is, where it runs, and whether it is still alive."""

import os
import socket
from datetime import timedelta

from django.db import models, transaction
from django.utils import timezone

from . import orphans
from .status import RunnerState, RunStatus, TaskStatus

LIVE_STATES = (RunnerState.RUNNING, RunnerState.STOPPING)


class RunnerQuerySet(models.QuerySet):
    def live(self) -> "RunnerQuerySet":
        return self.filter(state__in=LIVE_STATES)

    def stale(self, timeout: float, now=None) -> "RunnerQuerySet":
        """Live-looking runners whose heartbeat is older than ``timeout`` seconds."""
        now = now or timezone.now()
        return self.live().filter(heartbeat_at__lt=now - timedelta(seconds=timeout))

    def recover(self, reason: str, final_state: str = RunnerState.DEAD) -> list[int]:
        """Give back the work of these runners: runs interrupted, tasks due again, leases freed.

        Returns the ids of the runs recorded as interrupted. One transaction, so a crash midway
        leaves everything as it was.
        """
        from .lease import Lease
        from .task import Task
        from .taskrun import TaskRun

        now = timezone.now()
        with transaction.atomic():
            # Locked, and (on PostgreSQL) re-checked after any wait: a runner that signed in again
            # meanwhile is no longer stale and is left alone.
            runners = list(self.select_for_update().values_list("id", "host", "pid"))
            if not runners:
                return []
            runner_ids = [runner_id for runner_id, _, _ in runners]
            open_runs = TaskRun.objects.filter(runner_id__in=runner_ids, finished_at__isnull=True)
            run_ids = list(open_runs.filter(status=RunStatus.RUNNING).values_list("id", flat=True))
            open_runs.filter(status=RunStatus.RUNNING).update(
                status=RunStatus.INTERRUPTED, finished_at=now, error=reason
            )
            open_runs.update(finished_at=now)  # timed-out runs keep their status
            Task.objects.filter(runner_id__in=runner_ids, status=TaskStatus.RUNNING).update(
                status=TaskStatus.WAITING, next_run=now, runner=None, updated_at=now
            )
            Lease.objects.release_held_by(runner_ids)
            RunnerProcess.objects.filter(id__in=runner_ids).update(state=final_state, busy=0, stopped_at=now)
        _reap_children_left_on_this_host([(host, pid) for _, host, pid in runners])
        return run_ids


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

    objects = RunnerQuerySet.as_manager()

    class Meta:
        verbose_name = "runner"
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.state})"

    @staticmethod
    def default_worker_id() -> str:
        return f"{socket.gethostname()}-{os.getpid()}"

    @classmethod
    def register(cls, worker_id: str, threads: int) -> "RunnerProcess":
        """Sign this process in, taking over ``worker_id`` if its last holder is gone."""
        values = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "state": RunnerState.RUNNING,
            "threads": threads,
            "busy": 0,
            "started_at": timezone.now(),
            "heartbeat_at": timezone.now(),
            "stopped_at": None,
            "degraded": "",
        }
        with transaction.atomic():
            previous = cls.objects.select_for_update().filter(worker_id=worker_id).first()
            if previous is not None:
                previous.ensure_gone()
                cls.objects.filter(pk=previous.pk).recover(
                    f"runner {worker_id} restarted before this run ended"
                )
            runner, _ = cls.objects.update_or_create(worker_id=worker_id, defaults=values)
        return runner

    def ensure_gone(self) -> None:
        """Refuse to take over a worker id whose process still runs."""
        if self.state not in LIVE_STATES:
            return
        same_host = self.host == socket.gethostname()
        if same_host and self.pid != os.getpid() and orphans.is_running(self.pid):
            raise RuntimeError(
                f"worker id {self.worker_id!r} is in use by a live runner (pid {self.pid} on "
                f"{self.host}); stop it or choose another --worker-id"
            )
        if not same_host and self.heartbeat_at > timezone.now() - timedelta(seconds=60):
            raise RuntimeError(
                f"worker id {self.worker_id!r} is in use by a runner on {self.host} that "
                "heartbeat in the last minute; choose another --worker-id"
            )

    def heartbeat(self, threads_state: list[dict]) -> bool:
        """Record that this runner lives; False when others had already presumed it dead."""
        alive = RunnerProcess.objects.filter(pk=self.pk, state__in=LIVE_STATES).update(
            heartbeat_at=timezone.now(), busy=len(threads_state), threads_state=threads_state
        )
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
        self.heartbeat_at = timezone.now()
        self.stopped_at = None
        self.save(update_fields=["state", "heartbeat_at", "stopped_at"])


def _reap_children_left_on_this_host(runners: list[tuple[str, int]]) -> None:
    """Kill the children that dead runners on this host left running, and remove their run folders.

    Children die with their runner by themselves (app/lifeline.py); this catches what the task started
    (the parent-death signal kills only the child), a child started where that signal does not exist,
    and the folders of children killed by it. A recovered runner that still runs (frozen, not dead) is
    left alone: its runs are fenced instead.
    """
    here = socket.gethostname()
    if any(host == here and not orphans.is_running(pid) for host, pid in runners):
        orphans.reap()
