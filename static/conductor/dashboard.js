// Conductor's live dashboard: one WebSocket (docs/protocol.md), one state object, and one render per
// animation frame when something changed. Everything shown comes from the server as data and reaches
// the page through textContent only (task output is untrusted).

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const SAFETY_SNAPSHOT_MS = 60_000; // events can be lost: resync from the database now and then
const NOT_LIVE_SNAPSHOT_MS = 5_000; // without live events the page refreshes the database view
const SILENT_RUNNER_S = 10; // a runner with no heartbeat news this long may have lost the channel layer
const ANSWER_TIMEOUT_MS = 10_000; // an open socket that stops answering is dropped and reopened
const SLEEP_GAP_MS = 5_000; // a tick this late means the machine slept
const STABLE_AFTER_MS = 10_000; // a connection up this long resets the back-off
const TICK_MS = 1_000;
const LOG_KEEP = 20_000;
const TIMELINE_SECONDS = 300;
const KEEP_RUNS = 200;
const SHOWN_RUNS = 50;
const CLOSE_SIGNED_OUT = 4001; // the session ended: logging in again helps, reconnecting does not
const CLOSE_FORBIDDEN = 4003;
const FINAL_CLOSES = { [CLOSE_SIGNED_OUT]: "Signed out", [CLOSE_FORBIDDEN]: "not allowed (4003)" };
const CLOSED_TITLES = {
  [CLOSE_SIGNED_OUT]: "No session signs you in (logged out, expired, password changed, or no longer active staff): log in again.",
  [CLOSE_FORBIDDEN]: "Your account may not view tasks (it needs the conductor.view_task permission).",
};
const FINISH_EVENTS = new Set(["task.finished", "task.failed", "task.timed_out", "task.interrupted", "task.cancelled"]);
const TASK_ORDER = { running: 0, waiting: 1, failed: 2, timed_out: 3, finished: 4, stopped: 5, expired: 6 };

const state = {
  conn: { state: "connecting", code: null, attempts: 0, retryAt: null },
  skew: 0, // server clock minus ours, in seconds
  lastSnapshotAt: 0,
  sequences: new Map(), // event source (a runner's bridge) -> last seq seen
  awaitingSince: null, // when we asked the server something and have heard nothing since
  snapshotRequest: null, // id of the last snapshot asked for (an error answers it when the database is down)
  user: { name: "", can_change: false, can_add: false },
  live: { ok: true, reason: "" },
  functions: [],
  runnerNames: new Map(), // runner pk -> worker_id (events name runners by worker id)
  runners: new Map(), // worker_id -> runner
  threads: new Map(), // run id -> thread
  tasks: new Map(), // task pk -> task
  runs: new Map(), // run id -> run
  logs: new Map(), // run id -> live log text (last LOG_KEEP characters)
  created: new Set(), // pks of tasks created from this page
  results: new Map(), // run id -> result of a task created from this page
  pending: new Map(), // request id -> what we asked
  stack: null, // the open "what is it doing now?" panel: { run, text, at, error, note }
  form: { message: "", error: false, field: null },
  flash: null, // { text, error, until }
};

const socketState = { ws: null, nextId: 1, retryTimer: null, lastTick: Date.now() };

// Small helpers --------------------------------------------------------------------------------

