"""The dashboard at volume, its lists, and the task and runner pages, in headless Chromium against a real
``runtasks --serve`` (see conftest). Counts, not timings: DOM nodes, rows, runs. Waits are Playwright's
``expect`` or a poll with a deadline."""

import re
import uuid
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone
from playwright.sync_api import Page, expect

from app.history import HeartbeatSample, QueueDepthSample
from app.runnerprocess import RunnerProcess
from app.status import TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests.browser.conftest import EXPECT_TIMEOUT_MS
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("browser"),  # one worker runs them all: one Chromium at a time
]

DRAIN = 20_000
NOOP = "tests.functions.stamp"
MOST_NODES = 5_000
PAGE_SIZE = 50
#: Kept in the page from the start: the most DOM nodes seen (every 50 ms) and the long main-thread tasks.
WATCH = """() => {
    const watched = (window.watched = { nodes: 0, longTasks: [] });
    const nodes = () => document.getElementsByTagName("*").length;
    const count = () => { watched.nodes = Math.max(watched.nodes, nodes()); };
    setInterval(count, 50);
    const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) watched.longTasks.push(entry.duration);
    });
    observer.observe({ type: "longtask", buffered: true });
}"""
SHOWN_ROWS = """(testid) => [...document.querySelectorAll(`[data-testid="${testid}"] tr`)]
    .map((row) => [Number(row.dataset.taskId ?? row.dataset.runId), row.dataset.status])"""


def dom_nodes(page: Page) -> int:
    return page.evaluate("() => document.getElementsByTagName('*').length")


def tasks_run_more_than_once() -> str:
    """Each task with more than one run, and its runs (seen once under load: 20,001 runs of 20,000)."""
    tasks = Task.objects.annotate(n=Count("runs")).filter(n__gt=1).values("id", "name", "status", "attempts")
    runs = TaskRun.objects.filter(task__in=[task["id"] for task in tasks])
    fields = ("task_id", "status", "attempt", "fence", "scheduled_for", "started_at", "finished_at", "error")
    return f"tasks run more than once: {list(tasks)}; their runs: {list(runs.values(*fields))}"


def insert_tasks(count: int, **fields) -> None:
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(
                name=f"noop-{n}",
                task_id=uuid.uuid4().hex,
                func="tests.functions.stamp",
                next_run=now,
                **fields,
            )
            for n in range(count)
        ],
        batch_size=1000,
    )


def expected_rows(queryset) -> list[list]:
    return [[pk, str(status)] for pk, status in queryset.values_list("pk", "status")]


def shows_exactly(page: Page, testid: str, queryset) -> bool:
    """Whether the table shows exactly these rows, in this order, with these statuses (polled)."""
    return wait_until(
        lambda: page.evaluate(SHOWN_ROWS, testid) == expected_rows(queryset),
        EXPECT_TIMEOUT_MS / 1000,
        message=f"{testid} to show {expected_rows(queryset)[:3]}...",
    )


def test_a_drain_of_20000_tasks_keeps_the_page_bounded_and_its_list_exact(dashboard_server, open_dashboard):
    dashboard_server.start("drain-runner", "--threads", "8")
    page = open_dashboard()
    page.evaluate(WATCH)

    insert_tasks(DRAIN)
    pending = Task.objects.exclude(status__in=[TaskStatus.FINISHED])
    wait_until(lambda: not pending.exists(), 180, interval=0.5, message="the drain to finish")
    assert TaskRun.objects.count() == DRAIN, tasks_run_more_than_once()

    # Once the burst is over the page converges to the database: the first page of the list view.
    assert shows_exactly(page, "tasks", Task.objects.order_by("-id")[:PAGE_SIZE])
    assert shows_exactly(page, "runs", TaskRun.objects.order_by("-id")[:PAGE_SIZE])
    expect(page.get_by_test_id("thread-row")).to_have_count(0)  # no thread is left running
    watched = page.evaluate("() => window.watched")
    nodes = dom_nodes(page)
    print(f"\nDOM nodes after the drain: {nodes}; most during it: {watched['nodes']}; "
          f"long tasks: {len(watched['longTasks'])}, longest {max(watched['longTasks'], default=0):.0f} ms, "
          f"total {sum(watched['longTasks']):.0f} ms")  # fmt: skip
    assert nodes < MOST_NODES
    assert watched["nodes"] < MOST_NODES
    expect(page.get_by_test_id("chart-runs")).not_to_have_attribute("data-total", "0")


