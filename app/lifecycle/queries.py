"""Every hand-written SQL statement of the lifecycle, each named once (procrastinate's ``queries.sql``).

The runner's hot path (claiming, recording outcomes) is written in SQL; this module is its one
definition, and nothing else in Conductor spells "due", "claimed" or "recorded" in SQL or in the ORM.
Statuses come from ``app/status.py``, interpolated into the text once, here, at import. Statements that
depend on a runner (its queues, a ``--once`` cutoff) or on the database (PostgreSQL's row locks and
casts) are built by the functions below, once per ``Claimer`` or per database alias, never per call.

Parameters are positional (``%s``); each statement's docstring or comment lists them in order. "Now" is
a parameter (``NOW``, the local clock: SQLite, one machine) or, given as ``now``, the database's own
clock in SQL (``app.dbclock.POSTGRES_NOW``), and then it is no parameter.
"""

from ..status import RunStatus, TaskStatus


def _literal(status: TaskStatus | RunStatus) -> str:
    return f"'{status.value}'"


WAITING = _literal(TaskStatus.WAITING)
RUNNING = _literal(TaskStatus.RUNNING)
EXPIRED = _literal(TaskStatus.EXPIRED)

#: "Now" as a parameter.
NOW = "%s"


def due(now: str = NOW) -> str:
    """Due: waiting, not paused, next_run at or before now."""
    return f"status = {WAITING} AND NOT paused AND next_run <= {now}"


def not_expired(now: str = NOW) -> str:
    """Not past expires_at at now; a due task past it is expired instead of claimed."""
    return f"(expires_at IS NULL OR expires_at > {now})"


DUE = due()
#: Waiting and not paused, whenever due: what the runner sleeps until.
WAITING_UNPAUSED = f"status = {WAITING} AND NOT paused"
#: The order due tasks are claimed in (the index ``task_claim_order`` walks it).
CLAIM_ORDER = "priority DESC, next_run, id"


def filters(queues: int, due_by: bool) -> str:
    """A claimer's own conditions: its queues (one parameter each), then its cutoff (one parameter)."""
    sql = f" AND queue IN ({', '.join(['%s'] * queues)})" if queues else ""
    return sql + (" AND next_run <= %s" if due_by else "")


def due_ids(table: str, now: str = NOW) -> str:
    """The ids of due tasks (parameter: now): what ``lifecycle.due()`` shows the ORM."""
    return f"SELECT id FROM {table} WHERE {due(now)}"


def any_due(table: str, where: str, db_use: bool | None = None, now: str = NOW) -> str:
    """One row if anything is due (parameters: now, the filters). ``db_use``: only such tasks, or none."""
    kind = "" if db_use is None else " AND db_use" if db_use else " AND NOT db_use"
    return f"SELECT 1 FROM {table} WHERE {due(now)}{kind}{where} LIMIT 1"


def next_due(table: str, where: str) -> str:
    """When the next waiting, unpaused task falls due (parameters: the filters)."""
    return f"SELECT MIN(next_run) FROM {table} WHERE {WAITING_UNPAUSED}{where}"


def expired_ids(table: str, where: str, now: str = NOW) -> str:
    """Due tasks past expires_at (parameters: now, now, the filters)."""
    return f"SELECT id FROM {table} WHERE {due(now)} AND expires_at <= {now}{where}"


def expire(table: str, where: str, now: str = NOW) -> str:
    """Mark due tasks past expires_at expired (parameters: updated_at, then ``expired_ids``')."""
    expired = expired_ids(table, where, now)
    return f"UPDATE {table} SET status = {EXPIRED}, updated_at = {now} WHERE id IN ({expired})"


def picked_ids(table: str, where: str, now: str = NOW) -> str:
    """Plain (not db_use) due tasks to claim, in claim order (parameters: now, now, the filters, limit)."""
    return (
        f"SELECT id FROM {table} WHERE {due(now)} AND NOT db_use AND {not_expired(now)}{where} "
        f"ORDER BY {CLAIM_ORDER} LIMIT %s"
    )


def db_use_candidate(table: str, where: str, locking: bool, now: str = NOW) -> str:
    """The first due db_use task (parameters: now, now, the filters): id and fence, locked if ``locking``."""
    return (
        f"SELECT id, fence FROM {table} WHERE {due(now)} AND db_use AND {not_expired(now)}{where} "
        f"ORDER BY {CLAIM_ORDER} LIMIT 1" + (" FOR UPDATE SKIP LOCKED" if locking else "")
    )


