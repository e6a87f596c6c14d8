"""The history runners write at heartbeats (app.runner.samples.Samples, app.history): on a real database."""

import logging
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app.history import DEPTH_BUCKET, PRUNE_BATCH, HeartbeatSample, QueueDepthSample, bucket_of
from app.lifecycle import sign_in
from app.runner.samples import PRUNE_EVERY, Samples
from app.runnerprocess import RunnerProcess
from app.task import Task
from tests import functions

pytestmark = pytest.mark.django_db
SETTINGS = SimpleNamespace(HISTORY_RETENTION=4500.0)
NOW = 1000.0


def beaten(worker_id: str, busy: int = 0, dropped: int = 0) -> RunnerProcess:
    """A runner that has just heartbeat: its row as ``RunnerProcess.heartbeat`` leaves it."""
    record = sign_in(worker_id, threads=4)
    record.heartbeat([{"run": n} for n in range(busy)], clock_offset=0.25, events_dropped=dropped)
    return record


def tasks_in(queue: str, count: int, **fields) -> None:
    for _ in range(count):
        Task(func=functions.add, args_in={"a": 1}, queue=queue, **fields).save()


def test_a_sample_records_the_runner_as_its_heartbeat_wrote_it_and_the_queues_depth():
    tasks_in("mail", 2)
    tasks_in("reports", 1, run_in=3600)
    record = beaten("me", busy=3, dropped=12)
    before = time.time()

    Samples(SETTINGS, "me").take(record, NOW)

    [beat] = HeartbeatSample.objects.filter(runner=record).values(
        "busy", "threads", "clock_offset", "events_dropped", "at"
    )
    assert (beat["busy"], beat["threads"], beat["clock_offset"], beat["events_dropped"]) == (3, 4, 0.25, 12)
    assert abs((timezone.now() - beat["at"]).total_seconds()) < 5
    assert RunnerProcess.objects.get(pk=record.pk).events_dropped == 12  # what /metrics reads
    depth = {row.queue: (row.due, row.waiting, row.running) for row in QueueDepthSample.objects.all()}
    assert depth == {"mail": (2, 2, 0), "reports": (0, 1, 0)}
    [bucket] = {row.bucket for row in QueueDepthSample.objects.all()}
    # The database's time: this clock plus the offset the heartbeat measured (0.25 s, see beaten()).
    assert bucket in {bucket_of(before + 0.25), bucket_of(time.time() + 0.25)}


def test_the_depth_is_sampled_once_per_bucket_by_whichever_runner_comes_first():
    tasks_in("default", 1)
    first, second = beaten("first"), beaten("second")
    Samples(SETTINGS, "first").take(first, NOW)

    with CaptureQueriesContext(connection) as queries:
        Samples(SETTINGS, "second").take(second, NOW)

    assert QueueDepthSample.objects.count() == 1
    assert HeartbeatSample.objects.count() == 2  # each runner's own, every heartbeat
    assert not [q["sql"] for q in queries if "GROUP BY" in q["sql"]], "the second runner ran the GROUP BY"


def test_two_runners_racing_for_a_bucket_keep_the_first_row():
    bucket = bucket_of(time.time())
    tasks_in("default", 1)
    QueueDepthSample.objects.create(bucket=bucket, queue="default", waiting=99)  # the other runner's row

    QueueDepthSample.objects.write(bucket)  # past the existence check, as a runner that raced it

    [row] = QueueDepthSample.objects.all()
    assert row.waiting == 99


def test_buckets_are_depth_bucket_seconds_on_the_epoch():
    assert bucket_of(DEPTH_BUCKET * 1000 + DEPTH_BUCKET - 0.001).timestamp() == DEPTH_BUCKET * 1000
    assert bucket_of(DEPTH_BUCKET * 1000).timestamp() == DEPTH_BUCKET * 1000


def test_a_prune_deletes_what_is_older_than_the_retention_a_bounded_batch_at_a_time():
    record = beaten("me")
    old = timezone.now() - timedelta(seconds=SETTINGS.HISTORY_RETENTION + 60)
    HeartbeatSample.objects.bulk_create(
        [HeartbeatSample(runner=record, at=old - timedelta(seconds=n)) for n in range(PRUNE_BATCH + 5)]
    )
    QueueDepthSample.objects.create(bucket=old, queue="default")
    samples = Samples(SETTINGS, "me")

    samples.take(record, NOW)

    assert HeartbeatSample.objects.filter(at__lte=old).count() == 5  # the oldest went first
    assert not QueueDepthSample.objects.filter(bucket=old).exists()
    samples.take(record, NOW + 1)  # a full batch was deleted: the next heartbeat goes on
    assert HeartbeatSample.objects.count() == 2  # the two samples just taken are kept
    samples.take(record, NOW + 2)
    assert samples.prune_at == NOW + 1 + PRUNE_EVERY  # nothing was left: once a minute again


@pytest.mark.django_db(transaction=True)  # autocommit, as the runner writes: a refused write ends there
def test_a_sample_the_database_refuses_is_logged_once_and_skipped(caplog):
    record = beaten("me")
    record.events_dropped = -1  # outside the column's CHECK: the database refuses the sample
    samples = Samples(SETTINGS, "me")

    with caplog.at_level(logging.INFO, logger="conductor.runner"):
        samples.take(record, NOW)
        samples.take(record, NOW + 5)
        record.events_dropped = 0
        samples.take(record, NOW + 10)

    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "could not write the dashboard's history" in m]) == 1
    assert any("writes the dashboard's history again" in m for m in messages)
    assert HeartbeatSample.objects.filter(runner=record).count() == 1
