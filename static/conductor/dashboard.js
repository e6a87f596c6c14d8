// The dashboard (templates/conductor/dashboard.html): runners, threads, the stack panel, the timeline,
// one page of tasks and one of runs (filters, search, pages), the create form and the charts. The
// modules: app.js (store + socket + one render per frame), store.js (the reducer), lists.js (paging),
// listfetch.js (fetching pages), charts.js + render/charts.js, render/*.js (the panels). docs/dashboard.md.

import { startPage } from "./app.js";
import { listFetcher } from "./listfetch.js";
import { byTestId } from "./lib/dom.js";
import { panelDrawer } from "./panels.js";
import { renderCreate, wireCreate } from "./render/create.js";
import { renderChoices, renderPager, wireListControls } from "./render/listcontrols.js";
import { renderRunners, renderThreads } from "./render/runners.js";
import { renderStack, runIsRunning } from "./render/stack.js";
import { renderRunsPanel, renderTaskRows } from "./render/tables.js";
import { renderTimeline } from "./render/timeline.js";
import { startCharts } from "./chartpanel.js";

const fetchLists = listFetcher(["tasks", "runs"]);

// Panels whose rows churn during a burst (threads come and go in milliseconds, bars move, pages of
// tasks and runs are read again) are drawn at most this often: each drawing costs layout, and nobody
// reads faster. Each on its own quarter of the beat (``phase``), so that they seldom come due together;
// panels.js draws one of them a frame at most, so that no frame lays out two of them.
// panels.js also spreads a frame's panels over several frames when they do not fit.
const CHURN_PER_SECOND = 4;
const second = (now) => Math.floor(now);
const quarter = (now) => Math.floor(now * CHURN_PER_SECOND);
// A page of 50 new task rows is a thousand elements to style and lay out: built a fifth per frame, the
// first page of a list (and the first after a drain has emptied it) costs five short frames, not one long.
const NEW_ROWS_PER_FRAME = 10;

const PANELS = [
  { name: "runners", inputs: ({ state }, now) => [state.runners, state.clockSkewWarning, second(now)],
    draw: ({ state, base }, now) => renderRunners(state.runners.values(), now, base, state.clockSkewWarning) },
  { name: "threads", perSecond: CHURN_PER_SECOND, phase: 0, inputs: ({ state }, now) => [state.threads, state.stack?.run, quarter(now)],
    draw: (page, now) => renderThreads(page.state.threads.values(), now, { openStack: page.openStack, selectedRun: page.state.stack?.run, clock: page.clock }) },
  { name: "stack", inputs: ({ state }, now) => [state.stack, state.logs, state.threads, state.runs, state.recent, state.user, second(now)],
    draw: (page) => renderStack(page.state, page.clock) },
  { name: "timeline", perSecond: CHURN_PER_SECOND, phase: 0.5, inputs: ({ state }, now) => [state.recent, quarter(now)],
    draw: (page, now) => renderTimeline(page.state.recent.values(), now, (run) => runIsRunning(page.state, run) && page.openStack(run)) },
  { name: "tasks", perSecond: CHURN_PER_SECOND, phase: 0.25, inputs: ({ state }, now) => [state.tasks, state.lists.tasks, state.user, state.created, second(now)],
    draw: drawTasks },
  { name: "runs", perSecond: CHURN_PER_SECOND, phase: 0.75, inputs: ({ state }, now) => [state.runs, state.lists.runs, state.threads, second(now)],
    draw: (page, now) => renderRunsPanel(page, now, { maxNewRows: NEW_ROWS_PER_FRAME }) },
  { name: "choices", inputs: ({ state }) => [state.functions, state.runners],
    draw: ({ state }) => {
      for (const kind of ["tasks", "runs"]) renderChoices(kind, { functions: state.functions, runners: state.runners.values() });
    } },
  { name: "create", inputs: ({ state }) => [state.user, state.functions, state.form, state.results, byTestId("create-func").value],
    draw: ({ state }) => renderCreate(state) },
];

function drawTasks(page, now) {
  const { state } = page;
  const taskList = state.lists.tasks;
  const complete = renderTaskRows(byTestId("tasks"), taskList.ids.map((id) => state.tasks.get(id)).filter(Boolean), {
    base: page.base, now, canChange: state.user.can_change, created: state.created, taskAction: page.taskAction,
    maxNewRows: NEW_ROWS_PER_FRAME,
  });
  renderPager("tasks", taskList);
  return complete;
}

const drawPanels = panelDrawer(PANELS);
const render = (page) => drawPanels(page, page.serverNow());

// During a burst every socket message changed the store and asked for a frame: 27 frames a second, each
// with its commit and compositor work competing for the CPU with the runner, most of them drawing
// nothing (the large panels wait for their beat). Ten a second is enough for the rest.
const page = startPage({ render, afterChange: fetchLists, minFrameGapMs: 100 });
const changeList = (kind, change) => page.dispatch({ type: "list", kind, change });
wireListControls("tasks", changeList);
wireListControls("runs", changeList);
wireCreate(page.send, (form) => {
  if (form) page.dispatch({ type: "form", form });
  else if (page.state.form.error) page.dispatch({ type: "form", form: { message: "", error: false, field: null } });
}, page.markDirty);
startCharts(page.base);
page.connection.start();
