// Fetching the pages of the lists a page shows (api/tasks, api/runs), as the list states ask
// (lists.js: ``refresh``): at once when the user moved (a filter, a page), otherwise at most once every
// REFRESH_MS while events keep asking, so a drain of thousands of tasks costs one request a second.

import * as lists from "./lists.js";
import { getJson } from "./lib/dom.js";

export const REFRESH_MS = 1000;

/** Returns the ``afterChange`` hook for startPage. */
export function listFetcher(kinds) {
  const last = {};
  for (const kind of kinds) last[kind] = { at: 0, generation: -1, timer: null };

  function maybeFetch(page, kind) {
    const list = page.state.lists[kind];
    const mine = last[kind];
    if (!list.refresh || list.loading || mine.timer !== null) return;
    const userMoved = list.generation !== mine.generation;
    const wait = userMoved ? 0 : mine.at + REFRESH_MS - Date.now();
    if (wait > 0) {
      mine.timer = setTimeout(() => {
        mine.timer = null;
        maybeFetch(page, kind);
      }, wait);
      return;
    }
    fetchPage(page, kind);
  }

  async function fetchPage(page, kind) {
    page.dispatch({ type: "list", kind, change: lists.requested });
    const list = page.state.lists[kind];
    Object.assign(last[kind], { at: Date.now(), generation: list.generation });
    const answer = await getJson(`${page.base}api/${kind}?${lists.queryString(list)}`);
    page.dispatch({ type: "page", kind, generation: list.generation, answer });
  }

  return (page) => {
    for (const kind of kinds) maybeFetch(page, kind);
  };
}
