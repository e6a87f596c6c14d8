"""Fixtures for browser tests: Debian's Chromium driven by Playwright against a real ``runtasks --serve``.

The server under test is ``manage.py runtasks --serve 127.0.0.1:<port>`` as a subprocess on pytest-django's
test database (the embedded default: the in-memory channel layer, runner and web server in one process),
started like the acceptance tests start runners. Tests log in through the admin's login form, so they need
``@pytest.mark.django_db(transaction=True)``: the server must see the users and tasks the test commits.
"""

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import tests.browser.functions  # noqa: F401 - registers the browser tests' task functions here
from tests.acceptance.conftest import REPO_ROOT, RuntasksProcess, free_port, port_open, runner_env
from tests.conftest import wait_until

CHROMIUM = Path(os.environ.get("CONDUCTOR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: How long a server may take to come up (Django set-up, checks, daphne) on a loaded machine.
STARTUP = 30.0
#: How long a page may take to show what a test waits for (ms): events travel in milliseconds,
#: a reconnect backs off up to 10 s.
EXPECT_TIMEOUT_MS = 20_000
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
PASSWORD = "correct-horse-battery-staple"

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (each test gets its own context: cookies, storage)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
            "`apt-get update && apt-get install -y chromium` (make test does this), or point "
            "CONDUCTOR_CHROMIUM at a Chromium binary."
        )
    # Playwright's sync API keeps its event loop marked as running in this thread between calls, which
    # Django takes for async code and refuses the ORM. The test's ORM calls are plain synchronous code
    # on the main thread, so the guard is lifted while the browser is up (never for the servers).
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.failed:
        item.stash.setdefault(_failed, set()).add(report.when)
    return report


_failed = pytest.StashKey[set[str]]()


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return bool(request.node.stash.get(_failed, set()))


@dataclass
class DashboardServer:
    """``runtasks --serve`` on one port; start it (again) with ``start``, stop it with ``stop``."""

    port: int
    tmp_path: Path
    env: dict[str, str]
    processes: list[RuntasksProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, worker_id: str = "browser-runner", *extra: str) -> RuntasksProcess:
        address = f"127.0.0.1:{self.port}"
        args = ["--serve", address, "--worker-id", worker_id, "--poll", "0.2", "--grace", "2"]
        log_path = self.tmp_path / f"runtasks-{worker_id}-{len(self.processes) + 1}.log"
        process = RuntasksProcess([*args, *extra], log_path, self.env)
        self.processes.append(process)
        wait_until(lambda: process.check_alive() and port_open(self.port) and process.is_up(), STARTUP)
        return process

    def stop(self, process: RuntasksProcess) -> int:
        """SIGTERM, as an operator would; returns the exit code."""
        process.terminate()
        return process.wait(30)


@pytest.fixture
def dashboard_server(
    request: pytest.FixtureRequest, transactional_db: None, tmp_path: Path
) -> Iterator[DashboardServer]:
    """A server on a free port (not started yet). Depends on ``transactional_db`` so that the server is
    stopped before the database is flushed; on failure the tail of each server's log is printed."""
    env = runner_env(
        REDIS_URL="",  # the embedded default: the in-memory channel layer
        CONDUCTOR_TASK_MODULES="tests.functions,tests.browser.functions",
        CONDUCTOR_HEARTBEAT="1",
        CONDUCTOR_CANCEL_GRACE="1",
        DJANGO_DEBUG="1",
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    server = DashboardServer(free_port(), tmp_path, env)
    yield server
    for process in server.processes:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(AssertionError):
                process.wait(15)
        if _test_failed(request):
            print(f"\n{process!r}\n{process.log_tail()}")
        process.close()


@pytest.fixture
def make_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[], Page]]:
    """New pages in a fresh browser context; uncaught page errors fail the test, and a failing test
    leaves a screenshot of each page in test-output/screenshots/."""
    contexts = []
    errors: list[str] = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    if _test_failed(request):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for number, context in enumerate(contexts):
            for page in context.pages:
                with contextlib.suppress(Exception):
                    path = SCREENSHOTS / f"failed-{request.node.name}-{number}.png"
                    page.screenshot(path=path, full_page=True)
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def log_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Log in through Django's admin login form, asking for the dashboard next."""
    page.goto(f"{base_url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


@pytest.fixture
def open_dashboard(
    dashboard_server: DashboardServer, make_page: Callable[[], Page], django_user_model: Any
) -> Callable[..., Page]:
    """Start the server (once), log a superuser in and return the dashboard page, live."""

    def open_(username: str = "boss") -> Page:
        if not dashboard_server.processes:
            dashboard_server.start()
        if not django_user_model.objects.filter(username=username).exists():
            django_user_model.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
        page = make_page()
        log_in(page, dashboard_server.url, username)
        page.wait_for_url(f"{dashboard_server.url}/dashboard/")
        expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
        return page

    return open_
