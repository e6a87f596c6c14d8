"""ASGI entry point: Django over HTTP (with static files), the dashboard over WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django_http = get_asgi_application()  # sets Django up before the imports below

from app.asgi import serving_static, with_conductor  # noqa: E402

# Conductor's own server has no separate static file server: Django serves them.
application = serving_static(with_conductor(django_http))
