// The console's locations, kept in the URL fragment so that reloads and the back
// button work: #/browse[/<bucket>/<prefix>], #/cluster, #/metrics.

export const VIEWS = ["browse", "cluster", "metrics"];
const DEFAULT_VIEW = "browse";

function decode(part) {
  try {
    return decodeURIComponent(part || "");
  } catch {
    return "";
  }
}

/** {view, bucket, prefix} of a location hash. */
export function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/");
  const view = VIEWS.includes(parts[0]) ? parts[0] : DEFAULT_VIEW;
  return { view, bucket: decode(parts[1]), prefix: decode(parts.slice(2).join("/")) };
}

export function browseHash(bucket = "", prefix = "") {
  if (!bucket) return "#/browse";
  return `#/browse/${encodeURIComponent(bucket)}/${encodeURIComponent(prefix)}`;
}
