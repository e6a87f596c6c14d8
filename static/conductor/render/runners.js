// The runners and threads tables (the dashboard; the runner page shows one runner's).

import { duration } from "../lib/format.js";
import { badge, byTestId, cell, cells, el, fill, holdHeight, meter, progressBar, setAttr, setBadge, setText, syncRows } from "../lib/dom.js";

export const SILENT_RUNNER_S = 10; // a runner with no heartbeat news this long may have lost the channel layer
const RUNNER_RANK = { running: 0, degraded: 0, stopping: 1, dead: 2, stopped: 3 };

export const runnerUrl = (base, workerId) => `${base}runners/${encodeURIComponent(workerId)}/`;
export const taskUrl = (base, taskId) => `${base}tasks/${encodeURIComponent(taskId)}/`;

/** A runner's clock against the database's (``offset``: database minus runner, seconds), in words. */
export function clockOffsetText(offset) {
  if (typeof offset !== "number") return "—";
  const size = Math.abs(offset);
  if (size < 0.0005) return "in step";
  return `${size.toFixed(size < 1 ? 3 : 1)} s ${offset > 0 ? "behind" : "ahead"}`;
}

/** Whether the offset is past CLOCK_SKEW_WARNING, as the runner's own warning (runner.clock_skew) says. */
export const clockSkewed = (offset, limit) => typeof offset === "number" && Math.abs(offset) > limit;

/** The runner's clock offset in a cell (or a dd): marked, with why, when past the warning. */
export function showClockOffset(node, offset, limit) {
  const skewed = clockSkewed(offset, limit);
  setText(node, clockOffsetText(offset));
  node.classList.toggle("skewed", skewed);
  setAttr(node, "title", skewed ? `More than CLOCK_SKEW_WARNING (${limit} s) off the database's clock: fix this host's NTP. Conductor times everything by the database's clock, so tasks are safe.` : "");
}

export function renderRunners(runners, now, base, skewWarning) {
  const sorted = [...runners].sort((a, b) => (RUNNER_RANK[a.state] ?? 9) - (RUNNER_RANK[b.state] ?? 9) || a.worker_id.localeCompare(b.worker_id));
  syncRows(byTestId("runners"), sorted, (r) => r.worker_id,
    () => {
      const row = cells(el("tr", { "data-testid": "runner-row" }), ["name", "host", "pid", "threads", "heartbeat", "clock", "state"]);
      cell(row, "name").append(el("a", { "data-testid": "runner-link" }));
      return row;
    },
    (row, r) => {
      setAttr(row, "data-worker-id", r.worker_id);
      const link = cell(row, "name").firstChild;
      setAttr(link, "href", runnerUrl(base, r.worker_id));
      setText(link, r.worker_id);
      setText(cell(row, "host"), r.host || "…");
      setText(cell(row, "pid"), r.pid ?? "…");
      fill(cell(row, "threads"), `${r.busy}/${r.threads}`, () => [meter(r.busy, r.threads), ` ${r.busy}/${r.threads}`]);
      const age = r.heartbeat_at ? now - r.heartbeat_at : null;
      const heartbeat = cell(row, "heartbeat");
      setText(heartbeat, age === null ? "—" : `${duration(age)} ago`);
      heartbeat.classList.toggle("stale", r.state === "running" && age !== null && age > SILENT_RUNNER_S);
      showClockOffset(cell(row, "clock"), r.clock_offset, skewWarning);
      setAttr(row, "data-state", r.state);
      fill(cell(row, "state"), r.state, () => [badge(r.state)]);
      setAttr(cell(row, "state"), "title", r.degraded_reason || "");
    });
}

/** A runner that cannot reach the channel layer still heartbeats in the database: read it from there. */
export function silentRunner(runners, nowSeconds) {
  for (const r of runners) {
    if (r.state === "running" && r.heartbeat_at && nowSeconds - r.heartbeat_at > SILENT_RUNNER_S) return true;
  }
  return false;
}

export function renderThreads(threads, now, { openStack, selectedRun, clock }) {
  const sorted = [...threads].sort((a, b) => (a.started_at ?? 0) - (b.started_at ?? 0));
  const tbody = byTestId("threads");
  onRowClick(tbody, openStack);
  if (!tbody.heightHeld) tbody.heightHeld = holdHeight(byTestId("threads-held"), tbody.closest("table"));
  syncRows(tbody, sorted, (t) => t.run,
    () => {
      const row = cells(el("tr", { "data-testid": "thread-row", class: "clickable" }),
        ["name", "ident", "daemon", "alive", "task", "state", "started", "elapsed", "loops", "progress"]);
      cell(row, "name").append(el("button", { type: "button", class: "link", "data-testid": "inspect-thread", title: "What is it doing now?" }));
      cell(row, "state").append(el("span", { class: "badge" }));
      return row;
    },
    (row, t) => {
      setAttr(row, "data-run-id", t.run);
      setText(cell(row, "name").firstChild, t.name ?? `run ${t.run}`);
      setText(cell(row, "ident"), t.ident ?? "—");
      setText(cell(row, "daemon"), t.daemon ? "yes" : "no");
      setText(cell(row, "alive"), t.alive ? "yes" : "no");
      setText(cell(row, "task"), t.task_name ?? "");
      setBadge(cell(row, "state").firstChild, t.state);
      setText(cell(row, "started"), clock(t.started_at));
      setText(cell(row, "elapsed"), t.started_at ? duration(now - t.started_at) : "—");
      setText(cell(row, "loops"), t.loop_count ?? "—");
      fill(cell(row, "progress"), `${t.progress}|${t.progress_message}`, () => [progressBar(t.progress, t.progress_message)]);
      row.classList.toggle("selected", selectedRun === t.run);
    });
}

/** One click listener for all the rows of a table, however many come and go (rows are handed from
 * thread to thread): a click opens the stack of the run the row shows at that moment. */
function onRowClick(tbody, open) {
  tbody.openRow = open;
  if (tbody.dataset.clicks) return;
  tbody.dataset.clicks = "delegated";
  tbody.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-run-id]");
    if (row) tbody.openRow(Number(row.dataset.runId));
  });
}
