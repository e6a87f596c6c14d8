"""Calendars: when a cron-scheduled task runs next, and how to say its schedule in words.

croniter parses and iterates; cron-descriptor describes. On the day clocks go back, croniter yields a
fixed-hour time twice (02:30 CEST, then 02:30 CET); like classic cron, a job whose hours are fixed runs
once then, while a job on every hour (``*/15 * * * *``) runs in both hours, as the real time has passed.
When clocks go forward, a time that does not exist runs at the first minute after the gap.
"""

import math
import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import get_description
from croniter import CroniterBadDateError, croniter


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message says how to fix it."""


def check(expression: str, timezone_name: str) -> None:
    zone(timezone_name)
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ScheduleError(
            f"{expression!r} is not a cron expression: give five fields, minute hour day month weekday, "
            "e.g. '30 2 * * 1-5' (02:30 on weekdays) or '*/15 * * * *' (every 15 minutes)."
        )
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(
            f"{expression!r} never fires (a date like February 30th); fix the day or month."
        ) from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{name!r} is not a time zone: use an IANA name such as 'UTC' or 'Europe/Berlin'."
        ) from None


def next_run(
    expression: str, timezone_name: str, after: datetime, previous: datetime | None = None
) -> datetime:
    """The first time strictly after ``after`` at which the schedule fires (aware, in UTC's terms)."""
    tz = zone(timezone_name)
    times = croniter(expression, after.astimezone(tz))
    fixed_hours = not expression.split()[1].startswith("*")
    last_wall = previous.astimezone(tz).replace(tzinfo=None) if previous else None
    while True:
        candidate = times.get_next(datetime)
        wall = candidate.replace(tzinfo=None)
        if fixed_hours and last_wall is not None and wall <= last_wall:
            continue  # the same wall-clock time again after clocks went back: once is enough
        return candidate


def describe(expression: str) -> str:
    """e.g. "At 02:30, Monday through Friday"."""
    try:
        return get_description(expression)
    except Exception:  # cron-descriptor raises its own assorted errors on bad input
        return expression


def first_run(task: Any, now: datetime) -> datetime:
    """When a new task first falls due: after run_in, not before start_at, on its calendar if any."""
    start = now + timedelta(seconds=task.run_in or 0)
    if task.start_at and task.start_at > start:
        start = task.start_at
    if task.cron:
        return next_run(task.cron, task.timezone, start - timedelta(microseconds=1))
    return start


def next_loop_run(task: Any, now: datetime, started: datetime | None = None) -> datetime:
    """The run after this period's: no drift, and no burst after downtime.

    The period is the one the run was scheduled for (``period_start``, kept across its retries). When
    the next period has already passed, ``catch_up`` says what happens. "once": a run that started on
    time but overran is followed at once; a run that was itself the late catch-up (it started a period
    or more after its time) is followed one interval after it started, so a catch-up is one run, never
    two. "skip": on at the next period of the original schedule.
    """
    from .status import CatchUp

    scheduled = task.period_start or task.next_run or now
    started = started or scheduled  # unknown: taken as on time
    if task.cron:
        following = next_run(task.cron, task.timezone, scheduled, previous=scheduled)
        if following > now:
            return following
        if task.catch_up == CatchUp.SKIP or following <= started:  # skip, or this run was the catch-up
            return next_run(task.cron, task.timezone, now, previous=scheduled)
        return now
    interval = timedelta(seconds=task.interval)
    following = scheduled + interval
    if following >= now:
        return following
    if task.catch_up == CatchUp.SKIP:
        return scheduled + interval * math.ceil((now - scheduled) / interval)
    if started - scheduled >= interval:  # this run was the catch-up after downtime
        return max(started + interval, now)
    return now


def retry_delay(task: Any, attempt: int) -> float:
    """Seconds before retry number ``attempt``: exponential backoff, capped, with "equal jitter"."""
    doublings = min(attempt - 1, 64)  # beyond that every delay is capped anyway; 2**big overflows a float
    ceiling = min(task.retry_delay * 2**doublings, task.retry_delay_max)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def upcoming(task: Any, count: int = 5) -> list[datetime]:
    """The next ``count`` times a waiting looping task is due (fewer when its window or run limit ends).

    From its ``next_run``: every ``interval`` seconds, or its cron schedule in its time zone.
    """
    if task.next_run is None or (not task.loop and not task.cron):
        return [task.next_run] if task.next_run else []
    remaining = (task.max_runs - task.run_count) if task.max_runs else count
    return [task.next_run, *_following(task, task.next_run, min(count, remaining) - 1)]


def upcoming_while_running(
    task: Any, now: datetime, started: datetime | None, count: int = 5
) -> list[datetime]:
    """The next ``count`` times a looping task that is running now is due, from the slot after this run.

    That slot is the one the runner records when the run ends (``next_loop_run``), taken as if it ended
    now: one interval after the period this run was due for, or the next cron time. The run going on now
    counts against ``max_runs`` (``run_count`` grows only when it ends).
    """
    if not task.loop:  # a cron task is a loop too (Task.save)
        return []
    remaining = (task.max_runs - task.run_count - 1) if task.max_runs else count
    if remaining <= 0:
        return []
    first = next_loop_run(task, now, started)
    if task.expires_at and first >= task.expires_at:
        return []  # it would be expired at its claim, not run
    return [first, *_following(task, first, min(count, remaining) - 1)]


def _following(task: Any, moment: datetime, count: int) -> list[datetime]:
    """Up to ``count`` times after ``moment`` on the task's schedule, ending before its ``expires_at``."""
    times: list[datetime] = []
    while len(times) < count:
        if task.cron:
            moment = next_run(task.cron, task.timezone, moment, previous=moment)
        else:
            moment = moment + timedelta(seconds=task.interval)
        if task.expires_at and moment >= task.expires_at:
            break
        times.append(moment)
    return times
