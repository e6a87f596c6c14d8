// The dashboard's state and its reducer: reduce(state, action) -> the next state, without touching the
// state given, the DOM, the clock or the network (tests/js/store.test.js runs it in Node).
//
// What the store keeps is bounded by what the page shows: runners (the snapshot's 20), threads (as many
// as the runners run), the tasks and runs of the page shown (lists.js), the runs of the timeline (at most
// KEEP_RECENT), live logs of running threads only, and the last RESULTS_KEPT results. Events about
// anything else only tell the lists that a page may have changed (lists.noteItems).

import * as lists from "./lists.js";

export const KEEP_RECENT = 200;
export const LOG_KEEP = 20_000;
export const RESULTS_KEPT = 20;
export const FINISH_EVENTS = new Set(["task.finished", "task.failed", "task.timed_out", "task.interrupted", "task.cancelled"]);

export function initialState(filters = {}) {
  return {
    conn: { state: "connecting", code: null, attempts: 0, retryAt: null },
    skew: 0, // server clock minus ours, in seconds
    clockSkewWarning: 2, // CLOCK_SKEW_WARNING (the snapshot's): a runner's clock_offset beyond it is marked
    user: { name: "", can_change: false, can_add: false },
    live: { ok: true, reason: "" },
    functions: [],
    runnerNames: new Map(), // runner pk -> worker_id (events name runners by worker id)
    runners: new Map(), // worker_id -> runner
    threads: new Map(), // run id -> thread
    tasks: new Map(), // task id -> task, the tasks page's rows
    runs: new Map(), // run id -> run, the runs page's rows
    recent: new Map(), // run id -> run, the timeline's
    logs: new Map(), // run id -> live log text of a running thread (last LOG_KEEP characters)
    sequences: new Map(), // event source -> last seq seen
    snapshotWanted: 0, // grows when events say the page should read the database again
    created: new Set(), // ids of tasks created from this page (at most RESULTS_KEPT)
    results: new Map(), // run id -> result of a task created from this page
    stack: null, // the open "what is it doing now?" panel: { run, text, at, error, note }
    form: { message: "", error: false, field: null },
    flash: null, // { text, error, until }
    lists: { tasks: lists.newList("tasks", filters.tasks), runs: lists.newList("runs", filters.runs) },
  };
}

export function reduce(state, action) {
  const handler = ACTIONS[action.type];
  return handler ? handler(state, action) : state;
}

const ACTIONS = {
  conn: (s, a) => ({ ...s, conn: a.conn }),
  snapshot: applySnapshot,
  events: applyEvents,
  page: applyPage,
  list: (s, a) => ({ ...s, lists: { ...s.lists, [a.kind]: a.change(s.lists[a.kind]) } }),
  "stack.open": (s, a) => ({ ...s, stack: { run: a.run, text: "", at: null, error: "", note: "" } }),
  "stack.close": closeStack,
  stack: applyStack,
  "stack.error": (s, a) => (s.stack?.run === a.run ? { ...s, stack: { ...s.stack, error: a.error } } : s),
  "stack.note": (s, a) => (s.stack?.run === a.run ? { ...s, stack: { ...s.stack, note: a.note } } : s),
  created: applyCreated,
  "task.result": applyResult,
  form: (s, a) => ({ ...s, form: a.form }),
  flash: (s, a) => ({ ...s, flash: { text: a.text, error: a.error, until: a.until } }),
  "live.down": (s, a) => ({ ...s, live: { ok: false, reason: a.reason } }),
};

// Snapshots --------------------------------------------------------------------------------------

function applySnapshot(state, { snapshot, receivedAt }) {
  const runnerNames = new Map(snapshot.runners.map((runner) => [runner.id, runner.worker_id]));
  const next = {
    ...state,
    skew: snapshot.at - receivedAt,
    clockSkewWarning: snapshot.clock_skew_warning ?? state.clockSkewWarning,
    user: snapshot.user,
    live: snapshot.live,
    functions: snapshot.functions,
    runnerNames,
    runners: new Map(snapshot.runners.map((runner) => [runner.worker_id, runner])),
  };
  const draft = new Draft(next);
  for (const run of snapshot.runs) draft.putRun(normalRun(run, runnerNames), { addToRecent: true });
  for (const task of snapshot.tasks) if (state.tasks.has(task.id)) draft.putTask(task);
  draft.finish();
  next.threads = threadsFrom(next, snapshot.threads);
  next.logs = new Map([...state.logs].filter(([run]) => next.threads.has(run) || state.stack?.run === run));
  // The database is the truth: read the pages shown again.
  next.lists = { tasks: lists.wantRefresh(next.lists.tasks), runs: lists.wantRefresh(next.lists.runs) };
  return next;
}

