"""One subscription per web process to the runners' live frames, handed to every page it serves.

A runner's bridge sends each frame of events to ``FEED_GROUP`` once. channels-redis copies a group
message to every channel in the group, in the sender, so a group of pages would make a runner encode and
push one copy per open page, and each page's server read it back from Redis. Instead each web process
joins ``FEED_GROUP`` with one channel (a ``Feed``, started by the first page that connects and stopped
with the last) and forwards each frame to its pages itself: a runner's cost no longer grows with the
number of dashboards, only with the number of web processes.

The pages notice an outage of the channel layer on their own channels (channels-redis serves all of a
process's channels from one key, so the feed may not see the error itself): a page that reaches the
layer again calls ``rejoin()``, since a restarted Redis has forgotten the feed's membership. The feed
also renews it every ``RENEWAL`` seconds, and tries again every ``RETRY`` seconds after an error.
"""

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Protocol

logger = logging.getLogger("conductor.fanout")

FEED_GROUP = "conductor.feed"
#: Seconds between tries to reach a channel layer that went away.
RETRY = 1.0
#: Seconds between renewals of the feed's group membership.
RENEWAL = 3600.0


class Page(Protocol):
    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None: ...


class Feed:
    """This process's subscription to ``FEED_GROUP`` on one channel layer, for the pages on one loop."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.pages: set[Page] = set()
        self.channel = ""
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        # The layer's default prefix: channels-redis serves all of a process's own channels from one key,
        # and a channel of another prefix would wait behind its pages' receives for ever.
        self.channel = await self.layer.new_channel()
        await self.join()
        self._task = asyncio.create_task(self._forward())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.layer.group_discard(FEED_GROUP, self.channel)
        except Exception as exc:  # the layer is gone; the membership expires by itself
            logger.info("Leaving the feed group failed: %s", exc)

    async def join(self) -> bool:
        """Join (or join again) the group; False, logged, while the layer cannot be reached."""
        try:
            await self.layer.group_add(FEED_GROUP, self.channel)
        except Exception as exc:
            logger.warning("The live feed cannot join its group: %s", exc)
            return False
        return True

    async def _forward(self) -> None:
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + RENEWAL
        while True:
            if loop.time() >= renew_at:  # memberships expire (channels-redis: a day by default)
                await self.join()
                renew_at = loop.time() + RENEWAL
            try:
                message = await asyncio.wait_for(self.layer.receive(self.channel), timeout=RENEWAL)
            except TimeoutError:
                continue
            except Exception as exc:
                logger.warning("The live feed lost the channel layer (%s); retrying", exc)
                await asyncio.sleep(RETRY)
                await self.join()
                continue
            if "frame" in message:
                await self._hand_out(message["frame"])

    async def _hand_out(self, frame: str) -> None:
        for page in list(self.pages):
            try:
                await page.send(text_data=frame)
            except Exception:  # a page closing meanwhile: the others still get the frame
                logger.debug("A page did not take a live frame", exc_info=True)


_feeds: dict[tuple[asyncio.AbstractEventLoop, int], Feed] = {}
_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _lock() -> asyncio.Lock:
    """This loop's lock: two pages connecting at once must not start two feeds."""
    return _locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def subscribe(page: Page, layer: Any) -> None:
    """Frames from now on reach ``page`` (this process's feed is started if need be)."""
    key = (asyncio.get_running_loop(), id(layer))
    async with _lock():
        feed = _feeds.get(key)
        if feed is None:
            feed = Feed(layer)
            await feed.start()
            _feeds[key] = feed
        feed.pages.add(page)


async def unsubscribe(page: Page, layer: Any) -> None:
    """No more frames for ``page``; the feed stops with its last page."""
    key = (asyncio.get_running_loop(), id(layer))
    async with _lock():
        feed = _feeds.get(key)
        if feed is None:
            return
        feed.pages.discard(page)
        if not feed.pages:
            del _feeds[key]
            await feed.stop()


async def rejoin(layer: Any) -> None:
    """Join the group again, if this process has a feed: a page found the layer back after an outage."""
    feed = _feeds.get((asyncio.get_running_loop(), id(layer)))
    if feed is not None:
        await feed.join()
