"""app.serve: the address of ``runtasks --serve`` and where its dashboard is.

Starting the server itself (daphne's process-global reactor, not restartable) is tested as a process:
tests/acceptance/test_live.py.
"""

import pytest

from app import livelayer, serve


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        (":9000", ("127.0.0.1", 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:8000", ("::1", 8000)),
    ],
)
def test_parse_address(text, address):
    assert serve.parse_address(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "expected HOST:PORT (e.g. 127.0.0.1:8000), got 'localhost'"),
        ("host:http", "expected HOST:PORT"),
        (":0", "the port must be 1 to 65535, got 0"),
        (":65536", "the port must be 1 to 65535, got 65536"),
    ],
)
def test_parse_address_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        serve.parse_address(text)


def test_dashboard_url_is_where_the_urlconf_puts_the_dashboard():
    assert serve.dashboard_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/dashboard/"
    assert serve.dashboard_url("::1", 8000) == "http://[::1]:8000/dashboard/"


def test_no_runner_serves_pages_in_a_process_that_did_not_start_one():
    assert livelayer.runner_in_process is False
