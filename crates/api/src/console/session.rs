//! Console sessions: `POST /console/session` checks the key pair and sets an HttpOnly,
//! SameSite=Strict cookie carrying a signed, expiring token; the REST API accepts that
//! cookie where it accepts HTTP Basic or a bearer token. Requests that change anything
//! must also carry `X-BucketDB-Console: 1`, which a cross-site form cannot send and a
//! cross-origin script cannot send without a CORS preflight this API never grants.
//! `DELETE /console/session` clears the cookie and revokes its token on this node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Credentials, now_unix};
use crate::body::read_json;
use crate::error::{ApiError, ApiResult};
use crate::{ApiState, auth};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "bucketdb_session";
/// The header every state-changing console request carries (value [`CONSOLE_HEADER_VALUE`]).
pub const CONSOLE_HEADER: &str = "x-bucketdb-console";
pub const CONSOLE_HEADER_VALUE: &str = "1";
/// How long a console session lasts.
pub const SESSION_TTL_SECS: u64 = 8 * 60 * 60;
/// First field of a session token's payload (bearer tokens start with another, so neither
/// kind is accepted as the other).
const SESSION_VERSION: &str = "s1";
/// Random bytes that make each session's token unique, so one can be revoked.
const NONCE_BYTES: usize = 16;
/// Most logged-out sessions remembered until they expire anyway.
pub const MAX_REVOKED_SESSIONS: usize = 4096;
/// Longest `Cookie` header considered.
const COOKIE_HEADER_MAX_BYTES: usize = 8192;

/// A verified session.
#[derive(Debug)]
pub struct Session {
    pub access_key: String,
    pub expires_at: u64,
    nonce: String,
}

/// Sessions logged out before they expired: nonce → expiry (unix seconds).
#[derive(Debug, Default)]
pub struct Sessions {
    revoked: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    fn revoked(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_revoked(&self, nonce: &str) -> bool {
        self.revoked().contains_key(nonce)
    }

    /// Remember `session` as logged out until it expires. When the list is full, expired
    /// entries go first, then the ones closest to expiring.
    fn revoke(&self, session: &Session, now: u64) {
        let mut revoked = self.revoked();
        if revoked.len() >= MAX_REVOKED_SESSIONS {
            revoked.retain(|_, exp| *exp > now);
        }
        while revoked.len() >= MAX_REVOKED_SESSIONS {
            let Some(soonest) = revoked
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            revoked.remove(&soonest);
        }
        revoked.insert(session.nonce.clone(), session.expires_at);
    }
}

impl Credentials {
    /// A session token for this key pair, valid until `expires_unix`.
    pub fn mint_session(&self, expires_unix: u64, nonce: &str) -> ApiResult<String> {
        self.seal(&format!(
            "{SESSION_VERSION}:{}:{expires_unix}:{nonce}",
            self.access_key
        ))
    }

