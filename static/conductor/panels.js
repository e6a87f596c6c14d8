// Which panels a frame draws. During a burst events arrive faster than anyone reads, and every panel
// drawn in a frame adds its DOM writes and the browser's layout and paint to that frame's task: drawn
// together, they made tasks of hundreds of milliseconds on a busy 2-core machine, during which clicks and
// scrolling waited. So a panel is drawn only when what it shows changed, the large ones at most
// ``perSecond`` times a second, and a frame stops starting panels once its budget is spent: the rest
// are drawn first in the next frame. No DOM here (tests/js/panels.test.js runs it in Node).

/** Milliseconds of drawing a frame may start panels in: leaves the browser most of a 16 ms frame. */
export const FRAME_BUDGET_MS = 6;

/**
 * @param panels [{name, inputs(page, now) -> array, draw(page, now), perSecond?}], in the page's order;
 *   a panel is drawn when an input differs (by identity) from when it was last drawn
 * @param clock () => milliseconds (performance.now in the page)
 * @returns drawPanels(page, now) -> milliseconds until it should run again: 0 for the next frame
 *   (panels were deferred), a wait for a panel held back by its rate, Infinity for nothing to do
 */
export function panelDrawer(panels, { budgetMs = FRAME_BUDGET_MS, clock = () => performance.now() } = {}) {
  const drawn = new Map(); // name -> {inputs, at} of its last drawing
  let deferred = new Set();
  return function drawPanels(page, now) {
    const started = clock();
    const order = [...panels.filter((p) => deferred.has(p.name)), ...panels.filter((p) => !deferred.has(p.name))];
    deferred = new Set();
    let again = Infinity;
    for (const panel of order) {
      const inputs = panel.inputs(page, now);
      const last = drawn.get(panel.name);
      if (last && sameInputs(last.inputs, inputs)) continue;
      const wait = last && panel.perSecond ? last.at + 1000 / panel.perSecond - started : 0;
      if (wait > 0) again = Math.min(again, wait);
      else if (clock() - started >= budgetMs) {
        deferred.add(panel.name);
        again = 0;
      } else {
        panel.draw(page, now);
        drawn.set(panel.name, { inputs, at: started });
      }
    }
    return again;
  };
}

export function sameInputs(before, after) {
  return before.length === after.length && after.every((input, index) => input === before[index]);
}
