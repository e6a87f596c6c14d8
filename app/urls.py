"""The dashboard's page: ``path("conductor/", include("conductor.urls"))`` in a project's URLconf."""

from django.urls import path

from . import views

app_name = "conductor"
urlpatterns = [path("", views.dashboard, name="dashboard")]