/** Threads as of each runner's last heartbeat, corrected by the runs (which are newer). */
function threadsFrom(state, snapshotThreads) {
  const threads = new Map();
  for (const thread of snapshotThreads) {
    const run = findRun(state, thread.run);
    if (run && run.status !== "running") continue; // ended since the heartbeat
    threads.set(thread.run, { ...thread, runner: state.runnerNames.get(thread.runner) ?? thread.runner });
  }
  for (const run of state.recent.values()) {
    if (run.status === "running" && !threads.has(run.id)) threads.set(run.id, threadFromRun(run));
  }
  return threads;
}

function threadFromRun(run) {
  return {
    run: run.id, task: run.task, task_name: run.task_name, runner: run.runner, name: run.thread_name,
    ident: run.thread_ident, daemon: true, alive: true, state: "running", started_at: run.started_at,
    loop_count: null, progress: run.progress, progress_message: run.progress_message,
  };
}

export const findRun = (state, id) => state.runs.get(id) ?? state.recent.get(id);

/** A run as the page keeps it: its runner named by worker id, as events name it. */
function normalRun(run, runnerNames) {
  const runner = run.runner_name ?? (typeof run.runner === "number" ? runnerNames.get(run.runner) ?? `#${run.runner}` : run.runner);
  return { ...run, runner: runner ?? null };
}

// Pages of the lists -----------------------------------------------------------------------------

function applyPage(state, { kind, generation, answer }) {
  const list = lists.pageLoaded(state.lists[kind], generation, answer);
  if (list === state.lists[kind]) return state;
  const next = { ...state, lists: { ...state.lists, [kind]: list } };
  if (answer.error || generation !== state.lists[kind].generation) return next;
  if (kind === "tasks") {
    // The page's rows, each as the newest state known (an event may have overtaken the request).
    next.tasks = new Map(answer.items.map((task) => [task.id, newer(state.tasks.get(task.id), task)]));
  } else {
    next.runs = new Map(answer.items.map((run) => [run.id, normalRun(run, state.runnerNames)]));
  }
  return next;
}

// States come from the runners and the web servers, which race: keep the newest, never an older one.
function newer(known, task) {
  return known && known.updated_at > task.updated_at ? known : task;
}

// Events -----------------------------------------------------------------------------------------

/** Copy-on-write of the maps a batch of events touches, so a batch of 500 copies each map once. */
class Draft {
  constructor(state) {
    this.state = state;
    this.copied = new Set();
    this.changedTasks = [];
    this.changedRuns = [];
  }

  map(name) {
    if (!this.copied.has(name)) {
      this.copied.add(name);
      this.state[name] = new Map(this.state[name]);
    }
    return this.state[name];
  }

  putTask(task) {
    if (!task) return;
    const item = { ...task, runner_name: this.state.runnerNames.get(task.runner) ?? null };
    this.changedTasks.push(item);
    if (this.state.tasks.has(task.id)) this.map("tasks").set(task.id, newer(this.state.tasks.get(task.id), task));
  }

  putRun(run, { addToRecent = false } = {}) {
    this.changedRuns.push(run);
    if (this.state.runs.has(run.id)) this.map("runs").set(run.id, { ...this.state.runs.get(run.id), ...run });
    if (addToRecent || this.state.recent.has(run.id)) this.map("recent").set(run.id, { ...this.state.recent.get(run.id), ...run });
  }

  updateRun(id, fields) {
    const run = findRun(this.state, id);
    if (run) this.putRun({ ...run, ...fields });
  }

  finish() {
    const { state } = this;
    if (this.copied.has("recent") && state.recent.size > KEEP_RECENT) state.recent = newestRuns(state.recent);
    if (this.changedTasks.length) state.lists = { ...state.lists, tasks: lists.noteItems(state.lists.tasks, this.changedTasks) };
    if (this.changedRuns.length) state.lists = { ...state.lists, runs: lists.noteItems(state.lists.runs, this.changedRuns) };
    return state;
  }
}