const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
const serverNow = () => Date.now() / 1000 + state.skew;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function setAttr(node, name, value) {
  const text = String(value);
  if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

/** Replace a cell's children only when what it shows changed (``signature``). */
function fill(node, signature, build) {
  if (node.dataset.sig === signature) return;
  node.dataset.sig = signature;
  node.replaceChildren(...build().filter((child) => child !== null && child !== undefined));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function clock(epoch) {
  if (!epoch) return "—";
  return new Date((epoch - state.skew) * 1000).toLocaleTimeString([], { hour12: false });
}

function ago(epoch) {
  return epoch ? `${duration(serverNow() - epoch)} ago` : "—";
}

function text(value) {
  if (value === null || value === undefined || value === "") return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function badge(status, extra = "") {
  return el("span", { class: `badge s-${status} ${extra}`.trim(), text: String(status).replace("_", " ") });
}

function runnerName(pk) {
  if (pk === null || pk === undefined) return null;
  return state.runnerNames.get(pk) ?? `#${pk}`;
}

// The socket --------------------------------------------------------------------------------------

function socketUrl() {
  const path = document.getElementById("app").dataset.socket;
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

function connect() {
  clearTimeout(socketState.retryTimer);
  socketState.retryTimer = null;
  state.conn = { ...state.conn, state: state.conn.attempts ? "reconnecting" : "connecting", retryAt: null };
  const ws = new WebSocket(socketUrl());
  socketState.ws = ws;
  state.awaitingSince = Date.now(); // the server sends a snapshot on connect
  ws.addEventListener("message", (event) => ws === socketState.ws && onMessage(event));
  ws.addEventListener("close", (event) => ws === socketState.ws && onClose(event.code));
  markDirty();
}

/** The socket is gone: nothing asked on it will be answered. */
function forgetSocket() {
  socketState.ws = null;
  state.awaitingSince = null;
  if ([...state.pending.values()].some((pending) => pending.kind === "create")) {
    const message = "The connection dropped before the server answered: look for the task in the list before creating it again.";
    state.form = { message, error: true, field: null };
  }
  state.pending.clear();
}

function onClose(code) {
  forgetSocket();
  if (code in FINAL_CLOSES) {
    state.conn = { ...state.conn, state: "closed", code, retryAt: null };
    markDirty();
    return; // signed out or not allowed: asking again would not help
  }
  scheduleReconnect(code);
}

function scheduleReconnect(code) {
  // A connection that stayed up a while starts the back-off afresh; one that keeps dropping at once
  // (a server that accepts, then fails) backs off further each time.
  const stable = state.conn.liveSince && Date.now() - state.conn.liveSince > STABLE_AFTER_MS;
  const attempts = stable ? 1 : state.conn.attempts + 1;
  const base = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** (attempts - 1));
  const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
  state.conn = { state: "reconnecting", code, attempts, retryAt: Date.now() + delay, liveSince: null };
  socketState.retryTimer = setTimeout(connect, delay);
  markDirty();
}

/** Drop a socket that stopped answering (a laptop lid, a dead NAT entry) and reconnect at once. */
function dropStaleSocket() {
  const ws = socketState.ws;
  forgetSocket();
  try {
    ws.close(4000, "no answer");
  } catch {
    // already closing
  }
  state.conn = { ...state.conn, attempts: 0 };
  connect();
}

/** After sleep, going online, or the tab becoming visible: make sure the page is connected and fresh. */
function checkConnection() {
  if (state.conn.state === "closed") return;
  const ws = socketState.ws;
  if (!ws) {
    state.conn = { ...state.conn, attempts: 0 };
    connect();
  } else if (ws.readyState === WebSocket.OPEN) {
    requestSnapshot();
  }
}

function send(message, pending = null) {
  const ws = socketState.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    showFlash("Not connected: the command was not sent.", true);
    return null;
  }
  const id = socketState.nextId++;
  if (pending) state.pending.set(id, pending);
  ws.send(JSON.stringify({ ...message, id }));
  return id;
}

function requestSnapshot() {
  const ws = socketState.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return; // every (re)connect brings a snapshot anyway
  if (state.awaitingSince !== null) return; // one question at a time is enough
  const id = send({ type: "snapshot" });
  if (id === null) return;
  state.awaitingSince = Date.now();
  state.snapshotRequest = id;
}

// Messages from the server -------------------------------------------------------------------

const MESSAGE_HANDLERS = {
  snapshot: applySnapshot,
  events: onEvents,
  reply: onReply,
  error: onError,
  stack: onStack,
  "task.result": onTaskResult,
};

/** Events in order; a gap in a runner's sequence means some were dropped: resync from the database. */
function onEvents(message) {
  message.events.forEach(applyEvent);
  if (message.source === undefined) return;
  const last = state.sequences.get(message.source);
  state.sequences.set(message.source, message.seq);
  if (last !== undefined && message.seq !== last + 1) requestSnapshot();
}

function onMessage(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;
  }
  const handler = MESSAGE_HANDLERS[message.type];
  if (handler) handler(message);
  markDirty();
}

function applySnapshot(snapshot) {
  state.awaitingSince = null;
  state.lastSnapshotAt = Date.now();
  state.skew = snapshot.at - Date.now() / 1000;
  state.user = snapshot.user;
  state.live = snapshot.live;
  state.functions = snapshot.functions;
  state.runnerNames = new Map(snapshot.runners.map((runner) => [runner.id, runner.worker_id]));
  state.runners = new Map(snapshot.runners.map((runner) => [runner.worker_id, runner]));
  state.tasks = new Map(snapshot.tasks.map((task) => [task.id, task]));
  state.runs = mergeRuns(snapshot.runs);
  state.threads = threadsFrom(snapshot.threads);
  for (const run of state.logs.keys()) {
    if (!state.threads.has(run) && state.stack?.run !== run) state.logs.delete(run);
  }
  const liveSince = state.conn.state === "live" ? state.conn.liveSince : Date.now();
  state.conn = { state: "live", code: null, attempts: state.conn.attempts, retryAt: null, liveSince };
}

/** The snapshot's runs (the database's word), plus finished runs we knew that it no longer lists. */
function mergeRuns(snapshotRuns) {
  const runs = new Map(snapshotRuns.map((run) => [run.id, { ...run, runner: runnerName(run.runner) }]));
  for (const [id, run] of state.runs) {
    if (!runs.has(id) && run.status !== "running") runs.set(id, run);
  }
  return trimRuns(runs);
}

function trimRuns(runs) {
  if (runs.size <= KEEP_RUNS) return runs;
  const newest = [...runs.values()].sort((a, b) => (b.started_at ?? 0) - (a.started_at ?? 0));
  return new Map(newest.slice(0, KEEP_RUNS).map((run) => [run.id, run]));
}

/** Threads as of each runner's last heartbeat, corrected by the runs (which are newer). */
function threadsFrom(snapshotThreads) {
  const threads = new Map();
  for (const thread of snapshotThreads) {
    const run = state.runs.get(thread.run);
    if (run && run.status !== "running") continue; // ended since the heartbeat
    threads.set(thread.run, { ...thread, runner: runnerName(thread.runner) });
  }
  for (const run of state.runs.values()) {
    if (run.status === "running" && !threads.has(run.id)) threads.set(run.id, threadFromRun(run));
  }
  return threads;
}

function threadFromRun(run) {
  return {
    run: run.id,
    task: run.task,
    task_name: run.task_name,
    runner: run.runner,
    name: run.thread_name,
    ident: run.thread_ident,
    daemon: true,
    alive: true,
    state: "running",
    started_at: run.started_at,
    loop_count: state.tasks.get(run.task)?.attempts ?? null,
    progress: run.progress,
    progress_message: run.progress_message,
  };
}

// Events -------------------------------------------------------------------------------------

const EVENT_HANDLERS = {
  "runner.up": (e) => updateRunner(e, { state: "running", threads: e.threads, pid: e.pid, busy: 0, started_at: e.at, heartbeat_at: e.at }),
  "runner.heartbeat": (e) => updateRunner(e, { busy: e.busy, threads: e.threads, heartbeat_at: e.at }),
  "runner.stopping": (e) => updateRunner(e, { state: "stopping" }),
  "runner.down": (e) => {
    updateRunner(e, { state: "stopped", busy: 0 });
    endRuns(e.interrupted_runs ?? [], "interrupted");
    for (const [run, thread] of state.threads) if (thread.runner === e.runner) state.threads.delete(run);
  },
  "runner.presumed_dead": () => soonSnapshot(),
  "runner.degraded": (e) => updateRunner(e, { state: "degraded", degraded_reason: e.reason }),
  "runner.recovered": (e) => updateRunner(e, { state: "running", degraded_reason: null }),
  "task.deleted": (e) => state.tasks.delete(e.task),
  "runs.recovered": (e) => {
    updateRunner({ runner: e.dead_runner }, { state: "dead", busy: 0 });
    endRuns(e.runs ?? [], "interrupted");
    soonSnapshot(); // their tasks are due again
  },
  "task.claimed": (e) => setTask(e.state),
  "task.changed": (e) => setTask(e.state),
  "thread.started": onThreadStarted,
  "thread.finished": (e) => state.threads.delete(e.run),
  "task.overrunning": (e) => updateThread(e.run, { state: "overrunning" }),
  "run.progress": (e) => {
    updateThread(e.run, { progress: e.progress, progress_message: e.message });
    updateRun(e.run, { progress: e.progress, progress_message: e.message });
  },
  "run.log": (e) => appendLog(e.run, e.text),
  "run.cancel_requested": (e) => updateThread(e.run, { state: "cancelling" }),
};

function applyEvent(event) {
  if (FINISH_EVENTS.has(event.type)) onRunFinished(event);
  else EVENT_HANDLERS[event.type]?.(event);
}

function updateRunner(event, fields) {
  const known = state.runners.get(event.runner);
  if (!known) soonSnapshot(); // a new runner: its host and id come with the next snapshot
  state.runners.set(event.runner, { worker_id: event.runner, host: "", pid: null, state: "running", threads: 0, busy: 0, ...known, ...fields });
}

// States come from the runners and the web servers, which race: keep the newest, never an older one.
function setTask(task) {
  const known = task && state.tasks.get(task.id);
  if (task && !(known && known.updated_at > task.updated_at)) state.tasks.set(task.id, task);
}

function updateThread(run, fields) {
  const thread = state.threads.get(run);
  if (thread) state.threads.set(run, { ...thread, ...fields });
}

function updateRun(id, fields) {
  const run = state.runs.get(id);
  if (run) state.runs.set(id, { ...run, ...fields });
}

function endRuns(ids, status) {
  const now = serverNow();
  for (const id of ids) {
    const run = state.runs.get(id);
    if (run && run.status === "running") {
      state.runs.set(id, { ...run, status, finished_at: now, duration: now - (run.started_at ?? now) });
    }
    state.threads.delete(id);
  }
}

function onThreadStarted(e) {
  const task = state.tasks.get(e.task);
  state.threads.set(e.run, {
    run: e.run,
    task: e.task,
    task_name: e.name,
    runner: e.runner,
    name: e.thread,
    ident: e.ident,
    daemon: e.daemon,
    alive: true,
    state: "running",
    started_at: e.at,
    loop_count: task?.attempts ?? null,
    progress: null,
    progress_message: "",
  });
  if (!state.runs.has(e.run)) {
    state.runs.set(e.run, {
      id: e.run, task: e.task, task_name: e.name, runner: e.runner, thread_name: e.thread, thread_ident: e.ident,
      status: "running", started_at: e.at, finished_at: null, duration: null, output: null, error: "",
    });
    state.runs = trimRuns(state.runs);
  }
}

function onRunFinished(e) {
  setTask(e.state);
  const known = state.runs.get(e.run) ?? {};
  const run = e.run_state
    ? { ...e.run_state, runner: e.runner ?? runnerName(e.run_state.runner) }
    : { ...known, id: e.run, status: e.status, duration: e.duration, finished_at: e.at, output: e.output, error: e.error };
  state.runs.set(e.run, run);
  state.threads.delete(e.run);
  if (state.created.has(e.task) && !state.results.has(e.run)) {
    state.results.set(e.run, { task: e.name, task_id: e.task_id, task_pk: e.task, run: e.run, status: e.status, output: e.output, error: e.error, duration: e.duration });
  }
  if (state.stack?.run !== e.run) state.logs.delete(e.run);
}

function appendLog(run, chunk) {
  const textSoFar = (state.logs.get(run) ?? "") + chunk;
  state.logs.set(run, textSoFar.length > LOG_KEEP ? textSoFar.slice(-LOG_KEEP) : textSoFar);
}

let snapshotSoon = null;
function soonSnapshot() {
  if (snapshotSoon === null) {
    snapshotSoon = setTimeout(() => {
      snapshotSoon = null;
      requestSnapshot();
    }, 300);
  }
}

// Replies, errors, stacks, results ----------------------------------------------------------

function onReply(message) {
  const pending = state.pending.get(message.id);
  state.pending.delete(message.id);
  if (pending?.kind === "create") {
    state.form = { message: message.message, error: false, field: null };
    if (message.task) {
      state.created.add(message.task.id);
      setTask(message.task);
    }
  } else if (message.message) {
    showFlash(message.message, false);
    if (pending?.kind === "cancel" && state.stack?.run === pending.run) state.stack.note = message.message;
  }
}

function onError(message) {
  if (message.id !== null && message.id === state.snapshotRequest) {
    // No snapshot (the database is unreachable): an answer all the same. Keep what is shown, say why,
    // and ask again as often as while live news is missing.
    state.awaitingSince = null;
    state.lastSnapshotAt = Date.now();
    state.live = { ok: false, reason: message.error };
    return;
  }
  const pending = state.pending.get(message.id);
  state.pending.delete(message.id);
  if (pending?.kind === "create") {
    state.form = { message: message.error, error: true, field: message.field };
  } else if (pending?.kind === "stack") {
    if (state.stack?.run === pending.run) state.stack.error = message.error;
  } else {
    showFlash(message.error, true);
  }
}

function onStack(message) {
  state.pending.delete(message.id);
  if (state.stack?.run === message.run) {
    Object.assign(state.stack, { text: message.stack, at: message.at, thread: message.thread, error: "" });
  }
  if (typeof message.log === "string") seedLog(message.run, message.log);
}

/** A stack answer that carries the run's output so far fills in what was printed before the page came. */
function seedLog(run, logSoFar) {
  const live = state.logs.get(run) ?? "";
  if (logSoFar.length > live.length && logSoFar.endsWith(live)) state.logs.set(run, logSoFar.slice(-LOG_KEEP));
}

function onTaskResult(message) {
  state.results.set(message.run, { ...message, task: message.name ?? state.tasks.get(message.task)?.name, task_pk: message.task });
}

function showFlash(textToShow, error) {
  state.flash = { text: textToShow, error, until: Date.now() + 6000 };
  markDirty();
}

// Commands ------------------------------------------------------------------------------------

function taskAction(type, taskPk) {
  send({ type, task: taskPk }, { kind: "action", task: taskPk });
}

function openStack(run) {
  state.stack = { run, text: "", at: null, error: "", note: "" };
  pollStack();
  markDirty();
  requestAnimationFrame(() => byTestId("stack-panel").scrollIntoView({ block: "nearest", behavior: "smooth" }));
}

function closeStack() {
  if (state.stack && !state.threads.has(state.stack.run)) state.logs.delete(state.stack.run);
  state.stack = null;
  markDirty();
}

function pollStack() {
  const open = state.stack;
  if (!open || !runIsRunning(open.run) || !socketState.ws || socketState.ws.readyState !== WebSocket.OPEN) return;
  state.pending.delete(open.requestId); // a runner that never answered is not waited for
  open.requestId = send({ type: "stack", run: open.run }, { kind: "stack", run: open.run });
}

function runIsRunning(run) {
  return state.threads.has(run) || state.runs.get(run)?.status === "running";
}

function cancelRun() {
  if (!state.stack) return;
  send({ type: "cancel", run: state.stack.run }, { kind: "cancel", run: state.stack.run });
}

function submitCreate(event) {
  event.preventDefault();
  const form = event.target;
  const values = new FormData(form);
  let args;
  try {
    args = JSON.parse(values.get("args_in") || "{}");
  } catch (error) {
    state.form = { message: `args_in: not JSON (${error.message}).`, error: true, field: "args_in" };
    markDirty();
    return;
  }
  const message = {
    type: "create",
    func: values.get("func"),
    args_in: args,
    run_in: numberOr(values.get("run_in"), 0),
    loop: values.get("loop") === "on",
    interval: numberOr(values.get("interval"), 60),
    db_use: values.get("db_use") === "on",
  };
  const name = String(values.get("name") || "").trim();
  if (name) message.name = name;
  const killTime = String(values.get("kill_time") || "").trim();
  if (killTime) message.kill_time = Number(killTime);
  if (send(message, { kind: "create" }) !== null) state.form = { message: "Creating…", error: false, field: null };
  markDirty();
}

function numberOr(value, fallback) {
  const textValue = String(value ?? "").trim();
  return textValue === "" ? fallback : Number(textValue);
}

// Rendering -----------------------------------------------------------------------------------

let dirty = false;

function markDirty() {
  if (!dirty) {
    dirty = true;
    requestAnimationFrame(render);
  }
}

function render() {
  dirty = false;
  const now = serverNow();
  renderHeader();
  renderRunners(now);
  renderThreads(now);
  renderStack();
  renderTimeline(now);
  renderTasks(now);
  renderCreate();
  renderRuns(now);
}

function renderHeader() {
  const indicator = byTestId("conn-status");
  const { conn } = state;
  setAttr(indicator, "data-state", conn.state);
  let label = conn.state;
  if (conn.state === "connecting") label = "connecting…";
  if (conn.state === "reconnecting") {
    const wait = conn.retryAt ? Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000)) : 0;
    const closed = conn.code ? ` (closed ${conn.code})` : "";
    label = conn.retryAt ? `reconnecting in ${wait} s${closed}` : `reconnecting…${closed}`;
  }
  if (conn.state === "closed") label = FINAL_CLOSES[conn.code] ?? `closed (${conn.code})`;
  setText(indicator, label);
  byTestId("signed-out").hidden = !(conn.state === "closed" && conn.code === CLOSE_SIGNED_OUT);
  setAttr(indicator, "title", (conn.state === "closed" && CLOSED_TITLES[conn.code]) || "Live connection to the runner's events");
  const who = state.user.name ? `${state.user.name}${state.user.can_change ? "" : " (read-only)"}` : "";
  setText(byTestId("user-name"), who);

  const banner = byTestId("live-banner");
  banner.hidden = state.live.ok !== false;
  setText(banner, state.live.ok === false ? state.live.reason : "");

  const flash = byTestId("flash");
  const flashing = state.flash && state.flash.until > Date.now();
  flash.hidden = !flashing;
  flash.classList.toggle("error", Boolean(flashing && state.flash.error));
  setText(flash, flashing ? state.flash.text : "");
}

