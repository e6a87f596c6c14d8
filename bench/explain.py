"""EXPLAIN the dashboard's list and chart queries on PostgreSQL with 1,000,000 runs (docs/dashboard.md).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/conductor_explain .venv/bin/python bench/explain.py

Fills the database (migrated first) with 10,000 tasks in 6 queues and 21 functions (one queue and one
function hold 1% of the tasks and so of the runs), 4 runners and 1,000,000 runs, then prints
``EXPLAIN ANALYZE`` of the first page of each filter the task and run lists offer (the query the view
reads, from ``lists.task_query`` / ``lists.run_query``), of every query the charts view, ``/metrics``
and the admin's runs list make, and a summary table: the scans of each plan and its execution time.
"""

import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django.setup()

from django.contrib.admin import site  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import QuerySet  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402
from prometheus_client.registry import CollectorRegistry  # noqa: E402

from app import api, lists, metrics, stats  # noqa: E402
from app.runnerprocess import RunnerProcess  # noqa: E402
from app.task import Task  # noqa: E402
from app.taskrun import TaskRun  # noqa: E402

TASKS, RUNS, RUNNERS = 10_000, 1_000_000, 4
RARE_QUEUE, RARE_FUNC = "rare", "jobs.rare"  # 1% of the tasks each (n % 100 = 1 and 2)
SCAN = re.compile(r"((?:Parallel )?(?:Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)(?: Backward)?"
                  r"(?: using \S+)?(?: on \S+)?)")  # fmt: skip
summary: list[tuple[str, str, str]] = []