def test_filters_search_and_pages_show_the_rows_of_the_list_view(dashboard_server, open_dashboard):
    later = timezone.now() + timezone.timedelta(hours=1)
    for n in range(70):
        Task.objects.create(name=f"mail {n:02}", func="tests.functions.stamp", queue="mail", next_run=later,
                            paused=n % 7 == 0, loop=n % 2 == 0, interval=3600)  # fmt: skip
    for n in range(30):
        Task.objects.create(
            name=f"report {n:02}", func="tests.functions.add", args_in={"a": n}, next_run=later
        )
    page = open_dashboard()
    tasks = Task.objects.order_by("-id")
    assert shows_exactly(page, "tasks", tasks[:PAGE_SIZE])

    filters = page.get_by_test_id("task-filters")
    pager = page.get_by_test_id("task-pager")
    filters.get_by_test_id("task-queue").fill("mail")
    mail = tasks.filter(queue="mail")
    assert shows_exactly(page, "tasks", mail[:PAGE_SIZE])
    pager.get_by_test_id("next-page").click()
    expect(pager.get_by_test_id("page-number")).to_have_text("page 2")
    assert shows_exactly(page, "tasks", mail[PAGE_SIZE : PAGE_SIZE * 2])
    expect(pager.get_by_test_id("next-page")).to_be_disabled()

    # A task that comes to match while the user reads page 2: counted, the page does not move.
    fresh = Task.objects.create(name="mail now", func="tests.functions.stamp", queue="mail")
    expect(pager.get_by_test_id("new-rows")).to_contain_text("1 new")
    assert shows_exactly(page, "tasks", mail.exclude(pk=fresh.pk)[PAGE_SIZE : PAGE_SIZE * 2])
    pager.get_by_test_id("new-rows").click()
    expect(pager.get_by_test_id("page-number")).to_have_text("page 1")
    expect(page.locator(f'[data-testid="task-row"][data-task-id="{fresh.pk}"]')).to_be_visible()
    expect(pager.get_by_test_id("new-rows")).to_be_hidden()

    filters.get_by_test_id("task-paused").select_option("true")
    assert shows_exactly(page, "tasks", mail.filter(paused=True))
    filters.get_by_test_id("task-paused").select_option("")
    filters.get_by_test_id("task-loop").select_option("false")
    filters.get_by_test_id("task-sort").select_option("name")
    assert shows_exactly(
        page, "tasks", Task.objects.filter(queue="mail", loop=False).order_by("name", "id")[:PAGE_SIZE]
    )

    filters.get_by_test_id("task-queue").fill("")
    filters.get_by_test_id("task-loop").select_option("")
    filters.get_by_test_id("task-search").fill("report 1")
    assert shows_exactly(
        page, "tasks", Task.objects.filter(name__icontains="report 1").order_by("name", "id")
    )
    one = Task.objects.get(name="report 07")
    filters.get_by_test_id("task-search").fill(one.task_id)
    assert shows_exactly(page, "tasks", Task.objects.filter(pk=one.pk))
    filters.get_by_test_id("task-search").fill("no such task")
    expect(page.locator('[data-empty-for="tasks"]')).to_be_visible()


def test_the_task_page_lists_its_runs_and_updates_live(dashboard_server, open_dashboard, tmp_path):
    page = open_dashboard()
    task = Task.objects.create(name="hourly adder", func="tests.functions.add", args_in={"a": 2, "b": 2},
                               loop=True, interval=3600, timezone="Europe/Berlin")  # fmt: skip
    row = page.locator(f'[data-testid="task-row"][data-task-id="{task.pk}"]')
    expect(row).to_have_attribute("data-status", "waiting")
    row.get_by_test_id("task-link").click()
    page.wait_for_url(f"**/dashboard/tasks/{task.task_id}/")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("admin-link")).to_have_attribute(
        "href", f"/admin/conductor/task/{task.pk}/change/"
    )
    expect(page.get_by_test_id("task-head")).to_have_attribute("data-status", "waiting")
    expect(page.locator('[data-field="args_in"]')).to_have_text('{"a":2,"b":2}')
    upcoming = page.get_by_test_id("upcoming-run")
    expect(upcoming).to_have_count(5)
    expect(upcoming.first).to_contain_text("+01:00" if timezone.now().month in (1, 2, 3, 11, 12) else "+0")
    runs = page.get_by_test_id("run-row")
    expect(runs).to_have_count(1)
    first = TaskRun.objects.get(task=task)
    expect(runs.first).to_have_attribute("data-status", "finished")

    # "Run now" from the page: the new run appears without a reload, newest first.
    page.get_by_test_id("task-actions").get_by_test_id("run-now").click()
    expect(runs).to_have_count(2)
    second = wait_until(lambda: TaskRun.objects.filter(task=task).exclude(pk=first.pk).first())
    expect(page.locator(f'[data-testid="run-row"][data-run-id="{second.pk}"]')).to_have_attribute(
        "data-status", "finished"
    )
    assert shows_exactly(page, "runs", TaskRun.objects.filter(task=task).order_by("-id"))

    # A run's output, traceback and log on a click.
    page.locator(f'[data-testid="run-row"][data-run-id="{first.pk}"] [data-col="id"]').click()
    detail = page.get_by_test_id("run-detail")
    expect(detail).to_be_visible()
    expect(detail.get_by_test_id("run-output")).to_have_text("4")
    expect(detail.get_by_test_id("run-detail-summary")).to_contain_text("try 1")

    # Pause from the task page; the dashboard link goes back.
    page.get_by_test_id("task-actions").get_by_test_id("pause").click()
    expect(page.get_by_test_id("task-badges")).to_contain_text("paused")
    assert wait_until(lambda: Task.objects.get(pk=task.pk).paused)
    page.get_by_test_id("dashboard-link").click()
    page.wait_for_url("**/dashboard/")


