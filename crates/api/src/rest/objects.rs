//! Objects: upload, download (ranges, conditionals), head, delete, list, versions, tags.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bucketdb_object::{
    BodyChecksums, Conditions, ListQuery, ObjectRecord, PutOptions, StandardHeaders, StoredBody,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

use super::{Query, target};
use crate::ApiState;
use crate::body::{byte_stream, read_json};
use crate::error::{ApiError, ApiResult};
use crate::range::parse_range;

pub const VERSION_ID_HEADER: &str = "x-bucketdb-version-id";
pub const SHA256_HEADER: &str = "x-bucketdb-sha256";
pub const DELETE_MARKER_HEADER: &str = "x-bucketdb-delete-marker";
const USER_META_PREFIX: &str = "x-amz-meta-";
/// Served with every object: see [`object_headers`].
const OBJECT_CONTENT_SECURITY_POLICY: &str = "sandbox";
/// Suffix of the REST path that addresses an object's tags.
pub(crate) const TAGS_SUFFIX: &str = "/tags";

pub fn routes() -> MethodRouter<Arc<ApiState>> {
    post(upload)
        .get(get_or_list)
        .head(head)
        .delete(delete)
        .put(put_tags)
}

pub(crate) fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(time_of(ms)).to_string()
}

pub(crate) fn object_json(bucket: &str, r: &ObjectRecord) -> Value {
    json!({
        "key": r.key,
        "bucket": bucket,
        "size": r.size,
        "versionId": r.version_id,
        "etag": r.etag,
        "sha256": r.sha256,
        "contentType": r.content_type,
        "lastModified": rfc3339(r.created_ms),
    })
}

/// The declared body length, if the client sent one.
pub(crate) fn declared_length(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadRequest("invalid Content-Length".into()))
        })
        .transpose()
}

/// Content type and `x-amz-meta-*` user metadata from request headers.
pub(crate) fn put_options(headers: &HeaderMap) -> ApiResult<PutOptions> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::BadRequest("invalid Content-Type".into()))
        })
        .transpose()?;
    let mut user_meta = Vec::new();
    for (name, value) in headers {
        if let Some(k) = name.as_str().strip_prefix(USER_META_PREFIX) {
            let v = value
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("header {name} is not ASCII")))?;
            user_meta.push((k.to_string(), v.to_string()));
        }
    }
    Ok(PutOptions {
        content_type,
        user_meta,
        tags: Vec::new(),
        declared_size: declared_length(headers)?,
        create_bucket: true,
        headers: standard_headers(headers)?,
        ..PutOptions::default()
    })
}

/// `Cache-Control`, `Content-Disposition`, `Content-Encoding`, `Content-Language` and
/// `Expires` of an upload, stored and sent back on GET/HEAD.
fn standard_headers(headers: &HeaderMap) -> ApiResult<StandardHeaders> {
    let text = |name: HeaderName| -> ApiResult<Option<String>> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(str::to_string)
                    .map_err(|_| ApiError::BadRequest(format!("header {name} is not ASCII")))
            })
            .transpose()
    };
    let expires_secs = text(header::EXPIRES)?
        .map(|e| {
            httpdate::parse_http_date(&e)
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok())
                .ok_or_else(|| ApiError::BadRequest("Expires is not an HTTP date".into()))
        })
        .transpose()?;
    Ok(StandardHeaders {
        cache_control: text(header::CACHE_CONTROL)?,
        content_disposition: text(header::CONTENT_DISPOSITION)?,
        content_encoding: text(header::CONTENT_ENCODING)?,
        content_language: text(header::CONTENT_LANGUAGE)?,
        expires_secs,
    })
}

async fn upload(
    State(state): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let t = target(&uri, "objects")?;
    let opts = put_options(&headers)?;
    let rec = state
        .service
        .put_object(&t.bucket, t.key()?, byte_stream(body), opts)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key": rec.key,
            "bucket": t.bucket,
            "size": rec.size,
            "versionId": rec.version_id,
            "etag": rec.etag,
        })),
    )
        .into_response())
}

