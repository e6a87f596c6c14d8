"""Claiming due tasks: flip them to running for one runner and open a TaskRun for each, in one go.

On PostgreSQL a claim is one statement, so one round trip and no explicit transaction: it picks the
candidates with ``FOR UPDATE SKIP LOCKED`` (runners never wait on each other's rows), marks expired ones,
updates the picked rows (bumping each fence) and inserts their runs, returning the tasks and run ids.
SQLite has no data-modifying CTEs and no row locks; there, inside the IMMEDIATE transaction that
serialises writers, an ``UPDATE ... RETURNING`` claims and one multi-row ``INSERT ... RETURNING`` opens
the runs.

Claiming is the runner's hot path, so a ``Claimer`` writes its SQL once (for its queues) and reads rows
straight into model instances: no query compilation per claim. "Due" here must mean what
``TaskQuerySet.due()`` means (tests/integration/test_claiming.py holds both to it). ``db_use`` tasks also
need the system-wide lease, so they are claimed by ``app.task._claim`` once the plain claim left a slot
free.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from .rows import Rows
from .status import RunStatus, TaskStatus

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
#: The claimed task's attnames those columns come from, in the same order.
FROM_TASK_ROW = tuple(source.removeprefix("claimed.") for source in FROM_TASK.values())


class Claimer:
    """Claims for one runner (or none), from the given queues (None: all), due by ``due_by`` if set."""

    def __init__(
        self,
        runner: Any,
        queues: Sequence[str] | None = None,
        due_by: datetime | None = None,
        using: str = "default",
    ) -> None:
        from .task import Task
        from .taskrun import TaskRun

        self.runner = runner
        self.queues = list(queues) if queues else None
        self.due_by = due_by
        self.using = using
        self.connection = connections[using]
        self.tasks = Rows(Task, self.connection)
        self.runs = Rows(TaskRun, self.connection)
        # A run's columns: those filled from its claimed task, then the rest with their defaults.
        self._run_columns, self._run_defaults = self.runs.insert_columns(FROM_TASK)
        self._run_sources = [self.tasks.attnames.index(source) for source in FROM_TASK_ROW]
        self._sql = _postgresql_sql(self) if self.vendor == "postgresql" else _serialised_sql(self)
        self._last_claim_full = False

    @property
    def vendor(self) -> str:
        return self.connection.vendor

    def claim(self, limit: int) -> list[tuple[Any, Any]]:
        """Claim up to ``limit`` due tasks: (task, run) pairs, both saved."""
        if limit <= 0:
            return []
        now = timezone.now()
        if self.vendor == "postgresql":
            claimed = self._claim_in_one_statement(limit, now)
        # Idle, SQLite's write lock is not taken just to find nothing; after a full claim, more is likely.
        elif self._last_claim_full or self._any_due(now, "plain"):
            claimed = self._claim_serialised(limit, now)
        else:
            return []
        self._last_claim_full = len(claimed) == limit
        if len(claimed) < limit and self._any_due(now, "db_use"):
            claimed += self._claim_db_use(now)
        return claimed

    def next_due_at(self) -> datetime | None:
        """When the next waiting (unpaused) task of these queues falls due, if any."""
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql["next_due"], self._filter_params())
            (value,) = cursor.fetchone()
        return self.tasks.convert("next_run", value)

    # Statements -------------------------------------------------------------------------------------

    def _any_due(self, now: datetime, kind: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql[f"any_{kind}"], [self._at(now), *self._filter_params()])
            return cursor.fetchone() is not None

    def _claim_in_one_statement(self, limit: int, now: datetime) -> list[tuple[Any, Any]]:
        at = self._at(now)
        params = [
            TaskStatus.EXPIRED, at, at, at, *self._filter_params(),
            at, at, *self._filter_params(), limit,
            TaskStatus.RUNNING, self._runner_pk(), at,
            *self._run_defaults,
        ]  # fmt: skip
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql["claim"], params)
            rows = cursor.fetchall()
        pairs = []
        for row in rows:
            task = self.tasks.instance(row[:-1])
            pairs.append((task, self._opened_run(task, run_id=row[-1])))
        return pairs

    def _claim_serialised(self, limit: int, now: datetime) -> list[tuple[Any, Any]]:
        at = self._at(now)
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(self._sql["expire"], [TaskStatus.EXPIRED, at, at, at, *self._filter_params()])
            cursor.execute(
                self._sql["claim_draining" if self._last_claim_full and not self.queues else "claim"],
                [TaskStatus.RUNNING, self._runner_pk(), at, at, at, *self._filter_params(), limit],
            )
            rows = sorted(
                ((self.tasks.instance(row), row) for row in cursor.fetchall()),
                key=lambda pair: _in_order(pair[0]),
            )
            run_ids = self._insert_runs(cursor, [row for _, row in rows])
        return [(task, self._opened_run(task, run_ids[task.pk])) for task, _ in rows]

    def _insert_runs(self, cursor: Any, claimed_rows: list[Sequence[Any]]) -> dict[int, int]:
        """One multi-row INSERT of the claimed tasks' runs; task id -> run id.

        Filled from the claimed rows as the database returned them: already in its own format.
        """
        if not claimed_rows:
            return {}
        values = []
        for row in claimed_rows:
            values += [row[i] for i in self._run_sources] + self._run_defaults
        row_sql = "(" + ", ".join(["%s"] * (len(FROM_TASK) + len(self._run_defaults))) + ")"
        cursor.execute(
            f"INSERT INTO {self.runs.table} ({self._run_columns}) "
            f"VALUES {', '.join([row_sql] * len(claimed_rows))} "
            "RETURNING id, task_id",
            values,
        )
        return {task_id: run_id for run_id, task_id in cursor.fetchall()}

    def _claim_db_use(self, now: datetime) -> list[tuple[Any, Any]]:
        from .task import Task, _claim

        with transaction.atomic(using=self.using):
            candidates = (
                self._as_queryset(Task.objects.using(self.using))
                .due(now)
                .filter(db_use=True)
                .exclude(expires_at__lte=now)
                .order_by(*ORDER)
                .select_for_update(skip_locked=True)
                .values_list("id", "db_use", "fence")[:1]
            )
            return _claim(list(candidates), self.runner, from_status=TaskStatus.WAITING)

    # Helpers ----------------------------------------------------------------------------------------

    def _as_queryset(self, tasks: Any) -> Any:
        if self.queues:
            tasks = tasks.filter(queue__in=self.queues)
        return tasks.filter(next_run__lte=self.due_by) if self.due_by else tasks

    def _filter_params(self) -> list[Any]:
        params = list(self.queues or [])
        return [*params, self._at(self.due_by)] if self.due_by else params

    def _at(self, moment: datetime) -> Any:
        return self.connection.ops.adapt_datetimefield_value(moment)

    def _runner_pk(self) -> int | None:
        return self.runner.pk if self.runner is not None else None

    def _opened_run(self, task: Any, run_id: int) -> Any:
        """The TaskRun the claim saved for ``task``, as an instance (no query)."""

        values = {
            "id": run_id,
            "task_id": task.pk,
            "runner_id": self._runner_pk(),
            "fence": task.fence,
            "attempt": task.attempt,
            "scheduled_for": task.next_run,
            "started_at": task.updated_at,
            "status": RunStatus.RUNNING,
        }
        return self.runs.saved(values, related={"task": task, "runner": self.runner})


def _in_order(task: Any) -> tuple:
    """The order runs start in: RETURNING gives rows in no particular order."""
    return (-task.priority, task.next_run, task.pk)


# SQL ------------------------------------------------------------------------------------------------


def _due_where(claimer: Claimer, db_use: bool | None) -> str:
    """The WHERE of TaskQuerySet.due() (waiting, unpaused, next_run <= %s) with this claimer's filters."""
    where = "status = 'waiting' AND NOT paused AND next_run <= %s"
    if db_use is not None:
        where += " AND db_use" if db_use else " AND NOT db_use"
    return where + _filters(claimer)


