"""The dashboard page: staff only; everything on it arrives over the WebSocket."""

from django.conf import global_settings, settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

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
