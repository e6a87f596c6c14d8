"""Tests for app.bridge: group names, cut-down values, and a ChannelBridge on its own loop delivering events.

The bridge's in-memory layer is only used from the bridge's loop: the test reaches it with
``asyncio.run_coroutine_threadsafe(..., bridge.loop)``.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from app import bridge, events
from app.bridge import (
    BATCH_SIZE,
    TEXT_LIMIT,
    ChannelBridge,
    layer_reaches_other_processes,
    runner_group,
    shorten,
)
from app.fanout import FEED_GROUP

TIMEOUT = 5


# Names and values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "worker_id", ["host-1234", "", "a b/c:d?*", "ünïcödé-ワーカー", "x" * 1000, "conductor.runner.x"]
)
def test_runner_group_is_a_valid_group_name_for_any_worker_id(worker_id):
    name = runner_group(worker_id)
    assert name.isascii()
    assert len(name) < 100
    assert InMemoryChannelLayer().require_valid_group_name(name)
    assert runner_group(worker_id) == name  # stable: every process computes the same


def test_runner_groups_differ_between_worker_ids():
    ids = ["host-1", "host-2", "Host-1", "host-1 ", "x" * 1000, "x" * 999]
    assert len({runner_group(i) for i in ids}) == len(ids)


def test_runner_group_is_fixed_across_releases():
    # Runners and web servers of one deployment must agree on it: pin the scheme.
    digest = hashlib.sha1(b"host-1").hexdigest()[:24]
    assert runner_group("host-1") == f"conductor.runner.{digest}"


def test_shorten_keeps_small_values_as_they_are():
    value = {"a": [1, 2, 3], "b": "text"}
    assert shorten(value) is value
    assert shorten("x" * TEXT_LIMIT) == "x" * TEXT_LIMIT
    assert shorten(None) is None
    assert shorten(42) == 42
    assert shorten(2.5) == 2.5
    assert shorten(True) is True


def test_shorten_cuts_long_text():
    cut = shorten("y" * 10_000)
    assert len(cut) <= TEXT_LIMIT
    assert cut.startswith("yyy")
    assert cut.endswith(" ...[cut]")
    assert shorten("abcdefghijklmnopqrstuvwxyz" * 3, limit=40) == "abcdefghijklmnopqrst ...[cut]"


def test_shorten_turns_a_large_value_into_cut_json_text():
    cut = shorten({"rows": list(range(5000)), "when": object()})
    assert isinstance(cut, str)
    assert len(cut) <= TEXT_LIMIT
    assert cut.startswith('{"rows": [0, 1, 2')
    assert cut.endswith(" ...[cut]")


def test_the_in_memory_layer_does_not_reach_other_processes():
    assert layer_reaches_other_processes(InMemoryChannelLayer()) is False
    assert layer_reaches_other_processes(object()) is True  # e.g. channels-redis


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="the settings' layer is Redis")
def test_the_default_layer_of_these_settings_is_in_memory():
    assert layer_reaches_other_processes() is False


# A bridge on its own loop -------------------------------------------------------------------------


class OwnLoopBridge:
    """A started ChannelBridge with its own loop and layer, and ways to use the layer on that loop."""

    def __init__(self) -> None:
        self.layer = InMemoryChannelLayer()
        self.bridge = ChannelBridge(layer=self.layer).start()

    def call(self, coroutine: Any, timeout: float = TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.bridge.loop).result(timeout)

    def member(self, group: str = FEED_GROUP) -> str:
        channel = self.call(self.layer.new_channel())
        self.call(self.layer.group_add(group, channel))
        return channel

    def receive(self, channel: str, timeout: float = TIMEOUT) -> dict:
        return self.call(self.layer.receive(channel), timeout)

    def receive_until(self, channel: str, predicate: Any) -> list[dict]:
        messages = []
        while not predicate(messages):
            messages.append(self.receive(channel))
        return messages

    def nothing_waiting(self, channel: str) -> bool:
        async def empty() -> bool:
            return channel not in self.layer.channels or self.layer.channels[channel].empty()

        return self.call(empty())


@pytest.fixture
def own() -> Iterator[OwnLoopBridge]:
    started = OwnLoopBridge()
    yield started
    started.bridge.stop()
    assert not started.bridge._thread.is_alive()
    started.bridge.loop.close()  # stop() leaves its own loop open (see the report)


def publish_marked(kind: str, marker: str, **data: Any) -> None:
    events.publish(kind, marker=marker, **data)


def frame_of(message: dict) -> dict:
    """The page's frame a bridge's group message carries (encoded once, sent to pages as is)."""
    assert message["type"] == "conductor.events"
    return json.loads(message["frame"])


def events_in(messages: list[dict], marker: str) -> list[dict]:
    return [e for m in messages for e in frame_of(m)["events"] if e.get("marker") == marker]


def test_published_events_reach_every_dashboard(own):
    first, second = own.member(), own.member()
    marker = uuid.uuid4().hex
    publish_marked(events.TASK_CLAIMED, marker, task=1, run=2, state={"id": 1})
    publish_marked(events.THREAD_STARTED, marker, task=1, run=2, thread="t#2")
    for channel in (first, second):
        messages = own.receive_until(channel, lambda got: len(events_in(got, marker)) == 2)
        assert all(m["type"] == "conductor.events" for m in messages)
        claimed, started = events_in(messages, marker)
        assert claimed["type"] == events.TASK_CLAIMED
        assert claimed["state"] == {"id": 1}
        assert started["thread"] == "t#2"
        assert isinstance(claimed["at"], float)


def test_a_task_result_goes_to_its_conn_only(own):
    dashboard = own.member()
    asker = own.call(own.layer.new_channel())  # not in the dashboard group
    marker = uuid.uuid4().hex
    publish_marked(events.TASK_RESULT, marker, conn=asker, task=1, status="finished", output=42)
    publish_marked(events.TASK_RESULT, marker, task=2, status="finished")  # no conn: nobody to tell
    publish_marked(events.TASK_FINISHED, marker, task=1, status="finished")
    result = own.receive(asker)
    assert result["type"] == "task.result"
    assert (result["marker"], result["output"], result["conn"]) == (marker, 42, asker)
    messages = own.receive_until(dashboard, lambda got: events_in(got, marker))
    assert [e["type"] for e in events_in(messages, marker)] == [events.TASK_FINISHED]
    assert own.nothing_waiting(asker)


@contextlib.contextmanager
def holding(loop):
    """The loop blocked (by a callback waiting for an event) until the block ends: what is sent to it
    meanwhile is queued, never handled."""
    held, release = threading.Event(), threading.Event()
    loop.call_soon_threadsafe(lambda: (held.set(), release.wait(TIMEOUT)))
    assert held.wait(TIMEOUT)
    try:
        yield
    finally:
        release.set()


def test_a_burst_of_events_arrives_in_few_group_messages(own):
    dashboard = own.member()
    marker = uuid.uuid4().hex
    count = 2 * BATCH_SIZE + 20
    # Hold the bridge's loop while the burst is published, so that it finds all of it queued.
    with holding(own.bridge.loop):
        for number in range(count):
            publish_marked(events.RUN_LOG, marker, run=1, text=f"line {number}\n")
        assert events.publisher.flush(timeout=TIMEOUT)
    messages = own.receive_until(dashboard, lambda got: len(events_in(got, marker)) == count)
    mine = [m for m in messages if events_in([m], marker)]
    assert [e["text"] for e in events_in(mine, marker)] == [f"line {n}\n" for n in range(count)]  # in order
    assert len(mine) == 3  # full, full, and the 20 left
    assert max(len(frame_of(m)["events"]) for m in mine) == BATCH_SIZE


def test_a_frame_too_large_for_one_message_goes_as_two_in_order(own, monkeypatch):
    monkeypatch.setattr(bridge, "MAX_FRAME", 3000)
    dashboard = own.member()
    marker = uuid.uuid4().hex
    with holding(own.bridge.loop):  # the whole burst is queued before the bridge looks
        for number in range(4):
            publish_marked(events.RUN_LOG, marker, run=1, text=f"{number}" * 1000)
        assert events.publisher.flush(timeout=TIMEOUT)
    messages = own.receive_until(dashboard, lambda got: len(events_in(got, marker)) == 4)
    mine = [m for m in messages if events_in([m], marker)]
    assert [e["text"][0] for e in events_in(mine, marker)] == ["0", "1", "2", "3"]
    assert all(len(m["frame"]) <= 3000 for m in mine)
    seqs = [frame_of(m)["seq"] for m in mine]
    assert seqs == [seqs[0], seqs[0] + 1]  # two halves, and no gap: pages do not resync


def test_long_text_in_events_is_cut(own):
    dashboard = own.member()
    marker = uuid.uuid4().hex
    publish_marked(events.TASK_FAILED, marker, error="E" * 10_000, output={"big": "o" * 10_000})
    [event] = events_in(own.receive_until(dashboard, lambda got: events_in(got, marker)), marker)
    assert len(event["error"]) <= TEXT_LIMIT
    assert event["error"].endswith(" ...[cut]")
    assert isinstance(event["output"], str)  # documented: long fields are cut to text
    assert len(event["output"]) <= TEXT_LIMIT


def test_structured_fields_stay_objects_when_their_text_is_not_ascii(own):
    dashboard = own.member()
    marker = uuid.uuid4().hex
    run_state = {"id": 3, "status": "finished", "output": "ok", "log_tail": "é" * 1000}
    publish_marked(events.TASK_FINISHED, marker, run=3, run_state=run_state)
    [event] = events_in(own.receive_until(dashboard, lambda got: events_in(got, marker)), marker)
    assert isinstance(event["run_state"], dict)
    assert event["run_state"]["status"] == "finished"


def test_send_and_listen(own):
    asker = own.call(own.layer.new_channel())
    own.bridge.send(asker, {"type": "thread.stack", "stack": "..."})
    assert own.receive(asker) == {"type": "thread.stack", "stack": "..."}

    received: list[dict] = []
    got_one = threading.Event()
    own.bridge.listen(["conductor.test-group"], lambda m: (received.append(m), got_one.set()))
    deadline = time.monotonic() + TIMEOUT
    while not own.call(_members(own.layer, "conductor.test-group")):
        assert time.monotonic() < deadline, "the listener never joined its group"
        time.sleep(0.01)
    own.call(own.layer.group_send("conductor.test-group", {"type": "runner.command", "command": "wake"}))
    assert got_one.wait(TIMEOUT)
    assert received == [{"type": "runner.command", "command": "wake"}]
    own.bridge.stop_listening()


async def _members(layer: InMemoryChannelLayer, group: str) -> list[str]:
    return list(layer.groups.get(group, {}))


def test_stop_delivers_what_was_published_before_it():
    own = OwnLoopBridge()
    try:
        dashboard = own.member()
        marker = uuid.uuid4().hex
        for number in range(10):
            publish_marked(events.RUN_LOG, marker, text=str(number))
    finally:
        own.bridge.stop()
        own.bridge.loop.close()
    messages = []
    while dashboard in own.layer.channels and not own.layer.channels[dashboard].empty():
        messages.append(own.layer.channels[dashboard].get_nowait()[1])
    assert [e["text"] for e in events_in(messages, marker)] == [str(n) for n in range(10)]


@pytest.mark.asyncio
async def test_a_bridge_on_the_callers_loop_refuses_a_blocking_stop():
    bridge = ChannelBridge(loop=asyncio.get_running_loop(), layer=InMemoryChannelLayer()).start()
    try:
        with pytest.raises(RuntimeError, match=r"await bridge.aclose\(\)"):
            bridge.stop()
    finally:
        await bridge.aclose()
        await asyncio.sleep(0.01)
    assert bridge.sink_batch not in events.publisher._batch_sinks  # aclose() unsubscribes


def test_stop_unsubscribes_the_bridge_from_events():
    own = OwnLoopBridge()
    own.bridge.stop()
    own.bridge.loop.close()
    subscribed = any(s == own.bridge.sink_batch for s in events.publisher._batch_sinks)
    assert not subscribed


def test_events_are_json(own):
    """What the bridge sends must survive any layer's serialisation (and the browser's JSON.parse)."""
    dashboard = own.member()
    marker = uuid.uuid4().hex
    publish_marked(events.RUNS_RECOVERED, marker, dead_runner="x", runs=[1, 2])
    [event] = events_in(own.receive_until(dashboard, lambda got: events_in(got, marker)), marker)
    assert json.loads(json.dumps(event, allow_nan=False)) == event


def test_group_messages_carry_the_bridge_source_and_consecutive_numbers(own):
    dashboard = own.member()
    marker = uuid.uuid4().hex
    for n in range(3):  # one at a time, so that each goes in a group message of its own
        publish_marked(events.TASK_CHANGED, marker, task=n)
        own.receive_until(dashboard, lambda got, n=n: [e["task"] for e in events_in(got, marker)] == [n])
    publish_marked(events.TASK_CHANGED, marker, task=3)
    last = frame_of(own.receive(dashboard))
    assert last["type"] == "events"
    assert last["source"] == own.bridge.source
    assert last["seq"] == 4  # a page that sees a gap in seq knows it missed a message, and resyncs
