"""The runner's recording policy (app.runner.outcomes.OutcomeBatch): when waiting outcomes are recorded."""

from app.lifecycle import Outcome
from app.runner.outcomes import RECORD_BATCH, RECORD_DELAY, OutcomeBatch
from app.status import RunStatus

NOW = 1000.0


def finished(label: str = "") -> Outcome:
    return Outcome(RunStatus.FINISHED, 0.0, 0.0, output=label)


def batch_of(count: int, at: float = NOW) -> OutcomeBatch:
    batch = OutcomeBatch()
    for n in range(count):
        batch.add(f"run{n}", finished(str(n)), at)
    return batch


def test_nothing_waiting_is_nothing_to_record():
    assert not batch_of(0).due(NOW + 3600, others_running=False)


def test_an_outcome_is_recorded_at_once_when_nothing_else_runs():
    assert batch_of(1).due(NOW, others_running=False)


def test_outcomes_wait_for_company_while_runs_go_on():
    waiting = batch_of(RECORD_BATCH - 1)
    assert not waiting.due(NOW, others_running=True)
    assert waiting.due(NOW + RECORD_DELAY, others_running=True)  # but never longer than the delay
    assert batch_of(RECORD_BATCH).due(NOW, others_running=True)  # nor beyond a full batch


def test_the_first_outcome_sets_the_time_to_record_by():
    batch = batch_of(1)
    batch.add("later", finished(), NOW + 1)
    assert batch.record_by == NOW + RECORD_DELAY


def test_take_empties_the_batch_in_order():
    batch = batch_of(3)
    assert [run for run, _ in batch.take()] == ["run0", "run1", "run2"]
    assert len(batch) == 0
    assert not batch.due(NOW + 1, others_running=False)


def test_a_batch_put_back_is_first_in_line_before_what_came_since():
    batch = batch_of(2)
    refused = batch.take()
    batch.add("newer", finished(), NOW + 1)
    batch.put_back(refused)
    assert [run for run, _ in batch.take()] == ["run0", "run1", "newer"]
