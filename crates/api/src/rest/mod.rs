//! The REST API of PRODUCT.md section 4. Paths are parsed from the raw URI so that any
//! key (with `/`, percent-escapes or invalid UTF-8) gets a precise JSON error.

mod buckets;
mod config;
mod multipart;
mod objects;

pub(crate) use objects::TAGS_SUFFIX;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::request::Parts;
use axum::routing::{get, put};
use percent_encoding::percent_decode_str;

use crate::ApiState;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/buckets", get(buckets::list))
        .route(
            "/buckets/{bucket}",
            put(buckets::create)
                .delete(buckets::delete)
                .head(buckets::head)
                .get(buckets::head),
        )
        .route("/objects/{*path}", objects::routes())
        .route(
            "/versions/{*path}",
            get(objects::versions).post(objects::restore_version),
        )
        .route(
            "/versioning/{bucket}",
            put(config::put_versioning).get(config::get_versioning),
        )
        .route(
            "/lifecycle/{bucket}",
            put(config::put_lifecycle)
                .get(config::get_lifecycle)
                .delete(config::delete_lifecycle),
        )
        .route("/multipart/{*path}", multipart::routes())
        .route("/acl/{bucket}", put(config::put_acl).get(config::get_acl))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A percent-decoded path segment that must be UTF-8.
fn decode(raw: &str, what: &str) -> ApiResult<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::BadRequest(format!("the {what} is not valid UTF-8")))
}

/// The bucket of `/<family>/<bucket>` routes, decoded with JSON errors (axum's own path
/// extractor answers malformed escapes in plain text).
pub(crate) struct BucketParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BucketParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split_once('/')
            .map_or("", |(_, rest)| rest);
        Ok(BucketParam(decode(raw, "bucket name")?))
    }
}

/// `/<family>/<bucket>[/<key>]` from the raw request path.
pub(crate) struct Target {
    pub bucket: String,
    pub key: Option<String>,
}

pub(crate) fn target(uri: &Uri, family: &str) -> ApiResult<Target> {
    let rest = uri
        .path()
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(family))
        .and_then(|p| p.strip_prefix('/'))
        .ok_or(ApiError::NotFound)?;
    let (bucket, key) = match rest.split_once('/') {
        Some((b, k)) => (b, Some(k)),
        None => (rest, None),
    };
    let key = match key {
        Some("") | None => None,
        Some(k) => Some(decode(k, "key")?),
    };
    Ok(Target {
        bucket: decode(bucket, "bucket name")?,
        key,
    })
}

impl Target {
    pub fn key(&self) -> ApiResult<&str> {
        self.key
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("the path needs an object key".into()))
    }
}

/// Query parameters, decoded leniently (`?tags` gives `("tags", "")`).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(uri: &Uri) -> Query {
        Query(
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn version_id(&self) -> Option<&str> {
        self.get("versionId").filter(|v| !v.is_empty())
    }
}
