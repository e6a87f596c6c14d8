"""ASGI entry point: HTTP for now; the dashboard issue adds the WebSocket route."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
application = get_asgi_application()
