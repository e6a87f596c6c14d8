"""app.runnerprocess: a runner's row, its liveness, and crash recovery when a worker id is taken over."""

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from app import lifecycle
from app.runnerprocess import RunnerProcess
from app.status import RunnerState, RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db


def runner(worker_id: str = "r", **fields) -> RunnerProcess:
    fields = {"host": socket.gethostname(), "pid": os.getpid(), **fields}
    return RunnerProcess.objects.create(worker_id=worker_id, **fields)


def ended_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_default_worker_id_is_host_and_pid():
    assert RunnerProcess.default_worker_id() == f"{socket.gethostname()}-{os.getpid()}"


def test_live_and_stale():
    now = timezone.now()
    fresh = runner("fresh")
    silent = runner("silent", heartbeat_at=now - timedelta(seconds=60))
    runner("stopped", state=RunnerState.STOPPED, heartbeat_at=now - timedelta(seconds=60))

    assert set(RunnerProcess.objects.live()) == {fresh, silent}
    assert list(RunnerProcess.objects.stale(15)) == [silent]


def test_a_heartbeat_records_the_threads_until_others_presumed_it_dead():
    me = runner()
    assert me.heartbeat([{"run": 1}, {"run": 2}])
    assert RunnerProcess.objects.get(pk=me.pk).busy == 2

    RunnerProcess.objects.filter(pk=me.pk).update(state=RunnerState.DEAD)
    assert not me.heartbeat([])

    me.revive()
    assert RunnerProcess.objects.get(pk=me.pk).state == RunnerState.RUNNING
    assert me.heartbeat([])


def test_set_state_and_a_degraded_reason_cut_to_its_column():
    me = runner()
    me.set_state(RunnerState.STOPPING)
    me.set_degraded("x" * 1000)

    stored = RunnerProcess.objects.get(pk=me.pk)
    assert stored.state == RunnerState.STOPPING
    assert stored.degraded == "x" * RunnerProcess._meta.get_field("degraded").max_length


def test_a_worker_id_held_by_a_live_process_on_this_host_is_refused():
    holder = runner("busy", pid=os.getppid())  # alive: the process that started this one
    with pytest.raises(RuntimeError, match="in use by a live runner"):
        holder.ensure_gone()


def test_a_worker_id_of_another_host_that_heartbeat_recently_is_refused():
    holder = runner("elsewhere", host="another-host")
    with pytest.raises(RuntimeError, match="heartbeat in the last minute"):
        holder.ensure_gone()


def test_a_crashed_runner_restarted_under_its_worker_id_gives_its_runs_back_at_once():
    crashed = runner("w", pid=ended_pid())
    Task(func=functions.add, args_in={"a": 1}).save()
    [(task, run)] = lifecycle.claim(crashed, limit=1)

    again = lifecycle.sign_in("w", threads=4)

    assert again.pk == crashed.pk
    assert (again.state, again.pid, again.threads) == (RunnerState.RUNNING, os.getpid(), 4)
    stored = TaskRun.objects.get(pk=run.pk)
    assert stored.status == RunStatus.INTERRUPTED
    assert stored.error == "runner w restarted before this run ended"
    task.refresh_from_db()
    assert (task.status, task.runner_id) == (TaskStatus.WAITING, None)
