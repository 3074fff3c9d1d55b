// Node metrics, refreshed live: disk, objects, request rate, latency, throughput and
// background work, from successive GET /stats snapshots (rates are differences).

import { api } from "./api.js";
import { lineChart } from "./chart.js";
import { errorText, h, replace } from "./dom.js";
import { formatBytes, formatBytesRate, formatCount, formatRate, formatSeconds } from "./format.js";
import { poll } from "./poll.js";

/** How often a snapshot is taken. */
const METRICS_POLL_MS = 3000;
/** Samples kept for the charts (three minutes at the poll interval). */
const HISTORY_POINTS = 60;
const P99 = 0.99;

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/** Totals over every API (REST and S3) of one snapshot. */
function totals(stats) {
  const apis = Object.values(stats.requests || {});
  const width = (stats.latencyBoundsSecs || []).length + 1;
  return {
    requests: sum(apis.map((t) => t.requests)),
    errors: sum(apis.map((t) => t.clientErrors + t.serverErrors)),
    serverErrors: sum(apis.map((t) => t.serverErrors)),
    bytesIn: sum(apis.map((t) => t.bytesIn)),
    bytesOut: sum(apis.map((t) => t.bytesOut)),
    duration: sum(apis.map((t) => t.durationSecondsSum)),
    latency: Array.from({ length: width }, (_, i) => sum(apis.map((t) => t.latencyCounts[i] || 0))),
  };
}

/** The q-quantile of a histogram (bucket counts with upper `bounds`), interpolated. */
function quantile(counts, bounds, q) {
  const total = sum(counts);
  if (!total) return null;
  const target = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i += 1) {
    if (counts[i] && seen + counts[i] >= target) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const low = i === 0 ? 0 : bounds[i - 1];
      return low + (bounds[i] - low) * ((target - seen) / counts[i]);
    }
    seen += counts[i];
  }
  return bounds[bounds.length - 1];
}

/** Rates between two snapshots (null where the counters went backwards: a restart). */
function derive(prev, cur) {
  const dt = (cur.timeMs - prev.timeMs) / 1000;
  const a = totals(prev);
  const b = totals(cur);
  if (dt <= 0 || b.requests < a.requests) return null;
  const dReq = b.requests - a.requests;
  const dLatency = b.latency.map((c, i) => c - (a.latency[i] || 0));
  const background = (s) => s.gc.chunksDeleted + s.lifecycle.expired + s.lifecycle.noncurrentDeleted;
  return {
    requests: dReq / dt,
    errors: (b.errors - a.errors) / dt,
    bytesIn: (b.bytesIn - a.bytesIn) / dt,
    bytesOut: (b.bytesOut - a.bytesOut) / dt,
    avgLatency: dReq ? (b.duration - a.duration) / dReq : null,
    p99Latency: quantile(dLatency, cur.latencyBoundsSecs || [], P99),
    gcDeleted: (cur.gc.chunksDeleted - prev.gc.chunksDeleted) / dt,
    lifecycleRemoved: (cur.lifecycle.expired + cur.lifecycle.noncurrentDeleted
      - prev.lifecycle.expired - prev.lifecycle.noncurrentDeleted) / dt,
    background: (background(cur) - background(prev)) / dt,
    objects: cur.objects,
  };
}

function statCard(label, value, detail, chart, id) {
  return h(
    "div",
    { class: "card stat metric", dataset: id ? { metric: id } : {} },
    h("div", { class: "stat-label", text: label }),
    h("div", { class: "stat-value", text: value }),
    detail ? h("div", { class: "stat-detail", text: detail }) : null,
    chart,
  );
}

function diskCard(disk) {
  if (!disk) return statCard("Disk", "—", "this node is not in the cluster status");
  const bar = h("progress", { class: "meter", max: 1, "aria-label": "disk used" });
  bar.value = disk.totalBytes ? disk.usedBytes / disk.totalBytes : 0;
  return h(
    "div",
    { class: "card stat metric", dataset: { metric: "disk" } },
    h("div", { class: "stat-label", text: "Disk (storage path)" }),
    h("div", { class: "stat-value", text: `${formatBytes(disk.usedBytes)} used` }),
    bar,
    h("div", { class: "stat-detail", text: `${formatBytes(disk.freeBytes)} free of ${formatBytes(disk.totalBytes)}` }),
  );
}

function countsTable(title, rows) {
  return h(
    "div",
    { class: "card" },
    h("h2", { text: title }),
    h(
      "table",
      { class: "table compact" },
      h("tbody", {}, rows.map(([label, value, alarm]) =>
        h("tr", { class: alarm ? "alarm" : null }, h("th", { scope: "row", text: label }), h("td", { class: "num", text: formatCount(value) })))),
    ),
  );
}

