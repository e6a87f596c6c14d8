"""django-tasks-db's tasks (Django's own @task, stored by django_tasks_db.DatabaseBackend)."""

import time

from django.tasks import task


@task
def noop() -> None:
    """Does nothing: drain throughput measures the runner's overhead alone."""


@task
def stamp() -> float:
    """The wall-clock time at the function's first line (pickup latency)."""
    return time.time()
