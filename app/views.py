"""The dashboard page (staff only; everything on it arrives over the WebSocket), metrics and health."""

from django.conf import global_settings, settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache

from . import conf
from .initialpassword import InitialPassword
from .routing import SOCKET_PATH


def login_url() -> str:
    """The project's own login page when it set LOGIN_URL, else the admin's."""
    return settings.LOGIN_URL if settings.LOGIN_URL != global_settings.LOGIN_URL else "admin:login"


def dashboard(request: HttpRequest) -> HttpResponse:
    page = staff_member_required(_dashboard, login_url=login_url())
    return page(request)


def _dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        "title": "Conductor dashboard",
        "socket_path": f"/{SOCKET_PATH}",
        "initial_password": InitialPassword.objects.still_in_use(request.user),
    }
    return render(request, "conductor/dashboard.html", context)


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


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """200 when healthy, 503 when not, with what each check found (for load balancers and probes)."""
    from .health import check_health

    report = check_health()
    return JsonResponse(report, status=200 if report["healthy"] else 503)