function apiTable(stats, rate) {
  const rows = Object.entries(stats.requests || {}).map(([name, t]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row", text: name === "rest" ? "REST + console" : name.toUpperCase() }),
      h("td", { class: "num", "data-label": "Requests", text: formatCount(t.requests) }),
      h("td", { class: "num", "data-label": "Errors", text: formatCount(t.clientErrors + t.serverErrors) }),
      h("td", { class: "num", "data-label": "In", text: formatBytes(t.bytesIn) }),
      h("td", { class: "num", "data-label": "Out", text: formatBytes(t.bytesOut) }),
      h("td", { class: "num", "data-label": "Avg latency", text: t.requests ? formatSeconds(t.durationSecondsSum / t.requests) : "—" }),
    ));
  return h(
    "div",
    { class: "card" },
    h("h2", { text: "Requests by API (since start)" }),
    h(
      "table",
      { class: "table responsive" },
      h("thead", {}, h("tr", {}, ["API", "Requests", "Errors", "In", "Out", "Avg latency"].map((c) => h("th", { text: c })))),
      h("tbody", {}, rows),
    ),
    rate ? null : h("p", { class: "muted", text: "Rates appear after the second sample." }),
  );
}

function render(root, stats, points) {
  const last = points[points.length - 1];
  const series = (name) => points.map((p) => (p ? p[name] : null));
  const chart = (parts, format, label) =>
    lineChart(parts.map(([name, text, className]) => ({ values: series(name), label: text, className })), {
      capacity: HISTORY_POINTS,
      format,
      label,
    });
  replace(
    root,
    h("p", { class: "muted" }, `Node `, h("span", { class: "mono", id: "metrics-node", text: stats.nodeId }),
      ` · refreshed every ${METRICS_POLL_MS / 1000} s · ${stats.ready ? "ready" : "not ready"}`),
    h(
      "div",
      { class: "cards metrics-grid" },
      diskCard(stats.disk),
      statCard("Objects on this node", formatCount(stats.objects), `current versions held here (each key is on ${stats.replicationFactor} nodes) · ${formatBytes(stats.storedBytes ?? 0)} stored here (all versions)`, chart([["objects", "objects"]], formatCount, "objects over time"), "objects"),
      statCard(
        "Requests",
        last ? formatRate(last.requests, " req/s") : "…",
        last ? `${formatRate(last.errors, " errors/s")}` : "collecting",
        chart([["requests", "req/s"]], (v) => formatRate(v, "/s"), "request rate"),
        "requests",
      ),
      statCard(
        "Latency",
        last && last.avgLatency !== null ? `${formatSeconds(last.avgLatency)} avg` : "…",
        last && last.p99Latency !== null ? `p99 ${formatSeconds(last.p99Latency)}` : "no requests in the interval",
        chart([["avgLatency", "avg", "series-a"], ["p99Latency", "p99", "series-b"]], formatSeconds, "latency"),
        "latency",
      ),
      statCard(
        "Throughput",
        last ? `${formatBytesRate(last.bytesIn)} in` : "…",
        last ? `${formatBytesRate(last.bytesOut)} out` : "collecting",
        chart([["bytesIn", "in", "series-a"], ["bytesOut", "out", "series-b"]], formatBytesRate, "bytes in and out"),
        "throughput",
      ),
      statCard(
        "Background work",
        last ? formatRate(last.background, " items/s") : "…",
        "GC chunk deletions and lifecycle removals",
        chart([["gcDeleted", "GC", "series-a"], ["lifecycleRemoved", "lifecycle", "series-b"]], (v) => formatRate(v), "background work"),
        "background",
      ),
    ),
    h(
      "div",
      { class: "cards tables" },
      countsTable("Garbage collection", [
        ["Passes", stats.gc.runs],
        ["Chunks deleted", stats.gc.chunksDeleted],
        ["Orphan chunk files swept", stats.gc.orphansSwept],
        ["Abandoned uploads cleaned", stats.gc.uploadsAbandoned],
      ]),
      countsTable("Lifecycle", [
        ["Passes", stats.lifecycle.runs],
        ["Objects expired", stats.lifecycle.expired],
        ["Noncurrent versions deleted", stats.lifecycle.noncurrentDeleted],
        ["Multipart uploads aborted", stats.lifecycle.uploadsAborted],
      ]),
      countsTable("Chunks", [
        ["Written", stats.chunks.written],
        ["Deleted", stats.chunks.deleted],
        ["Failed SHA-256 verification", stats.chunks.verifyFailures, stats.chunks.verifyFailures > 0],
      ]),
    ),
    apiTable(stats, last),
  );
}

/** Mount the view; returns its stop function. */
export function mountMetrics(root) {
  const body = h("div", { class: "metrics" }, h("p", { class: "muted", text: "Loading node metrics…" }));
  const error = h("p", { class: "form-error", role: "alert" });
  root.replaceChildren(
    h("section", { class: "page" }, h("div", { class: "page-head" }, h("h1", { text: "Node metrics" })), error, body),
  );
  let previous = null;
  const points = [];
  return poll(async () => {
    try {
      const stats = await api.stats();
      if (previous) {
        points.push(derive(previous, stats));
        if (points.length > HISTORY_POINTS) points.shift();
      }
      previous = stats;
      render(body, stats, points);
      error.textContent = "";
    } catch (err) {
      error.textContent = `Cannot load the node's metrics: ${errorText(err)}`;
    }
  }, METRICS_POLL_MS);
}
