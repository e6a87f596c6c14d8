"""The runner's batching policy: when waiting outcomes are recorded (one transaction per batch)."""

import time

import pytest

from app.lifecycle import Outcome
from app.runner import RECORD_BATCH, RECORD_DELAY, Runner, RunnerOptions
from app.status import RunStatus


@pytest.fixture
def runner() -> Runner:
    return Runner(RunnerOptions(threads=2, worker_id="batching"))


def waiting(runner: Runner, count: int, waited: float = 0.0) -> float:
    """``count`` outcomes waiting, the first for ``waited`` seconds; returns now (monotonic)."""
    now = time.monotonic()
    runner._unrecorded = [(object(), Outcome(RunStatus.FINISHED, 0.0, 0.0)) for _ in range(count)]
    runner._record_by = now - waited + RECORD_DELAY
    return now


def test_nothing_waiting_is_nothing_to_record(runner) -> None:
    assert not runner._should_record(waiting(runner, 0))


def test_an_outcome_is_recorded_at_once_when_nothing_else_runs(runner) -> None:
    assert runner._should_record(waiting(runner, 1))


def test_outcomes_wait_for_company_while_runs_go_on(runner) -> None:
    runner._active = {1: object()}
    now = waiting(runner, RECORD_BATCH - 1)
    assert not runner._should_record(now)
    assert runner._should_record(now + RECORD_DELAY)  # but never longer than the delay
    assert runner._should_record(waiting(runner, RECORD_BATCH))  # nor beyond a full batch


def test_the_runner_wakes_when_waiting_outcomes_are_due(runner) -> None:
    runner._next_poll = runner._next_heartbeat = time.monotonic() + 7200
    waiting(runner, 1)
    runner._record_by = time.monotonic() + 60
    assert 50 < runner._wait_time() <= 60