/** Keep one row per key (so buttons stay put between renders), in the order of ``items``. */
function syncRows(tbody, items, keyOf, build, update) {
  const existing = new Map([...tbody.children].map((row) => [row.dataset.key, row]));
  items.forEach((item, index) => {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) existing.delete(key);
    else {
      row = build(item);
      row.dataset.key = key;
    }
    update(row, item);
    if (tbody.children[index] !== row) tbody.insertBefore(row, tbody.children[index] ?? null);
  });
  for (const row of existing.values()) row.remove();
  const empty = document.querySelector(`[data-empty-for="${tbody.dataset.testid}"]`);
  if (empty) empty.hidden = items.length > 0;
}

function cells(row, names) {
  for (const name of names) row.append(el("td", { "data-col": name }));
  return row;
}

const cell = (row, name) => row.querySelector(`[data-col="${name}"]`);

function renderRunners(now) {
  const runners = [...state.runners.values()].sort((a, b) => (a.state === b.state ? a.worker_id.localeCompare(b.worker_id) : liveFirst(a, b)));
  syncRows(byTestId("runners"), runners, (r) => r.worker_id,
    (r) => cells(el("tr", { "data-testid": "runner-row", "data-worker-id": r.worker_id }), ["name", "host", "pid", "threads", "heartbeat", "state"]),
    (row, r) => {
      setText(cell(row, "name"), r.worker_id);
      setText(cell(row, "host"), r.host || "…");
      setText(cell(row, "pid"), r.pid ?? "…");
      fill(cell(row, "threads"), `${r.busy}/${r.threads}`, () => [meter(r.busy, r.threads), ` ${r.busy}/${r.threads}`]);
      const age = r.heartbeat_at ? now - r.heartbeat_at : null;
      const heartbeat = cell(row, "heartbeat");
      setText(heartbeat, age === null ? "—" : `${duration(age)} ago`);
      heartbeat.classList.toggle("stale", r.state === "running" && age !== null && age > SILENT_RUNNER_S);
      setAttr(row, "data-state", r.state);
      fill(cell(row, "state"), r.state, () => [badge(r.state)]);
      setAttr(cell(row, "state"), "title", r.degraded_reason || "");
    });
}