def set_claimed(table: str, now: str = NOW) -> str:
    """The SET list of every claim (parameters: runner id, updated_at); columns are the row before."""
    return (
        f"status = {RUNNING}, runner_id = %s, fence = {table}.fence + 1, attempts = {table}.attempts + 1, "
        f"attempt = {table}.attempt + 1, updated_at = {now}, "
        # A new series keeps the time it was due: retries must not shift a loop's schedule.
        f"period_start = CASE WHEN {table}.attempt = 0 THEN {table}.next_run ELSE {table}.period_start END"
    )


def claim_picked(table: str, where: str, returning: str) -> str:
    """Claim a batch (parameters: runner id, updated_at, then ``picked_ids``')."""
    picked = picked_ids(table, where)
    return f"UPDATE {table} SET {set_claimed(table)} WHERE id IN ({picked}) RETURNING {returning}"


def claim_one(table: str, returning: str, now: str = NOW) -> str:
    """Claim one task unless it is running (parameters: runner id, updated_at, id, fence).

    Only if its fence is still the one read: a stale candidate is never claimed.
    """
    return (
        f"UPDATE {table} SET {set_claimed(table, now)} WHERE id = %s AND fence = %s AND status <> {RUNNING} "
        f"RETURNING {returning}"
    )


def insert_runs(run_table: str, columns: str, rows: int, row: str) -> str:
    """Open the claimed tasks' runs, ``rows`` of ``row`` each; returns (run id, task id)."""
    return f"INSERT INTO {run_table} ({columns}) VALUES {', '.join([row] * rows)} RETURNING id, task_id"


def claim_in_one_statement(table: str, run_table: str, where: str, returning: str, columns: str,
                           values: str, now: str) -> str:  # fmt: skip
    """PostgreSQL: expire, pick (skipping rows other runners hold), claim and open runs, in one round trip.

    Parameters: the filters, the filters and limit, runner id, then the runs' default values ("now" is
    ``now``, the server's clock, in the text).
    """
    return f"""
        WITH expired AS (
            UPDATE {table} SET status = {EXPIRED}, updated_at = {now}
            WHERE id IN ({expired_ids(table, where, now)} FOR UPDATE SKIP LOCKED)
        ), picked AS ({picked_ids(table, where, now)} FOR UPDATE SKIP LOCKED),
        claimed AS (
            UPDATE {table} SET {set_claimed(table, now)}
            FROM picked WHERE {table}.id = picked.id
            RETURNING {returning}
        ), runs AS (
            INSERT INTO {run_table} ({columns}) SELECT {values} FROM claimed RETURNING id, task_id
        )
        SELECT claimed.*, runs.id FROM claimed JOIN runs ON runs.task_id = claimed.id
        ORDER BY claimed.priority DESC, claimed.next_run, claimed.id
    """


# Recording outcomes ---------------------------------------------------------------------------------

#: The columns of the outcomes' VALUES list, and the Task field whose database type each has.
OUTCOME_COLUMNS = (
    ("o_id", "id"), ("o_fence", "fence"), ("o_loops", "loop"), ("o_loop_next_run", "next_run"),
    ("o_status", "status"), ("o_next_run", "next_run"), ("o_series_over", "loop"),
    ("o_counted", "run_count"), ("o_last_run", "last_run"), ("o_last_status", "last_status"),
    ("o_output", "output"), ("o_error", "error"),
)  # fmt: skip


def record_outcomes_head() -> str:
    """The start of the fenced UPDATE of a batch of tasks; the VALUES rows follow it."""
    return f"WITH o ({', '.join(name for name, _ in OUTCOME_COLUMNS)}) AS (VALUES "


def record_outcomes_tail(table: str, returning: str) -> str:
    """The rest of it (its last parameter: updated_at). Only a run's own claim (its fence) may record."""
    return (
        f") UPDATE {table} SET "
        # A loop goes on only if its flag is still set: "stop looping" may have cleared it during the run.
        f"status = CASE WHEN o.o_loops AND {table}.loop THEN {WAITING} ELSE o.o_status END, "
        f"next_run = CASE WHEN o.o_loops AND {table}.loop THEN o.o_loop_next_run "
        f"ELSE COALESCE(o.o_next_run, {table}.next_run) END, "
        f"attempt = CASE WHEN o.o_series_over THEN 0 ELSE {table}.attempt END, "
        f"run_count = {table}.run_count + o.o_counted, runner_id = NULL, last_run = o.o_last_run, "
        "last_status = o.o_last_status, output = o.o_output, error = o.o_error, updated_at = %s "
        f"FROM o WHERE {table}.id = o.o_id AND {table}.fence = o.o_fence AND {table}.status = {RUNNING} "
        f"RETURNING {returning}"
    )


def close_run(run_table: str, assignments: str) -> str:
    """Close a run that is still open (parameters: ``assignments``', then the run's id)."""
    return f"UPDATE {run_table} SET {assignments} WHERE id = %s AND finished_at IS NULL"
