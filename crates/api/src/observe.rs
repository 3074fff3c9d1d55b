//! Per-request observability: a trace id (echoed as `x-request-id`), one structured log
//! line and the request metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

use crate::ApiState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const AMZ_REQUEST_ID_HEADER: &str = "x-amz-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
    /// The S3 operation and bucket s3s resolved for the request being handled, once it
    /// has.
    static S3_OPERATION: std::cell::RefCell<Option<(&'static str, Option<String>)>>;
}

/// The S3 operations metrics and logs name. A fixed list keeps the label's values
/// bounded; any other operation keeps its method-based name.
const S3_OPERATION_NAMES: &[&str] = &[
    "ListBuckets",
    "CreateBucket",
    "HeadBucket",
    "DeleteBucket",
    "GetBucketLocation",
    "GetBucketVersioning",
    "PutBucketVersioning",
    "GetBucketLifecycleConfiguration",
    "PutBucketLifecycleConfiguration",
    "DeleteBucketLifecycle",
    "PutObject",
    "GetObject",
    "HeadObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "ListMultipartUploads",
    "UploadPartCopy",
    "PutBucketAcl",
    "GetBucketAcl",
    "GetBucketTagging",
    "PutBucketTagging",
    "DeleteBucketTagging",
    "GetBucketCors",
    "PutBucketCors",
    "DeleteBucketCors",
];

/// Record which S3 operation, on which bucket, the current request is (called once s3s
/// knows).
pub fn note_s3_operation(name: &str, bucket: Option<&str>) {
    if let Some(known) = S3_OPERATION_NAMES.iter().find(|n| **n == name) {
        let _ = S3_OPERATION
            .try_with(|op| *op.borrow_mut() = Some((known, bucket.map(str::to_string))));
    }
}

/// REST paths whose second segment is a bucket name.
const REST_BUCKET_FAMILIES: &[&str] = &[
    "objects",
    "versions",
    "buckets",
    "multipart",
    "lifecycle",
    "versioning",
    "acl",
];

/// The bucket a REST request addresses, if any (as sent, percent-encoded).
fn rest_bucket(path: &str) -> Option<String> {
    let mut parts = path.trim_start_matches('/').split('/');
    let family = parts.next()?;
    let bucket = parts.next().filter(|b| !b.is_empty())?;
    REST_BUCKET_FAMILIES
        .contains(&family)
        .then(|| bucket.to_string())
}

/// The trace id of the request being handled (empty outside one).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

fn new_request_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn content_length(h: &axum::http::HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The operation a request performs, for logs and metrics.
pub fn operation(method: &Method, path: &str, query: &str) -> &'static str {
    let family = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let has = |q: &str| {
        query
            .split('&')
            .any(|p| p == q || p.starts_with(&format!("{q}=")))
    };
    let depth = path.trim_start_matches('/').splitn(3, '/').count();
    match (family, method.as_str()) {
        ("objects", "POST") => "PutObject",
        ("objects", "PUT") => "PutObjectTagging",
        ("objects", "GET") if has("tags") => "GetObjectTagging",
        ("objects", "DELETE") if has("tags") => "DeleteObjectTagging",
        ("objects", "GET") if depth <= 2 => "ListObjects",
        ("objects", "GET") => "GetObject",
        ("objects", "HEAD") => "HeadObject",
        ("objects", "DELETE") => "DeleteObject",
        ("versions", "POST") => "RestoreObjectVersion",
        ("versions", _) => "ListObjectVersions",
        ("versioning", "PUT") => "PutBucketVersioning",
        ("versioning", _) => "GetBucketVersioning",
        ("lifecycle", "PUT") => "PutBucketLifecycle",
        ("lifecycle", "DELETE") => "DeleteBucketLifecycle",
        ("lifecycle", _) => "GetBucketLifecycle",
        ("multipart", "POST") if has("partNumber") => "UploadPart",
        ("multipart", "POST") => "CreateMultipartUpload",
        ("multipart", "PUT") => "CompleteMultipartUpload",
        ("multipart", "DELETE") => "AbortMultipartUpload",
        ("multipart", _) => "ListParts",
        ("buckets", "GET") if depth <= 1 => "ListBuckets",
        ("buckets", "PUT") => "CreateBucket",
        ("buckets", "DELETE") => "DeleteBucket",
        ("buckets", _) => "HeadBucket",
        ("acl", "PUT") => "PutBucketAcl",
        ("acl", _) => "GetBucketAcl",
        ("auth", _) => "CreateToken",
        ("health", _) => "Health",
        ("cluster", _) => "ClusterStatus",
        ("metrics", _) => "Metrics",
        ("stats", _) => "NodeStats",
        ("internal", _) => internal_operation(path),
        ("", "GET" | "HEAD") => "Console",
        ("console", "POST") if path.starts_with("/console/session") => "ConsoleLogin",
        ("console", "DELETE") if path.starts_with("/console/session") => "ConsoleLogout",
        ("console", _) => "Console",
        _ => "Unknown",
    }
}

