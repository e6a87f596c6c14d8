"""Tests for app.schedule (cron calendars, first and next runs, retry backoff) and the Task fields behind it.

Pure computations take fixed instants; nothing here waits on a clock. The model tests at the end save
tasks, so they use the database.
"""

import itertools
import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from app import lifecycle, schedule
from app.snapshot import task_state
from app.status import CatchUp, RunStatus
from app.task import Task
from tests import functions, scheduling_functions  # noqa: F401 - registers the functions

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
CRON_HINT = "give five fields, minute hour day month weekday"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def task(**fields) -> Task:
    """An unsaved task: schedule's functions read only its fields."""
    fields.setdefault("func", "tests.functions.stamp")
    return Task(**fields)


def simulate(job: Task, start: datetime, end: datetime, run_takes: float = 1.0) -> list[datetime]:
    """The instants a runner would run ``job`` from ``start`` until ``end``: the first run from
    first_run, each next one from next_loop_run when the previous run ends ``run_takes`` s later."""
    # Kept in UTC, as the database keeps it: arithmetic and comparisons of two times in one zone use
    # the wall clock (02:00 CET + 1 s would be 02:00:01 CEST, an hour earlier).
    job.next_run = schedule.first_run(job, start).astimezone(UTC)
    runs = []
    while job.next_run < end:
        runs.append(job.next_run)
        ended = job.next_run + timedelta(seconds=run_takes)
        job.next_run = schedule.next_loop_run(job, ended).astimezone(UTC)
    return runs


def on_local_day(runs: list[datetime], zone: ZoneInfo, day: int) -> list[datetime]:
    return [run for run in runs if run.astimezone(zone).day == day]


# check() and zone() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "* * * *",  # four fields
        "0 * * * * *",  # six fields (seconds or years are not taken)
        "61 * * * *",  # no minute 61
        "0 24 * * *",  # no hour 24
        "* * * 13 *",  # no month 13
        "garbage",
        "every day at noon",
        "",
    ],
)
def test_check_rejects_what_is_not_a_five_field_cron_expression(expression):
    with pytest.raises(schedule.ScheduleError) as error:
        schedule.check(expression, "UTC")
    message = str(error.value)
    assert repr(expression) in message
    assert CRON_HINT in message
    assert "'30 2 * * 1-5'" in message  # an example of what would do


@pytest.mark.parametrize(
    "expression", ["30 2 * * 1-5", "*/15 * * * *", "0 0 1 1 *", "0 9 * * MON-FRI", "5,35 8-18/2 * * *"]
)
def test_check_accepts_cron_expressions(expression):
    schedule.check(expression, "Europe/Berlin")


def test_check_rejects_a_bad_time_zone_with_its_own_message():
    with pytest.raises(schedule.ScheduleError, match="'Mars/Olympus' is not a time zone"):
        schedule.check("30 2 * * *", "Mars/Olympus")


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "Not a zone", "Europe/"])
def test_zone_rejects_unknown_names_with_a_hint(name):
    with pytest.raises(schedule.ScheduleError) as error:
        schedule.zone(name)
    assert str(error.value) == (
        f"{name!r} is not a time zone: use an IANA name such as 'UTC' or 'Europe/Berlin'."
    )


def test_zone_gives_the_zone():
    assert schedule.zone("Europe/Berlin") == BERLIN


# next_run -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("*/15 * * * *", "UTC", utc(2026, 1, 5, 10, 7), utc(2026, 1, 5, 10, 15)),
        # strictly after: a time on the calendar gives the next one
        ("*/15 * * * *", "UTC", utc(2026, 1, 5, 10, 15), utc(2026, 1, 5, 10, 30)),
        # Friday 03:00 UTC: the next weekday 02:30 is Monday's
        ("30 2 * * 1-5", "UTC", utc(2026, 1, 2, 3, 0), utc(2026, 1, 5, 2, 30)),
        ("0 0 1 * *", "UTC", utc(2026, 1, 31, 23, 59, 59), utc(2026, 2, 1)),
        # 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST)
        ("0 9 * * *", "Europe/Berlin", utc(2026, 1, 10), utc(2026, 1, 10, 8)),
        ("0 9 * * *", "Europe/Berlin", utc(2026, 7, 10), utc(2026, 7, 10, 7)),
        ("0 9 * * *", "America/New_York", utc(2026, 1, 10), utc(2026, 1, 10, 14)),
    ],
)
def test_next_run_simple_cases(expression, zone, after, expected):
    found = schedule.next_run(expression, zone, after)
    assert found == expected
    assert found.tzinfo is not None


