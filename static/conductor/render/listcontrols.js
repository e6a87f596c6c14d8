// The filters, search, sort and pager of a list (tasks or runs): the form's values become the list's
// filters (lists.setFilters); the pager moves through keyset pages and shows "N new" when rows came to
// match while the user reads a later page.

import * as lists from "../lists.js";
import { byTestId, setAttr, setOptions, setText } from "../lib/dom.js";

const TYPING_MS = 300;

/** Wire the form ``[data-list=kind]`` and its pager to ``change(kind, listChange)``; ``fixed`` filters
 * (a task page's runs are that task's) stay whatever the form says. */
export function wireListControls(kind, change, fixed = {}) {
  const form = document.querySelector(`form[data-list="${kind}"]`);
  const pager = document.querySelector(`[data-pager="${kind}"]`);
  const apply = () => {
    const values = { ...Object.fromEntries(new FormData(form)), ...fixed };
    change(kind, (list) => lists.setFilters(list, values, values.sort ?? list.sort));
  };
  let typing = null;
  form.addEventListener("change", apply);
  form.addEventListener("input", (event) => {
    if (event.target.tagName !== "INPUT") return;
    clearTimeout(typing);
    typing = setTimeout(apply, TYPING_MS);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    apply();
  });
  byTestId("prev-page", pager).addEventListener("click", () => change(kind, lists.previousPage));
  byTestId("next-page", pager).addEventListener("click", () => change(kind, lists.nextPage));
  byTestId("new-rows", pager).addEventListener("click", () => change(kind, lists.firstPage));
}

/** Choices that come from the server: functions and runners (the chosen one is kept). */
export function renderChoices(kind, { functions, runners }) {
  const form = document.querySelector(`form[data-list="${kind}"]`);
  const func = form.elements.namedItem("func");
  if (func) setOptions(func, [["", "any function"], ...functions.map((f) => [f.path, f.path])]);
  const runner = form.elements.namedItem("runner");
  if (runner) setOptions(runner, [["", "any runner"], ...[...runners].map((r) => [r.worker_id, r.worker_id]).sort()]);
}

export function renderPager(kind, list) {
  const pager = document.querySelector(`[data-pager="${kind}"]`);
  byTestId("prev-page", pager).disabled = lists.onFirstPage(list);
  byTestId("next-page", pager).disabled = !list.next;
  setText(byTestId("page-number", pager), `page ${lists.pageNumber(list)}`);
  const fresh = byTestId("new-rows", pager);
  const freshText = lists.newText(list);
  fresh.hidden = !freshText;
  setText(fresh, freshText ? `${freshText}: show the first page` : "");
  setText(byTestId("list-error", pager), list.error);
  setAttr(pager, "data-loading", list.loading || list.refresh);
}
