"""Serving the dashboard from the runner's own process (``runtasks --serve``).

With the in-memory channel layer (the embedded default) a runner and a web server can only talk when
they share a process. Daphne runs the ASGI application on its Twisted reactor in a daemon thread, and
the runner's channel bridge uses that reactor's event loop, so both ends meet on one loop.
"""

import asyncio
import logging
import threading

logger = logging.getLogger("conductor.serve")

#: True in a process that runs a runner and the web server together (the dashboard checks it).
runner_in_process = False


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


def start_server(host: str, port: int) -> asyncio.AbstractEventLoop:
    """Start daphne in a daemon thread; returns the event loop it serves on."""
    global runner_in_process
    from daphne.server import Server  # installs Twisted's asyncio reactor: import it first
    from twisted.internet import reactor

    from server.asgi import application

    interface = host.replace(":", r"\:")
    server = Server(
        application=application,
        endpoints=[f"tcp:port={port}:interface={interface}"],
        signal_handlers=False,
        verbosity=0,
    )
    threading.Thread(target=server.run, name="conductor-web", daemon=True).start()
    runner_in_process = True
    logger.info("Dashboard at http://%s:%d/dashboard/", host if ":" not in host else f"[{host}]", port)
    return reactor._asyncioEventloop


def stop_server() -> None:
    from twisted.internet import reactor

    reactor.callFromThread(reactor.stop)
