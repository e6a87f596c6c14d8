"""The dashboard's socket as an attacker would try it, in Chromium against a real ``runtasks --serve``.

A logged-in user's browser sends the session cookie to every port of 127.0.0.1, so a page served from
another port must not get the socket; and a dashboard left open after logging out in another tab must
say so rather than keep showing (and acting) as the user.
"""

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_dashboard import NEXT_FRAMES, WAKE_UP

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("browser"),
]

#: An attacker's page: opens the dashboard's socket and keeps what happens in ``window.seen``.
ATTACK_PAGE = """<!doctype html>
<title>innocent page</title>
<script>
  window.seen = { opened: false, messages: [], closed: null };
  const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws/dashboard/");
  ws.onopen = () => { window.seen.opened = true; };
  ws.onmessage = (event) => { window.seen.messages.push(event.data); };
  ws.onclose = (event) => { window.seen.closed = event.code; };
</script>
"""


@pytest.fixture
def attacker_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A tiny http.server on another port of 127.0.0.1 serving ``tmp_path/site``; yields (dir, url)."""
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="attacker-site", daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_page_on_another_port_cannot_open_the_dashboard_socket(
    open_dashboard, dashboard_server, attacker_site
):
    site, attacker_url = attacker_site
    (site / "attack.html").write_text(ATTACK_PAGE % {"port": dashboard_server.port})
    dashboard = open_dashboard()  # logged in: the browser holds a staff session cookie for 127.0.0.1
    attack = dashboard.context.new_page()  # the same browser, so the same cookies
    attack.goto(f"{attacker_url}/attack.html")

    attack.wait_for_function("() => window.seen.closed !== null || window.seen.messages.length > 0")
    seen = attack.evaluate("() => window.seen")
    assert seen == {"opened": False, "messages": [], "closed": 1006}  # refused in the handshake
    expect(dashboard.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")  # not the user's


def test_logging_out_in_another_tab_shows_signed_out_and_stops(open_dashboard, dashboard_server):
    dashboard = open_dashboard()
    sockets = []
    dashboard.on("websocket", lambda socket: sockets.append(socket.url))  # any reconnect from now on
    other_tab = dashboard.context.new_page()
    other_tab.goto(f"{dashboard_server.url}/admin/")
    other_tab.click("#logout-form button[type=submit]")
    expect(other_tab.locator("body")).to_contain_text("Logged out")

    status = dashboard.get_by_test_id("conn-status")
    expect(status).to_have_text("Signed out")
    expect(status).to_have_attribute("data-state", "closed")
    expect(dashboard.get_by_test_id("signed-out")).to_be_visible()
    login_again = dashboard.get_by_test_id("login-again")
    expect(login_again).to_have_attribute("href", "/dashboard/")

    dashboard.evaluate(WAKE_UP)  # what would make a dropped page reconnect at once
    dashboard.evaluate(NEXT_FRAMES)
    expect(status).to_have_attribute("data-state", "closed")  # no reconnect scheduled
    assert sockets == []

    login_again.click()  # to the login page, which comes back to the dashboard
    dashboard.wait_for_url("**/admin/login/?next=/dashboard/")
