"""The DOM helpers (static/conductor/lib/dom.js) in Chromium, and the panels that use them on the dashboard.

The helpers are imported into a live dashboard page as the page itself imports them; what the browser does
with the DOM is read back through a MutationObserver and element sizes, never timed.
"""

import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from app.task import Task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("browser")]

#: Puts the dom module on ``window.dom`` and a probe table (tbody "probe") in the page.
LOAD = """async () => {
    window.dom = await import("/static/conductor/lib/dom.js");
    const table = document.createElement("table");
    table.innerHTML = '<tbody data-testid="probe"></tbody>';
    document.body.append(table);
}"""

#: Syncs the probe table to ``keys`` (maxNew rows at most): which keys' rows were built, how many rows were
#: taken out of the table and put back (moved), and the rows (by an identity stamped on each when built).
SYNC = """([keys, maxNew]) => {
    const tbody = document.querySelector('[data-testid="probe"]');
    window.built = window.built ?? 0;
    const observer = new MutationObserver(() => {});
    observer.observe(tbody, { childList: true });
    const complete = window.dom.syncRows(tbody, keys, (key) => key,
        () => { const row = document.createElement("tr"); row.made = ++window.built; return row; },
        (row, key) => { row.textContent = key; }, maxNew ?? Infinity);
    const records = observer.takeRecords();
    observer.disconnect();
    const moved = records.reduce((sum, record) => sum + [...record.addedNodes].filter(
        (node) => records.some((other) => [...other.removedNodes].includes(node))).length, 0);
    return { complete, moved, rows: [...tbody.children].map((row) => [row.textContent, row.made]) };
}"""


def test_sync_rows_moves_only_the_rows_out_of_order(open_dashboard):
    page = open_dashboard()
    page.evaluate(LOAD)
    first = page.evaluate(SYNC, [[str(n) for n in range(1, 9)], None])
    assert [key for key, _ in first["rows"]] == [str(n) for n in range(1, 9)]

    # A thread's run finished and another started: the rest stay, the finished one's row goes to the end.
    second = page.evaluate(SYNC, [[str(n) for n in range(2, 10)], None])
    assert [key for key, _ in second["rows"]] == [str(n) for n in range(2, 10)]
    assert second["moved"] == 1
    assert [made for _, made in second["rows"]] == [*range(2, 9), 1]  # no row built, row 1 handed to "9"

    # A page of all new keys takes the rows in the order they stand: nothing moves.
    third = page.evaluate(SYNC, [[f"new {n}" for n in range(8)], None])
    assert third["moved"] == 0
    assert [made for _, made in third["rows"]] == [*range(2, 9), 1]


def test_sync_rows_builds_at_most_max_new_rows_and_says_when_it_is_not_done(open_dashboard):
    page = open_dashboard()
    page.evaluate(LOAD)
    keys = [str(n) for n in range(50)]
    shown = [page.evaluate(SYNC, [keys, 20]) for _ in range(3)]
    assert [len(step["rows"]) for step in shown] == [20, 40, 50]
    assert [step["complete"] for step in shown] == [False, False, True]
    assert [key for key, _ in shown[-1]["rows"]] == keys  # the first items first, all of them in the end


HOLD = """() => {
    const box = document.createElement("div");
    box.dataset.testid = "hold-box";
    const content = document.createElement("div");
    content.dataset.testid = "hold-content";
    content.style.height = "200px";
    box.append(content);
    document.body.append(box);
    window.dom.holdHeight(box, content, 1000);
}"""


HOLD_CONTENT = """document.querySelector('[data-testid="hold-content"]')"""


def test_hold_height_keeps_the_box_until_the_content_has_stayed_shorter(open_dashboard):
    page = open_dashboard()
    page.evaluate(LOAD)
    page.evaluate(HOLD)
    box = page.get_by_test_id("hold-box")
    expect(box).to_have_css("min-height", "200px")
    content = page.get_by_test_id("hold-content")
    content.evaluate("content => { content.style.height = '50px'; }")
    page.wait_for_function(f"() => {HOLD_CONTENT}.offsetHeight === 50")
    assert box.bounding_box()["height"] == 200  # held
    content.evaluate("content => { content.style.height = '300px'; }")
    expect(box).to_have_css("min-height", "300px")  # grows at once
    content.evaluate("content => { content.style.height = '50px'; }")
    page.wait_for_function("""() => document.querySelector('[data-testid="hold-box"]').offsetHeight === 50""")
    assert box.evaluate("box => box.style.minHeight") == ""  # given back after 1 s shorter


def test_thread_rows_leaving_do_not_move_the_panels_below(open_dashboard):
    page = open_dashboard()
    timeline = page.get_by_test_id("timeline")
    before = timeline.bounding_box()["y"]
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(name=f"short {n}", task_id=uuid.uuid4().hex, func="tests.functions.c_sleep",
                 args_in={"seconds": 1.5}, next_run=now)
            for n in range(4)
        ]
    )  # fmt: skip
    expect(page.get_by_test_id("thread-row")).to_have_count(4)
    grown = timeline.bounding_box()["y"]
    assert grown > before
    expect(page.get_by_test_id("thread-row")).to_have_count(0)
    assert timeline.bounding_box()["y"] == grown  # held while the rows come and go
    top = """document.querySelector('[data-testid="timeline"]').getBoundingClientRect().y"""
    page.wait_for_function(f"() => {top} < {grown}")  # given back once they stayed away


def test_set_text_writes_into_the_text_node_it_has(open_dashboard):
    page = open_dashboard()
    page.evaluate(LOAD)
    kept = page.evaluate("""() => {
        const cell = document.createElement("td");
        window.dom.setText(cell, "first");
        const text = cell.firstChild;
        window.dom.setText(cell, "second");
        const same = cell.firstChild === text && cell.childNodes.length === 1
            && cell.textContent === "second";
        cell.append(document.createElement("span"));  // more than one child: all of it is replaced
        window.dom.setText(cell, "third");
        return { same, replaced: cell.childNodes.length === 1 && cell.textContent === "third" };
    }""")
    assert kept == {"same": True, "replaced": True}
