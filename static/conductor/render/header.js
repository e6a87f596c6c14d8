// The top bar and banners every page shows: the connection, who is signed in, the live/degraded banner,
// the signed-out banner (close code 4001) and the flash of a command's answer.

import { CLOSE_FORBIDDEN, CLOSE_SIGNED_OUT } from "../socket.js";
import { byTestId, setAttr, setText } from "../lib/dom.js";

const FINAL_LABELS = { [CLOSE_SIGNED_OUT]: "Signed out", [CLOSE_FORBIDDEN]: "not allowed (4003)" };
const CLOSED_TITLES = {
  [CLOSE_SIGNED_OUT]: "No session signs you in (logged out, expired, password changed, or no longer active staff): log in again.",
  [CLOSE_FORBIDDEN]: "Your account may not view tasks (it needs the conductor.view_task permission).",
};

export function connLabel(conn, nowMs) {
  if (conn.state === "connecting") return "connecting…";
  if (conn.state === "reconnecting") {
    const wait = conn.retryAt ? Math.max(0, Math.ceil((conn.retryAt - nowMs) / 1000)) : 0;
    const closed = conn.code ? ` (closed ${conn.code})` : "";
    return conn.retryAt ? `reconnecting in ${wait} s${closed}` : `reconnecting…${closed}`;
  }
  if (conn.state === "closed") return FINAL_LABELS[conn.code] ?? `closed (${conn.code})`;
  return conn.state;
}

export function renderHeader(state) {
  const indicator = byTestId("conn-status");
  const { conn } = state;
  setAttr(indicator, "data-state", conn.state);
  setText(indicator, connLabel(conn, Date.now()));
  byTestId("signed-out").hidden = !(conn.state === "closed" && conn.code === CLOSE_SIGNED_OUT);
  setAttr(indicator, "title", (conn.state === "closed" && CLOSED_TITLES[conn.code]) || "Live connection to the runner's events");
  const who = state.user.name ? `${state.user.name}${state.user.can_change ? "" : " (read-only)"}` : "";
  setText(byTestId("user-name"), who);

  const banner = byTestId("live-banner");
  banner.hidden = state.live.ok !== false;
  setText(banner, state.live.ok === false ? state.live.reason : "");

  const flash = byTestId("flash");
  const flashing = state.flash && state.flash.until > Date.now();
  flash.hidden = !flashing;
  flash.classList.toggle("error", Boolean(flashing && state.flash.error));
  setText(flash, flashing ? state.flash.text : "");
}
