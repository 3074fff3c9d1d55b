// The cluster view: ring version, replication settings, data movement and every node
// with its state, liveness, ring share, disk and objects (GET /cluster).

import { api } from "./api.js";
import { errorText, h, replace } from "./dom.js";
import { formatAgo, formatBytes, formatCount, formatPercent } from "./format.js";
import { poll } from "./poll.js";

/** How often the view refreshes. */
const CLUSTER_POLL_MS = 5000;

function card(label, value, detail) {
  return h(
    "div",
    { class: "card stat" },
    h("div", { class: "stat-label", text: label }),
    h("div", { class: "stat-value", text: value }),
    detail ? h("div", { class: "stat-detail", text: detail }) : null,
  );
}

function meter(fraction, label) {
  const bar = h("progress", { class: "meter", max: 1, "aria-label": label });
  bar.value = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  return bar;
}

/** Data movement: progress bars while rebalancing or repairing, "idle" otherwise. */
function movement(status) {
  const rows = [
    ["Rebalancing", status.rebalancing],
    ["Repair", status.repair],
  ].filter(([, v]) => v !== null && v !== undefined);
  if (!rows.length) return card("Rebalancing / repair", "Idle", "no data is moving");
  return h(
    "div",
    { class: "card stat" },
    h("div", { class: "stat-label", text: "Rebalancing / repair" }),
    rows.map(([name, fraction]) =>
      h(
        "div",
        { class: "movement" },
        h("span", { text: `${name} ${formatPercent(fraction)}` }),
        meter(fraction, `${name} progress`),
      ),
    ),
  );
}

function badge(text, kind) {
  return h("span", { class: `badge badge-${kind}`, text });
}

const LIVENESS_KIND = { alive: "ok", suspect: "warn", down: "bad" };
const STATE_KIND = { active: "ok", joining: "info", draining: "warn", removed: "bad" };

function nodeRow(node, nowMs) {
  const total = node.diskTotalBytes || 0;
  const used = node.diskUsedBytes || 0;
  return h(
    "tr",
    { dataset: { node: node.id } },
    h("td", { "data-label": "Node" }, h("div", { class: "mono", text: node.id }), h("div", { class: "muted", text: node.address })),
    h("td", { "data-label": "State" }, badge(node.state || "unknown", STATE_KIND[node.state] || "info")),
    h("td", { "data-label": "Liveness" }, badge(node.liveness || "unknown", LIVENESS_KIND[node.liveness] || "info"),
      h("div", { class: "muted", text: `heartbeat ${formatAgo(node.lastHeartbeatMs, nowMs)}` })),
    h("td", { "data-label": "Ring share", class: "num", text: formatPercent(node.ringShare) }),
    h("td", { "data-label": "Disk" },
      meter(total ? used / total : 0, `disk used on ${node.id}`),
      h("div", { class: "muted", text: `${formatBytes(used)} used · ${formatBytes(node.diskFreeBytes)} free` })),
    h("td", { "data-label": "Objects held", class: "num", text: formatCount(node.objectCount) }),
  );
}

function render(root, status) {
  const nodes = [...(status.nodes || [])].sort((a, b) => a.id.localeCompare(b.id));
  const alive = nodes.filter((n) => n.liveness === "alive").length;
  const rf = status.replicationFactor;
  const configured = status.configuredReplicationFactor;
  const nowMs = Math.max(Date.now(), ...nodes.map((n) => n.lastHeartbeatMs || 0));
  replace(
    root,
    h(
      "div",
      { class: "cards" },
      card("Nodes", `${alive} / ${nodes.length} alive`, nodes.length === 1 ? "single node" : `${nodes.length} members`),
      card("Ring version", String(status.ringVersion ?? "—")),
      card(
        "Replication factor",
        String(rf ?? "—"),
        configured && configured !== rf ? `configured ${configured}, capped at the node count` : "copies of each object",
      ),
      card(
        "Write mode",
        status.quorumRequired ? "Quorum" : "Async",
        status.quorumRequired
          ? `waits for ${Math.floor((rf || 1) / 2) + 1} of ${rf} copies, ${status.replicationTimeoutMs} ms at most`
          : "acknowledged once the primary is durable",
      ),
      movement(status),
    ),
    h(
      "div",
      { class: "card" },
      h("h2", { text: "Nodes" }),
      h(
        "table",
        { class: "table responsive", id: "nodes" },
        h("thead", {}, h("tr", {}, ["Node", "State", "Liveness", "Ring share", "Disk", "Objects held"].map((c) => h("th", { text: c })))),
        h("tbody", {}, nodes.map((n) => nodeRow(n, nowMs))),
      ),
    ),
  );
}

/** Mount the view; returns its stop function. */
export function mountCluster(root) {
  const body = h("div", { class: "cluster" }, h("p", { class: "muted", text: "Loading cluster status…" }));
  const error = h("p", { class: "form-error", role: "alert" });
  root.replaceChildren(
    h("section", { class: "page" }, h("div", { class: "page-head" }, h("h1", { text: "Cluster" })), error, body),
  );
  return poll(async () => {
    try {
      render(body, await api.cluster());
      error.textContent = "";
    } catch (err) {
      error.textContent = `Cannot load the cluster status: ${errorText(err)}`;
    }
  }, CLUSTER_POLL_MS);
}
