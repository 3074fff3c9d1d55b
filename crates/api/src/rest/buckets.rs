use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bucketdb_object::BucketRecord;
use serde_json::{Value, json};

use super::BucketParam;
use super::config::versioning_name;
use crate::ApiState;
use crate::error::ApiResult;

pub(crate) fn bucket_json(b: &BucketRecord) -> Value {
    json!({
        "name": b.name,
        "createdAt": b.created_ms,
        "versioning": versioning_name(b.versioning),
    })
}

pub async fn list(State(state): State<Arc<ApiState>>) -> ApiResult<Response> {
    let buckets: Vec<_> = state
        .service
        .list_buckets()?
        .iter()
        .map(bucket_json)
        .collect();
    Ok(Json(json!({ "buckets": buckets })).into_response())
}

pub async fn create(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    let b = state.service.create_bucket(&bucket).await?;
    Ok((StatusCode::CREATED, Json(bucket_json(&b))).into_response())
}

/// `GET /buckets/:bucket`: the bucket with a summary of its settings (public read, the
/// number of lifecycle rules), so a client learns them without a 404 for "no rules".
pub async fn head(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    let b = state.service.head_bucket(&bucket)?;
    let mut body = bucket_json(&b);
    body["publicRead"] = Value::Bool(state.service.bucket_config(&bucket)?.public_read);
    body["lifecycleRules"] = Value::from(state.service.get_lifecycle(&bucket)?.len());
    Ok(Json(body).into_response())
}

pub async fn delete(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    state.service.delete_bucket(&bucket).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
