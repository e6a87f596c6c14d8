// The dashboard's reducer (static/conductor/store.js): events and pages in, the next state out.
import assert from "node:assert/strict";
import test from "node:test";

import * as lists from "../../static/conductor/lists.js";
import { KEEP_RECENT, initialState, reduce } from "../../static/conductor/store.js";
import { SILENT_RUNNER_S, clockOffsetText, clockSkewed, silentRunner } from "../../static/conductor/render/runners.js";

const task = (id, fields = {}) => ({ id, task_id: `t${id}`, name: `task ${id}`, status: "waiting", paused: false, loop: false, queue: "default", func: "jobs.noop", runner: null, attempts: 0, updated_at: 100, ...fields });
const runner = { id: 1, worker_id: "r1", host: "h", pid: 9, state: "running", threads: 8, busy: 0, heartbeat_at: 1 };
const snapshot = (fields = {}) => ({ type: "snapshot", at: 1000, live: { ok: true, reason: "" }, user: { name: "boss", can_change: true, can_add: true }, functions: [], runners: [runner], threads: [], tasks: [], runs: [], ...fields });
const events = (list, extra = {}) => ({ type: "events", message: { events: list, ...extra } });

function withPage(state, kind, items, next = null) {
  const asked = reduce(state, { type: "list", kind, change: lists.requested });
  return reduce(asked, { type: "page", kind, generation: asked.lists[kind].generation, answer: { items, next } });
}

function drainEvents(taskId, runId, at) {
  const state = task(taskId, { status: "finished", updated_at: at });
  return [
    { type: "task.claimed", at, runner: "r1", task: taskId, run: runId, state: task(taskId, { status: "running", updated_at: at - 0.5 }) },
    { type: "thread.started", at, runner: "r1", task: taskId, run: runId, name: `task ${taskId}`, thread: "w-1", ident: 5, daemon: true },
    { type: "thread.finished", at, runner: "r1", task: taskId, run: runId, thread: "w-1" },
    { type: "task.finished", at, runner: "r1", task: taskId, run: runId, status: "finished", duration: 0.01, state, run_state: { id: runId, task: taskId, task_name: `task ${taskId}`, runner: 1, status: "finished", started_at: at, finished_at: at, duration: 0.01 } },
  ];
}

test("a snapshot brings runners and asks for the pages; its tasks do not fill the tasks panel", () => {
  const state = reduce(initialState(), { type: "snapshot", snapshot: snapshot({ tasks: [task(1)] }), receivedAt: 990 });
  assert.equal(state.skew, 10);
  assert.deepEqual([...state.runners.keys()], ["r1"]);
  assert.equal(state.tasks.size, 0);
  assert.equal(state.lists.tasks.refresh, true);
  assert.equal(state.lists.runs.refresh, true);
});

test("the reducer leaves the state it was given as it was", () => {
  const before = withPage(reduce(initialState(), { type: "snapshot", snapshot: snapshot(), receivedAt: 1000 }), "tasks", [task(1)]);
  const tasks = before.tasks;
  const after = reduce(before, events(drainEvents(1, 10, 200)));
  assert.equal(before.tasks, tasks);
  assert.equal(before.tasks.get(1).status, "waiting");
  assert.equal(before.recent.size, 0);
  assert.equal(after.tasks.get(1).status, "finished");
});

test("rows on the page update in place; the newest state wins whatever the order", () => {
  let state = withPage(initialState(), "tasks", [task(1), task(2)]);
  const changes = Array.from({ length: 10 }, (_, n) => ({ type: "task.changed", at: n, task: 1, state: task(1, { attempts: n, updated_at: 200 + n }) }));
  state = reduce(state, events([...changes, { type: "task.changed", at: 0, task: 1, state: task(1, { attempts: 99, updated_at: 150 }) }]));
  assert.equal(state.tasks.get(1).attempts, 9, "ten changes in one batch: the last is kept, the stale one ignored");
  assert.equal(state.lists.tasks.refresh, false, "nothing new for the page");
  // A page answered with an older state than an event already brought keeps the event's.
  state = withPage(state, "tasks", [task(1, { updated_at: 120 }), task(3)]);
  assert.equal(state.tasks.get(1).attempts, 9);
  assert.deepEqual([...state.tasks.keys()], [1, 3]);
});

test("a drain of 20,000 tasks keeps the store bounded by the page", () => {
  let state = reduce(initialState(), { type: "snapshot", snapshot: snapshot(), receivedAt: 1000 });
  const pageIds = Array.from({ length: 50 }, (_, n) => 20_000 - n);
  state = withPage(state, "tasks", pageIds.map((id) => task(id)), "cursor");
  for (let first = 1; first <= 20_000; first += 125) {
    const batch = [];
    for (let id = first; id < first + 125; id += 1) batch.push(...drainEvents(id, id, 2000 + id / 1000));
    state = reduce(state, events(batch));
  }
  assert.equal(state.tasks.size, 50);
  assert.ok([...state.tasks.values()].every((t) => t.status === "finished"));
  assert.equal(state.threads.size, 0);
  assert.ok(state.recent.size <= KEEP_RECENT);
  assert.equal(state.logs.size, 0);
  assert.ok(state.runs.size <= lists.PAGE_SIZE);
});

