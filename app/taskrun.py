"""TaskRun: the record of one execution of a task."""

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.db import connections, models, router, transaction
from django.utils import timezone

from .lease import DB_USE, Lease
from .rows import Rows, preparer
from .status import RunStatus, TaskStatus


@dataclass
class Outcome:
    """How one execution ended, as measured in the thread that ran it."""

    status: str
    started: float
    finished: float
    output: Any = None
    error: str = ""
    log: str = ""
    thread_name: str = ""
    thread_ident: int | None = None
    progress: float | None = None
    progress_message: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


REFUSED = (
    "Result refused: the run had been recovered (its runner was presumed dead) and its task given back.\n"
)


class TaskRunQuerySet(models.QuerySet):
    def running(self) -> "TaskRunQuerySet":
        return self.filter(finished_at__isnull=True)


class TaskRun(models.Model):
    task = models.ForeignKey("conductor.Task", on_delete=models.CASCADE, related_name="runs")
    runner = models.ForeignKey(
        "conductor.RunnerProcess", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    fence = models.PositiveBigIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=1)
    thread_name = models.CharField(max_length=200, blank=True, default="")
    thread_ident = models.BigIntegerField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    log = models.TextField(blank=True, default="", help_text="What the run printed and logged.")
    progress = models.FloatField(null=True, blank=True, help_text="Last reported progress, 0 to 1.")
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When this failed try is retried.")
    progress_message = models.CharField(max_length=200, blank=True, default="")

    objects = TaskRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["runner", "finished_at"], name="run_runner_open"),
            models.Index(fields=["task", "-started_at"], name="run_task_recent"),
            # The dashboard's lists and charts (app/lists.py, app/stats.py; plans in docs/dashboard.md).
            models.Index(fields=["task", "id"], name="run_task_page"),
            models.Index(fields=["status", "id"], name="run_status_page"),
            models.Index(fields=["runner", "id"], name="run_runner_page"),
            models.Index(fields=["finished_at"], name="run_finished"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of task {self.task_id} ({self.status})"

    def finish(self, outcome: Outcome) -> bool:
        """Record the outcome on the run and its task, in one transaction (``finish_many`` of one)."""
        return TaskRun.finish_many([(self, outcome)])[0]

    @classmethod
    def finish_many(cls, finished: list[tuple["TaskRun", Outcome]], refresh: bool = True) -> list[bool]:
        """Record several outcomes in one transaction (one commit instead of many); accepted flags, in order.

        A run is refused (False) when it was already closed by recovery or its task was claimed again
        since: a late writer can never overwrite a newer run's result. For each accepted run, ``run.task``
        is left as the task now is in the database (every column, from the fenced UPDATE's RETURNING), so
        callers need not read the tasks again; a refused run's ``run.task`` is left as it was.
        ``refresh=False`` skips that (the runner's hot path, when nobody listens for the new states).
        """
        if not finished:
            return []
        alias = router.db_for_write(cls)
        leased = [run.task.db_use for run, _ in finished]  # as claimed: run.task is updated below
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            recording = _Recording(cursor, timezone.now())
            results = recording.update_tasks(finished, refresh)
            recording.close_runs(finished, results)
            accepted = [ok for ok, _ in results]
            done = zip(finished, accepted, leased, strict=True)
            _release_db_use(alias, [run.task_id for (run, _), ok, held in done if ok and held])
        return accepted

    def mark_overrunning(self) -> bool:
        """Record that the run passed its kill_time and could not be interrupted yet."""
        self.status = RunStatus.TIMED_OUT
        marked = TaskRun.objects.filter(
            pk=self.pk, finished_at__isnull=True, status=RunStatus.RUNNING
        ).update(status=RunStatus.TIMED_OUT)
        return marked == 1


def _release_db_use(alias: str, task_ids: list[int]) -> None:
    """Free the db_use lease of these tasks, whose runs were accepted (a refused one's is a newer claim's)."""
    if task_ids:
        Lease.objects.using(alias).filter(name=DB_USE, task_id__in=task_ids).update(
            task=None, runner=None, acquired_at=None
        )


#: What a finished run sets on its TaskRun row, in the order of ``_Statements.close_run``'s parameters.
CLOSED_RUN_FIELDS = (
    "status", "started_at", "finished_at", "duration", "output", "error", "log",
    "thread_name", "thread_ident", "progress", "progress_message", "retry_at",
)  # fmt: skip


class _Statements:
    """The SQL that records outcomes, with the fields that prepare its values and read back its rows.

    Built once per database alias and kept. The backend converters are bound to the connection they were
    built with; they only read its settings, the same for every connection of the alias.
    """

    _built: ClassVar[dict[str, "_Statements"]] = {}

    @classmethod
    def of(cls, connection: Any) -> "_Statements":
        if connection.alias not in cls._built:
            cls._built[connection.alias] = cls(connection)
        return cls._built[connection.alias]

    def __init__(self, connection: Any) -> None:
        from .task import Task

        quote = connection.ops.quote_name
        fields = Task._meta.concrete_fields
        self.task_prep = {field.attname: preparer(field, connection) for field in fields}
        self.task_rows = Rows(Task, connection)  # reads the RETURNING row as the ORM would
        self.update_tasks = _TaskUpdate(connection, quote(Task._meta.db_table), self.task_rows.select_list())
        self.returned_id = self.task_rows.attnames.index("id")
        self.returned_fence = self.task_rows.attnames.index("fence")
        closed_fields = [TaskRun._meta.get_field(name) for name in CLOSED_RUN_FIELDS]
        self.closed_prep = [preparer(field, connection) for field in closed_fields]
        self.close_run = (
            f"UPDATE {quote(TaskRun._meta.db_table)} SET "
            + ", ".join(f"{quote(field.column)} = %s" for field in closed_fields)
            + " WHERE id = %s AND finished_at IS NULL"
        )


class _Recording:
    """Recording one batch of outcomes, on ``cursor``, at ``now``."""

    def __init__(self, cursor: Any, now: datetime) -> None:
        self.cursor, self.connection, self.now = cursor, cursor.db, now
        self.sql = _Statements.of(cursor.db)
        self.prepared_now = self._prepared("updated_at", now)  # the same for the whole batch

    def _prepared(self, task_field: str, value: Any) -> Any:
        """``value`` as the database takes it for this Task field (None is NULL for all of them)."""
        return self.sql.task_prep[task_field](value)

    def update_tasks(self, finished: list[tuple[TaskRun, Outcome]], refresh: bool) -> list[tuple]:
        """The fenced UPDATE of the runs' tasks, a statement per OUTCOMES_PER_STATEMENT runs:
        (accepted, when the failed try is retried) for each run, in order."""
        values, retry_ats = [], []
        for run, outcome in finished:
            row, retry_at = self._outcome_values(run, outcome)
            values.append(row)
            retry_ats.append(retry_at)
        returned = self._update(values)
        results = []
        for (run, _), retry_at in zip(finished, retry_ats, strict=True):
            row = returned.get((run.task.pk, run.fence))
            if row is None:  # recovered elsewhere, maybe run again: this late result must not count
                results.append((False, None))
                continue
            if refresh:
                self._apply(run.task, row)
            results.append((True, retry_at))
        return results

    def _update(self, values: list[list]) -> dict[tuple, list]:
        """Run the UPDATE over these VALUES rows, in chunks; each updated task's row by (id, fence)."""
        returned = {}
        for start in range(0, len(values), OUTCOMES_PER_STATEMENT):
            chunk = values[start : start + OUTCOMES_PER_STATEMENT]
            params = [*itertools.chain.from_iterable(chunk), self.prepared_now]
            self.cursor.execute(self.sql.update_tasks.sql(len(chunk)), params)
            for row in self.cursor.fetchall():
                returned[(row[self.sql.returned_id], row[self.sql.returned_fence])] = list(row)
        return returned

    def _outcome_values(self, run: TaskRun, outcome: Outcome) -> tuple[list, datetime | None]:
        """One run's row of the VALUES list (in ``OUTCOME_COLUMNS`` order), and its retry time."""
        if run.status == RunStatus.TIMED_OUT:
            outcome.status = RunStatus.TIMED_OUT  # reported as overrunning: it stays timed out
        task, now, started = run.task, self.now, _at(outcome.started)
        retry_at = task.retry_at_after(outcome.status, now)
        effect = task.run_effect(outcome.status, now, retry_at, started)
        row = [
            task.pk,
            run.fence,
            effect["loop_next_run"] is not None,
            self._prepared("next_run", effect["loop_next_run"]),
            effect["status"],
            self._prepared("next_run", effect["next_run"]),
            effect["series_over"],
            int(effect["series_over"]),
            self._prepared("last_run", started),
            outcome.status,
            self._prepared("output", outcome.output),
            outcome.error,
        ]
        return row, retry_at

    def _apply(self, task: Any, row: list) -> None:
        """Set the task's attributes from its RETURNING row, converted as the ORM would on reading it."""
        values = self.sql.task_rows.converted(row)
        for attname, value in zip(self.sql.task_rows.attnames, values, strict=True):
            setattr(task, attname, value)  # through the descriptors: a changed runner_id drops .runner

    def close_runs(self, finished: list[tuple[TaskRun, Outcome]], results: list) -> None:
        """Close the accepted runs with their status, the refused ones as interrupted; only open ones."""
        accepted, refused = [], []
        for (run, outcome), (ok, retry_at) in zip(finished, results, strict=True):
            if ok:
                accepted.append(self._closed(run, outcome, outcome.status, outcome.error, retry_at))
            else:
                refused.append(
                    self._closed(run, outcome, RunStatus.INTERRUPTED, REFUSED + outcome.error, None)
                )
        for rows in (accepted, refused):
            if rows:
                self.cursor.executemany(self.sql.close_run, rows)

    def _closed(self, run: TaskRun, outcome: Outcome, status: str, error: str, retry_at: Any) -> list:
        """The parameters of ``close_run`` for one run."""
        values = (
            status, _at(outcome.started), _at(outcome.finished), outcome.duration, outcome.output, error,
            outcome.log, outcome.thread_name, outcome.thread_ident, outcome.progress,
            outcome.progress_message, retry_at,
        )  # fmt: skip
        prepared = [prep(value) for prep, value in zip(self.sql.closed_prep, values, strict=True)]
        return [*prepared, run.pk]


#: Most runs whose outcomes one UPDATE records (12 parameters each: well inside every backend's limit).
OUTCOMES_PER_STATEMENT = 500
#: The columns of the outcomes' VALUES list, and the Task field whose database type each has.
OUTCOME_COLUMNS = (
    ("o_id", "id"), ("o_fence", "fence"), ("o_loops", "loop"), ("o_loop_next_run", "next_run"),
    ("o_status", "status"), ("o_next_run", "next_run"), ("o_series_over", "loop"),
    ("o_counted", "run_count"), ("o_last_run", "last_run"), ("o_last_status", "last_status"),
    ("o_output", "output"), ("o_error", "error"),
)  # fmt: skip


class _TaskUpdate:
    """The fenced UPDATE of a batch of tasks: its outcomes joined in as a VALUES list, one row per run.

    Its parameters say which case of ``Task.run_effect`` applies to each. PostgreSQL types each value
    of the list by a cast (a column of NULLs would otherwise be text); SQLite needs none.
    """

    def __init__(self, connection: Any, table: str, returned: str) -> None:
        from .task import Task

        if connection.vendor == "postgresql":
            types = [Task._meta.get_field(field).db_type(connection) for _, field in OUTCOME_COLUMNS]
            self.row = "(" + ", ".join(f"CAST(%s AS {db_type})" for db_type in types) + ")"
        else:
            self.row = "(" + ", ".join(["%s"] * len(OUTCOME_COLUMNS)) + ")"
        columns = ", ".join(name for name, _ in OUTCOME_COLUMNS)
        self.head = f"WITH o ({columns}) AS (VALUES "
        self.tail = (
            f") UPDATE {table} SET "
            # A loop goes on only if its flag is still set: "stop looping" may have cleared it during the run.
            f"status = CASE WHEN o.o_loops AND {table}.loop THEN '{TaskStatus.WAITING.value}' "
            "ELSE o.o_status END, "
            f"next_run = CASE WHEN o.o_loops AND {table}.loop THEN o.o_loop_next_run "
            f"ELSE COALESCE(o.o_next_run, {table}.next_run) END, "
            f"attempt = CASE WHEN o.o_series_over THEN 0 ELSE {table}.attempt END, "
            f"run_count = {table}.run_count + o.o_counted, runner_id = NULL, last_run = o.o_last_run, "
            "last_status = o.o_last_status, output = o.o_output, error = o.o_error, updated_at = %s "
            f"FROM o WHERE {table}.id = o.o_id AND {table}.fence = o.o_fence "
            f"AND {table}.status = '{TaskStatus.RUNNING.value}' "
            f"RETURNING {returned}"
        )

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` outcomes; its parameters are the rows', then the time of the update."""
        return self.head + ", ".join([self.row] * rows) + self.tail
