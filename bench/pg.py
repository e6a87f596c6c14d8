"""``make bench`` on PostgreSQL: drain with 1, 2 and 4 runners, and pickup latency.

Run by bench/run.py as ``python -m bench.pg --out FILE`` (its own process: Django's settings are
per process, and the rest of the bench uses a SQLite file). Needs PostgreSQL at BENCH_PG_URL (default
``postgres://postgres@127.0.0.1:5432/postgres``, a user that may create databases).

A database of the bench's own (``conductor_bench_<random>``) is migrated once into a template, and
every measurement starts from a fresh copy of it (``CREATE DATABASE ... TEMPLATE``); both are dropped
at the end.

- drain: 2,000 no-op tasks due now; 1, 2 or 4 ``runtasks --threads 8 --once`` processes started
  together; tasks/s = 2,000 / (last finished_at - first started_at). Rounds alternate 1, 2, 4; median.
- pickup latency: one idle ``runtasks --threads 8`` with the default ``--poll``; tasks inserted one at a
  time, each after a random pause of up to one poll period (so inserts fall at random points of the
  poll cycle); latency = the time at the function's first line - next_run. Two ways in:
  ``Task.objects.create`` (``Task.save()``: whatever wake-up it sends, today a PostgreSQL NOTIFY) and
  ``bulk_create`` (no ``save()``, so nothing but the runner's poll finds the task).

Writes the summary rows for the final table as JSON to FILE.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import fail, percentile, say, wait_for  # noqa: E402

DRAIN_TASKS = 2000
RUNNER_COUNTS = (1, 2, 4)
DRAIN_ROUNDS = 3
THREADS = 8
LATENCY_TASKS = 25  # per way in; each waits up to a poll period first, so keep it modest
ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = f"conductor_bench_{uuid.uuid4().hex[:8]}"
TEMPLATE_NAME = f"{DB_NAME}_tpl"
DB_URL = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{DB_NAME}"))
WORK_DIR = Path(tempfile.mkdtemp(prefix="conductor-bench-pg-"))
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "server.settings",
    "DATABASE_URL": DB_URL,
    "CONDUCTOR_TASK_MODULES": "bench.functions",
    "REDIS_URL": "",  # the in-memory layer: these runners talk to no dashboard
    "PYTHONPATH": str(REPO_ROOT),
    "PYTHONUNBUFFERED": "1",
}
os.environ.update({k: ENV[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CONDUCTOR_TASK_MODULES")})
os.environ["REDIS_URL"] = ""

import django  # noqa: E402
import psycopg  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Count, Max, Min  # noqa: E402
from django.utils import timezone  # noqa: E402

from app import conf  # noqa: E402
from app.runnerprocess import RunnerProcess  # noqa: E402
from app.status import RunnerState, RunStatus, TaskStatus  # noqa: E402
from app.task import Task  # noqa: E402
from app.taskrun import TaskRun  # noqa: E402


def admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def create_template() -> None:
    admin(f"CREATE DATABASE {TEMPLATE_NAME}")
    env = {**ENV, "DATABASE_URL": urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{TEMPLATE_NAME}"))}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, env=env, check=True
    )


def fresh_database() -> None:
    """A new copy of the migrated template under the bench's database name."""
    connection.close()
    admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    admin(f"CREATE DATABASE {DB_NAME} TEMPLATE {TEMPLATE_NAME}")


def drop_databases() -> None:
    connection.close()
    for name in (DB_NAME, TEMPLATE_NAME):
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_runtasks(log_name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    log_path = WORK_DIR / f"{log_name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runtasks", *args],
            cwd=REPO_ROOT,
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, log_path


def kill_leftovers(processes: list[tuple[subprocess.Popen, Path]]) -> None:
    for process, _ in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# Drain with several runners -----------------------------------------------------------------------


