// Which panels a frame draws. During a burst events arrive faster than anyone reads, and every panel
// drawn in a frame adds its DOM writes and the browser's style, layout and paint to that frame's task.
// On a 2-core machine shared with the runner a task waits for the CPU several times its own length
// (the bench's traces: 26 ms of CPU took 231 ms), so only short tasks stay short. A panel is drawn only
// when what it shows changed, the large ones (those with a rate) at most ``perSecond`` times a second and
// one of them a frame, and a frame stops starting panels once its budget is spent: the rest are drawn
// first in the next frame. No DOM here (tests/js/panels.test.js runs it in Node).

/** Milliseconds of drawing a frame may start panels in: leaves the browser most of a 16 ms frame. */
export const FRAME_BUDGET_MS = 6;

/**
 * @param panels [{name, inputs(page, now) -> array, draw(page, now), perSecond?, phase?}], in the page's order;
 *   a panel is drawn when an input differs (by identity) from when it was last drawn, and again in the
 *   next frame when its draw returned false (it drew only part of what it shows)
 * @param clock () => milliseconds (performance.now in the page)
 * @returns drawPanels(page, now) -> milliseconds until it should run again: 0 for the next frame
 *   (panels were deferred), a wait for a panel held back by its rate, Infinity for nothing to do
 */
export function panelDrawer(panels, { budgetMs = FRAME_BUDGET_MS, clock = () => performance.now() } = {}) {
  const drawn = new Map(); // name -> {inputs, beat} of its last drawing
  let deferred = new Set();
  return function drawPanels(page, now) {
    const started = clock();
    const order = [...panels.filter((p) => deferred.has(p.name)), ...panels.filter((p) => !deferred.has(p.name))];
    deferred = new Set();
    let again = Infinity;
    let churned = false; // a panel with a rate was drawn in this frame
    for (const panel of order) {
      const inputs = panel.inputs(page, now);
      const last = drawn.get(panel.name);
      if (last && sameInputs(last.inputs, inputs)) continue;
      const wait = panel.perSecond ? waitForBeat(last, panel, started) : 0;
      if (wait > 0) again = Math.min(again, wait);
      else if (clock() - started >= budgetMs || (panel.perSecond && churned)) {
        deferred.add(panel.name);
        again = 0;
      } else {
        churned ||= Boolean(panel.perSecond);
        const whole = panel.draw(page, now) !== false;
        drawn.set(panel.name, whole ? { inputs, beat: beatOf(started, panel) } : PARTLY_DRAWN);
        if (!whole) again = 0;
      }
    }
    return again;
  };
}

// A panel whose draw returned false drew part of what it shows: drawn again in the next frame, whatever its rate.
const PARTLY_DRAWN = { inputs: [], beat: -Infinity };

// Rates are beats of the clock (quarters of a second at 4 a second), not periods from each panel's last
// drawing, so when panels come due is known in advance. A panel's ``phase`` (a fraction of a beat) moves
// its beats: panels with the same phase come due together, panels with different phases apart. The
// dashboard gives each churning panel its own phase, so that they seldom wait for one another; a frame
// draws one of them at most (the others wait for the next frame), so that its layout and paint cover
// one large panel's changes, and the longest frame is one panel's, not the sum of four. (The page's
// frames are 100 ms apart at the least: two phases often fell in one frame.)
const beatOf = (ms, { perSecond, phase = 0 }) => (perSecond ? Math.floor((ms * perSecond) / 1000 - phase) : 0);

/** Milliseconds until the next beat when the panel was drawn in this one already, else 0. */
function waitForBeat(last, panel, ms) {
  if (!last || beatOf(ms, panel) > last.beat) return 0;
  return ((last.beat + 1 + (panel.phase ?? 0)) * 1000) / panel.perSecond - ms;
}

export function sameInputs(before, after) {
  return before.length === after.length && after.every((input, index) => input === before[index]);
}
