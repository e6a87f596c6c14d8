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

test("without samples from runners the depth series grows with each poll, capped, per queue or summed", () => {
  let series = [];
  for (let poll = 0; poll < charts.DEPTH_POINTS + 5; poll += 1) series = charts.addDepth(series, { ...answer, at: poll });
  assert.equal(series.length, charts.DEPTH_POINTS);
  assert.equal(series[0].at, 5);
  assert.deepEqual(charts.depthOf(series.slice(-1)), [{ at: charts.DEPTH_POINTS + 4, due: 1, waiting: 6, running: 3 }]);
  assert.deepEqual(charts.depthOf(series.slice(-1), "mail")[0].waiting, 1);
  assert.equal(charts.sampledUntil(series), null);
});

const sample = (at, queue, waiting) => ({ at, queue, due: 0, waiting, running: 0 });

test("a page's first answer draws the hour runners sampled, then its own polls fill in until the next sample", () => {
  const now = 36000;
  const history = [sample(now - 4000, "mail", 9), sample(now - 30, "mail", 4), sample(now - 30, "default", 1), sample(now - 15, "mail", 3)];
  let series = charts.addDepth([], { ...answer, at: now, queue_depth_history: history });

  assert.deepEqual(series.map((point) => point.at), [now - 30, now - 15, now], "older than the hour left out");
  assert.deepEqual(charts.depthOf(series).map((point) => point.waiting), [5, 3, 6]);
  assert.equal(charts.sampledUntil(series), now - 15);

  series = charts.addDepth(series, { ...answer, at: now + 5, queue_depth_history: [] }); // polled: no new sample
  assert.deepEqual(series.map((point) => point.at), [now - 30, now - 15, now, now + 5]);
  series = charts.addDepth(series, { ...answer, at: now + 10, queue_depth_history: [sample(now + 3, "mail", 2)] });
  assert.deepEqual(series.map((point) => point.at), [now - 30, now - 15, now + 3, now + 5, now + 10],
    "the polls before the new sample give way to it");
  assert.deepEqual(series.map((point) => Boolean(point.sampled)), [true, true, true, false, false]);
  assert.equal(charts.sampledUntil(series), now + 3);
});

test("heartbeats from the database and from events make one series, one point per heartbeat, the last hour", () => {
  const recorded = [{ at: 100, busy: 1, threads: 4 }, { at: 105, busy: 2, threads: 4 }];
  let beats = charts.addBeats([], recorded);
  assert.deepEqual(beats, [{ at: 100, busy: 1 }, { at: 105, busy: 2 }]);
  beats = charts.addBeats(beats, [{ at: 110.2, busy: 3 }]); // an event
  beats = charts.addBeats(beats, [{ at: 110.001, busy: 3 }, { at: 115, busy: 0 }]); // its sample, and the next
  assert.deepEqual(beats.map((beat) => beat.at), [100, 105, 110.001, 115]);
  beats = charts.addBeats(beats, [{ at: 100 + charts.WINDOW_S + 1, busy: 1 }]);
  assert.deepEqual(beats.map((beat) => beat.at), [105, 110.001, 115, 3701], "older than an hour before the newest");
  const many = Array.from({ length: charts.BEAT_POINTS + 10 }, (_, n) => ({ at: n, busy: 1 }));
  assert.equal(charts.addBeats([], many).length, charts.BEAT_POINTS);
});

test("durations: slowest first; axis bounds are round", () => {
  assert.deepEqual(charts.durations(answer).map((row) => row.func), ["a.slow", "a.fast"]);
  assert.equal(charts.niceMax(0), 1);
  assert.equal(charts.niceMax(7), 10);
  assert.equal(charts.niceMax(0.3), 0.5);
  assert.equal(charts.niceMax(120), 200);
});
