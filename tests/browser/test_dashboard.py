"""The dashboard in a real browser: headless Chromium, a real ``runtasks --serve``, the test database.

Every wait is Playwright's ``expect`` (which polls until its timeout) or a poll-with-deadline; nothing
sleeps to synchronise.
"""

import io
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from app.status import RunStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.acceptance.conftest import REPO_ROOT, port_open
from tests.browser.conftest import PASSWORD, SCREENSHOTS, STARTUP, log_in
from tests.conftest import wait_until

#: static/conductor/store.js KEEP_RECENT: the runs the timeline keeps.
KEEP_RECENT = 200

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("browser"),  # one worker runs them all: one Chromium at a time
]


#: What a page sees when the machine wakes from sleep or comes back online.
WAKE_UP = """() => {
    window.dispatchEvent(new Event("online"));
    document.dispatchEvent(new Event("visibilitychange"));
}"""
#: Resolves after the page has rendered twice (it renders once per animation frame).
NEXT_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def task_row(page: Page, task: Task):
    return page.locator(f'[data-testid="task-row"][data-task-id="{task.pk}"]')


def run_row(page: Page, run: TaskRun):
    return page.locator(f'[data-testid="run-row"][data-run-id="{run.pk}"]')


def thread_row(page: Page, name: str):
    return page.get_by_test_id("thread-row").filter(has_text=name)


def only_run(task: Task) -> TaskRun:
    return wait_until(lambda: TaskRun.objects.filter(task=task).order_by("-pk").first())


def test_tasks_appear_and_change_state_live_and_can_be_run_again(open_dashboard, tmp_path: Path):
    page = open_dashboard()
    expect(page.locator('[data-testid="runner-row"][data-worker-id="browser-runner"]')).to_have_attribute(
        "data-state", "running"
    )
    release = tmp_path / "release"

    task = Task.objects.create(
        name="wait for file", func="tests.functions.wait_for_file", args_in={"path": str(release)}
    )
    row = task_row(page, task)
    expect(row).to_have_attribute("data-status", "running")  # arrived with task.claimed, no reload
    thread = thread_row(page, "wait for file")
    expect(thread).to_have_count(1)
    expect(thread).to_contain_text("yes")  # daemon, alive
    first = only_run(task)
    expect(run_row(page, first)).to_have_attribute("data-status", "running")
    expect(page.locator(f'[data-testid="timeline-bar"][data-run-id="{first.pk}"]')).to_have_attribute(
        "data-status", "running"
    )

    release.touch()
    expect(row).to_have_attribute("data-status", "finished")
    expect(row).to_contain_text("released")
    expect(thread).to_have_count(0)
    expect(run_row(page, first)).to_have_attribute("data-status", "finished")
    expect(page.locator(f'[data-testid="timeline-bar"][data-run-id="{first.pk}"]')).to_have_attribute(
        "data-status", "finished"
    )

    # "Run now" runs it again: running while the file is gone, finished once it is back.
    release.unlink()
    row.get_by_test_id("run-now").click()
    expect(row).to_have_attribute("data-status", "running")
    expect(row.get_by_test_id("run-now")).to_be_disabled()
    expect(thread).to_have_count(1)
    release.touch()
    expect(row).to_have_attribute("data-status", "finished")
    expect(page.get_by_test_id("run-row").filter(has_text="wait for file")).to_have_count(2)
    expect(row).to_contain_text("2 runs")

    # A looping task waits between runs, counting down; pause and resume it from the page.
    looper = Task.objects.create(
        name="hourly sum", func="tests.functions.add", args_in={"a": 2, "b": 2}, loop=True, interval=3600
    )
    looping = task_row(page, looper)
    expect(looping).to_have_attribute("data-status", "waiting")
    expect(looping).to_contain_text("in 59 m")
    looping.get_by_test_id("pause").click()
    expect(looping).to_have_attribute("data-paused", "true")
    expect(looping.get_by_test_id("pause")).to_have_text("Resume")
    assert wait_until(lambda: Task.objects.get(pk=looper.pk).paused)
    looping.get_by_test_id("pause").click()
    expect(looping).to_have_attribute("data-paused", "false")
    looping.get_by_test_id("stop-loop").click()
    expect(looping).to_have_attribute("data-status", "stopped")


