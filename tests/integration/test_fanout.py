"""app.fanout: one feed per process hands the runners' frames to every page it serves.

Real dashboards through the ASGI stack, over the in-memory channel layer (a fresh one per test); a frame
is sent to the feed group as a runner's bridge sends it.
"""

import pytest

from app.fanout import FEED_GROUP
from tests.integration.test_consumers import TIMEOUT, dashboard, db, viewer

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer"),
]

FRAME = '{"type": "events", "events": [{"type": "task.changed", "task": 1}], "source": "s", "seq": 1}'


async def send_frame(layer, frame: str = FRAME) -> None:
    await layer.group_send(FEED_GROUP, {"type": "conductor.events", "frame": frame})


async def test_pages_of_one_process_share_one_feed_and_each_gets_every_frame(fresh_channel_layer):
    user = await db(viewer)()
    async with dashboard(user) as first, dashboard(user) as second:
        assert len(fresh_channel_layer.groups[FEED_GROUP]) == 1  # one copy per process, not per page
        await send_frame(fresh_channel_layer)
        assert await first.receive_from(timeout=TIMEOUT) == FRAME  # as the runner encoded it
        assert await second.receive_from(timeout=TIMEOUT) == FRAME


async def test_a_closed_page_gets_no_more_frames_and_the_last_one_ends_the_feed(fresh_channel_layer):
    user = await db(viewer)()
    async with dashboard(user) as staying:
        async with dashboard(user) as leaving:
            pass
        assert await leaving.receive_nothing()
        await send_frame(fresh_channel_layer)
        assert await staying.receive_from(timeout=TIMEOUT) == FRAME
    assert not fresh_channel_layer.groups.get(FEED_GROUP)
