"""Tests for app.metrics and /metrics: Prometheus' parser reads it, and its numbers are the database's."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from app import events
from app.metrics import ENDED
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions

pytestmark = pytest.mark.django_db
METRICS = "/metrics"


def make_run(task: Task, status: str, duration: float, late: float = 0.0) -> TaskRun:
    started = timezone.now()
    return TaskRun.objects.create(
        task=task, status=status, duration=duration, started_at=started,
        scheduled_for=started - timedelta(seconds=late), finished_at=started + timedelta(seconds=duration),
    )  # fmt: skip


@pytest.fixture
def history() -> dict[str, Task]:
    adds = Task(name="adds", func=functions.add, args_in={"a": 1}, queue="maths", run_in=3600)
    fails = Task(name="fails", func=functions.fail, run_in=0)
    adds.save()
    fails.save()
    for duration in (0.003, 0.2, 0.2, 7.0):
        make_run(adds, RunStatus.FINISHED, duration, late=0.02)
    make_run(fails, RunStatus.FAILED, 0.04, late=1.5)
    make_run(fails, RunStatus.TIMED_OUT, 31.0)
    Task.objects.filter(pk=fails.pk).update(next_run=timezone.now() - timedelta(seconds=5))
    RunnerProcess.objects.create(worker_id="alive", host="h", pid=1)
    RunnerProcess.objects.create(
        worker_id="silent", host="h", pid=2, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    return {"adds": adds, "fails": fails}


def scrape(client, settings, **conductor) -> dict:
    settings.CONDUCTOR = {"METRICS_ALLOWED_IPS": ["127.0.0.1"], **conductor}
    response = client.get(METRICS)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def samples(family, suffix: str = "") -> dict[tuple, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for sample in family.samples
        if sample.name == family.name + suffix
    }


def test_metrics_are_off_unless_a_token_or_an_address_allows_them(client, settings):
    settings.CONDUCTOR = {}
    assert client.get(METRICS).status_code == 404
    settings.CONDUCTOR = {"METRICS_TOKEN": "s3cret-token", "METRICS_ALLOWED_IPS": ["10.9.9.9"]}
    assert client.get(METRICS).status_code == 404
    assert client.get(METRICS, headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get(METRICS, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_ended_runs_are_counted_by_status_and_queue_as_the_database_has_them(client, settings, history):
    make_run(history["adds"], RunStatus.RUNNING, 0.0)
    runs = samples(scrape(client, settings)["conductor_runs"], "_total")
    expected = {((("queue", q), ("status", s))): 0 for q in ("default", "maths") for s in ENDED}
    for status, queue in TaskRun.objects.exclude(status=RunStatus.RUNNING).values_list("status", "queue"):
        expected[(("queue", queue), ("status", status))] += 1
    assert runs == expected  # every final status of every queue, none for running
    assert runs[(("queue", "maths"), ("status", "finished"))] == 4
    assert runs[(("queue", "maths"), ("status", "cancelled"))] == 0


def test_runs_are_counted_in_the_queue_and_function_they_ran_in(client, settings, history):
    Task.objects.filter(pk=history["adds"].pk).update(queue="moved", func="tests.functions.say")
    families = scrape(client, settings)
    runs = samples(families["conductor_runs"], "_total")
    assert runs[(("queue", "maths"), ("status", "finished"))] == 4
    assert (("queue", "moved"), ("status", "finished")) not in runs
    durations = samples(families["conductor_run_duration_seconds"], "_count")
    assert durations[(("func", "tests.functions.add"),)] == 4


def test_running_runs_are_a_gauge_and_a_run_that_ends_moves_to_the_counter(client, settings, history):
    run = make_run(history["adds"], RunStatus.RUNNING, 0.0)
    families = scrape(client, settings)
    assert samples(families["conductor_runs_running"]) == {
        (("queue", "default"),): 0,
        (("queue", "maths"),): 1,
    }
    assert families["conductor_runs_running"].type == "gauge"
    TaskRun.objects.filter(pk=run.pk).update(status=RunStatus.FINISHED)
    families = scrape(client, settings)
    assert samples(families["conductor_runs_running"])[(("queue", "maths"),)] == 0
    assert samples(families["conductor_runs"], "_total")[(("queue", "maths"), ("status", "finished"))] == 5


def test_durations_are_a_histogram_per_function(client, settings, history):
    family = scrape(client, settings)["conductor_run_duration_seconds"]
    add = "tests.functions.add"
    buckets = {
        dict(key)["le"]: value
        for key, value in samples(family, "_bucket").items()
        if dict(key)["func"] == add
    }
    assert (buckets["0.005"], buckets["0.25"], buckets["5.0"], buckets["10.0"], buckets["+Inf"]) == (
        1,
        3,
        3,
        4,
        4,
    )
    assert samples(family, "_count")[(("func", add),)] == 4
    assert samples(family, "_sum")[(("func", add),)] == pytest.approx(7.403)


def test_claim_latency_is_how_long_due_runs_waited(client, settings, history):
    family = scrape(client, settings)["conductor_claim_latency_seconds"]
    buckets = {dict(key)["le"]: value for key, value in samples(family, "_bucket").items()}
    assert (buckets["0.025"], buckets["1.0"], buckets["2.5"], buckets["+Inf"]) == (5, 5, 6, 6)
    assert samples(family, "_sum")[()] == pytest.approx(4 * 0.02 + 1.5, abs=1e-3)


def test_queue_depth_and_runners_alive_match_the_database(client, settings, history):
    families = scrape(client, settings)
    depth = samples(families["conductor_queue_depth"])
    assert depth[(("queue", "default"), ("state", "due"))] == 1
    assert depth[(("queue", "maths"), ("state", "due"))] == 0
    assert (
        depth[(("queue", "maths"), ("state", "waiting"))]
        == Task.objects.filter(queue="maths", status=TaskStatus.WAITING).count()
    )
    assert samples(families["conductor_runners_alive"])[()] == 1


def test_event_queue_drops_are_each_live_runners_as_recorded_and_this_processs_own(
    client, settings, monkeypatch
):
    RunnerProcess.objects.create(worker_id="busy-one", host="h", pid=1, events_dropped=41)
    RunnerProcess.objects.create(worker_id="calm-one", host="h", pid=2)
    RunnerProcess.objects.create(worker_id="gone", host="h", pid=3, state="stopped", events_dropped=9)

    family = scrape(client, settings)["conductor_event_queue_drops"]

    assert family.type == "counter"
    drops = samples(family, "_total")
    assert drops == {
        (("runner", "busy-one"),): 41,
        (("runner", "calm-one"),): 0,
        (("runner", ""),): events.publisher.dropped,  # this web process, which runs no runner
    }
    monkeypatch.setattr("app.livelayer.runner_in_process", True)  # runtasks --serve: its runner counts them
    assert (("runner", ""),) not in samples(scrape(client, settings)["conductor_event_queue_drops"], "_total")
