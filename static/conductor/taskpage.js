// One task's page (templates/conductor/task.html): its definition and next runs (api/tasks/<task_id>),
// its runs a page at a time (api/runs?task=<id>), with a run's output, traceback and log on a click
// (api/runs/<id>), its running threads with their stack and log, and the list's actions. Events about
// this task keep it live: the task's state comes with them, and its definition is read again after each.

import { startPage } from "./app.js";
import { listFetcher } from "./listfetch.js";
import { FINISH_EVENTS } from "./store.js";
import { badge, byTestId, el, fill, getJson, setText } from "./lib/dom.js";
import { duration, nextRunText, runsText, scheduleText, text, words } from "./lib/format.js";
import { wireListControls } from "./render/listcontrols.js";
import { renderThreads } from "./render/runners.js";
import { renderStack } from "./render/stack.js";
import { actionButtons, renderRunsPanel, updateActions } from "./render/tables.js";

const root = document.getElementById("app");
const taskPk = Number(root.dataset.taskPk);
const taskId = root.dataset.taskId;
const RELOAD_MS = 500;

const view = { detail: null, task: null, error: "", selected: null, run: null, reloadTimer: null };

function render(page) {
  const { state } = page;
  const now = page.serverNow();
  renderHead(page, now);
  const threads = [...state.threads.values()].filter((thread) => thread.task === taskPk);
  renderThreads(threads, now, { openStack: page.openStack, selectedRun: state.stack?.run, clock: page.clock });
  renderStack(state, page.clock);
  renderRunsPanel(page, now, { onSelect: (run) => selectRun(page, run), selected: view.selected });
  renderRunDetail(page);
}

function renderHead(page, now) {
  const task = view.task;
  setText(byTestId("task-error"), view.error);
  if (!task) return;
  setText(byTestId("task-name"), task.name);
  fill(byTestId("task-badges"), `${task.status}|${task.paused}`, () => [badge(task.status), task.paused ? badge("paused") : null]);
  byTestId("task-head").dataset.status = task.status;
  const last = task.last_run ? `last run ${duration(now - task.last_run)} ago (${words(task.last_status)})` : "never run";
  setText(byTestId("task-summary"), `${task.func} · ${scheduleText(task)} · next: ${nextRunText(task, now)} · ${last} · ${runsText(task)}`);
  const actions = byTestId("task-actions");
  if (!actions.firstChild) {
    actions.append(actionButtons({
      runNow: () => page.taskAction("run_now", taskPk),
      pause: () => page.taskAction(view.task.paused ? "resume" : "pause", taskPk),
      stopLoop: () => page.taskAction("stop_loop", taskPk),
    }));
  }
  updateActions(actions.firstChild, task, page.state.user.can_change);
  const running = runningRun(page.state);
  const cancel = byTestId("cancel-current");
  cancel.hidden = !page.state.user.can_change || running === null;
  renderDefinition(task);
}

function runningRun(state) {
  for (const thread of state.threads.values()) if (thread.task === taskPk) return thread.run;
  return null;
}

function renderDefinition(task) {
  const detail = view.detail;
  if (!detail) return;
  const rows = [["task_id", task.task_id], ["func", task.func], ["schedule", scheduleText(task)],
    ...Object.entries(detail.definition).map(([name, value]) => [name, definitionText(name, value)])];
  fill(byTestId("definition"), JSON.stringify(rows), () => rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { "data-field": name, text: value })]));
  setText(byTestId("task-timezone"), `in ${detail.definition.timezone || "UTC"}`);
  fill(byTestId("upcoming"), detail.upcoming.join("|"), () => detail.upcoming.map((moment) => el("li", { "data-testid": "upcoming-run", text: moment.replace("T", " ") })));
  setText(byTestId("upcoming-note"), detail.upcoming.length ? "" : "No runs to come (a one-off task, or its schedule has ended).");
}

function definitionText(name, value) {
  if (value === null || value === undefined || value === "") return "—";
  if (name.endsWith("_at") && typeof value === "number") return new Date(value * 1000).toLocaleString();
  return typeof value === "string" ? value : JSON.stringify(value);
}

