// DOM helpers shared by the pages. Everything shown comes from the server as data and reaches the page
// through textContent and attributes only (task output is untrusted).

import { words } from "./format.js";
import { rowsInPlace } from "./order.js";

export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** A node's text, written only when it changed, and into its text node when it has one: textContent
 * would put a new text node in, which the browser styles and adds to the layout again. */
export function setText(node, value) {
  const shown = value === null || value === undefined ? "" : String(value);
  if (node.textContent === shown) return;
  const text = node.firstChild;
  if (text && text === node.lastChild && text.nodeType === Node.TEXT_NODE) text.data = shown;
  else node.textContent = shown;
}

export function setAttr(node, name, value) {
  const shown = String(value);
  if (node.getAttribute(name) !== shown) node.setAttribute(name, shown);
}

/** Replace a node's children only when what it shows changed (``signature``). */
export function fill(node, signature, build) {
  if (node.dataset.sig === signature) return;
  node.dataset.sig = signature;
  node.replaceChildren(...build().filter((child) => child !== null && child !== undefined));
}

/**
 * Keep one row per item, in the order of ``items``. A row whose key is still shown stays put (its buttons,
 * focus and hover with it); rows whose keys left are handed to new keys, in the order they stand, rather
 * than removed and built again, so a page of new rows costs text updates, not new elements. Only rows out
 * of order are moved (order.js). ``build()`` makes an empty row, ``update(row, item)`` writes everything
 * an item shows (data attributes included) into it. With ``maxNew``, at most that many rows are built:
 * the table then shows the first items only, and the call returns false (call again, in the next frame).
 */
export function syncRows(tbody, allItems, keyOf, build, update, maxNew = Infinity) {
  const items = allItems.slice(0, tbody.children.length + maxNew);
  const existing = new Map([...tbody.children].map((row) => [row.dataset.key, row]));
  const keys = items.map((item) => String(keyOf(item)));
  const wanted = new Set(keys);
  const spare = [...existing].filter(([key]) => !wanted.has(key)).map(([, row]) => row);
  const rows = items.map((item, index) => {
    const row = existing.get(keys[index]) ?? spare.shift() ?? build(item);
    row.dataset.key = keys[index];
    update(row, item);
    return row;
  });
  putInOrder(tbody, rows);
  for (const row of spare) row.remove();
  const empty = document.querySelector(`[data-empty-for="${tbody.dataset.testid}"]`);
  if (empty) empty.hidden = items.length > 0;
  return items.length === allItems.length;
}

/** Puts ``rows`` in this order in ``parent``, moving as few as can be (the others stay before or after). */
function putInOrder(parent, rows) {
  const place = new Map([...parent.children].map((row, index) => [row, index]));
  const stay = rowsInPlace(rows.map((row) => place.get(row) ?? -1));
  let next = null;
  for (let index = rows.length - 1; index >= 0; index -= 1) {
    if (!stay.has(index)) parent.insertBefore(rows[index], next);
    next = rows[index];
  }
}

export const HOLD_RELEASE_MS = 5000;

/**
 * Keeps ``box`` at the tallest ``content`` has been until ``content`` has stayed shorter for ``releaseMs``.
 * During a burst a runner's threads take and finish tasks within milliseconds, so the threads table went
 * from 0 to 8 rows and back several times a second: every change moved every panel below it, which the
 * browser then laid out and painted again. Held, the rows leaving move nothing; the height is given back
 * once the burst is over.
 */
export function holdHeight(box, content, releaseMs = HOLD_RELEASE_MS) {
  let held = 0;
  let release = null;
  const observer = new ResizeObserver(([entry]) => {
    const height = entry.borderBoxSize[0].blockSize;
    if (height >= held) {
      clearTimeout(release);
      release = null;
      held = height;
      box.style.minHeight = `${held}px`;
    } else if (release === null) {
      release = setTimeout(() => {
        release = null;
        held = 0;
        box.style.minHeight = "";
      }, releaseMs);
    }
  });
  observer.observe(content);
  return observer;
}

/** A badge's status, in place (no new element). */
export function setBadge(node, status) {
  const className = `badge s-${status}`;
  if (node.className !== className) node.className = className;
  setText(node, words(status));
}

/** Shows ``value`` in ``node``, or hides it (and empties it: hidden text still counts as the row's). */
export function setShown(node, value) {
  const shown = value !== null && value !== undefined && value !== "";
  node.hidden = !shown;
  setText(node, shown ? value : "");
}

export function cells(row, names) {
  row.cellsByName = {}; // looked up on every update of every row: no selector matching each time
  for (const name of names) {
    row.cellsByName[name] = el("td", { "data-col": name });
    row.append(row.cellsByName[name]);
  }
  return row;
}

export const cell = (row, name) => row.cellsByName?.[name] ?? row.querySelector(`[data-col="${name}"]`);

export const badge = (status, extra = "") => el("span", { class: `badge s-${status} ${extra}`.trim(), text: words(status) });

export function meter(value, total) {
  const fraction = total ? Math.min(1, value / total) : 0;
  const bar = el("span", { class: "meter-fill" });
  bar.style.width = `${Math.round(fraction * 100)}%`;
  return el("span", { class: "meter", "aria-hidden": "true" }, bar);
}

export function progressBar(progress, message) {
  const known = typeof progress === "number";
  const bar = el("span", { class: "progress-fill" });
  bar.style.width = known ? `${Math.round(progress * 100)}%` : "0%";
  const label = known ? `${Math.round(progress * 100)}%${message ? ` · ${message}` : ""}` : message || "";
  return el("div", { class: `progress${known ? "" : " unknown"}`, "data-testid": "progress" }, bar, el("span", { class: "progress-label", text: label }));
}

/** A <select>'s options, rebuilt only when they changed; the chosen value is kept when still offered. */
export function setOptions(select, options) {
  const signature = JSON.stringify(options);
  if (select.dataset.options === signature) return;
  const chosen = select.value;
  select.dataset.options = signature;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
  if (options.some(([value]) => value === chosen)) select.value = chosen;
}

// One formatter for every time shown: toLocaleTimeString builds one per call, which costs
// milliseconds when a table of clocks is drawn during a burst.
const TIME = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
export const timeOfDay = (date) => TIME.format(date);

/**
 * Calls ``render`` at most once per animation frame, however often ``markDirty`` is called, and no
 * sooner than ``minGapMs`` after the last call. ``render`` may return when it wants to run again without
 * being asked (panels.js): 0 for the next frame (it deferred work), milliseconds for later (a panel held
 * back by its rate), nothing or Infinity for never.
 */
export function frameScheduler(render, { minGapMs = 0 } = {}) {
  let dirty = false;
  let timer = null;
  let last = -Infinity;
  const markDirty = () => {
    if (dirty) return;
    dirty = true;
    const wait = last + minGapMs - performance.now();
    if (wait > 0) setTimeout(() => requestAnimationFrame(run), wait);
    else requestAnimationFrame(run);
  };
  const run = () => {
    dirty = false;
    last = performance.now();
    const again = render();
    clearTimeout(timer);
    if (again === 0) markDirty();
    else if (again > 0 && Number.isFinite(again)) timer = setTimeout(markDirty, again);
  };
  return markDirty;
}

/** GET a dashboard JSON view: the answer, or {error, field} (a refusal, a network failure). */
export async function getJson(url) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch (error) {
    return { error: `The server could not be reached (${error.message}).`, field: null };
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an HTML error page
  }
  if (response.ok && body) return body;
  return { error: body?.error ?? `The server answered ${response.status}.`, field: body?.field ?? null, status: response.status };
}
