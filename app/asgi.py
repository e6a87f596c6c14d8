"""Conductor's WebSocket routes for a project's ``asgi.py``, and the application ``runtasks --serve`` runs.

In a project's ``asgi.py``, after Django is set up::

    django_asgi = get_asgi_application()
    from conductor.asgi import with_conductor  # noqa: E402
    application = with_conductor(django_asgi)

A project that routes WebSockets of its own adds ``conductor.routing.websocket_urlpatterns`` to its
``URLRouter`` instead, behind ``conductor.asgi.websocket_application``'s checks.
"""

from typing import Any

from django.conf import settings


def websocket_application(routes: list | None = None) -> Any:
    """The dashboard's socket: exact origin checked (app/origins.py), the session's user in the scope,
    Conductor's routes."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter

    from .origins import ExactOriginValidator
    from .routing import websocket_urlpatterns

    return ExactOriginValidator(AuthMiddlewareStack(URLRouter(routes or websocket_urlpatterns)))


def with_conductor(http_application: Any) -> Any:
    """A ProtocolTypeRouter: ``http_application`` for HTTP, Conductor's dashboard socket for WebSockets."""
    from channels.routing import ProtocolTypeRouter

    return ProtocolTypeRouter({"http": http_application, "websocket": websocket_application()})


def serving_static(application: Any) -> Any:
    """``application`` with the project's static files served in front of it, as ``runserver`` does.

    Conductor's own server has no separate static file server; behind a real one (or WhiteNoise) the
    files are served before they get here and this costs one path comparison per request.
    """
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    if isinstance(application, ASGIStaticFilesHandler):
        return application
    if "django.contrib.staticfiles" not in settings.INSTALLED_APPS or not settings.STATIC_URL:
        return application
    return ASGIStaticFilesHandler(application)


def project_application() -> Any:
    """What ``runtasks --serve`` serves: the project's ``ASGI_APPLICATION`` when it names one, else
    Django's HTTP handler plus Conductor's socket; static files served in front of either."""
    if getattr(settings, "ASGI_APPLICATION", None):
        from channels.routing import get_default_application

        return serving_static(get_default_application())
    from django.core.asgi import get_asgi_application

    return serving_static(with_conductor(get_asgi_application()))


def routes_dashboard_socket(application: Any, depth: int = 0) -> bool:
    """Whether an ASGI application (routers and middleware, walked down) routes Conductor's consumer."""
    from .consumers import DashboardConsumer

    if depth > 20 or application is None:
        return False
    if getattr(application, "consumer_class", None) is DashboardConsumer:
        return True
    if getattr(application, "callback", None) is not None:  # a URLRouter route (URLPattern)
        return routes_dashboard_socket(application.callback, depth + 1)
    children = list(getattr(application, "application_mapping", {}).values())
    children += list(getattr(application, "routes", []))
    children += [getattr(application, name, None) for name in ("inner", "application", "app")]
    return any(routes_dashboard_socket(child, depth + 1) for child in children if child is not application)
