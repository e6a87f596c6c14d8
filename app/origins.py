"""The dashboard socket's origin check: exact scheme, host and port, or a trusted origin.

Browsers send the session cookie to every port of a host, so a page served from another port (or over
plain http next to https) must not drive the socket. Channels' ``AllowedHostsOriginValidator`` compares
host names only; this validator compares whole origins:

- the Origin must equal the origin of the page, i.e. the scheme, host and port of the handshake itself
  (Django's view of it: ``request.get_host()`` and ``request.scheme``, so ``ALLOWED_HOSTS``,
  ``USE_X_FORWARDED_HOST`` and ``SECURE_PROXY_SSL_HEADER`` apply as they do to pages), default ports
  80 and 443 being the same as none;
- or be listed in ``CSRF_TRUSTED_ORIGINS``, the origins Django already trusts to post forms: exact
  ``scheme://host[:port]`` entries, and Django's subdomain form ``scheme://*.example.com[:port]``
  (any subdomain of example.com, and example.com itself, with that scheme and port). An entry without
  a scheme or without a domain (``*``, ``https://*``) trusts nothing.

A missing or unparsable Origin, a missing Host or a Host outside ``ALLOWED_HOSTS`` is refused during
the handshake (HTTP 403), with one INFO line on the ``conductor.origins`` logger saying what to set.
"""

import logging
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.request import split_domain_port
from django.utils.http import is_same_domain

logger = logging.getLogger("conductor.origins")

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS.get(self.scheme) == self.port
        return f"{self.scheme}://{host}" if default else f"{self.scheme}://{host}:{self.port}"


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` (nothing else: no path, user or query) as an Origin; else None."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.username is not None or not split_domain_port(parts.netloc)[0]:
        return None
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        return None
    return Origin(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


class Handshake(HttpRequest):
    """The WebSocket handshake seen as Django sees a request: its host, its scheme."""

    def __init__(self, scope: dict) -> None:
        super().__init__()
        self.transport_secure = scope.get("scheme") in ("wss", "https")
        for name, value in scope.get("headers", []):
            key = "HTTP_" + name.decode("latin1").upper().replace("-", "_")
            text = value.decode("latin1")
            # A repeated header is joined, as Django does for requests; two Origins then parse as none.
            self.META[key] = f"{self.META[key]},{text}" if key in self.META else text

    def _get_scheme(self) -> str:  # what HttpRequest.scheme falls back to without a proxy header
        return "https" if self.transport_secure else "http"


def page_origin(handshake: Handshake) -> Origin:
    """The origin of the page that may open this socket; raises DisallowedHost for a bad Host."""
    if "HTTP_HOST" not in handshake.META:
        raise DisallowedHost("The handshake has no Host header.")
    origin = parse_origin(f"{handshake.scheme}://{handshake.get_host()}")
    if origin is None:
        raise DisallowedHost(f"Host {handshake.get_host()!r} is not a host name.")
    return origin


def trusted(origin: Origin, entries: list[str]) -> bool:
    """Whether ``CSRF_TRUSTED_ORIGINS`` (``entries``) trusts ``origin``."""
    for entry in entries:
        wildcard = "://*." in entry
        pattern = parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
        if pattern is None or (pattern.scheme, pattern.port) != (origin.scheme, origin.port):
            continue
        if origin.host == pattern.host or (wildcard and is_same_domain(origin.host, "." + pattern.host)):
            return True
    return False


def refusal(scope: dict) -> str | None:
    """Why this handshake may not open the socket (a sentence saying what to configure), or None."""
    handshake = Handshake(scope)
    try:
        expected = page_origin(handshake)
    except DisallowedHost as exc:
        return f"{exc} Add the host the page is served from to ALLOWED_HOSTS."
    sent = handshake.META.get("HTTP_ORIGIN")
    if sent is None:
        return f"No Origin header (a browser always sends one); the page's origin is {expected}."
    origin = parse_origin(sent)
    if origin is not None and (origin == expected or trusted(origin, settings.CSRF_TRUSTED_ORIGINS)):
        return None
    return (
        f"Origin {sent!r} is not the page's origin {expected}: serve the dashboard from that origin, "
        f"or add {sent!r} to CSRF_TRUSTED_ORIGINS (scheme://host[:port]) if pages there may use it."
    )


class ExactOriginValidator:
    """ASGI middleware: a WebSocket whose Origin is not exactly allowed is refused in the handshake."""

    def __init__(self, application: Any) -> None:
        self.application = application  # the name app/asgi.py's routes_dashboard_socket walks down

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("ExactOriginValidator only guards WebSocket connections.")
        reason = refusal(scope)
        if reason is None:
            return await self.application(scope, receive, send)
        logger.info("Refused the dashboard WebSocket at %s: %s", scope.get("path", "?"), reason)
        return await WebsocketDenier()(scope, receive, send)