def test_next_run_of_an_aware_time_in_another_zone_is_the_same_instant():
    berlin_after = datetime(2026, 1, 5, 11, 7, tzinfo=BERLIN)  # 10:07 UTC
    assert schedule.next_run("*/15 * * * *", "UTC", berlin_after) == utc(2026, 1, 5, 10, 15)


# Daylight saving: Europe/Berlin (2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET)


def test_berlin_spring_forward_a_time_in_the_gap_runs_at_three_once_not_skipped():
    job = task(cron="30 2 * * *", timezone="Europe/Berlin")
    runs = simulate(job, datetime(2026, 3, 27, 12, tzinfo=BERLIN), datetime(2026, 4, 1, tzinfo=BERLIN))
    local = [run.astimezone(BERLIN) for run in runs]
    assert [(t.day, t.hour, t.minute) for t in local] == [
        (28, 2, 30),
        (29, 3, 0),  # 02:30 does not exist that day: the first minute after the gap
        (30, 2, 30),
        (31, 2, 30),
    ]
    assert on_local_day(runs, BERLIN, 29) == [utc(2026, 3, 29, 1, 0)]  # 03:00 CEST


def test_berlin_spring_forward_every_quarter_hour_has_no_runs_in_the_gap_and_no_gap_in_real_time():
    job = task(cron="*/15 * * * *", timezone="Europe/Berlin")
    runs = simulate(job, utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 31))  # 01:30 CET to 03:30 CEST
    assert [run.astimezone(BERLIN).strftime("%H:%M%z") for run in runs] == [
        "01:30+0100", "01:45+0100", "03:00+0200", "03:15+0200", "03:30+0200",
    ]  # fmt: skip
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(runs))


def test_berlin_fall_back_a_fixed_time_in_the_doubled_hour_runs_exactly_once():
    job = task(cron="30 2 * * *", timezone="Europe/Berlin")
    runs = simulate(job, datetime(2026, 10, 23, 12, tzinfo=BERLIN), datetime(2026, 10, 28, tzinfo=BERLIN))
    assert on_local_day(runs, BERLIN, 25) == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST, not again at CET
    assert on_local_day(runs, BERLIN, 26) == [utc(2026, 10, 26, 1, 30)]  # 02:30 CET
    assert len(runs) == 4  # one a day, 24th to 27th
    assert runs == sorted(set(runs))


def test_berlin_fall_back_a_fixed_time_is_once_even_when_the_run_overran_into_the_second_hour():
    job = task(cron="30 2 * * *", timezone="Europe/Berlin")
    job.next_run = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    # The run took 70 minutes: it ended at 02:40 CET, after the second 02:30.
    following = schedule.next_loop_run(job, utc(2026, 10, 25, 1, 40))
    assert following == utc(2026, 10, 26, 1, 30)


def test_berlin_fall_back_every_quarter_hour_runs_in_both_hours():
    job = task(cron="*/15 * * * *", timezone="Europe/Berlin")
    runs = simulate(job, utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2, 1))
    doubled = [run for run in runs if utc(2026, 10, 25, 0, 0) <= run <= utc(2026, 10, 25, 1, 45)]
    # 02:00 CEST (00:00 UTC) to 02:45 CET (01:45 UTC): 02:00-02:45 twice, 8 distinct instants
    assert [run.astimezone(BERLIN).strftime("%H:%M%z") for run in doubled] == [
        "02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200",
        "02:00+0100", "02:15+0100", "02:30+0100", "02:45+0100",
    ]  # fmt: skip
    assert len(set(doubled)) == 8
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(runs))


def test_berlin_fall_back_a_fixed_time_after_the_doubled_hour_runs_once():
    job = task(cron="0 3 * * *", timezone="Europe/Berlin")
    runs = simulate(job, datetime(2026, 10, 24, 12, tzinfo=BERLIN), datetime(2026, 10, 27, tzinfo=BERLIN))
    assert on_local_day(runs, BERLIN, 25) == [utc(2026, 10, 25, 2, 0)]  # 03:00 CET


# Daylight saving: America/New_York (2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST)


