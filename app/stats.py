"""The dashboard's charts: aggregates computed by the database, never runs loaded into Python.

Runs per minute by outcome (and queue) over the last hour, the queue depth now, and run-duration
percentiles per function over the last hour (PERCENT_RANK over an index-ordered window).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Min, Q, Window
from django.db.models.functions import PercentRank, TruncMinute

from . import dbclock
from .status import RunStatus, TaskStatus
from .task import Task
from .taskrun import TaskRun

WINDOW = timedelta(hours=1)
CHARTED_OUTCOMES = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.TIMED_OUT)
PERCENTILES = (0.5, 0.95, 0.99)
#: Functions with the most runs in the window that get percentiles (a chart has room for so many).
TOP_FUNCTIONS = 10


def charts(now: datetime | None = None) -> dict[str, Any]:
    now = now or dbclock.now()  # run times are written by the database's clock
    return {
        "at": now.timestamp(),
        "runs_per_minute": runs_per_minute(now),
        "queue_depth": queue_depth(now),
        "durations": duration_percentiles(now),
    }


def runs_per_minute(now: datetime) -> list[dict[str, Any]]:
    """[{minute, queue, finished, failed, timed_out}] for each minute of the last hour that had runs."""
    recent = TaskRun.objects.filter(finished_at__gte=now - WINDOW, status__in=CHARTED_OUTCOMES)
    counts = {str(status): Count("id", filter=Q(status=status)) for status in CHARTED_OUTCOMES}
    rows = (
        recent.annotate(minute=TruncMinute("finished_at"))
        .values("minute", "queue")
        .annotate(**counts)
        .order_by("minute", "queue")
    )
    return [
        {"minute": row["minute"].timestamp(), "queue": row["queue"],
         **{str(status): row[str(status)] for status in CHARTED_OUTCOMES}}
        for row in rows
    ]  # fmt: skip


def queue_depth(now: datetime) -> list[dict[str, Any]]:
    """[{queue, due, waiting, running}] now; the page keeps the series as it polls."""
    rows = Task.objects.values("queue").annotate(
        due=Count("id", filter=Q(status=TaskStatus.WAITING, paused=False, next_run__lte=now)),
        waiting=Count("id", filter=Q(status=TaskStatus.WAITING)),
        running=Count("id", filter=Q(status=TaskStatus.RUNNING)),
    )
    return list(rows.order_by("queue"))


def duration_percentiles(now: datetime) -> list[dict[str, Any]]:
    """[{func, runs, p50, p95, p99}] for the busiest functions of the last hour."""
    recent = TaskRun.objects.filter(finished_at__gte=now - WINDOW, duration__isnull=False)
    busiest = list(recent.values("func").annotate(runs=Count("id")).order_by("-runs", "func")[:TOP_FUNCTIONS])
    if not busiest:
        return []
    ranked = recent.filter(func__in=[row["func"] for row in busiest]).annotate(
        rank=Window(PercentRank(), partition_by=F("func"), order_by=F("duration").asc())
    )
    by_function = {row["func"]: {"func": row["func"], "runs": row["runs"]} for row in busiest}
    for quantile in PERCENTILES:
        # The smallest duration at or above the quantile's rank: the nearest-rank percentile.
        at_or_above = ranked.filter(rank__gte=quantile).values("pk")  # a window can be filtered, not grouped
        rows = TaskRun.objects.filter(pk__in=at_or_above).values("func").annotate(at=Min("duration"))
        for row in rows.order_by():
            by_function[row["func"]][f"p{round(quantile * 100)}"] = row["at"]
    return list(by_function.values())
