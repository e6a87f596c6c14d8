"""Dashboard pages, JSON views, metrics and health: ``path("conductor/", include("conductor.urls"))``."""

from django.urls import path

from . import api, views

app_name = "conductor"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("tasks/<str:task_id>/", views.task_page, name="task"),
    path("runners/<str:worker_id>/", views.runner_page, name="runner"),
    path("metrics", views.metrics, name="metrics"),
    path("health", views.health, name="health"),
    path("api/tasks", api.tasks, name="api-tasks"),
    path("api/tasks/<str:task_id>", api.task_detail, name="api-task"),
    path("api/runs", api.runs, name="api-runs"),
    path("api/runs/<int:pk>", api.run_detail, name="api-run"),
    path("api/runners/<str:worker_id>", api.runner_detail, name="api-runner"),
    path("api/charts", api.charts, name="api-charts"),
]