def test_new_york_spring_forward_a_time_in_the_gap_runs_at_three_once():
    job = task(cron="30 2 * * *", timezone="America/New_York")
    runs = simulate(job, datetime(2026, 3, 6, 12, tzinfo=NEW_YORK), datetime(2026, 3, 10, tzinfo=NEW_YORK))
    assert on_local_day(runs, NEW_YORK, 8) == [utc(2026, 3, 8, 7, 0)]  # 03:00 EDT
    assert on_local_day(runs, NEW_YORK, 9) == [utc(2026, 3, 9, 6, 30)]  # 02:30 EDT
    assert on_local_day(runs, NEW_YORK, 7) == [utc(2026, 3, 7, 7, 30)]  # 02:30 EST


def test_new_york_fall_back_a_fixed_time_in_the_doubled_hour_runs_exactly_once():
    job = task(cron="30 1 * * *", timezone="America/New_York")
    runs = simulate(job, datetime(2026, 10, 30, 12, tzinfo=NEW_YORK), datetime(2026, 11, 4, tzinfo=NEW_YORK))
    assert on_local_day(runs, NEW_YORK, 1) == [utc(2026, 11, 1, 5, 30)]  # 01:30 EDT only
    assert on_local_day(runs, NEW_YORK, 2) == [utc(2026, 11, 2, 6, 30)]  # 01:30 EST
    assert len(runs) == len(set(runs)) == 4  # one a day, 31st to 3rd


def test_new_york_fall_back_every_half_hour_runs_in_both_hours():
    job = task(cron="*/30 * * * *", timezone="America/New_York")
    runs = simulate(job, utc(2026, 11, 1, 4, 50), utc(2026, 11, 1, 7, 1))  # 00:50 EDT to 02:00 EST
    assert [run.astimezone(NEW_YORK).strftime("%H:%M%z") for run in runs] == [
        "01:00-0400", "01:30-0400", "01:00-0500", "01:30-0500", "02:00-0500",
    ]  # fmt: skip
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(runs))


# describe() -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("30 2 * * 1-5", "At 02:30, Monday through Friday"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("0 9 * * *", "At 09:00"),
    ],
)
def test_describe_says_the_schedule_in_words(expression, words):
    assert schedule.describe(expression) == words


def test_describe_of_a_bad_expression_gives_it_back_rather_than_failing():
    assert schedule.describe("garbage") == "garbage"


# first_run ------------------------------------------------------------------------------------------

NOW = utc(2026, 1, 5, 10, 7)  # a Monday


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, NOW),
        ({"run_in": 30}, NOW + timedelta(seconds=30)),
        ({"start_at": NOW + timedelta(hours=2)}, NOW + timedelta(hours=2)),
        ({"start_at": NOW - timedelta(hours=2)}, NOW),  # a past start_at: due now
        ({"start_at": NOW + timedelta(seconds=10), "run_in": 60}, NOW + timedelta(seconds=60)),  # the later
        ({"run_in": 60, "start_at": NOW + timedelta(seconds=90)}, NOW + timedelta(seconds=90)),
        ({"cron": "*/15 * * * *"}, utc(2026, 1, 5, 10, 15)),
        ({"cron": "*/15 * * * *", "run_in": 600}, utc(2026, 1, 5, 10, 30)),  # 10:17 -> 10:30
        ({"cron": "*/15 * * * *", "start_at": utc(2026, 1, 5, 11, 0)}, utc(2026, 1, 5, 11, 0)),  # inclusive
        ({"cron": "*/15 * * * *", "start_at": utc(2026, 1, 5, 11, 5)}, utc(2026, 1, 5, 11, 15)),
        # 10:07 UTC is 11:07 in Berlin, past Monday's 02:30: Tuesday 02:30 CET
        ({"cron": "30 2 * * 1-5", "timezone": "Europe/Berlin"}, utc(2026, 1, 6, 1, 30)),
    ],
)
def test_first_run_honours_run_in_start_at_and_the_calendar(fields, expected):
    assert schedule.first_run(task(**fields), NOW) == expected


def test_first_run_on_the_calendar_includes_now_itself():
    assert schedule.first_run(task(cron="*/15 * * * *"), utc(2026, 1, 5, 10, 15)) == utc(2026, 1, 5, 10, 15)


# next_loop_run --------------------------------------------------------------------------------------

T0 = utc(2026, 1, 5, 10, 0)


def looping(**fields) -> Task:
    fields.setdefault("loop", True)
    fields.setdefault("interval", 60)
    job = task(**fields)
    job.next_run = T0
    return job


