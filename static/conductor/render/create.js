// The "New task" form (the socket's create command) and the results of tasks created from this page.

import { badge, byTestId, el, fill, setAttr, setOptions, setText } from "../lib/dom.js";
import { duration, lastLine, text } from "../lib/format.js";

/** send(message, pending) -> id or null; setForm(form) stores what the form says. */
export function wireCreate(send, setForm, markDirty) {
  const form = byTestId("create-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const message = createMessage(new FormData(form));
    if (message.error) setForm({ message: message.error, error: true, field: "args_in" });
    else if (send(message, { kind: "create" }) !== null) setForm({ message: "Creating…", error: false, field: null });
    else setForm({ message: "Not connected: the task was not created.", error: true, field: null });
  });
  byTestId("create-func").addEventListener("change", markDirty);
  form.addEventListener("input", () => setForm(null)); // a correction clears the error shown
}

function createMessage(values) {
  let args;
  try {
    args = JSON.parse(values.get("args_in") || "{}");
  } catch (error) {
    return { error: `args_in: not JSON (${error.message}).` };
  }
  const message = {
    type: "create",
    func: values.get("func"),
    args_in: args,
    run_in: numberOr(values.get("run_in"), 0),
    loop: values.get("loop") === "on",
    interval: numberOr(values.get("interval"), 60),
    db_use: values.get("db_use") === "on",
  };
  const name = String(values.get("name") || "").trim();
  if (name) message.name = name;
  const killTime = String(values.get("kill_time") || "").trim();
  if (killTime) message.kill_time = Number(killTime);
  return message;
}

function numberOr(value, fallback) {
  const shown = String(value ?? "").trim();
  return shown === "" ? fallback : Number(shown);
}

export function renderCreate(state) {
  const panel = byTestId("create-panel");
  panel.hidden = !state.user.can_add;
  if (!state.user.can_add) return;
  const select = byTestId("create-func");
  setOptions(select, state.functions.map((f) => [f.path, f.path]));
  const info = state.functions.find((f) => f.path === select.value);
  setText(byTestId("create-signature"), info ? `${info.path.split(".").pop()}${info.signature}` : "");
  setText(byTestId("create-doc"), info?.doc ?? "");

  const message = byTestId("form-message");
  setText(message, state.form.message);
  message.classList.toggle("error-text", state.form.error);
  setAttr(message, "data-field", state.form.field ?? "");
  for (const input of byTestId("create-form").elements) {
    if (!input.name) continue;
    const invalid = state.form.error && input.name === state.form.field;
    input.classList.toggle("invalid", invalid);
    if (invalid) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  const results = [...state.results.values()].sort((a, b) => b.run - a.run);
  fill(byTestId("results"), JSON.stringify(results.map((r) => [r.run, r.status, r.error ? r.error.length : 0])), () => results.map(resultItem));
}

function resultItem(result) {
  const status = result.status ?? "finished";
  const failed = status !== "finished";
  return el("li", { "data-testid": "task-result", "data-run-id": result.run, "data-status": status },
    badge(status), " ",
    el("span", { class: "strong", text: result.task ?? "" }),
    el("span", { class: "sub", text: ` run ${result.run} · ${duration(result.duration)}` }), " ",
    failed && result.error
      ? el("details", {}, el("summary", { class: "error-text", text: lastLine(result.error) }), el("pre", { class: "code", text: result.error }))
      : el("code", { "data-testid": "result-output", text: `→ ${text(result.output) || "null"}` }));
}