fn header_value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| ApiError::Internal(e.to_string()))
}

fn object_headers(r: &ObjectRecord) -> ApiResult<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, header_value(&format!("\"{}\"", r.etag))?);
    h.insert(
        header::LAST_MODIFIED,
        header_value(&httpdate::fmt_http_date(time_of(r.created_ms)))?,
    );
    h.insert(header::CONTENT_TYPE, header_value(&r.content_type)?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(VERSION_ID_HEADER, header_value(&r.version_id)?);
    h.insert(SHA256_HEADER, header_value(&r.sha256)?);
    let stored = [
        (header::CACHE_CONTROL, &r.headers.cache_control),
        (header::CONTENT_DISPOSITION, &r.headers.content_disposition),
        (header::CONTENT_ENCODING, &r.headers.content_encoding),
        (header::CONTENT_LANGUAGE, &r.headers.content_language),
    ];
    for (name, value) in stored {
        if let Some(v) = value {
            h.insert(name, header_value(v)?);
        }
    }
    if let Some(secs) = r.headers.expires_secs.and_then(|s| u64::try_from(s).ok()) {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(secs);
        h.insert(header::EXPIRES, header_value(&httpdate::fmt_http_date(at))?);
    }
    // Objects share the console's origin: one opened in a browser tab (an HTML file, an
    // SVG) runs sandboxed, in an opaque origin, so its scripts cannot act as the console.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(OBJECT_CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (k, v) in &r.user_meta {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("{USER_META_PREFIX}{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, value);
        }
    }
    Ok(h)
}

/// The request's conditional headers.
fn conditions(headers: &HeaderMap) -> Conditions {
    let text = |n: HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let date = |n: HeaderName| {
        text(n)
            .and_then(|s| httpdate::parse_http_date(&s).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    Conditions {
        if_match: text(header::IF_MATCH),
        if_none_match: text(header::IF_NONE_MATCH),
        if_modified_since: date(header::IF_MODIFIED_SINCE),
        if_unmodified_since: date(header::IF_UNMODIFIED_SINCE),
    }
}

async fn get_or_list(
    State(state): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = target(&uri, "objects")?;
    let q = Query::parse(&uri);
    let Some(key) = t.key.as_deref() else {
        return list(&state, &t.bucket, &q).await;
    };
    if q.has("tags") {
        let tags = state
            .service
            .get_tags(&t.bucket, key, q.version_id())
            .await?;
        let map: Map<String, Value> = tags
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        return Ok(Json(Value::Object(map)).into_response());
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v).ok().flatten());
    let reader = state
        .service
        .get_object(&t.bucket, key, q.version_id(), range, &conditions(&headers))
        .await?;
    let mut h = object_headers(&reader.record)?;
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(reader.content_length()),
    );
    let status = match reader.range {
        Some((s, e)) => {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {s}-{e}/{}", reader.record.size))?,
            );
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    // A small inline object is one buffer: send it with the headers in one write.
    let body = if matches!(reader.record.body, StoredBody::Inline) {
        let mut stream = reader.body;
        match stream.next().await {
            Some(data) => Body::from(data?),
            None => Body::empty(),
        }
    } else {
        Body::from_stream(reader.body)
    };
    Ok((status, h, body).into_response())
}

async fn list(state: &ApiState, bucket: &str, q: &Query) -> ApiResult<Response> {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest("limit must be a non-negative integer".into()))?,
        None => 0,
    };
    let page = state
        .service
        .list_objects(
            bucket,
            &ListQuery {
                prefix: q.get("prefix").unwrap_or("").to_string(),
                delimiter: q.get("delimiter").map(str::to_string),
                start_after: q
                    .get("cursor")
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
                limit,
            },
        )
        .await?;
    let objects: Vec<_> = page
        .objects
        .iter()
        .map(|r| object_json(bucket, r))
        .collect();
    Ok(Json(json!({
        "objects": objects,
        "prefixes": page.prefixes,
        "nextCursor": page.next_cursor,
    }))
    .into_response())
}