def test_stack_panel_shows_the_stack_and_live_log_and_cancels_the_run(open_dashboard):
    page = open_dashboard()
    task = Task.objects.create(
        name="slow printer", func="server.demo.tasks.slow_job", args_in={"seconds": 60, "steps": 240}
    )
    thread = thread_row(page, "slow printer")
    expect(thread).to_have_count(1)
    thread.get_by_test_id("inspect-thread").click()

    panel = page.get_by_test_id("stack-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-status", "running")
    expect(panel.get_by_test_id("stack-text")).to_contain_text("in slow_job")
    expect(panel.get_by_test_id("log-tail")).to_contain_text("step 1/240 done")
    expect(panel.get_by_test_id("log-tail")).to_contain_text("step 3/240 done")  # it keeps growing
    expect(panel.get_by_test_id("stack-at")).not_to_have_text("")

    panel.get_by_test_id("cancel-run").click()
    expect(panel).to_have_attribute("data-status", "cancelled")
    expect(panel.get_by_test_id("stack-note")).to_contain_text("ended cancelled")
    expect(panel.get_by_test_id("log-tail")).to_contain_text("step 1/240 done")  # the recorded tail
    run = only_run(task)
    assert wait_until(lambda: TaskRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED)
    expect(run_row(page, run)).to_have_attribute("data-status", "cancelled")
    expect(thread).to_have_count(0)
    expect(task_row(page, task)).to_have_attribute("data-status", "stopped")

    panel.get_by_test_id("close-stack").click()
    expect(panel).to_be_hidden()


def test_create_a_task_from_the_form_and_see_its_result(open_dashboard):
    page = open_dashboard()
    form = page.get_by_test_id("create-form")
    form.get_by_test_id("create-func").select_option("tests.functions.add")
    expect(page.get_by_test_id("create-signature")).to_contain_text("add(a: int, b: int = 0)")
    message = form.get_by_test_id("form-message")
    args = form.get_by_test_id("create-args")

    args.fill("{not json")
    form.get_by_test_id("create-submit").click()
    expect(message).to_contain_text("args_in: not JSON")
    expect(args).to_have_attribute("aria-invalid", "true")

    args.fill('{"c": 1}')  # refused by the server: the arguments do not fit add()
    form.get_by_test_id("create-submit").click()
    expect(message).to_have_attribute("data-field", "args_in")
    expect(message).to_contain_text("do not fit")
    expect(args).to_have_attribute("aria-invalid", "true")

    args.fill('{"a": 2, "b": 3}')
    form.get_by_test_id("create-kill-time").fill("-1")
    form.get_by_test_id("create-submit").click()
    expect(message).to_have_attribute("data-field", "kill_time")
    expect(form.get_by_test_id("create-kill-time")).to_have_attribute("aria-invalid", "true")

    form.get_by_test_id("create-kill-time").fill("")
    form.get_by_test_id("create-name").fill("adder")
    form.get_by_test_id("create-submit").click()
    expect(message).to_have_text("adder created")
    result = page.get_by_test_id("task-result")
    expect(result).to_have_count(1)
    expect(result).to_have_attribute("data-status", "finished")
    expect(result.get_by_test_id("result-output")).to_have_text("→ 5")
    task = Task.objects.get(name="adder")
    expect(task_row(page, task)).to_have_attribute("data-status", "finished")
    assert task.output == 5


def test_reconnects_with_a_fresh_snapshot_after_the_server_restarts(dashboard_server, open_dashboard):
    first = dashboard_server.start("first-runner")
    page = open_dashboard()
    status = page.get_by_test_id("conn-status")
    runner = page.locator('[data-testid="runner-row"][data-worker-id="first-runner"]')
    expect(runner).to_have_attribute("data-state", "running")

    assert dashboard_server.stop(first) == 0
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status).to_contain_text("closed")
    # Made while the page is cut off: only the snapshot after reconnecting can show it.
    later = Task.objects.create(
        name="made while down", func="tests.functions.add", args_in={"a": 1}, run_in=3600
    )

    # Backing off (several seconds between tries by now): waking up or coming online retries at once.
    expect(status).to_have_text(re.compile(r"reconnecting in ([4-9]|10) s \(closed \d+\)"))
    dashboard_server.start("second-runner")
    page.evaluate(WAKE_UP)
    expect(status).to_have_attribute("data-state", "live", timeout=3000)
    expect(page.locator('[data-testid="runner-row"][data-worker-id="second-runner"]')).to_have_attribute(
        "data-state", "running"
    )
    expect(runner).to_have_attribute("data-state", "stopped")
    expect(task_row(page, later)).to_have_attribute("data-status", "waiting")


