// Which rows can stay where they are when a table is put in a new order. Moving a row in the DOM takes it
// out of the layout tree and puts it back: the browser styles and lays out all its cells again. During a
// drain the threads table moved every row at every drawing (one thread's run finished, the rest moved up
// by one); kept in place, only the row that really changed its place moves. No DOM here
// (tests/js/order.test.js runs it in Node).

/**
 * The indices of a longest strictly increasing subsequence of ``positions`` (a row's current place, or -1
 * for a row not in the table yet, which never stays): the rows that keep their relative order and need
 * not move. O(n log n).
 */
export function rowsInPlace(positions) {
  const tails = []; // tails[k]: index of the smallest last position of an increasing run of length k + 1
  const before = new Array(positions.length).fill(-1);
  positions.forEach((position, index) => {
    if (position < 0) return;
    let low = 0;
    let high = tails.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (positions[tails[middle]] < position) low = middle + 1;
      else high = middle;
    }
    if (low > 0) before[index] = tails[low - 1];
    tails[low] = index;
  });
  const kept = new Set();
  for (let index = tails.at(-1) ?? -1; index >= 0; index = before[index]) kept.add(index);
  return kept;
}
