"""Serving the dashboard from the runner's own process (``runtasks --serve``).

With the in-memory channel layer (the embedded default) a runner and a web server can only talk when
they share a process. Daphne runs the ASGI application on its Twisted reactor in a daemon thread, and
the runner's channel bridge uses that reactor's event loop, so both ends meet on one loop.
"""

import asyncio
import ipaddress
import logging
import threading

from . import livelayer

logger = logging.getLogger("conductor.serve")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` to (host, port); ValueError says what is wrong."""
    host, _, port_text = text.rpartition(":")
    host = (host or "127.0.0.1").strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:8000), got {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"the port must be 1 to 65535, got {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (as parse_address gives it): 127.x, ::1, localhost.

    Any other name may resolve to an address others reach, so it does not count (scripts/is-loopback
    decides the same for make run).
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Seconds to wait for the web server to report that it listens.
LISTEN_TIMEOUT = 15


class ServeError(RuntimeError):
    """The dashboard could not be served; the message says why."""


def start_server(host: str, port: int) -> asyncio.AbstractEventLoop:
    """Start daphne in a daemon thread, and return its event loop once it listens."""
    from daphne.server import Server  # installs Twisted's asyncio reactor: import it first
    from twisted.internet import reactor

    from .asgi import project_application

    application = project_application()

    outcome: dict[str, str] = {}
    settled = threading.Event()

    class ReportingServer(Server):
        def listen_success(self, listening_port: object) -> None:
            super().listen_success(listening_port)
            settled.set()

        def listen_error(self, failure: object) -> None:
            outcome["error"] = failure.getErrorMessage()
            settled.set()
            super().listen_error(failure)

    interface = host.replace(":", r"\:")
    server = ReportingServer(
        application=application,
        endpoints=[f"tcp:port={port}:interface={interface}"],
        signal_handlers=False,
        verbosity=0,
    )
    threading.Thread(target=server.run, name="conductor-web", daemon=True).start()
    if not settled.wait(LISTEN_TIMEOUT) or "error" in outcome:
        reason = outcome.get("error", f"no answer within {LISTEN_TIMEOUT} s")
        raise ServeError(f"could not listen on {host}:{port}: {reason}")
    livelayer.runner_in_process = True
    logger.info("Dashboard at %s", dashboard_url(host, port))
    return reactor._asyncioEventloop


def dashboard_url(host: str, port: int) -> str:
    """Where the project's URLconf puts the dashboard (``include("conductor.urls")``) on this address."""
    from django.urls import NoReverseMatch, reverse

    try:
        path = reverse("conductor:dashboard")
    except NoReverseMatch:
        path = "/ (the project's URLconf does not include conductor.urls)"
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}{path}"


#: Longest a stopping server waits for its pages to be sent what is queued for them.
DRAIN_TIMEOUT = 3.0


def drain_and_stop(loop: asyncio.AbstractEventLoop) -> None:
    """Let the pages receive what is queued for them (the runner's last events), then stop the server.

    The in-process channel layer and daphne die with the process: without this, a page could miss the
    runner's last words (runner.down) whenever the process exits first.
    """
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def drained() -> None:
        deadline = loop.time() + DRAIN_TIMEOUT
        while loop.time() < deadline and any(q.qsize() for q in getattr(layer, "channels", {}).values()):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the consumers' last send_json reaches its transport

    try:
        asyncio.run_coroutine_threadsafe(drained(), loop).result(DRAIN_TIMEOUT + 1)
    except Exception:
        logger.warning("The web server did not flush its pages in time; stopping it anyway")
    stop_server()


def stop_server() -> None:
    from twisted.internet import reactor

    reactor.callFromThread(reactor.stop)
