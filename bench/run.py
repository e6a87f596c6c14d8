"""``make bench``: measure the embedded default (SQLite file, one ``runtasks`` process).

Runs ``manage.py migrate`` and ``manage.py runtasks`` as subprocesses on a fresh SQLite file in a temporary
directory, and uses the ORM from this process on the same file to insert tasks and read results.

- drain throughput: 2,000 no-op tasks due now, ``runtasks --once --threads 8``; median of 3 fresh databases.
- pickup latency: 100 ``stamp`` tasks inserted one at a time into an idle ``runtasks --threads 8``;
  latency = the time at the function's first line - next_run.
- idle cost: the same runner's CPU time over 20 s with nothing to do, and its resident memory.
- loop drift: one looping ``stamp`` task (``interval=1``, ``max_runs=100``, first due 1 s after it is
  saved) in an otherwise idle ``runtasks --threads 8``; drift of run k = its start (the function's first
  line) - (run 1's start + (k - 1) s). The |drift| of runs 2..100, run 100's drift (accumulated) and
  the mean interval.
- memory over 100,000 tasks: 100,000 no-op tasks bulk-inserted, ``runtasks --once --threads 8``; the
  runner's VmRSS every 0.5 s, read at 10%, 50% and 90% of the runs done (by the runs' finished_at) and
  at the end; tasks/s of that drain as above.

Live state (a WebSocket dashboard, bench/live.py), measured embedded and through Redis:

- event latency: 100 ``stamp`` tasks inserted one at a time; for ``task.claimed`` and ``task.finished``,
  latency = when the dashboard received the event - the event's ``at`` (stamped in the runner when it
  published it; one machine, one clock). Also commit -> running on the page: the ``task.claimed``
  arrival - the task's next_run. Embedded: ``runtasks --serve`` (in-memory layer). Through Redis:
  ``runtasks`` and daphne as two processes with REDIS_URL.
- drain with dashboards: 2,000 no-op tasks, ``runtasks --once --threads 8`` with REDIS_URL, a daphne with
  50 connected dashboards vs none (3 rounds each, alternating); tasks/s as above, the events each
  dashboard received (4 task events per task) and daphne's CPU time during the drain. Then the same again
  with the runner on CPU 0 and daphne and the clients on the other CPUs (as separate machines would be).

On PostgreSQL (bench/pg.py, a process of its own; a fresh database of the bench's own):

- drain with 1, 2 and 4 ``runtasks --threads 8 --once`` processes started together, 2,000 no-op tasks.
- pickup latency of one idle runner with the default ``--poll``, tasks saved one at a time (``save()``
  notifies listening runners) and inserted with ``bulk_create`` (nothing but the poll finds them).

Redis must be running (redis://127.0.0.1:6379/0, or BENCH_REDIS_URL), and PostgreSQL
(postgres://postgres@127.0.0.1:5432/postgres, or BENCH_PG_URL, a user that may create databases); the
bench fails without them.

Peer task runners (bench/peers/, installed into .bench-venv only): django-tasks-db, django-q2 and huey,
measured the same way (drain, pickup latency, idle cost) and printed with Conductor's figures and ratios in
one table at the end; BENCH_PEERS=0 skips them, BENCH_PEERS=huey,q2 picks some.

BENCH_ONLY picks measurements for a quick run, e.g. ``BENCH_ONLY=drift,memory`` (a comma-separated list of
drain, latency, drift, memory, events, dashboards, postgres, peers); unset, everything runs.

These are measurements, not tests: nothing here passes or fails on a number.
"""

import bisect
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DRAIN_TASKS = 2000
DRAIN_ROUNDS = 3
LATENCY_TASKS = 100
LATENCY_GAP = 0.05
IDLE_SECONDS = 20.0
THREADS = 8
LIVE_SAMPLES = 100
LIVE_GAP = 0.02
DASHBOARDS = 50
DASHBOARD_ROUNDS = 3
DRIFT_RUNS = 100
DRIFT_INTERVAL = 1.0
MEMORY_TASKS = 100_000
MEMORY_INSERT_BATCH = 5000
MEMORY_SAMPLE_EVERY = 0.5
MEMORY_TIMEOUT = 1800.0
MEMORY_POINTS = (10, 50, 90)  # % of the runs done
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: What BENCH_ONLY may name, in the order they run.
SECTIONS = ("drain", "latency", "drift", "memory", "events", "dashboards", "browser", "postgres", "peers")
IN_MEMORY = {"REDIS_URL": ""}  # an empty REDIS_URL: the in-memory channel layer

