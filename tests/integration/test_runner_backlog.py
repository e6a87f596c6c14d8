"""Runs claimed ahead start as soon as a thread is free, however their predecessors' ends are noticed."""

import pytest

from app.runner import Runner
from app.runner import loop as runner_module
from app.status import TaskStatus
from app.task import Task
from tests import functions
from tests.conftest import wait_until
from tests.integration.test_runner import make_task

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3600.0


@pytest.fixture(autouse=True)
def hourly_heartbeat(settings) -> None:
    settings.CONDUCTOR = {"HEARTBEAT": HOUR, "HEARTBEAT_TIMEOUT": 3 * HOUR}


@pytest.fixture(autouse=True)
def no_database_watcher(monkeypatch) -> None:
    """Nothing from outside wakes the runner (on SQLite its own commits would; on PostgreSQL they do not)."""
    monkeypatch.setattr(runner_module, "watcher_for_default_database", lambda *args, **kwargs: None)


@pytest.fixture
def runs_end_before_policing(monkeypatch) -> None:
    """Every active run ends between the loop's inbox and its policing: policing then collects them."""
    collect = Runner._collect_dead_threads

    def collect_after_the_runs_ended(self: Runner) -> None:
        wait_until(lambda: all(not active.thread.is_alive() for active in self._active.values()))
        collect(self)

    monkeypatch.setattr(Runner, "_collect_dead_threads", collect_after_the_runs_ended)


def test_a_backlog_starts_on_threads_freed_by_policing(start_runner, runs_end_before_policing) -> None:
    tasks = [make_task(functions.add, args_in={"a": n}) for n in range(60)]  # more than a claim's worth
    start_runner(poll=HOUR, threads=2)
    wait_until(
        lambda: not Task.objects.exclude(status=TaskStatus.FINISHED).exists(),
        message="every task ran, with no poll or heartbeat to wake the runner",
    )
    assert sorted(Task.objects.values_list("output", flat=True)) == sorted(t.args_in["a"] for t in tasks)
