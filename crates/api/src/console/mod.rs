//! The built-in web console: the page and its assets (embedded, unauthenticated) and the
//! session endpoints that log a browser in with an HttpOnly cookie. Everything the
//! console shows or changes goes through the REST API with that cookie.

mod assets;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::ApiState;

pub use assets::ASSETS_PREFIX;
pub use session::{
    CONSOLE_HEADER, CONSOLE_HEADER_VALUE, MAX_REVOKED_SESSIONS, SESSION_COOKIE, SESSION_TTL_SECS,
    Session, Sessions, authenticate_session,
};

/// Routes that need no credentials: the page, its assets and logging in and out.
pub fn public_routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/", get(assets::index))
        .route("/console/assets/{*path}", get(assets::asset))
        .route(
            "/console/session",
            get(session::status)
                .post(session::login)
                .delete(session::logout),
        )
}