def _filters(claimer: Claimer) -> str:
    sql = ""
    if claimer.queues:
        sql += f" AND queue IN ({', '.join(['%s'] * len(claimer.queues))})"
    return sql + (" AND next_run <= %s" if claimer.due_by else "")


def _common_sql(claimer: Claimer) -> dict[str, str]:
    table = claimer.tasks.table
    return {
        "any_plain": f"SELECT 1 FROM {table} WHERE {_due_where(claimer, None)} LIMIT 1",
        "any_db_use": f"SELECT 1 FROM {table} WHERE {_due_where(claimer, True)} LIMIT 1",
        "next_due": f"SELECT MIN(next_run) FROM {table} WHERE status = 'waiting' AND NOT paused"
        + _filters(claimer),
    }


def _set_claimed(table: str) -> str:
    """The SET list of a claim; column references are to the row as it was before the update."""
    return (
        f"status = %s, runner_id = %s, fence = {table}.fence + 1, attempts = {table}.attempts + 1, "
        f"attempt = {table}.attempt + 1, updated_at = %s, "
        # A new series keeps the time it was due: retries must not shift a loop's schedule.
        f"period_start = CASE WHEN {table}.attempt = 0 THEN {table}.next_run ELSE {table}.period_start END"
    )


def _serialised_sql(claimer: Claimer) -> dict[str, str]:
    table = claimer.tasks.table
    sql = _common_sql(claimer)
    sql["expire"] = (
        f"UPDATE {table} SET status = %s, updated_at = %s WHERE id IN ({_expired_ids_sql(claimer)})"
    )
    sql["claim"] = (
        f"UPDATE {table} SET {_set_claimed(table)} WHERE id IN ({_picked_ids_sql(claimer)}) "
        f"RETURNING {claimer.tasks.select_list()}"
    )
    if claimer.vendor == "sqlite":
        # Without statistics SQLite finds due rows by next_run and sorts them all for each claim: right
        # for a few, quadratic for a drain of thousands. After a full claim (a drain), walk the claim
        # order's index instead, which stops after LIMIT rows.
        sql["claim_draining"] = sql["claim"].replace(
            f"SELECT id FROM {table} WHERE", f"SELECT id FROM {table} INDEXED BY task_claim_order WHERE", 1
        )
    return sql


