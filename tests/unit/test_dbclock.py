"""The one clock (app.dbclock): the database's time, this process's offset from it, and settings for it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from app import conf, dbclock
from app.runnerprocess import RunnerProcess

pytestmark = pytest.mark.django_db


def test_now_is_the_databases_time_within_a_round_trip():
    before = timezone.now()
    now = dbclock.now()
    assert before - timedelta(seconds=1) <= now <= timezone.now() + timedelta(seconds=1)


def test_an_offset_is_measured_only_where_the_database_has_a_clock_of_its_own():
    offset = dbclock.measure_offset()
    if connection.vendor == "postgresql":
        assert abs(offset) < 1  # same machine here
    else:
        assert offset == 0.0


def test_a_reading_turns_local_times_into_the_databases():
    reading = dbclock.Reading(datetime(2030, 1, 1, tzinfo=UTC), offset=10.0)
    assert reading.from_local(100.0) == datetime.fromtimestamp(110.0, tz=UTC)


def test_a_local_deadline_counts_to_the_databases_time_by_the_offset():
    at = timezone.now() + timedelta(seconds=20)
    # The database is 15 s ahead: its clock shows ``at`` in 5 s.
    assert dbclock.local_deadline(at, offset=15.0) == pytest.approx(5.0, abs=0.5)


def test_now_in_a_filter_finds_silent_runners_by_the_databases_clock():
    silent = RunnerProcess.objects.create(worker_id="silent", host="h", pid=1,
                                          heartbeat_at=timezone.now() - timedelta(seconds=30))  # fmt: skip
    RunnerProcess.objects.create(worker_id="live", host="h", pid=2)
    assert list(RunnerProcess.objects.filter(heartbeat_at__lt=dbclock.Now(minus=15))) == [silent]


def test_the_skew_warning_comes_from_the_environment_too():
    assert conf.from_environment({"CONDUCTOR_CLOCK_SKEW_WARNING": "0.5"}) == {"CLOCK_SKEW_WARNING": 0.5}
    assert conf.ConductorSettings().CLOCK_SKEW_WARNING == 2.0
