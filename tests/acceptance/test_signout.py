"""Signing out closes a dashboard served by another process: the per-user group crosses Redis.

The socket is served by daphne in a subprocess; the logout happens in this test process, through
Django's admin logout view, on the same Redis (the same channel prefix). Redis must be running.
"""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import channel_layers
from django.conf import settings as django_settings
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as connect_websocket

from app.protocol import CLOSE_SIGNED_OUT
from tests.acceptance.conftest import LIVE_WAIT, redis_env, staff_session_key
from tests.conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

#: How long a web server may take to start (Django set-up, checks) on a loaded machine.
STARTUP = 30.0
#: "Within a second" of the logout.
REVOKED_WITHIN = 1.0


@pytest.fixture
def shared_redis(settings: Any) -> Iterator[dict[str, str]]:
    """This process on the Redis layer, with the channel prefix a web server started with the returned
    environment uses: what this process sends to a group reaches that server's sockets."""
    env = redis_env()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": env["REDIS_URL"]}], "prefix": env["CHANNELS_PREFIX"]},
        }
    }
    channel_layers.backends = {}
    yield env
    channel_layers.backends = {}


def open_socket(port: int, session_key: str) -> Any:
    return connect_websocket(
        f"ws://127.0.0.1:{port}/ws/dashboard/",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": f"{django_settings.SESSION_COOKIE_NAME}={session_key}"},
        proxy=None,
        open_timeout=LIVE_WAIT,
        close_timeout=2,
    )


def log_out(session_key: str) -> None:
    client = Client()
    client.cookies[django_settings.SESSION_COOKIE_NAME] = session_key
    assert client.post("/admin/logout/").status_code == 200


def read_until_closed(socket: Any, within: float) -> tuple[list[str], int | None]:
    """Messages until the server closes the socket, and its close code; TimeoutError after ``within``."""
    messages = []
    deadline = time.monotonic() + within
    try:
        while True:
            messages.append(socket.recv(timeout=max(0.0, deadline - time.monotonic())))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd else None


def test_a_logout_in_this_process_closes_the_socket_another_process_serves(start_web, shared_redis):
    web = start_web(env=shared_redis)
    wait_until(web.is_up, STARTUP)
    session_key = staff_session_key("leaver")
    with open_socket(web.port, session_key) as socket:
        assert '"type": "snapshot"' in socket.recv(timeout=LIVE_WAIT)
        log_out(session_key)
        messages, code = read_until_closed(socket, REVOKED_WITHIN)
    assert code == CLOSE_SIGNED_OUT, web.log_tail()
    assert any("log in again" in message for message in messages), messages
    assert "Traceback" not in web.log(), web.log_tail()
