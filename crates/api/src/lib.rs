//! The HTTP APIs of a node: the REST API, health, cluster status and Prometheus metrics.
//! This is the only crate that knows HTTP and JSON. Requests are parsed into typed calls
//! on the object service; errors are mapped to status codes and S3 error codes in one
//! place ([`error`]).

pub mod auth;
mod body;
pub mod error;
mod metrics;
mod observe;
mod range;
mod rest;
pub mod s3;
mod system;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use bucketdb_object::ObjectService;
use tokio::net::TcpListener;

pub use auth::{Credentials, TOKEN_TTL_SECS};
pub use metrics::Metrics;

/// Everything a request handler can reach.
pub struct ApiState {
    pub service: Arc<ObjectService>,
    pub credentials: Credentials,
    pub metrics: Metrics,
    /// False while starting up and while draining for shutdown.
    pub ready: AtomicBool,
}

impl ApiState {
    pub fn new(service: Arc<ObjectService>, credentials: Credentials) -> Arc<Self> {
        Arc::new(ApiState {
            service,
            credentials,
            metrics: Metrics::new(),
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The whole HTTP application (no socket), so tests can drive it directly.
pub fn router(state: Arc<ApiState>) -> Router {
    let authed =
        rest::routes()
            .merge(system::authed_routes())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_auth,
            ));
    Router::new()
        .merge(system::public_routes())
        .merge(authed)
        .fallback(rest::not_found)
        .method_not_allowed_fallback(rest::method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// Serve `app` (the REST router or the S3 router) on `listener` until `shutdown`
/// resolves; in-flight requests finish before this returns.
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serve the HTTP API on `listener` until `shutdown` resolves; in-flight requests finish
/// before this returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
