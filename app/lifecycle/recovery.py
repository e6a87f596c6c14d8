"""Recover and interrupt: giving back the work of a runner that died, stopped or restarted.

A runner's open runs become ``interrupted`` (with the reason), its tasks due again at once, its leases
freed and the runner itself marked (``dead`` by default). One transaction, so a crash midway leaves
everything as it was. A runner that signs in under the worker id of a dead one recovers its work first.
"""

import os
import socket

from django.db import transaction

from .. import dbclock, orphans
from ..lease import Lease
from ..runnerprocess import RunnerProcess, RunnerQuerySet
from ..status import RunnerState, RunStatus, TaskStatus
from ..task import Task
from ..taskrun import TaskRun


def recover(runners: RunnerQuerySet, reason: str, final_state: str = RunnerState.DEAD) -> list[int]:
    """Give back the work of these runners: runs interrupted, tasks due again, leases freed.

    Returns the ids of the runs recorded as interrupted.
    """
    with transaction.atomic():
        now = dbclock.now()  # due again by the runners' clock
        # Locked, and (on PostgreSQL) re-checked after any wait: a runner that signed in again
        # meanwhile is no longer stale and is left alone.
        found = list(runners.select_for_update().values_list("id", "host", "pid"))
        if not found:
            return []
        runner_ids = [runner_id for runner_id, _, _ in found]
        open_runs = TaskRun.objects.filter(runner_id__in=runner_ids, finished_at__isnull=True)
        run_ids = list(open_runs.filter(status=RunStatus.RUNNING).values_list("id", flat=True))
        open_runs.filter(status=RunStatus.RUNNING).update(
            status=RunStatus.INTERRUPTED, finished_at=now, error=reason
        )
        open_runs.update(finished_at=now)  # timed-out runs keep their status
        Task.objects.filter(runner_id__in=runner_ids, status=TaskStatus.RUNNING).update(
            status=TaskStatus.WAITING, next_run=now, runner=None, updated_at=now
        )
        Lease.objects.release_held_by(runner_ids)
        RunnerProcess.objects.filter(id__in=runner_ids).update(state=final_state, busy=0, stopped_at=now)
    _reap_children_left_on_this_host([(host, pid) for _, host, pid in found])
    return run_ids


def _reap_children_left_on_this_host(runners: list[tuple[str, int]]) -> None:
    """Kill the children that dead runners on this host left running, and remove their run folders.

    Children die with their runner by themselves (app/lifeline.py); this catches what the task started
    (the parent-death signal kills only the child), a child started where that signal does not exist,
    and the folders of children killed by it. A recovered runner that still runs (frozen, not dead) is
    left alone: its runs are fenced instead.
    """
    here = socket.gethostname()
    if any(host == here and not orphans.is_running(pid) for host, pid in runners):
        orphans.reap()


def recover_stale(timeout: float, by: RunnerProcess) -> list[tuple[RunnerProcess, str, list[int]]]:
    """Recover every other runner silent for over ``timeout`` seconds: (runner, reason, run ids) each."""
    recovered = []
    for dead in RunnerProcess.objects.stale(timeout).exclude(pk=by.pk):
        reason = (
            f"runner {dead.worker_id} (pid {dead.pid} on {dead.host}) lost its heartbeat "
            f"for over {timeout} s; recovered by {by.worker_id}"
        )
        # Stale once more when locked: it may have signed in again since it was listed.
        run_ids = recover(RunnerProcess.objects.stale(timeout).filter(pk=dead.pk), reason)
        recovered.append((dead, reason, run_ids))
    return recovered


def give_back(runner: RunnerProcess, reason: str) -> list[int]:
    """A stopping runner's last word: what it did not finish is interrupted and due again; it is stopped."""
    return recover(RunnerProcess.objects.filter(pk=runner.pk), reason, final_state=RunnerState.STOPPED)


def sign_in(worker_id: str, threads: int) -> RunnerProcess:
    """Sign this process in, taking over ``worker_id`` (recovering its work) if its last holder is gone."""
    now = dbclock.now()  # others compare this heartbeat with the database's clock
    values = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "state": RunnerState.RUNNING,
        "threads": threads,
        "busy": 0,
        "started_at": now,
        "heartbeat_at": now,
        "stopped_at": None,
        "degraded": "",
        "clock_offset": None,
    }
    with transaction.atomic():
        previous = RunnerProcess.objects.select_for_update().filter(worker_id=worker_id).first()
        if previous is not None:
            previous.ensure_gone(now)
            reason = f"runner {worker_id} restarted before this run ended"
            recover(RunnerProcess.objects.filter(pk=previous.pk), reason)
        runner, _ = RunnerProcess.objects.update_or_create(worker_id=worker_id, defaults=values)
    return runner
