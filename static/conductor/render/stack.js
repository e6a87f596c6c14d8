// "What is it doing now?": the stack and live log of one running thread, its cancel button, and the
// recorded log tail once the run has ended.

import { byTestId, setAttr, setText } from "../lib/dom.js";
import { duration, words } from "../lib/format.js";
import { findRun } from "../store.js";

export const runIsRunning = (state, run) => state.threads.has(run) || findRun(state, run)?.status === "running";

export function renderStack(state, clock) {
  const panel = byTestId("stack-panel");
  const open = state.stack;
  panel.hidden = !open;
  if (!open) return;
  const run = findRun(state, open.run);
  const thread = state.threads.get(open.run);
  const running = runIsRunning(state, open.run);
  const status = thread?.state ?? run?.status ?? "running";
  setText(byTestId("stack-title"), `${thread?.task_name ?? run?.task_name ?? ""} · run ${open.run} · ${thread?.name ?? run?.thread_name ?? open.thread ?? ""}`);
  const stateBadge = byTestId("stack-state");
  setText(stateBadge, words(status));
  stateBadge.className = `badge s-${status}`;
  setAttr(panel, "data-status", running ? "running" : status);
  const cancel = byTestId("cancel-run");
  cancel.hidden = !state.user.can_change;
  cancel.disabled = !running || status === "cancelling";

  let note = open.note || "";
  if (!running && run) note = `The run ended ${words(run.status)} after ${duration(run.duration)}.${run.error ? ` ${run.error}` : ""}`;
  else if (open.error) note = open.error;
  setText(byTestId("stack-note"), note);
  const stackBox = byTestId("stack-text");
  const stackBefore = stackBox.textContent;
  setText(stackBox, open.text || (running ? "Asking the runner…" : "(no stack: the run has ended)"));
  if (stackBox.textContent !== stackBefore) stackBox.scrollTop = stackBox.scrollHeight; // innermost call last
  setText(byTestId("stack-at"), open.at ? `at ${clock(open.at)}` : "");
  const { log, final } = logFor(state.logs.get(open.run) ?? "", run, running);
  const shown = log.replace(/^\n+/, ""); // a live log may begin at a line break
  const logBox = byTestId("log-tail");
  setText(logBox, shown || (running ? "(nothing printed or logged yet)" : "(nothing printed or logged)"));
  setText(byTestId("log-note"), final ? "the run's log tail" : "live");
  if (running) logBox.scrollTop = logBox.scrollHeight;
}

/** The live log while the run goes on; once it ended, its recorded log tail (unless ours holds more). */
function logFor(live, run, running) {
  if (running || !run || typeof run.log_tail !== "string") return { log: live, final: false };
  const tail = run.log_tail;
  if (live.length > tail.length && live.endsWith(tail)) return { log: live, final: true };
  return { log: tail, final: true };
}
