"""A real Runner writes the dashboard's history, and /metrics shows the live events it really dropped."""

import threading
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import events
from app.bridge import QUEUE_SIZE, ChannelBridge
from app.history import HeartbeatSample, QueueDepthSample
from app.runner import Runner, RunnerOptions
from app.runnerprocess import RunnerProcess
from app.task import Task
from tests import functions
from tests.conftest import RunningRunner, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]
TIMEOUT = 20


@pytest.fixture
def bridge(settings) -> Iterator[ChannelBridge]:
    """A runner heartbeating every 0.2 s with the channel bridge runtasks would give it (its own loop)."""
    settings.CONDUCTOR = {"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 5.0}
    bridge = ChannelBridge().start()
    running = RunningRunner(Runner(RunnerOptions(poll=0.2, worker_id="historian"), bridge=bridge)).start()
    yield bridge
    running.stop()
    bridge.stop()


def flood(count: int) -> None:
    for _ in range(count):
        events.publish(events.RUN_LOG, text="noise")


def drop_in_the_publisher() -> None:
    """Hold the pump in a sink while more events come than its queue holds: the publisher drops some."""
    held, release = threading.Event(), threading.Event()

    def slow_sink(event: dict) -> None:
        held.set()
        release.wait(TIMEOUT)

    events.publisher.subscribe(slow_sink)
    try:
        events.publish(events.RUN_LOG, text="the one the sink holds")
        assert held.wait(TIMEOUT)
        flood(events.publisher._queue.maxsize + 10)
    finally:
        events.publisher.unsubscribe(slow_sink)
        release.set()


def drop_in_the_bridge(bridge: ChannelBridge) -> None:
    """Hold the bridge's loop while the pump hands it more events than its queue holds: it drops some."""
    release = threading.Event()
    bridge.loop.call_soon_threadsafe(release.wait, TIMEOUT)
    try:
        for _ in range(3):
            flood(QUEUE_SIZE // 2)
            assert events.publisher.flush(TIMEOUT)  # each batch is a callback waiting behind the hold
    finally:
        release.set()


def test_a_runner_samples_at_heartbeats_and_metrics_show_the_drops_it_recorded(bridge, client, settings):
    Task(func=functions.add, args_in={"a": 1}, queue="history", run_in=3600).save()
    record = RunnerProcess.objects.get(worker_id="historian")
    wait_until(lambda: HeartbeatSample.objects.filter(runner=record).count() >= 2, TIMEOUT)
    depth = wait_until(lambda: QueueDepthSample.objects.filter(queue="history").first(), TIMEOUT)
    assert (depth.waiting, depth.due, depth.running) == (1, 0, 0)

    publisher_before, bridge_before = events.publisher.dropped, bridge.dropped
    drop_in_the_publisher()
    drop_in_the_bridge(bridge)
    assert events.publisher.dropped > publisher_before
    assert wait_until(lambda: bridge.dropped > bridge_before, TIMEOUT)

    def recorded() -> int:
        return RunnerProcess.objects.get(pk=record.pk).events_dropped

    # Once the bridge has sent what it queued, nothing more is dropped and a heartbeat records the sum.
    wait_until(lambda: recorded() == events.publisher.dropped + bridge.dropped, TIMEOUT)
    wait_until(lambda: HeartbeatSample.objects.filter(runner=record, events_dropped=recorded()).exists())

    settings.CONDUCTOR = {**settings.CONDUCTOR, "METRICS_ALLOWED_IPS": ["127.0.0.1"]}
    text = client.get("/metrics").content.decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "conductor_event_queue_drops"]
    drops = {sample.labels["runner"]: sample.value for sample in family.samples}
    assert drops["historian"] == recorded() == events.publisher.dropped + bridge.dropped
    assert drops[""] == events.publisher.dropped  # this process, which serves no runner of its own
