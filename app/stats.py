"""The dashboard's charts: aggregates computed by the database, never runs loaded into Python.

Runs per minute by outcome (and queue) over the last hour, the queue depth now and as runners sampled it
over the last hour (app/history.py), a runner's heartbeats over the last hour, and run-duration
percentiles per function over the last hour (CUME_DIST over an index-ordered window).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Min, Q, Window
from django.db.models.functions import CumeDist, TruncMinute

from . import conf, dbclock
from .history import HeartbeatSample, QueueDepthSample, depth_by_queue
from .runnerprocess import RunnerProcess
from .status import RunStatus
from .taskrun import TaskRun

WINDOW = timedelta(seconds=conf.CHARTS_WINDOW)
CHARTED_OUTCOMES = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.TIMED_OUT)
PERCENTILES = (0.5, 0.95, 0.99)
#: Functions with the most runs in the window that get percentiles (a chart has room for so many).
TOP_FUNCTIONS = 10
#: Most heartbeats of one runner answered: an hour of the default 5 s heartbeat.
HEARTBEAT_POINTS = 720


def charts(now: datetime | None = None, since: float | None = None) -> dict[str, Any]:
    now = now or dbclock.now()  # run times are written by the database's clock
    return {
        "at": now.timestamp(),
        "runs_per_minute": runs_per_minute(now),
        "queue_depth": queue_depth(now),
        "queue_depth_history": depth_history(now, since),
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
    """[{queue, due, waiting, running}] now: the newest point of the depth chart."""
    return depth_by_queue(now)


def depth_history(now: datetime, since: float | None = None) -> list[dict[str, Any]]:
    """[{at, queue, due, waiting, running}] of each bucket runners sampled in the last hour, after
    ``since`` (epoch seconds) when given: a page that has the older ones asks only for what is new."""
    samples = QueueDepthSample.objects.filter(bucket__gte=now - WINDOW)  # a range of the unique index
    if since is not None:
        samples = samples.filter(bucket__gt=datetime.fromtimestamp(since, tz=UTC))
    rows = samples.order_by("bucket", "queue").values("bucket", "queue", "due", "waiting", "running")
    return [{"at": row.pop("bucket").timestamp(), **row} for row in rows]


def heartbeats(runner: RunnerProcess, now: datetime, since: float | None = None) -> list[dict[str, Any]]:
    """[{at, busy, threads, clock_offset, events_dropped}] of the runner's heartbeats in the last hour
    (after ``since`` when given), oldest first: the newest HEARTBEAT_POINTS of them."""
    samples = HeartbeatSample.objects.filter(runner=runner, at__gte=now - WINDOW)  # index (runner, at)
    if since is not None:
        samples = samples.filter(at__gt=datetime.fromtimestamp(since, tz=UTC))
    newest = samples.order_by("-at").values("at", "busy", "threads", "clock_offset", "events_dropped")
    return [{**row, "at": row["at"].timestamp()} for row in reversed(newest[:HEARTBEAT_POINTS])]


def duration_percentiles(now: datetime) -> list[dict[str, Any]]:
    """[{func, runs, p50, p95, p99}] for the busiest functions of the last hour."""
    recent = TaskRun.objects.filter(finished_at__gte=now - WINDOW, duration__isnull=False)
    busiest = list(recent.values("func").annotate(runs=Count("id")).order_by("-runs", "func")[:TOP_FUNCTIONS])
    if not busiest:
        return []
    ranked = recent.filter(func__in=[row["func"] for row in busiest]).annotate(
        share=Window(CumeDist(), partition_by=F("func"), order_by=F("duration").asc())
    )
    by_function = {row["func"]: {"func": row["func"], "runs": row["runs"]} for row in busiest}
    for quantile in PERCENTILES:
        # The nearest-rank percentile: the smallest duration with at least that share of runs at or below
        # it (a share, not PERCENT_RANK's rank: that is 0 for a function's only run, or for equal runs).
        at_or_above = ranked.filter(share__gte=quantile).values("pk")  # a window can be filtered, not grouped
        rows = TaskRun.objects.filter(pk__in=at_or_above).values("func").annotate(at=Min("duration"))
        for row in rows.order_by():
            by_function[row["func"]][f"p{round(quantile * 100)}"] = row["at"]
    return list(by_function.values())
