"""``/health``: whether this process can do its job, for load balancers and Kubernetes probes.

Healthy when the database answers, when this process hosts a runner (``runtasks --serve``) that runner's
heartbeat is fresh, and when a channel layer that crosses processes is configured it answers too.

Anyone may ask, so the answer names the checks and whether each passed; what went wrong (a driver's
error text can name hosts, users and databases) goes to the log, and to staff who are logged in.
"""

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import JsonResponse
from django.utils.cache import add_never_cache_headers

from . import conf, dbclock, livelayer
from .runnerprocess import RunnerProcess

#: Seconds the channel layer gets to answer a probe.
LAYER_TIMEOUT = 2.0
HEALTH_GROUP = "conductor.health"
#: The path probes use, answered whatever the request's Host (``AnswerProbesByAnyHost``).
PROBE_PATH = "/health"
logger = logging.getLogger("conductor.health")


def check_health() -> dict[str, Any]:
    """{"healthy": bool, "checks": {name: {"ok": bool, "detail": str}}}; every check is run."""
    checks = {"database": _database()}
    if livelayer.runner_in_process:
        checks["runner"] = _runner() if checks["database"]["ok"] else _failed("the database is unreachable")
    if (layer := _crossing_layer()) is not None:
        checks["channel_layer"] = _layer(layer)
    for name, check in checks.items():
        if not check["ok"]:
            logger.warning("Health check %s failed: %s", name, check["detail"])
    return {"healthy": all(check["ok"] for check in checks.values()), "checks": checks}


def without_details(report: dict[str, Any]) -> dict[str, Any]:
    """The report for anonymous callers: which checks passed, not what the errors said."""
    checks = {name: {"ok": check["ok"]} for name, check in report["checks"].items()}
    return {"healthy": report["healthy"], "checks": checks}


class AnswerProbesByAnyHost:
    """First in MIDDLEWARE: answers ``/health`` before anything reads the Host header.

    Kubernetes httpGet probes and load balancers' health checks (AWS ALB) send the pod's or node's IP as
    the Host, which is not in ALLOWED_HOSTS, and CommonMiddleware's ``get_host()`` would answer 400. Only
    this exact path is answered here; every other request goes on to Django's host check.
    """

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if request.path_info == PROBE_PATH:
            return health_response(detailed=False)  # before authentication: never the details
        return self.get_response(request)


def health_response(detailed: bool) -> JsonResponse:
    """200 when healthy, 503 when not, never cached; ``detailed`` adds what each failed check found."""
    report = check_health()
    response = JsonResponse(
        report if detailed else without_details(report), status=200 if report["healthy"] else 503
    )
    add_never_cache_headers(response)
    return response


def _ok(detail: str) -> dict[str, Any]:
    return {"ok": True, "detail": detail}


def _failed(detail: str) -> dict[str, Any]:
    return {"ok": False, "detail": detail}


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means the same thing here: not reachable
        return _failed(f"{type(exc).__name__}: {exc}")
    return _ok(connection.vendor)


def _runner() -> dict[str, Any]:
    timeout = conf.get().HEARTBEAT_TIMEOUT
    mine = RunnerProcess.objects.live().filter(host=socket.gethostname(), pid=os.getpid()).first()
    if mine is None:
        return _failed("this process serves a runner that has not signed in")
    age = (dbclock.now() - mine.heartbeat_at).total_seconds()  # written by the database's clock
    if age > timeout or mine.degraded:
        return _failed(mine.degraded or f"last heartbeat {age:.1f} s ago (timeout {timeout:g} s)")
    return _ok(f"{mine.worker_id}: heartbeat {age:.1f} s ago")


def _crossing_layer() -> Any:
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    return None if layer is None or isinstance(layer, InMemoryChannelLayer) else layer


def _layer(layer: Any) -> dict[str, Any]:
    # A send to a group nobody joins: it reaches the server without touching any page's receive state.
    probe = layer.group_send(HEALTH_GROUP, {"type": "health.probe"})
    try:
        asyncio.run(asyncio.wait_for(probe, LAYER_TIMEOUT))
    except Exception as exc:
        return _failed(f"{type(exc).__name__}: {exc or 'no answer'}")
    return _ok(type(layer).__name__)
