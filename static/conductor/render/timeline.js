// The timeline: runs of the last five minutes (the store's ``recent``, at most KEEP_RECENT), one lane per
// runner thread slot in use.
//
// The bars sit in a layer placed against a fixed origin in time; as time passes the layer slides left (a
// transform, which the compositor moves without layout or paint), so a bar is written only when its run,
// its lane or the origin changes, not at every drawing. Bars of runs that left are kept hidden and handed
// to new runs (a pool): during a drain runs come and go by the thousand, and each new bar was a new
// element to create, style and lay out. One click listener on the track serves every bar.

import { byTestId, el, holdHeight, setAttr } from "../lib/dom.js";
import { duration, words } from "../lib/format.js";

const TIMELINE_SECONDS = 300;
const LANE_PX = 22;
// The origin moves on after this long, so that bars' places stay small numbers (all are placed again).
const REBASE_SECONDS = 600;
// Hidden bars kept for reuse beyond those shown (the store keeps at most 200 runs for the timeline).
const POOL_MAX = 250;
// Bars made in one drawing at most: the first burst a page sees needs 200 at once, a frame's worth of
// elements to create, style and lay out; the rest come in the next frames.
const NEW_BARS_PER_DRAWING = 50;

/** Returns false when some runs have no bar yet (NEW_BARS_PER_DRAWING): draw again in the next frame. */
export function renderTimeline(runs, now, onBarClick) {
  const root = byTestId("timeline");
  if (!root.firstChild) buildTimeline(root);
  // the lanes in use come and go with every drawing during a drain; held, the panels below stay put
  if (!root.heightHeld) root.heightHeld = holdHeight(root.parentElement, root);
  const [labels, track] = root.children;
  const layer = track.lastChild;
  track.onBarClick = onBarClick; // the delegated listener calls the newest
  const lanes = timelineLanes(runs, now);
  const labelText = lanes.map((lane) => lane.label).join("\n");
  if (labels.dataset.sig !== labelText) {
    labels.dataset.sig = labelText;
    labels.replaceChildren(...lanes.map((lane) => el("div", { class: "tl-label", text: lane.label, title: lane.label })));
  }
  const height = `${Math.max(1, lanes.length) * LANE_PX + 18}px`;
  if (track.style.height !== height) track.style.height = height;
  const origin = slide(layer, now);
  const complete = placeBars(layer, lanes, origin, now);
  root.classList.toggle("empty-timeline", lanes.length === 0);
  return complete;
}

function buildTimeline(root) {
  const track = el("div", { class: "tl-track" }, axis(), el("div", { class: "tl-layer" }));
  track.addEventListener("click", (event) => {
    const bar = event.target.closest(".tl-bar[data-run-id]");
    if (bar) track.onBarClick(Number(bar.dataset.runId));
  });
  root.append(el("div", { class: "tl-labels" }), track);
}

/** Moves the layer so that ``now`` is at the right edge; returns its origin (seconds). */
function slide(layer, now) {
  let origin = Number(layer.dataset.origin);
  if (!origin || now - origin > REBASE_SECONDS || now < origin) {
    origin = now - TIMELINE_SECONDS;
    layer.dataset.origin = String(origin);
  }
  const shift = ((now - TIMELINE_SECONDS - origin) / TIMELINE_SECONDS) * 100;
  layer.style.transform = `translateX(${-shift.toFixed(3)}%)`;
  return origin;
}

function placeBars(layer, lanes, origin, now) {
  const wanted = new Map();
  lanes.forEach((lane, index) => {
    for (const run of lane.runs) wanted.set(String(run.id), [run, index]);
  });
  const shown = new Map();
  const leaving = [];
  const pool = [];
  for (const bar of layer.children) {
    if (bar.hidden) pool.push(bar);
    else if (wanted.has(bar.dataset.runId)) shown.set(bar.dataset.runId, bar);
    else leaving.push(bar);
  }
  // A bar whose run left goes straight to a run that came, as it is: during a drain all 200 bars change
  // runs between two drawings, and hiding a bar and showing it again costs its style and layout twice.
  const free = [...leaving, ...pool];
  let made = 0;
  let complete = true;
  for (const [id, [run, lane]] of wanted) {
    let bar = shown.get(id);
    if (!bar) {
      if (!free.length && made === NEW_BARS_PER_DRAWING) {
        complete = false;
        continue;
      }
      if (!free.length) made += 1;
      bar = takeBar(layer, free.shift(), id);
    }
    placeBar(bar, run, lane, origin, now);
  }
  for (const bar of free) if (!bar.hidden) putBack(bar);
  for (const bar of free.slice(POOL_MAX)) bar.remove();
  return complete;
}

/** ``bar``: a free one (hidden, or its run left), or none: a new one is made. */
function takeBar(layer, bar, id) {
  bar ??= layer.appendChild(el("div", { class: "tl-bar" }));
  if (bar.hidden) bar.hidden = false;
  bar.dataset.runId = id;
  setAttr(bar, "data-testid", "timeline-bar"); // a selector names data-testid: rewriting it restyles the bar
  return bar;
}

/** A bar no run uses any more: hidden, without the attributes that name a run, ready for another. */
function putBack(bar) {
  bar.hidden = true;
  for (const name of ["data-run-id", "data-testid", "data-status", "title"]) bar.removeAttribute(name);
}

function placeBar(bar, run, lane, origin, now) {
  const end = run.finished_at ?? now;
  const left = `${(((run.started_at - origin) / TIMELINE_SECONDS) * 100).toFixed(3)}%`;
  const width = `max(3px, ${(((end - run.started_at) / TIMELINE_SECONDS) * 100).toFixed(3)}%)`;
  const top = `${lane * LANE_PX + 2}px`;
  const placed = `${left}|${width}|${top}`;
  if (bar.placed !== placed) {
    bar.placed = placed;
    Object.assign(bar.style, { left, width, top });
  }
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
