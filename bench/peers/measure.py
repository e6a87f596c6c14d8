"""One peer's measurements, run with .bench-venv's python by bench/peers/run.py:

    python -m bench.peers.measure {tasks_db,q2,huey} --dir DIR --out FILE.json

Mirrors bench/run.py's Conductor measurements (same counts, gaps and polling interval):

- drain: 2,000 no-op tasks enqueued through the peer's own API into a fresh database, then the peer's worker
  is started; tasks/s = 2,000 / (last task's end - first task's start), on the peer's own record of when its
  tasks ran (see each peer below), as bench/run.py does with Conductor's runs. Median of 3 fresh databases.
  Wall: worker start to the worker's exit (db_worker --batch) or to the last task's end being recorded.
- pickup: one warm-up stamp task (the peers import task modules on first use; Conductor at start-up), then
  100 stamp tasks enqueued one at a time into the idle worker, each awaited (its result polled every 5 ms)
  before a 50 ms gap; latency = the time at the function's first line - time.time() just before enqueueing.
- idle: the worker's process tree (qcluster's children too) over 20 s with nothing to do, 1 s after the
  last stamp task: utime+stime summed over the processes alive at both ends, and VmRSS (and PSS) summed.
"""

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import fail, percentile, say, wait_for  # noqa: E402
from bench.peers import proc, span  # noqa: E402

DRAIN_TASKS = 2000
DRAIN_ROUNDS = 3
LATENCY_TASKS = 100
LATENCY_GAP = 0.05
IDLE_SECONDS = 20.0
RESULT_POLL = 0.005  # bench/common.wait_for's default, as bench/run.py waits for Conductor's runs
DRAIN_TIMEOUT = 300.0


class Peer:
    """What the measurements need from a peer; one subclass each, set up for one database file."""

    label = ""
    package = ""
    batch = False  # True: the drain's worker exits by itself once the queue is empty

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def fresh(self) -> None:
        raise NotImplementedError

    def enqueue_noops(self, count: int) -> None:
        raise NotImplementedError

    def worker_args(self, drain: bool) -> list[str]:
        raise NotImplementedError

    def drain_span(self, span_file: Path) -> tuple[float, float] | None:
        """(first start, last end) once every no-op task is done, else None."""
        return span.read(span_file)

    def enqueue_stamp(self) -> Any:
        raise NotImplementedError

    def stamp_result(self, handle: Any) -> float | None:
        raise NotImplementedError

    def release(self) -> None:
        """Close this process's database connection (it stays out of the idle measurement)."""

    def unlink_db(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)


class DjangoPeer(Peer):
    def fresh(self) -> None:
        from django.core.management import call_command

        self.release()
        self.unlink_db()
        call_command("migrate", interactive=False, verbosity=0)

    def release(self) -> None:
        from django.db import connection

        connection.close()


class TasksDb(DjangoPeer):
    """django-tasks-db's ``db_worker`` (one process, one task at a time, default --interval 1 s).

    Drain: ``db_worker --batch`` (it exits once nothing is ready: Conductor's ``--once``); the span is
    Min(started_at) to Max(finished_at) of its result rows, as Conductor's TaskRun rows.
    """

    label = "django-tasks-db"
    package = "django-tasks-db"
    batch = True

    def enqueue_noops(self, count: int) -> None:
        from django.db import transaction

        from bench.peers.tasks_db_app import noop

        with transaction.atomic():
            for _ in range(count):
                noop.enqueue()

    def worker_args(self, drain: bool) -> list[str]:
        return ["-m", "django", "db_worker", *(["--batch"] if drain else [])]

    def drain_span(self, span_file: Path) -> tuple[float, float] | None:
        from django.db.models import Max, Min
        from django_tasks_db.models import DBTaskResult

        done = DBTaskResult.objects.successful()
        if done.count() != DRAIN_TASKS:
            return None
        times = done.aggregate(first=Min("started_at"), last=Max("finished_at"))
        return times["first"].timestamp(), times["last"].timestamp()

    def enqueue_stamp(self) -> Any:
        from bench.peers.tasks_db_app import stamp

        return stamp.enqueue()

    def stamp_result(self, handle: Any) -> float | None:
        from django.tasks import TaskResultStatus

        handle.refresh()
        return handle.return_value if handle.status == TaskResultStatus.SUCCESSFUL else None


