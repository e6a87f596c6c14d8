// The charts panel of the dashboard: polls api/charts every POLL_MS while the page is visible and redraws
// the three SVG charts when data comes or the queue chosen changes. The first answer brings the queue
// depth's last hour as runners sampled it; later ones only the samples since (``since``), and the page
// adds its own polls in between (charts.addDepth). Independent of the socket: the database is the source.

import * as charts from "./charts.js";
import { byTestId, getJson, setOptions, setText } from "./lib/dom.js";
import { drawDepth, drawDurations, drawRunsPerMinute } from "./render/charts.js";

export const POLL_MS = 5000;

export function startCharts(base) {
  const select = byTestId("chart-queue");
  let answer = null;
  let depth = [];

  const draw = () => {
    if (!answer) return;
    setOptions(select, [[charts.ALL, "all queues"], ...charts.queuesOf(answer).map((queue) => [queue, queue])]);
    drawRunsPerMinute(byTestId("chart-runs"), charts.perMinute(answer, select.value));
    drawDepth(byTestId("chart-depth"), charts.depthOf(depth, select.value));
    drawDurations(byTestId("chart-durations"), charts.durations(answer));
  };

  const poll = async () => {
    if (document.visibilityState === "visible") {
      const since = charts.sampledUntil(depth);
      const got = await getJson(`${base}api/charts${since === null ? "" : `?since=${since.toFixed(6)}`}`);
      setText(byTestId("chart-error"), got.error ?? "");
      if (!got.error) {
        answer = got;
        depth = charts.addDepth(depth, got);
        draw();
      }
    }
    setTimeout(poll, POLL_MS);
  };
  select.addEventListener("change", draw);
  poll();
}