def _postgresql_sql(claimer: Claimer) -> dict[str, str]:
    table, run_table = claimer.tasks.table, claimer.runs.table
    columns = claimer._run_columns
    values = ", ".join(
        [FROM_TASK[name] for name in FROM_TASK]
        + [f"CAST(%s AS {db_type})" for db_type in claimer.runs.default_types(FROM_TASK)]
    )
    sql = _common_sql(claimer)
    sql["claim"] = f"""
        WITH expired AS (
            UPDATE {table} SET status = %s, updated_at = %s
            WHERE id IN ({_expired_ids_sql(claimer)} FOR UPDATE SKIP LOCKED)
        ), picked AS ({_picked_ids_sql(claimer)} FOR UPDATE SKIP LOCKED),
        claimed AS (
            UPDATE {table} SET {_set_claimed(table)}
            FROM picked WHERE {table}.id = picked.id
            RETURNING {claimer.tasks.select_list(table)}
        ), runs AS (
            INSERT INTO {run_table} ({columns}) SELECT {values} FROM claimed RETURNING id, task_id
        )
        SELECT claimed.*, runs.id FROM claimed JOIN runs ON runs.task_id = claimed.id
        ORDER BY claimed.priority DESC, claimed.next_run, claimed.id
    """
    return sql


def _expired_ids_sql(claimer: Claimer) -> str:
    """Due (now = the first %s) and expired (expires_at <= the second %s), then the filters."""
    return (
        f"SELECT id FROM {claimer.tasks.table} WHERE status = 'waiting' AND NOT paused AND next_run <= %s "
        f"AND expires_at <= %s{_filters(claimer)}"
    )


def _picked_ids_sql(claimer: Claimer) -> str:
    """Picked ids: params are now (due), now (not expired), the filters, then the limit."""
    return (
        f"SELECT id FROM {claimer.tasks.table} WHERE status = 'waiting' AND NOT paused AND next_run <= %s "
        f"AND NOT db_use AND (expires_at IS NULL OR expires_at > %s){_filters(claimer)} "
        "ORDER BY priority DESC, next_run, id LIMIT %s"
    )
