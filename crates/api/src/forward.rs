//! Coordinator forwarding. A request that changes one key (an upload, a delete, a tag
//! change, any multipart step) is served by the key's coordinator: its first replica
//! that is not down (`Cluster::coordinator`). Every change to a key then meets the
//! same node, whose metadata transaction checks conditions and orders versions, so
//! conditional writes and read-modify-write changes cannot lose updates, and a
//! multipart upload can be driven through any node.
//!
//! The whole HTTP request travels unchanged (method, URI, headers, streamed body)
//! inside a cluster-signed envelope to the coordinator's `/internal/forward`, which
//! replays it on its own S3 or REST application. The coordinator checks the client's
//! own credentials (SigV4 signs the original method, path and host, all kept), and
//! the answer streams back as it is. A forwarded request is never forwarded again.
//!
//! When the coordinator cannot be reached before anything was sent, this node
//! coordinates the request itself, as it did before it knew of the coordinator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bucketdb_cluster::membership::Membership;
use bucketdb_cluster::membership::network::{PATH_FORWARD, Transport};
use bucketdb_cluster::membership::sign::{HEADER_DATE, HEADER_NODE, HEADER_SIGNATURE};
use bucketdb_cluster::replication::UploadHolder;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::ApiState;
use crate::error::ApiError;
use crate::transport::CONNECT_TIMEOUT;

/// Which application a forwarded request is replayed on.
const HEADER_API: &str = "x-bucketdb-forward-api";
/// The client's method and URI (path and query) while the envelope is in transit.
const HEADER_METHOD: &str = "x-bucketdb-forward-method";
const HEADER_URI: &str = "x-bucketdb-forward-uri";
/// Idle connections kept open to each coordinator.
const POOL_PER_PEER: usize = 16;
/// How much longer than the replication timeout (the coordinator's own quorum wait) a
/// node waits for the coordinator's answer once the whole request was sent. A peer
/// that vanished is noticed sooner by the connection itself (keepalive, see
/// `Transport::dial`); this bounds a coordinator that is reachable but never answers.
/// Generous, because a server-side copy of a large object (up to 5 GiB) answers only
/// when the copy is done.
const FORWARD_ANSWER_SPARE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Connection headers a client may have signed (SigV4 lists them in SignedHeaders):
/// carried through the envelope under other names and restored on replay, so the
/// coordinator checks the signature over what the client sent.
const CARRIED: [(HeaderName, &str); 2] = [
    (header::EXPECT, "x-bucketdb-forward-expect"),
    (
        header::TRANSFER_ENCODING,
        "x-bucketdb-forward-transfer-encoding",
    ),
];

/// Headers about one connection, not the request: never passed on.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
];

/// The application a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    S3,
    Rest,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::S3 => "s3",
            Api::Rest => "rest",
        }
    }

    fn parse(s: &str) -> Option<Api> {
        match s {
            "s3" => Some(Api::S3),
            "rest" => Some(Api::Rest),
            _ => None,
        }
    }

    /// The answer when the coordinator failed after the request was handed to it; a
    /// 503, which clients retry.
    fn unavailable(self, reason: &str) -> Response {
        let message = format!("the key's coordinator did not answer: {reason}");
        match self {
            Api::Rest => ApiError::ClusterUnavailable(message).into_response(),
            Api::S3 => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/xml")],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code><Message>{}</Message></Error>",
                    xml_escape(&message)
                ),
            )
                .into_response(),
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Marks a request replayed from an envelope: it is served here, whatever this node
/// thinks of the key's coordinator.
#[derive(Clone, Copy, Debug)]
struct Forwarded;

/// The two applications a forwarded request can be replayed on (set once the server
/// has built them).
pub struct ForwardTargets {
    pub s3: axum::Router,
    pub rest: axum::Router,
}

/// Open connections to coordinators, reused so forwarding small writes does not cost a
/// TCP handshake (and a TIME_WAIT socket) each.
#[derive(Default)]
pub struct ForwardPool {
    idle: Mutex<HashMap<String, Vec<SendRequest<Body>>>>,
}

impl ForwardPool {
    /// A pooled connection to `address` that can take a request now.
    fn checkout(&self, address: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(address)?;
        list.retain(|s| !s.is_closed());
        let at = list.iter().position(SendRequest::is_ready)?;
        Some(list.swap_remove(at))
    }

