"""``/metrics``: Conductor's state in Prometheus' text format, read from the database at each scrape.

Every number is an aggregate computed by the database (GROUP BY with filtered counts), never runs loaded
into Python. Ended runs are counted over the table as it is (``prunetaskruns`` makes the counters drop,
which Prometheus reads as a counter reset); running ones are a gauge, since they come and go.
Event-queue drops are every live runner's, as each recorded them at its last heartbeat, and this web
process's own.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import conf, dbclock, events, livelayer
from .history import depth_by_queue
from .runnerprocess import RunnerProcess
from .status import RunStatus
from .taskrun import TaskRun

#: Upper bounds (seconds) of the run-duration and claim-latency histograms' buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class ConductorCollector(Collector):
    def collect(self) -> Iterator[Any]:
        yield from runs_by_status_and_queue()
        yield run_durations_by_function()
        yield claim_latency()
        yield queue_depth()
        yield runners_alive()
        yield event_queue_drops()


def runs_by_status_and_queue() -> Iterator[Any]:
    """Ended runs as a counter, running ones as a gauge: a run that ends leaves the running count, and a
    counter that went down would read as a reset to Prometheus (rate() would jump)."""
    ended = CounterMetricFamily(
        "conductor_runs", "Runs that ended, by final status and queue.", labels=["status", "queue"]
    )
    running = GaugeMetricFamily("conductor_runs_running", "Runs going on now, by queue.", labels=["queue"])
    for row in _runs_per_queue():
        # Every final status for every queue, zeros too: a series that appears later loses its first increase.
        for status in ENDED:
            ended.add_metric([status, row["queue"]], row[status])
        running.add_metric([row["queue"]], row[RunStatus.RUNNING])
    yield ended
    yield running


#: Run statuses that never change again (everything but running).
ENDED = tuple(status.value for status in RunStatus if status != RunStatus.RUNNING)


def _runs_per_queue() -> list[dict]:
    counts = {status.value: Count("id", filter=Q(status=status)) for status in RunStatus}
    return list(TaskRun.objects.values("queue").annotate(**counts).order_by())


def _histogram(name: str, documentation: str, label: str, rows: list[dict]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=[label] if label else [])
    for row in rows:
        buckets = [(_bound(bound), row[f"le_{i}"]) for i, bound in enumerate(BUCKETS)]
        buckets.append(("+Inf", row["count"]))
        family.add_metric([row[label]] if label else [], buckets, sum_value=row["total"] or 0.0)
    return family


def _bound(bound: float) -> str:
    return repr(float(bound))


def run_durations_by_function() -> HistogramMetricFamily:
    finished = TaskRun.objects.filter(duration__isnull=False)
    counts = {f"le_{i}": Count("id", filter=Q(duration__lte=bound)) for i, bound in enumerate(BUCKETS)}
    rows = finished.values("func").annotate(count=Count("id"), total=Sum("duration"), **counts)
    return _histogram(
        "conductor_run_duration_seconds", "How long finished runs took, by function.", "func",
        list(rows.order_by()),
    )  # fmt: skip


def claim_latency() -> HistogramMetricFamily:
    """From the time a run was due (``scheduled_for``) to its start: how long due work waited."""
    late = ExpressionWrapper(F("started_at") - F("scheduled_for"), output_field=DurationField())
    runs = TaskRun.objects.filter(scheduled_for__isnull=False).annotate(late=late)
    counts = {f"le_{i}": Count("id", filter=Q(late__lte=timedelta(seconds=b))) for i, b in enumerate(BUCKETS)}
    row = runs.aggregate(count=Count("id"), waited=Sum("late"), **counts)
    row["total"] = row["waited"].total_seconds() if row["waited"] else 0.0
    return _histogram("conductor_claim_latency_seconds", "From due to started, per run.", "", [row])


def queue_depth() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "conductor_queue_depth",
        "Tasks by queue: due now, waiting (due or not), running.",
        labels=["queue", "state"],
    )
    for row in depth_by_queue(dbclock.Now()):
        for state in ("due", "waiting", "running"):
            family.add_metric([row["queue"], state], row[state])
    return family


def runners_alive() -> GaugeMetricFamily:
    fresh = dbclock.Now(minus=conf.get().HEARTBEAT_TIMEOUT)  # heartbeats are the database's time
    alive = RunnerProcess.objects.live().filter(heartbeat_at__gte=fresh).count()
    return GaugeMetricFamily("conductor_runners_alive", "Runners whose heartbeat is fresh.", value=alive)


def event_queue_drops() -> CounterMetricFamily:
    """Each live runner's drops as it recorded them at its last heartbeat (its publisher's and its channel
    bridge's queues), and this process's own under ``runner=""`` unless a runner lives in it (``runtasks
    --serve``: its drops are that runner's). A runner restarted under the same worker id counts from 0
    again, which Prometheus reads as a counter reset."""
    family = CounterMetricFamily(
        "conductor_event_queue_drops",
        'Live-state events dropped because a queue was full, by runner ("": this web process).',
        labels=["runner"],
    )
    for worker_id, dropped in RunnerProcess.objects.live().values_list("worker_id", "events_dropped"):
        family.add_metric([worker_id], dropped)
    if not livelayer.runner_in_process:
        family.add_metric([""], events.publisher.dropped)
    return family
