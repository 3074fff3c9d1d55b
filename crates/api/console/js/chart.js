// Small line charts drawn as SVG: one or two series over the last samples.

import { h, svg } from "./dom.js";

const WIDTH = 240;
const HEIGHT = 56;
/** Headroom above the highest point, so a flat line does not hug the top edge. */
const HEADROOM = 1.15;

/**
 * A chart of `series` ([{values, label, className}]) where missing values (null) leave
 * gaps; `format` renders the scale's maximum. `capacity` is the number of samples the
 * x axis holds, so the line grows from the right as samples arrive.
 */
export function lineChart(series, { capacity, format = String, label = "" }) {
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const top = Math.max(0, ...all);
  const max = top > 0 ? top * HEADROOM : 1;
  const step = WIDTH / Math.max(1, capacity - 1);
  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": label,
  });
  chart.append(svg("line", { class: "chart-grid", x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5 }));
  for (const s of series) {
    const offset = capacity - s.values.length;
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        chart.append(svg("polyline", { class: `chart-line ${s.className || ""}`, points: run.join(" ") }));
      } else if (run.length === 1) {
        const [x, y] = run[0].split(",");
        chart.append(svg("circle", { class: `chart-dot ${s.className || ""}`, cx: x, cy: y, r: 1.5 }));
      }
      run = [];
    };
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) return flush();
      const x = ((offset + i) * step).toFixed(1);
      const y = (HEIGHT - (v / max) * (HEIGHT - 2) - 1).toFixed(1);
      run.push(`${x},${y}`);
      return undefined;
    });
    flush();
  }
  const legend = series.length > 1
    ? h(
        "div",
        { class: "chart-legend" },
        series.map((s) => h("span", { class: `legend ${s.className || ""}`, text: s.label })),
      )
    : null;
  return h(
    "figure",
    { class: "chart-box" },
    h("span", { class: "chart-max", text: `max ${format(top)}` }),
    chart,
    legend,
  );
}
