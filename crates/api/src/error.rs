//! The one place where errors become HTTP statuses and S3 error codes. REST errors are
//! JSON: `{"error": {"code", "message", "requestId"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bucketdb_object::ObjectError;

use crate::observe::current_request_id;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MalformedJson(String),
    #[error("the request needs credentials (HTTP Basic or a bearer token)")]
    MissingCredentials,
    #[error("the access key is not known")]
    InvalidAccessKeyId,
    #[error("the secret key does not match")]
    SignatureDoesNotMatch,
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error("the console session is invalid, expired or logged out; log in again")]
    InvalidSession,
    #[error(
        "requests from the console must carry the header X-BucketDB-Console: 1 \
         (protection against cross-site request forgery)"
    )]
    ConsoleHeaderMissing,
    #[error("no such route")]
    NotFound,
    #[error("the method is not allowed on this resource")]
    MethodNotAllowed,
    #[error("the bucket has no lifecycle configuration")]
    NoSuchLifecycleConfiguration,
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the cluster refused the change: {0}")]
    ClusterChangeRefused(String),
    #[error("the cluster cannot make the change now: {0}")]
    ClusterUnavailable(String),
    #[error("internal error")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// HTTP status and S3 error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ObjectError as O;
        use StatusCode as S;
        match self {
            ApiError::Object(e) => match e {
                O::NoSuchBucket(_) => (S::NOT_FOUND, "NoSuchBucket"),
                O::NoSuchKey(_) => (S::NOT_FOUND, "NoSuchKey"),
                O::NoSuchVersion(_) => (S::NOT_FOUND, "NoSuchVersion"),
                O::NoSuchUpload(_) => (S::NOT_FOUND, "NoSuchUpload"),
                O::BucketAlreadyOwnedByYou(_) => (S::CONFLICT, "BucketAlreadyOwnedByYou"),
                O::BucketNotEmpty(_) => (S::CONFLICT, "BucketNotEmpty"),
                O::InvalidBucketName(_) => (S::BAD_REQUEST, "InvalidBucketName"),
                O::KeyTooLong { .. } => (S::BAD_REQUEST, "KeyTooLongError"),
                O::InvalidKey(_) => (S::BAD_REQUEST, "InvalidArgument"),
                O::EntityTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "EntityTooLarge"),
                O::EntityTooSmall { .. } => (S::BAD_REQUEST, "EntityTooSmall"),
                O::IncompleteBody(_) => (S::BAD_REQUEST, "IncompleteBody"),
                O::InvalidPart(_) => (S::BAD_REQUEST, "InvalidPart"),
                O::InvalidPartOrder => (S::BAD_REQUEST, "InvalidPartOrder"),
                O::InvalidTag(_) => (S::BAD_REQUEST, "InvalidTag"),
                O::MetadataTooLarge { .. } => (S::BAD_REQUEST, "MetadataTooLarge"),
                O::InvalidRange { .. } => (S::RANGE_NOT_SATISFIABLE, "InvalidRange"),
                O::InvalidArgument(_) => (S::BAD_REQUEST, "InvalidArgument"),
                O::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
                O::PreconditionFailed => (S::PRECONDITION_FAILED, "PreconditionFailed"),
                O::BadDigest => (S::BAD_REQUEST, "BadDigest"),
                O::NotModified { .. } => (S::NOT_MODIFIED, "NotModified"),
                O::Corrupt(_) | O::Store(_) | O::Internal(_) => {
                    (S::INTERNAL_SERVER_ERROR, "InternalError")
                }
                O::Replication(_) | O::QuorumNotReached { .. } | O::Unavailable(_) => {
                    (S::SERVICE_UNAVAILABLE, "ServiceUnavailable")
                }
            },
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "InvalidRequest"),
            ApiError::MalformedJson(_) => (S::BAD_REQUEST, "MalformedJSON"),
            ApiError::MissingCredentials => (S::UNAUTHORIZED, "AccessDenied"),
            ApiError::InvalidAccessKeyId => (S::FORBIDDEN, "InvalidAccessKeyId"),
            ApiError::SignatureDoesNotMatch => (S::FORBIDDEN, "SignatureDoesNotMatch"),
            ApiError::InvalidToken => (S::UNAUTHORIZED, "InvalidToken"),
            ApiError::InvalidSession => (S::UNAUTHORIZED, "InvalidSession"),
            ApiError::ConsoleHeaderMissing => (S::FORBIDDEN, "AccessDenied"),
            ApiError::NotFound => (S::NOT_FOUND, "NoSuchResource"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::NoSuchLifecycleConfiguration => {
                (S::NOT_FOUND, "NoSuchLifecycleConfiguration")
            }
            ApiError::BodyTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "EntityTooLarge"),
            ApiError::ClusterChangeRefused(_) => (S::CONFLICT, "ClusterChangeRefused"),
            ApiError::ClusterUnavailable(_) => (S::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Object(ObjectError::NotModified {
            etag,
            last_modified_ms,
        }) = &self
        {
            return not_modified(etag, *last_modified_ms);
        }
        let (status, code) = self.status_and_code();
        // Server-side failures are logged in full but described to clients generically.
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "We encountered an internal error. Please try again.".to_string()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({
            "error": {"code": code, "message": message, "requestId": current_request_id()}
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::Object(ObjectError::InvalidRange { size }) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if matches!(self, ApiError::MissingCredentials) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"bucketdb\""),
            );
        }
        resp
    }
}

/// `304 Not Modified` carries the validators and no body.
fn not_modified(etag: &str, last_modified_ms: u64) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(last_modified_ms);
    for (name, value) in [
        (header::ETAG, format!("\"{etag}\"")),
        (header::LAST_MODIFIED, httpdate::fmt_http_date(modified)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}