@pytest.mark.parametrize("catch_up", [CatchUp.ONCE, CatchUp.SKIP])
def test_interval_next_run_keeps_the_grid_whatever_the_run_took(catch_up):
    job = looping(catch_up=catch_up)
    for number in range(1, 50):
        took = timedelta(seconds=(number * 7) % 59)  # runs of all lengths below the interval
        job.next_run = schedule.next_loop_run(job, job.next_run + took)
        assert job.next_run == T0 + timedelta(seconds=60 * number)  # no drift piles up


def test_interval_next_run_when_the_run_ends_exactly_at_the_next_period():
    job = looping()
    assert schedule.next_loop_run(job, T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=60)


def test_catch_up_once_after_downtime_runs_once_now_then_keeps_the_interval_from_there():
    job = looping(catch_up=CatchUp.ONCE)
    now = T0 + timedelta(seconds=5 * 60 + 17)  # five periods missed
    assert schedule.next_loop_run(job, now) == now  # once, at once: not five times
    job.next_run = now
    ended = now + timedelta(seconds=2)
    assert schedule.next_loop_run(job, ended) == now + timedelta(seconds=60)


def test_catch_up_skip_after_downtime_goes_on_at_the_next_period_of_the_original_grid():
    job = looping(catch_up=CatchUp.SKIP)
    now = T0 + timedelta(seconds=5 * 60 + 17)
    following = schedule.next_loop_run(job, now)
    assert following == T0 + timedelta(seconds=6 * 60)
    assert now < following <= now + timedelta(seconds=60)
    assert (following - T0) % timedelta(seconds=60) == timedelta(0)


def test_catch_up_skip_with_a_fractional_interval_stays_on_the_grid():
    job = looping(catch_up=CatchUp.SKIP, interval=0.2)
    now = T0 + timedelta(seconds=1.05)
    assert schedule.next_loop_run(job, now) == T0 + timedelta(seconds=1.2)


@pytest.mark.parametrize(("catch_up", "expected"), [(CatchUp.ONCE, 90), (CatchUp.SKIP, 120)])
def test_an_overrun_of_one_period_follows_the_catch_up_policy(catch_up, expected):
    job = looping(catch_up=catch_up)
    assert schedule.next_loop_run(job, T0 + timedelta(seconds=90)) == T0 + timedelta(seconds=expected)


@pytest.mark.parametrize("catch_up", [CatchUp.ONCE, CatchUp.SKIP])
def test_cron_next_run_after_a_run_on_time_is_the_next_calendar_time(catch_up):
    job = looping(cron="*/10 * * * *", catch_up=catch_up)
    assert schedule.next_loop_run(job, T0 + timedelta(minutes=3)) == T0 + timedelta(minutes=10)


def test_cron_catch_up_once_after_downtime_runs_now_then_goes_back_to_the_calendar():
    job = looping(cron="*/10 * * * *", catch_up=CatchUp.ONCE)
    now = T0 + timedelta(minutes=55, seconds=3)  # five 10-minute periods missed
    assert schedule.next_loop_run(job, now) == now
    job.next_run = now
    assert schedule.next_loop_run(job, now + timedelta(seconds=5)) == T0 + timedelta(hours=1)


def test_cron_catch_up_skip_after_downtime_goes_on_at_the_next_calendar_time():
    job = looping(cron="*/10 * * * *", catch_up=CatchUp.SKIP)
    now = T0 + timedelta(minutes=55, seconds=3)
    assert schedule.next_loop_run(job, now) == T0 + timedelta(hours=1)


@pytest.mark.parametrize("catch_up", [CatchUp.ONCE, CatchUp.SKIP])
def test_cron_catch_up_across_the_berlin_fall_back_runs_a_fixed_time_once_that_day(catch_up):
    job = looping(cron="30 2 * * *", timezone="Europe/Berlin", catch_up=catch_up)
    job.next_run = utc(2026, 10, 24, 0, 30)  # Saturday 02:30 CEST, then the runners were down
    now = utc(2026, 10, 25, 0, 45)  # Sunday 02:45 CEST: Sunday's first 02:30 passed unrun
    runs = []
    while job.next_run < utc(2026, 10, 27):
        job.next_run = schedule.next_loop_run(job, now).astimezone(UTC)
        runs.append(job.next_run)
        now = job.next_run + timedelta(seconds=1)
    sunday = on_local_day(runs, BERLIN, 25)
    # once: at once (02:45 CEST); skip: at the next 02:30 on the calendar, 02:30 CET. Never both.
    assert sunday == [utc(2026, 10, 25, 0, 45) if catch_up == CatchUp.ONCE else utc(2026, 10, 25, 1, 30)]
    assert on_local_day(runs, BERLIN, 26) == [utc(2026, 10, 26, 1, 30)]