def fill() -> None:
    if TaskRun.objects.count() >= RUNS and TaskRun.objects.filter(queue=RARE_QUEUE).exists():
        return
    task, run, runner = Task._meta.db_table, TaskRun._meta.db_table, RunnerProcess._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {run}, {task}, {runner} CASCADE")
    for n in range(RUNNERS):
        RunnerProcess.objects.create(worker_id=f"r{n}", host="h", pid=n + 1, threads=8)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO {task} (task_id, name, func, args_in, loop, interval, run_in, db_use, use_pdb, status,
                next_run, attempts, paused, last_status, error, cron, timezone, run_count, catch_up,
                max_attempts, attempt, retry_delay, retry_delay_max, isolation, priority, queue, fence,
                updated_at, created_at, conn, output, runner_id)
            SELECT 't' || n, 'task ' || n,
                CASE WHEN n % 100 = 2 THEN '{RARE_FUNC}' ELSE 'jobs.f' || (n % 20) END, '{{}}', n % 10 = 0,
                100, 0, false, false,
                CASE WHEN n % 50 = 5 THEN 'running' WHEN n % 10 = 0 THEN 'waiting' ELSE 'finished' END,
                now(), 0, n % 100 = 0, '', '', '', 'UTC', 0, 'once', 1, 1, 1, 60, 'thread', 0,
                CASE WHEN n % 100 = 1 THEN '{RARE_QUEUE}' ELSE 'q' || (n % 5) END, 0, now(), now(),
                NULL, NULL,
                CASE WHEN n % 50 = 5 THEN (SELECT min(id) FROM {runner}) END
            FROM generate_series(1, {TASKS}) n""")
        cursor.execute(f"""
            INSERT INTO {run} (task_id, runner_id, queue, func, fence, attempt, thread_name, started_at,
                finished_at, duration, status, error, log, progress_message, scheduled_for)
            SELECT t.id, (SELECT min(id) FROM {runner}) + (n % {RUNNERS}), t.queue, t.func, n, 1, 'w',
                now() - ({RUNS} - n) * interval '1 second',
                now() - ({RUNS} - n) * interval '1 second' + interval '50 ms', 0.05,
                CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'finished' END, '', '', '',
                now() - ({RUNS} - n) * interval '1 second'
            FROM generate_series(1, {RUNS}) n
            JOIN {task} t ON t.id = (SELECT min(id) FROM {task}) + (n % {TASKS})""")
        cursor.execute("VACUUM ANALYZE")  # statistics and the visibility map, as autovacuum would leave them


def explain(title: str, sql: str, params: tuple | list = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) {sql}", params)
        plan = [row[0] for row in cursor.fetchall()]
    print(f"### {title}\n" + "\n".join(plan) + "\n")
    time = next(line.split(": ")[1] for line in plan if line.startswith("Execution Time"))
    scans = "; ".join(dict.fromkeys(match for line in plan for match in SCAN.findall(line)))
    summary.append((title, scans, time))


def explain_list(title: str, query: Callable[[dict], lists.PageQuery], params: dict) -> None:
    explain_page(title, query(params).rows)


def explain_page(title: str, queryset: QuerySet) -> None:
    explain(title, *queryset.query.sql_with_params())


def explain_captured(title: str, make: Callable[[], object], table: str = TaskRun._meta.db_table) -> None:
    """EXPLAIN each SELECT that ``make`` sends which reads ``table`` (numbered when there are several)."""
    with CaptureQueriesContext(connection) as captured:
        make()
    reads = [q["sql"] for q in captured if q["sql"].startswith("SELECT") and f'"{table}"' in q["sql"]]
    for number, sql in enumerate(reads, 1):
        explain(f"{title} ({number}/{len(reads)})" if len(reads) > 1 else title, sql)


def list_filters() -> None:
    some_task = str(Task.objects.order_by("id").values_list("id", flat=True)[5])
    for title, params in [
        ("tasks: newest first", {}),
        ("tasks: status=waiting", {"status": ["waiting"]}),
        ("tasks: queue=q3", {"queue": ["q3"]}),
        (f"tasks: queue={RARE_QUEUE} (1%)", {"queue": [RARE_QUEUE]}),
        ("tasks: func=jobs.f7", {"func": ["jobs.f7"]}),
        (f"tasks: func={RARE_FUNC} (1%)", {"func": [RARE_FUNC]}),
        ("tasks: paused=true", {"paused": ["true"]}),
        ("tasks: loop=true", {"loop": ["true"]}),
        ("tasks: runner=r0", {"runner": ["r0"]}),
        ("tasks: q= a task id", {"q": ["t77"]}),
        ("tasks: q= part of a name", {"q": ["task 77"]}),
    ]:
        explain_list(title, lists.task_query, params)
    for title, params in [
        ("runs: newest first", {}),
        ("runs: status=failed", {"status": ["failed"]}),
        ("runs: task=<id>", {"task": [some_task]}),
        ("runs: runner=r0", {"runner": ["r0"]}),
        ("runs: queue=q3", {"queue": ["q3"]}),
        (f"runs: queue={RARE_QUEUE} (1%)", {"queue": [RARE_QUEUE]}),
        ("runs: func=jobs.f7", {"func": ["jobs.f7"]}),
        (f"runs: func={RARE_FUNC} (1%)", {"func": [RARE_FUNC]}),
        ("runs: q= a task id", {"q": ["t77"]}),
        ("runs: q= part of a name", {"q": ["task 77"]}),
    ]:
        explain_list(title, lists.run_query, params)


def charts_and_metrics() -> None:
    # One run a second, the newest last (as ids and times go): the last hour holds 3,600 of them.
    explain_captured("charts (api/charts)", stats.charts)
    registry = CollectorRegistry()
    registry.register(metrics.ConductorCollector())
    explain_captured("/metrics", lambda: generate_latest(registry))


def admin_runs_list() -> None:
    setup_test_environment()  # the test client's host
    superuser = {"is_staff": True, "is_superuser": True}
    user, _ = User.objects.get_or_create(username="explain", defaults=superuser)
    client = Client()
    client.force_login(user)
    for title, params in [
        ("admin runs: newest first", {}),
        (f"admin runs: queue={RARE_QUEUE}", {"queue": RARE_QUEUE}),
        (f"admin runs: func={RARE_FUNC}", {"func": RARE_FUNC}),
        ("admin runs: finished in the past 7 days", past_7_days()),
    ]:
        explain_captured(title, lambda params=params: client.get("/admin/conductor/taskrun/", params))


def past_7_days() -> dict[str, str]:
    """The parameters of DateFieldListFilter's "Past 7 days" link."""
    today = timezone.localdate()
    return {"finished_at__gte": str(today - timedelta(days=7)), "finished_at__lt": str(today + timedelta(1))}


def readers_of_dropped_indexes() -> None:
    """What the task and runner foreign keys' indexes and run_task_recent served (migration 0006)."""
    task = Task.objects.filter(status="running").order_by("id")[5]
    runner = RunnerProcess.objects.get(worker_id="r0")
    explain_captured("a running task's run (api/tasks/<id>)", lambda: api._upcoming(task))
    explain_captured("a task's recent runs (admin task page)", lambda: site._registry[Task].recent_runs(task))
    # The WHERE of the DELETE and UPDATE that deleting a task or a runner makes (a SELECT: nothing changes).
    runs = TaskRun.objects.values("id")
    explain_page("a deleted task's runs (CASCADE)", runs.filter(task_id__in=[task.pk]))
    explain_page("a deleted runner's runs (SET_NULL)", runs.filter(runner_id__in=[runner.pk]))
    open_runs = TaskRun.objects.filter(runner_id__in=[runner.pk], finished_at__isnull=True, status="running")
    explain_page("a dead runner's open runs (recovery)", open_runs.values("id"))


def main() -> None:
    call_command("migrate", verbosity=0)
    fill()
    list_filters()
    charts_and_metrics()
    admin_runs_list()
    readers_of_dropped_indexes()
    print("| query | scans | execution time |\n| --- | --- | --- |")
    for title, scans, time in summary:
        print(f"| {title} | {scans} | {time} |")


if __name__ == "__main__":
    main()
