//! Request bodies: JSON documents (bounded) and streamed object bodies.

use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// Largest JSON request body (tags, lifecycle rules, part lists).
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;

pub async fn read_json<T: DeserializeOwned>(body: Body) -> ApiResult<T> {
    let limited = http_body_util::Limited::new(body, MAX_JSON_BODY_BYTES);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::BodyTooLarge(MAX_JSON_BODY_BYTES));
        }
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "could not read the body: {e}"
            )));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// An object body as the object service takes it.
pub fn byte_stream(body: Body) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other)
}