def test_the_runner_page_shows_its_threads_runs_and_heartbeats(dashboard_server, open_dashboard, tmp_path):
    page = open_dashboard()
    page.locator('[data-testid="runner-row"][data-worker-id="browser-runner"]').get_by_test_id(
        "runner-link"
    ).click()
    page.wait_for_url("**/dashboard/runners/browser-runner/")
    expect(page.get_by_test_id("runner-head")).to_have_attribute("data-state", "running")
    release = tmp_path / "release"
    task = Task.objects.create(
        name="held open", func="tests.functions.wait_for_file", args_in={"path": str(release)}
    )
    thread = page.get_by_test_id("thread-row").filter(has_text="held open")
    expect(thread).to_have_count(1)
    run = wait_until(lambda: TaskRun.objects.filter(task=task).first())
    run_row = page.locator(f'[data-testid="run-row"][data-run-id="{run.pk}"]')
    expect(run_row).to_have_attribute("data-status", "running")
    expect(page.locator('[data-field="heartbeats charted"]')).not_to_have_text("0")
    thread.get_by_test_id("inspect-thread").click()
    expect(page.get_by_test_id("stack-text")).to_contain_text("in wait_for_file")

    release.touch()
    expect(thread).to_have_count(0)
    expect(run_row).to_have_attribute("data-status", "finished")
    admin = page.get_by_test_id("admin-link")
    expect(admin).to_have_attribute("href", f"/admin/conductor/runnerprocess/{run.runner_id}/change/")


def test_pages_opened_now_draw_the_history_runners_recorded_before(dashboard_server, open_dashboard):
    dashboard_server.start()
    runner = RunnerProcess.objects.get(worker_id="browser-runner")
    now = timezone.now()  # SQLite: this machine's clock is the database's
    for minutes in (40, 30, 20):  # as runners write them, long before the pages open
        HeartbeatSample.objects.create(runner=runner, at=now - timedelta(minutes=minutes), busy=7, threads=8)
        QueueDepthSample.objects.create(bucket=now - timedelta(minutes=minutes), queue="backlog", waiting=70)
    forty_minutes = re.compile(r"^40 m \d\d s ago$")

    page = open_dashboard()
    depth_ticks = page.get_by_test_id("chart-depth").locator("text.tick")
    expect(depth_ticks.first).to_have_text("100")  # the axis of the 70 waiting, drawn from the first answer
    expect(depth_ticks.nth(2)).to_have_text(forty_minutes)
    expect(page.get_by_test_id("chart-queue").locator('option[value="backlog"]')).to_have_count(1)

    page.goto(f"{dashboard_server.url}/dashboard/runners/browser-runner/")
    beat_ticks = page.get_by_test_id("heartbeat-chart").locator("text.tick")
    expect(beat_ticks.first).to_have_text("10")  # 7 busy threads, recorded 40 to 20 minutes ago
    expect(beat_ticks.nth(2)).to_have_text(forty_minutes)
    charted = page.locator('[data-field="heartbeats charted"]')
    expect(charted).to_have_text(re.compile(r"^([4-9]|\d\d+)$"))  # the three, and the live ones since


def test_a_runners_clock_offset_shows_on_the_dashboard_and_its_page_marked_past_the_warning(
    dashboard_server, open_dashboard
):
    # A runner whose clock is 30 s behind records +30 s at each heartbeat. Skew is measured only against
    # PostgreSQL's clock (on SQLite the one machine's clock is the database's, offset 0), and these tests
    # run on SQLite: its row is written here as such a runner writes it (tests/acceptance/test_clock_skew.py
    # measures the real thing under libfaketime).
    RunnerProcess.objects.create(worker_id="skewed", host="far", pid=1, threads=1, clock_offset=30.04)
    page = open_dashboard()
    skewed = page.locator('[data-testid="runner-row"][data-worker-id="skewed"] [data-col="clock"]')
    expect(skewed).to_have_text("30.0 s behind")
    expect(skewed).to_have_class(re.compile(r"\bskewed\b"))
    expect(skewed).to_have_attribute("title", re.compile("CLOCK_SKEW_WARNING"))
    # The embedded runner measured its offset at its heartbeat: none, and not marked.
    live = page.locator('[data-testid="runner-row"][data-worker-id="browser-runner"] [data-col="clock"]')
    expect(live).to_have_text("in step")
    expect(live).not_to_have_class(re.compile(r"\bskewed\b"))

    page.goto(f"{dashboard_server.url}/dashboard/runners/skewed/")
    fact = page.locator('[data-testid="runner-facts"] [data-field="clock"]')
    expect(fact).to_have_text("30.0 s behind")
    expect(fact).to_have_class(re.compile(r"\bskewed\b"))
