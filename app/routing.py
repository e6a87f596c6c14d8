"""The dashboard's WebSocket route, for a project's ``URLRouter`` (or ``conductor.asgi.with_conductor``)."""

from django.urls import path

from .consumers import DashboardConsumer

#: Where pages open the dashboard's socket (the page is told; nothing else hard-codes it).
SOCKET_PATH = "ws/dashboard/"

websocket_urlpatterns = [path(SOCKET_PATH, DashboardConsumer.as_asgi())]
