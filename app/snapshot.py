"""JSON views of tasks, runs, runners and threads, and the snapshot a dashboard starts from.

Times are epoch seconds (floats), which a browser turns into dates without parsing.
"""

import inspect
from datetime import datetime
from typing import Any

from django.utils import timezone

from . import protocol, registry
from .bridge import layer_reaches_other_processes, shorten
from .context import CONTEXT_PARAMETER

RECENT_RUNS = 50
MOST_TASKS = 500
RECENT_RUNNERS = 20


def epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text and text.strip() else ""


def task_state(task: Any) -> dict[str, Any]:
    return {
        "id": task.pk,
        "task_id": task.task_id,
        "name": task.name,
        "func": task.func,
        "status": str(task.status),
        "paused": task.paused,
        "loop": task.loop,
        "interval": task.interval,
        "kill_time": task.kill_time,
        "db_use": task.db_use,
        "next_run": epoch(task.next_run),
        "last_run": epoch(task.last_run),
        "last_status": str(task.last_status),
        "output": shorten(task.output, 500),
        "error": last_line(task.error),
        "attempts": task.attempts,
        "runner": task.runner_id,
        "schedule": task.schedule_description,
        "cron": task.cron,
        "timezone": task.timezone,
        "start_at": epoch(task.start_at),
        "expires_at": epoch(task.expires_at),
        "max_runs": task.max_runs,
        "run_count": task.run_count,
        "catch_up": str(task.catch_up),
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "isolation": str(task.isolation),
        "priority": task.priority,
        "queue": task.queue,
        "updated_at": epoch(task.updated_at),  # states from different processes race: newest wins
    }


def run_state(run: Any) -> dict[str, Any]:
    return {
        "id": run.pk,
        "task": run.task_id,
        "task_name": run.task.name,
        "runner": run.runner_id,
        "thread_name": run.thread_name,
        "thread_ident": run.thread_ident,
        "status": str(run.status),
        "started_at": epoch(run.started_at),
        "finished_at": epoch(run.finished_at),
        "duration": run.duration,
        "output": shorten(run.output, 500),
        "error": last_line(run.error),
        "progress": run.progress,
        "progress_message": run.progress_message,
    }


def run_outcome_state(run: Any, outcome: Any) -> dict[str, Any]:
    """A finished run as recorded, without reading it back."""
    return {
        **run_state(run),
        "thread_name": outcome.thread_name,
        "thread_ident": outcome.thread_ident,
        "status": str(outcome.status),
        "started_at": outcome.started,
        "finished_at": outcome.finished,
        "duration": outcome.duration,
        "output": shorten(outcome.output, 500),
        "error": last_line(outcome.error),
        "progress": outcome.progress,
        "progress_message": outcome.progress_message,
        "log_tail": outcome.log[-2000:],
    }


def runner_state(runner: Any, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    return {
        "id": runner.pk,
        "worker_id": runner.worker_id,
        "host": runner.host,
        "pid": runner.pid,
        # A running runner that cannot reach something shows as degraded, with why.
        "state": "degraded" if runner.degraded and runner.state == "running" else str(runner.state),
        "degraded_reason": runner.degraded or None,
        "threads": runner.threads,
        "busy": runner.busy,
        "started_at": epoch(runner.started_at),
        "heartbeat_at": epoch(runner.heartbeat_at),
        "heartbeat_age": (now - runner.heartbeat_at).total_seconds(),
    }


def function_info(path: str) -> dict[str, Any]:
    func = registry.get(path)
    try:
        full = inspect.signature(func)
        shown = [p for p in full.parameters.values() if p.name != CONTEXT_PARAMETER]  # Conductor gives it
        signature = str(full.replace(parameters=shown))
    except (TypeError, ValueError):
        signature = "(...)"
    return {"path": path, "signature": signature, "doc": inspect.getdoc(func) or ""}


def live_status() -> dict[str, Any]:
    """Whether runner events can reach this web process at all, and if not, what to do."""
    from . import serve

    if serve.runner_in_process or layer_reaches_other_processes():
        return {"ok": True, "reason": ""}
    return {
        "ok": False,
        "reason": "The in-memory channel layer cannot carry runner events to this web server, "
        "which runs in another process. Serve the dashboard from the runner (manage.py runtasks "
        "--serve) or set REDIS_URL on both. The page shows the database and refreshes it.",
    }


def build_snapshot(user: Any) -> dict[str, Any]:
    """Everything a dashboard shows, read from the database (the source of truth)."""
    from .runnerprocess import RunnerProcess
    from .task import Task
    from .taskrun import TaskRun

    now = timezone.now()
    runners = list(RunnerProcess.objects.order_by("-heartbeat_at")[:RECENT_RUNNERS])
    live_runners = {r.pk for r in runners if r.state in ("running", "stopping")}
    threads = [
        {**thread, "runner": runner.pk}
        for runner in runners
        if runner.pk in live_runners
        for thread in runner.threads_state
    ]
    tasks = Task.objects.order_by("status", "next_run")[:MOST_TASKS]
    runs = TaskRun.objects.select_related("task").order_by("-started_at")[:RECENT_RUNS]
    return {
        "type": "snapshot",
        "protocol": protocol.VERSION,
        "at": now.timestamp(),
        "live": live_status(),
        "user": {
            "name": user.get_username(),
            "can_change": user.has_perm("conductor.change_task"),
            "can_add": user.has_perm("conductor.add_task"),
        },
        "functions": [function_info(path) for path in registry.names()],
        "runners": [runner_state(r, now) for r in runners],
        "threads": threads,
        "tasks": [task_state(t) for t in tasks],
        "runs": [run_state(r) for r in runs],
    }