class Q2(DjangoPeer):
    """django-q2's ``qcluster`` with the ORM broker and one worker (default poll 0.2 s).

    Its Success rows are pruned to the last 250 (save_limit), so the span comes from its signals
    (bench/peers/q2_app.py): pre_execute in the worker to the 2,000th post_execute in the monitor.
    """

    label = "django-q2"
    package = "django-q2"

    def enqueue_noops(self, count: int) -> None:
        from django.db import transaction
        from django_q.tasks import async_task

        with transaction.atomic():
            for _ in range(count):
                async_task("bench.peers.q2_app.noop")

    def worker_args(self, drain: bool) -> list[str]:
        return ["-m", "django", "qcluster"]

    def enqueue_stamp(self) -> Any:
        from django_q.tasks import async_task

        return async_task("bench.peers.q2_app.stamp")

    def stamp_result(self, handle: Any) -> float | None:
        from django_q.tasks import result

        return result(handle)


class Huey(Peer):
    """huey's ``huey_consumer -w 1`` (one worker thread; default polling: 0.1 s, backing off to 10 s idle).

    The span comes from huey's signals (bench/peers/huey_app.py): SIGNAL_EXECUTING to the 2,000th
    SIGNAL_COMPLETE. No Django: SqliteHuey keeps its own defaults (WAL).
    """

    label = "huey"
    package = "huey"

    def fresh(self) -> None:
        from bench.peers.huey_app import huey

        self.release()
        self.unlink_db()
        huey.storage.initialize_schema()

    def release(self) -> None:
        from bench.peers.huey_app import huey

        huey.storage.close()

    def enqueue_noops(self, count: int) -> None:
        from bench.peers.huey_app import noop

        for _ in range(count):
            noop()

    def worker_args(self, drain: bool) -> list[str]:
        return [str(Path(sys.executable).parent / "huey_consumer"), "bench.peers.huey_app.huey", "-w", "1"]

    def enqueue_stamp(self) -> Any:
        from bench.peers.huey_app import stamp

        return stamp()

    def stamp_result(self, handle: Any) -> float | None:
        return handle.get()


PEERS: dict[str, type[Peer]] = {"tasks_db": TasksDb, "q2": Q2, "huey": Huey}


# Worker processes ---------------------------------------------------------------------------------


class Worker:
    """The peer's worker as a subprocess of this one, its output in a log file."""

    def __init__(self, peer: Peer, work_dir: Path, name: str, drain: bool, env: dict[str, str]) -> None:
        self.log_path = work_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, *peer.worker_args(drain)],
                cwd=work_dir,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()

    def check(self) -> None:
        if self.process.poll() is not None:
            fail(f"{self.process.args[1]} exited with {self.process.returncode}", self.log_path)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float) -> Any:
        def alive_and(predicate: Callable[[], Any] = predicate) -> Any:
            self.check()
            return predicate()

        return wait_for(alive_and, timeout, what, log_path=self.log_path, interval=interval)

    def stop(self) -> None:
        """SIGTERM (every peer shuts down on it, some with a non-zero code), then kill what is left."""
        # The children only: the worker itself is reaped by wait(), and its pid may be reused after that.
        children = proc.tree(self.process.pid)[1:] if self.process.poll() is None else []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        proc.kill_leftovers(children)


# Measurements -------------------------------------------------------------------------------------


