"""The channel-layer end of the live-state seam.

One ``ChannelBridge`` per process runs on one long-lived event loop (its own thread, or the web server's
loop when the runner serves the dashboard itself): channels-redis ties its connections to a loop, so a
fresh loop per message would open fresh connections each time. Events from ``app.events`` are batched
(bursts become one group message) and sent to every dashboard; results go to the ``conn`` that asked for
them; commands for the runner arrive on its own channel.
"""

import asyncio
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from . import events
from .fanout import FEED_GROUP
from .livelayer import layer_reaches_other_processes
from .snapshot import TEXT_LIMIT, page_event, shorten, shorten_event

__all__ = ["DASHBOARD_GROUP", "RUNNERS_GROUP", "TEXT_LIMIT", "ChannelBridge", "layer_reaches_other_processes",
           "runner_group", "shorten", "shorten_event"]  # fmt: skip

logger = logging.getLogger("conductor.bridge")

DASHBOARD_GROUP = "conductor.dashboard"
RUNNERS_GROUP = "conductor.runners"
#: Most events in one group message. Channel layers cap a message at 1 MB, so a frame over MAX_FRAME
#: characters is sent as two halves.
BATCH_SIZE = 500
MAX_FRAME = 512 * 1024
#: While a burst is on (LINGER_FROM events or more came at once), the sender waits this long for more of
#: it: fewer, larger frames for every page. A few events at a time go out at once.
LINGER = 0.01
LINGER_FROM = 16
QUEUE_SIZE = 10000
#: Group memberships expire in channels-redis (a day by default); renew them well before.
GROUP_RENEWAL = 3600


def runner_group(worker_id: str) -> str:
    """A valid group name (ASCII, < 100 characters) for any worker id."""
    return "conductor.runner." + hashlib.sha1(worker_id.encode()).hexdigest()[:24]


def encode_frame(live: list[dict], source: str, seq: int) -> str:
    """A browser ``events`` message as JSON text, encoded once for every page that gets it."""
    page = {"type": "events", "events": live, "source": source, "seq": seq}
    return json.dumps(page, default=str, ensure_ascii=False, separators=(",", ":"))


class ChannelBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, layer: Any = None) -> None:
        self.layer = layer or get_channel_layer()
        self._own_loop = loop is None
        self.loop = loop or asyncio.new_event_loop()
        self._queue: asyncio.Queue[dict] = asyncio.Queue(QUEUE_SIZE)  # binds to a loop on first use
        self._tasks: list[asyncio.Future] = []
        self._listener: Any = None
        # Pages see gaps in (source, seq) and resync: group messages can be dropped when a channel is full.
        self.source = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._thread: threading.Thread | None = None
        self.dropped = 0
        #: Called (on the loop) with why the layer cannot be reached, and with "" once it can again.
        self.on_health: Callable[[str], None] | None = None
        self.problem = ""

    def start(self) -> "ChannelBridge":
        if self._own_loop:
            self._thread = threading.Thread(
                target=self.loop.run_forever, name="conductor-bridge", daemon=True
            )
            self._thread.start()
        self._tasks.append(self._submit(self._send_batches()))
        events.publisher.subscribe_batches(self.sink_batch)
        return self

    def stop(self) -> None:
        """Deliver what is queued, then stop. From the bridge's own loop, ``await aclose()`` instead."""
        if self._on_own_loop():
            raise RuntimeError("ChannelBridge.stop() would block its own loop; use `await bridge.aclose()`")
        events.publisher.flush(timeout=2)
        self._submit(self.aclose()).result(timeout=5)
        if self._own_loop:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self.loop.close()

    async def aclose(self) -> None:
        events.publisher.unsubscribe(self.sink_batch)
        try:  # what the sender has taken is delivered too, not only what is still queued
            await asyncio.wait_for(self._queue.join(), timeout=5)
        except TimeoutError:
            logger.warning("Some live events were not delivered before the bridge closed")
        for task in [*self._tasks, self._listener]:
            if task is not None:
                task.cancel()
        self._tasks, self._listener = [], None

    def _on_own_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    # From any thread --------------------------------------------------------------------------

    def sink_batch(self, batch: list[dict]) -> None:
        """A batch sink: one wake-up of the loop for a whole burst of events."""
        self.loop.call_soon_threadsafe(self._enqueue_many, batch)

    def send(self, channel: str, message: dict) -> None:
        self._submit(self._guarded(self.layer.send(channel, message)))

    def listen(self, groups: list[str], on_message: Callable[[dict], None]) -> None:
        """Receive messages sent to ``groups`` and hand each to ``on_message`` (on the loop)."""
        self._listener = self._submit(self._receive(groups, on_message))

    def listen_as_runner(self, worker_id: str, on_message: Callable[[dict], None]) -> None:
        """Receive the commands for runner ``worker_id`` and for every runner (``listen`` to both groups)."""
        self.listen([runner_group(worker_id), RUNNERS_GROUP], on_message)

    def stop_listening(self) -> None:
        if self._listener is not None:
            self.loop.call_soon_threadsafe(self._listener.cancel)
            self._listener = None

    def _submit(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    # On the loop ------------------------------------------------------------------------------

    def _enqueue_many(self, batch: list[dict]) -> None:
        for event in batch:
            self._enqueue(event)

    def _enqueue(self, event: dict) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1  # pages resync from the database; the runner must not wait

    async def _send_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._take_queued(batch)
            if LINGER_FROM <= len(batch) < BATCH_SIZE:  # a burst: the rest of it is on its way
                await asyncio.sleep(LINGER)
                self._take_queued(batch)
            try:
                await self._deliver(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _take_queued(self, batch: list[dict]) -> None:
        while len(batch) < BATCH_SIZE and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _deliver(self, batch: list[dict]) -> None:
        for event in batch:
            if event["type"] == events.TASK_RESULT and event.get("conn"):
                await self._guarded(self.layer.send(event["conn"], {**event, "type": "task.result"}))
        live = [
            page_event(event)  # the runner's plain data made the page's JSON, cut to size
            for event in batch
            if event["type"] != events.TASK_RESULT  # for the asker only
        ]
        if live:
            await self._send_page(live)

    async def _send_page(self, live: list[dict]) -> None:
        # The page's frame, encoded once here and sent once to each web process (app/fanout.py), which
        # hands it to its pages as is.
        frame = encode_frame(live, self.source, self._sequence + 1)
        if len(frame) > MAX_FRAME and len(live) > 1:
            half = len(live) // 2
            await self._send_page(live[:half])
            await self._send_page(live[half:])
            return
        self._sequence += 1  # counted even when the send fails: the gap tells pages to resync
        message = {"type": "conductor.events", "frame": frame}
        await self._call(lambda: self.layer.group_send(FEED_GROUP, message))  # one per web process

    async def _receive(self, groups: list[str], on_message: Callable[[dict], None]) -> None:
        channel = await self.layer.new_channel("conductor.runner.")
        try:
            await self._receive_on(channel, groups, on_message)
        finally:  # leave the groups, or channels-redis keeps queueing wake-ups for a dead channel
            for group in groups:
                await self._guarded(self.layer.group_discard(group, channel))

    async def _receive_on(self, channel: str, groups: list[str], on_message: Callable[[dict], None]) -> None:
        renew_at = 0.0
        while True:
            if self.loop.time() >= renew_at:
                for group in groups:
                    await self._guarded(self.layer.group_add(group, channel))
                renew_at = self.loop.time() + GROUP_RENEWAL
            try:
                message = await asyncio.wait_for(self.layer.receive(channel), timeout=GROUP_RENEWAL)
            except TimeoutError:
                continue
            except Exception as exc:
                logger.exception("Receiving runner commands failed; retrying in 1 s")
                self._set_problem(exc)
                await asyncio.sleep(1)
                renew_at = 0.0
                continue
            on_message(message)

    async def _guarded(self, awaitable: Any) -> None:
        await self._call(lambda: awaitable, tries=1)

    async def _call(self, call: Callable[[], Any], tries: int = 2) -> None:
        """Await ``call()``; a failure is tried again at once (a restarted Redis leaves stale pooled
        connections, whose first use fails), then logged and dropped: the runner must not wait."""
        for attempt in range(1, tries + 1):
            try:
                await call()
            except ChannelFull:  # one slow reader, not a lost layer
                logger.warning("A channel is full; its reader resyncs from the database")
                return
            except Exception as exc:
                if attempt == tries:
                    logger.exception("Channel layer call failed; live state may lag until pages resync")
                    self._set_problem(exc)
            else:
                self._set_problem(None)
                return

    def _set_problem(self, exc: BaseException | None) -> None:
        problem = f"channel layer unreachable: {type(exc).__name__}: {exc}".strip() if exc else ""
        if bool(problem) != bool(self.problem):  # a change of health, not of wording
            self.problem = problem
            if self.on_health is not None:
                self.on_health(problem)


class WebFrames:
    """A web process's own events (actions), framed as a runner's bridge frames them: one source per
    process, consecutive ``seq``, sent to ``FEED_GROUP``, so pages get one kind of news, one way."""

    def __init__(self) -> None:
        self.source = f"web-{uuid.uuid4().hex[:12]}"
        self._sequence = 0
        self._lock = threading.Lock()

    def send_now(self, event: dict) -> None:
        """From sync code (a view, an admin action); inside a request it runs on the server's loop."""
        layer = get_channel_layer()
        if layer is None:
            return
        with self._lock:
            self._sequence += 1
            frame = encode_frame([page_event(event)], self.source, self._sequence)
        try:
            async_to_sync(layer.group_send)(FEED_GROUP, {"type": "conductor.events", "frame": frame})
        except Exception:  # the page resyncs from the database at its next snapshot
            logger.exception("Could not send %s to the dashboards", event["type"])


web_frames = WebFrames()
