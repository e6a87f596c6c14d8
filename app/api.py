"""The dashboard's JSON views: lists, one task, one run, one runner (with its heartbeats), and the charts'
aggregates (with the queue depth's history).

Same audience as the dashboard's socket: authenticated, active staff with ``conductor.view_task``
(answered 401/403 in JSON otherwise). Bad parameters are answered 400 with ``error`` and ``field``.
"""

import re
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import dbclock, lists, schedule, stats
from .runnerprocess import RunnerProcess
from .snapshot import epoch, run_state, runner_state, task_state
from .status import RunStatus, TaskStatus
from .task import PROTECTED_FIELDS, Task
from .taskrun import TaskRun

VIEW_PERMISSION = "conductor.view_task"
LOG_LIMIT = 20_000
NOT_FOUND = "No such record: deleted, or a mistyped address."


def staff_json(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        user = request.user
        if not user.is_authenticated:
            return JsonResponse({"error": "Log in first.", "field": None}, status=401)
        if not (user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION)):
            return JsonResponse({"error": f"Staff with {VIEW_PERMISSION} only.", "field": None}, status=403)
        try:
            return view(request, *args, **kwargs)
        except lists.ListError as exc:
            return JsonResponse({"error": str(exc), "field": exc.field}, status=400)
        except Http404:
            return JsonResponse({"error": NOT_FOUND, "field": None}, status=404)

    return never_cache(require_GET(guarded))


def _params(request: HttpRequest) -> dict[str, list[str]]:
    return {name: request.GET.getlist(name) for name in request.GET}


@staff_json
def tasks(request: HttpRequest) -> JsonResponse:
    page = lists.task_page(_params(request))
    return JsonResponse({"items": [task_state(task) for task in page.rows], "next": page.next_cursor})


@staff_json
def runs(request: HttpRequest) -> JsonResponse:
    page = lists.run_page(_params(request))
    return JsonResponse({"items": [run_list_state(run) for run in page.rows], "next": page.next_cursor})


def run_list_state(run: TaskRun) -> dict[str, Any]:
    return {
        **run_state(run),
        "task_id": run.task.task_id,
        "attempt": run.attempt,
        "runner_name": run.runner.worker_id if run.runner else None,
    }


@staff_json
def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    task = get_object_or_404(Task, task_id=task_id)
    definition = {field: _plain(getattr(task, field)) for field in DEFINITION_FIELDS}
    upcoming = _upcoming(task)
    return JsonResponse({
        "task": task_state(task),
        "definition": definition,
        "upcoming": [moment.astimezone(schedule.zone(task.timezone)).isoformat() for moment in upcoming],
    })  # fmt: skip


def _upcoming(task: Task) -> list[datetime]:
    """The next run times: from next_run while waiting; while a loop runs, from the slot after this run
    (a loop that runs most of its interval would otherwise never show what is to come)."""
    if task.status == TaskStatus.WAITING:
        return schedule.upcoming(task)
    if task.status != TaskStatus.RUNNING:
        return []
    # Newest by id, which orders a task's runs as started_at does (they never overlap): run_task_page.
    run = task.runs.filter(status=RunStatus.RUNNING).order_by("-id").first()
    return schedule.upcoming_while_running(task, dbclock.now(), run.started_at if run else None)


#: The definition as the model has it, less what the task's state already shows (name, func) and the
#: fields only a permission may set, which viewers do not need.
DEFINITION_FIELDS = [
    name for name in Task.definition_fields() if name not in {"name", "func", *PROTECTED_FIELDS}
]


def _plain(value: Any) -> Any:
    return epoch(value) if hasattr(value, "timestamp") else value


@staff_json
def run_detail(request: HttpRequest, pk: int) -> JsonResponse:
    run = get_object_or_404(TaskRun.objects.select_related("task", "runner"), pk=pk)
    return JsonResponse({
        **run_list_state(run),
        "output": run.output,
        "error": run.error,
        "log": run.log[-LOG_LIMIT:],
        "retry_at": epoch(run.retry_at),
        "scheduled_for": epoch(run.scheduled_for),
        "admin_url": reverse("admin:conductor_taskrun_change", args=[run.pk]),
    })  # fmt: skip


@staff_json
def runner_detail(request: HttpRequest, worker_id: str) -> JsonResponse:
    since = _since(request)
    runner = get_object_or_404(RunnerProcess, worker_id=worker_id)
    now = dbclock.now()
    return JsonResponse({
        **runner_state(runner, now),
        "threads_state": runner.threads_state,
        "heartbeats": stats.heartbeats(runner, now, since),
    })  # fmt: skip


@staff_json
def charts(request: HttpRequest) -> JsonResponse:
    return JsonResponse(stats.charts(since=_since(request)))


#: ``since``: epoch seconds in ASCII digits, with a fraction or not.
SINCE = re.compile(r"\d{1,12}(\.\d{1,9})?", re.ASCII)


def _since(request: HttpRequest) -> float | None:
    """The one parameter of the history views: only what came after ``since`` (epoch seconds)."""
    unknown = sorted(set(request.GET) - {"since"})
    if unknown:
        raise lists.ListError(f"Unknown parameter {unknown[0]!r}; this view takes only since.", unknown[0])
    values = request.GET.getlist("since")
    if not values:
        return None
    if len(values) > 1 or not SINCE.fullmatch(values[0]):
        raise lists.ListError("since is one time in epoch seconds, e.g. 1767225600.5.", "since")
    return float(values[0])
