// One runner's page (templates/conductor/runner.html): what api/runners/<worker_id> says of it (read
// every POLL_MS, and kept live by its events), its threads with their stack and log, its recent runs a
// page at a time (api/runs?runner=<worker_id>). The heartbeat chart starts from the last hour the runner
// recorded (the first answer's ``heartbeats``; later answers bring those since) and adds each heartbeat
// its events announce (charts.addBeats).

import { startPage } from "./app.js";
import { listFetcher } from "./listfetch.js";
import { badge, byTestId, el, fill, getJson, setText } from "./lib/dom.js";
import { duration } from "./lib/format.js";
import { addBeats } from "./charts.js";
import { drawLines } from "./render/charts.js";
import { wireListControls } from "./render/listcontrols.js";
import { SILENT_RUNNER_S, renderThreads, showClockOffset } from "./render/runners.js";
import { renderStack } from "./render/stack.js";
import { renderRunsPanel } from "./render/tables.js";

const workerId = document.getElementById("app").dataset.workerId;
const POLL_MS = 5000;

// beats: what the chart draws; sampledUntil: the newest heartbeat the database answered (``since``).
const view = { fetched: null, error: "", beats: [], drawn: null, sampledUntil: null };

/** The runner as the newest of what the database said and what events said since. */
function currentRunner(state) {
  const live = state.runners.get(workerId);
  const fetched = view.fetched;
  if (!live) return fetched;
  if (!fetched) return live;
  return (live.heartbeat_at ?? 0) >= (fetched.heartbeat_at ?? 0) ? { ...fetched, ...live } : { ...live, ...fetched };
}

function noteHeartbeat(runner) {
  const last = view.beats.at(-1);
  if (!runner?.heartbeat_at || (last && last.at >= runner.heartbeat_at)) return;
  view.beats = addBeats(view.beats, [{ at: runner.heartbeat_at, busy: runner.busy }]);
}

function render(page) {
  const { state } = page;
  const now = page.serverNow();
  const runner = currentRunner(state);
  noteHeartbeat(runner);
  setText(byTestId("runner-error"), view.error);
  if (runner) renderFacts(runner, now, state.clockSkewWarning);
  const threads = [...state.threads.values()].filter((thread) => thread.runner === workerId);
  renderThreads(threads, now, { openStack: page.openStack, selectedRun: state.stack?.run, clock: page.clock });
  renderStack(state, page.clock);
  renderRunsPanel(page, now);
  if (view.beats !== view.drawn) {
    view.drawn = view.beats;
    drawLines(byTestId("heartbeat-chart"), view.beats.map(({ at, busy }) => ({ at, running: busy })), ["running"]);
  }
}

function renderFacts(runner, now, skewWarning) {
  byTestId("runner-head").dataset.state = runner.state;
  fill(byTestId("runner-state"), runner.state, () => [badge(runner.state)]);
  const age = runner.heartbeat_at ? now - runner.heartbeat_at : null;
  const facts = [
    ["host", runner.host || "…"], ["pid", runner.pid ?? "…"], ["threads busy", `${runner.busy}/${runner.threads}`],
    ["started", runner.started_at ? new Date(runner.started_at * 1000).toLocaleString() : "—"],
    ["last heartbeat", age === null ? "—" : `${duration(age)} ago${runner.state === "running" && age > SILENT_RUNNER_S ? " (late)" : ""}`],
    ["clock", ""], // filled below: marked when past the warning
    ["degraded", runner.degraded_reason || "no"], ["heartbeats charted", String(view.beats.length)],
  ];
  fill(byTestId("runner-facts"), JSON.stringify(facts), () => facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { "data-field": name, text: value })]));
  showClockOffset(byTestId("runner-facts").querySelector('[data-field="clock"]'), runner.clock_offset, skewWarning);
}

async function poll(page) {
  if (document.visibilityState === "visible") {
    const since = view.sampledUntil === null ? "" : `?since=${view.sampledUntil.toFixed(6)}`;
    const answer = await getJson(`${page.base}api/runners/${encodeURIComponent(workerId)}${since}`);
    view.error = answer.error ?? "";
    if (!answer.error) {
      view.fetched = answer;
      if (answer.heartbeats.length) {
        view.beats = addBeats(view.beats, answer.heartbeats);
        view.sampledUntil = answer.heartbeats.at(-1).at;
      }
    }
    page.markDirty();
  }
  setTimeout(() => poll(page), POLL_MS);
}

const fixed = { runner: workerId };
const page = startPage({ render, afterChange: listFetcher(["runs"]), filters: { runs: fixed } });
wireListControls("runs", (kind, change) => page.dispatch({ type: "list", kind, change }), fixed);
poll(page);
page.connection.start();
