// Plain SVG charts, a few nodes each: stacked bars as one <path> per series, lines as one <polyline>
// per series, and horizontal bars for the duration percentiles.

import { DEPTHS, OUTCOMES, niceMax } from "../charts.js";
import { duration } from "../lib/format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 140;
const PAD = { left: 34, right: 6, top: 8, bottom: 16 };

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function frame(svg, max, label) {
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  const bottom = HEIGHT - PAD.bottom;
  return [
    svgEl("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: bottom, y2: bottom, class: "axis" }),
    svgEl("text", { x: PAD.left - 4, y: PAD.top + 8, class: "tick", "text-anchor": "end" }, label(max)),
    svgEl("text", { x: PAD.left - 4, y: bottom, class: "tick", "text-anchor": "end" }, "0"),
  ];
}

/** Runs per minute, stacked by outcome: ``buckets`` from charts.perMinute. */
export function drawRunsPerMinute(svg, buckets) {
  const max = niceMax(Math.max(...buckets.map((b) => OUTCOMES.reduce((sum, key) => sum + b[key], 0))));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const step = plotWidth / buckets.length;
  const paths = Object.fromEntries(OUTCOMES.map((key) => [key, []]));
  buckets.forEach((bucket, index) => {
    let base = HEIGHT - PAD.bottom;
    for (const key of OUTCOMES) {
      const height = (bucket[key] / max) * plotHeight;
      if (height > 0) paths[key].push(`M${(PAD.left + index * step + 1).toFixed(1)} ${(base - height).toFixed(1)}h${(step - 2).toFixed(1)}v${height.toFixed(1)}h${(2 - step).toFixed(1)}z`);
      base -= height;
    }
  });
  const total = buckets.reduce((sum, b) => sum + OUTCOMES.reduce((s, key) => s + b[key], 0), 0);
  svg.dataset.total = total;
  svg.replaceChildren(
    ...frame(svg, max, String),
    ...OUTCOMES.map((key) => svgEl("path", { d: paths[key].join("") || "M0 0", class: `bar c-fill-${key}`, "data-series": key })),
    svgEl("text", { x: PAD.left, y: HEIGHT - 2, class: "tick" }, "−60 m"),
    svgEl("text", { x: WIDTH - PAD.right, y: HEIGHT - 2, class: "tick", "text-anchor": "end" }, "now"),
  );
}

/** Queue depth over the last hour: ``points`` from charts.depthOf. */
export const drawDepth = (svg, points) => drawLines(svg, points, DEPTHS);

/** One line per key of ``points`` ([{at, key: value, ...}]) over the time they span. */
export function drawLines(svg, points, keys) {
  const max = niceMax(Math.max(0, ...points.flatMap((p) => keys.map((key) => p[key]))));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const first = points[0]?.at ?? 0;
  const span = Math.max(1, (points.at(-1)?.at ?? 0) - first);
  const xy = (p, key) => `${(PAD.left + ((p.at - first) / span) * plotWidth).toFixed(1)},${(HEIGHT - PAD.bottom - (p[key] / max) * plotHeight).toFixed(1)}`;
  svg.dataset.points = points.length;
  svg.replaceChildren(
    ...frame(svg, max, String),
    ...keys.map((key) => svgEl("polyline", { points: points.map((p) => xy(p, key)).join(" "), class: `line c-stroke-${key}`, "data-series": key })),
    svgEl("text", { x: PAD.left, y: HEIGHT - 2, class: "tick" }, points.length ? `${duration(span)} ago` : "waiting for data"),
    svgEl("text", { x: WIDTH - PAD.right, y: HEIGHT - 2, class: "tick", "text-anchor": "end" }, "now"),
  );
}

/** p50 / p95 / p99 per function as nested horizontal bars, one row each. */
export function drawDurations(svg, rows) {
  const rowHeight = 18;
  const labelWidth = 220;
  const height = Math.max(1, rows.length) * rowHeight + 16;
  const max = niceMax(Math.max(0, ...rows.map((row) => row.p99 ?? 0)));
  const width = WIDTH - labelWidth - PAD.right;
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  const nodes = [svgEl("text", { x: WIDTH - PAD.right, y: height - 2, class: "tick", "text-anchor": "end" }, duration(max))];
  rows.forEach((row, index) => {
    const y = index * rowHeight;
    nodes.push(svgEl("text", { x: labelWidth - 6, y: y + 12, class: "label", "text-anchor": "end" }, row.func));
    for (const key of ["p99", "p95", "p50"]) {
      const bar = svgEl("rect", { x: labelWidth, y: y + 3, height: 12, width: Math.max(1, ((row[key] ?? 0) / max) * width), class: `c-fill-${key}` });
      bar.append(svgEl("title", {}, `${row.func}: ${key} ${duration(row[key])} (${row.runs} runs)`));
      nodes.push(bar);
    }
  });
  if (!rows.length) nodes.push(svgEl("text", { x: labelWidth, y: 12, class: "tick" }, "No runs in the last hour."));
  svg.dataset.functions = rows.length;
  svg.replaceChildren(...nodes);
}