function newestRuns(runs) {
  const newest = [...runs.values()].sort((a, b) => (b.started_at ?? 0) - (a.started_at ?? 0) || b.id - a.id);
  return new Map(newest.slice(0, KEEP_RECENT).map((run) => [run.id, run]));
}

/** Events in order; a gap in a runner's sequence means some were lost: read the database again. */
function applyEvents(state, { message }) {
  const draft = new Draft({ ...state });
  for (const event of message.events) {
    if (FINISH_EVENTS.has(event.type)) onRunFinished(draft, event);
    else EVENT_HANDLERS[event.type]?.(draft, event);
  }
  if (message.source !== undefined) {
    const last = state.sequences.get(message.source);
    draft.map("sequences").set(message.source, message.seq);
    if (last !== undefined && message.seq !== last + 1) draft.state.snapshotWanted += 1;
  }
  return draft.finish();
}

const EVENT_HANDLERS = {
  "runner.up": (d, e) => updateRunner(d, e, { state: "running", threads: e.threads, pid: e.pid, busy: 0, started_at: e.at, heartbeat_at: e.at }),
  "runner.heartbeat": (d, e) => updateRunner(d, e, { busy: e.busy, threads: e.threads, heartbeat_at: e.at, ...offsetOf(e.clock_offset) }),
  "runner.clock_skew": (d, e) => updateRunner(d, e, offsetOf(e.offset)),
  "runner.stopping": (d, e) => updateRunner(d, e, { state: "stopping" }),
  "runner.down": (d, e) => {
    updateRunner(d, e, { state: "stopped", busy: 0 });
    endRuns(d, e.interrupted_runs ?? [], "interrupted", e.at);
    for (const [run, thread] of d.state.threads) if (thread.runner === e.runner) d.map("threads").delete(run);
  },
  "runner.presumed_dead": (d) => {
    d.state.snapshotWanted += 1;
  },
  "runner.degraded": (d, e) => updateRunner(d, e, { state: "degraded", degraded_reason: e.reason }),
  "runner.recovered": (d, e) => updateRunner(d, e, { state: "running", degraded_reason: null }),
  "runs.recovered": (d, e) => {
    updateRunner(d, { runner: e.dead_runner }, { state: "dead", busy: 0 });
    endRuns(d, e.runs ?? [], "interrupted", e.at);
    d.state.snapshotWanted += 1; // their tasks are due again
  },
  "task.deleted": (d, e) => {
    if (d.state.tasks.has(e.task)) {
      d.map("tasks").delete(e.task);
      d.state.lists = { ...d.state.lists, tasks: lists.wantRefresh(d.state.lists.tasks) };
    }
  },
  "task.claimed": (d, e) => d.putTask(e.state),
  "task.changed": (d, e) => d.putTask(e.state),
  "thread.started": onThreadStarted,
  "thread.finished": (d, e) => d.state.threads.has(e.run) && d.map("threads").delete(e.run),
  "task.overrunning": (d, e) => updateThread(d, e.run, { state: "overrunning" }),
  "run.progress": (d, e) => {
    updateThread(d, e.run, { progress: e.progress, progress_message: e.message });
    d.updateRun(e.run, { progress: e.progress, progress_message: e.message });
  },
  "run.log": (d, e) => appendLog(d, e.run, e.text),
  "run.cancel_requested": (d, e) => updateThread(d, e.run, { state: "cancelling" }),
};

function updateRunner(draft, event, fields) {
  const known = draft.state.runners.get(event.runner);
  if (!known) draft.state.snapshotWanted += 1; // a new runner: its host and id come with the next snapshot
  const base = { worker_id: event.runner, host: "", pid: null, state: "running", threads: 0, busy: 0 };
  draft.map("runners").set(event.runner, { ...base, ...known, ...fields });
}

// An event without an offset (an older runner's) leaves the one known alone.
const offsetOf = (offset) => (typeof offset === "number" ? { clock_offset: offset } : {});

