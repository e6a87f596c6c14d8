"""The page's JSON: views of tasks, runs, runners and threads, the snapshot a dashboard starts from, and
the runners' events as pages take them.

Times are epoch seconds (floats), which a browser turns into dates without parsing. Runners publish
plain data (``task_row``, ``run_row``, ``outcome``: field values as the models and ``Outcome`` hold
them); ``page_event`` turns those into the page's ``state`` and ``run_state`` on their way out.
"""

import inspect
import json
from datetime import datetime
from typing import Any

from django.utils import timezone

from . import conf, dbclock, events, livelayer, protocol, registry
from .context import CONTEXT_PARAMETER
from .livelayer import CROSS_PROCESS_LAYER, layer_reaches_other_processes

RECENT_RUNS = 50
MOST_TASKS = 500
RECENT_RUNNERS = 20
#: Most characters of one event's text fields: channel layers cap a message at 1 MB.
TEXT_LIMIT = 4000
#: Characters of a finished run's log that its event shows.
LOG_TAIL = 2000
STATE_FIELDS = ("state", "run_state")


def shorten(value: Any, limit: int = TEXT_LIMIT) -> Any:
    """Keep a JSON value if small, else a cut-down text of it (live messages must stay small)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 20] + " ...[cut]"
    if value is None or isinstance(value, int | float):  # bool is an int: all short
        return value
    text = json.dumps(value, default=str, ensure_ascii=False)
    return value if len(text) <= limit else text[: limit - 20] + " ...[cut]"


def shorten_event(event: dict) -> dict:
    """Each field of an event cut to size; the task and run states stay objects, their fields cut."""
    return {
        key: {k: shorten(v) for k, v in value.items()} if key in STATE_FIELDS and value else shorten(value)
        for key, value in event.items()
    }


def page_event(event: dict) -> dict:
    """A runner's event as pages take it: its plain rows made the page's states, every field cut to size."""
    if "task_row" in event or "run_row" in event:
        event = dict(event)
        task = _task(event.pop("task_row", None))
        if task is not None or "state" in event:
            event["state"] = task_state(task) if task is not None else event["state"]
        if "run_row" in event:
            run = _run(event.pop("run_row"), task, event.get("name", ""))
            event["run_state"] = run_outcome_state(run, _outcome(event.pop("outcome")))
    return shorten_event(event)


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
        # The outcome's times are the runner's clock (this runs in its bridge): pages time by the database's.
        "started_at": events.database_time(outcome.started),
        "finished_at": events.database_time(outcome.finished),
        "duration": outcome.duration,
        "output": shorten(outcome.output, 500),
        "error": last_line(outcome.error),
        "progress": outcome.progress,
        "progress_message": outcome.progress_message,
        "log_tail": outcome.log[-LOG_TAIL:],
    }


def runner_state(runner: Any, now: datetime | None = None) -> dict[str, Any]:
    """A runner as pages show it; ``now``, best the database's time, for its heartbeat's age."""
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
        "clock_offset": runner.clock_offset,
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
    if livelayer.runner_in_process or layer_reaches_other_processes():
        return {"ok": True, "reason": ""}
    return {
        "ok": False,
        "reason": "The in-memory channel layer cannot carry runner events to this web server, "
        "which runs in another process. Serve the dashboard from the runner (manage.py runtasks "
        f"--serve) or configure a cross-process CHANNEL_LAYERS in both: {CROSS_PROCESS_LAYER}. "
        "The page shows the database and refreshes it.",
    }


def build_snapshot(user: Any) -> dict[str, Any]:
    """Everything a dashboard shows, read from the database (the source of truth)."""
    from .runnerprocess import RunnerProcess
    from .task import Task
    from .taskrun import TaskRun

    database_now = dbclock.now()  # heartbeats, events and the page's clock are the database's time
    runners = list(RunnerProcess.objects.order_by("-heartbeat_at")[:RECENT_RUNNERS])
    live_runners = {r.pk for r in runners if r.state in ("running", "stopping")}
    threads = [
        {**thread, "runner": runner.pk}
        for runner in runners
        if runner.pk in live_runners
        for thread in runner.threads_state
    ]
    threads = without_ended_runs(threads)
    tasks = Task.objects.order_by("status", "next_run")[:MOST_TASKS]
    # Newest by id, the primary key's order (a run's id is given when it is claimed, as its start is):
    # ordering by started_at, which no index serves, sorted every run at each snapshot.
    runs = TaskRun.objects.select_related("task").order_by("-id")[:RECENT_RUNS]
    return {
        "type": "snapshot",
        "protocol": protocol.VERSION,
        "at": database_now.timestamp(),
        "live": live_status(),
        "clock_skew_warning": conf.get().CLOCK_SKEW_WARNING,  # pages mark runners' offsets beyond it
        "user": {
            "name": user.get_username(),
            "can_change": user.has_perm("conductor.change_task"),
            "can_add": user.has_perm("conductor.add_task"),
        },
        "functions": [function_info(path) for path in registry.names()],
        "runners": [runner_state(r, database_now) for r in runners],
        "threads": threads,
        "tasks": [task_state(t) for t in tasks],
        "runs": [run_state(r) for r in runs],
    }


def without_ended_runs(threads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Threads as of the last heartbeat (up to a heartbeat old), less those whose run has ended since.

    During a drain hundreds of runs end between two heartbeats, their end events came before this
    snapshot, and most of them are older than the snapshot's runs: a page kept each such thread as running
    until the next snapshot (25 "running" threads on a runner of 8). The database says which ended.
    """
    from .status import RunStatus
    from .taskrun import TaskRun

    runs = [thread["run"] for thread in threads if isinstance(thread.get("run"), int)]
    if not runs:
        return threads
    ended = set(
        TaskRun.objects.filter(pk__in=runs).exclude(status=RunStatus.RUNNING).values_list("pk", flat=True)
    )
    return [thread for thread in threads if thread.get("run") not in ended]


def _task(row: dict | None) -> Any:
    from .task import Task

    return None if row is None else Task(**row)


def _run(row: dict, task: Any, task_name: str) -> Any:
    from .task import Task
    from .taskrun import TaskRun

    run = TaskRun(**row)
    run.task = task if task is not None else Task(pk=row["task_id"], name=task_name)
    return run


def _outcome(values: dict) -> Any:
    from .lifecycle import Outcome

    return Outcome(**values)