test("a thread starts and ends with its run; the log is kept while it runs", () => {
  let state = reduce(initialState(), { type: "snapshot", snapshot: snapshot(), receivedAt: 1000 });
  const [, started, finished, done] = drainEvents(4, 40, 500);
  state = reduce(state, events([started, { type: "run.log", run: 40, text: "hello\n" }, { type: "run.progress", run: 40, progress: 0.5, message: "half" }]));
  assert.equal(state.threads.get(40).progress, 0.5);
  assert.equal(state.recent.get(40).status, "running");
  assert.equal(state.logs.get(40), "hello\n");
  assert.equal(state.lists.runs.refresh, true, "a new run for the runs page");
  state = reduce(state, events([finished, done]));
  assert.equal(state.threads.size, 0);
  assert.equal(state.recent.get(40).status, "finished");
  assert.equal(state.recent.get(40).runner, "r1");
  assert.equal(state.logs.size, 0);
});

test("a gap in a source's sequence asks for a snapshot", () => {
  let state = reduce(initialState(), events([], { source: "a", seq: 1 }));
  state = reduce(state, events([], { source: "a", seq: 2 }));
  assert.equal(state.snapshotWanted, 0);
  state = reduce(state, events([], { source: "a", seq: 5 }));
  assert.equal(state.snapshotWanted, 1);
});

test("on a later page, tasks that come to match are counted as new", () => {
  let state = withPage(initialState(), "tasks", [task(100), task(99)], "c");
  state = reduce(state, { type: "list", kind: "tasks", change: lists.nextPage });
  state = withPage(state, "tasks", [task(98)]);
  state = reduce(state, events([{ type: "task.changed", task: 101, state: task(101) }]));
  assert.equal(lists.newText(state.lists.tasks), "1 new");
  assert.deepEqual([...state.tasks.keys()], [98], "the page does not move");
});

test("results of tasks created here are kept, at most twenty", () => {
  let state = reduce(initialState(), { type: "created", task: task(5), message: "adder created" });
  assert.equal(state.form.message, "adder created");
  state = reduce(state, events([{ ...drainEvents(5, 50, 10)[3], name: "adder", output: 5 }]));
  assert.equal(state.results.get(50).output, 5);
  for (let run = 100; run < 130; run += 1) state = reduce(state, { type: "task.result", message: { task: 5, run, status: "finished" } });
  assert.equal(state.results.size, 20);
});

// Clocks: every time the page gets is the database's (docs/protocol.md), and runners' offsets are shown.

test("a snapshot brings the skew warning; runners' offsets come with heartbeats and runner.clock_skew", () => {
  let state = reduce(initialState(), { type: "snapshot", snapshot: snapshot({ clock_skew_warning: 0.5, runners: [{ ...runner, clock_offset: 0.01 }] }), receivedAt: 990 });
  assert.equal(state.clockSkewWarning, 0.5);
  assert.equal(state.runners.get("r1").clock_offset, 0.01);

  state = reduce(state, events([{ type: "runner.clock_skew", at: 1001, runner: "r1", offset: 30.2, limit: 0.5 }]));
  assert.equal(state.runners.get("r1").clock_offset, 30.2);
  state = reduce(state, events([{ type: "runner.heartbeat", at: 1002, runner: "r1", busy: 1, threads: 8, clock_offset: 29.9 }]));
  assert.equal(state.runners.get("r1").clock_offset, 29.9);
  // A heartbeat without an offset (a runner of an older version) leaves the one known.
  state = reduce(state, events([{ type: "runner.heartbeat", at: 1003, runner: "r1", busy: 0, threads: 8 }]));
  assert.equal(state.runners.get("r1").clock_offset, 29.9);
});

test("a snapshot without the skew warning keeps the default", () => {
  const state = reduce(initialState(), { type: "snapshot", snapshot: snapshot(), receivedAt: 990 });
  assert.equal(state.clockSkewWarning, 2);
});

test("a runner whose clock is 30 s behind is not shown late when its heartbeats carry the database's time", () => {
  // The browser's clock is 1,000 s behind the database's; the snapshot's "at" is the database's time.
  const databaseNow = 5000;
  const browserNow = databaseNow - 1000;
  let state = reduce(initialState(), { type: "snapshot", snapshot: snapshot({ at: databaseNow, runners: [{ ...runner, heartbeat_at: databaseNow - 1, clock_offset: 30 }] }), receivedAt: browserNow });
  const pageNow = (browser) => browser + state.skew; // app.js serverNow()

  // The runner stamps its heartbeat with its own time plus its offset: the database's time.
  state = reduce(state, events([{ type: "runner.heartbeat", at: databaseNow + 4, runner: "r1", busy: 0, threads: 8, clock_offset: 30 }]));
  assert.equal(silentRunner(state.runners.values(), pageNow(browserNow + 5)), false);
  // Stamped by its own clock (30 s behind) the same heartbeat would look 31 s old: late, snapshots all the time.
  const unshifted = reduce(state, events([{ type: "runner.heartbeat", at: databaseNow + 4 - 30, runner: "r1", busy: 0, threads: 8 }]));
  assert.equal(silentRunner(unshifted.runners.values(), pageNow(browserNow + 5)), true);
  // And silence is still seen: no heartbeat for longer than SILENT_RUNNER_S by the database's clock.
  assert.equal(silentRunner(state.runners.values(), pageNow(browserNow + 5 + SILENT_RUNNER_S)), true);
});

test("a runner's clock offset in words, marked past the warning", () => {
  assert.equal(clockOffsetText(30.04), "30.0 s behind");
  assert.equal(clockOffsetText(-2.5), "2.5 s ahead");
  assert.equal(clockOffsetText(0.0123), "0.012 s behind");
  assert.equal(clockOffsetText(0), "in step");
  assert.equal(clockOffsetText(null), "—");
  assert.equal(clockSkewed(-2.5, 2), true);
  assert.equal(clockSkewed(1.9, 2), false);
  assert.equal(clockSkewed(null, 2), false);
});
