//! Authentication of the REST API and dashboard: HTTP Basic with the access/secret key,
//! or a bearer token minted by `POST /auth/token` and signed with the secret key.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ApiState;
use crate::body::read_json;
use crate::error::{ApiError, ApiResult};

/// How long a minted token stays valid.
pub const TOKEN_TTL_SECS: u64 = 12 * 60 * 60;
/// Longest Authorization header considered.
const AUTH_HEADER_MAX_BYTES: usize = 4096;
const TOKEN_VERSION: &str = "v1";

/// The root key pair. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub(crate) fn check(&self, access_key: &str, secret_key: &str) -> ApiResult<()> {
        if !bool::from(access_key.as_bytes().ct_eq(self.access_key.as_bytes())) {
            return Err(ApiError::InvalidAccessKeyId);
        }
        if !bool::from(secret_key.as_bytes().ct_eq(self.secret_key.as_bytes())) {
            return Err(ApiError::SignatureDoesNotMatch);
        }
        Ok(())
    }

    fn sign(&self, payload: &str) -> ApiResult<Vec<u8>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret_key.as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        mac.update(payload.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// `payload` and its HMAC under the secret key, as `base64(payload).base64(mac)`.
    pub(crate) fn seal(&self, payload: &str) -> ApiResult<String> {
        let sig = self.sign(payload)?;
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig)
        ))
    }

    /// The payload of a token made by [`Credentials::seal`] with this secret key.
    pub(crate) fn unseal(&self, token: &str) -> ApiResult<String> {
        let (p, s) = token.split_once('.').ok_or(ApiError::InvalidToken)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(ApiError::InvalidToken)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| ApiError::InvalidToken)?;
        if !bool::from(self.sign(&payload)?.ct_eq(&sig)) {
            return Err(ApiError::InvalidToken);
        }
        Ok(payload)
    }

    /// A token for `access_key` valid until `expires_unix`.
    pub fn mint_token(&self, expires_unix: u64) -> ApiResult<String> {
        self.seal(&format!(
            "{TOKEN_VERSION}:{}:{expires_unix}",
            self.access_key
        ))
    }

    pub fn verify_token(&self, token: &str, now_unix: u64) -> ApiResult<()> {
        let payload = self.unseal(token)?;
        let mut parts = payload.splitn(3, ':');
        let (Some(TOKEN_VERSION), Some(ak), Some(exp)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiError::InvalidToken);
        };
        let exp: u64 = exp.parse().map_err(|_| ApiError::InvalidToken)?;
        if ak != self.access_key || exp <= now_unix {
            return Err(ApiError::InvalidToken);
        }
        Ok(())
    }
}

pub(crate) fn now_unix(state: &ApiState) -> u64 {
    state.service.now_ms() / 1000
}

fn basic_credentials(value: &str) -> ApiResult<(String, String)> {
    let decoded = STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(ApiError::MissingCredentials)?;
    let (ak, sk) = decoded
        .split_once(':')
        .ok_or(ApiError::MissingCredentials)?;
    Ok((ak.to_string(), sk.to_string()))
}

/// Check the request's credentials.
pub fn authenticate(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let value = headers
        .get(header::AUTHORIZATION)
        .filter(|v| v.len() <= AUTH_HEADER_MAX_BYTES)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::MissingCredentials)?;
    let (scheme, rest) = value.split_once(' ').ok_or(ApiError::MissingCredentials)?;
    if scheme.eq_ignore_ascii_case("basic") {
        let (ak, sk) = basic_credentials(rest)?;
        state.credentials.check(&ak, &sk)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        state.credentials.verify_token(rest.trim(), now_unix(state))
    } else {
        Err(ApiError::MissingCredentials)
    }
}

/// Middleware: nothing behind it runs without valid credentials (an `Authorization`
/// header or, without one, the console's session cookie), except reads of objects in
/// buckets switched to public-read.
pub async fn require_auth(
    State(state): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let has_authorization = req.headers().contains_key(header::AUTHORIZATION);
    let outcome = if has_authorization {
        authenticate(&state, req.headers())
    } else {
        crate::console::authenticate_session(&state, req.method(), req.headers())
            .unwrap_or(Err(ApiError::MissingCredentials))
    };
    match outcome {
        Ok(()) => next.run(req).await,
        Err(_) if !has_authorization && public_read(&state, &req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// An anonymous GET or HEAD of `/objects/<bucket>/<key>` where the bucket is public-read.
fn public_read(state: &ApiState, req: &Request) -> bool {
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        return false;
    }
    let Some((bucket, key)) = req
        .uri()
        .path()
        .strip_prefix("/objects/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    !key.is_empty()
        && state
            .service
            .bucket_config(bucket)
            .is_ok_and(|c| c.public_read)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    access_key: String,
    secret_key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    token: String,
    expires_at: u64,
}

/// `POST /auth/token`: credentials as HTTP Basic or as JSON `{accessKey, secretKey}`.
pub(crate) async fn mint_token(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> ApiResult<Response> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        // Only the key pair itself mints tokens: a token cannot renew itself.
        let basic = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .ok_or(ApiError::MissingCredentials)?;
        let (ak, sk) = basic_credentials(basic.1)?;
        state.credentials.check(&ak, &sk)?;
    } else {
        let creds: TokenRequest = read_json(req.into_body()).await?;
        state
            .credentials
            .check(&creds.access_key, &creds.secret_key)?;
    }
    let expires_at = now_unix(&state) + TOKEN_TTL_SECS;
    let token = state.credentials.mint_token(expires_at)?;
    Ok(axum::Json(TokenResponse { token, expires_at }).into_response())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn creds() -> Credentials {
        Credentials {
            access_key: "AK".into(),
            secret_key: "SK".into(),
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_resist_tampering() {
        let c = creds();
        let t = c.mint_token(1000).unwrap();
        assert!(c.verify_token(&t, 999).is_ok());
        assert!(c.verify_token(&t, 1000).is_err());
        let other = Credentials {
            secret_key: "other".into(),
            ..creds()
        };
        assert!(other.verify_token(&t, 10).is_err());
        let (p, s) = t.split_once('.').unwrap();
        let forged = format!("{}.{s}", URL_SAFE_NO_PAD.encode("v1:AK:99999999"));
        assert!(c.verify_token(&forged, 10).is_err());
        assert!(c.verify_token(p, 10).is_err());
        assert!(c.verify_token("garbage", 10).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert!(!format!("{:?}", creds()).contains("SK\""));
    }
}
