"""``make bench``'s browser section: Debian's Chromium watching the dashboard while 20,000 tasks drain.

A ``runtasks --serve`` (SQLite, 8 threads) serves the dashboard to a logged-in staff page. Twice,
20,000 no-op tasks are bulk-inserted and drained while the page is open; then all of it again with the
server pinned to CPU 0 and the browser to the other CPUs ("split": an operator's browser does not share
the runner's machine). Measured in the page (FIELD-NOTES
"Browser tests here"): main-thread long tasks (a ``longtask`` PerformanceObserver), the round trip of a
trivial ``page.evaluate`` every 100 ms during the drain (it waits for the main thread), and after each
drain the DOM nodes and the JS heap (``performance.memory``, Chromium with precise memory info), before
and after a garbage collection forced through the DevTools protocol (``HeapProfiler.collectGarbage``): only
the heap that survives a collection says whether the page keeps what it no longer shows.

``BENCH_BROWSER_TRACE=path`` saves a Chromium performance trace of both drains (open it in DevTools'
Performance panel, or summarise its longest tasks with ``bench/browsertrace.py path``), and of the split
run's in ``path.split``.
``BENCH_BROWSER_VIEWPORT=WxH`` sets the page's size (default ``VIEWPORT``, a laptop's screen): what is on
screen is what the browser lays out and paints.
"""

import os
import time
from typing import Any

from django.db import connections

from bench.common import percentile, say, wait_for
from bench.live import free_port, port_open, staff_session_key

BROWSER_DRAIN = 20_000
VIEWPORT = "1440x900"
#: The trace's categories: DevTools' timeline (tasks, layout, paint, function calls) and V8's sampling
#: profiler (which JavaScript functions the time went to).
TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute",
                    "disabled-by-default-v8.cpu_profiler", "blink.user_timing", "toplevel"]  # fmt: skip
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--no-first-run", "--enable-precise-memory-info"]  # fmt: skip
WATCH = """() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
    }).observe({ type: "longtask", buffered: true });
}"""
STATE = """() => ({ nodes: document.getElementsByTagName("*").length,
    threads: document.querySelectorAll('[data-testid="thread-row"]').length,
    heap: performance.memory ? performance.memory.usedJSHeapSize : null,
    longTasks: window.longTasks.splice(0) })"""


def viewport() -> dict[str, int]:
    width, height = os.environ.get("BENCH_BROWSER_VIEWPORT", VIEWPORT).lower().split("x")
    return {"width": int(width), "height": int(height)}


def collected_heap(cdp: Any) -> float:
    """The JS heap in use after a full garbage collection (what the page really keeps)."""
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"]


def browser_drains(bench: Any, split: bool = False) -> list[dict[str, Any]]:
    """Two drains of BROWSER_DRAIN tasks watched by one page; a dict of measurements per drain.

    ``split``: the server on ``bench.RUNNER_CPUS`` and this process with the browser it starts on the
    others, as an operator's browser runs on another machine than the runner it watches.
    """
    if split:
        bench.pin(bench.own_threads(), bench.WEB_CPUS)  # Playwright's driver and Chromium inherit it
    trace = os.environ.get("BENCH_BROWSER_TRACE")
    if trace and split:
        trace = f"{trace}.split"
    try:
        return _watched_drains(bench, bench.RUNNER_CPUS if split else None, trace)
    finally:
        bench.pin(bench.own_threads(), bench.ALL_CPUS)


