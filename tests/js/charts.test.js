// The charts' data (static/conductor/charts.js).
import assert from "node:assert/strict";
import test from "node:test";

import * as charts from "../../static/conductor/charts.js";

const answer = {
  at: 3600 * 10 + 30,
  runs_per_minute: [
    { minute: 3600 * 10, queue: "default", finished: 3, failed: 1, timed_out: 0 },
    { minute: 3600 * 10, queue: "mail", finished: 2, failed: 0, timed_out: 1 },
    { minute: 3600 * 9 + 60, queue: "mail", finished: 1, failed: 0, timed_out: 0 },
    { minute: 3600 * 8, queue: "mail", finished: 9, failed: 0, timed_out: 0 }, // outside the hour
  ],
  queue_depth: [
    { queue: "default", due: 1, waiting: 5, running: 2 },
    { queue: "mail", due: 0, waiting: 1, running: 1 },
  ],
  durations: [{ func: "a.fast", runs: 9, p50: 0.1, p95: 0.2, p99: 0.3 }, { func: "a.slow", runs: 1, p50: 2, p95: 3, p99: 3 }],
};

test("runs per minute: sixty minutes, empty ones included, per queue or all", () => {
  const all = charts.perMinute(answer);
  assert.equal(all.length, 60);
  assert.deepEqual(all.at(-1), { minute: 36000, finished: 5, failed: 1, timed_out: 1 });
  assert.deepEqual(all[0], { minute: 3600 * 9 + 60, finished: 1, failed: 0, timed_out: 0 });
  assert.equal(all.reduce((sum, bucket) => sum + bucket.finished, 0), 6, "the older minute is left out");
  assert.deepEqual(charts.perMinute(answer, "mail").at(-1), { minute: 36000, finished: 2, failed: 0, timed_out: 1 });
  assert.deepEqual(charts.queuesOf(answer), ["default", "mail"]);
});

test("the depth series grows with each poll, capped, per queue or summed", () => {
  let series = [];
  for (let poll = 0; poll < charts.DEPTH_POINTS + 5; poll += 1) series = charts.addDepth(series, { ...answer, at: poll });
  assert.equal(series.length, charts.DEPTH_POINTS);
  assert.equal(series[0].at, 5);
  assert.deepEqual(charts.depthOf(series.slice(-1)), [{ at: charts.DEPTH_POINTS + 4, due: 1, waiting: 6, running: 3 }]);
  assert.deepEqual(charts.depthOf(series.slice(-1), "mail")[0].waiting, 1);
});

test("durations: slowest first; axis bounds are round", () => {
  assert.deepEqual(charts.durations(answer).map((row) => row.func), ["a.slow", "a.fast"]);
  assert.equal(charts.niceMax(0), 1);
  assert.equal(charts.niceMax(7), 10);
  assert.equal(charts.niceMax(0.3), 0.5);
  assert.equal(charts.niceMax(120), 200);
});