function liveFirst(a, b) {
  const rank = { running: 0, degraded: 0, stopping: 1, dead: 2, stopped: 3 };
  return (rank[a.state] ?? 9) - (rank[b.state] ?? 9);
}

function meter(value, total) {
  const fraction = total ? Math.min(1, value / total) : 0;
  const bar = el("span", { class: "meter-fill" });
  bar.style.width = `${Math.round(fraction * 100)}%`;
  return el("span", { class: "meter", "aria-hidden": "true" }, bar);
}

function renderThreads(now) {
  const threads = [...state.threads.values()].sort((a, b) => (a.started_at ?? 0) - (b.started_at ?? 0));
  syncRows(byTestId("threads"), threads, (t) => t.run,
    (t) => {
      const row = cells(el("tr", { "data-testid": "thread-row", "data-run-id": t.run, class: "clickable", onclick: () => openStack(t.run) }),
        ["name", "ident", "daemon", "alive", "task", "state", "started", "elapsed", "loops", "progress"]);
      cell(row, "name").append(el("button", { type: "button", class: "link", "data-testid": "inspect-thread", title: "What is it doing now?" }));
      return row;
    },
    (row, t) => {
      setText(cell(row, "name").firstChild, t.name ?? `run ${t.run}`);
      setText(cell(row, "ident"), t.ident ?? "—");
      setText(cell(row, "daemon"), t.daemon ? "yes" : "no");
      setText(cell(row, "alive"), t.alive ? "yes" : "no");
      setText(cell(row, "task"), t.task_name ?? "");
      fill(cell(row, "state"), t.state, () => [badge(t.state)]);
      setText(cell(row, "started"), clock(t.started_at));
      setText(cell(row, "elapsed"), t.started_at ? duration(now - t.started_at) : "—");
      setText(cell(row, "loops"), t.loop_count ?? "—");
      fill(cell(row, "progress"), `${t.progress}|${t.progress_message}`, () => [progressBar(t.progress, t.progress_message)]);
      row.classList.toggle("selected", state.stack?.run === t.run);
    });
}

