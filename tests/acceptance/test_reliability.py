"""Reliability when scaled out: many ``runtasks`` processes on one database, SIGKILLed, SIGSTOPped, restarted.

The same tests run on SQLite and on PostgreSQL (whichever database the suite runs on). Runners are real
subprocesses (tests/acceptance/conftest.py); the test process creates tasks with the ORM and judges what
the runners recorded: TaskRun rows are the proof that a task ran once, that a run lost to a kill was
recorded ``interrupted`` and done again, that ``db_use`` runs never overlapped and that no period of a
looping task ran twice.

Kill moments are random: each test draws them from a ``random.Random`` whose seed it prints (rerun with
``RELIABILITY_SEED=<seed>``). They are still not fully reproducible, as they are counted in finished runs
and the runners' timing is the machine's; the seed fixes which runner is killed, when (in runs) and how
it comes back (same worker id or a new one).
"""

import itertools
import os
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from app.lease import DB_USE, Lease
from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.acceptance.conftest import RuntasksProcess, sqlite_write_lock_free
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.django_db(transaction=True),
    # One xdist worker runs them one after another: each keeps a 2-core machine busy on its own.
    pytest.mark.xdist_group("reliability"),
]

#: Short heartbeats so that a killed runner is presumed dead, and its work recovered, within seconds.
SHORT_HEARTBEATS = {"CONDUCTOR_HEARTBEAT": "0.3", "CONDUCTOR_HEARTBEAT_TIMEOUT": "1.5"}
RUNNER_ARGS = ("--threads", "4", "--poll", "0.2")
#: How long runners may take to start (Django set-up, checks) on a loaded 2-core machine.
STARTUP = 45.0


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded random generator; the seed is printed (shown on failure) and kept in the report."""
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random seed {seed} (rerun with RELIABILITY_SEED={seed})")
    request.node.user_properties.append(("seed", seed))
    return random.Random(seed)


def one_off_tasks(
    count: int, func: str = "tests.functions.add", args: Callable[[int], dict] | None = None, **fields: Any
) -> list[Task]:
    """``count`` tasks due now, inserted with bulk_create (which skips Task.save)."""
    now = timezone.now()
    return Task.objects.bulk_create(
        [
            Task(
                name=f"task-{i}",
                task_id=uuid.uuid4().hex,
                func=func,
                args_in=args(i) if args else {"a": i, "b": 1},
                next_run=now,
                **fields,
            )
            for i in range(count)
        ]
    )


def finished_runs() -> int:
    return TaskRun.objects.filter(status=RunStatus.FINISHED).count()


def all_tasks_finished() -> bool:
    return not Task.objects.exclude(status=TaskStatus.FINISHED).exists()


def assert_nothing_running() -> None:
    running_tasks = list(Task.objects.running().values_list("name", flat=True))
    open_runs = list(TaskRun.objects.running().values_list("id", "status"))
    live_runners = list(RunnerProcess.objects.live().values_list("worker_id", "state"))
    assert running_tasks == [], f"tasks left running: {running_tasks}"
    assert open_runs == [], f"runs left open: {open_runs}"
    assert live_runners == [], f"runners left live: {live_runners}"


def assert_each_task_finished_exactly_once() -> dict[str, int]:
    """Every task finished, by exactly one finished run; every other run interrupted (and redone).

    Returns the count of runs by status.
    """
    tasks = {
        pk: (status, attempts)
        for pk, status, attempts in Task.objects.values_list("id", "status", "attempts")
    }
    runs = list(TaskRun.objects.values("id", "task_id", "status", "finished_at"))
    unfinished = {pk: status for pk, (status, _) in tasks.items() if status != TaskStatus.FINISHED}
    assert not unfinished, f"{len(unfinished)} tasks not finished, e.g. {list(unfinished.items())[:10]}"
    finished = Counter(run["task_id"] for run in runs if run["status"] == RunStatus.FINISHED)
    twice = {pk: n for pk, n in finished.items() if n > 1}
    assert not twice, f"{len(twice)} tasks have more than one finished run: {list(twice.items())[:10]}"
    never = set(tasks) - set(finished)
    assert not never, f"{len(never)} tasks finished without a finished run (lost): {sorted(never)[:10]}"
    by_status = Counter(run["status"] for run in runs)
    assert set(by_status) <= {RunStatus.FINISHED, RunStatus.INTERRUPTED}, by_status
    assert by_status[RunStatus.INTERRUPTED] == len(runs) - len(tasks), (
        f"{len(runs)} runs of {len(tasks)} tasks, but {by_status[RunStatus.INTERRUPTED]} interrupted"
    )
    open_runs = [run["id"] for run in runs if run["finished_at"] is None]
    assert not open_runs, f"runs never closed: {open_runs[:10]}"
    # Each claim bumps attempts and opens one run in the same transaction: no claim without its run.
    runs_per_task = Counter(run["task_id"] for run in runs)
    wrong = {
        pk: (attempts, runs_per_task[pk])
        for pk, (_, attempts) in tasks.items()
        if attempts != runs_per_task[pk]
    }
    assert not wrong, (
        f"tasks whose attempts differ from their runs (attempts, runs): {list(wrong.items())[:10]}"
    )
    return dict(by_status)


def assert_no_overlap(intervals: list[tuple[Any, Any, Any]], what: str) -> None:
    """``intervals`` are (start, end, label); sorted by start, none may begin before the last one ended."""
    ordered = sorted(intervals, key=lambda interval: interval[0])
    overlaps = [(before, after) for before, after in itertools.pairwise(ordered) if after[0] < before[1]]
    assert not overlaps, f"{len(overlaps)} overlapping {what}, e.g. {overlaps[:3]}"


def runner_state(worker_id: str) -> str | None:
    return RunnerProcess.objects.filter(worker_id=worker_id).values_list("state", flat=True).first()


class Fleet:
    """Runners in numbered slots; a slot's runner can be SIGKILLed and replaced by a new process.

    A replacement keeps the worker id (it then recovers its predecessor's runs at once, as it signs in)
    or takes a new one (the others then recover the old id's runs once its heartbeat is too old).
    """

    def __init__(
        self, start_runtasks: Callable[..., RuntasksProcess], size: int, env: dict[str, str]
    ) -> None:
        self._start = start_runtasks
        self.env = env
        self.started: list[RuntasksProcess] = []
        self.slots = [self._launch(f"r{n}") for n in range(size)]
        self.kills: list[str] = []
        self.replaced: list[str] = []  # worker ids killed and not reused: others must declare them dead

    def _launch(self, worker_id: str) -> RuntasksProcess:
        process = self._start(*RUNNER_ARGS, "--worker-id", worker_id, env=self.env)
        self.started.append(process)
        return process

    def presumed_dead_while_alive(self) -> int:
        """How often a live runner found that others had presumed it dead (a slow heartbeat, not a kill)."""
        return sum(process.log().count("was presumed dead by others") for process in self.started)

    def alive(self) -> bool:
        return all(process.check_alive() for process in self.slots)

    def up(self) -> bool:
        return all(process.is_up() for process in self.slots)

    def slot_of(self, worker_id: str) -> int | None:
        return next((n for n, p in enumerate(self.slots) if p.worker_id == worker_id), None)

    def kill_and_restart(self, slot: int, same_worker_id: bool) -> str:
        old = self.slots[slot]
        busy = TaskRun.objects.running().filter(runner__worker_id=old.worker_id).count()
        old.kill()
        assert old.wait(10) == -signal.SIGKILL
        worker_id = old.worker_id if same_worker_id else f"r{slot}-{len(self.kills) + 1}"
        if not same_worker_id:
            self.replaced.append(old.worker_id)
        self.slots[slot] = self._launch(worker_id)
        note = f"kill {len(self.kills) + 1}: {old.worker_id} (pid {old.pid}, {busy} open runs) -> {worker_id}"
        self.kills.append(note)
        print(note)
        return note

    def kill_at_random(
        self,
        rng: random.Random,
        kills: int,
        progress: Callable[[], int],
        every: tuple[int, int],
        done: Callable[[], bool],
        victim: Callable[[], int | None] = lambda: None,
        timeout: float = 60.0,
    ) -> None:
        """Up to ``kills`` times: wait for ``every`` (a random count in that range) more progress, then
        SIGKILL one runner (``victim()``'s slot, else a random one) and start its replacement."""
        for _ in range(kills):
            target = progress() + rng.randint(*every)
            wait_until(lambda: self.alive() and (progress() >= target or done()), timeout, interval=0.02)  # noqa: B023
            if done():
                return
            slot = victim()
            self.kill_and_restart(
                rng.randrange(len(self.slots)) if slot is None else slot, rng.random() < 0.5
            )

    def wait_replaced_declared_dead(self, timeout: float = 30.0) -> None:
        """Every killed worker id that was not reused is found dead by a live runner (None: it was
        killed while starting, before it signed in)."""
        wait_until(
            lambda: self.alive() and all(runner_state(w) in (RunnerState.DEAD, None) for w in self.replaced),
            timeout,
        )

    def stop(self) -> dict[str, int]:
        """SIGTERM each runner once all are up (a replacement still starting has no handler yet)."""
        wait_until(self.up, STARTUP)
        for process in self.slots:
            process.terminate()
        return {process.worker_id: process.wait(30) for process in self.slots}


# 1. Six runners, 2,000 tasks, no faults: every task runs exactly once ----------------------------------


def test_six_runners_run_each_of_2000_tasks_exactly_once(start_runtasks):
    # Default heartbeats (2 s / 15 s): nothing is killed here, so no run may be interrupted either.
    runners = [start_runtasks(*RUNNER_ARGS, "--worker-id", f"r{n}") for n in range(6)]
    wait_until(lambda: all(runner.is_up() for runner in runners), STARTUP)

    started = time.monotonic()
    tasks = one_off_tasks(2000)  # all due at once: the six runners compete for every one
    wait_until(lambda: all(r.check_alive() for r in runners) and all_tasks_finished(), 90, interval=0.1)
    print(f"2000 tasks on 6 runners in {time.monotonic() - started:.1f} s")

    for runner in runners:
        runner.terminate()
    assert {runner.worker_id: runner.wait(30) for runner in runners} == {f"r{n}": 0 for n in range(6)}

    assert assert_each_task_finished_exactly_once() == {RunStatus.FINISHED: 2000}
    expected = {task.pk: i + 1 for i, task in enumerate(tasks)}
    outputs = dict(TaskRun.objects.values_list("task_id", "output"))
    assert outputs == expected, "a run's result is not its own task's"
    assert dict(Task.objects.values_list("id", "output")) == expected
    per_runner = Counter(TaskRun.objects.values_list("runner__worker_id", flat=True))
    print(f"runs per runner: {dict(sorted(per_runner.items()))}")
    # The work is shared, but not evenly: SQLite's busy handler is not fair, and a runner that loses the
    # write lock a few times sleeps longer between tries, so in a fast drain one may win no claim at all.
    assert len(per_runner) >= 4, f"the runners did not share the work: {per_runner}"
    assert set(per_runner) <= {f"r{n}" for n in range(6)}
    for runner in runners:
        assert "Traceback" not in runner.log(), runner.log_tail()
    assert set(RunnerProcess.objects.values_list("worker_id", "state")) == {
        (f"r{n}", RunnerState.STOPPED) for n in range(6)
    }
    assert_nothing_running()


# 2. The same with runners SIGKILLed at random moments and restarted -----------------------------------


def test_runners_sigkilled_at_random_lose_no_task_and_run_none_twice(start_runtasks, rng):
    count = 2000
    fleet = Fleet(start_runtasks, 6, SHORT_HEARTBEATS)
    wait_until(fleet.up, STARTUP)

    started = time.monotonic()
    # c_sleep keeps each run in flight for a while, so that each kill catches runs in their threads.
    one_off_tasks(count, func="tests.functions.c_sleep", args=lambda i: {"seconds": 0.03})
    fleet.kill_at_random(rng, kills=12, progress=finished_runs, every=(60, 200), done=all_tasks_finished)
    wait_until(lambda: fleet.alive() and all_tasks_finished(), 90, interval=0.1)
    fleet.wait_replaced_declared_dead()
    elapsed = time.monotonic() - started
    codes = fleet.stop()
    assert set(codes.values()) == {0}, codes

    by_status = assert_each_task_finished_exactly_once()
    print(
        f"{count} tasks, {len(fleet.kills)} kills, runs {by_status}, {elapsed:.1f} s; live runners "
        f"presumed dead: {fleet.presumed_dead_while_alive()}"
    )
    assert len(fleet.kills) >= 5, f"the tasks were done before the runners were killed: {fleet.kills}"
    assert by_status.get(RunStatus.INTERRUPTED, 0) > 0, "no kill caught a run in flight"
    finished = TaskRun.objects.filter(status=RunStatus.FINISHED)
    assert set(finished.values_list("output", flat=True)) == {"slept"}
    # Each interrupted run says which recovery closed it: its runner's restart, or a lost heartbeat.
    for error in TaskRun.objects.filter(status=RunStatus.INTERRUPTED).values_list("error", flat=True):
        assert "restarted before this run ended" in error or "lost its heartbeat" in error, error
    assert_nothing_running()


# 3. A runner paused past its heartbeat timeout comes back while its successor still runs the task ---


def test_paused_runner_resuming_mid_takeover_neither_overwrites_the_task_nor_frees_the_lease(
    start_runtasks, marker_dir
):
    """Beyond test_runtasks' SIGSTOP test (the successor had finished before the paused runner resumed):
    here the late result arrives while the successor's run of the same db_use task is still in flight.
    It must be refused without touching the task (still running, on the successor) or the db_use lease
    (still the successor's: a second db_use task must not start), and the successor's result stands."""
    first_release, second_release = marker_dir / "first", marker_dir / "second"
    runner_a = start_runtasks(*RUNNER_ARGS, "--worker-id", "a", env=SHORT_HEARTBEATS)
    wait_until(runner_a.is_up, STARTUP)
    task = Task.objects.create(
        name="held",
        func="tests.functions.wait_for_file",
        args_in={"path": str(first_release), "timeout": 60},
        db_use=True,
    )
    wait_until(lambda: runner_a.check_alive() and TaskRun.objects.filter(task=task).exists(), 10)
    first_run = TaskRun.objects.get(task=task)

    for _ in range(20):  # never freeze it inside a write: that would stall every other runner
        runner_a.send(signal.SIGSTOP)
        if sqlite_write_lock_free():
            break
        runner_a.send(signal.SIGCONT)
    else:
        pytest.fail("runner a always held the write lock when stopped")
    try:
        # a's run keeps the arguments it was claimed with; the next run (b's) waits for another file.
        Task.objects.filter(pk=task.pk).update(args_in={"path": str(second_release), "timeout": 60})
        runner_b = start_runtasks(*RUNNER_ARGS, "--worker-id", "b", env=SHORT_HEARTBEATS)
        second = TaskRun.objects.filter(task=task, runner__worker_id="b")
        wait_until(lambda: runner_b.check_alive() and second.exists(), STARTUP)
        second_run = second.get()
        # A second db_use task, due now: it may only start once b's run gives the lease back.
        other = Task.objects.create(
            name="next", func="tests.functions.hold", args_in={"seconds": 0.1}, db_use=True
        )
    finally:
        runner_a.send(signal.SIGCONT)

    first_release.touch()  # a's run ends now, while b's goes on
    wait_until(lambda: runner_a.check_alive() and "its result was refused" in runner_a.log(), 15)
    # Let both runners go through a heartbeat, and the claim that follows it, after the refusal.
    seen = timezone.now()
    for worker_id in ("a", "b"):
        beats = RunnerProcess.objects.filter(worker_id=worker_id, state=RunnerState.RUNNING)
        first_beat = wait_until(lambda: beats.filter(heartbeat_at__gt=seen).first(), 10)  # noqa: B023
        wait_until(lambda: beats.filter(heartbeat_at__gt=first_beat.heartbeat_at).exists(), 10)  # noqa: B023
    second_run.refresh_from_db()
    assert second_run.finished_at is None
    task.refresh_from_db()
    assert (task.status, task.runner.worker_id, task.fence) == (TaskStatus.RUNNING, "b", second_run.fence)
    assert task.output is None  # a's result was not written to the task
    lease = Lease.objects.get(name=DB_USE)
    assert (lease.task_id, lease.runner.worker_id) == (task.pk, "b"), "the late writer freed b's lease"
    assert not TaskRun.objects.filter(task=other).exists(), "a second db_use task started during b's run"
    first_run.refresh_from_db()
    assert (first_run.status, first_run.output) == (RunStatus.INTERRUPTED, None)
    assert "runner a " in first_run.error, first_run.error
    assert "recovered by b" in first_run.error, first_run.error
    assert "presumed dead by others" in runner_a.log(), runner_a.log_tail()

    second_release.touch()
    wait_until(lambda: all_tasks_finished() and runner_a.check_alive() and runner_b.check_alive(), 15)
    second_run.refresh_from_db()
    assert (second_run.status, second_run.output) == (RunStatus.FINISHED, "released")
    task.refresh_from_db()
    assert (task.attempts, task.last_run, task.output) == (2, second_run.started_at, "released")
    other_run = TaskRun.objects.get(task=other)
    assert other_run.started_at >= second_run.finished_at
    assert other_run.status == RunStatus.FINISHED

    runner_a.terminate()
    runner_b.terminate()
    assert (runner_a.wait(20), runner_b.wait(20)) == (0, 0)
    assert TaskRun.objects.filter(task=task).count() == 2
    assert Lease.objects.get(name=DB_USE).task_id is None
    assert_nothing_running()


# 4. db_use tasks from all runners, with random kills: never two at once ---------------------------------


def test_db_use_runs_never_overlap_across_runners_killed_at_random(start_runtasks, rng):
    fleet = Fleet(start_runtasks, 4, SHORT_HEARTBEATS)
    wait_until(fleet.up, STARTUP)
    db_tasks = one_off_tasks(60, func="tests.functions.hold", args=lambda i: {"seconds": 0.05}, db_use=True)
    # Ordinary tasks alongside, so that claims mix db_use and other candidates.
    one_off_tasks(200, func="tests.functions.c_sleep", args=lambda i: {"seconds": 0.02})
    db_runs = TaskRun.objects.filter(task__db_use=True)

    def lease_holder() -> int | None:
        """Mostly the runner holding the db_use lease: that is where a kill hurts."""
        holder = Lease.objects.filter(name=DB_USE).values_list("runner__worker_id", flat=True).first()
        return fleet.slot_of(holder) if holder and rng.random() < 0.75 else None

    fleet.kill_at_random(
        rng,
        kills=6,
        progress=lambda: db_runs.filter(status=RunStatus.FINISHED).count(),
        every=(3, 10),
        done=all_tasks_finished,
        victim=lease_holder,
    )
    wait_until(lambda: fleet.alive() and all_tasks_finished(), 90, interval=0.1)
    fleet.wait_replaced_declared_dead()
    assert set(fleet.stop().values()) == {0}

    by_status = assert_each_task_finished_exactly_once()
    runs = list(db_runs.values("id", "status", "started_at", "finished_at", "output", "runner__worker_id"))
    interrupted = [run for run in runs if run["status"] == RunStatus.INTERRUPTED]
    print(
        f"{len(fleet.kills)} kills; runs {by_status}; db_use runs {len(runs)}, "
        f"interrupted {len(interrupted)}; live runners presumed dead: {fleet.presumed_dead_while_alive()}"
    )
    assert len(fleet.kills) >= 3, fleet.kills
    assert len({run["runner__worker_id"] for run in runs}) >= 3, "db_use tasks did not run on many runners"
    # As recorded by the runners: every db_use run, interrupted ones too (open from claim to recovery).
    assert_no_overlap([(r["started_at"], r["finished_at"], r["id"]) for r in runs], "db_use runs")
    # As the function saw it: the start and end that hold() measured itself, in every finished run.
    held = [
        (r["output"]["start"], r["output"]["end"], r["id"]) for r in runs if r["status"] == RunStatus.FINISHED
    ]
    assert len(held) == len(db_tasks)
    assert_no_overlap(held, "hold() calls")
    assert Lease.objects.get(name=DB_USE).task_id is None
    assert_nothing_running()


# 5. Looping tasks across runner restarts: no period runs twice -----------------------------------------


def test_looping_tasks_run_no_period_twice_across_runners_killed_at_random(start_runtasks, rng):
    interval = 0.5
    fleet = Fleet(start_runtasks, 4, SHORT_HEARTBEATS)
    wait_until(fleet.up, STARTUP)
    now = timezone.now()
    loops = Task.objects.bulk_create(
        [
            Task(
                name=f"loop-{i}",
                task_id=uuid.uuid4().hex,
                func="tests.functions.c_sleep",
                args_in={"seconds": 0.1},
                loop=True,
                interval=interval,
                next_run=now + timedelta(seconds=i * interval / 12),  # spread over the interval
            )
            for i in range(12)
        ]
    )

    def busy_runner() -> int | None:
        """Mostly a runner with a run in flight (loops leave runners idle between periods)."""
        busy = sorted(set(TaskRun.objects.running().values_list("runner__worker_id", flat=True)))
        slots = [slot for slot in map(fleet.slot_of, busy) if slot is not None]
        return rng.choice(slots) if slots and rng.random() < 0.75 else None

    fleet.kill_at_random(
        rng, kills=8, progress=finished_runs, every=(20, 50), done=lambda: False, victim=busy_runner
    )
    fleet.wait_replaced_declared_dead()
    # Some more periods with every runner up, then stop: running loops end within the grace period.
    target = finished_runs() + 40
    wait_until(lambda: fleet.alive() and finished_runs() >= target, 30)
    assert set(fleet.stop().values()) == {0}

    runs_by_task: dict[int, list[dict]] = defaultdict(list)
    for run in TaskRun.objects.values(
        "id", "task_id", "status", "scheduled_for", "started_at", "finished_at"
    ):
        runs_by_task[run["task_id"]].append(run)
    by_status = Counter(run["status"] for runs in runs_by_task.values() for run in runs)
    print(
        f"{len(fleet.kills)} kills; runs {dict(by_status)}; live runners presumed dead: "
        f"{fleet.presumed_dead_while_alive()}"
    )
    assert set(by_status) <= {RunStatus.FINISHED, RunStatus.INTERRUPTED}, by_status
    assert by_status[RunStatus.INTERRUPTED] > 0, "no kill caught a looping run in flight"
    for task in loops:
        runs = runs_by_task[task.pk]
        finished = [run for run in runs if run["status"] == RunStatus.FINISHED]
        assert len(finished) >= 3, f"{task.name} hardly ran: {len(finished)} runs"
        periods = Counter(run["scheduled_for"] for run in finished)
        twice = {at: n for at, n in periods.items() if n > 1}
        assert not twice, f"{task.name}: periods run more than once: {twice}"
        # Never two runs of one task at a time (interrupted runs count from claim to recovery).
        assert_no_overlap(
            [(r["started_at"], r["finished_at"], r["id"]) for r in runs], f"runs of {task.name}"
        )
        # No burst either: at most one finished run per interval of the schedule, plus the first.
        scheduled = sorted(periods)
        span = (scheduled[-1] - scheduled[0]).total_seconds()
        assert len(finished) <= span / interval + 2, f"{task.name}: {len(finished)} runs in {span:.1f} s"
        assert Task.objects.get(pk=task.pk).attempts == len(runs)
    assert_nothing_running()
