"""Finish, fail, time out, interrupt: recording how runs ended, on the run and on its task.

What a run's end does to its task (``run_effect``: due again, retried, finished, the next loop...) is
decided here in Python, per run; the writes are two statements per batch (``queries``): one fenced
``UPDATE ... FROM (VALUES ...) RETURNING`` for all the batch's tasks and one ``executemany`` closing the
runs. The task update is conditional on the run's fence and the run's on its still being open, so a
result that arrives after its run was recovered elsewhere is refused.
"""

import itertools
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.db import connections, router, transaction

from .. import dbclock, schedule
from ..lease import DB_USE, Lease
from ..rows import Rows, preparer
from ..status import TASK_STATUS_AFTER_RUN, RunStatus, TaskStatus
from ..task import Task
from ..taskrun import TaskRun
from . import queries
from .outcome import Outcome

REFUSED = (
    "Result refused: the run had been recovered (its runner was presumed dead) and its task given back.\n"
)
#: Most runs whose outcomes one UPDATE records (12 parameters each: well inside every backend's limit).
OUTCOMES_PER_STATEMENT = 500
#: What a finished run sets on its TaskRun row, in the order of ``close_run``'s parameters.
CLOSED_RUN_FIELDS = (
    "status", "started_at", "finished_at", "duration", "output", "error", "log",
    "thread_name", "thread_ident", "progress", "progress_message", "retry_at",
)  # fmt: skip


def finish(run: TaskRun, outcome: Outcome) -> bool:
    """Record the outcome on the run and its task, in one transaction (``finish_many`` of one)."""
    return finish_many([(run, outcome)])[0]


def finish_many(finished: list[tuple[TaskRun, Outcome]], refresh: bool = True) -> list[bool]:
    """Record several outcomes in one transaction (one commit instead of many); accepted flags, in order.

    A run is refused (False) when it was already closed by recovery or its task was claimed again
    since: a late writer can never overwrite a newer run's result. For each accepted run, ``run.task``
    is left as the task now is in the database (every column, from the fenced UPDATE's RETURNING), so
    callers need not read the tasks again; a refused run's ``run.task`` is left as it was.
    ``refresh=False`` skips that (the runner's hot path, when nobody listens for the new states).
    """
    if not finished:
        return []
    alias = router.db_for_write(TaskRun)
    leased = [run.task.db_use for run, _ in finished]  # as claimed: run.task is updated below
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        # Next runs, retries and the runs' times by the database's clock: one reading per batch.
        recording = _Recording(cursor, dbclock.reading(alias))
        results = recording.update_tasks(finished, refresh)
        recording.close_runs(finished, results)
        accepted = [ok for ok, _ in results]
        done = zip(finished, accepted, leased, strict=True)
        _release_db_use(alias, [run.task_id for (run, _), ok, held in done if ok and held])
    return accepted


def mark_overrunning(run: TaskRun) -> bool:
    """Time out a run that passed its kill_time and could not be interrupted yet: it stays open."""
    run.status = RunStatus.TIMED_OUT
    marked = TaskRun.objects.filter(pk=run.pk, finished_at__isnull=True, status=RunStatus.RUNNING).update(
        status=RunStatus.TIMED_OUT
    )
    return marked == 1


def retry_at_after(task: Task, status: str, now: datetime) -> datetime | None:
    """When a failed or timed-out try is retried, or None when the tries are used up."""
    if status not in (RunStatus.FAILED, RunStatus.TIMED_OUT) or task.attempt >= task.max_attempts:
        return None
    return now + timedelta(seconds=schedule.retry_delay(task, task.attempt))


def run_effect(
    task: Task, status: str, now: datetime, retry_at: datetime | None = None, started: datetime | None = None
) -> dict[str, Any]:
    """How this (claimed) task changes after a run that started at ``started``, ended ``status``.

    Plain values, the same keys always: ``status``; ``next_run`` (None: unchanged); ``series_over``
    (attempt back to 0, one more run counted); ``loop_next_run``: when set, the task waits for that
    time instead if its ``loop`` flag is still set when the result is recorded, since "stop looping"
    may clear it during the run.
    """
    if status == RunStatus.INTERRUPTED or retry_at is not None:  # due again: now, or when retried
        due = now if status == RunStatus.INTERRUPTED else retry_at
        return {"status": TaskStatus.WAITING, "next_run": due, "series_over": False, "loop_next_run": None}
    ends = not task.loop or (task.max_runs and task.run_count + 1 >= task.max_runs)
    return {
        "status": TASK_STATUS_AFTER_RUN[status],
        "next_run": None,
        "series_over": True,
        "loop_next_run": None if ends else task.next_loop_run(now, started),
    }