/// Node-to-node calls, named by route so `/metrics` shows what peers ask of a node.
fn internal_operation(path: &str) -> &'static str {
    use bucketdb_cluster::membership::network as net;
    match path {
        net::PATH_REPLICATE => "InternalReplicate",
        net::PATH_CHUNK => "InternalChunk",
        net::PATH_DIGESTS => "InternalDigests",
        net::PATH_RANGE_SUMMARY => "InternalRangeSummary",
        net::PATH_LOOKUP => "InternalLookup",
        net::PATH_DELETE => "InternalDelete",
        net::PATH_UPLOADS => "InternalUploads",
        net::PATH_FORWARD => "InternalForward",
        net::PATH_HEARTBEAT => "InternalHeartbeat",
        net::PATH_JOIN => "InternalJoin",
        net::PATH_RING => "InternalRing",
        net::PATH_RAFT_APPEND | net::PATH_RAFT_VOTE | net::PATH_RAFT_SNAPSHOT => "InternalRaft",
        _ => "Internal",
    }
}

pub async fn observe(state: State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let op = operation(
        req.method(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
    );
    observe_as("rest", op, state, req, next).await
}

/// The S3 API's operation names come from s3s once it has parsed the request; until
/// then (requests refused before that) the log and metrics use the method.
pub async fn observe_s3(state: State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let op = match *req.method() {
        Method::GET => "S3Get",
        Method::PUT => "S3Put",
        Method::POST => "S3Post",
        Method::DELETE => "S3Delete",
        Method::HEAD => "S3Head",
        _ => "S3Other",
    };
    observe_as("s3", op, state, req, next).await
}

async fn observe_as(
    api: &'static str,
    op: &'static str,
    State(state): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = new_request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let bytes_in = content_length(req.headers());
    let (mut resp, resolved) = REQUEST_ID
        .scope(
            id.clone(),
            S3_OPERATION.scope(std::cell::RefCell::new(None), async {
                let resp = next.run(req).await;
                (resp, S3_OPERATION.with(|op| op.borrow_mut().take()))
            }),
        )
        .await;
    let (op, bucket) = match resolved {
        Some((op, bucket)) => (op, bucket),
        None if api == "rest" => (op, rest_bucket(&path)),
        None => (op, None),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
        if api == "s3" {
            resp.headers_mut().insert(AMZ_REQUEST_ID_HEADER, v);
        }
    }
    let status = resp.status().as_u16();
    let bytes_out = http_body::Body::size_hint(resp.body())
        .exact()
        .unwrap_or_else(|| content_length(resp.headers()));
    let elapsed = started.elapsed();
    state
        .metrics
        .record_request(api, op, status, elapsed.as_secs_f64(), bytes_in, bytes_out);
    // Node-to-node traffic (raft, heartbeats: several a second) is logged only when it
    // fails; its volume shows in the metrics.
    let routine = op == "Health" || op == "Metrics" || (op.starts_with("Internal") && status < 400);
    if !routine {
        tracing::info!(
            target: "bucketdb::request",
            trace_id = %id,
            node = %state.service.cluster().node().id,
            api,
            method = %method,
            path = %path,
            operation = op,
            bucket = bucket.as_deref().unwrap_or(""),
            status,
            bytes_in,
            bytes_out,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
    resp
}