def test_only_staff_with_permission_get_the_dashboard(dashboard_server, make_page, django_user_model):
    dashboard_server.start()
    django_user_model.objects.create_user("visitor", password=PASSWORD)
    django_user_model.objects.create_user("intern", password=PASSWORD, is_staff=True)

    page = make_page()
    page.goto(f"{dashboard_server.url}/dashboard/")
    expect(page).to_have_url(f"{dashboard_server.url}/admin/login/?next=/dashboard/")
    log_in(page, dashboard_server.url, "visitor")
    expect(page.locator(".errornote")).to_be_visible()  # not a staff account: no way in
    page.goto(f"{dashboard_server.url}/dashboard/")
    expect(page).to_have_url(f"{dashboard_server.url}/admin/login/?next=/dashboard/")

    # Staff without app.view_task: the page loads but the socket is closed with 4003, and stays closed.
    staff = make_page()
    log_in(staff, dashboard_server.url, "intern")
    staff.wait_for_url(f"{dashboard_server.url}/dashboard/")
    status = staff.get_by_test_id("conn-status")
    expect(status).to_have_attribute("data-state", "closed")
    expect(status).to_have_text("not allowed (4003)")
    staff.evaluate(WAKE_UP)
    staff.evaluate(NEXT_FRAMES)
    expect(status).to_have_attribute("data-state", "closed")


def test_progress_timeline_and_a_screenshot_with_the_demo_tasks(open_dashboard):
    call_command("loaddemo", stdout=io.StringIO())
    Task.objects.create(
        name="import customers", func="tests.browser.functions.import_rows", args_in={"rows": 600}
    )
    page = open_dashboard()
    runs = page.get_by_test_id("run-row")
    expect(runs.filter(has_text="flaky upstream")).to_have_attribute("data-status", "failed")
    expect(runs.filter(has_text="runaway computation")).to_have_attribute("data-status", "timed_out")

    importing = thread_row(page, "import customers")
    expect(importing.get_by_test_id("progress")).to_contain_text(" of 600 rows")
    importing.get_by_test_id("inspect-thread").click()
    expect(page.get_by_test_id("log-tail")).to_contain_text(re.compile(r"row \d+ imported"))
    expect(page.get_by_test_id("stack-text")).to_contain_text("in import_rows")
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator('[data-testid="timeline-bar"][data-status="failed"]')).to_have_count(1)
    expect(timeline.locator('[data-testid="timeline-bar"][data-status="running"]')).not_to_have_count(0)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)


def test_a_web_server_without_live_events_says_so_and_refreshes_from_the_database(
    dashboard_server, make_page, django_user_model, tmp_path: Path
):
    """daphne alone on the in-memory layer: no runner events can reach it, so the page shows the
    snapshot's reason in a banner and re-reads the database every few seconds instead."""
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    log_path = tmp_path / "daphne.log"
    with log_path.open("wb") as log:
        web = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(dashboard_server.port),
             "server.asgi:application"],
            cwd=REPO_ROOT, env=dashboard_server.env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(lambda: web.poll() is None and port_open(dashboard_server.port), STARTUP)
            page = make_page()
            log_in(page, dashboard_server.url, "boss")
            page.wait_for_url(f"{dashboard_server.url}/dashboard/")
            expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
            banner = page.get_by_test_id("live-banner")
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("in-memory channel layer")
            task = Task.objects.create(name="seen by refresh", func="tests.functions.add", args_in={"a": 1})
            expect(task_row(page, task)).to_have_attribute("data-status", "waiting")
        finally:
            web.terminate()
            web.wait(15)


