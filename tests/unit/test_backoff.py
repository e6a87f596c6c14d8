"""The backoff between tries to reach a database that went away (app/backoff.py)."""

import logging

import pytest

from app.backoff import REASON_LIMIT, Backoff

LOGGER = "conductor.test.backoff"


def database_backoff(first: float = 0.5, cap: float = 30.0) -> Backoff:
    return Backoff(first, cap, "Runner vm-1", "the database", logging.getLogger(LOGGER))


def test_delays_double_from_the_first_up_to_the_cap():
    backoff = database_backoff(first=5.0, cap=30.0)

    delays = [backoff.failed(0.0, "refused") for _ in range(6)]

    assert delays == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]


def test_try_ten_thousand_waits_the_cap_without_overflow():
    backoff = database_backoff(first=0.2, cap=30.0)

    for _ in range(9_999):
        backoff.failed(0.0, "refused")

    assert backoff.failed(100.0, "refused") == 30.0
    assert backoff.failures == 10_000
    assert backoff.retry_at == 130.0
    assert backoff.delay(10**9) == 30.0


def test_no_try_until_the_step_is_waited_out():
    backoff = database_backoff(first=2.0)
    assert backoff.ready(0.0)  # nothing failed: always

    backoff.failed(10.0, "refused")

    assert not backoff.ready(11.9)
    assert backoff.ready(12.0)


def test_success_starts_afresh_and_says_how_many_tries_failed():
    backoff = database_backoff(first=1.0)
    backoff.failed(0.0, "refused")
    backoff.failed(1.0, "refused")

    assert backoff.succeeded() == 2

    assert not backoff.failing
    assert backoff.ready(0.0)
    assert backoff.failed(5.0, "refused") == 1.0  # the first delay again


def test_someone_else_getting_through_brings_the_next_try_forward():
    backoff = database_backoff(first=30.0)
    backoff.failed(0.0, "refused")

    backoff.retry_soon(3.0)

    assert backoff.ready(3.0)
    assert backoff.failing  # still counted until a try of its own succeeds


def test_a_hint_while_nothing_failed_changes_nothing():
    backoff = database_backoff()

    backoff.retry_soon(3.0)

    assert backoff.retry_at == 0.0


def test_one_log_line_per_failed_try_however_long_the_reason(caplog):
    backoff = database_backoff(first=0.2)
    reason = "connection failed: Connection refused\n\tIs the server running on that host?\n" + "x" * 1000

    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(10_000):
            backoff.failed(0.0, reason)
        backoff.succeeded()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 10_001
    assert all("\n" not in message for message in messages)
    assert messages[0].startswith("Runner vm-1 cannot reach the database (connection failed: Connection ")
    assert messages[0].endswith("running tasks go on, retrying in 0.2 s")
    assert messages[1].startswith("Runner vm-1: the database still unreachable (try 2: ")
    assert messages[-2].endswith("next try in 30.0 s")
    assert messages[-1] == "Runner vm-1 reaches the database again after 10000 failed tries"
    assert [r.levelname for r in caplog.records[:2]] == ["ERROR", "WARNING"]
    assert len(messages[1]) < REASON_LIMIT + 100


def test_success_without_failures_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert database_backoff().succeeded() == 0

    assert caplog.records == []


@pytest.mark.parametrize(("first", "cap"), [(0.0, 30.0), (-1.0, 30.0), (31.0, 30.0)])
def test_refuses_delays_that_make_no_sense(first, cap):
    with pytest.raises(ValueError, match="first"):
        database_backoff(first, cap)
