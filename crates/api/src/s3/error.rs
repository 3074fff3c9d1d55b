//! Object-service errors as S3 errors (the S3 API's counterpart of `crate::error`).

use bucketdb_object::ObjectError;
use s3s::{S3Error, S3ErrorCode};

pub fn s3_error(e: ObjectError) -> S3Error {
    use ObjectError as O;
    use S3ErrorCode as C;
    let code = match &e {
        O::NoSuchBucket(_) => C::NoSuchBucket,
        O::NoSuchKey(_) => C::NoSuchKey,
        O::NoSuchVersion(_) => C::NoSuchVersion,
        O::NoSuchUpload(_) => C::NoSuchUpload,
        O::BucketAlreadyOwnedByYou(_) => C::BucketAlreadyOwnedByYou,
        O::BucketNotEmpty(_) => C::BucketNotEmpty,
        O::InvalidBucketName(_) => C::InvalidBucketName,
        O::KeyTooLong { .. } => C::KeyTooLongError,
        O::InvalidKey(_) | O::InvalidArgument(_) => C::InvalidArgument,
        O::EntityTooLarge { .. } => C::EntityTooLarge,
        O::EntityTooSmall { .. } => C::EntityTooSmall,
        O::IncompleteBody(_) => C::IncompleteBody,
        O::InvalidPart(_) => C::InvalidPart,
        O::InvalidPartOrder => C::InvalidPartOrder,
        O::InvalidTag(_) => C::InvalidTag,
        O::MetadataTooLarge { .. } => C::MetadataTooLarge,
        O::InvalidRange { .. } => C::InvalidRange,
        O::MethodNotAllowed => C::MethodNotAllowed,
        O::PreconditionFailed => C::PreconditionFailed,
        O::BadDigest => C::BadDigest,
        O::NotModified { .. } => C::NotModified,
        O::Replication(_) | O::QuorumNotReached { .. } | O::Unavailable(_) => C::ServiceUnavailable,
        O::Corrupt(_) | O::Store(_) | O::Internal(_) => {
            tracing::error!(error = %e, "S3 request failed");
            return S3Error::with_message(
                C::InternalError,
                "We encountered an internal error. Please try again.",
            );
        }
    };
    let mut err = S3Error::with_message(code, e.to_string());
    if let O::InvalidRange { size } = e {
        // S3 answers 416 with `Content-Range: bytes */size`. The headers set here replace
        // the error response's own, so the XML content type is repeated.
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
            headers.insert(http::header::CONTENT_RANGE, v);
        }
        err.set_headers(headers);
    }
    if let O::NotModified {
        etag,
        last_modified_ms,
    } = &e
    {
        // A 304 carries the validators the client compared against.
        let mut headers = http::HeaderMap::new();
        let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(*last_modified_ms);
        for (name, value) in [
            (http::header::ETAG, format!("\"{etag}\"")),
            (
                http::header::LAST_MODIFIED,
                httpdate::fmt_http_date(modified),
            ),
        ] {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        err.set_headers(headers);
    }
    err
}

/// `?` on object-service results inside S3 handlers.
pub trait IntoS3<T> {
    fn s3(self) -> Result<T, S3Error>;
}

impl<T> IntoS3<T> for Result<T, ObjectError> {
    fn s3(self) -> Result<T, S3Error> {
        self.map_err(s3_error)
    }
}
