// The list/paging state of static/conductor/lists.js: pure, so tested without a browser.
import assert from "node:assert/strict";
import test from "node:test";

import * as lists from "../../static/conductor/lists.js";

const page = (ids, next = null) => ({ items: ids.map((id) => ({ id })), next });
const ids = (from, to) => Array.from({ length: from - to + 1 }, (_, index) => from - index);

function loaded(list, answer) {
  const asked = lists.requested(list);
  return lists.pageLoaded(asked, asked.generation, answer);
}

test("filters become the query string; empty ones are left out", () => {
  const list = lists.newList("tasks", { status: "failed", queue: " ", q: "digest" }, "name");
  assert.deepEqual(Object.fromEntries(new URLSearchParams(lists.queryString(list))), {
    status: "failed", q: "digest", sort: "name", limit: "50",
  });
  assert.equal(lists.newList("tasks", { nonsense: "x" }).filters.nonsense, undefined);
});

test("next and previous pages follow the cursors", () => {
  let list = loaded(lists.newList("runs"), page(ids(100, 51), "c1"));
  list = lists.nextPage(list);
  assert.equal(new URLSearchParams(lists.queryString(list)).get("cursor"), "c1");
  assert.equal(lists.pageNumber(list), 2);
  list = loaded(list, page(ids(50, 1)));
  assert.equal(lists.nextPage(list), list, "no next page after the last");
  list = lists.previousPage(list);
  assert.equal(lists.pageNumber(list), 1);
  assert.equal(new URLSearchParams(lists.queryString(list)).get("cursor"), null);
});

test("a page answered for a page the user has left is ignored", () => {
  const asked = lists.requested(lists.newList("tasks"));
  const moved = lists.setFilters(asked, { status: "waiting" });
  assert.equal(lists.pageLoaded(moved, asked.generation, page([1, 2])), moved);
  assert.equal(moved.refresh, true);
});

test("a refused cursor starts again from the first page", () => {
  let list = lists.nextPage(loaded(lists.newList("tasks"), page(ids(100, 51), "c1")));
  list = loaded(list, { error: "cursor is not one this server gave", field: "cursor" });
  assert.equal(lists.pageNumber(list), 1);
  assert.equal(list.refresh, true);
  assert.match(list.error, /cursor/);
});

test("on the first page, a row that would show asks for the page again", () => {
  const list = loaded(lists.newList("tasks"), page(ids(100, 51), "c1"));
  assert.equal(list.refresh, false);
  assert.equal(lists.noteItems(list, [{ id: 10, status: "running" }]), list, "older than the page: cannot show");
  assert.equal(lists.noteItems(list, [{ id: 101, status: "waiting" }]).refresh, true);
});

test("a row that no longer matches the filter asks for the first page again", () => {
  const list = loaded(lists.newList("tasks", { status: "waiting" }), page([5, 4]));
  assert.equal(lists.noteItems(list, [{ id: 5, status: "waiting" }]), list);
  assert.equal(lists.noteItems(list, [{ id: 5, status: "running" }]).refresh, true);
  assert.equal(lists.noteItems(list, [{ id: 9, status: "running" }]), list, "does not match: nothing to do");
});

test("on a later page, new rows are counted, not shown, each once", () => {
  let list = loaded(lists.newList("tasks"), page(ids(100, 51), "c1"));
  list = loaded(lists.nextPage(list), page(ids(50, 1)));
  list = lists.noteItems(list, [{ id: 101 }, { id: 102 }, { id: 101 }, { id: 20 }]);
  assert.equal(list.refresh, false);
  assert.equal(lists.newText(list), "2 new");
  list = loaded(lists.firstPage(list), page(ids(102, 53), "c2"));
  assert.equal(lists.newText(list), "");
});

test("with a filter on status, any row that comes to match is new on a later page", () => {
  let list = loaded(lists.newList("tasks", { status: "failed" }), page(ids(100, 51), "c1"));
  list = loaded(lists.nextPage(list), page(ids(50, 1)));
  list = lists.noteItems(list, [{ id: 60, status: "finished" }, { id: 70, status: "failed" }, { id: 4, status: "failed" }]);
  assert.equal(lists.newText(list), "1 new");
});

test("the new count is capped", () => {
  let list = loaded(lists.newList("runs"), page([1], "c1"));
  list = loaded(lists.nextPage(list), page([]));
  list = lists.noteItems(list, Array.from({ length: 1500 }, (_, index) => ({ id: 10 + index })));
  assert.equal(lists.newText(list), "999+ new");
});

test("matching: tasks by every filter, runs unknown when the event does not say", () => {
  const task = { id: 1, name: "Send Digest", task_id: "abc", status: "waiting", queue: "mail", func: "a.b", loop: true, paused: false, runner_name: "r1" };
  const filtered = (filters, kind = "tasks") => lists.matches(lists.newList(kind, filters), task);
  assert.equal(filtered({ status: "waiting", queue: "mail", func: "a.b", loop: "true", paused: "false", runner: "r1" }), true);
  assert.equal(filtered({ q: "digest" }), true);
  assert.equal(filtered({ q: "abc" }), true);
  assert.equal(filtered({ q: "ab" }), false, "a task id matches exactly");
  assert.equal(filtered({ loop: "false" }), false);
  const run = { id: 7, task: 1, status: "failed", runner: "r1" };
  assert.equal(lists.matches(lists.newList("runs", { task: "1", status: "failed" }), run), true);
  assert.equal(lists.matches(lists.newList("runs", { queue: "mail" }), run), null);
  assert.equal(lists.matches(lists.newList("runs", { queue: "mail", status: "running" }), run), false);
});