async fn head(
    State(state): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = target(&uri, "objects")?;
    let q = Query::parse(&uri);
    let rec = state
        .service
        .stat_object(&t.bucket, t.key()?, q.version_id())
        .await?;
    conditions(&headers).check(&rec)?;
    let mut h = object_headers(&rec)?;
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(rec.size));
    Ok((StatusCode::OK, h).into_response())
}

async fn delete(State(state): State<Arc<ApiState>>, uri: Uri) -> ApiResult<Response> {
    let t = target(&uri, "objects")?;
    let q = Query::parse(&uri);
    let key = t.key()?;
    if q.has("tags") {
        state
            .service
            .put_tags(&t.bucket, key, q.version_id(), Vec::new())
            .await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let outcome = state
        .service
        .delete_object(&t.bucket, key, q.version_id())
        .await?;
    let mut h = HeaderMap::new();
    if let Some(v) = &outcome.version_id {
        h.insert(VERSION_ID_HEADER, header_value(v)?);
    }
    if outcome.delete_marker {
        h.insert(DELETE_MARKER_HEADER, HeaderValue::from_static("true"));
    }
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

async fn put_tags(State(state): State<Arc<ApiState>>, uri: Uri, body: Body) -> ApiResult<Response> {
    let t = target(&uri, "objects")?;
    let key = t
        .key()?
        .strip_suffix(TAGS_SUFFIX)
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::MethodNotAllowed)?;
    let q = Query::parse(&uri);
    let map: Map<String, Value> = read_json(body).await?;
    let mut tags = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Value::String(v) = v else {
            return Err(ApiError::BadRequest(format!(
                "the value of tag {k:?} must be a string"
            )));
        };
        tags.push((k, v));
    }
    let rec = state
        .service
        .put_tags(&t.bucket, key, q.version_id(), tags)
        .await?;
    let version = rec.version_id;
    let map: Map<String, Value> = rec
        .tags
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(
        Json(json!({"bucket": t.bucket, "key": key, "versionId": version, "tags": map}))
            .into_response(),
    )
}

pub async fn versions(State(state): State<Arc<ApiState>>, uri: Uri) -> ApiResult<Response> {
    let t = target(&uri, "versions")?;
    let key = t.key()?;
    let list = state.service.list_object_versions(&t.bucket, key)?;
    let versions: Vec<_> = list
        .versions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "versionId": r.version_id,
                "isLatest": i == 0,
                "deleteMarker": r.delete_marker,
                "size": r.size,
                "etag": r.etag,
                "lastModified": rfc3339(r.created_ms),
            })
        })
        .collect();
    Ok(Json(json!({
        "bucket": t.bucket,
        "key": key,
        "versions": versions,
        "truncated": list.truncated,
    }))
    .into_response())
}

/// `POST /versions/:bucket/:key?versionId=V`: restore version `V` by copying it (bytes,
/// content type, metadata, standard headers, tags) to be the key's current version.
/// `201` object JSON.
pub async fn restore_version(State(state): State<Arc<ApiState>>, uri: Uri) -> ApiResult<Response> {
    let t = target(&uri, "versions")?;
    let key = t.key()?;
    let q = Query::parse(&uri);
    let version = q
        .version_id()
        .ok_or_else(|| ApiError::BadRequest("name the version to restore: ?versionId=".into()))?;
    let reader = state
        .service
        .get_object(&t.bucket, key, Some(version), None, &Conditions::default())
        .await?;
    let src = reader.record.clone();
    let opts = PutOptions {
        content_type: Some(src.content_type.clone()),
        user_meta: src.user_meta.clone(),
        tags: src.tags.clone(),
        headers: src.headers.clone(),
        declared_size: Some(src.size),
        checksums: BodyChecksums::for_copy_of(&src),
        ..PutOptions::default()
    };
    let rec = state
        .service
        .put_object(
            &t.bucket,
            key,
            reader.body.map_err(std::io::Error::other),
            opts,
        )
        .await?;
    let mut body = object_json(&t.bucket, &rec);
    body["restoredFrom"] = Value::String(version.to_string());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