function progressBar(progress, message) {
  const known = typeof progress === "number";
  const fill_ = el("span", { class: "progress-fill" });
  fill_.style.width = known ? `${Math.round(progress * 100)}%` : "0%";
  const label = known ? `${Math.round(progress * 100)}%${message ? ` · ${message}` : ""}` : message || "";
  return el("div", { class: `progress${known ? "" : " unknown"}`, "data-testid": "progress" }, fill_, el("span", { class: "progress-label", text: label }));
}

function renderStack() {
  const panel = byTestId("stack-panel");
  const open = state.stack;
  panel.hidden = !open;
  if (!open) return;
  const run = state.runs.get(open.run);
  const thread = state.threads.get(open.run);
  const running = runIsRunning(open.run);
  const status = thread?.state ?? run?.status ?? "running";
  setText(byTestId("stack-title"), `${thread?.task_name ?? run?.task_name ?? ""} · run ${open.run} · ${thread?.name ?? run?.thread_name ?? open.thread ?? ""}`);
  const stateBadge = byTestId("stack-state");
  setText(stateBadge, status.replace("_", " "));
  stateBadge.className = `badge s-${status}`;
  setAttr(panel, "data-status", running ? "running" : status);
  const cancel = byTestId("cancel-run");
  cancel.hidden = !state.user.can_change;
  cancel.disabled = !running || status === "cancelling";

  let note = open.note || "";
  if (!running && run) note = `The run ended ${run.status.replace("_", " ")} after ${duration(run.duration)}.${run.error ? ` ${run.error}` : ""}`;
  else if (open.error) note = open.error;
  setText(byTestId("stack-note"), note);
  const stackBox = byTestId("stack-text");
  const stackBefore = stackBox.textContent;
  setText(stackBox, open.text || (running ? "Asking the runner…" : "(no stack: the run has ended)"));
  if (stackBox.textContent !== stackBefore) stackBox.scrollTop = stackBox.scrollHeight; // innermost call last
  setText(byTestId("stack-at"), open.at ? `at ${clock(open.at)}` : "");
  const { log, final } = logFor(open.run, run, running);
  const shown = log.replace(/^\n+/, ""); // a live log may begin at a line break
  setText(byTestId("log-tail"), shown || (running ? "(nothing printed or logged yet)" : "(nothing printed or logged)"));
  setText(byTestId("log-note"), final ? "the run's log tail" : "live");
  const logBox = byTestId("log-tail");
  if (running) logBox.scrollTop = logBox.scrollHeight;
}

