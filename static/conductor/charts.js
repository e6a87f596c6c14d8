// The charts' data: pure functions from api/charts answers (docs/dashboard.md) to the series drawn by
// render/charts.js. The server gives runs per minute and duration percentiles for the last hour, and the
// queue depth now; the depth over time is what this page has seen since it opened (at most DEPTH_POINTS).

export const MINUTES = 60;
export const OUTCOMES = ["finished", "failed", "timed_out"];
export const DEPTHS = ["due", "waiting", "running"];
export const DEPTH_POINTS = 720; // an hour of polls every 5 s
export const ALL = ""; // every queue

/** Queues named in an answer, sorted. */
export function queuesOf(answer) {
  const names = new Set([...answer.runs_per_minute, ...answer.queue_depth].map((row) => row.queue));
  return [...names].sort();
}

/** One bucket per minute of the hour up to ``answer.at`` (empty minutes included), for ``queue`` or all. */
export function perMinute(answer, queue = ALL) {
  const last = Math.floor(answer.at / 60) * 60;
  const buckets = new Map();
  for (let index = MINUTES - 1; index >= 0; index -= 1) {
    buckets.set(last - index * 60, { minute: last - index * 60, finished: 0, failed: 0, timed_out: 0 });
  }
  for (const row of answer.runs_per_minute) {
    const bucket = buckets.get(row.minute);
    if (!bucket || (queue !== ALL && row.queue !== queue)) continue;
    for (const outcome of OUTCOMES) bucket[outcome] += row[outcome] ?? 0;
  }
  return [...buckets.values()];
}

/** The depth series with this answer's depth appended: [{at, queues: {name: {due, waiting, running}}}]. */
export function addDepth(series, answer) {
  const queues = Object.fromEntries(answer.queue_depth.map((row) => [row.queue, { due: row.due, waiting: row.waiting, running: row.running }]));
  const next = [...series, { at: answer.at, queues }];
  return next.length > DEPTH_POINTS ? next.slice(-DEPTH_POINTS) : next;
}

/** The depth series of one queue (or all summed): [{at, due, waiting, running}]. */
export function depthOf(series, queue = ALL) {
  return series.map(({ at, queues }) => {
    const point = { at, due: 0, waiting: 0, running: 0 };
    for (const [name, depth] of Object.entries(queues)) {
      if (queue !== ALL && name !== queue) continue;
      for (const key of DEPTHS) point[key] += depth[key];
    }
    return point;
  });
}

/** Per-function percentiles, the slowest p95 first. */
export function durations(answer) {
  return [...answer.durations].sort((a, b) => (b.p95 ?? 0) - (a.p95 ?? 0) || a.func.localeCompare(b.func));
}

/** A "nice" upper bound for an axis (1, 2, 5 times a power of ten) at or above ``value``. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((bound) => bound >= value);
}