def _release_db_use(alias: str, task_ids: list[int]) -> None:
    """Free the db_use lease of these tasks, whose runs were accepted (a refused one's is a newer claim's)."""
    if task_ids:
        Lease.objects.using(alias).filter(name=DB_USE, task_id__in=task_ids).update(
            task=None, runner=None, acquired_at=None
        )


class _Statements:
    """The statements that record outcomes, with the fields that prepare their values and read back rows.

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
        quote = connection.ops.quote_name
        fields = Task._meta.concrete_fields
        self.task_prep = {field.attname: preparer(field, connection) for field in fields}
        self.task_rows = Rows(Task, connection)  # reads the RETURNING row as the ORM would
        self.update_tasks = _TaskUpdate(connection, quote(Task._meta.db_table), self.task_rows.select_list())
        self.returned_id = self.task_rows.attnames.index("id")
        self.returned_fence = self.task_rows.attnames.index("fence")
        closed_fields = [TaskRun._meta.get_field(name) for name in CLOSED_RUN_FIELDS]
        self.closed_prep = [preparer(field, connection) for field in closed_fields]
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in closed_fields)
        self.close_run = queries.close_run(quote(TaskRun._meta.db_table), assignments)


class _Recording:
    """Recording one batch of outcomes, on ``cursor``, at the database's time ``clock`` read.

    Outcomes carry this process's wall-clock times; the reading's offset turns them into the database's.
    """

    def __init__(self, cursor: Any, clock: dbclock.Reading) -> None:
        self.cursor, self.connection, self.now, self.clock = cursor, cursor.db, clock.database, clock
        self.sql = _Statements.of(cursor.db)
        self.prepared_now = self._prepared("updated_at", self.now)  # the same for the whole batch

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
        """One run's row of the VALUES list (in ``queries.OUTCOME_COLUMNS`` order), and its retry time."""
        if run.status == RunStatus.TIMED_OUT:
            outcome.status = RunStatus.TIMED_OUT  # reported as overrunning: it stays timed out
        task, now, started = run.task, self.now, self.clock.from_local(outcome.started)
        retry_at = retry_at_after(task, outcome.status, now)
        effect = run_effect(task, outcome.status, now, retry_at, started)
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
            status, self.clock.from_local(outcome.started), self.clock.from_local(outcome.finished),
            outcome.duration, outcome.output, error,
            outcome.log, outcome.thread_name, outcome.thread_ident, outcome.progress,
            outcome.progress_message, retry_at,
        )  # fmt: skip
        prepared = [prep(value) for prep, value in zip(self.sql.closed_prep, values, strict=True)]
        return [*prepared, run.pk]


class _TaskUpdate:
    """The fenced UPDATE of a batch of tasks: its outcomes joined in as a VALUES list, one row per run.

    Its parameters say which case of ``run_effect`` applies to each. PostgreSQL types each value of the
    list by a cast (a column of NULLs would otherwise be text); SQLite needs none.
    """

    def __init__(self, connection: Any, table: str, returned: str) -> None:
        if connection.vendor == "postgresql":
            types = [Task._meta.get_field(field).db_type(connection) for _, field in queries.OUTCOME_COLUMNS]
            self.row = "(" + ", ".join(f"CAST(%s AS {db_type})" for db_type in types) + ")"
        else:
            self.row = "(" + ", ".join(["%s"] * len(queries.OUTCOME_COLUMNS)) + ")"
        self.head = queries.record_outcomes_head()
        self.tail = queries.record_outcomes_tail(table, returned)

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` outcomes; its parameters are the rows', then the time of the update."""
        return self.head + ", ".join([self.row] * rows) + self.tail