WORK_DIR = Path(tempfile.mkdtemp(prefix="conductor-bench-"))
DB_PATH = WORK_DIR / "bench.sqlite3"
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "server.settings",
    "DATABASE_URL": f"sqlite:///{DB_PATH}",
    "CONDUCTOR_TASK_MODULES": "bench.functions",
    "PYTHONPATH": str(REPO_ROOT),
    "PYTHONUNBUFFERED": "1",
}
# The ORM of this process uses the same file (set before django.setup()).
os.environ.update({k: ENV[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CONDUCTOR_TASK_MODULES")})
sys.path.insert(0, str(REPO_ROOT))

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import Max, Min  # noqa: E402
from django.utils import timezone  # noqa: E402

from app.runnerprocess import RunnerProcess  # noqa: E402
from app.status import RunnerState, RunStatus, TaskStatus  # noqa: E402
from app.task import Task  # noqa: E402
from app.taskrun import TaskRun  # noqa: E402
from bench import browser, live  # noqa: E402
from bench.common import fail, percentile, say, wait_for  # noqa: E402
from bench.peers import run as peers  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def fresh_database() -> None:
    """Delete the bench database and migrate a new one (the ORM reconnects lazily)."""
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB_PATH}{suffix}").unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=ENV,
        check=True,
    )


def start_runtasks(
    log_name: str, *args: str, env: dict[str, str] | None = None, cpus: set[int] | None = None
) -> tuple[subprocess.Popen, Path]:
    """``cpus``: the only CPUs the process and every thread it starts may run on (unset: any)."""
    return start_process(log_name, ["manage.py", "runtasks", *args], env, cpus)


def start_web(log_name: str, port: int, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """daphne serving server.asgi on 127.0.0.1:port."""
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "server.asgi:application"]
    return start_process(log_name, args, env)


def start_process(
    log_name: str, args: list[str], env: dict[str, str] | None, cpus: set[int] | None = None
) -> tuple[subprocess.Popen, Path]:
    log_path = WORK_DIR / f"{log_name}.log"
    # Pinned before it runs: threads inherit the affinity of the thread that starts them.
    pinned = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env={**ENV, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned,
        )
    return process, log_path


def stop(process: subprocess.Popen, log_path: Path) -> None:
    """SIGTERM, and a clean exit within 30 s; killed (only this process) if anything goes wrong."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
            if code != 0:
                fail(f"{process.args[1]} exited with {code} after SIGTERM", log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# Drain throughput ---------------------------------------------------------------------------------


def drain_once(round_no: int) -> tuple[float, float]:
    """(tasks/s measured on the runs' own timestamps, wall seconds of the runtasks process)."""
    fresh_database()
    insert_noop_tasks()
    started = time.monotonic()
    process, log_path = start_runtasks(f"drain-{round_no}", "--once", "--threads", str(THREADS))
    code = process.wait(120)
    wall = time.monotonic() - started
    if code != 0:
        fail(f"runtasks --once exited with {code}", log_path)
    rate, seconds = drain_rate(log_path)
    say(f"  drain round {round_no}: {rate:,.0f} tasks/s over {seconds:.2f} s; process wall {wall:.2f} s")
    return rate, wall


def insert_noop_tasks(count: int = DRAIN_TASKS, chunk: int = DRAIN_TASKS) -> None:
    """``count`` no-op tasks due now, built ``chunk`` at a time, in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        for start in range(0, count, chunk):
            Task.objects.bulk_create(
                [
                    Task(
                        name=f"noop-{i}", task_id=uuid.uuid4().hex, func="bench.functions.noop", next_run=now
                    )
                    for i in range(start, min(start + chunk, count))
                ],
                batch_size=500,
            )


def drain_rate(log_path: Path, expected: int = DRAIN_TASKS) -> tuple[float, float]:
    """(tasks/s, seconds) from the first run's start to the last run's end; fails unless all finished."""
    finished = TaskRun.objects.filter(status=RunStatus.FINISHED, finished_at__isnull=False)
    count = finished.count()
    if count != expected or Task.objects.exclude(status=TaskStatus.FINISHED).exists():
        fail(f"{count} of {expected} runs finished", log_path)
    span = finished.aggregate(first=Min("started_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    return expected / seconds, seconds


# Pickup latency and idle cost ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    # Fields after the "(comm)" part: utime and stime are fields 14 and 15 of /proc/<pid>/stat.
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency_and_idle() -> dict[str, float]:
    fresh_database()
    process, log_path = start_runtasks("latency", "--threads", str(THREADS), "--worker-id", "bench")
    try:
        wait_for(
            lambda: RunnerProcess.objects.filter(worker_id="bench", state=RunnerState.RUNNING).exists(),
            60,
            "the runner to sign in",
            process,
            log_path,
        )
        latencies = []
        for i in range(LATENCY_TASKS):
            task = Task.objects.create(
                name=f"stamp-{i}", func="bench.functions.stamp", next_run=timezone.now()
            )
            run = wait_for(
                lambda task=task: TaskRun.objects.filter(task=task, status=RunStatus.FINISHED).first(),
                30,
                f"stamp task {i} to finish",
                process,
                log_path,
            )
            latencies.append(run.output - task.next_run.timestamp())
            time.sleep(LATENCY_GAP)
        latencies_ms = sorted(1000 * x for x in latencies)
        say(
            f"  pickup latency over {LATENCY_TASKS} tasks: p50 {percentile(latencies_ms, 50):.1f} ms, "
            f"p95 {percentile(latencies_ms, 95):.1f} ms, max {latencies_ms[-1]:.1f} ms"
        )

        connection.close()  # the bench's own connection stays out of the idle measurement
        time.sleep(1.0)  # let the last run's bookkeeping settle before measuring idle
        before = cpu_seconds(process.pid)
        time.sleep(IDLE_SECONDS)
        if process.poll() is not None:
            fail("runtasks exited while idle", log_path)
        idle_cpu = cpu_seconds(process.pid) - before
        idle_rss = rss_mb(process.pid)
        say(f"  idle: {idle_cpu:.3f} s CPU per {IDLE_SECONDS:.0f} s, RSS {idle_rss:.1f} MB")

        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        if code != 0:
            fail(f"runtasks exited with {code} after SIGTERM", log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return {
        "p50": percentile(latencies_ms, 50),
        "p95": percentile(latencies_ms, 95),
        "max": latencies_ms[-1],
        "idle_cpu": idle_cpu,
        "idle_rss": idle_rss,
    }


# Loop drift and memory over a long drain ----------------------------------------------------------


def loop_drift() -> dict[str, float]:
    """One looping stamp task, interval 1 s, for DRIFT_RUNS runs in an otherwise idle runner."""
    fresh_database()
    process, log_path = start_runtasks("drift", "--threads", str(THREADS), "--worker-id", "drift")
    try:
        wait_for(lambda: signed_in("drift"), 60, "the runner to sign in", process, log_path)
        task = Task.objects.create(
            name="drift",
            func="bench.functions.stamp",
            loop=True,
            interval=DRIFT_INTERVAL,
            max_runs=DRIFT_RUNS,
            # Due one interval from now, so that run 1 is started by the runner's timer like the others
            # (not picked up as a new row: its pickup latency would shift the whole ideal grid).
            next_run=timezone.now() + timedelta(seconds=DRIFT_INTERVAL),
        )
        runs = TaskRun.objects.filter(task=task, finished_at__isnull=False)
        # Checked once a second: the bench's own queries stay out of the runner's way.
        wait_for(lambda: runs.count() >= DRIFT_RUNS, DRIFT_RUNS * DRIFT_INTERVAL + 60,
                 f"{DRIFT_RUNS} runs of the looping task", process, log_path, interval=1.0)  # fmt: skip
        stop(process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    done = list(runs.order_by("scheduled_for", "id"))
    if len(done) != DRIFT_RUNS or any(r.status != RunStatus.FINISHED for r in done):
        fail(f"{len(done)} runs, not {DRIFT_RUNS} finished ones, of the looping task", log_path)
    starts = [run.output for run in done]
    drift_ms = [1000 * (start - (starts[0] + k * DRIFT_INTERVAL)) for k, start in enumerate(starts)]
    late_ms = sorted(1000 * (run.output - run.scheduled_for.timestamp()) for run in done)
    size = sorted(abs(d) for d in drift_ms[1:])  # run 1 is the origin: its drift is 0 by definition
    result = {
        "p50": percentile(size, 50),
        "p95": percentile(size, 95),
        "max": size[-1],
        "last": drift_ms[-1],
        "interval": (starts[-1] - starts[0]) / (len(starts) - 1),
        "late_p50": percentile(late_ms, 50),
        "late_p95": percentile(late_ms, 95),
    }
    say(
        f"  |drift| over runs 2..{DRIFT_RUNS}: p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms, "
        f"max {result['max']:.1f} ms; run {DRIFT_RUNS}: {result['last']:+.1f} ms; mean interval "
        f"{result['interval']:.4f} s; start - scheduled_for p50 {result['late_p50']:.1f} ms, "
        f"p95 {result['late_p95']:.1f} ms"
    )
    return result


def memory_over_drain() -> dict[str, Any]:
    """MEMORY_TASKS no-op tasks through ``runtasks --once``; its VmRSS sampled every MEMORY_SAMPLE_EVERY s."""
    fresh_database()
    began = time.monotonic()
    insert_noop_tasks(MEMORY_TASKS, MEMORY_INSERT_BATCH)
    say(f"  {MEMORY_TASKS:,} tasks inserted in {time.monotonic() - began:.1f} s")
    connection.close()  # the bench's connection stays out of the runner's way
    samples: list[tuple[float, float]] = []  # (time.time(), VmRSS MB)
    started = time.monotonic()
    process, log_path = start_runtasks("memory", "--once", "--threads", str(THREADS))
    try:
        next_sample = started
        while process.poll() is None:
            try:
                rss = rss_mb(process.pid)
            except OSError:  # exited between poll() and the read
                break
            if not math.isnan(rss):  # an exited, not yet reaped, process has no VmRSS
                samples.append((time.time(), rss))
            if time.monotonic() - started > MEMORY_TIMEOUT:
                fail(
                    f"runtasks --once did not finish {MEMORY_TASKS:,} tasks in {MEMORY_TIMEOUT:.0f} s",
                    log_path,
                )
            next_sample += MEMORY_SAMPLE_EVERY
            time.sleep(max(0.0, next_sample - time.monotonic()))
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    wall = time.monotonic() - started
    if code != 0:
        fail(f"runtasks --once exited with {code}", log_path)
    if not samples:
        fail("no RSS sample of the runner", log_path)
    rate, seconds = drain_rate(log_path, MEMORY_TASKS)
    # When p% of the runs were done, by their own finished_at; the first sample taken after that moment.
    ends = sorted(
        at.timestamp()
        for at in TaskRun.objects.values_list("finished_at", flat=True).iterator(chunk_size=10000)
    )
    times = [at for at, _ in samples]
    at_point = {}
    for pct in MEMORY_POINTS:
        moment = ends[max(0, math.ceil(pct / 100 * len(ends)) - 1)]
        at_point[pct] = samples[min(bisect.bisect_left(times, moment), len(samples) - 1)][1]
    result = {
        "at": at_point,
        "end": samples[-1][1],
        "peak": max(rss for _, rss in samples),
        "growth": at_point[MEMORY_POINTS[-1]] - at_point[MEMORY_POINTS[0]],
        "samples": len(samples),
        "rate": rate,
        "seconds": seconds,
        "wall": wall,
    }
    points = ", ".join(f"{pct}% {rss:.1f} MB" for pct, rss in at_point.items())
    say(
        f"  RSS at {points}, end {result['end']:.1f} MB (peak {result['peak']:.1f} MB, "
        f"{len(samples)} samples); growth 10% -> 90%: {result['growth']:+.1f} MB"
    )
    say(f"  drain: {rate:,.0f} tasks/s over {seconds:.2f} s; process wall {wall:.2f} s")
    return result


# Live state: event latency and drain with dashboards ----------------------------------------------


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"bench failed: Redis is not reachable at {REDIS_URL} ({exc}); the live-state bench runs "
            'through it. Start it, e.g. redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""'
        ) from None


def redis_env() -> dict[str, str]:
    """REDIS_URL and a channel prefix of this measurement's own (a shared Redis never mixes runs)."""
    return {"REDIS_URL": REDIS_URL, "CHANNELS_PREFIX": f"conductor-bench-{uuid.uuid4().hex[:8]}"}


def signed_in(worker_id: str) -> bool:
    return RunnerProcess.objects.filter(worker_id=worker_id, state=RunnerState.RUNNING).exists()


def event_latency(mode: str) -> dict[str, list[float]]:
    """Latencies in ms (sorted) of task.claimed and task.finished events, and commit -> page."""
    fresh_database()
    session_key = live.staff_session_key()
    port = live.free_port()
    processes = []
    try:
        if mode == "embedded":
            serve = ("--serve", f"127.0.0.1:{port}")
            processes.append(start_runtasks("live-embedded", *serve, "--threads", str(THREADS),
                                            "--worker-id", "live", env=IN_MEMORY))  # fmt: skip
        else:
            env = redis_env()
            processes.append(start_web("live-web", port, env))
            processes.append(
                start_runtasks("live-redis", "--threads", str(THREADS), "--worker-id", "live", env=env)
            )
        runner_log = processes[-1][1]

        def up() -> bool:
            for process, log_path in processes:
                if process.poll() is not None:
                    fail(f"{process.args[1]} exited with {process.returncode}", log_path)
            return live.port_open(port) and signed_in("live")

        wait_for(up, 60, "the runner and the web server")
        dashboards = live.Dashboards(port, session_key)
        try:
            dashboards.wait_connected()
            if not dashboards.live[0]["ok"]:
                fail(f"the dashboard says live state is off: {dashboards.live[0]['reason']}", runner_log)
            samples: dict[str, list[float]] = {"claimed": [], "finished": [], "page": []}
            for i in range(LIVE_SAMPLES):
                task = Task.objects.create(
                    name=f"stamp-{i}", func="bench.functions.stamp", next_run=timezone.now()
                )
                claimed_at, claimed_seen = dashboards.wait_event("task.claimed", task.pk)
                finished_at, finished_seen = dashboards.wait_event("task.finished", task.pk)
                samples["claimed"].append(1000 * (claimed_seen - claimed_at))
                samples["finished"].append(1000 * (finished_seen - finished_at))
                samples["page"].append(1000 * (claimed_seen - task.next_run.timestamp()))
                time.sleep(LIVE_GAP)
        finally:
            dashboards.close()
        for process, log_path in reversed(processes):
            stop(process, log_path)
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    result = {name: sorted(values) for name, values in samples.items()}
    say(
        f"  {mode}: task.claimed p50 {percentile(result['claimed'], 50):.1f} ms, "
        f"p95 {percentile(result['claimed'], 95):.1f} ms; task.finished p50 "
        f"{percentile(result['finished'], 50):.1f} ms, p95 {percentile(result['finished'], 95):.1f} ms; "
        f"commit -> page p50 {percentile(result['page'], 50):.1f} ms"
    )
    return result


def drain_with_dashboards(round_no: int, count: int, split: bool = False) -> dict[str, Any]:
    """2,000 no-op tasks through ``runtasks --once`` with REDIS_URL while ``count`` dashboards watch.

    ``split``: the runner on CPU 0, daphne and this process (the dashboards' clients) on the others, as
    runner and web nodes are separate machines in the scaled set-up.
    """
    fresh_database()
    session_key = live.staff_session_key()
    env = redis_env()
    port = live.free_port()
    web, web_log = start_web(f"drain-web-{count}-{round_no}", port, env)
    if split:
        pin([web.pid, *own_threads()], WEB_CPUS)
    dashboards = None
    try:
        wait_for(lambda: live.port_open(port), 60, "the web server", web, web_log)
        if count:
            dashboards = live.Dashboards(port, session_key, count)
            dashboards.wait_connected()
        insert_noop_tasks()
        connection.close()  # the bench's connection stays out of the runner's way
        web_cpu = cpu_seconds(web.pid)
        own_cpu = time.process_time()  # the dashboards' clients run in this process
        started = time.monotonic()
        runner, log_path = start_runtasks(f"drain-redis-{count}-{round_no}", "--once", "--threads",
                                          str(THREADS), "--worker-id", "drain", env=env)  # fmt: skip
        if split:
            pin([runner.pid], RUNNER_CPUS)  # before Django has started: its threads inherit it
        code, runner_cpu = wait_with_cpu(runner, 120)
        wall = time.monotonic() - started
        if code != 0:
            fail(f"runtasks --once exited with {code}", log_path)
        delivered = []
        if dashboards is not None:
            dashboards.wait_quiet()
            delivered = sorted(dashboards.task_events)
        web_cpu = cpu_seconds(web.pid) - web_cpu
        own_cpu = time.process_time() - own_cpu
        rate, seconds = drain_rate(log_path)
    finally:
        if dashboards is not None:
            dashboards.close()
        stop(web, web_log)
        if split:
            pin(own_threads(), ALL_CPUS)
    got = f"; task events per dashboard: min {delivered[0]:,}, max {delivered[-1]:,}" if delivered else ""
    say(
        f"  {count:>2} dashboards{' (split)' if split else ''}, round {round_no}: {rate:,.0f} tasks/s over "
        f"{seconds:.2f} s; wall "
        f"{wall:.2f} s; CPU: runner {runner_cpu:.2f} s, daphne {web_cpu:.2f} s, clients {own_cpu:.2f} s{got}"
    )
    return {"rate": rate, "wall": wall, "web_cpu": web_cpu, "own_cpu": own_cpu, "delivered": delivered,
            "runner_cpu": runner_cpu}  # fmt: skip


ALL_CPUS = set(range(os.cpu_count() or 1))
RUNNER_CPUS = {0}
WEB_CPUS = (ALL_CPUS - RUNNER_CPUS) or ALL_CPUS


def own_threads() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def pin(tids: list[int], cpus: set[int]) -> None:
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


def wait_with_cpu(process: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """(exit code, the process's own CPU seconds), from the kernel's accounting as it is reaped."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            process.kill()
            fail(f"{process.args[1]} did not exit within {timeout} s")
        time.sleep(0.01)


def postgres_rows() -> list[tuple[str, str, str]]:
    """Run bench/pg.py in a process of its own (its Django uses PostgreSQL) and return its table rows."""
    out = WORK_DIR / "postgres.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    command = [sys.executable, "-m", "bench.pg", "--out", str(out)]
    if (code := subprocess.run(command, cwd=REPO_ROOT, env=env).returncode) != 0:
        raise SystemExit(f"bench failed: bench/pg.py exited with {code}")
    return [tuple(row) for row in json.loads(out.read_text())]


def selected_sections() -> list[str]:
    """BENCH_ONLY's measurements (a comma-separated list of SECTIONS), in SECTIONS order; unset: all."""
    choice = os.environ.get("BENCH_ONLY", "").strip()
    if not choice:
        return list(SECTIONS)
    names = {name.strip() for name in choice.split(",") if name.strip()}
    if unknown := sorted(names - set(SECTIONS)):
        raise SystemExit(
            f"bench failed: BENCH_ONLY names unknown measurements {unknown}; choose from {SECTIONS}"
        )
    return [name for name in SECTIONS if name in names]


def measure(sections: list[str]) -> dict[str, Any]:
    """Run the selected measurements, printing as they go; their results by section."""
    results: dict[str, Any] = {}
    if "drain" in sections:
        say(f"Drain: {DRAIN_TASKS} no-op tasks, runtasks --once --threads {THREADS}, {DRAIN_ROUNDS} rounds")
        results["drain"] = [drain_once(n + 1) for n in range(DRAIN_ROUNDS)]
    if "latency" in sections:
        say(f"Pickup latency and idle cost: runtasks --threads {THREADS} (default poll)")
        results["latency"] = latency_and_idle()
    if "drift" in sections:
        say(f"Loop drift: one looping stamp task, interval {DRIFT_INTERVAL:g} s, {DRIFT_RUNS} runs, idle "
            f"runtasks --threads {THREADS}")  # fmt: skip
        results["drift"] = loop_drift()
    if "memory" in sections:
        say(f"Memory: {MEMORY_TASKS:,} no-op tasks, runtasks --once --threads {THREADS}, VmRSS every "
            f"{MEMORY_SAMPLE_EVERY:g} s")  # fmt: skip
        results["memory"] = memory_over_drain()
    if "events" in sections:
        say(f"Event latency to a WebSocket dashboard: {LIVE_SAMPLES} stamp tasks, one at a time")
        results["events"] = {mode: event_latency(mode) for mode in ("embedded", "redis")}
    if "dashboards" in sections:
        say(f"Drain through Redis with {DASHBOARDS} dashboards vs none: {DASHBOARD_ROUNDS} rounds each")
        watched: dict[int, list[dict[str, Any]]] = {0: [], DASHBOARDS: []}
        for n in range(DASHBOARD_ROUNDS):
            for count in (0, DASHBOARDS):
                watched[count].append(drain_with_dashboards(n + 1, count))
        say(f"The same with the runner on CPU 0 and daphne and the clients on CPU {sorted(WEB_CPUS)}")
        split: dict[int, list[dict[str, Any]]] = {0: [], DASHBOARDS: []}
        for n in range(DASHBOARD_ROUNDS):
            for count in (0, DASHBOARDS):
                split[count].append(drain_with_dashboards(n + 1, count, split=True))
        results["dashboards"] = watched
        results["dashboards_split"] = split
    if "browser" in sections:
        say(f"Browser: Chromium watching two drains of {browser.BROWSER_DRAIN:,} tasks, runtasks --serve")
        results["browser"] = browser.browser_drains(sys.modules[__name__])
        say(f"The same with runtasks --serve on CPU 0 and the browser on CPU {sorted(WEB_CPUS)}")
        results["browser_split"] = browser.browser_drains(sys.modules[__name__], split=True)
    if "postgres" in sections:
        results["postgres"] = postgres_rows()
    return results


def drain_rows(rounds: list[tuple[float, float]]) -> list[tuple[str, str, str]]:
    rates = [rate for rate, _ in rounds]
    walls = [wall for _, wall in rounds]
    return [
        ("drain throughput (median of 3)", f"{statistics.median(rates):,.0f} tasks/s",
         "runs: " + ", ".join(f"{r:,.0f}" for r in rates)),
        ("drain wall time, 2,000 tasks (median)", f"{statistics.median(walls):.2f} s",
         "process start to exit, incl. Django start-up"),
    ]  # fmt: skip


def latency_rows(idle: dict[str, float]) -> list[tuple[str, str, str]]:
    return [
        ("pickup latency p50", f"{idle['p50']:.1f} ms", f"{LATENCY_TASKS} tasks, one at a time"),
        ("pickup latency p95", f"{idle['p95']:.1f} ms", ""),
        ("pickup latency max", f"{idle['max']:.1f} ms", ""),
        ("idle CPU", f"{idle['idle_cpu']:.3f} s / {IDLE_SECONDS:.0f} s", "utime+stime from /proc"),
        ("idle RSS", f"{idle['idle_rss']:.1f} MB", "VmRSS"),
    ]


def drift_rows(drift: dict[str, float]) -> list[tuple[str, str, str]]:
    return [
        ("loop drift |drift| p50 / p95 / max",
         f"{drift['p50']:.1f} / {drift['p95']:.1f} / {drift['max']:.1f} ms",
         f"runs 2..{DRIFT_RUNS} of one loop, interval {DRIFT_INTERVAL:g} s; start - (run 1's start + k s)"),
        (f"loop drift of run {DRIFT_RUNS} (accumulated)", f"{drift['last']:+.1f} ms", ""),
        ("loop mean interval between starts", f"{drift['interval']:.4f} s",
         f"start - scheduled_for: p50 {drift['late_p50']:.1f} ms, p95 {drift['late_p95']:.1f} ms"),
    ]  # fmt: skip


def memory_rows(memory: dict[str, Any]) -> list[tuple[str, str, str]]:
    points = " / ".join(f"{rss:.1f}" for rss in memory["at"].values())
    return [
        (f"RSS over {MEMORY_TASKS:,} tasks at 10% / 50% / 90% / end", f"{points} / {memory['end']:.1f} MB",
         f"VmRSS every {MEMORY_SAMPLE_EVERY:g} s ({memory['samples']} samples); peak "
         f"{memory['peak']:.1f} MB"),
        ("  RSS growth 10% -> 90%", f"{memory['growth']:+.1f} MB", ""),
        (f"drain of {MEMORY_TASKS:,} tasks", f"{memory['rate']:,.0f} tasks/s",
         f"over {memory['seconds']:.1f} s; process wall {memory['wall']:.1f} s"),
    ]  # fmt: skip


def event_rows(latency: dict[str, dict[str, list[float]]]) -> list[tuple[str, str, str]]:
    rows = []
    names = {"embedded": "embedded (--serve)", "redis": "through Redis"}
    for mode, samples in latency.items():
        for key, what, note in (
            ("claimed", "task.claimed", "dashboard receipt - event at; p50 / p95"),
            ("finished", "task.finished", ""),
            ("page", "commit -> running on page", "task.claimed receipt - next_run"),
        ):
            values = samples[key]
            value = f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} ms"
            rows.append((f"event latency, {names[mode]}, {what}", value, note))
    return rows


def dashboard_rows(watched: dict[int, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    idle_rate = statistics.median(r["rate"] for r in watched[0])
    busy_rate = statistics.median(r["rate"] for r in watched[DASHBOARDS])
    delivered = [min(r["delivered"]) for r in watched[DASHBOARDS]]
    web_cpu = {count: statistics.median(r["web_cpu"] for r in watched[count]) for count in watched}
    own_cpu = statistics.median(r["own_cpu"] for r in watched[DASHBOARDS])
    runner_cpu = {count: statistics.median(r["runner_cpu"] for r in watched[count]) for count in watched}
    return [
        ("drain through Redis, no dashboards (median)", f"{idle_rate:,.0f} tasks/s",
         "runs: " + ", ".join(f"{r['rate']:,.0f}" for r in watched[0])),
        (f"drain through Redis, {DASHBOARDS} dashboards (median)", f"{busy_rate:,.0f} tasks/s",
         "runs: " + ", ".join(f"{r['rate']:,.0f}" for r in watched[DASHBOARDS])),
        (f"  ratio {DASHBOARDS} dashboards / none", f"{busy_rate / idle_rate:.2f}", ""),
        (f"  task events per dashboard, {DASHBOARDS} dashboards", f"min {min(delivered):,}",
         f"of {4 * DRAIN_TASKS:,} published per round (fewest in each round: "
         + ", ".join(f"{d:,}" for d in delivered) + ")"),
        ("  runner CPU for the drain", f"{runner_cpu[DASHBOARDS]:.2f} s",
         f"median, start-up included; none: {runner_cpu[0]:.2f} s (what the dashboards cost the runner "
         "itself, apart from sharing the machine)"),
        ("  daphne CPU during the drain", f"{web_cpu[DASHBOARDS]:.2f} s",
         f"median; none: {web_cpu[0]:.2f} s; the {DASHBOARDS} clients: {own_cpu:.2f} s, "
         f"on {os.cpu_count()} CPUs shared by all"),
    ]  # fmt: skip


def split_dashboard_rows(split: dict[int, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    idle_rate = statistics.median(r["rate"] for r in split[0])
    busy_rate = statistics.median(r["rate"] for r in split[DASHBOARDS])
    return [
        (f"runner on CPU 0, daphne and clients on CPU {sorted(WEB_CPUS)}: none / {DASHBOARDS} dashboards",
         f"{idle_rate:,.0f} / {busy_rate:,.0f} tasks/s",
         f"medians; runs: {', '.join(f'{r["rate"]:,.0f}' for r in split[0])} / "
         f"{', '.join(f'{r["rate"]:,.0f}' for r in split[DASHBOARDS])}"),
        (f"  ratio {DASHBOARDS} dashboards / none, runner on a CPU of its own",
         f"{busy_rate / idle_rate:.2f}", "as runner and web nodes on separate machines"),
    ]  # fmt: skip


def main() -> None:
    began = time.monotonic()
    load_at_start = os.getloadavg()[0]
    try:
        sections = selected_sections()
        if {"events", "dashboards"} & set(sections):
            require_redis()
        say(f"Conductor bench: embedded default (SQLite file in {WORK_DIR}); measuring {', '.join(sections)}")
        results = measure(sections)
    finally:
        connection.close()
        shutil.rmtree(WORK_DIR, ignore_errors=True)

    builders = {
        "drain": drain_rows,
        "latency": latency_rows,
        "drift": drift_rows,
        "memory": memory_rows,
        "events": event_rows,
        "dashboards": dashboard_rows,
        "dashboards_split": split_dashboard_rows,
        "browser": browser.browser_rows,
        "browser_split": browser.split_browser_rows,
        "postgres": list,
    }
    rows = [row for name, build in builders.items() if name in results for row in build(results[name])]
    if rows:
        width = [max(len(row[i]) for row in rows) for i in range(3)]
        line = "-" * (sum(width) + 6)
        say("\n" + line)
        for name, value, note in rows:
            say(f"{name:<{width[0]}}  {value:>{width[1]}}  {note}")
        say(line)
    if "peers" in sections:
        # The peers' table has a Conductor row when its drain and pickup figures were measured.
        conductor = None
        if "drain" in results and "latency" in results:
            conductor = {
                "drain": statistics.median(rate for rate, _ in results["drain"]),
                **results["latency"],
            }
        peers.compare(conductor)
    # Every number above is shared-CPU time: other work on the machine shows up in all of them.
    say(
        f"bench took {time.monotonic() - began:.0f} s on {os.cpu_count()} CPUs; load average (1 min) "
        f"{load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
