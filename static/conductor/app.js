// What every live page shares: the state store, one render per animation frame, the socket and the
// commands sent on it. dashboard.js, taskpage.js and runnerpage.js each add their own panels.

import { Connection } from "./socket.js";
import { initialState, reduce } from "./store.js";
import { byTestId, frameScheduler, timeOfDay } from "./lib/dom.js";
import { renderHeader } from "./render/header.js";
import { silentRunner } from "./render/runners.js";
import { runIsRunning } from "./render/stack.js";

const FLASH_MS = 6000;

/**
 * @param render (page) => void or milliseconds until it wants to run again (lib/dom.js frameScheduler),
 *   called at most once per animation frame
 * @param afterChange (page, before) => void, after each action (fetch what the new state wants)
 * @param onEvents (page, events) => void, after a batch of events is in the store
 * @param onSnapshot (page) => void, after each snapshot (the page reads what else it shows again)
 * @param filters the lists' first filters, {tasks: {...}, runs: {...}}
 * @param minFrameGapMs the least time between two renders (lib/dom.js frameScheduler)
 */
export function startPage({ render, afterChange = () => {}, onEvents = () => {}, onSnapshot = () => {}, filters = {}, minFrameGapMs = 0 }) {
  const root = document.getElementById("app");
  const page = {
    base: root.dataset.base,
    state: initialState(filters),
    dispatch,
    serverNow: () => Date.now() / 1000 + page.state.skew,
    clock: (epoch) => (epoch ? timeOfDay(new Date((epoch - page.state.skew) * 1000)) : "—"),
    flash: (text, error) => dispatch({ type: "flash", text, error, until: Date.now() + FLASH_MS }),
    send,
    taskAction: (type, task) => send({ type, task }, { kind: "action", task }),
    openStack,
    closeStack: () => dispatch({ type: "stack.close" }),
    cancelRun: () => page.state.stack && send({ type: "cancel", run: page.state.stack.run }, { kind: "cancel", run: page.state.stack.run }),
  };
  page.markDirty = frameScheduler(() => {
    renderHeader(page.state);
    return render(page); // when it wants to run again (panels.js), if it says
  }, { minGapMs: minFrameGapMs });
  const connection = new Connection({
    path: root.dataset.socket,
    onMessage: (message, pending) => onMessage(page, message, pending, { onEvents, onSnapshot }),
    onConn: (conn) => dispatch({ type: "conn", conn }),
    wantsFrequentSnapshots: () => page.state.live.ok === false || silentRunner(page.state.runners.values(), page.serverNow()),
    onTick: () => {
      pollStack();
      page.markDirty(); // clocks, countdowns and the timeline move on
    },
  });
  page.connection = connection;

  function dispatch(action) {
    const before = page.state;
    page.state = reduce(before, action);
    if (page.state.snapshotWanted > before.snapshotWanted) connection.soonSnapshot();
    afterChange(page, before);
    page.markDirty();
  }

  /** Sends a command; says so when it cannot. */
  function send(message, pending = null) {
    const id = connection.send(message, pending);
    if (id === null) page.flash("Not connected: the command was not sent.", true);
    return id;
  }

  function openStack(run) {
    dispatch({ type: "stack.open", run });
    pollStack();
    requestAnimationFrame(() => byTestId("stack-panel")?.scrollIntoView({ block: "nearest", behavior: "smooth" }));
  }

  let stackRequest = null;
  function pollStack() {
    const open = page.state.stack;
    if (!open || !runIsRunning(page.state, open.run) || !connection.open) return;
    connection.forgetRequest(stackRequest); // a runner that never answered is not waited for
    stackRequest = connection.send({ type: "stack", run: open.run }, { kind: "stack", run: open.run });
  }

  const loginAgain = byTestId("login-again");
  if (loginAgain) loginAgain.href = location.pathname + location.search; // back here after logging in
  byTestId("close-stack")?.addEventListener("click", page.closeStack);
  byTestId("cancel-run")?.addEventListener("click", page.cancelRun);
  document.addEventListener("keydown", (event) => event.key === "Escape" && page.state.stack && page.closeStack());
  return page;
}

function onMessage(page, message, pending, { onEvents, onSnapshot }) {
  const { dispatch } = page;
  switch (message.type) {
    case "snapshot":
      dispatch({ type: "snapshot", snapshot: message, receivedAt: Date.now() / 1000 });
      return onSnapshot(page);
    case "snapshot.error": // the database is unreachable: keep what is shown, say why
      return dispatch({ type: "live.down", reason: message.error });
    case "events":
      dispatch({ type: "events", message });
      return onEvents(page, message.events);
    case "stack":
      return dispatch({ type: "stack", message });
    case "task.result":
      return dispatch({ type: "task.result", message });
    case "reply":
      return onReply(page, message, pending);
    case "error":
      return onError(page, message, pending);
    case "lost":
      if (pending?.kind === "create") {
        const text = "The connection dropped before the server answered: look for the task in the list before creating it again.";
        dispatch({ type: "form", form: { message: text, error: true, field: null } });
      }
      return undefined;
    default:
      return undefined;
  }
}

function onReply(page, message, pending) {
  if (pending?.kind === "create") return page.dispatch({ type: "created", task: message.task, message: message.message });
  if (!message.message) return undefined;
  page.flash(message.message, false);
  if (pending?.kind === "cancel") page.dispatch({ type: "stack.note", run: pending.run, note: message.message });
  return undefined;
}

function onError(page, message, pending) {
  if (pending?.kind === "create") return page.dispatch({ type: "form", form: { message: message.error, error: true, field: message.field } });
  if (pending?.kind === "stack") return page.dispatch({ type: "stack.error", run: pending.run, error: message.error });
  return page.flash(message.error, true);
}
