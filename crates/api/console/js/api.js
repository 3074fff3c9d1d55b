// The REST API as the console uses it. Requests carry the session cookie (same origin)
// and the console header the server requires of cookie-authenticated changes.

export const CONSOLE_HEADER = "X-BucketDB-Console";
export const CONSOLE_HEADER_VALUE = "1";
/** Sent on a 401: the session expired or was logged out elsewhere. */
export const UNAUTHENTICATED_EVENT = "bucketdb:unauthenticated";
const USER_META_PREFIX = "x-amz-meta-";

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId || "";
  }
}

/** A key's path segments percent-encoded, its slashes kept. */
export function encodeKey(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

export function objectUrl(bucket, key, versionId) {
  const base = `/objects/${encodeURIComponent(bucket)}/${encodeKey(key)}`;
  return versionId ? `${base}?versionId=${encodeURIComponent(versionId)}` : base;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The error a failed response describes (JSON `{"error": {...}}` when it has one). */
export async function errorFrom(response) {
  let code = `HTTP${response.status}`;
  let message = `${response.status} ${response.statusText || "error"}`;
  let requestId = response.headers.get("x-request-id") || "";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      requestId = body.error.requestId || requestId;
    }
  } catch {
    // Not JSON (a proxy's page, an empty HEAD response): keep the status line.
  }
  return new ApiError(response.status, code, message, requestId);
}

/** fetch() with the console header; network failures become ApiErrors too. */
export async function send(method, path, { json, headers = {}, body } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { [CONSOLE_HEADER]: CONSOLE_HEADER_VALUE, ...headers },
  };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "NetworkError", `The server cannot be reached (${err.message}).`, "");
  }
  if (response.status === 401 && !path.startsWith("/console/session")) {
    window.dispatchEvent(new CustomEvent(UNAUTHENTICATED_EVENT));
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function call(method, path, options) {
  const response = await send(method, path, options);
  if (response.status === 204 || method === "HEAD") return null;
  return response.json();
}

/** Details of an object from its HEAD response headers. */
function objectInfo(headers) {
  const metadata = [];
  headers.forEach((value, name) => {
    if (name.startsWith(USER_META_PREFIX)) metadata.push([name.slice(USER_META_PREFIX.length), value]);
  });
  metadata.sort((a, b) => a[0].localeCompare(b[0]));
  return {
    size: Number(headers.get("content-length")),
    etag: (headers.get("etag") || "").replaceAll('"', ""),
    sha256: headers.get("x-bucketdb-sha256") || "",
    contentType: headers.get("content-type") || "",
    lastModified: headers.get("last-modified") || "",
    versionId: headers.get("x-bucketdb-version-id") || "",
    metadata,
  };
}

export const api = {
  session: () => call("GET", "/console/session"),
  login: (accessKey, secretKey) => call("POST", "/console/session", { json: { accessKey, secretKey } }),
  logout: () => call("DELETE", "/console/session"),

  cluster: () => call("GET", "/cluster"),
  stats: () => call("GET", "/stats"),

  buckets: async () => (await call("GET", "/buckets")).buckets,
  createBucket: (name) => call("PUT", `/buckets/${encodeURIComponent(name)}`),
  deleteBucket: (name) => call("DELETE", `/buckets/${encodeURIComponent(name)}`),
  /** {name, createdAt, versioning, publicRead, lifecycleRules (a count)}. */
  bucket: (name) => call("GET", `/buckets/${encodeURIComponent(name)}`),
  setVersioning: (name, status) => call("PUT", `/versioning/${encodeURIComponent(name)}`, { json: { status } }),
  setPublicRead: (name, publicRead) => call("PUT", `/acl/${encodeURIComponent(name)}`, { json: { publicRead } }),
  /** The bucket's lifecycle rules ([] when it has none). */
  lifecycle: async (name) => {
    try {
      return (await call("GET", `/lifecycle/${encodeURIComponent(name)}`)).rules;
    } catch (err) {
      if (err.code === "NoSuchLifecycleConfiguration") return [];
      throw err;
    }
  },
  setLifecycle: (name, rules) =>
    rules.length
      ? call("PUT", `/lifecycle/${encodeURIComponent(name)}`, { json: { rules } })
      : call("DELETE", `/lifecycle/${encodeURIComponent(name)}`),

  /** One page of a listing: {objects, prefixes, nextCursor}. */
  list: (bucket, { prefix = "", delimiter = "/", cursor = "", limit }) =>
    call("GET", `/objects/${encodeURIComponent(bucket)}${query({ prefix, delimiter, cursor, limit })}`),
  head: async (bucket, key) => objectInfo((await send("HEAD", objectUrl(bucket, key))).headers),
  deleteObject: (bucket, key, versionId) => call("DELETE", objectUrl(bucket, key, versionId)),
  tags: (bucket, key) => call("GET", `${objectUrl(bucket, key)}?tags`),
  setTags: (bucket, key, tags) =>
    Object.keys(tags).length
      ? call("PUT", `${objectUrl(bucket, key)}/tags`, { json: tags })
      : call("DELETE", `${objectUrl(bucket, key)}?tags`),
  versions: (bucket, key) => call("GET", `/versions/${encodeURIComponent(bucket)}/${encodeKey(key)}`),
  restoreVersion: (bucket, key, versionId) =>
    call("POST", `/versions/${encodeURIComponent(bucket)}/${encodeKey(key)}${query({ versionId })}`),
};
