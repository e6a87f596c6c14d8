"""Dashboards for ``make bench``: WebSocket clients of /ws/dashboard/ on an event loop of their own.

``Dashboards`` connects any number of clients to a web server (``runtasks --serve`` or daphne) from a
background thread, so that the bench's main thread can use the ORM while they listen. Each client
stamps every message with ``time.time()`` as soon as ``recv()`` returns, before parsing it; the first
client keeps every task event with its arrival time (latency = arrival - the event's ``at``: both
clocks are this machine's), the others only count what they get.

Needs Django set up (for the session) before ``staff_session_key()`` is called.
"""

import asyncio
import json
import os
import socket
import threading
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import connect

#: The clients' thread runs at this niceness (the lowest priority): see Dashboards._serve_clients.
CLIENT_NICENESS = 19
#: The events one run of a task produces, in order.
TASK_EVENTS = ("task.claimed", "thread.started", "thread.finished", "task.finished")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def staff_session_key(username: str = "bench") -> str:
    """A staff superuser logged in through a real database session (what a browser sends)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_superuser(username, f"{username}@example.com", "not-used")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


class Dashboards:
    """``count`` dashboards connected to ``ws://127.0.0.1:<port>/ws/dashboard/``; ``close()`` when done."""

    def __init__(self, port: int, session_key: str, count: int = 1) -> None:
        self.port = port
        self.session_key = session_key
        self.count = count
        self.arrivals: dict[tuple[str, int], tuple[float, float]] = {}  # (type, task) -> (at, received)
        self.task_events = [0] * count  # task events each client received
        self.live: list[Any] = [None] * count  # each client's snapshot["live"]
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._connected = 0
        self._stop = asyncio.Event()  # binds to the clients' loop when first awaited there
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_clients, name="bench-dashboards", daemon=True)
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    # From the bench's thread ----------------------------------------------------------------------

    def wait_connected(self, timeout: float = 60.0) -> None:
        """Until every client has its snapshot (so it is in the dashboard group)."""
        self._wait(lambda: self._connected == self.count, timeout, f"{self.count} dashboards to connect")

    def wait_event(self, kind: str, task: int, timeout: float = 30.0) -> tuple[float, float]:
        """(the event's ``at``, when the first client received it)."""
        return self._wait(lambda: self.arrivals.get((kind, task)), timeout, f"{kind} of task {task}")

    def wait_quiet(self, quiet: float = 0.5, timeout: float = 15.0) -> None:
        """Until no client has received a task event for ``quiet`` seconds (what was sent has arrived)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            now = (sum(self.task_events), len(self.errors))
            if now == last:
                return
            last = now
            time.sleep(quiet)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._main.result(timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def _wait(self, found: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (value := found()):
                if self.errors:
                    raise SystemExit(f"bench failed: a dashboard failed: {self.errors[0]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"bench failed: timed out after {timeout} s waiting for {what}")
                self._changed.wait(left)
            return value

    # On the clients' loop ---------------------------------------------------------------------------

    def _serve_clients(self) -> None:
        # Dashboards are browsers on other machines: here they only get the CPU the server side leaves.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CLIENT_NICENESS)
        self._loop.run_forever()

    async def _run(self) -> None:
        clients = [asyncio.create_task(self._client(n)) for n in range(self.count)]
        await self._stop.wait()
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)

    async def _client(self, n: int) -> None:
        url = f"ws://127.0.0.1:{self.port}/ws/dashboard/"
        try:
            async with connect(
                url,
                origin=f"http://127.0.0.1:{self.port}",
                additional_headers={"Cookie": f"sessionid={self.session_key}"},
                proxy=None,
                open_timeout=60,
                close_timeout=2,
                max_size=None,
                max_queue=None,  # never make the server wait on this client
            ) as websocket:
                while True:
                    text = await websocket.recv()
                    received = time.time()
                    self._on_message(n, json.loads(text), received)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with self._changed:
                self.errors.append(f"dashboard {n}: {exc!r}")
                self._changed.notify_all()

    def _on_message(self, n: int, message: dict, received: float) -> None:
        with self._changed:
            if message["type"] == "snapshot" and self.live[n] is None:
                self.live[n] = message["live"]
                self._connected += 1
            elif message["type"] == "events":
                kinds = Counter(e["type"] for e in message["events"])
                self.task_events[n] += sum(kinds[kind] for kind in TASK_EVENTS)
                if n == 0:
                    for event in message["events"]:
                        if event["type"] in TASK_EVENTS:
                            self.arrivals[(event["type"], event["task"])] = (event["at"], received)
            self._changed.notify_all()