function updateThread(draft, run, fields) {
  const thread = draft.state.threads.get(run);
  if (thread) draft.map("threads").set(run, { ...thread, ...fields });
}

function endRuns(draft, ids, status, at) {
  for (const id of ids) {
    const run = findRun(draft.state, id);
    if (run && run.status === "running") {
      const finishedAt = at ?? run.started_at;
      draft.putRun({ ...run, status, finished_at: finishedAt, duration: finishedAt - (run.started_at ?? finishedAt) });
    }
    if (draft.state.threads.has(id)) draft.map("threads").delete(id);
  }
}

function onThreadStarted(draft, e) {
  draft.map("threads").set(e.run, {
    run: e.run, task: e.task, task_name: e.name, runner: e.runner, name: e.thread, ident: e.ident,
    daemon: e.daemon, alive: true, state: "running", started_at: e.at,
    loop_count: draft.state.tasks.get(e.task)?.attempts ?? null, progress: null, progress_message: "",
  });
  const known = findRun(draft.state, e.run);
  draft.putRun(known ?? {
    id: e.run, task: e.task, task_id: e.task_id, task_name: e.name, runner: e.runner, thread_name: e.thread,
    thread_ident: e.ident, status: "running", started_at: e.at, finished_at: null, duration: null, output: null, error: "",
  }, { addToRecent: true });
}

function onRunFinished(draft, e) {
  draft.putTask(e.state);
  const known = findRun(draft.state, e.run) ?? {};
  const run = e.run_state
    ? { ...e.run_state, task_id: e.task_id ?? known.task_id, runner: e.runner ?? draft.state.runnerNames.get(e.run_state.runner) ?? null }
    : { ...known, id: e.run, status: e.status, duration: e.duration, finished_at: e.at, output: e.output, error: e.error };
  draft.putRun(run, { addToRecent: true });
  if (draft.state.threads.has(e.run)) draft.map("threads").delete(e.run);
  if (draft.state.created.has(e.task) && !draft.state.results.has(e.run)) {
    addResult(draft, { task: e.name, task_id: e.task_id, task_pk: e.task, run: e.run, status: e.status, output: e.output, error: e.error, duration: e.duration });
  }
  if (draft.state.stack?.run !== e.run && draft.state.logs.has(e.run)) draft.map("logs").delete(e.run);
}

function appendLog(draft, run, chunk) {
  if (!draft.state.threads.has(run) && draft.state.stack?.run !== run) return; // nobody can look at it
  const textSoFar = (draft.state.logs.get(run) ?? "") + chunk;
  draft.map("logs").set(run, textSoFar.length > LOG_KEEP ? textSoFar.slice(-LOG_KEEP) : textSoFar);
}

function addResult(draft, result) {
  const results = draft.map("results");
  results.set(result.run, result);
  if (results.size > RESULTS_KEPT) results.delete(Math.min(...results.keys()));
}

// Commands' answers ------------------------------------------------------------------------------

function closeStack(state) {
  if (!state.stack) return state;
  const logs = state.threads.has(state.stack.run) ? state.logs : new Map([...state.logs].filter(([run]) => run !== state.stack.run));
  return { ...state, stack: null, logs };
}

function applyStack(state, { message }) {
  const next = { ...state };
  if (state.stack?.run === message.run) {
    next.stack = { ...state.stack, text: message.stack, at: message.at, thread: message.thread, error: "" };
  }
  // A stack answer carries the run's output so far: it fills in what was printed before the page came.
  const live = state.logs.get(message.run) ?? "";
  const logSoFar = message.log;
  if (typeof logSoFar === "string" && logSoFar.length > live.length && logSoFar.endsWith(live)) {
    next.logs = new Map(state.logs).set(message.run, logSoFar.slice(-LOG_KEEP));
  }
  return next;
}

function applyCreated(state, { task, message }) {
  const next = { ...state, form: { message, error: false, field: null } };
  if (!task) return next;
  const created = new Set([...state.created, task.id].slice(-RESULTS_KEPT));
  const draft = new Draft({ ...next, created });
  draft.putTask(task);
  return draft.finish();
}

function applyResult(state, { message }) {
  const draft = new Draft({ ...state });
  addResult(draft, { ...message, task: message.name ?? state.tasks.get(message.task)?.name, task_pk: message.task });
  return draft.state;
}
