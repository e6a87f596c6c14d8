// Rows of the tasks and runs tables, kept in place by key: a row whose task changed ten times since the
// last frame is drawn once, with its last state, and rows that did not change are not touched.

import { badge, cell, cells, el, fill, setAttr, setText, syncRows } from "../lib/dom.js";
import { duration, nextRunText, placementText, runsText, scheduleText, text, words } from "../lib/format.js";
import { renderPager } from "./listcontrols.js";
import { runnerUrl, taskUrl } from "./runners.js";

const TASK_COLUMNS = ["name", "status", "next", "last", "schedule", "kill", "db", "output", "actions"];
const RUN_COLUMNS = ["id", "task", "status", "started", "duration", "where", "output"];

/** ui: {base, now, canChange, created (Set), taskAction(type, task)} */
export function renderTaskRows(tbody, tasks, ui) {
  syncRows(tbody, tasks, (t) => t.id, (t) => buildTaskRow(t, ui), (row, t) => updateTaskRow(row, t, ui));
}

function buildTaskRow(task, ui) {
  const row = cells(el("tr", { "data-testid": "task-row", "data-task-id": task.id }), TASK_COLUMNS);
  const id = () => Number(row.dataset.taskId);
  const act = (type) => () => ui.taskAction(type, id());
  const pauseOrResume = () => ui.taskAction(row.dataset.paused === "true" ? "resume" : "pause", id());
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
  setAttr(row, "data-status", t.status);
  setAttr(row, "data-paused", t.paused);
  row.classList.toggle("mine", ui.created.has(t.id));
  fill(cell(row, "name"), `${t.name}|${t.func}|${t.task_id}`, () => [
    el("a", { class: "strong", href: taskUrl(ui.base, t.task_id), "data-testid": "task-link", text: t.name }),
    el("div", { class: "sub", text: t.func, title: `task_id ${t.task_id}` }),
  ]);
  fill(cell(row, "status"), `${t.status}|${t.paused}|${runsText(t)}`, () => [
    badge(t.status), t.paused ? badge("paused") : null,
    el("div", { class: "sub", text: runsText(t) }),
  ]);
  setText(cell(row, "next"), nextRunText(t, now));
  fill(cell(row, "last"), `${Math.floor(now - (t.last_run ?? now))}|${t.last_status}`, () => [
    el("div", { text: t.last_run ? `${duration(now - t.last_run)} ago` : "never" }),
    t.last_status ? el("div", { class: `sub c-${t.last_status}`, text: words(t.last_status) }) : null,
  ]);
  const placement = placementText(t, now);
  fill(cell(row, "schedule"), `${scheduleText(t)}|${placement}`, () => [
    el("div", { text: scheduleText(t) }),
    placement ? el("div", { class: "sub", text: placement }) : null,
  ]);
  setText(cell(row, "kill"), t.kill_time ? duration(t.kill_time) : "—");
  setText(cell(row, "db"), t.db_use ? "db_use" : "");
  const output = cell(row, "output");
  setText(output, t.error ? t.error : text(t.output));
  output.classList.toggle("error-text", Boolean(t.error));
  setAttr(output, "title", t.error ? t.error : text(t.output));
  updateActions(cell(row, "actions").firstChild, t, ui.canChange);
}

/** ui: {base, now, clock, threadName(run id), onSelect(run) or null} */
export function renderRunRows(tbody, runs, ui) {
  syncRows(tbody, runs, (r) => r.id,
    (r) => {
      const row = cells(el("tr", { "data-testid": "run-row", "data-run-id": r.id }), RUN_COLUMNS);
      if (ui.onSelect) {
        row.classList.add("clickable");
        row.addEventListener("click", (event) => event.target.closest("a") || ui.onSelect(Number(row.dataset.runId)));
      }
      return row;
    },
    (row, r) => updateRunRow(row, r, ui));
}

function updateRunRow(row, r, ui) {
  setAttr(row, "data-status", r.status);
  row.className = `c-row-${r.status}${ui.onSelect ? " clickable" : ""}${ui.selected === r.id ? " selected" : ""}`;
  setText(cell(row, "id"), r.id);
  fill(cell(row, "task"), `${r.task_name}|${r.task_id}`, () => [
    r.task_id ? el("a", { href: taskUrl(ui.base, r.task_id), text: r.task_name ?? "" }) : el("span", { text: r.task_name ?? "" }),
  ]);
  fill(cell(row, "status"), `${r.status}|${r.attempt ?? ""}`, () => [
    badge(r.status), r.attempt > 1 ? el("span", { class: "sub", text: `try ${r.attempt}` }) : null,
  ]);
  setText(cell(row, "started"), ui.clock(r.started_at));
  const seconds = r.status === "running" && r.started_at ? ui.now - r.started_at : r.duration;
  setText(cell(row, "duration"), duration(seconds));
  const threadName = r.thread_name || ui.threadName(r.id);
  fill(cell(row, "where"), `${r.runner}|${threadName}`, () => [
    r.runner ? el("a", { href: runnerUrl(ui.base, r.runner), text: r.runner }) : null,
    threadName ? el("span", { class: "sub", text: ` / ${threadName}` }) : null,
  ]);
  const output = cell(row, "output");
  setText(output, r.error ? r.error : text(r.output));
  output.classList.toggle("error-text", Boolean(r.error));
  setAttr(output, "title", r.error ? r.error : text(r.output));
}

/** The runs panel of a page: the rows of the runs list's page, and its pager. */
export function renderRunsPanel(page, now, extra = {}) {
  const { state } = page;
  const list = state.lists.runs;
  renderRunRows(document.querySelector('[data-testid="runs"]'), list.ids.map((id) => state.runs.get(id)).filter(Boolean), {
    base: page.base, now, clock: page.clock, threadName: (run) => state.threads.get(run)?.name, ...extra,
  });
  renderPager("runs", list);
}
