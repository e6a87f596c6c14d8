"""Due and claim: which tasks are due, and flipping them to running with a TaskRun opened for each.

On PostgreSQL a claim is one statement, so one round trip and no explicit transaction: it picks the
candidates with ``FOR UPDATE SKIP LOCKED`` (runners never wait on each other's rows), marks expired ones,
updates the picked rows (bumping each fence) and inserts their runs, returning the tasks and run ids.
SQLite has no data-modifying CTEs and no row locks; there, inside the IMMEDIATE transaction that
serialises writers, an ``UPDATE ... RETURNING`` claims and one multi-row ``INSERT ... RETURNING`` opens
the runs.

Claiming is the runner's hot path, so a ``Claimer`` builds its statements (``queries``) once, for its
queues, and reads rows straight into model instances: no query compilation per claim. ``db_use`` tasks
also need the system-wide lease, so they are claimed one at a time once the plain claim left a slot free;
``claim_now`` (``Task.run()``) claims one given task the same way.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from .. import dbclock
from ..lease import DB_USE, Lease
from ..rows import Rows
from ..status import RunStatus
from ..task import Task, TaskQuerySet
from ..taskrun import TaskRun
from . import queries

#: TaskRun columns filled from the claimed task row (the rest take their model defaults).
FROM_TASK = {
    "task_id": "claimed.id",
    "runner_id": "claimed.runner_id",
    "fence": "claimed.fence",
    "attempt": "claimed.attempt",
    "scheduled_for": "claimed.next_run",
    "started_at": "claimed.updated_at",
    # Where and what the run ran as the task was at its claim (a later edit of the task leaves them).
    "queue": "claimed.queue",
    "func": "claimed.func",
}
#: The claimed task's attnames those columns come from, in the same order.
FROM_TASK_ROW = tuple(source.removeprefix("claimed.") for source in FROM_TASK.values())

Pair = tuple[Any, Any]  # (task, its opened run)


def due(now: datetime | None = None, using: str = "default") -> TaskQuerySet:
    """The tasks due at ``now`` (default: now, by the database's clock), as a queryset: the claim's own
    definition of due."""
    table = connections[using].ops.quote_name(Task._meta.db_table)
    if now is None and (database_now := dbclock.sql_now(using)):
        return Task.objects.using(using).filter(id__in=RawSQL(queries.due_ids(table, database_now), []))
    at = connections[using].ops.adapt_datetimefield_value(now or timezone.now())
    return Task.objects.using(using).filter(id__in=RawSQL(queries.due_ids(table), [at]))


def claim(
    runner: Any, limit: int, queues: Sequence[str] | None = None, due_by: datetime | None = None
) -> list[Pair]:
    """Claim up to ``limit`` due tasks for ``runner`` (or none): (task, run) pairs, both saved.

    Only from ``queues`` if given, and only tasks due by ``due_by`` if given. A runner keeps one
    ``Claimer`` instead, whose statements are built once.
    """
    return Claimer(runner, queues, due_by).claim(limit)


def claim_now(task: Any) -> Pair | None:
    """Claim ``task`` for a run in the calling thread, whatever its next_run; None if it is running (or
    it needs the db_use lease and another task holds it)."""
    claimer = Claimer(None, using=router.db_for_write(Task))
    with transaction.atomic(using=claimer.using):
        fence = Task.objects.using(claimer.using).select_for_update().values_list("fence", flat=True)
        return claimer.claim_one(task.pk, task.db_use, fence.get(pk=task.pk))


class Claimer:
    """Claims for one runner (or none), from the given queues (None: all), due by ``due_by`` if set."""

    def __init__(
        self,
        runner: Any,
        queues: Sequence[str] | None = None,
        due_by: datetime | None = None,
        using: str = "default",
    ) -> None:
        self.runner = runner
        self.queues = list(queues) if queues else None
        self.due_by = due_by
        self.using = using
        self.connection = connections[using]
        # PostgreSQL: "now" is the server's clock inside each statement, never a parameter (app/dbclock.py).
        self.database_now = dbclock.sql_now(using)
        self.tasks = Rows(Task, self.connection)
        self.runs = Rows(TaskRun, self.connection)
        # A run's columns: those filled from its claimed task, then the rest with their defaults.
        self._run_columns, self._run_defaults = self.runs.insert_columns(FROM_TASK)
        self._run_sources = [self.tasks.attnames.index(source) for source in FROM_TASK_ROW]
        self._sql = self._statements()
        self._last_claim_full = False

    @property
    def vendor(self) -> str:
        return self.connection.vendor

    def claim(self, limit: int) -> list[Pair]:
        """Claim up to ``limit`` due tasks: (task, run) pairs, both saved."""
        if limit <= 0:
            return []
        now = timezone.now()
        if self.vendor == "postgresql":
            claimed = self._claim_in_one_statement(limit)
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

    def claim_one(self, task_id: int, db_use: bool, fence: int) -> Pair | None:
        """Claim this task if it is not running and its fence is still ``fence`` (and, for a db_use task,
        if the lease could be taken); call inside a transaction that holds the row."""
        if db_use and not Lease.objects.using(self.using).acquire(DB_USE, task_id, self._runner_pk()):
            return None
        with self.connection.cursor() as cursor:
            params = [self._runner_pk(), *self._now_params(timezone.now()), task_id, fence]
            cursor.execute(self._sql["claim_one"], params)
            row = cursor.fetchone()
            if row is None:
                if db_use:
                    Lease.objects.using(self.using).release(DB_USE, task_id)
                return None
            run_ids = self._insert_runs(cursor, [row])
        task = self.tasks.instance(row)
        return task, self._opened_run(task, run_ids[task.pk])

    # Statements -------------------------------------------------------------------------------------

    def _statements(self) -> dict[str, str]:
        table, where, returning = self.tasks.table, self._where(), self.tasks.select_list()
        now = self.database_now or queries.NOW
        sql = {
            "any_plain": queries.any_due(table, where, now=now),
            "any_db_use": queries.any_due(table, where, db_use=True, now=now),
            "next_due": queries.next_due(table, where),
            "db_use_candidate": queries.db_use_candidate(
                table, where, locking=self.vendor == "postgresql", now=now
            ),
            "claim_one": queries.claim_one(table, returning, now),
        }
        if self.vendor == "postgresql":
            values = ", ".join(
                [FROM_TASK[name] for name in FROM_TASK]
                + [f"CAST(%s AS {db_type})" for db_type in self.runs.default_types(FROM_TASK)]
            )
            sql["claim"] = queries.claim_in_one_statement(
                table, self.runs.table, where, self.tasks.select_list(table), self._run_columns, values,
                now=self.database_now,
            )  # fmt: skip
            return sql
        sql["expire"] = queries.expire(table, where)
        sql["claim"] = queries.claim_picked(table, where, returning)
        if self.vendor == "sqlite":
            # Without statistics SQLite finds due rows by next_run and sorts them all for each claim: right
            # for a few, quadratic for a drain of thousands. After a full claim (a drain), walk the claim
            # order's index instead, which stops after LIMIT rows.
            sql["claim_draining"] = sql["claim"].replace(
                f"SELECT id FROM {table} WHERE",
                f"SELECT id FROM {table} INDEXED BY task_claim_order WHERE",
                1,
            )
        return sql

    def _where(self) -> str:
        return queries.filters(len(self.queues or []), self.due_by is not None)

    def _any_due(self, now: datetime, kind: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql[f"any_{kind}"], [*self._now_params(now), *self._filter_params()])
            return cursor.fetchone() is not None

    def _claim_in_one_statement(self, limit: int) -> list[Pair]:
        filters = self._filter_params()
        params = [*filters, *filters, limit, self._runner_pk(), *self._run_defaults]
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql["claim"], params)
            rows = cursor.fetchall()
        pairs = []
        for row in rows:
            task = self.tasks.instance(row[:-1])
            pairs.append((task, self._opened_run(task, run_id=row[-1])))
        return pairs

    def _claim_serialised(self, limit: int, now: datetime) -> list[Pair]:
        at = self._at(now)
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(self._sql["expire"], [at, at, at, *self._filter_params()])
            cursor.execute(
                self._sql["claim_draining" if self._last_claim_full and not self.queues else "claim"],
                [self._runner_pk(), at, at, at, *self._filter_params(), limit],
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
            queries.insert_runs(self.runs.table, self._run_columns, len(claimed_rows), row_sql), values
        )
        return {task_id: run_id for run_id, task_id in cursor.fetchall()}

    def _claim_db_use(self, now: datetime) -> list[Pair]:
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(self._sql["db_use_candidate"], [*self._now_params(now, 2), *self._filter_params()])
            candidate = cursor.fetchone()
            claimed = self.claim_one(candidate[0], True, candidate[1]) if candidate else None
        return [claimed] if claimed else []

    # Helpers ----------------------------------------------------------------------------------------

    def _filter_params(self) -> list[Any]:
        params = list(self.queues or [])
        return [*params, self._at(self.due_by)] if self.due_by else params

    def _at(self, moment: datetime) -> Any:
        return self.connection.ops.adapt_datetimefield_value(moment)

    def _now_params(self, now: datetime, times: int = 1) -> list[Any]:
        """ "Now" as ``times`` parameters, or none where the statement reads the database's clock."""
        return [] if self.database_now else [self._at(now)] * times

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
            "queue": task.queue,
            "func": task.func,
            "status": RunStatus.RUNNING,
        }
        return self.runs.saved(values, related={"task": task, "runner": self.runner})


def _in_order(task: Any) -> tuple:
    """The order runs start in: RETURNING gives rows in no particular order."""
    return (-task.priority, task.next_run, task.pk)
