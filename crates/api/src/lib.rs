//! The HTTP APIs of a node: the REST API, health, cluster status and Prometheus metrics.
//! This is the only crate that knows HTTP and JSON. Requests are parsed into typed calls
//! on the object service; errors are mapped to status codes and S3 error codes in one
//! place ([`error`]).

pub mod auth;
mod body;
mod cluster_admin;
pub mod console;
pub mod error;
pub mod forward;
mod internal;
mod metrics;
mod observe;
mod range;
mod rest;
pub mod s3;
mod stats;
mod system;
pub mod transport;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use bucketdb_object::ObjectService;
use tokio::net::TcpListener;

pub use auth::{Credentials, TOKEN_TTL_SECS};
pub use metrics::{LATENCY_BUCKETS_SECS, Metrics};

/// Everything a request handler can reach.
pub struct ApiState {
    pub service: Arc<ObjectService>,
    pub credentials: Credentials,
    pub metrics: Metrics,
    /// Console sessions logged out before they expired.
    pub sessions: console::Sessions,
    /// False while starting up and while draining for shutdown.
    pub ready: AtomicBool,
    /// Connections to the coordinators of keys this node forwards changes to.
    pub forward_pool: forward::ForwardPool,
    /// Where requests forwarded here are replayed: set once the server built its
    /// applications, cleared at shutdown (the applications hold this state).
    forward_targets: std::sync::Mutex<Option<forward::ForwardTargets>>,
}

impl ApiState {
    pub fn new(service: Arc<ObjectService>, credentials: Credentials) -> Arc<Self> {
        Arc::new(ApiState {
            service,
            credentials,
            metrics: Metrics::new(),
            sessions: console::Sessions::default(),
            ready: AtomicBool::new(false),
            forward_pool: forward::ForwardPool::default(),
            forward_targets: std::sync::Mutex::new(None),
        })
    }

    /// Set (or, with `None` at shutdown, drop) the applications forwarded requests are
    /// replayed on.
    pub fn set_forward_targets(&self, targets: Option<forward::ForwardTargets>) {
        *self
            .forward_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = targets;
    }

    fn forward_target(&self, api: forward::Api) -> Option<Router> {
        let targets = self
            .forward_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        targets.as_ref().map(|t| match api {
            forward::Api::S3 => t.s3.clone(),
            forward::Api::Rest => t.rest.clone(),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The whole HTTP application (no socket), so tests can drive it directly.
pub fn router(state: Arc<ApiState>) -> Router {
    let authed = rest::routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::coordinate_rest,
        ))
        .merge(system::authed_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ));
    Router::new()
        .merge(system::public_routes())
        .merge(console::public_routes())
        // Node-to-node routes authenticate with the cluster signature, not root keys.
        .merge(internal::routes())
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

/// A client must send its request head within this time, so idle or slow connections
/// cannot pile up (or hold a shutdown open).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Serve `app` (the REST router or the S3 router) on `listener` until `shutdown`
/// resolves; in-flight requests finish before this returns. HTTP/1.1 with keep-alive and
/// a header-read timeout.
/// HTTP/1 on one open connection, answered by `app`.
pub fn http1_connection<S>(
    stream: S,
    app: Router,
) -> hyper::server::conn::http1::Connection<
    hyper_util::rt::TokioIo<S>,
    hyper_util::service::TowerToHyperService<Router>,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(app),
        )
}

pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::server::graceful::GracefulShutdown;

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = graceful.watch(http1_connection(stream, app.clone()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Stop accepting before draining, so new connections are refused at once.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serve the HTTP API on `listener` until `shutdown` resolves; in-flight requests finish
/// before this returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(listener, router(state), shutdown).await
}
