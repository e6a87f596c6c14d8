"""The dashboard page, metrics and health: ``path("conductor/", include("conductor.urls"))``."""

from django.urls import path

from . import views

app_name = "conductor"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("metrics", views.metrics, name="metrics"),
    path("health", views.health, name="health"),
]