/** The live log while the run goes on; once it ended, its recorded log tail (unless ours holds more). */
function logFor(runId, run, running) {
  const live = state.logs.get(runId) ?? "";
  if (running || !run || typeof run.log_tail !== "string") return { log: live, final: false };
  const tail = run.log_tail;
  if (live.length > tail.length && live.endsWith(tail)) return { log: live, final: true };
  return { log: tail, final: true };
}

function renderTimeline(now) {
  const root = byTestId("timeline");
  const lanes = timelineLanes(now);
  const from = now - TIMELINE_SECONDS;
  if (!root.firstChild) {
    root.append(el("div", { class: "tl-labels" }), el("div", { class: "tl-track" }, el("div", { class: "tl-axis" })));
  }
  const [labels, track] = root.children;
  labels.replaceChildren(...lanes.map((lane) => el("div", { class: "tl-label", text: lane.label, title: lane.label })));
  track.style.height = `${Math.max(1, lanes.length) * 22 + 18}px`;
  renderAxis(track.firstChild);
  const bars = new Map([...track.querySelectorAll(".tl-bar")].map((bar) => [bar.dataset.runId, bar]));
  lanes.forEach((lane, index) => {
    for (const run of lane.runs) {
      let bar = bars.get(String(run.id));
      if (bar) bars.delete(String(run.id));
      else {
        bar = el("div", { class: "tl-bar", "data-testid": "timeline-bar", "data-run-id": run.id, onclick: () => runIsRunning(run.id) && openStack(run.id) });
        track.append(bar);
      }
      placeBar(bar, run, index, from, now);
    }
  });
  for (const bar of bars.values()) bar.remove();
  root.classList.toggle("empty-timeline", lanes.length === 0);
  setAttr(root, "data-bars", track.querySelectorAll(".tl-bar").length);
}

function placeBar(bar, run, lane, from, now) {
  const start = Math.max(run.started_at, from);
  const end = run.finished_at ?? now;
  bar.style.left = `${((start - from) / TIMELINE_SECONDS) * 100}%`;
  bar.style.width = `max(3px, ${((end - start) / TIMELINE_SECONDS) * 100}%)`;
  bar.style.top = `${lane * 22 + 2}px`;
  bar.className = `tl-bar s-${run.status}`;
  setAttr(bar, "data-status", run.status);
  setAttr(bar, "title", `${run.task_name} · run ${run.id} · ${run.status.replace("_", " ")} · ${duration(end - run.started_at)}`);
}

function renderAxis(axis) {
  if (axis.childElementCount) return; // minute marks sit at fixed places: -5 m ... now
  for (let minutes = 5; minutes >= 0; minutes -= 1) {
    const mark = el("span", { class: "tl-mark", text: minutes ? `−${minutes} m` : "now" });
    mark.style.left = `${((TIMELINE_SECONDS - minutes * 60) / TIMELINE_SECONDS) * 100}%`;
    axis.append(mark);
  }
}

/** Runs of the last 5 minutes packed into lanes: one lane per runner thread slot in use. */
function timelineLanes(now) {
  const from = now - TIMELINE_SECONDS;
  const recent = [...state.runs.values()]
    .filter((run) => run.started_at && (run.finished_at ?? now) >= from)
    .sort((a, b) => a.started_at - b.started_at);
  const byRunner = new Map();
  for (const run of recent) {
    const key = run.runner ?? "in process";
    if (!byRunner.has(key)) byRunner.set(key, []);
    const lanes = byRunner.get(key);
    let lane = lanes.find((l) => l.end <= run.started_at);
    if (!lane) {
      lane = { label: `${key} · slot ${lanes.length + 1}`, end: 0, runs: [] };
      lanes.push(lane);
    }
    lane.runs.push(run);
    lane.end = run.finished_at ?? Infinity;
  }
  return [...byRunner.keys()].sort().flatMap((key) => byRunner.get(key));
}

