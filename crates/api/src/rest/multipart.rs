//! Multipart uploads over REST.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde::Deserialize;
use serde_json::json;

use super::objects::{declared_length, object_json, put_options, rfc3339};
use super::{Query, target};
use crate::ApiState;
use crate::body::{byte_stream, read_json};
use crate::error::{ApiError, ApiResult};

/// Most unfinished uploads listed at once.
const MAX_UPLOADS_LISTED: usize = 1000;

pub fn routes() -> MethodRouter<Arc<ApiState>> {
    post(create_or_upload).put(complete).delete(abort).get(list)
}

fn upload_id(q: &Query) -> ApiResult<&str> {
    q.get("uploadId")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the uploadId query parameter is required".into()))
}

async fn create_or_upload(
    State(state): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let t = target(&uri, "multipart")?;
    let key = t.key()?;
    let q = Query::parse(&uri);
    if q.has("uploadId") {
        let n = q
            .get("partNumber")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| {
                ApiError::BadRequest("partNumber must be a number from 1 to 10000".into())
            })?;
        let part = state
            .service
            .upload_part(
                &t.bucket,
                key,
                upload_id(&q)?,
                n,
                byte_stream(body),
                declared_length(&headers)?,
            )
            .await?;
        return Ok(Json(
            json!({"partNumber": part.part_number, "etag": part.etag, "size": part.size}),
        )
        .into_response());
    }
    let up = state
        .service
        .create_multipart_upload(&t.bucket, key, put_options(&headers)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"uploadId": up.upload_id, "bucket": up.bucket, "key": up.key})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartJson {
    part_number: u32,
    etag: String,
}

#[derive(Deserialize)]
struct CompleteBody {
    parts: Vec<PartJson>,
}

async fn complete(State(state): State<Arc<ApiState>>, uri: Uri, body: Body) -> ApiResult<Response> {
    let t = target(&uri, "multipart")?;
    let q = Query::parse(&uri);
    let req: CompleteBody = read_json(body).await?;
    if req.parts.len() > bucketdb_object::MAX_PART_NUMBER as usize {
        return Err(ApiError::BadRequest("too many parts".into()));
    }
    let parts = req
        .parts
        .into_iter()
        .map(|p| (p.part_number, p.etag))
        .collect();
    let rec = state
        .service
        .complete_multipart_upload(&t.bucket, t.key()?, upload_id(&q)?, parts)
        .await?;
    Ok((StatusCode::CREATED, Json(object_json(&t.bucket, &rec))).into_response())
}

async fn abort(State(state): State<Arc<ApiState>>, uri: Uri) -> ApiResult<Response> {
    let t = target(&uri, "multipart")?;
    let q = Query::parse(&uri);
    state
        .service
        .abort_multipart_upload(&t.bucket, t.key()?, upload_id(&q)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list(State(state): State<Arc<ApiState>>, uri: Uri) -> ApiResult<Response> {
    let t = target(&uri, "multipart")?;
    let q = Query::parse(&uri);
    let Some(key) = t.key.as_deref() else {
        let uploads: Vec<_> = state
            .service
            .list_uploads_everywhere(
                &t.bucket,
                bucketdb_object::UploadsQuery {
                    limit: MAX_UPLOADS_LISTED,
                    ..Default::default()
                },
            )
            .await?
            .into_iter()
            .map(|u| json!({"uploadId": u.upload_id, "key": u.key, "initiated": rfc3339(u.created_ms)}))
            .collect();
        return Ok(Json(json!({"bucket": t.bucket, "uploads": uploads})).into_response());
    };
    let id = upload_id(&q)?;
    let parts: Vec<_> = state
        .service
        .list_parts(&t.bucket, key, id)?
        .into_iter()
        .map(|p| json!({"partNumber": p.part_number, "etag": p.etag, "size": p.size, "lastModified": rfc3339(p.created_ms)}))
        .collect();
    Ok(
        Json(json!({"bucket": t.bucket, "key": key, "uploadId": id, "parts": parts}))
            .into_response(),
    )
}