    /// Keep `sender` for later requests (it becomes ready once its answer is read).
    fn checkin(&self, address: &str, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(address.to_string()).or_default();
        list.retain(|s| !s.is_closed());
        if list.len() < POOL_PER_PEER {
            list.push(sender);
        }
    }
}

async fn connect(transport: &dyn Transport, address: &str) -> Result<SendRequest<Body>, String> {
    let stream = transport
        .dial(address, CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "forwarding connection ended with an error");
        }
    });
    Ok(sender)
}

/// What the envelope's signature covers besides the date: the application and the
/// client's method and URI.
fn signed_text(api: &str, method: &str, uri: &str) -> String {
    format!("{api}\n{method}\n{uri}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Wrap the client's request for `/internal/forward`, signed as from this node.
fn envelope(signer: Option<&Membership>, api: Api, req: Request) -> Request {
    let (mut parts, body) = req.into_parts();
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let method = parts.method.as_str().to_string();
    let mut headers = std::mem::take(&mut parts.headers);
    for (name, carried) in &CARRIED {
        if let Some(v) = headers.get(name).cloned() {
            headers.insert(*carried, v);
        }
    }
    strip_hop_by_hop(&mut headers);
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(HEADER_API, api.as_str());
    set(HEADER_METHOD, &method);
    set(HEADER_URI, &uri);
    if let Some(m) = signer {
        let text = signed_text(api.as_str(), &method, &uri);
        for (name, value) in m.secret().sign(
            m.node_id(),
            "POST",
            PATH_FORWARD,
            unix_now(),
            text.as_bytes(),
        ) {
            set(name, &value);
        }
    }
    parts.headers = headers;
    parts.method = Method::POST;
    parts.uri = Uri::from_static(PATH_FORWARD);
    Request::from_parts(parts, body)
}

/// The client's request back out of an envelope (checked by the caller), marked as
/// forwarded.
fn unwrap_envelope(envelope: Request) -> Result<(Api, Request), String> {
    let (mut parts, body) = envelope.into_parts();
    let api = header_str(&parts.headers, HEADER_API)
        .and_then(Api::parse)
        .ok_or("the envelope names no application")?;
    let method = header_str(&parts.headers, HEADER_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or("the envelope names no method")?;
    let uri = header_str(&parts.headers, HEADER_URI)
        .and_then(|u| u.parse::<Uri>().ok())
        .ok_or("the envelope names no URI")?;
    for name in [
        HEADER_API,
        HEADER_METHOD,
        HEADER_URI,
        HEADER_NODE,
        HEADER_DATE,
        HEADER_SIGNATURE,
    ] {
        parts.headers.remove(name);
    }
    for (name, carried) in &CARRIED {
        if let Some(v) = parts.headers.remove(*carried) {
            parts.headers.insert(name.clone(), v);
        }
    }
    parts.method = method;
    parts.uri = uri;
    parts.extensions.insert(Forwarded);
    Ok((api, Request::from_parts(parts, body)))
}

/// How handing a request to its coordinator went.
enum Handoff {
    Answered(Response),
    /// Nothing was sent: the request comes back to be served here.
    Unreachable(Request),
    /// The coordinator took the request but gave no answer.
    Failed(String),
}

async fn hand_to(
    membership: &Membership,
    state: &ApiState,
    api: Api,
    address: &str,
    req: Request,
) -> Handoff {
    let transport = membership.client().transport().clone();
    let (req, sent) = notify_when_sent(req);
    let answer_within =
        std::time::Duration::from_millis(state.service.cluster().replication_timeout_ms())
            + FORWARD_ANSWER_SPARE;
    let mut envelope = envelope(Some(membership), api, req);
    // A pooled connection may have been closed by the peer meanwhile; then one fresh
    // connection is tried before giving up on the coordinator.
    let mut pooled = state.forward_pool.checkout(address);
    loop {
        let reused = pooled.is_some();
        let mut sender = match pooled.take() {
            Some(s) => s,
            None => match connect(&*transport, address).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%address, error = %e, "coordinator unreachable");
                    return match unwrap_envelope(envelope) {
                        Ok((_, req)) => Handoff::Unreachable(req),
                        Err(e) => Handoff::Failed(e),
                    };
                }
            },
        };
        let deadline = answer_deadline(sent.clone(), answer_within);
        let answer = tokio::select! {
            answer = sender.try_send_request(envelope) => answer,
            () = deadline => {
                return Handoff::Failed(format!(
                    "the coordinator gave no answer within {answer_within:?} of the request"
                ));
            }
        };
        match answer {
            Ok(resp) => {
                state.forward_pool.checkin(address, sender);
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Handoff::Answered(Response::from_parts(parts, Body::new(body)));
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => envelope = unsent,
                Some(unsent) => {
                    return match unwrap_envelope(unsent) {
                        Ok((_, req)) => Handoff::Unreachable(req),
                        Err(e) => Handoff::Failed(e),
                    };
                }
                None => return Handoff::Failed(e.into_error().to_string()),
            },
        }
    }
}