# retry_delay ----------------------------------------------------------------------------------------


def test_retry_delay_is_exponential_capped_and_jittered_between_half_and_all_of_the_ceiling():
    job = task(retry_delay=0.2, retry_delay_max=10)
    for attempt in range(1, 12):
        ceiling = min(0.2 * 2 ** (attempt - 1), 10)
        samples = [schedule.retry_delay(job, attempt) for _ in range(2000)]
        assert all(ceiling / 2 <= sample <= ceiling for sample in samples), attempt
        # jitter: spread over the range, not one value
        assert min(samples) < ceiling * 0.55
        assert max(samples) > ceiling * 0.95
    assert len({schedule.retry_delay(job, 1) for _ in range(100)}) > 90


def test_retry_delay_of_zero_retries_at_once():
    job = task(retry_delay=0, retry_delay_max=3600)
    assert {schedule.retry_delay(job, attempt) for attempt in range(1, 10)} == {0}


@pytest.mark.parametrize("attempt", [64, 65, 1025, 1100, 10**6])
def test_retry_delay_of_a_very_late_attempt_is_still_capped(attempt):
    # (2 ** 1024 overflowed a float once: the runner recording the outcome crashed.)
    job = task(retry_delay=0.2, retry_delay_max=10)
    assert 5 <= schedule.retry_delay(job, attempt) <= 10
    assert schedule.retry_delay(task(retry_delay=0, retry_delay_max=10), attempt) == 0


@pytest.mark.parametrize(
    ("status", "attempt", "retried"),
    [
        (RunStatus.FAILED, 1, True),
        (RunStatus.TIMED_OUT, 2, True),
        (RunStatus.FAILED, 3, False),  # the last of three tries
        (RunStatus.FINISHED, 1, False),
        (RunStatus.CANCELLED, 1, False),
        (RunStatus.INTERRUPTED, 1, False),
    ],
)
def test_retry_at_after_retries_failed_and_timed_out_tries_until_the_last(status, attempt, retried):
    job = task(max_attempts=3, retry_delay=4, retry_delay_max=100)
    job.attempt = attempt
    retry_at = lifecycle.retry_at_after(job, status, T0)
    if not retried:
        assert retry_at is None
        return
    ceiling = 4 * 2 ** (attempt - 1)
    assert T0 + timedelta(seconds=ceiling / 2) <= retry_at <= T0 + timedelta(seconds=ceiling)


# The Task fields behind the schedule: validation, defaults, descriptions --------------------------------


def errors_of(**fields) -> dict[str, list[str]]:
    fields.setdefault("func", functions.stamp)
    with pytest.raises(ValidationError) as error:
        Task(**fields).save()
    return error.value.message_dict


@pytest.mark.django_db
@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "0 * * * * *", "garbage"])
def test_an_invalid_cron_is_an_error_on_the_cron_field_with_the_hint(cron):
    errors = errors_of(cron=cron)
    assert list(errors) == ["cron"]
    assert CRON_HINT in errors["cron"][0]
    assert repr(cron) in errors["cron"][0]