function sortTasks(a, b) {
  const order = (TASK_ORDER[a.status] ?? 9) - (TASK_ORDER[b.status] ?? 9);
  if (order) return order;
  if (a.status === "waiting") return (a.next_run ?? Infinity) - (b.next_run ?? Infinity) || a.id - b.id;
  return (b.last_run ?? 0) - (a.last_run ?? 0) || b.id - a.id;
}

function renderTasks(now) {
  const tasks = [...state.tasks.values()].sort(sortTasks);
  const canChange = state.user.can_change;
  syncRows(byTestId("tasks"), tasks, (t) => t.id, buildTaskRow, (row, t) => updateTaskRow(row, t, now, canChange));
}

function buildTaskRow(task) {
  const row = cells(el("tr", { "data-testid": "task-row", "data-task-id": task.id }),
    ["name", "status", "next", "last", "schedule", "kill", "db", "output", "actions"]);
  const act = (type) => () => taskAction(type, Number(row.dataset.taskId));
  const pauseOrResume = () => taskAction(row.dataset.paused === "true" ? "resume" : "pause", Number(row.dataset.taskId));
  cell(row, "actions").append(el("div", { class: "actions" },
    el("button", { type: "button", "data-testid": "run-now", onclick: act("run_now") }, "Run now"),
    el("button", { type: "button", "data-testid": "pause", onclick: pauseOrResume }, "Pause"),
    el("button", { type: "button", "data-testid": "stop-loop", onclick: act("stop_loop") }, "Stop loop"),
  ));
  return row;
}

function updateTaskRow(row, t, now, canChange) {
  setAttr(row, "data-status", t.status);
  setAttr(row, "data-paused", t.paused);
  row.classList.toggle("mine", state.created.has(t.id));
  fill(cell(row, "name"), `${t.name}|${t.func}|${t.task_id}`, () => [
    el("div", { class: "strong", text: t.name }),
    el("div", { class: "sub", text: t.func, title: `task_id ${t.task_id}` }),
  ]);
  fill(cell(row, "status"), `${t.status}|${t.paused}|${runsText(t)}`, () => [
    badge(t.status), t.paused ? badge("paused") : null,
    el("div", { class: "sub", text: runsText(t) }),
  ]);
  setText(cell(row, "next"), nextRunText(t, now));
  fill(cell(row, "last"), `${Math.floor(now - (t.last_run ?? now))}|${t.last_status}`, () => [
    el("div", { text: t.last_run ? ago(t.last_run) : "never" }),
    t.last_status ? el("div", { class: `sub c-${t.last_status}`, text: t.last_status.replace("_", " ") }) : null,
  ]);
  fill(cell(row, "schedule"), `${scheduleText(t)}|${placementText(t)}`, () => [
    el("div", { text: scheduleText(t) }),
    placementText(t) ? el("div", { class: "sub", text: placementText(t) }) : null,
  ]);
  setText(cell(row, "kill"), t.kill_time ? duration(t.kill_time) : "—");
  setText(cell(row, "db"), t.db_use ? "db_use" : "");
  const output = cell(row, "output");
  setText(output, t.error ? t.error : text(t.output));
  output.classList.toggle("error-text", Boolean(t.error));
  setAttr(output, "title", t.error ? t.error : text(t.output));
  const actions = cell(row, "actions").firstChild;
  actions.hidden = !canChange;
  const [runNow, pause, stopLoop] = actions.children;
  runNow.disabled = t.status === "running";
  setText(pause, t.paused ? "Resume" : "Pause");
  stopLoop.hidden = !t.loop;
}

function scheduleText(task) {
  if (task.cron) return task.schedule || task.cron; // in words, with its time zone
  return task.loop ? `every ${duration(task.interval)}` : "once";
}

/** What is not the default about where, in what order and within what window a task runs. */
function placementText(task) {
  const parts = [];
  if (task.queue && task.queue !== "default") parts.push(`queue ${task.queue}`);
  if (task.priority) parts.push(`priority ${task.priority}`);
  if (task.isolation === "process") parts.push("own process");
  if (task.max_attempts > 1) parts.push(`up to ${task.max_attempts} tries`);
  if (task.max_runs) parts.push(`${task.run_count}/${task.max_runs} runs`);
  if (task.start_at && task.start_at > Date.now() / 1000) parts.push(`from ${new Date(task.start_at * 1000).toLocaleString()}`);
  if (task.expires_at) parts.push(`expires ${new Date(task.expires_at * 1000).toLocaleString()}`);
  return parts.join(" · ");
}

function runsText(task) {
  const runs = `${task.attempts} run${task.attempts === 1 ? "" : "s"}`;
  return task.max_attempts > 1 && task.attempt > 1 ? `${runs} · try ${task.attempt}/${task.max_attempts}` : runs;
}

function nextRunText(task, now) {
  if (task.status === "running") return "running now";
  if (task.status !== "waiting" || !task.next_run) return "—";
  const wait = task.next_run - now;
  const when = wait > 0 ? `in ${duration(wait)}` : "due now";
  return task.paused ? `paused (${when})` : when;
}

