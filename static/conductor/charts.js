// The charts' data: pure functions from api/charts and api/runners answers (docs/dashboard.md) to the
// series drawn by render/charts.js. The server gives runs per minute and duration percentiles for the last
// hour, the queue depth now and as runners sampled it over the last hour (one point per 15 s bucket), and a
// runner's heartbeats over the last hour. Between samples the page adds what it polls and what events say.

export const MINUTES = 60;
export const WINDOW_S = 3600; // what the charts show: the last hour
export const OUTCOMES = ["finished", "failed", "timed_out"];
export const DEPTHS = ["due", "waiting", "running"];
export const DEPTH_POINTS = 720; // an hour of polls every 5 s, or of 15 s samples and polls since the last
export const BEAT_POINTS = 720; // an hour of heartbeats every 5 s (the server answers at most as many)
export const SAME_BEAT_S = 0.5; // a heartbeat from an event and its sample in the database, apart by a write
export const ALL = ""; // every queue

/** Queues named in an answer, sorted. */
export function queuesOf(answer) {
  const rows = [...answer.runs_per_minute, ...answer.queue_depth, ...(answer.queue_depth_history ?? [])];
  const names = new Set(rows.map((row) => row.queue));
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

const depthOfRow = (row) => ({ due: row.due, waiting: row.waiting, running: row.running });

/** The buckets of ``queue_depth_history`` rows ([{at, queue, due, ...}]) as points, oldest first. */
export function sampledPoints(rows) {
  const points = new Map();
  for (const row of rows) {
    if (!points.has(row.at)) points.set(row.at, { at: row.at, queues: {}, sampled: true });
    points.get(row.at).queues[row.queue] = depthOfRow(row);
  }
  return [...points.values()].sort((a, b) => a.at - b.at);
}

/** The depth series with this answer in: [{at, queues: {name: {due, waiting, running}}, sampled?}].
 *
 * The buckets runners sampled (the answer's new ones added), then the points this page polled after the
 * newest of them, then the answer's depth now: the database's history wherever it has some, so a page
 * opened now shows the last hour at once. Only the last hour is kept, at most DEPTH_POINTS. */
export function addDepth(series, answer) {
  const byBucket = new Map(series.filter((point) => point.sampled).map((point) => [point.at, point]));
  for (const point of sampledPoints(answer.queue_depth_history ?? [])) byBucket.set(point.at, point);
  const sampled = [...byBucket.values()].sort((a, b) => a.at - b.at);
  const newest = sampled.at(-1)?.at ?? -Infinity;
  const polled = series.filter((point) => !point.sampled && point.at > newest && point.at < answer.at);
  const now = { at: answer.at, queues: Object.fromEntries(answer.queue_depth.map((row) => [row.queue, depthOfRow(row)])) };
  const next = [...sampled, ...polled, now].filter((point) => point.at >= answer.at - WINDOW_S);
  return next.length > DEPTH_POINTS ? next.slice(-DEPTH_POINTS) : next;
}

/** The newest sampled time in a series (``since`` for the next ask), or null when there is none. */
export function sampledUntil(series) {
  const sampled = series.filter((point) => point.sampled);
  return sampled.length ? sampled.at(-1).at : null;
}

/** Heartbeats ([{at, busy}]) with more of them: from api/runners' ``heartbeats`` or an event. Sorted, one
 * point per heartbeat (the event's and the database's sample of one heartbeat are SAME_BEAT_S apart at
 * most), the hour up to the newest, at most BEAT_POINTS. */
export function addBeats(beats, more) {
  const sorted = [...beats, ...more.map(({ at, busy }) => ({ at, busy }))].sort((a, b) => a.at - b.at);
  const merged = sorted.filter((beat, index) => index === 0 || beat.at - sorted[index - 1].at >= SAME_BEAT_S);
  const newest = merged.at(-1)?.at ?? 0;
  return merged.filter((beat) => beat.at >= newest - WINDOW_S).slice(-BEAT_POINTS);
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
