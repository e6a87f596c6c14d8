from django.apps import AppConfig
from django.conf import settings

#: The embedded default when a project configures no channel layer: runner and pages in one process.
IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


class ConductorConfig(AppConfig):
    # "conductor" once installed, "app" in Conductor's own repository: one body of code under both names.
    name = __package__
    # Fixed whatever the import name: the tables (conductor_task, ...), migrations and permissions.
    label = "conductor"
    verbose_name = "Conductor"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            access,
            checks,  # noqa: F401  (registers the system checks)
            context,
            events,
            registry,
        )
        from .bridge import web_frames
        from .execution import run_at_once
        from .task import Task, install_run_at_once

        # Task.run() runs the task through execution and the lifecycle, which sit above the models: the
        # model calls what is installed here instead of importing them (docs/runner.md, "Layers").
        install_run_at_once(run_at_once)
        context.install_claim_query(Task.objects.held_by_claim)  # context.still_owner(), likewise
        registry.autodiscover()
        access.connect_signals()  # open dashboard sockets close when their user signs out
        # The admin's and the dashboard's actions reach pages as runners' events do: framed, to the feed.
        events.subscribe_now(web_frames.send_now)
        if not getattr(settings, "CHANNEL_LAYERS", None):
            # Channels has no layer without this setting, and a project fresh from startproject has none.
            settings.CHANNEL_LAYERS = IN_MEMORY_LAYER


class DaphneCommandsConfig(AppConfig):
    """Daphne's ``runserver`` (ASGI, so WebSockets work) without importing Twisted in every process.

    Daphne's own ``daphne.apps.DaphneConfig`` imports ``daphne.server`` at ``django.setup()``: Twisted,
    autobahn and OpenSSL, about 25 MB of resident memory in every ``runtasks`` and ``migrate`` that never
    serves a page. Listed under the name "daphne", this config keeps its management commands (Django finds
    them by the package's path), and daphne's ``runserver`` module imports the server (installing Twisted's
    reactor first) only when it runs. ``runtasks --serve`` imports it in ``app/serve.py``. Daphne's check
    that it is listed before staticfiles is not registered; INSTALLED_APPS keeps that order regardless.
    """

    default = False  # the app must still pick ConductorConfig by itself, as this module's one default
    name = "daphne"
    label = "daphne"
    verbose_name = "Daphne"