/// A request body that reports (on the returned channel) once it has been read to the
/// end, that is, once the whole request was sent on.
struct SentSignal {
    inner: Body,
    sent: tokio::sync::watch::Sender<bool>,
}

impl http_body::Body for SentSignal {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling a body of known length after its last byte, so the end
        // is also taken from `is_end_stream`.
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.sent.send_replace(true);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            self.sent.send_replace(true);
        }
        ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn notify_when_sent(req: Request) -> (Request, tokio::sync::watch::Receiver<bool>) {
    let (parts, body) = req.into_parts();
    let (sent, rx) = tokio::sync::watch::channel(http_body::Body::is_end_stream(&body));
    let body = Body::new(SentSignal { inner: body, sent });
    (Request::from_parts(parts, body), rx)
}

/// Resolves `within` after the request was sent in full (or its body was dropped).
async fn answer_deadline(
    mut sent: tokio::sync::watch::Receiver<bool>,
    within: std::time::Duration,
) {
    let _ = sent.wait_for(|done| *done).await;
    tokio::time::sleep(within).await;
}

/// Serve `req`, which changes `bucket/key`, at the key's coordinator.
pub(crate) async fn coordinate(
    state: &ApiState,
    api: Api,
    bucket: &str,
    key: &str,
    req: Request,
    next: Next,
) -> Response {
    if req.extensions().get::<Forwarded>().is_some() {
        return next.run(req).await;
    }
    let cluster = state.service.cluster();
    let Some(membership) = cluster.membership() else {
        return next.run(req).await;
    };
    // A step of a multipart upload goes to the node holding the upload's parts.
    let holder = upload_id_of(req.uri()).map(|id| (cluster.upload_holder(&id), id));
    if let Some((UploadHolder::Here, _)) = holder {
        return next.run(req).await;
    }
    if let Some((UploadHolder::Peer(peer, address), id)) = holder {
        return match hand_to(membership, state, api, &address, req).await {
            Handoff::Answered(resp) => {
                state.metrics.record_forwarded();
                resp
            }
            Handoff::Unreachable(_) => {
                api.unavailable(&format!("{peer}, which holds upload {id}, is unreachable"))
            }
            Handoff::Failed(reason) => api.unavailable(&reason),
        };
    }
    let mut req = req;
    for (peer, address) in cluster.coordinators(bucket, key) {
        match hand_to(membership, state, api, &address, req).await {
            Handoff::Answered(resp) => {
                state.metrics.record_forwarded();
                return resp;
            }
            // Not reachable: the next replica in line coordinates.
            Handoff::Unreachable(back) => req = back,
            Handoff::Failed(reason) => {
                tracing::warn!(%peer, %reason, "forwarded request failed at its coordinator");
                return api.unavailable(&reason);
            }
        }
    }
    next.run(req).await
}

/// The `uploadId` query parameter, if the request has one.
fn upload_id_of(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "uploadId")
        .map(|(_, v)| v.into_owned())
}

/// REST routes that change one key: uploads, deletes and tag changes of
/// `/objects/B/K`, restores through `/versions/B/K`, and every multipart step.
fn rest_key_change(method: &Method, uri: &Uri) -> Option<(String, String)> {
    let family = uri.path().trim_start_matches('/').split('/').next()?;
    let changes = match family {
        "objects" => [Method::POST, Method::PUT, Method::DELETE].contains(method),
        "versions" => *method == Method::POST,
        "multipart" => true,
        _ => false,
    };
    if !changes {
        return None;
    }
    let target = crate::rest::target(uri, family).ok()?;
    let key = target.key?;
    // `PUT /objects/B/K/tags` changes the tags of K.
    let key = match (family, method) {
        ("objects", &Method::PUT) => key.strip_suffix(crate::rest::TAGS_SUFFIX)?.to_string(),
        _ => key,
    };
    Some((target.bucket, key))
}