def click_listeners(cdp, expression: str) -> int:
    """How many click listeners the element ``expression`` evaluates to has (DevTools protocol)."""
    found = cdp.send("Runtime.evaluate", {"expression": expression})["result"]
    listeners = cdp.send("DOMDebugger.getEventListeners", {"objectId": found["objectId"]})["listeners"]
    return sum(1 for listener in listeners if listener["type"] == "click")


def test_timeline_bars_share_one_click_listener_and_a_running_bar_opens_its_stack(open_dashboard):
    page = open_dashboard()
    for number in range(5):
        Task.objects.create(name=f"quick {number}", func="tests.functions.add", args_in={"a": number})
    slow = Task.objects.create(
        name="slow printer", func="server.demo.tasks.slow_job", args_in={"seconds": 60, "steps": 240}
    )
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator('[data-testid="timeline-bar"][data-status="finished"]')).to_have_count(5)
    running = timeline.locator(f'[data-testid="timeline-bar"][data-run-id="{only_run(slow).pk}"]')
    expect(running).to_have_attribute("data-status", "running")
    expect(running).to_have_attribute("title", re.compile(r"^slow printer · run \d+ · running · "))

    cdp = page.context.new_cdp_session(page)
    track = "document.querySelector('[data-testid=\"timeline\"] .tl-track')"
    bars = "document.querySelectorAll('[data-testid=\"timeline-bar\"]')"
    for index in range(page.evaluate(f"() => {bars}.length")):
        assert click_listeners(cdp, f"{bars}[{index}]") == 0
    assert click_listeners(cdp, track) == 1

    running.click()
    panel = page.get_by_test_id("stack-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("stack-title")).to_contain_text("slow printer")
    panel.get_by_test_id("cancel-run").click()
    expect(panel).to_have_attribute("data-status", "cancelled")

    Task.objects.create(name="one more", func="tests.functions.add", args_in={"a": 9})
    expect(timeline.locator('[data-testid="timeline-bar"][data-status="finished"]')).to_have_count(6)
    assert click_listeners(cdp, track) == 1  # drawn again and again: still the one listener


#: Every bar element of the timeline: shown (a run's, with its title) or put back in the pool (hidden,
#: naming no run); ``seen`` marks the elements there when the test last looked.
TIMELINE_BARS = """() => [...document.querySelectorAll('[data-testid="timeline"] .tl-bar')].map((bar) => {
    const seen = bar.seen === true;
    bar.seen = true;
    return { seen, hidden: bar.hidden, run: bar.dataset.runId ?? null, testid: bar.dataset.testid ?? null,
             title: bar.getAttribute("title") };
})"""


def quick_tasks(prefix: str, count: int) -> None:
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(name=f"{prefix} {n}", task_id=uuid.uuid4().hex, func="tests.functions.add", next_run=now)
            for n in range(count)
        ]
    )


def test_timeline_bars_are_reused_and_the_layer_slides(open_dashboard):
    page = open_dashboard()
    quick_tasks("first", KEEP_RECENT + 20)
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator('[data-testid="timeline-bar"][title^="first "]')).to_have_count(KEEP_RECENT)
    before = page.evaluate(TIMELINE_BARS)
    shown = [bar for bar in before if not bar["hidden"]]
    assert len(shown) == KEEP_RECENT  # the store keeps the newest KEEP_RECENT runs
    assert all(bar["testid"] == "timeline-bar" and bar["title"].startswith("first ") for bar in shown)
    pooled = [bar for bar in before if bar["hidden"]]
    assert all(bar["run"] is None and bar["testid"] is None and bar["title"] is None for bar in pooled)

    quick_tasks("second", 50)  # 50 runs come, 50 leave: their bars are handed on, none is made
    expect(timeline.locator('[data-testid="timeline-bar"][title^="second "]')).to_have_count(50)
    after = page.evaluate(TIMELINE_BARS)
    assert len(after) == len(before)
    assert all(bar["seen"] for bar in after)

    layer = timeline.locator(".tl-layer")
    moved = layer.get_attribute("style")
    expect(layer).not_to_have_attribute("style", moved)  # time passes: the layer, not each bar, moves
