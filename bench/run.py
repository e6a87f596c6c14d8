"""``make bench``: measure the embedded default (SQLite file, one ``runtasks`` process).

Runs ``manage.py migrate`` and ``manage.py runtasks`` as subprocesses on a fresh SQLite file in a temporary
directory, and uses the ORM from this process on the same file to insert tasks and read results.

- drain throughput: 2,000 no-op tasks due now, ``runtasks --once --threads 8``; median of 3 fresh databases.
- pickup latency: 100 ``stamp`` tasks inserted one at a time into an idle ``runtasks --threads 8``;
  latency = the time at the function's first line - next_run.
- idle cost: the same runner's CPU time over 20 s with nothing to do, and its resident memory.

These are measurements, not tests: nothing here passes or fails on a number.
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DRAIN_TASKS = 2000
DRAIN_ROUNDS = 3
LATENCY_TASKS = 100
LATENCY_GAP = 0.05
IDLE_SECONDS = 20.0
THREADS = 8

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

from django.db import connection  # noqa: E402
from django.db.models import Max, Min  # noqa: E402
from django.utils import timezone  # noqa: E402

from app.runnerprocess import RunnerProcess  # noqa: E402
from app.status import RunnerState, RunStatus, TaskStatus  # noqa: E402
from app.task import Task  # noqa: E402
from app.taskrun import TaskRun  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(text, flush=True)


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


def fail(message: str, log_path: Path | None = None) -> None:
    tail = "\n".join(log_path.read_text().splitlines()[-30:]) if log_path else ""
    raise SystemExit(f"bench failed: {message}\n{tail}")


def wait_for(predicate, timeout: float, what: str, process=None, log_path=None, interval=0.005):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if process is not None and process.poll() is not None:
            fail(f"runtasks exited with {process.returncode} while waiting for {what}", log_path)
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout} s waiting for {what}", log_path)
        time.sleep(interval)
    return value


# Drain throughput ---------------------------------------------------------------------------------


def drain_once(round_no: int) -> tuple[float, float]:
    """(tasks/s measured on the runs' own timestamps, wall seconds of the runtasks process)."""
    fresh_database()
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(name=f"noop-{i}", task_id=uuid.uuid4().hex, func="bench.functions.noop", next_run=now)
            for i in range(DRAIN_TASKS)
        ],
        batch_size=500,
    )
    started = time.monotonic()
    process, log_path = start_runtasks(f"drain-{round_no}", "--once", "--threads", str(THREADS))
    code = process.wait(120)
    wall = time.monotonic() - started
    if code != 0:
        fail(f"runtasks --once exited with {code}", log_path)
    finished = TaskRun.objects.filter(status=RunStatus.FINISHED, finished_at__isnull=False)
    count = finished.count()
    if count != DRAIN_TASKS or Task.objects.exclude(status=TaskStatus.FINISHED).exists():
        fail(f"{count} of {DRAIN_TASKS} runs finished", log_path)
    span = finished.aggregate(first=Min("started_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    rate = DRAIN_TASKS / seconds
    say(f"  drain round {round_no}: {rate:,.0f} tasks/s over {seconds:.2f} s; process wall {wall:.2f} s")
    return rate, wall


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


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def main() -> None:
    began = time.monotonic()
    say(f"Conductor bench: embedded default (SQLite file in {WORK_DIR})")
    try:
        say(f"Drain: {DRAIN_TASKS} no-op tasks, runtasks --once --threads {THREADS}, {DRAIN_ROUNDS} rounds")
        rounds = [drain_once(n + 1) for n in range(DRAIN_ROUNDS)]
        say(f"Pickup latency and idle cost: runtasks --threads {THREADS} (default poll)")
        idle = latency_and_idle()
    finally:
        connection.close()
        shutil.rmtree(WORK_DIR, ignore_errors=True)

    rates = [rate for rate, _ in rounds]
    walls = [wall for _, wall in rounds]
    rows = [
        ("drain throughput (median of 3)", f"{statistics.median(rates):,.0f} tasks/s",
         "runs: " + ", ".join(f"{r:,.0f}" for r in rates)),
        ("drain wall time, 2,000 tasks (median)", f"{statistics.median(walls):.2f} s",
         "process start to exit, incl. Django start-up"),
        ("pickup latency p50", f"{idle['p50']:.1f} ms", f"{LATENCY_TASKS} tasks, one at a time"),
        ("pickup latency p95", f"{idle['p95']:.1f} ms", ""),
        ("pickup latency max", f"{idle['max']:.1f} ms", ""),
        ("idle CPU", f"{idle['idle_cpu']:.3f} s / {IDLE_SECONDS:.0f} s", "utime+stime from /proc"),
        ("idle RSS", f"{idle['idle_rss']:.1f} MB", "VmRSS"),
    ]  # fmt: skip
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    line = "-" * (sum(width) + 6)
    say("\n" + line)
    for name, value, note in rows:
        say(f"{name:<{width[0]}}  {value:>{width[1]}}  {note}")
    say(line)
    say(f"bench took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