def drain_once(peer: Peer, work_dir: Path, round_no: int) -> dict[str, float]:
    peer.fresh()
    peer.enqueue_noops(DRAIN_TASKS)
    peer.release()
    span_file = work_dir / f"span-{round_no}"
    env = {"BENCH_SPAN_FILE": str(span_file), "BENCH_SPAN_COUNT": str(DRAIN_TASKS)}
    worker = Worker(peer, work_dir, f"drain-{round_no}", drain=True, env=env)
    try:
        if peer.batch:
            if (code := worker.process.wait(DRAIN_TIMEOUT)) != 0:
                fail(f"the drain's worker exited with {code}", worker.log_path)
        else:
            # A 50 ms poll of two files: the wall time's resolution, and no load on the database.
            worker.wait_for(lambda: peer.drain_span(span_file), DRAIN_TIMEOUT, "the drain", 0.05)
        wall = time.monotonic() - worker.started
    finally:
        worker.stop()
    times = peer.drain_span(span_file)
    if times is None:
        fail(f"not all {DRAIN_TASKS} no-op tasks finished", worker.log_path)
    first, last = times
    seconds = last - first
    rate = DRAIN_TASKS / seconds
    say(f"  {peer.label} drain round {round_no}: {rate:,.0f} tasks/s over {seconds:.2f} s; wall {wall:.2f} s")
    return {"rate": rate, "wall": wall}


def pickup_and_idle(peer: Peer, work_dir: Path) -> dict[str, float]:
    peer.fresh()
    worker = Worker(peer, work_dir, "pickup", drain=False, env={})
    try:
        wait_stamp(worker, peer, peer.enqueue_stamp(), 60, "the warm-up stamp task")
        latencies = []
        for i in range(LATENCY_TASKS):
            enqueued = time.time()
            handle = peer.enqueue_stamp()
            latencies.append(wait_stamp(worker, peer, handle, 30, f"stamp task {i}") - enqueued)
            time.sleep(LATENCY_GAP)
        latencies_ms = sorted(1000 * x for x in latencies)
        peer.release()
        time.sleep(1.0)  # let the last task's bookkeeping settle before measuring idle
        idle = proc.idle_cost(worker.process.pid, IDLE_SECONDS)
        worker.check()
    finally:
        worker.stop()
    result = {"p50": percentile(latencies_ms, 50), "p95": percentile(latencies_ms, 95)}
    result["max"] = latencies_ms[-1]
    say(
        f"  {peer.label} pickup: p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms, max "
        f"{result['max']:.1f} ms; idle: {idle['idle_cpu']:.3f} s CPU per {IDLE_SECONDS:.0f} s, RSS "
        f"{idle['idle_rss']:.1f} MB (PSS {idle['idle_pss']:.1f} MB) in {idle['processes']} process(es)"
    )
    return {**result, **idle}


def wait_stamp(worker: Worker, peer: Peer, handle: Any, timeout: float, what: str) -> float:
    return worker.wait_for(lambda: peer.stamp_result(handle), timeout, what, RESULT_POLL)


def measure(name: str, work_dir: Path) -> dict[str, Any]:
    peer = PEERS[name](work_dir / f"{name}.sqlite3")
    on_django = f" on Django {version('django')}" if isinstance(peer, DjangoPeer) else ""
    say(f"{peer.label} {version(peer.package)}{on_django}, in {work_dir}")
    drains = [drain_once(peer, work_dir, n + 1) for n in range(DRAIN_ROUNDS)]
    idle = pickup_and_idle(peer, work_dir)
    peer.release()
    return {
        "label": peer.label,
        "version": version(peer.package),
        "drain": statistics.median(d["rate"] for d in drains),
        "drain_runs": [d["rate"] for d in drains],
        "drain_wall": statistics.median(d["wall"] for d in drains),
        **idle,
    }


def configure(name: str, work_dir: Path) -> None:
    """Environment for this process and the workers it starts (before any peer module is imported)."""
    os.environ.update(
        {
            "BENCH_PEER": name,
            "BENCH_PEER_DB": str(work_dir / f"{name}.sqlite3"),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if name != "huey":
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.peers.settings"
        import django

        # django-q2's own defaults (retry 60 s, no timeout) draw a UserWarning on every start-up.
        warnings.filterwarnings("ignore", message="Retry and timeout are misconfigured", category=UserWarning)
        django.setup()
        # django-q2 logs each enqueued task at INFO: the workers log to files, but this process to the bench.
        logging.getLogger("django-q").setLevel(logging.WARNING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--dir", type=Path, required=True, help="an empty directory of this peer's own")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    configure(args.peer, args.dir)
    args.out.write_text(json.dumps(measure(args.peer, args.dir)))


if __name__ == "__main__":
    main()