@pytest.mark.django_db
def test_a_bad_time_zone_is_an_error_on_the_timezone_field():
    errors = errors_of(cron="30 2 * * *", timezone="Europe/Atlantis")
    assert list(errors) == ["timezone"]
    assert "'Europe/Atlantis' is not a time zone" in errors["timezone"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("expires_after_start", [timedelta(0), timedelta(seconds=-1)])
def test_expires_at_not_after_start_at_is_an_error_on_expires_at(expires_after_start):
    start = T0 + timedelta(days=1)
    errors = errors_of(start_at=start, expires_at=start + expires_after_start)
    assert list(errors) == ["expires_at"]
    assert "expires_at must be after start_at" in errors["expires_at"][0]


@pytest.mark.django_db
def test_max_attempts_zero_is_an_error():
    errors = errors_of(max_attempts=0)
    assert list(errors) == ["max_attempts"]
    assert "1 means no retries" in errors["max_attempts"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["retry_delay", "retry_delay_max"])
@pytest.mark.parametrize("value", [-0.5, math.nan, math.inf])
def test_negative_or_non_finite_retry_delays_are_errors(field, value):
    errors = errors_of(**{field: value})
    assert field in errors
    assert f"{field} must be 0 to" in errors[field][0]


@pytest.mark.django_db
def test_max_runs_on_a_task_that_does_not_loop_is_an_error():
    errors = errors_of(max_runs=3)
    assert list(errors) == ["max_runs"]
    assert "max_runs limits a looping task" in errors["max_runs"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("fields", [{"loop": True, "interval": 5}, {"cron": "*/5 * * * *"}])
def test_max_runs_on_a_looping_or_cron_task_is_fine(fields):
    job = Task(func=functions.stamp, max_runs=3, **fields)
    job.save()
    assert job.max_runs == 3


@pytest.mark.django_db
def test_max_runs_zero_is_an_error():
    errors = errors_of(loop=True, interval=5, max_runs=0)
    assert errors == {"max_runs": ["max_runs must be 1 or more; leave it empty for no limit."]}


@pytest.mark.django_db
def test_a_cron_schedule_implies_loop_and_puts_the_first_run_on_the_calendar():
    job = Task(func=functions.stamp, cron="*/5 * * * *")
    job.save()
    job.refresh_from_db()
    assert job.loop
    assert job.next_run.minute % 5 == 0
    assert job.next_run.second == job.next_run.microsecond == 0
    assert job.next_run > job.created_at - timedelta(seconds=1)


@pytest.mark.django_db
def test_a_cron_task_needs_no_interval_and_can_be_saved_again():
    job = Task(func=functions.stamp, cron="*/5 * * * *", interval=0)
    job.save()
    job.name = "renamed"
    job.save()  # loop is set by now: the interval must still not matter
    job.refresh_from_db()
    assert (job.name, job.loop, job.interval) == ("renamed", True, 0)
    assert list(errors_of(loop=True, interval=0)) == ["interval"]  # without a calendar it matters


@pytest.mark.django_db
@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_a_cron_that_never_fires_is_an_error_on_the_cron_field(cron):
    errors = errors_of(cron=cron)
    assert errors == {"cron": [f"{cron!r} never fires (a date like February 30th); fix the day or month."]}


def test_check_accepts_a_calendar_that_fires_only_in_leap_years():
    schedule.check("0 0 29 2 *", "UTC")
    assert schedule.next_run("0 0 29 2 *", "UTC", utc(2026, 1, 1)) == utc(2028, 2, 29)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"cron": "30 2 * * 1-5", "timezone": "Europe/Berlin"},
            "At 02:30, Monday through Friday (Europe/Berlin)",
        ),
        ({"cron": "*/15 * * * *"}, "Every 15 minutes (UTC)"),
        ({"loop": True, "interval": 60}, "Every 60 seconds"),
        ({"loop": True, "interval": 0.5}, "Every 0.5 seconds"),
        ({}, "Once"),
    ],
)
def test_schedule_description_is_shown_on_the_dashboard(fields, words):
    job = Task(func=functions.stamp, **fields)
    job.save()
    assert job.schedule_description == words
    state = task_state(Task.objects.get(pk=job.pk))
    assert state["schedule"] == words
    assert state["cron"] == fields.get("cron", "")


@pytest.mark.django_db
def test_the_dashboard_state_shows_every_scheduling_field():
    start = T0 + timedelta(days=400)
    job = Task(func=functions.stamp, cron="0 9 * * *", timezone="Europe/Berlin", start_at=start,
               expires_at=start + timedelta(days=1), max_runs=4, catch_up=CatchUp.SKIP, max_attempts=3,
               isolation="process", priority=7, queue="reports")  # fmt: skip
    job.save()
    state = task_state(Task.objects.get(pk=job.pk))
    assert state["timezone"] == "Europe/Berlin"
    assert state["start_at"] == start.timestamp()
    assert state["expires_at"] == (start + timedelta(days=1)).timestamp()
    assert state["next_run"] == utc(2027, 2, 10, 8, 0).timestamp()  # 09:00 CET, the day after start_at
    assert (state["max_runs"], state["run_count"], state["catch_up"]) == (4, 0, "skip")
    assert (state["attempt"], state["max_attempts"]) == (0, 3)
    assert (state["isolation"], state["priority"], state["queue"]) == ("process", 7, "reports")
