"""Conductor's admin site: Django's, with a live summary on the index and links to the dashboard."""

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse


class ConductorAdminSite(admin.AdminSite):
    site_header = "Conductor administration"
    site_title = "Conductor"
    index_title = "Tasks, runs and runners"
    index_template = "conductor/admin/index.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from .initialpassword import InitialPassword

        context = {
            **(extra_context or {}),
            "conductor_summary": summary(),
            "initial_password": InitialPassword.objects.still_in_use(request.user),
        }
        return super().index(request, context)


def summary() -> dict[str, int]:
    """Runners up, tasks running, and failures in the last hour: the index's at-a-glance line."""
    from . import conf, dbclock
    from .runnerprocess import RunnerProcess
    from .status import RunStatus
    from .task import Task
    from .taskrun import TaskRun

    now = dbclock.now()  # heartbeats and run times are written by the database's clock
    fresh = now - timedelta(seconds=conf.get().HEARTBEAT_TIMEOUT)
    return {
        "runners_up": RunnerProcess.objects.live().filter(heartbeat_at__gte=fresh).count(),
        "tasks_running": Task.objects.running().count(),
        "failures_last_hour": TaskRun.objects.filter(
            finished_at__gte=now - timedelta(hours=1),
            status__in=[RunStatus.FAILED, RunStatus.TIMED_OUT],
        ).count(),
    }


class ConductorAdminConfig(AdminConfig):
    """Use in INSTALLED_APPS instead of django.contrib.admin."""

    default = False  # never the default config of Conductor's own app
    default_site = f"{__package__}.adminsite.ConductorAdminSite"
