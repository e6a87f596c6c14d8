import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.runner import Runner, RunnerOptions


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message or 'condition'} not met within {timeout} s: {predicate}")
        time.sleep(interval)


class RunningRunner:
    """A Runner on a background thread of the test process, stopped and joined at teardown."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._main, name="test-runner", daemon=True)

    def _main(self) -> None:
        self.exit_code = self.runner.run()

    def start(self) -> "RunningRunner":
        self.thread.start()
        assert self.runner.up.wait(10), "runner did not come up"
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        self.runner.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.runner.stop()  # second request: stop at once
            self.thread.join(timeout)
        assert not self.thread.is_alive(), "runner did not stop"
        return self.exit_code


@pytest.fixture
def start_runner() -> Iterator[Callable[..., RunningRunner]]:
    started: list[RunningRunner] = []

    def start(**options: Any) -> RunningRunner:
        options.setdefault("poll", 0.2)
        running = RunningRunner(Runner(RunnerOptions(**options))).start()
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


# Dashboard WebSocket helpers (tests/integration/test_consumers.py and test_live_runner.py) -------------

DASHBOARD_PATH = "/ws/dashboard/"
GOOD_HOST = b"localhost"
GOOD_ORIGIN = b"http://localhost"  # the origin of a page served from GOOD_HOST over http


def make_user(username: str, *, staff: bool = True, perms: tuple[str, ...] = (), superuser: bool = False):
    """A real user; ``perms`` are codenames of the app's permissions (e.g. "view_task")."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username, password=None, is_staff=staff, is_superuser=superuser)
    if perms:
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="conductor", codename__in=perms)
        )
    return user


def session_headers(
    user: Any = None, origin: bytes | None = GOOD_ORIGIN, host: bytes = GOOD_HOST
) -> list[tuple[bytes, bytes]]:
    """Headers of a browser logged in as ``user`` (a real database session), or of an anonymous one,
    on a page served from ``host``: the socket's origin check compares ``origin`` with it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    headers = [(b"host", host), *([(b"origin", origin)] if origin else [])]
    if user is not None:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()))
    return headers


@pytest.fixture
def fresh_channel_layer(settings: Any) -> Iterator[Any]:
    """A new in-memory channel layer for the test: its queues bind to the test's own event loop.

    In-memory even when REDIS_URL is set: these tests look at one process's wiring; the Redis layer is
    tested across real processes (tests/acceptance) and in tests/unit/test_bridge.py.
    """
    from channels.layers import channel_layers, get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends = {}
    yield get_channel_layer()
    channel_layers.backends = {}
