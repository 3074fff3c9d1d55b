//! Health, metrics, cluster status, node stats and token minting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::ApiState;

type AppRouter = Router<Arc<ApiState>>;

/// Routes that need no credentials.
pub fn public_routes() -> AppRouter {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/auth/token", post(crate::auth::mint_token))
}

pub fn authed_routes() -> AppRouter {
    Router::new()
        .route("/cluster", get(cluster))
        .route(
            "/cluster/nodes/{id}/decommission",
            post(crate::cluster_admin::decommission),
        )
        .route(
            "/cluster/nodes/{id}/remove",
            post(crate::cluster_admin::remove),
        )
        .route("/cluster/quorum", put(crate::cluster_admin::set_quorum))
        .route("/stats", get(crate::stats::stats))
}

async fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable"})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let text = state.metrics.render(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn cluster(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.service.cluster().status()).into_response()
}
