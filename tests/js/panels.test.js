// Which panels a frame draws (static/conductor/panels.js), with a clock the test moves.
import assert from "node:assert/strict";
import test from "node:test";

import { FRAME_BUDGET_MS, panelDrawer } from "../../static/conductor/panels.js";

/** Panels that read page[name] as their input, record their drawing and take ``cost`` ms of the clock. */
function setUp(specs) {
  const clock = { ms: 1000 };
  const drawnNow = [];
  const panels = specs.map(({ name, cost = 1, perSecond, phase, parts = 1 }) => ({
    name, perSecond, phase,
    inputs: (page) => [page[name]],
    draw: () => {
      drawnNow.push(name);
      clock.ms += cost;
      parts -= 1;
      return parts <= 0 ? undefined : false; // false: drew part of it
    },
  }));
  const drawPanels = panelDrawer(panels, { clock: () => clock.ms });
  const frame = (page) => {
    drawnNow.length = 0;
    const again = drawPanels(page, clock.ms / 1000);
    return { drawn: [...drawnNow], again };
  };
  return { clock, frame };
}

test("a panel is drawn once, then only when one of its inputs changes", () => {
  const { frame } = setUp([{ name: "a" }, { name: "b" }]);
  const page = { a: 1, b: 1 };
  assert.deepEqual(frame(page), { drawn: ["a", "b"], again: Infinity });
  assert.deepEqual(frame(page), { drawn: [], again: Infinity });
  assert.deepEqual(frame({ ...page, b: 2 }), { drawn: ["b"], again: Infinity });
});

test("a frame starts no panel once its budget is spent; the rest come first in the next frame", () => {
  const { frame } = setUp([{ name: "big", cost: FRAME_BUDGET_MS + 1 }, { name: "x" }, { name: "y" }]);
  assert.deepEqual(frame({ big: 1, x: 1, y: 1 }), { drawn: ["big"], again: 0 });
  assert.deepEqual(frame({ big: 2, x: 1, y: 1 }), { drawn: ["x", "y", "big"], again: Infinity });
});

test("a panel with a rate is drawn at most that often, and says when it may be drawn again", () => {
  const { clock, frame } = setUp([{ name: "table", perSecond: 4 }]);
  assert.deepEqual(frame({ table: 1 }).drawn, ["table"]);
  clock.ms += 100;
  const held = frame({ table: 2 });
  assert.deepEqual(held.drawn, []);
  assert.ok(held.again > 0 && held.again <= 250 - 100, `wait ${held.again}`);
  clock.ms += held.again;
  assert.deepEqual(frame({ table: 2 }).drawn, ["table"]);
});

test("many changes within a rate's period are drawn once, with the last state", () => {
  const { clock, frame } = setUp([{ name: "table", perSecond: 4 }]);
  frame({ table: 0 });
  for (let n = 1; n <= 10; n += 1) {
    clock.ms += 10;
    assert.deepEqual(frame({ table: n }).drawn, []);
  }
  clock.ms += 250;
  assert.deepEqual(frame({ table: 10 }).drawn, ["table"]);
});

test("panels with the same rate come due together, on the clock's beats", () => {
  const { clock, frame } = setUp([{ name: "threads", perSecond: 4 }, { name: "runs", perSecond: 4 }]);
  assert.deepEqual(frame({ threads: 0, runs: 0 }).drawn, ["threads"]); // at 1,000 ms: the beat of 1,000-1,250
  clock.ms += 10;
  assert.deepEqual(frame({ threads: 0, runs: 0 }).drawn, ["runs"]); // the next frame, in the same beat
  clock.ms += 90;
  assert.deepEqual(frame({ threads: 1, runs: 0 }).drawn, []);
  clock.ms += 50;
  const held = frame({ threads: 1, runs: 1 });
  assert.deepEqual(held.drawn, []);
  clock.ms += held.again; // the next beat: both due, each in a frame of its own
  const first = frame({ threads: 1, runs: 1 });
  assert.deepEqual(first, { drawn: ["threads"], again: 0 });
  clock.ms += 16;
  assert.deepEqual(frame({ threads: 1, runs: 1 }).drawn, ["runs"]);
});

test("a frame draws one panel with a rate at most; those left wait for the next frames, in turn", () => {
  const { clock, frame } = setUp([{ name: "threads", perSecond: 4 }, { name: "tasks", perSecond: 4, phase: 0.25 },
    { name: "runs", perSecond: 4, phase: 0.5 }, { name: "runners" }]);
  const page = { threads: 1, tasks: 1, runs: 1, runners: 1 };
  assert.deepEqual(frame(page), { drawn: ["threads", "runners"], again: 0 });
  clock.ms += 100;
  assert.deepEqual(frame(page), { drawn: ["tasks"], again: 0 });
  clock.ms += 100;
  assert.deepEqual(frame(page), { drawn: ["runs"], again: Infinity });
});

test("a panel that drew only part of what it shows is drawn again in the next frame, whatever its rate", () => {
  const { clock, frame } = setUp([{ name: "table", perSecond: 4, parts: 3 }]);
  assert.deepEqual(frame({ table: 1 }), { drawn: ["table"], again: 0 });
  clock.ms += 16;
  assert.deepEqual(frame({ table: 1 }), { drawn: ["table"], again: 0 });
  clock.ms += 16;
  assert.deepEqual(frame({ table: 1 }), { drawn: ["table"], again: Infinity });
  clock.ms += 16;
  assert.deepEqual(frame({ table: 1 }).drawn, []); // all of it drawn: not again until its inputs change
});

test("a phase puts a panel's beats between another's: the two are drawn in different frames", () => {
  const { clock, frame } = setUp([{ name: "threads", perSecond: 4 }, { name: "timeline", perSecond: 4, phase: 0.5 }]);
  frame({ threads: 0, timeline: 0 }); // at 1,000 ms: threads' beat 1,000-1,250, timeline's 875-1,125
  clock.ms = 1010;
  assert.deepEqual(frame({ threads: 0, timeline: 0 }).drawn, ["timeline"]); // one with a rate a frame
  clock.ms = 1050;
  const first = frame({ threads: 1, timeline: 1 });
  assert.deepEqual(first.drawn, []);
  assert.equal(first.again, 75); // the timeline's next beat, at 1,125
  clock.ms = 1125;
  const second = frame({ threads: 1, timeline: 1 });
  assert.deepEqual(second.drawn, ["timeline"]);
  assert.equal(second.again, 1250 - 1125); // threads' next beat, from the frame's start
  clock.ms = 1250;
  assert.deepEqual(frame({ threads: 1, timeline: 1 }).drawn, ["threads"]);
});
