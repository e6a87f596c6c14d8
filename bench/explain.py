"""EXPLAIN the dashboard's list and chart queries on PostgreSQL with 1,000,000 runs (docs/dashboard.md).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/conductor_explain .venv/bin/python bench/explain.py

Fills the database (migrated first) with 10,000 tasks in 5 queues and 20 functions and 1,000,000 runs,
then prints the plan of the first page of each filter the dashboard offers.
"""

import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from app import lists, stats  # noqa: E402
from app.task import Task  # noqa: E402
from app.taskrun import TaskRun  # noqa: E402

TASKS, RUNS = 10_000, 1_000_000


def fill() -> None:
    if TaskRun.objects.count() >= RUNS:
        return
    task, run = Task._meta.db_table, TaskRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {run}, {task} CASCADE")
        cursor.execute(f"""
            INSERT INTO {task} (task_id, name, func, args_in, loop, interval, run_in, db_use, use_pdb, status,
                next_run, attempts, paused, last_status, error, cron, timezone, run_count, catch_up,
                max_attempts, attempt, retry_delay, retry_delay_max, isolation, priority, queue, fence,
                updated_at, created_at, conn, output)
            SELECT 't' || n, 'task ' || n, 'jobs.f' || (n % 20), '{{}}', n % 10 = 0, 100, 0, false, false,
                CASE WHEN n % 10 = 0 THEN 'waiting' ELSE 'finished' END, now(), 0, n % 100 = 0, '', '', '',
                'UTC', 0, 'once', 1, 1, 1, 60, 'thread', 0, 'q' || (n % 5), 0, now(), now(), NULL, NULL
            FROM generate_series(1, {TASKS}) n""")
        cursor.execute(f"""
            INSERT INTO {run} (task_id, fence, attempt, thread_name, started_at, finished_at, duration,
                status, error, log, progress_message, scheduled_for)
            SELECT (SELECT min(id) FROM {task}) + (n % {TASKS}), n, 1, 'w', now() - n * interval '1 second',
                now() - n * interval '1 second' + interval '50 ms', 0.05,
                CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'finished' END, '', '', '',
                now() - n * interval '1 second'
            FROM generate_series(1, {RUNS}) n""")
        cursor.execute("ANALYZE")


def explain(title: str, queryset) -> None:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) {sql}", params)
        plan = [row[0] for row in cursor.fetchall()]
    print(f"### {title}\n" + "\n".join(plan) + "\n")


def page(spec, base, params):
    queryset = base
    for name, (narrow, lookup) in spec.filters.items():
        if params.get(name):
            queryset = narrow(queryset, params[name], lookup)
    return queryset.order_by("-id")[: lists.DEFAULT_LIMIT + 1]


def main() -> None:
    call_command("migrate", verbosity=0)
    fill()
    tasks, runs = Task.objects.all(), TaskRun.objects.all()
    for title, params in [
        ("tasks: newest first", {}),
        ("tasks: status=waiting", {"status": ["waiting"]}),
        ("tasks: queue=q3", {"queue": ["q3"]}),
        ("tasks: func=jobs.f7", {"func": ["jobs.f7"]}),
        ("tasks: paused=true", {"paused": ["true"]}),
        ("tasks: loop=true", {"loop": ["true"]}),
    ]:
        explain(title, page(lists.TASKS, tasks, params))
    explain("tasks: search by task id", tasks.filter(task_id="t77").order_by("-id")[:51])
    for title, params in [
        ("runs: newest first", {}),
        ("runs: status=failed", {"status": ["failed"]}),
        ("runs: task=<id>", {"task": [str(Task.objects.order_by("id").values_list("id", flat=True)[5])]}),
        ("runs: queue=q3", {"queue": ["q3"]}),
        ("runs: func=jobs.f7", {"func": ["jobs.f7"]}),
    ]:
        explain(title, page(lists.RUNS, runs, params))
    recent = TaskRun.objects.filter(finished_at__gte=stats.timezone.now() - stats.WINDOW)
    explain("charts: runs in the last hour", recent.values("status").order_by())


if __name__ == "__main__":
    main()