function renderCreate() {
  const panel = byTestId("create-panel");
  panel.hidden = !state.user.can_add;
  if (!state.user.can_add) return;
  const select = byTestId("create-func");
  const paths = state.functions.map((f) => f.path).join("\n");
  if (select.dataset.paths !== paths) {
    const chosen = select.value;
    select.dataset.paths = paths;
    select.replaceChildren(...state.functions.map((f) => el("option", { value: f.path, text: f.path })));
    if (state.functions.some((f) => f.path === chosen)) select.value = chosen;
  }
  const info = state.functions.find((f) => f.path === select.value);
  setText(byTestId("create-signature"), info ? `${info.path.split(".").pop()}${info.signature}` : "");
  setText(byTestId("create-doc"), info?.doc ?? "");

  const message = byTestId("form-message");
  setText(message, state.form.message);
  message.classList.toggle("error-text", state.form.error);
  setAttr(message, "data-field", state.form.field ?? "");
  for (const input of byTestId("create-form").elements) {
    if (!input.name) continue;
    const invalid = state.form.error && input.name === state.form.field;
    input.classList.toggle("invalid", invalid);
    if (invalid) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  renderResults();
}

function renderResults() {
  const results = [...state.results.values()].sort((a, b) => b.run - a.run).slice(0, 20);
  const list = byTestId("results");
  fill(list, JSON.stringify(results.map((r) => [r.run, r.status, r.error ? r.error.length : 0])), () => results.map(resultItem));
}

function resultItem(result) {
  const status = result.status ?? "finished";
  const failed = status !== "finished";
  return el("li", { "data-testid": "task-result", "data-run-id": result.run, "data-status": status },
    badge(status), " ",
    el("span", { class: "strong", text: result.task ?? "" }),
    el("span", { class: "sub", text: ` run ${result.run} · ${duration(result.duration)}` }), " ",
    failed && result.error
      ? el("details", {}, el("summary", { class: "error-text", text: lastLine(result.error) }), el("pre", { class: "code", text: result.error }))
      : el("code", { "data-testid": "result-output", text: `→ ${text(result.output) || "null"}` }));
}

function lastLine(value) {
  const lines = String(value).trim().split("\n");
  return lines[lines.length - 1];
}

function renderRuns(now) {
  const runs = [...state.runs.values()].sort((a, b) => (b.started_at ?? 0) - (a.started_at ?? 0) || b.id - a.id).slice(0, SHOWN_RUNS);
  syncRows(byTestId("runs"), runs, (r) => r.id,
    (r) => cells(el("tr", { "data-testid": "run-row", "data-run-id": r.id }), ["id", "task", "status", "started", "duration", "where", "output"]),
    (row, r) => {
      setAttr(row, "data-status", r.status);
      row.className = `c-row-${r.status}`;
      setText(cell(row, "id"), r.id);
      setText(cell(row, "task"), r.task_name ?? "");
      fill(cell(row, "status"), r.status, () => [badge(r.status)]);
      setText(cell(row, "started"), clock(r.started_at));
      const seconds = r.status === "running" && r.started_at ? now - r.started_at : r.duration;
      setText(cell(row, "duration"), duration(seconds));
      const threadName = r.thread_name || state.threads.get(r.id)?.name;
      setText(cell(row, "where"), [r.runner, threadName].filter(Boolean).join(" / "));
      const output = cell(row, "output");
      setText(output, r.error ? r.error : text(r.output));
      output.classList.toggle("error-text", Boolean(r.error));
      setAttr(output, "title", r.error ? r.error : text(r.output));
    });
}

// Timers and start-up ---------------------------------------------------------------------------

function tick() {
  const now = Date.now();
  const slept = now - socketState.lastTick > SLEEP_GAP_MS;
  socketState.lastTick = now;
  const ws = socketState.ws;
  if (slept) checkConnection();
  else if (ws && ws.readyState === WebSocket.OPEN) {
    if (state.awaitingSince !== null && now - state.awaitingSince > ANSWER_TIMEOUT_MS) dropStaleSocket();
    else {
      const every = state.live.ok === false || silentRunner(now / 1000) ? NOT_LIVE_SNAPSHOT_MS : SAFETY_SNAPSHOT_MS;
      if (now - state.lastSnapshotAt > every) requestSnapshot();
      pollStack();
    }
  } else if (ws && ws.readyState === WebSocket.CONNECTING && now - state.awaitingSince > ANSWER_TIMEOUT_MS) {
    dropStaleSocket();
  }
  markDirty(); // clocks, countdowns and the timeline move on
}

// A runner that cannot reach the channel layer still heartbeats in the database: read it from there.
function silentRunner(nowSeconds) {
  for (const r of state.runners.values()) {
    if (r.state === "running" && r.heartbeat_at && nowSeconds - r.heartbeat_at > SILENT_RUNNER_S) return true;
  }
  return false;
}

function start() {
  // The dashboard itself: signed out, it sends the browser to the login page, which comes back here.
  byTestId("login-again").href = location.pathname + location.search;
  byTestId("close-stack").addEventListener("click", closeStack);
  byTestId("cancel-run").addEventListener("click", cancelRun);
  byTestId("create-form").addEventListener("submit", submitCreate);
  byTestId("create-func").addEventListener("change", markDirty);
  byTestId("create-form").addEventListener("input", () => {
    if (state.form.error) {
      state.form = { message: "", error: false, field: null };
      markDirty();
    }
  });
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && checkConnection());
  window.addEventListener("online", checkConnection);
  document.addEventListener("keydown", (event) => event.key === "Escape" && state.stack && closeStack());
  window.addEventListener("pageshow", (event) => event.persisted && checkConnection());
  setInterval(tick, TICK_MS);
  connect();
}

start();