    /// The session a token stands for, if it is genuine and not expired.
    pub fn verify_session(&self, token: &str, now_unix: u64) -> ApiResult<Session> {
        let payload = self.unseal(token).map_err(|_| ApiError::InvalidSession)?;
        let mut parts = payload.splitn(4, ':');
        let (Some(SESSION_VERSION), Some(ak), Some(exp), Some(nonce)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiError::InvalidSession);
        };
        let expires_at: u64 = exp.parse().map_err(|_| ApiError::InvalidSession)?;
        if ak != self.access_key || expires_at <= now_unix {
            return Err(ApiError::InvalidSession);
        }
        Ok(Session {
            access_key: ak.to_string(),
            expires_at,
            nonce: nonce.to_string(),
        })
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter(|v| v.len() <= COOKIE_HEADER_MAX_BYTES)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The request's live session, if its cookie carries one.
fn current_session(state: &ApiState, headers: &HeaderMap) -> Option<ApiResult<Session>> {
    let token = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty())?;
    Some(
        state
            .credentials
            .verify_session(token, now_unix(state))
            .and_then(|s| {
                if state.sessions.is_revoked(&s.nonce) {
                    Err(ApiError::InvalidSession)
                } else {
                    Ok(s)
                }
            }),
    )
}

fn require_console_header(headers: &HeaderMap) -> ApiResult<()> {
    match headers.get(CONSOLE_HEADER) {
        Some(v) if v == CONSOLE_HEADER_VALUE => Ok(()),
        _ => Err(ApiError::ConsoleHeaderMissing),
    }
}

/// Authentication by session cookie for the REST API: `None` for a request that is not
/// the console's (no cookie, no console header); an error for a bad, expired, revoked or
/// missing session, or for a state-changing request without the console header. (A
/// console request without a session gets `InvalidSession`, not the `WWW-Authenticate:
/// Basic` challenge, which would make the browser pop up its own login dialog.)
pub fn authenticate_session(
    state: &ApiState,
    method: &Method,
    headers: &HeaderMap,
) -> Option<ApiResult<()>> {
    let Some(session) = current_session(state, headers) else {
        return headers
            .contains_key(CONSOLE_HEADER)
            .then_some(Err(ApiError::InvalidSession));
    };
    Some(session.and_then(|_| {
        if method.is_safe() {
            Ok(())
        } else {
            require_console_header(headers)
        }
    }))
}

/// `Set-Cookie` for `token` (empty to clear), `Secure` when the client reached us over
/// HTTPS through a proxy that says so.
fn set_cookie(headers: &HeaderMap, token: &str, max_age: u64) -> ApiResult<HeaderValue> {
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn new_nonce() -> String {
    let mut b = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginRequest {
    access_key: String,
    secret_key: String,
}

/// `POST /console/session` `{"accessKey","secretKey"}`: log in.
pub async fn login(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    require_console_header(&headers)?;
    let creds: LoginRequest = read_json(body).await?;
    state
        .credentials
        .check(&creds.access_key, &creds.secret_key)?;
    let expires_at = now_unix(&state) + SESSION_TTL_SECS;
    let token = state.credentials.mint_session(expires_at, &new_nonce())?;
    let cookie = set_cookie(&headers, &token, SESSION_TTL_SECS)?;
    let body = json!({"accessKey": state.credentials.access_key, "expiresAt": expires_at});
    Ok(no_store(
        ([(header::SET_COOKIE, cookie)], Json(body)).into_response(),
    ))
}

/// `GET /console/session`: whether the cookie carries a live session (always `200`, so
/// the console's first request logs no error before anyone logged in).
pub async fn status(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let body = match current_session(&state, &headers) {
        Some(Ok(s)) => {
            json!({"authenticated": true, "accessKey": s.access_key, "expiresAt": s.expires_at})
        }
        _ => json!({"authenticated": false}),
    };
    no_store(Json(body).into_response())
}

/// `DELETE /console/session`: log out (clear the cookie, revoke its token).
pub async fn logout(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult<Response> {
    require_console_header(&headers)?;
    if let Some(Ok(session)) = current_session(&state, &headers) {
        state.sessions.revoke(&session, auth::now_unix(&state));
    }
    let cookie = set_cookie(&headers, "", 0)?;
    Ok(no_store(
        (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::creds;

    #[test]
    fn sessions_verify_until_they_expire_and_are_not_bearer_tokens() {
        let c = creds();
        let t = c.mint_session(1000, "n1").unwrap();
        let s = c.verify_session(&t, 999).unwrap();
        assert_eq!((s.access_key.as_str(), s.expires_at), ("AK", 1000));
        assert!(c.verify_session(&t, 1000).is_err());
        assert!(
            c.verify_token(&t, 10).is_err(),
            "a session is no bearer token"
        );
        let bearer = c.mint_token(1000).unwrap();
        assert!(c.verify_session(&bearer, 10).is_err(), "nor the reverse");
        let other = Credentials {
            secret_key: "other".into(),
            ..creds()
        };
        assert!(other.verify_session(&t, 10).is_err());
    }

    #[test]
    fn the_revocation_list_stays_bounded() {
        let sessions = Sessions::default();
        let c = creds();
        for i in 0..MAX_REVOKED_SESSIONS as u64 + 10 {
            let t = c.mint_session(100 + i, &format!("n{i}")).unwrap();
            sessions.revoke(&c.verify_session(&t, 0).unwrap(), 0);
        }
        assert_eq!(sessions.revoked().len(), MAX_REVOKED_SESSIONS);
        let newest = format!("n{}", MAX_REVOKED_SESSIONS as u64 + 9);
        assert!(sessions.is_revoked(&newest));
        assert!(
            !sessions.is_revoked("n0"),
            "the soonest to expire went first"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bucketdb_session=tok.en; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok.en"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
