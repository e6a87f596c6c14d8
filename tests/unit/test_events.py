"""Tests for app.events: publish never blocks, full queues drop and count, sinks are isolated."""

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings

from app import events
from app.events import Publisher, Recorder

TIMEOUT = 5


class BlockingSink:
    """A sink that holds the pump on its first event until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: events.Event) -> None:
        self.entered.set()
        self.release.wait(TIMEOUT)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def blocked_publisher() -> Iterator[tuple[Publisher, BlockingSink, Recorder]]:
    """A fresh Publisher (queue of 3) whose pump is stuck in a sink until the test releases it."""
    sink, recorder = BlockingSink(), Recorder()
    publisher = Publisher(maxsize=3)
    publisher.subscribe(sink)
    publisher.subscribe(recorder)
    try:
        yield publisher, sink, recorder
    finally:
        sink.release.set()
        assert publisher.flush(TIMEOUT)


@pytest.fixture
def event_log() -> Iterator[ListHandler]:
    """Records of the conductor.events logger (which does not propagate to the root logger)."""
    handler = ListHandler()
    logger = logging.getLogger("conductor.events")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def publish_from_another_thread(publisher: Publisher, count: int) -> None:
    """Publish ``count`` events on a helper thread; fail if publish() does not return promptly."""
    thread = threading.Thread(
        target=lambda: [publisher.publish("test.event", n=n) for n in range(count)],
        name="publisher",
        daemon=True,
    )
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "publish() blocked"


def test_publish_returns_while_a_sink_is_blocked(blocked_publisher):
    publisher, sink, recorder = blocked_publisher

    publish_from_another_thread(publisher, 1)
    assert sink.entered.wait(TIMEOUT)
    publish_from_another_thread(publisher, 10)

    assert not sink.release.is_set()
    assert recorder.events == []


@override_settings(CONDUCTOR={"EVENT_QUEUE_SIZE": 100})  # maxsize=3 wins
def test_full_queue_drops_and_counts_events(blocked_publisher):
    publisher, sink, recorder = blocked_publisher
    publisher.publish("test.event", n=0)
    assert sink.entered.wait(TIMEOUT)  # the pump holds event 0; the queue is empty again

    for n in range(1, 6):
        publisher.publish("test.event", n=n)

    assert publisher.dropped == 2
    sink.release.set()
    assert publisher.flush(TIMEOUT)
    assert [event["n"] for event in recorder.events] == [0, 1, 2, 3]


def fill_while_blocked(publisher: Publisher, count: int) -> int:
    """Publish event 0 (held by a blocked sink), then ``count`` more; return how many were dropped."""
    sink = BlockingSink()
    publisher.subscribe(sink)
    try:
        publisher.publish("test.event", n=0)
        assert sink.entered.wait(TIMEOUT)  # the pump holds event 0; the queue is empty again
        for n in range(1, count + 1):
            publisher.publish("test.event", n=n)
        return publisher.dropped
    finally:
        sink.release.set()
        assert publisher.flush(TIMEOUT)


@override_settings(CONDUCTOR={"EVENT_QUEUE_SIZE": 2})
def test_queue_size_comes_from_the_settings_by_default():
    assert fill_while_blocked(Publisher(), 4) == 2


@override_settings(CONDUCTOR={"EVENT_QUEUE_SIZE": 2})
def test_queue_size_is_read_when_the_first_event_is_published():
    publisher = Publisher()

    with override_settings(CONDUCTOR={"EVENT_QUEUE_SIZE": 3}):
        assert fill_while_blocked(publisher, 5) == 2


@pytest.mark.parametrize("maxsize", [1, 4])
@override_settings(CONDUCTOR={"EVENT_QUEUE_SIZE": 2})
def test_a_given_maxsize_is_kept_over_the_settings(maxsize):
    assert fill_while_blocked(Publisher(maxsize=maxsize), 6) == 6 - maxsize


def test_flush_reports_a_timeout_while_a_sink_is_blocked(blocked_publisher):
    publisher, sink, _ = blocked_publisher
    publisher.publish("test.event")
    assert sink.entered.wait(TIMEOUT)

    assert publisher.flush(timeout=0.05) is False
    sink.release.set()
    assert publisher.flush(TIMEOUT) is True


def test_events_carry_type_time_and_data():
    recorder = Recorder()
    publisher = Publisher(maxsize=10)
    publisher.subscribe(recorder)

    publisher.publish("test.event", task_id="t-1", n=3)

    event = recorder.wait_for(lambda e: e["type"] == "test.event", timeout=TIMEOUT)
    assert event["task_id"] == "t-1"
    assert event["n"] == 3
    assert isinstance(event["at"], float)


def test_events_are_timed_by_the_databases_clock_as_the_runner_measured_it():
    recorder = Recorder()
    publisher = Publisher(maxsize=10)
    publisher.subscribe(recorder)
    publisher.clock_offset = 30.0  # this process's clock is 30 s behind the database's

    before = time.time()
    publisher.publish("test.event")
    after = time.time()

    at = recorder.wait_for(lambda e: e["type"] == "test.event", timeout=TIMEOUT)["at"]
    assert before + 30 <= at <= after + 30
    assert publisher.database_time(100.0) == 130.0


def test_failing_sink_is_logged_and_other_sinks_still_receive(event_log):
    def broken(event: events.Event) -> None:
        raise RuntimeError("sink is broken")

    recorder = Recorder()
    publisher = Publisher(maxsize=10)
    publisher.subscribe(broken)
    publisher.subscribe(recorder)

    publisher.publish("test.first")
    publisher.publish("test.second")

    recorder.wait_for(lambda e: e["type"] == "test.second", timeout=TIMEOUT)
    assert [e["type"] for e in recorder.events] == ["test.first", "test.second"]
    failures = [r for r in event_log.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        f"Event sink {broken!r} failed on test.first",
        f"Event sink {broken!r} failed on test.second",
    ]
    assert failures[0].exc_info[0] is RuntimeError


def test_unsubscribed_sink_receives_nothing_more():
    recorder, other = Recorder(), Recorder()
    publisher = Publisher(maxsize=10)
    publisher.subscribe(recorder)
    publisher.subscribe(other)
    publisher.publish("test.before")
    recorder.wait_for(lambda e: e["type"] == "test.before", timeout=TIMEOUT)

    publisher.unsubscribe(recorder)
    publisher.publish("test.after")

    other.wait_for(lambda e: e["type"] == "test.after", timeout=TIMEOUT)
    assert [e["type"] for e in recorder.events] == ["test.before"]


# --- the module-level publisher: publish() and recording() ---------------------------------------


def test_recording_receives_published_events():
    token = uuid.uuid4().hex

    with events.recording() as recorder:
        events.publish(events.TASK_FINISHED, token=token, task_id="t-1")
        event = recorder.wait_for(lambda e: e.get("token") == token, timeout=TIMEOUT)

    assert event["type"] == events.TASK_FINISHED
    assert event["task_id"] == "t-1"
    assert recorder.of_type(events.TASK_FINISHED) == [event]


def test_recording_stops_at_the_end_of_the_block():
    with events.recording() as recorder:
        pass
    events.publish("test.after_recording", token="late")
    assert events.publisher.flush(TIMEOUT)

    assert recorder.events == []


def test_recorder_wait_for_returns_an_event_already_recorded():
    recorder = Recorder()
    recorder({"type": "a", "n": 1})
    recorder({"type": "b", "n": 2})

    assert recorder.wait_for(lambda e: e["n"] == 2, timeout=0) == {"type": "b", "n": 2}
    assert recorder.of_type("a") == [{"type": "a", "n": 1}]


def test_recorder_wait_for_is_woken_by_a_later_event():
    recorder = Recorder()
    waiting = threading.Event()
    thread = threading.Thread(target=lambda: (waiting.wait(TIMEOUT), recorder({"type": "late"})))
    thread.start()

    waiting.set()
    event = recorder.wait_for(lambda e: e["type"] == "late", timeout=TIMEOUT)

    thread.join(TIMEOUT)
    assert event == {"type": "late"}


def test_recorder_wait_for_times_out():
    recorder = Recorder()
    recorder({"type": "other"})

    with pytest.raises(TimeoutError, match=r"no matching event within 0\.05 s"):
        recorder.wait_for(lambda e: e["type"] == "never", timeout=0.05)


def test_listening_only_when_someone_would_receive_an_event():
    logger = logging.getLogger("conductor.events")
    level = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert events.listening() is False  # the log sink alone, and it drops debug records
        with events.recording():
            assert events.listening() is True
        logger.setLevel(logging.DEBUG)
        assert events.listening() is True  # the log itself wants them
    finally:
        logger.setLevel(level)


def test_a_batch_sink_gets_a_burst_in_order_and_plain_sinks_each_event():
    publisher = Publisher(maxsize=1000)
    batches: list[list[dict]] = []
    recorder = events.Recorder()
    publisher.subscribe_batches(batches.append)
    publisher.subscribe(recorder)
    for n in range(200):
        publisher.publish("test.event", n=n)
    assert publisher.flush(TIMEOUT)
    assert [e["n"] for batch in batches for e in batch] == list(range(200))
    assert len(batches) < 200  # bursts are handed over together
    assert [e["n"] for e in recorder.events] == list(range(200))
