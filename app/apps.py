from django.apps import AppConfig


class ConductorConfig(AppConfig):
    name = "app"
    label = "app"
    verbose_name = "Conductor"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from app import (
            checks,  # noqa: F401  (registers the system checks)
            registry,
        )

        registry.autodiscover()
