"""Claiming due tasks: flip them to running for one runner and open a TaskRun for each, in one go.

On PostgreSQL a claim is one statement, so one round trip and no explicit transaction: it picks the
candidates with ``FOR UPDATE SKIP LOCKED`` (runners never wait on each other's rows), marks expired ones,
updates the picked rows (bumping each fence) and inserts their runs, returning the tasks and run ids.
SQLite has no data-modifying CTEs and no row locks; there, inside the IMMEDIATE transaction that
serialises writers, an ``UPDATE ... RETURNING`` claims and one multi-row ``INSERT`` opens the runs.

``db_use`` tasks also need the system-wide lease, so they are claimed by ``app.task._claim`` once the
plain claim left a slot free.
"""

from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import FloatField
from django.utils import timezone

from app.status import RunStatus, TaskStatus

ORDER = ("-priority", "next_run", "id")
#: TaskRun columns filled from the claimed task row (the rest take their model defaults).
FROM_TASK = {
    "task_id": "claimed.id",
    "runner_id": "claimed.runner_id",
    "fence": "claimed.fence",
    "attempt": "claimed.attempt",
    "scheduled_for": "claimed.next_run",
    "started_at": "claimed.updated_at",
}


def claim_due(tasks: Any, runner: Any, limit: int) -> list[tuple[Any, Any]]:
    """Claim up to ``limit`` due tasks of the queryset ``tasks`` for ``runner``: (task, run) pairs."""
    now = timezone.now()
    if connections[tasks.db].vendor == "postgresql":
        claimed = _claim_postgresql(tasks, runner, limit, now)
    elif tasks.due(now).exists():  # the common idle case, without taking SQLite's write lock
        claimed = _claim_serialised(tasks, runner, limit, now)
    else:
        return []
    if len(claimed) < limit and tasks.due(now).filter(db_use=True).exists():
        claimed += _claim_db_use(tasks, runner, now)
    return claimed


def _picked(tasks: Any, now: datetime, limit: int) -> Any:
    return (
        tasks.due(now).filter(db_use=False).exclude(expires_at__lte=now).order_by(*ORDER).values("id")[:limit]
    )


def _expired(tasks: Any, now: datetime) -> Any:
    return tasks.due(now).filter(expires_at__lte=now)


def _set_claimed(table: str) -> str:
    """The SET list of a claim; column references are to the row as it was before the update."""
    return (
        f"status = %s, runner_id = %s, fence = {table}.fence + 1, attempts = {table}.attempts + 1, "
        f"attempt = {table}.attempt + 1, updated_at = %s, "
        # A new series keeps the time it was due: retries must not shift a loop's schedule.
        f"period_start = CASE WHEN {table}.attempt = 0 THEN {table}.next_run ELSE {table}.period_start END"
    )


def _claim_postgresql(tasks: Any, runner: Any, limit: int, now: datetime) -> list[tuple[Any, Any]]:
    from app.task import Task
    from app.taskrun import TaskRun

    connection = connections[tasks.db]
    quote = connection.ops.quote_name
    task_table, run_table = quote(Task._meta.db_table), quote(TaskRun._meta.db_table)
    picked_sql, picked_params = _picked(tasks, now, limit).query.sql_with_params()
    expired_sql, expired_params = _expired(tasks, now).values("id").query.sql_with_params()
    columns, values, value_params = _run_columns(connection)
    sql = f"""
        WITH expired AS (
            UPDATE {task_table} SET status = %s, updated_at = %s
            WHERE id IN ({expired_sql} FOR UPDATE SKIP LOCKED)
        ), picked AS ({picked_sql} FOR UPDATE SKIP LOCKED),
        claimed AS (
            UPDATE {task_table} SET {_set_claimed(task_table)}
            FROM picked WHERE {task_table}.id = picked.id
            RETURNING {task_table}.*
        ), runs AS (
            INSERT INTO {run_table} ({columns}) SELECT {values} FROM claimed RETURNING id, task_id
        )
        SELECT claimed.*, runs.id AS claimed_run_id FROM claimed JOIN runs ON runs.task_id = claimed.id
    """
    params = [
        TaskStatus.EXPIRED, now, *expired_params, *picked_params,
        TaskStatus.RUNNING, _pk(runner), now, *value_params,
    ]  # fmt: skip
    claimed = list(Task.objects.using(tasks.db).raw(sql, params))
    return [(task, _opened_run(task, runner, task.claimed_run_id, tasks.db)) for task in claimed]


