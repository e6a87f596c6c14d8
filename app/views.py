"""The dashboard's pages (staff only: the dashboard, one task's, one runner's; what they show arrives over
the WebSocket and the JSON views of app/api.py), metrics and health."""

from typing import Any

from django.conf import global_settings, settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache

from . import conf
from .initialpassword import InitialPassword
from .routing import SOCKET_PATH
from .runnerprocess import RunnerProcess
from .task import Task


def login_url() -> str:
    """The project's own login page when it set LOGIN_URL, else the admin's."""
    return settings.LOGIN_URL if settings.LOGIN_URL != global_settings.LOGIN_URL else "admin:login"


def staff_page(view: Any) -> Any:
    """Staff only, like the admin: anyone else is sent to log in (the socket then checks permissions)."""

    def page(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return staff_member_required(view, login_url=login_url())(request, **kwargs)

    return page


def _page_context(request: HttpRequest, title: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "script": script,
        "socket_path": f"/{SOCKET_PATH}",
        "initial_password": InitialPassword.objects.still_in_use(request.user),
        **extra,
    }


@staff_page
def dashboard(request: HttpRequest) -> HttpResponse:
    context = _page_context(request, "Conductor dashboard", "conductor/dashboard.js")
    return render(request, "conductor/dashboard.html", context)


@staff_page
def task_page(request: HttpRequest, task_id: str) -> HttpResponse:
    """One task: its definition, next runs, runs (paged), live threads and actions."""
    task = Task.objects.filter(task_id=task_id).first()
    if task is None:
        return _not_found(request, "task", "task_id", task_id)
    context = _page_context(
        request, f"{task.name} · Conductor", "conductor/taskpage.js", task=task,
        admin_url=reverse("admin:conductor_task_change", args=[task.pk]), fixed_filter="this task's",
    )  # fmt: skip
    return render(request, "conductor/task.html", context)


@staff_page
def runner_page(request: HttpRequest, worker_id: str) -> HttpResponse:
    """One runner: its heartbeat, threads and recent runs."""
    runner = RunnerProcess.objects.filter(worker_id=worker_id).first()
    if runner is None:
        return _not_found(request, "runner", "worker_id", worker_id)
    context = _page_context(
        request, f"{runner.worker_id} · Conductor", "conductor/runnerpage.js", runner=runner,
        admin_url=reverse("admin:conductor_runnerprocess_change", args=[runner.pk]),
        fixed_filter="on this runner",
    )  # fmt: skip
    return render(request, "conductor/runner.html", context)


def _not_found(request: HttpRequest, what: str, field: str, value: str) -> HttpResponse:
    """A 404 inside the dashboard's layout (Django's bare "Not Found" page leaves the user stranded)."""
    context = {"title": f"No such {what} · Conductor", "what": what, "field": field, "value": value}
    return render(request, "conductor/notfound.html", context, status=404)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format; 404 unless CONDUCTOR METRICS_TOKEN or METRICS_ALLOWED_IPS allows it."""
    if not _may_scrape(request):
        raise Http404("Metrics are off, or this client may not read them (docs/deploy.md, Metrics).")
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from .metrics import ConductorCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConductorCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _may_scrape(request: HttpRequest) -> bool:
    settings_now = conf.get()
    token = settings_now.METRICS_TOKEN
    if token and constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return True
    return request.META.get("REMOTE_ADDR") in settings_now.METRICS_ALLOWED_IPS


def health(request: HttpRequest) -> JsonResponse:
    """200 when healthy, 503 when not, naming each check, never cached; what a failed check found is shown
    to staff only (the probe path answers before authentication, so there always without it)."""
    from .health import health_response

    user = getattr(request, "user", None)
    return health_response(detailed=bool(user and user.is_staff))
