//! Bucket configuration: versioning and lifecycle rules.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bucketdb_object::{LifecycleRule, Versioning};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::BucketParam;
use crate::ApiState;
use crate::body::read_json;
use crate::error::{ApiError, ApiResult};

pub(crate) fn versioning_name(v: Versioning) -> &'static str {
    match v {
        Versioning::Unversioned => "Unversioned",
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
    }
}

#[derive(Deserialize)]
struct VersioningBody {
    status: String,
}

pub async fn put_versioning(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
    body: Body,
) -> ApiResult<Response> {
    let req: VersioningBody = read_json(body).await?;
    let v = match req.status.as_str() {
        "Enabled" => Versioning::Enabled,
        "Suspended" => Versioning::Suspended,
        other => {
            return Err(ApiError::BadRequest(format!(
                "status must be \"Enabled\" or \"Suspended\", not {other:?}"
            )));
        }
    };
    state.service.set_versioning(&bucket, v).await?;
    Ok(Json(json!({"bucket": bucket, "status": versioning_name(v)})).into_response())
}

pub async fn get_versioning(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    let b = state.service.head_bucket(&bucket)?;
    Ok(Json(json!({"bucket": bucket, "status": versioning_name(b.versioning)})).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AclBody {
    public_read: bool,
}

/// `PUT /acl/:bucket {"publicRead": true}`: anyone may then GET and HEAD its objects.
pub async fn put_acl(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
    body: Body,
) -> ApiResult<Response> {
    let req: AclBody = read_json(body).await?;
    let c = state
        .service
        .update_bucket_config(&bucket, move |c| {
            c.public_read = req.public_read;
            Ok(())
        })
        .await?;
    Ok(Json(json!({"bucket": bucket, "publicRead": c.public_read})).into_response())
}

pub async fn get_acl(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    let c = state.service.bucket_config(&bucket)?;
    Ok(Json(json!({"bucket": bucket, "publicRead": c.public_read})).into_response())
}

/// The seed's rule JSON.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleJson {
    id: String,
    status: String,
    #[serde(default)]
    prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    noncurrent_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    abort_incomplete_multipart_days: Option<u32>,
}

#[derive(Deserialize)]
struct LifecycleBody {
    #[serde(default)]
    bucket: Option<String>,
    rules: Vec<RuleJson>,
}

pub async fn put_lifecycle(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
    body: Body,
) -> ApiResult<Response> {
    let req: LifecycleBody = read_json(body).await?;
    if req.bucket.as_ref().is_some_and(|b| *b != bucket) {
        return Err(ApiError::BadRequest("the body names another bucket".into()));
    }
    let mut rules = Vec::with_capacity(req.rules.len());
    for r in req.rules {
        let enabled = match r.status.as_str() {
            "Enabled" => true,
            "Disabled" => false,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "rule status must be \"Enabled\" or \"Disabled\", not {other:?}"
                )));
            }
        };
        rules.push(LifecycleRule {
            id: r.id,
            enabled,
            prefix: r.prefix,
            expiration_days: r.expiration_days,
            noncurrent_days: r.noncurrent_days,
            abort_incomplete_multipart_days: r.abort_incomplete_multipart_days,
        });
    }
    state.service.set_lifecycle(&bucket, rules).await?;
    lifecycle_json(&state, &bucket)
}

fn lifecycle_json(state: &ApiState, bucket: &str) -> ApiResult<Response> {
    let rules = state.service.get_lifecycle(bucket)?;
    if rules.is_empty() {
        return Err(ApiError::NoSuchLifecycleConfiguration);
    }
    let rules: Vec<RuleJson> = rules
        .into_iter()
        .map(|r| RuleJson {
            id: r.id,
            status: if r.enabled { "Enabled" } else { "Disabled" }.to_string(),
            prefix: r.prefix,
            expiration_days: r.expiration_days,
            noncurrent_days: r.noncurrent_days,
            abort_incomplete_multipart_days: r.abort_incomplete_multipart_days,
        })
        .collect();
    Ok(Json(json!({"bucket": bucket, "rules": rules})).into_response())
}

pub async fn get_lifecycle(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    lifecycle_json(&state, &bucket)
}

pub async fn delete_lifecycle(
    State(state): State<Arc<ApiState>>,
    BucketParam(bucket): BucketParam,
) -> ApiResult<Response> {
    state.service.set_lifecycle(&bucket, Vec::new()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
