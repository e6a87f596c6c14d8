"""app/origins.py: what counts as an origin, and which origins a trusted-origins list trusts.

The handshake itself (Host, ALLOWED_HOSTS, schemes, the log line) is tested through the real ASGI stack
in tests/integration/test_consumers.py.
"""

import pytest

from app.origins import Origin, parse_origin, refusal, trusted


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("http://localhost", Origin("http", "localhost", 80)),
        ("http://localhost:80", Origin("http", "localhost", 80)),
        ("HTTPS://Example.COM:443", Origin("https", "example.com", 443)),
        ("https://example.com:8443", Origin("https", "example.com", 8443)),
        ("http://[::1]:8000", Origin("http", "::1", 8000)),
        ("http://127.0.0.1:9", Origin("http", "127.0.0.1", 9)),
    ],
)
def test_origins_parse_with_default_ports_filled_in(text, origin):
    assert parse_origin(text) == origin


@pytest.mark.parametrize(
    "text",
    [
        "null",  # sandboxed frames and file:// pages
        "",
        "localhost",
        "ws://localhost",
        "file:///etc/passwd",
        "http://user@localhost",
        "http://localhost/",
        "http://localhost/path",
        "http://localhost?",
        "http://localhost#",
        "http://localhost:99999",
        "http://localhost:http",
        "http://local host",
        "http://localhost,http://evil.example",  # two Origin headers, joined
        "http://",
    ],
)
def test_anything_but_scheme_host_and_port_is_no_origin(text):
    assert parse_origin(text) is None


def test_origins_print_as_browsers_send_them():
    assert [str(parse_origin(t)) for t in ("http://a:80", "https://a:8443", "http://[::1]")] == [
        "http://a",
        "https://a:8443",
        "http://[::1]",
    ]


@pytest.mark.parametrize(
    ("origin", "entries", "expected"),
    [
        ("https://dash.example.com", ["https://dash.example.com"], True),
        ("https://dash.example.com", ["https://dash.example.com:443"], True),
        ("https://dash.example.com:8443", ["https://dash.example.com"], False),
        ("http://dash.example.com", ["https://dash.example.com"], False),
        ("https://a.example.com", ["https://*.example.com"], True),
        ("https://a.b.example.com", ["https://*.example.com"], True),
        ("https://example.com", ["https://*.example.com"], True),  # as Django's is_same_domain
        ("https://badexample.com", ["https://*.example.com"], False),
        ("https://a.example.com:8443", ["https://*.example.com"], False),
        ("https://a.example.com:8443", ["https://*.example.com:8443"], True),
        ("http://a.example.com", ["https://*.example.com"], False),
        ("https://evil.example", ["*"], False),
        ("https://evil.example", ["https://*"], False),
        ("https://evil.example", ["https://*."], False),
        ("https://evil.example", ["evil.example"], False),  # no scheme: not an origin
    ],
)
def test_trusted_origins_are_exact_or_django_subdomain_patterns(origin, entries, expected):
    assert trusted(parse_origin(origin), entries) is expected


def scope(*headers: tuple[bytes, bytes], scheme: str = "ws") -> dict:
    return {"type": "websocket", "path": "/ws/dashboard/", "scheme": scheme, "headers": list(headers)}


def test_two_origin_headers_are_refused():
    both = scope(
        (b"host", b"localhost"), (b"origin", b"http://localhost"), (b"origin", b"http://evil.example")
    )
    assert "is not the page's origin" in refusal(both)


def test_no_host_header_is_refused():
    assert "no Host header" in refusal(scope((b"origin", b"http://localhost")))


def test_the_page_origin_is_accepted():
    assert refusal(scope((b"host", b"localhost:8000"), (b"origin", b"http://localhost:8000"))) is None