/// Middleware on the REST routes (inside authentication, so the coordinator only ever
/// sees requests this node accepted too).
pub(crate) async fn coordinate_rest(
    State(state): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    match rest_key_change(req.method(), req.uri()) {
        Some((bucket, key)) => coordinate(&state, Api::Rest, &bucket, &key, req, next).await,
        None => next.run(req).await,
    }
}

/// `POST /internal/forward`: check the envelope's signature, then serve the client's
/// request here.
pub(crate) async fn receive(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let refuse = |status: StatusCode, code: &str, message: String| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
        )
            .into_response()
    };
    let Some(membership) = state.service.cluster().membership() else {
        return refuse(
            StatusCode::FORBIDDEN,
            "ClusterDisabled",
            "this node is not part of a cluster".into(),
        );
    };
    let h = req.headers();
    let text = signed_text(
        header_str(h, HEADER_API).unwrap_or(""),
        header_str(h, HEADER_METHOD).unwrap_or(""),
        header_str(h, HEADER_URI).unwrap_or(""),
    );
    if req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "internal routes take POST".into(),
        );
    }
    if let Err(e) = membership.verify(
        "POST",
        PATH_FORWARD,
        header_str(h, HEADER_DATE),
        header_str(h, HEADER_SIGNATURE),
        text.as_bytes(),
    ) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidClusterSignature",
            e.to_string(),
        );
    }
    let (api, req) = match unwrap_envelope(req) {
        Ok(x) => x,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let Some(app) = state.forward_target(api) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotReady",
            "this node is starting or stopping".into(),
        );
    };
    match tower::ServiceExt::oneshot(app, req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_key_changes_are_recognised() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let change = |m: Method, u: &str| rest_key_change(&m, &uri(u));
        let bk = |b: &str, k: &str| Some((b.to_string(), k.to_string()));
        assert_eq!(change(Method::POST, "/objects/b/a%20b/c"), bk("b", "a b/c"));
        assert_eq!(change(Method::PUT, "/objects/b/d/k/tags"), bk("b", "d/k"));
        assert_eq!(change(Method::DELETE, "/objects/b/k?tags"), bk("b", "k"));
        assert_eq!(change(Method::DELETE, "/objects/b/k"), bk("b", "k"));
        assert_eq!(change(Method::GET, "/objects/b/k"), None);
        assert_eq!(change(Method::HEAD, "/objects/b/k"), None);
        assert_eq!(
            change(Method::POST, "/versions/b/k?versionId=1"),
            bk("b", "k")
        );
        assert_eq!(change(Method::GET, "/versions/b/k"), None);
        assert_eq!(
            change(Method::GET, "/multipart/b/k?uploadId=u"),
            bk("b", "k")
        );
        assert_eq!(change(Method::POST, "/objects/b"), None);
        assert_eq!(change(Method::PUT, "/buckets/b"), None);
    }

    #[test]
    fn an_envelope_unwraps_to_the_original_request() {
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/bucket/a%2Fb?tagging")
            .header(header::HOST, "node-a:8080")
            .header(header::AUTHORIZATION, "AWS4-HMAC-SHA256 Credential=x")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::empty())
            .unwrap();
        let env = envelope(None, Api::S3, req);
        assert_eq!(env.uri().path(), PATH_FORWARD);
        assert_eq!(env.method(), Method::POST);
        assert!(env.headers().get(header::TRANSFER_ENCODING).is_none());
        let (api, back) = unwrap_envelope(env).unwrap();
        assert_eq!(api, Api::S3);
        assert_eq!(back.method(), Method::PUT);
        assert_eq!(back.uri(), "/bucket/a%2Fb?tagging");
        assert_eq!(back.headers()[header::HOST], "node-a:8080");
        assert!(back.headers().get(header::AUTHORIZATION).is_some());
        // Signed connection headers come back as the client sent them.
        assert_eq!(back.headers()[header::TRANSFER_ENCODING], "chunked");
        assert!(back.headers().get(HEADER_URI).is_none());
        assert!(back.extensions().get::<Forwarded>().is_some());
    }
}
