// Formatting of sizes, rates, times and durations for display.

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const KIBI = 1024;

/** 1536 → "1.5 KiB". */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= KIBI && unit < BYTE_UNITS.length - 1) {
    value /= KIBI;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** A count with thousands separators. */
export function formatCount(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  return Math.round(n).toLocaleString();
}

/** Requests per second and the like: two significant digits below 10. */
export function formatRate(n, unit = "/s") {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  const digits = n === 0 || n >= 10 ? 0 : n >= 1 ? 1 : 2;
  return `${n.toFixed(digits)}${unit}`;
}

export function formatBytesRate(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  return `${formatBytes(n)}/s`;
}

/** Seconds → "0.8 ms", "12 ms", "1.2 s". */
export function formatSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  const ms = s * 1000;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  return `${s.toFixed(1)} s`;
}

export function formatPercent(fraction) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return "—";
  return `${(fraction * 100).toFixed(fraction < 0.1 && fraction > 0 ? 1 : 0)}%`;
}

/** An ISO date or epoch milliseconds in the reader's locale. */
export function formatDate(value) {
  if (value === null || value === undefined || value === "") return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

/** A compact date and time for tables ("28 Nov 2026, 08:16"). */
export function formatShortDate(value) {
  if (value === null || value === undefined || value === "") return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** How long ago `ms` (epoch milliseconds) was, relative to `nowMs`. */
export function formatAgo(ms, nowMs = Date.now()) {
  if (!Number.isFinite(ms) || ms <= 0) return "never";
  const secs = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (secs < 2) return "just now";
  if (secs < 120) return `${secs} s ago`;
  if (secs < 7200) return `${Math.round(secs / 60)} min ago`;
  return `${Math.round(secs / 3600)} h ago`;
}

/** The last segment of a key or prefix ("a/b/c.txt" → "c.txt", "a/b/" → "b/"). */
export function baseName(path) {
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;
  const name = trimmed.slice(trimmed.lastIndexOf("/") + 1);
  return path.endsWith("/") ? `${name}/` : name;
}

/** A long hex id shortened for tables ("0192f3…a1b2"). */
export function shortId(id, keep = 8) {
  if (!id || id.length <= keep * 2 + 1) return id || "";
  return `${id.slice(0, keep)}…${id.slice(-4)}`;
}
