// The timeline: runs of the last five minutes (the store's ``recent``, at most KEEP_RECENT), one lane per
// runner thread slot in use.

import { byTestId, el, setAttr } from "../lib/dom.js";
import { duration, words } from "../lib/format.js";

const TIMELINE_SECONDS = 300;
const LANE_PX = 22;

export function renderTimeline(runs, now, onBarClick) {
  const root = byTestId("timeline");
  const lanes = timelineLanes(runs, now);
  const from = now - TIMELINE_SECONDS;
  if (!root.firstChild) buildTimeline(root);
  const [labels, track] = root.children;
  track.onBarClick = onBarClick; // the delegated listener calls the newest
  const labelText = lanes.map((lane) => lane.label).join("\n");
  if (labels.dataset.sig !== labelText) {
    labels.dataset.sig = labelText;
    labels.replaceChildren(...lanes.map((lane) => el("div", { class: "tl-label", text: lane.label, title: lane.label })));
  }
  track.style.height = `${Math.max(1, lanes.length) * LANE_PX + 18}px`;
  const bars = new Map([...track.querySelectorAll(".tl-bar")].map((bar) => [bar.dataset.runId, bar]));
  lanes.forEach((lane, index) => {
    for (const run of lane.runs) {
      let bar = bars.get(String(run.id));
      if (bar) bars.delete(String(run.id));
      else {
        bar = el("div", { class: "tl-bar", "data-testid": "timeline-bar", "data-run-id": run.id });
        track.append(bar);
      }
      placeBar(bar, run, index, from, now);
    }
  });
  for (const bar of bars.values()) bar.remove();
  root.classList.toggle("empty-timeline", lanes.length === 0);
}

// One click listener on the track serves every bar: bars come and go by the thousand during a drain,
// and a listener per bar was one more closure (holding its run and the page's handler) made per bar.
function buildTimeline(root) {
  const track = el("div", { class: "tl-track" }, axis());
  track.addEventListener("click", (event) => {
    const bar = event.target.closest(".tl-bar[data-run-id]");
    if (bar) track.onBarClick(Number(bar.dataset.runId));
  });
  root.append(el("div", { class: "tl-labels" }), track);
}

function placeBar(bar, run, lane, from, now) {
  const start = Math.max(run.started_at, from);
  const end = run.finished_at ?? now;
  bar.style.left = `${((start - from) / TIMELINE_SECONDS) * 100}%`;
  bar.style.width = `max(3px, ${((end - start) / TIMELINE_SECONDS) * 100}%)`;
  bar.style.top = `${lane * LANE_PX + 2}px`;
  const className = `tl-bar s-${run.status}`;
  if (bar.className !== className) bar.className = className;
  setAttr(bar, "data-status", run.status);
  setAttr(bar, "title", `${run.task_name} · run ${run.id} · ${words(run.status)} · ${duration(end - run.started_at)}`);
}

function axis() {
  const node = el("div", { class: "tl-axis" }); // minute marks sit at fixed places: -5 m ... now
  for (let minutes = 5; minutes >= 0; minutes -= 1) {
    const mark = el("span", { class: "tl-mark", text: minutes ? `−${minutes} m` : "now" });
    mark.style.left = `${((TIMELINE_SECONDS - minutes * 60) / TIMELINE_SECONDS) * 100}%`;
    node.append(mark);
  }
  return node;
}

/** Runs of the last 5 minutes packed into lanes: one lane per runner thread slot in use. */
function timelineLanes(runs, now) {
  const from = now - TIMELINE_SECONDS;
  const recent = [...runs].filter((run) => run.started_at && (run.finished_at ?? now) >= from).sort((a, b) => a.started_at - b.started_at);
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
