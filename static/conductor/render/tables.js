// Rows of the tasks and runs tables, kept in place by key: a row whose task changed ten times since the
// last frame is drawn once, with its last state, and rows that did not change are not touched.

import { cell, cells, el, setAttr, setBadge, setShown, setText, syncRows } from "../lib/dom.js";
import { duration, nextRunText, placementText, runsText, scheduleText, text, words } from "../lib/format.js";
import { renderPager } from "./listcontrols.js";
import { runnerUrl, taskUrl } from "./runners.js";

const TASK_COLUMNS = ["name", "status", "next", "last", "schedule", "kill", "db", "output", "actions"];
const RUN_COLUMNS = ["id", "task", "status", "started", "duration", "where", "output"];

/** ui: {base, now, canChange, created (Set), taskAction(type, task), maxNewRows?}; false: not all rows
 * are shown yet (``maxNewRows``: call again in the next frame). */
export function renderTaskRows(tbody, tasks, ui) {
  return syncRows(tbody, tasks, (t) => t.id, () => buildTaskRow(ui), (row, t) => updateTaskRow(row, t, ui), ui.maxNewRows);
}

// Rows are built empty, with every element any task may show, and handed from task to task
// (syncRows): the buttons read the row's task id when clicked, not the one it was built for.
function buildTaskRow(ui) {
  const row = cells(el("tr", { "data-testid": "task-row" }), TASK_COLUMNS);
  const id = () => Number(row.dataset.taskId);
  const act = (type) => () => ui.taskAction(type, id());
  const pauseOrResume = () => ui.taskAction(row.dataset.paused === "true" ? "resume" : "pause", id());
  cell(row, "name").append(el("a", { class: "strong", "data-testid": "task-link" }), el("div", { class: "sub" }));
  cell(row, "status").append(el("span", { class: "badge" }), el("span", { class: "badge s-paused", hidden: true }), el("div", { class: "sub" }));
  cell(row, "last").append(el("div"), el("div", { class: "sub" }));
  cell(row, "schedule").append(el("div"), el("div", { class: "sub" }));
  cell(row, "actions").append(actionButtons({ runNow: act("run_now"), pause: pauseOrResume, stopLoop: act("stop_loop") }));
  return row;
}

export function actionButtons({ runNow, pause, stopLoop }) {
  return el("div", { class: "actions" },
    el("button", { type: "button", "data-testid": "run-now", onclick: runNow }, "Run now"),
    el("button", { type: "button", "data-testid": "pause", onclick: pause }, "Pause"),
    el("button", { type: "button", "data-testid": "stop-loop", onclick: stopLoop }, "Stop loop"));
}

/** The buttons as the task allows now: run now unless running, pause or resume, stop a loop. */
export function updateActions(actions, task, canChange) {
  actions.hidden = !canChange;
  const [runNow, pause, stopLoop] = actions.children;
  runNow.disabled = task.status === "running";
  setText(pause, task.paused ? "Resume" : "Pause");
  stopLoop.hidden = !task.loop;
}

function updateTaskRow(row, t, ui) {
  const { now } = ui;
  setAttr(row, "data-task-id", t.id);
  setAttr(row, "data-status", t.status);
  setAttr(row, "data-paused", t.paused);
  row.classList.toggle("mine", ui.created.has(t.id));
  const [link, func] = cell(row, "name").children;
  setAttr(link, "href", taskUrl(ui.base, t.task_id));
  setText(link, t.name);
  setText(func, t.func);
  setAttr(func, "title", `task_id ${t.task_id}`);
  const [status, paused, runs] = cell(row, "status").children;
  setBadge(status, t.status);
  setShown(paused, t.paused ? words("paused") : "");
  setText(runs, runsText(t));
  setText(cell(row, "next"), nextRunText(t, now));
  const [lastRun, lastStatus] = cell(row, "last").children;
  setText(lastRun, t.last_run ? `${duration(now - t.last_run)} ago` : "never");
  setShown(lastStatus, t.last_status ? words(t.last_status) : "");
  setAttr(lastStatus, "class", `sub c-${t.last_status}`);
  const [schedule, placement] = cell(row, "schedule").children;
  setText(schedule, scheduleText(t));
  setShown(placement, placementText(t, now));
  setText(cell(row, "kill"), t.kill_time ? duration(t.kill_time) : "—");
  setText(cell(row, "db"), t.db_use ? "db_use" : "");
  const output = cell(row, "output");
  setText(output, t.error ? t.error : text(t.output));
  output.classList.toggle("error-text", Boolean(t.error));
  setAttr(output, "title", t.error ? t.error : text(t.output));
  updateActions(cell(row, "actions").firstChild, t, ui.canChange);
}

/** ui: {base, now, clock, threadName(run id), onSelect(run) or null, maxNewRows?}; returns as renderTaskRows */
export function renderRunRows(tbody, runs, ui) {
  return syncRows(tbody, runs, (r) => r.id,
    () => {
      const row = cells(el("tr", { "data-testid": "run-row" }), RUN_COLUMNS);
      cell(row, "task").append(el("a"));
      cell(row, "status").append(el("span", { class: "badge" }), el("span", { class: "sub", hidden: true }));
      cell(row, "where").append(el("a", { hidden: true }), el("span", { class: "sub", hidden: true }));
      if (ui.onSelect) row.addEventListener("click", (event) => event.target.closest("a") || ui.onSelect(Number(row.dataset.runId)));
      return row;
    },
    (row, r) => updateRunRow(row, r, ui), ui.maxNewRows);
}

function updateRunRow(row, r, ui) {
  setAttr(row, "data-run-id", r.id);
  setAttr(row, "data-status", r.status);
  const className = `c-row-${r.status}${ui.onSelect ? " clickable" : ""}${ui.selected === r.id ? " selected" : ""}`;
  if (row.className !== className) row.className = className;
  setText(cell(row, "id"), r.id);
  const task = cell(row, "task").firstChild;
  if (r.task_id) setAttr(task, "href", taskUrl(ui.base, r.task_id));
  else task.removeAttribute("href"); // a run of a deleted task: its name, no link
  setText(task, r.task_name ?? "");
  const [status, attempt] = cell(row, "status").children;
  setBadge(status, r.status);
  setShown(attempt, r.attempt > 1 ? `try ${r.attempt}` : "");
  setText(cell(row, "started"), ui.clock(r.started_at));
  const seconds = r.status === "running" && r.started_at ? ui.now - r.started_at : r.duration;
  setText(cell(row, "duration"), duration(seconds));
  const threadName = r.thread_name || ui.threadName(r.id);
  const [runner, thread] = cell(row, "where").children;
  if (r.runner) setAttr(runner, "href", runnerUrl(ui.base, r.runner));
  setShown(runner, r.runner);
  setShown(thread, threadName ? ` / ${threadName}` : "");
  const output = cell(row, "output");
  setText(output, r.error ? r.error : text(r.output));
  output.classList.toggle("error-text", Boolean(r.error));
  setAttr(output, "title", r.error ? r.error : text(r.output));
}

/** The runs panel of a page: the rows of the runs list's page, and its pager; returns as renderTaskRows. */
export function renderRunsPanel(page, now, extra = {}) {
  const { state } = page;
  const list = state.lists.runs;
  const complete = renderRunRows(document.querySelector('[data-testid="runs"]'), list.ids.map((id) => state.runs.get(id)).filter(Boolean), {
    base: page.base, now, clock: page.clock, threadName: (run) => state.threads.get(run)?.name, ...extra,
  });
  renderPager("runs", list);
  return complete;
}