def drain(runners: int, round_no: int) -> dict:
    fresh_database()
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(name=f"noop-{i}", task_id=uuid.uuid4().hex, func="bench.functions.noop", next_run=now)
            for i in range(DRAIN_TASKS)
        ],
        batch_size=500,
    )
    connection.close()  # the bench's connection stays out of the runners' way
    processes = []
    try:
        started = time.monotonic()
        for n in range(runners):
            processes.append(
                start_runtasks(
                    f"drain-{runners}-{round_no}-{n}",
                    "--once",
                    "--threads",
                    str(THREADS),
                    "--worker-id",
                    f"drain-{n}",
                )
            )
        for process, log_path in processes:
            code = process.wait(120)
            if code != 0:
                fail(f"runtasks --once exited with {code}", log_path)
        wall = time.monotonic() - started
    finally:
        kill_leftovers(processes)
    log_path = processes[0][1]
    finished = TaskRun.objects.filter(status=RunStatus.FINISHED, finished_at__isnull=False)
    count = finished.count()
    if count != DRAIN_TASKS or Task.objects.exclude(status=TaskStatus.FINISHED).exists():
        fail(f"{count} of {DRAIN_TASKS} runs finished with {runners} runners", log_path)
    span = finished.aggregate(first=Min("started_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    shares = sorted(
        (row["n"] for row in finished.values("runner").annotate(n=Count("id")).order_by()), reverse=True
    )
    shares += [0] * (runners - len(shares))  # a runner that started late may have found nothing left
    rate = DRAIN_TASKS / seconds
    say(
        f"  {runners} runner{'s' if runners > 1 else ''}, round {round_no}: {rate:,.0f} tasks/s over "
        f"{seconds:.2f} s; wall {wall:.2f} s; runs per runner: {', '.join(f'{s:,}' for s in shares)}"
    )
    return {"rate": rate, "seconds": seconds, "wall": wall, "shares": shares}


# Pickup latency -----------------------------------------------------------------------------------


def insert_saved(i: int) -> Task:
    """Through Task.save(): validated, and announced (today a NOTIFY to listening runners)."""
    return Task.objects.create(name=f"stamp-{i}", func="bench.functions.stamp", next_run=timezone.now())


def insert_bulk(i: int) -> Task:
    """One row through bulk_create: no save(), so no wake-up; only the runner's poll finds it."""
    task = Task(name=f"bulk-{i}", task_id=uuid.uuid4().hex, func="bench.functions.stamp")
    task.next_run = timezone.now()
    Task.objects.bulk_create([task])
    return Task.objects.get(task_id=task.task_id)


def pickup_latency(poll: float) -> dict[str, list[float]]:
    fresh_database()
    process, log_path = start_runtasks("latency", "--threads", str(THREADS), "--worker-id", "pickup")
    results: dict[str, list[float]] = {}
    try:
        wait_for(
            lambda: RunnerProcess.objects.filter(worker_id="pickup", state=RunnerState.RUNNING).exists(),
            60,
            "the runner to sign in",
            process,
            log_path,
        )
        rng = random.Random(1)
        for way, insert in (("saved", insert_saved), ("bulk", insert_bulk)):
            latencies = []
            for i in range(LATENCY_TASKS):
                time.sleep(rng.uniform(0, poll))  # a random point of the runner's poll cycle
                task = insert(i)
                run = wait_for(
                    lambda task=task: TaskRun.objects.filter(task=task, status=RunStatus.FINISHED).first(),
                    30,
                    f"task {task.name} to finish",
                    process,
                    log_path,
                )
                latencies.append(1000 * (run.output - task.next_run.timestamp()))
            results[way] = sorted(latencies)
            values = results[way]
            say(
                f"  {way:>5}: p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, "
                f"max {values[-1]:.1f} ms over {LATENCY_TASKS} tasks"
            )
        connection.close()
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        if code != 0:
            fail(f"runtasks exited with {code} after SIGTERM", log_path)
    finally:
        kill_leftovers([(process, log_path)])
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="where to write the summary rows (JSON)")
    out = Path(parser.parse_args().out)
    poll = conf.get().POLL
    try:
        admin("SELECT 1")
    except psycopg.Error as exc:
        raise SystemExit(f"bench failed: PostgreSQL is not reachable at {ADMIN_URL} ({exc})") from None
    say(f"PostgreSQL: database {DB_NAME} (a fresh copy of a migrated template for each measurement)")
    try:
        create_template()
        say(
            f"Drain on PostgreSQL: {DRAIN_TASKS} no-op tasks, runners started together, each "
            f"runtasks --once --threads {THREADS}; {DRAIN_ROUNDS} rounds of "
            + ", ".join(f"{n} runners" for n in RUNNER_COUNTS)
        )
        drains: dict[int, list[dict]] = {n: [] for n in RUNNER_COUNTS}
        for round_no in range(1, DRAIN_ROUNDS + 1):
            for runners in RUNNER_COUNTS:
                drains[runners].append(drain(runners, round_no))
        say(f"Pickup latency on PostgreSQL: one idle runtasks --threads {THREADS}, default --poll ({poll} s)")
        latency = pickup_latency(poll)
    finally:
        drop_databases()
        shutil.rmtree(WORK_DIR, ignore_errors=True)

    rows = []
    single = statistics.median(r["rate"] for r in drains[1])
    for runners in RUNNER_COUNTS:
        rates = [r["rate"] for r in drains[runners]]
        median = statistics.median(rates)
        label = f"PostgreSQL drain, {runners} runner{'s' if runners > 1 else ''} x {THREADS} threads"
        rows.append(
            (
                f"{label} (median)",
                f"{median:,.0f} tasks/s",
                f"x{median / single:.2f} of 1 runner; runs: " + ", ".join(f"{r:,.0f}" for r in rates),
            )
        )
        if runners > 1:
            shares = [share for r in drains[runners] for share in r["shares"]]
            spread = [f"{min(r['shares']):,}-{max(r['shares']):,}" for r in drains[runners]]
            rows.append(
                (
                    "  runs per runner, fewest-most",
                    f"{min(shares):,}-{max(shares):,}",
                    f"of {DRAIN_TASKS:,}; per round: " + ", ".join(spread),
                )
            )
    # What wakes a runner on PostgreSQL is read from the code under test, not assumed.
    triggered = (REPO_ROOT / "app" / "migrations" / "0002_notify_trigger.py").exists()
    woken_by = "the insert trigger's NOTIFY" if triggered else f"the {poll:g} s poll"
    notes = {"saved": f"Task.objects.create: {woken_by}", "bulk": f"bulk_create (no save()): {woken_by}"}
    for way in ("saved", "bulk"):
        values = latency[way]
        rows.append(
            (
                f"PostgreSQL pickup latency, {way} p50 / p95",
                f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} ms",
                f"{notes[way]}; max {values[-1]:.0f} ms; {LATENCY_TASKS} tasks",
            )
        )
    out.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