async function selectRun(page, run) {
  view.selected = run;
  view.run = null;
  showRunInAddress(run);
  page.markDirty();
  const answer = await getJson(`${page.base}api/runs/${run}`);
  const foreign = answer.id && answer.task_id !== taskId;
  if (view.selected === run) view.run = foreign ? { error: `Run ${run} is a run of another task (${answer.task_id}).` } : answer;
  page.markDirty();
}

/** The address names the run shown (?run=<id>), so it can be shared, reloaded, and linked from the admin. */
function showRunInAddress(run) {
  const url = new URL(location.href);
  if (run === null) url.searchParams.delete("run");
  else url.searchParams.set("run", String(run));
  history.replaceState(history.state, "", url);
}

/** The run the address names on arrival (the admin's run page links here), or null. */
function runInAddress() {
  const run = new URL(location.href).searchParams.get("run");
  return run && /^[0-9]{1,18}$/.test(run) ? Number(run) : null;
}

function renderRunDetail(page) {
  const panel = byTestId("run-detail");
  panel.hidden = view.selected === null;
  if (view.selected === null) return;
  const run = view.run;
  panel.dataset.runId = view.selected;
  panel.dataset.status = run?.status ?? "";
  setText(byTestId("run-detail-title"), `${view.selected}${run?.status ? ` · ${words(run.status)}` : ""}`);
  const summary = !run ? "Loading…" : run.error && !run.id ? run.error
    : `try ${run.attempt} · ${duration(run.duration)} · ${run.runner_name ?? "no runner"} / ${run.thread_name || "—"} · started ${page.clock(run.started_at)}`;
  setText(byTestId("run-detail-summary"), summary);
  setText(byTestId("run-output"), run?.id ? text(run.output) || "(none)" : "");
  setText(byTestId("run-traceback"), run?.id ? run.error || "(none)" : "");
  setText(byTestId("run-log"), run?.id ? run.log || "(nothing printed or logged)" : "");
  const admin = byTestId("run-admin-link");
  admin.hidden = !run?.admin_url;
  if (run?.admin_url) admin.setAttribute("href", run.admin_url);
}

/** Read the task and its next runs again (after an event about it, or a snapshot). */
function reloadSoon(page) {
  if (view.reloadTimer !== null) return;
  view.reloadTimer = setTimeout(async () => {
    view.reloadTimer = null;
    const answer = await getJson(`${page.base}api/tasks/${encodeURIComponent(taskId)}`);
    if (answer.error) view.error = answer.status === 404 ? "This task has been deleted." : answer.error;
    else Object.assign(view, { detail: answer, error: "", task: newer(view.task, answer.task) });
    page.markDirty();
  }, RELOAD_MS);
}

const RELOAD_EVENTS = new Set(["task.deleted", "task.changed", "task.claimed"]);
const newer = (known, task) => (known && known.updated_at > task.updated_at ? known : task);

function onEvents(page, events) {
  for (const event of events) {
    if (event.task !== taskPk) continue;
    if (event.state) view.task = newer(view.task, event.state);
    // task.claimed too: the next runs then start from the slot after the run that began.
    if (RELOAD_EVENTS.has(event.type) || FINISH_EVENTS.has(event.type)) reloadSoon(page);
    if (FINISH_EVENTS.has(event.type) && event.run === view.selected) selectRun(page, event.run);
  }
}

const fetchLists = listFetcher(["runs"]);
const fixed = { task: String(taskPk) };
const page = startPage({
  render, afterChange: fetchLists, onEvents, onSnapshot: reloadSoon, filters: { runs: fixed },
});
wireListControls("runs", (kind, change) => page.dispatch({ type: "list", kind, change }), fixed);
byTestId("close-run-detail").addEventListener("click", () => {
  view.selected = null;
  showRunInAddress(null);
  page.markDirty();
});
if (runInAddress() !== null) selectRun(page, runInAddress());
byTestId("cancel-current").addEventListener("click", () => {
  const run = runningRun(page.state);
  if (run !== null) page.send({ type: "cancel", run }, { kind: "cancel", run });
});
reloadSoon(page);
page.connection.start();
