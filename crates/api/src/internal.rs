//! `/internal/*`: node-to-node routes (raft RPCs, joins, heartbeats). Every request must
//! carry a valid cluster signature (see `bucketdb_cluster::membership::sign`); nothing
//! here is reachable with the root credentials or without a cluster.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bucketdb_cluster::membership::network::{
    MAX_INTERNAL_REQUEST_BYTES, PATH_CHUNK, PATH_DELETE, PATH_DIGESTS, PATH_FORWARD,
    PATH_HEARTBEAT, PATH_JOIN, PATH_LIST, PATH_LOOKUP, PATH_RAFT_APPEND, PATH_RAFT_SNAPSHOT,
    PATH_RAFT_VOTE, PATH_RANGE_SUMMARY, PATH_REPLICATE, PATH_RING, PATH_UPLOADS, PeerError,
};
use bucketdb_cluster::membership::sign::{HEADER_DATE, HEADER_SIGNATURE};
use bucketdb_cluster::membership::{Heartbeat, JoinRequest, MembershipError, RingRequest};
use http_body_util::BodyExt;
use serde_json::json;

use crate::ApiState;

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        // Forwarded client requests stream their bodies, so they skip the buffered path.
        .route(PATH_FORWARD, any(crate::forward::receive))
        .route("/internal/{*rest}", any(internal))
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message.to_string()}}).to_string(),
    )
        .into_response()
}

fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn binary(body: impl Into<axum::body::Body>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        body.into(),
    )
        .into_response()
}

/// The answer to a data request (replication, lookups, chunks, ...): its bytes, or an
/// error the sender retries on later.
fn data_reply<B: Into<axum::body::Body>, E: std::fmt::Display>(result: Result<B, E>) -> Response {
    match result {
        Ok(bytes) => binary(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "internal data request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e)
        }
    }
}

fn membership_error(e: &MembershipError) -> Response {
    let (status, code) = match e {
        MembershipError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        MembershipError::NoLeader => (StatusCode::SERVICE_UNAVAILABLE, "NoLeader"),
        MembershipError::Refused(_) => (StatusCode::CONFLICT, "Refused"),
        MembershipError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
        MembershipError::Peer(PeerError::Unauthorized { .. }) => {
            (StatusCode::BAD_GATEWAY, "PeerRefusedSignature")
        }
        // A forwarded request the leader refused or found malformed: the caller gets the
        // leader's answer, so it knows retrying cannot help.
        MembershipError::Peer(PeerError::Status { status: 400, .. }) => {
            (StatusCode::BAD_REQUEST, "BadRequest")
        }
        MembershipError::Peer(PeerError::Status { status: 409, .. }) => {
            (StatusCode::CONFLICT, "Refused")
        }
        MembershipError::Peer(_) => (StatusCode::BAD_GATEWAY, "PeerUnavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "internal request failed");
    }
    error(status, code, e)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Length of an HMAC-SHA256 signature in hex.
const SIGNATURE_HEX_LEN: usize = 64;

async fn internal(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let Some(membership) = state.service.cluster().membership().cloned() else {
        return error(
            StatusCode::FORBIDDEN,
            "ClusterDisabled",
            "this node is not part of a cluster",
        );
    };
    let (parts, body) = req.into_parts();
    // Requests that cannot be signed are refused before their body is read.
    let looks_signed = header_str(&parts.headers, HEADER_DATE).is_some()
        && header_str(&parts.headers, HEADER_SIGNATURE).is_some_and(|s| {
            s.len() == SIGNATURE_HEX_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
        });
    if !looks_signed {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidClusterSignature",
            "internal requests must carry the cluster's date and signature headers",
        );
    }
    let path = parts.uri.path().to_string();
    let body = match http_body_util::Limited::new(body, MAX_INTERNAL_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BodyTooLarge",
                format!(
                    "internal request bodies are limited to {MAX_INTERNAL_REQUEST_BYTES} bytes"
                ),
            );
        }
    };
    if let Err(e) = membership.verify(
        parts.method.as_str(),
        &path,
        header_str(&parts.headers, HEADER_DATE),
        header_str(&parts.headers, HEADER_SIGNATURE),
        &body,
    ) {
        return error(StatusCode::UNAUTHORIZED, "InvalidClusterSignature", e);
    }
    if parts.method != axum::http::Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "internal routes take POST",
        );
    }
    let result = match path.as_str() {
        PATH_RAFT_APPEND => membership.raft_append(&body).await,
        PATH_RAFT_VOTE => membership.raft_vote(&body).await,
        PATH_RAFT_SNAPSHOT => membership.raft_snapshot(&body).await,
        PATH_HEARTBEAT => match serde_json::from_slice::<Heartbeat>(&body) {
            Ok(hb) => serde_json::to_vec(&membership.handle_heartbeat(&hb))
                .map_err(|e| MembershipError::Raft(e.to_string())),
            Err(e) => Err(MembershipError::BadRequest(e.to_string())),
        },
        PATH_RING => match serde_json::from_slice::<RingRequest>(&body) {
            Ok(req) => membership.handle_ring_request(req).await.and_then(|r| {
                serde_json::to_vec(&r).map_err(|e| MembershipError::Raft(e.to_string()))
            }),
            Err(e) => Err(MembershipError::BadRequest(e.to_string())),
        },
        PATH_JOIN => match serde_json::from_slice::<JoinRequest>(&body) {
            Ok(req) => membership.handle_join(req).await.and_then(|r| {
                serde_json::to_vec(&r).map_err(|e| MembershipError::Raft(e.to_string()))
            }),
            Err(e) => Err(MembershipError::BadRequest(e.to_string())),
        },
        PATH_REPLICATE => return data_reply(state.service.apply_replicated(&body).await),
        PATH_LOOKUP => return data_reply(state.service.answer_lookup(&body)),
        PATH_DELETE => return data_reply(state.service.answer_remote_delete(&body).await),
        PATH_UPLOADS => return data_reply(state.service.answer_uploads(&body)),
        PATH_LIST => return data_reply(state.service.answer_list(&body)),
        PATH_DIGESTS => return data_reply(state.service.answer_digests(&body)),
        PATH_RANGE_SUMMARY => return data_reply(state.service.answer_range_summary(&body)),
        PATH_CHUNK => return data_reply(state.service.cluster().serve_chunk(&body).await),
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "no such internal route"),
    };
    match result {
        Ok(bytes) => json_bytes(bytes),
        Err(e) => membership_error(&e),
    }
}
