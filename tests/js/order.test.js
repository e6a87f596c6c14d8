// Which rows stay in place when a table is reordered (static/conductor/lib/order.js).
import assert from "node:assert/strict";
import test from "node:test";

import { rowsInPlace } from "../../static/conductor/lib/order.js";

const kept = (positions) => [...rowsInPlace(positions)].sort((a, b) => a - b);

test("rows already in order all stay", () => {
  assert.deepEqual(kept([0, 1, 2, 3]), [0, 1, 2, 3]);
});

test("when the first row goes to the end, only it moves", () => {
  assert.deepEqual(kept([1, 2, 3, 4, 5, 6, 7, 0]), [0, 1, 2, 3, 4, 5, 6]);
});

test("when the last row comes to the front, only it moves", () => {
  assert.deepEqual(kept([7, 0, 1, 2, 3, 4, 5, 6]), [1, 2, 3, 4, 5, 6, 7]);
});

test("rows not in the table yet never stay", () => {
  assert.deepEqual(kept([-1, 0, -1, 1]), [1, 3]);
  assert.deepEqual(kept([-1, -1]), []);
  assert.deepEqual(kept([]), []);
});

test("a reversed table keeps one row", () => {
  assert.equal(rowsInPlace([3, 2, 1, 0]).size, 1);
});

test("the kept rows are a longest increasing run of the positions", () => {
  const positions = [4, 0, 5, 1, 2, 6, 3];
  const indices = kept(positions);
  assert.equal(indices.length, 4); // 0, 1, 2, 3 or 0, 1, 2, 6
  const values = indices.map((index) => positions[index]);
  assert.ok(values.every((value, i) => i === 0 || value > values[i - 1]));
});
