// The tasks and runs lists as the user pages through them: pure functions from a list state to the next.
//
// A list shows one server-side page (api/tasks, api/runs: docs/dashboard.md) of at most PAGE_SIZE rows.
// Pages are keyset pages: ``cursors`` holds the cursor of each page up to the one shown (the first is
// null), so "previous" is a pop and "next" a push of the page's ``next``. Events about rows that are not
// on screen never add rows here: on the first page they ask for the page again (``refresh``, which the
// caller throttles), on later pages they count as "N new" so the page the user reads does not move.

export const PAGE_SIZE = 50;
/** "N new" counts distinct rows up to this many, then shows "999+ new". */
export const NEW_CAP = 999;

export const FILTERS = {
  tasks: ["status", "queue", "func", "runner", "loop", "paused", "q"],
  runs: ["status", "queue", "func", "runner", "task"],
};
export const SORTS = { tasks: ["-id", "id", "name", "-name"], runs: ["-id", "id"] };
// Filters on what changes as tasks run: a row outside the newest ids can come to match them.
const MUTABLE = new Set(["status", "paused", "runner"]);

export function newList(kind, filters = {}, sort = "-id") {
  return {
    kind,
    filters: cleanFilters(kind, filters),
    sort: SORTS[kind].includes(sort) ? sort : "-id",
    cursors: [null],
    next: null,
    ids: [],
    generation: 0, // a page asked for under an older generation is ignored when it comes
    loading: false,
    refresh: true, // ask the server for the page
    error: "",
    newestId: null, // the newest id the first page showed: newer rows are "new" on later pages
    fresh: [], // ids of rows that came to match while the user was on a later page (at most NEW_CAP)
  };
}

function cleanFilters(kind, filters) {
  const clean = {};
  for (const name of FILTERS[kind]) {
    const value = String(filters[name] ?? "").trim();
    if (value) clean[name] = value;
  }
  return clean;
}

export const pageNumber = (list) => list.cursors.length; // 1 for the first page
export const onFirstPage = (list) => list.cursors.length === 1;

/** The query string of the page shown (for api/tasks or api/runs). */
export function queryString(list, limit = PAGE_SIZE) {
  const params = new URLSearchParams(list.filters);
  if (list.sort !== "-id") params.set("sort", list.sort);
  params.set("limit", String(limit));
  const cursor = list.cursors[list.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  return params.toString();
}

/** The user moved to another page or filter: whatever was being fetched is no longer wanted. */
function moved(list, changes) {
  return { ...list, ...changes, generation: list.generation + 1, refresh: true, loading: false, error: "" };
}

export function setFilters(list, filters, sort = list.sort) {
  return moved(list, { filters: cleanFilters(list.kind, filters), sort: SORTS[list.kind].includes(sort) ? sort : "-id", cursors: [null], fresh: [], newestId: null });
}

export function nextPage(list) {
  return list.next ? moved(list, { cursors: [...list.cursors, list.next] }) : list;
}

export function previousPage(list) {
  return list.cursors.length > 1 ? moved(list, { cursors: list.cursors.slice(0, -1) }) : list;
}

export function firstPage(list) {
  return moved(list, { cursors: [null], fresh: [] });
}

/** Ask for the page shown again (after a snapshot, a reconnect, or rows that changed under it). */
export const wantRefresh = (list) => (list.refresh ? list : { ...list, refresh: true });

/** The caller sent the request for ``list.generation``. */
export const requested = (list) => ({ ...list, refresh: false, loading: true });

/** A page came: ``answer`` is the view's JSON ({items, next}) or {error}. */
export function pageLoaded(list, generation, answer) {
  if (generation !== list.generation) return list; // for a page the user has left
  if (answer.error) {
    // A cursor the server no longer accepts: start again from the first page.
    const restart = answer.field === "cursor" && list.cursors.length > 1;
    return restart ? { ...firstPage(list), error: answer.error } : { ...list, loading: false, error: answer.error };
  }
  const ids = answer.items.map((item) => item.id);
  const first = onFirstPage(list);
  const newest = ids.length ? Math.max(...ids) : list.newestId;
  return {
    ...list,
    ids,
    next: answer.next,
    loading: false,
    error: "",
    newestId: first ? Math.max(newest ?? 0, list.newestId ?? 0) || null : list.newestId,
    fresh: first ? [] : list.fresh,
  };
}

/** Whether ``item`` (a task or run state, its runner as a worker id) passes the list's filters; null when
 * the item does not say (a run's queue or function). */
export function matches(list, item) {
  let unknown = false;
  for (const [name, wanted] of Object.entries(list.filters)) {
    const verdict = FIELD_MATCH[list.kind][name](item, wanted);
    if (verdict === false) return false;
    if (verdict === null) unknown = true;
  }
  return unknown ? null : true;
}

const known = (value, wanted) => (value === undefined ? null : String(value) === wanted);
const FIELD_MATCH = {
  tasks: {
    status: (t, w) => known(t.status, w),
    queue: (t, w) => known(t.queue, w),
    func: (t, w) => known(t.func, w),
    runner: (t, w) => (t.runner_name === undefined ? null : t.runner_name === w),
    loop: (t, w) => known(t.loop, w),
    paused: (t, w) => known(t.paused, w),
    q: (t, w) => String(t.name ?? "").toLowerCase().includes(w.toLowerCase()) || t.task_id === w,
  },
  runs: {
    status: (r, w) => known(r.status, w),
    queue: (r, w) => known(r.queue, w),
    func: (r, w) => known(r.func, w),
    runner: (r, w) => (r.runner === null || r.runner === undefined ? null : String(r.runner) === w),
    task: (r, w) => known(r.task, w),
  },
};

/** Take note of rows that changed or appeared (from events), in one go for a batch of events. */
export function noteItems(list, items) {
  if (!items.length) return list;
  const onPage = new Set(list.ids);
  const first = onFirstPage(list);
  let refresh = list.refresh;
  let fresh = null;
  for (const item of items) {
    const verdict = matches(list, item);
    if (onPage.has(item.id)) {
      if (verdict === false && first) refresh = true; // it leaves the page: the next row moves up
    } else if (verdict !== false) {
      if (first) refresh ||= belongsOnFirstPage(list, item.id);
      else if (isNew(list, item.id)) addFresh((fresh ??= [...list.fresh]), item.id);
    }
  }
  if (refresh === list.refresh && (fresh === null || fresh.length === list.fresh.length)) return list;
  return { ...list, refresh, fresh: fresh ?? list.fresh };
}

/** On a full first page sorted by id, a row beyond its last id cannot show: no need to ask. */
function belongsOnFirstPage(list, id) {
  if (list.ids.length < PAGE_SIZE || list.next === null) return true;
  if (list.sort === "-id") return id > Math.min(...list.ids);
  if (list.sort === "id") return id < Math.max(...list.ids);
  return true;
}

function isNew(list, id) {
  if (Object.keys(list.filters).some((name) => MUTABLE.has(name))) return true;
  return list.newestId === null || id > list.newestId;
}

/** ``fresh`` is this batch's own copy. */
function addFresh(fresh, id) {
  if (fresh.length < NEW_CAP && !fresh.includes(id)) fresh.push(id);
}

export function newText(list) {
  const count = list.fresh.length;
  if (!count) return "";
  return `${count >= NEW_CAP ? `${NEW_CAP}+` : count} new`;
}