def _watched_drains(bench: Any, server_cpus: set[int] | None, trace: str | None) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the bench's ORM calls are plain sync ones.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    bench.fresh_database()
    session = staff_session_key("bench-browser")
    port = free_port()
    process, log_path = bench.start_runtasks("browser", "--threads", str(bench.THREADS), "--serve",
                                             f"127.0.0.1:{port}", cpus=server_cpus)  # fmt: skip
    try:
        wait_for(lambda: port_open(port), 60, "runtasks --serve listening", process, log_path, interval=0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=viewport())
            context.add_cookies([{"name": "sessionid", "value": session, "url": f"http://127.0.0.1:{port}"}])
            page = context.new_page()
            cdp = page.context.new_cdp_session(page)
            page.goto(f"http://127.0.0.1:{port}/dashboard/")
            page.evaluate(WATCH)
            page.wait_for_selector('[data-testid="conn-status"][data-state="live"]', timeout=60_000)
            page.wait_for_timeout(1000)  # the page settles on its first frames
            baseline = collected_heap(cdp)
            if trace:
                browser.start_tracing(page=page, path=trace, categories=TRACE_CATEGORIES)
            drains = [watch_drain(bench, page, cdp, n + 1) for n in range(2)]
            if trace:
                browser.stop_tracing()
                say(f"  browser trace saved in {trace} (bench/browsertrace.py {trace} summarises it)")
            drains[0]["heap_before"] = baseline
            browser.close()
            # The ORM's connection made under Playwright's loop: the next fresh_database() deletes its file,
            # and a connection left open would go on writing to the deleted one.
            connections.close_all()
    finally:
        bench.stop(process, log_path)
    return drains


def watch_drain(bench: Any, page: Any, cdp: Any, round_no: int) -> dict[str, Any]:
    from app.status import TaskStatus
    from app.task import Task

    page.evaluate(STATE)  # forget what came before this drain
    bench.insert_noop_tasks(BROWSER_DRAIN, chunk=2_000)
    trips, started = [], time.monotonic()
    while Task.objects.filter(status__in=[TaskStatus.WAITING, TaskStatus.RUNNING]).exists():
        sent = time.perf_counter()
        page.evaluate("() => 1")
        trips.append((time.perf_counter() - sent) * 1000)
        time.sleep(0.1)  # the sampling period of the round trip, not a synchronisation
    page.wait_for_timeout(1000)  # the page settles on its last frame
    state = page.evaluate(STATE)
    result = {"drain_s": time.monotonic() - started, "trips": sorted(trips), **state}
    result["collected"] = collected_heap(cdp)
    longest = max(state["longTasks"], default=0)
    say(f"  browser drain {round_no}: {BROWSER_DRAIN:,} tasks in {result['drain_s']:.1f} s; longest "
        f"main-thread task {longest:.0f} ms; round trip p50 {percentile(result['trips'], 50):.0f} ms, max "
        f"{result['trips'][-1]:.0f} ms; {state['nodes']:,} DOM nodes; heap {mb(state['heap'])} MB, "
        f"{mb(result['collected'])} MB after GC; {state['threads']} thread rows")  # fmt: skip
    Task.objects.all().delete()
    return result


def mb(size: float | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.2f}"


def split_browser_rows(drains: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The rows of the run with the server and the browser on CPUs of their own."""
    return [(name.replace("browser", "browser (split)", 1), value, note)
            for name, value, note in browser_rows(drains)]  # fmt: skip


def browser_rows(drains: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows = []
    for n, drain in enumerate(drains, 1):
        long_tasks = drain["longTasks"]
        heap = f"{mb(drain['heap'])} MB / {mb(drain['collected'])} MB after GC"
        rows += [
            (f"browser drain {n}: longest main-thread task", f"{max(long_tasks, default=0):.0f} ms",
             f"{len(long_tasks)} over 50 ms, {sum(long_tasks) / 1000:.1f} s in all; target: none over 50 ms"),
            (f"browser drain {n}: round trip p50 / max", f"{percentile(drain['trips'], 50):.0f} / "
             f"{drain['trips'][-1]:.0f} ms", f"{len(drain['trips'])} samples; target under 100 ms"),
            (f"browser drain {n}: DOM nodes / JS heap after", f"{drain['nodes']:,} / {heap}",
             f"{BROWSER_DRAIN:,} tasks in {drain['drain_s']:.1f} s; targets: DOM under 5,000, heap flat"),
            (f"browser drain {n}: thread rows shown after", f"{drain['threads']}", "the drain is over: 0"),
        ]  # fmt: skip
    if len(drains) == 2:
        first, second = drains
        growth = (second["collected"] - first["collected"]) / 2**20
        note = f"before drain 1: {mb(first['heap_before'])} MB after GC; flat is the target"
        rows.append(("browser: heap kept, drain 2 - drain 1 (after GC)", f"{growth:+.2f} MB", note))
    return rows