def _run_columns(connection: Any) -> tuple[str, str, list[Any]]:
    """The INSERT column list, the SELECT list filling it from ``claimed``, and its parameters."""
    from app.taskrun import TaskRun

    template = TaskRun(status=RunStatus.RUNNING)
    columns, values, params = [], [], []
    for field in TaskRun._meta.concrete_fields:
        if field.primary_key or (field.null and field.attname not in FROM_TASK):
            continue  # the database numbers it / NULL by default
        columns.append(connection.ops.quote_name(field.column))
        if field.attname in FROM_TASK:
            values.append(FROM_TASK[field.attname])
        else:
            values.append(f"CAST(%s AS {field.db_type(connection)})")
            params.append(field.get_db_prep_save(getattr(template, field.attname), connection))
    return ", ".join(columns), ", ".join(values), params


def _claim_serialised(tasks: Any, runner: Any, limit: int, now: datetime) -> list[tuple[Any, Any]]:
    """SQLite (and any other backend): writers are serialised, so no row is ever claimed twice."""
    from app.task import Task
    from app.taskrun import TaskRun

    connection = connections[tasks.db]
    table = connection.ops.quote_name(Task._meta.db_table)
    picked_sql, picked_params = _picked(tasks, now, limit).query.sql_with_params()
    sql = f"UPDATE {table} SET {_set_claimed(table)} WHERE id IN ({picked_sql}) RETURNING *"
    with transaction.atomic(using=tasks.db):
        _expired(tasks, now).update(status=TaskStatus.EXPIRED, updated_at=now)
        params = [TaskStatus.RUNNING, _pk(runner), now, *picked_params]
        claimed = [_real_floats(task) for task in Task.objects.using(tasks.db).raw(sql, params)]
        runs = TaskRun.objects.using(tasks.db).bulk_create([_opened_run(task, runner) for task in claimed])
    return list(zip(claimed, runs, strict=True))


def _real_floats(task: Any) -> Any:
    """SQLite's RETURNING gives a REAL column's whole number as an int (before column affinity)."""
    for field in (f.attname for f in type(task)._meta.concrete_fields if isinstance(f, FloatField)):
        value = getattr(task, field)
        if isinstance(value, int):
            setattr(task, field, float(value))
    return task


def _claim_db_use(tasks: Any, runner: Any, now: datetime) -> list[tuple[Any, Any]]:
    from app.task import _claim

    with transaction.atomic(using=tasks.db):
        candidates = (
            tasks.due(now)
            .filter(db_use=True)
            .exclude(expires_at__lte=now)
            .order_by(*ORDER)
            .select_for_update(skip_locked=True)
            .values_list("id", "db_use", "fence")[:1]
        )
        return _claim(list(candidates), runner, from_status=TaskStatus.WAITING)


def _opened_run(task: Any, runner: Any, run_id: int | None = None, using: str = "default") -> Any:
    """The TaskRun a claim opened for ``task`` (saved already when ``run_id`` is given)."""
    from app.taskrun import TaskRun

    run = TaskRun(
        id=run_id,
        task=task,
        runner=runner,
        fence=task.fence,
        attempt=task.attempt,
        scheduled_for=task.next_run,
        started_at=task.updated_at,
        status=RunStatus.RUNNING,
    )
    if run_id is not None:
        run._state.adding, run._state.db = False, using
    return run


def _pk(runner: Any) -> int | None:
    return runner.pk if runner is not None else None
