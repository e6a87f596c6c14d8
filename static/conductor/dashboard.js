// The dashboard (templates/conductor/dashboard.html): runners, threads, the stack panel, the timeline,
// one page of tasks and one of runs (filters, search, pages), the create form and the charts. The
// modules: app.js (store + socket + one render per frame), store.js (the reducer), lists.js (paging),
// listfetch.js (fetching pages), charts.js + render/charts.js, render/*.js (the panels). docs/dashboard.md.

import { startPage } from "./app.js";
import { listFetcher } from "./listfetch.js";
import { byTestId, changed } from "./lib/dom.js";
import { renderCreate, wireCreate } from "./render/create.js";
import { renderChoices, renderPager, wireListControls } from "./render/listcontrols.js";
import { renderRunners, renderThreads } from "./render/runners.js";
import { renderStack, runIsRunning } from "./render/stack.js";
import { renderRunsPanel, renderTaskRows } from "./render/tables.js";
import { renderTimeline } from "./render/timeline.js";
import { startCharts } from "./chartpanel.js";

const fetchLists = listFetcher(["tasks", "runs"]);

const drawn = {}; // what each panel was last drawn from (lib/dom.js changed)
// Panels whose rows churn during a burst (threads come and go in milliseconds, bars move) are drawn at
// most this often: each drawing re-lays out the page, and nobody reads faster.
const CHURN_PER_SECOND = 4;

function render(page) {
  const { state } = page;
  const now = page.serverNow();
  const second = Math.floor(now);
  if (changed(drawn, "runners", [state.runners, second])) renderRunners(state.runners.values(), now, page.base, state.clockSkewWarning);
  const quarter = Math.floor(now * CHURN_PER_SECOND);
  if (changed(drawn, "threads", [state.threads, state.stack?.run, quarter])) {
    renderThreads(state.threads.values(), now, { openStack: page.openStack, selectedRun: state.stack?.run, clock: page.clock });
  }
  renderStack(state, page.clock);
  if (changed(drawn, "timeline", [quarter])) {
    renderTimeline(state.recent.values(), now, (run) => runIsRunning(page.state, run) && page.openStack(run));
  }
  const taskList = state.lists.tasks;
  if (changed(drawn, "tasks", [state.tasks, taskList, state.user, state.created, second])) {
    renderTaskRows(byTestId("tasks"), taskList.ids.map((id) => state.tasks.get(id)).filter(Boolean), {
      base: page.base, now, canChange: state.user.can_change, created: state.created, taskAction: page.taskAction,
    });
    renderPager("tasks", taskList);
  }
  if (changed(drawn, "runs", [state.runs, state.lists.runs, state.threads, second])) renderRunsPanel(page, now);
  if (changed(drawn, "choices", [state.functions, state.runners])) {
    for (const kind of ["tasks", "runs"]) renderChoices(kind, { functions: state.functions, runners: state.runners.values() });
  }
  if (changed(drawn, "create", [state.user, state.functions, state.form, state.results, byTestId("create-func").value])) renderCreate(state);
}

const page = startPage({ render, afterChange: fetchLists });
const changeList = (kind, change) => page.dispatch({ type: "list", kind, change });
wireListControls("tasks", changeList);
wireListControls("runs", changeList);
wireCreate(page.send, (form) => {
  if (form) page.dispatch({ type: "form", form });
  else if (page.state.form.error) page.dispatch({ type: "form", form: { message: "", error: false, field: null } });
}, page.markDirty);
startCharts(page.base);
page.connection.start();
