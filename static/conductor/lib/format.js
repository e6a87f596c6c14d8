// Formatting shared by every page: pure functions of their arguments (no DOM, no clock).

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A JSON value as one line of text (strings as they are). */
export function text(value) {
  if (value === null || value === undefined || value === "") return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function lastLine(value) {
  const lines = String(value ?? "").trim().split("\n");
  return lines[lines.length - 1];
}

export const words = (status) => String(status ?? "").replaceAll("_", " ");

export function scheduleText(task) {
  if (task.cron) return task.schedule || task.cron; // in words, with its time zone
  return task.loop ? `every ${duration(task.interval)}` : "once";
}

/** What is not the default about where, in what order and within what window a task runs. */
export function placementText(task, nowSeconds) {
  const parts = [];
  if (task.queue && task.queue !== "default") parts.push(`queue ${task.queue}`);
  if (task.priority) parts.push(`priority ${task.priority}`);
  if (task.isolation === "process") parts.push("own process");
  if (task.max_attempts > 1) parts.push(`up to ${task.max_attempts} tries`);
  if (task.max_runs) parts.push(`${task.run_count}/${task.max_runs} runs`);
  if (task.start_at && task.start_at > nowSeconds) parts.push(`from ${new Date(task.start_at * 1000).toLocaleString()}`);
  if (task.expires_at) parts.push(`expires ${new Date(task.expires_at * 1000).toLocaleString()}`);
  return parts.join(" · ");
}

export function runsText(task) {
  const runs = `${task.attempts} run${task.attempts === 1 ? "" : "s"}`;
  return task.max_attempts > 1 && task.attempt > 1 ? `${runs} · try ${task.attempt}/${task.max_attempts}` : runs;
}

export function nextRunText(task, nowSeconds) {
  if (task.status === "running") return "running now";
  if (task.status !== "waiting" || !task.next_run) return "—";
  const wait = task.next_run - nowSeconds;
  const when = wait > 0 ? `in ${duration(wait)}` : "due now";
  return task.paused ? `paused (${when})` : when;
}
