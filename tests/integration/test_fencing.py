"""A fence that task code can hold: ``context.fence`` and ``context.still_owner()`` (issue 17 item 6).

The runner runs in this process on the test database. The task body (tests/journal_functions.py
``owner_until_released``) writes its fence and ``still_owner()`` to a journal, waits for a release file,
then writes ``still_owner()`` again: what the test does between the two tells the body's own view of its
claim. Each owner line carries the run's fence, since a recovered task may already run again meanwhile.
"""

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from app import lifecycle
from app.context import TaskContext
from app.lease import DB_USE, Lease
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import journal_functions
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

#: Heartbeats far apart: a runner made stale by the test must stay stale until another recovers it.
SLOW_HEARTBEATS = {"HEARTBEAT": 30.0, "HEARTBEAT_TIMEOUT": 90.0}


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return tmp_path / "release"


@pytest.fixture
def task_modules(settings):
    """Children import the journal functions too."""
    settings.CONDUCTOR = {"TASK_MODULES": ["tests.journal_functions"], **SLOW_HEARTBEATS}


def owner_task(journal: Path, release: Path, **fields) -> Task:
    task = Task(func=journal_functions.owner_until_released,
                args_in={"path": str(journal), "release": str(release)}, **fields)  # fmt: skip
    task.save()
    return task


def lines(journal: Path, event: str) -> list[list[str]]:
    """The journal's ``event`` lines, split: event, time, pid, ppid, then the details."""
    if not journal.exists():
        return []
    return [line.split() for line in journal.read_text().splitlines() if line.startswith(event + " ")]


def fence_seen(journal: Path) -> int:
    """The fence of the first run, once its body has noted it (and that it owned its claim then)."""
    [[*_, fence, owner], *_] = wait_until(lambda: lines(journal, "fence"), timeout=15)
    assert owner == "True", "a run that was just claimed owns it"
    return int(fence)


def owner_after_release(journal: Path, release: Path, fence: int) -> bool:
    """Let the bodies go on; what the run with ``fence`` then said of its claim."""
    release.touch()
    found = wait_until(
        lambda: [line for line in lines(journal, "owner") if line[4] == str(fence)], timeout=15
    )
    return found[0][5] == "True"


def status_is(task: Task, *statuses: str) -> bool:
    task.refresh_from_db()
    return task.status in statuses


# The token, and still_owner() while owning ----------------------------------------------------------


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_the_body_holds_its_runs_fence_and_owns_it_while_it_runs(
    task_modules, start_runner, journal, release, isolation
):
    task = owner_task(journal, release, isolation=isolation)
    running = start_runner()
    fence = fence_seen(journal)
    assert owner_after_release(journal, release, fence)
    wait_until(lambda: status_is(task, TaskStatus.FINISHED))
    run = TaskRun.objects.get(task=task)
    assert (run.status, run.fence, run.output) == (RunStatus.FINISHED, fence, fence)
    assert running.stop() == 0


def test_task_run_gives_the_body_its_claims_fence(task_modules, journal, release):
    release.touch()
    task = owner_task(journal, release)
    run = task.run()
    [[*_, fence, owner]] = lines(journal, "fence")
    assert (int(fence), owner, run.output) == (run.fence, "True", run.fence)


# still_owner() turns false -----------------------------------------------------------------------


def test_a_recovered_run_no_longer_owns_its_claim(task_modules, start_runner, journal, release):
    task = owner_task(journal, release)
    running = start_runner()
    fence = fence_seen(journal)
    lifecycle.recover(RunnerProcess.objects.filter(pk=running.runner.record.pk), "recovered by the test")
    assert not owner_after_release(journal, release, fence)
    # Given back and run again: the new run owns its own, newer claim.
    wait_until(lambda: status_is(task, TaskStatus.FINISHED))
    assert TaskRun.objects.get(task=task, fence=fence).status == RunStatus.INTERRUPTED
    assert TaskRun.objects.get(task=task, status=RunStatus.FINISHED).output == fence + 1
    assert running.stop() == 0


def test_a_run_recovered_by_another_runner_no_longer_owns_its_claim(
    task_modules, start_runner, journal, release
):
    task = owner_task(journal, release)
    first = start_runner(worker_id="first")
    fence = fence_seen(journal)
    stale = timezone.now() - timedelta(hours=1)
    RunnerProcess.objects.filter(pk=first.runner.record.pk).update(heartbeat_at=stale)
    second = start_runner(worker_id="second")  # recovers the stale runner as it starts
    wait_until(lambda: TaskRun.objects.get(task=task, fence=fence).status == RunStatus.INTERRUPTED)
    assert not owner_after_release(journal, release, fence)
    wait_until(lambda: status_is(task, TaskStatus.FINISHED))
    assert first.stop() == 0
    assert second.stop() == 0


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_db_use_run_whose_lease_was_taken_no_longer_owns_it(
    task_modules, start_runner, journal, release, isolation
):
    task = owner_task(journal, release, db_use=True, isolation=isolation)
    running = start_runner()
    fence = fence_seen(journal)
    other = Task.objects.create(
        func=journal_functions.ticks, args_in={"path": "-", "seconds": 0}, paused=True
    )
    Lease.objects.release(DB_USE, task.pk)
    assert Lease.objects.acquire(DB_USE, other.pk, runner_id=None)
    assert not owner_after_release(journal, release, fence)
    wait_until(lambda: status_is(task, TaskStatus.FINISHED))
    assert running.stop() == 0


def test_no_fence_no_ownership():
    context = TaskContext(SimpleNamespace(pk=1, task_id="t", name="never claimed"), run_id=None)
    assert (context.fence, context.still_owner()) == (None, False)
