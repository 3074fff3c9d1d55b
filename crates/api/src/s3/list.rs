//! Listings: ListObjects (v1 and v2) and ListObjectVersions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bucketdb_object::{ListPage, ListQuery, MAX_LIST_LIMIT};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Api;
use super::convert::{encode_key, etag, timestamp};
use super::error::IntoS3;

/// S3's page size when a client gives none.
const DEFAULT_MAX_KEYS: i32 = 1000;

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m.unwrap_or(DEFAULT_MAX_KEYS) {
        n if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        n => Ok((n as usize).min(MAX_LIST_LIMIT)),
    }
}

fn url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e.map(|e| e.as_str()) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(_) => Err(s3_error!(InvalidArgument, "encoding-type must be url")),
    }
}

impl S3Api {
    async fn page(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        after: Option<String>,
        limit: usize,
    ) -> S3Result<ListPage> {
        if limit == 0 {
            // Still answer NoSuchBucket for a missing bucket.
            self.svc.head_bucket(bucket).s3()?;
            return Ok(ListPage::default());
        }
        self.svc
            .list_objects(
                bucket,
                &ListQuery {
                    prefix: prefix.unwrap_or("").to_string(),
                    delimiter: delimiter.map(str::to_string),
                    start_after: after,
                    limit,
                },
            )
            .await
            .s3()
    }

    fn contents(page: &ListPage, url: bool, owner: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
        let objects = page
            .objects
            .iter()
            .map(|r| Object {
                key: Some(encode_key(&r.key, url)),
                size: Some(r.size as i64),
                e_tag: Some(etag(r)),
                last_modified: Some(timestamp(r.created_ms)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                owner: owner.then(super::owner),
                ..Default::default()
            })
            .collect();
        let prefixes = page
            .prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode_key(p, url)),
            })
            .collect();
        (objects, prefixes)
    }

    pub(super) async fn op_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let url = url_encoding(i.encoding_type.as_ref())?;
        let limit = max_keys(i.max_keys)?;
        let after = match &i.continuation_token {
            Some(t) => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| s3_error!(InvalidArgument, "invalid continuation token"))?,
            ),
            None => i.start_after.clone().filter(|s| !s.is_empty()),
        };
        let page = self
            .page(
                &i.bucket,
                i.prefix.as_deref(),
                i.delimiter.as_deref(),
                after,
                limit,
            )
            .await?;
        let (contents, prefixes) = Self::contents(&page, url, i.fetch_owner.unwrap_or(false));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(encode_key(i.prefix.as_deref().unwrap_or(""), url)),
            delimiter: i.delimiter.map(|d| encode_key(&d, url)),
            max_keys: Some(limit as i32),
            key_count: Some((contents.len() + prefixes.len()) as i32),
            is_truncated: Some(page.next_cursor.is_some()),
            next_continuation_token: page.next_cursor.map(|c| URL_SAFE_NO_PAD.encode(c)),
            continuation_token: i.continuation_token,
            start_after: i.start_after.map(|s| encode_key(&s, url)),
            encoding_type: i.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }

    pub(super) async fn op_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let url = url_encoding(i.encoding_type.as_ref())?;
        let limit = max_keys(i.max_keys)?;
        let after = i.marker.clone().filter(|m| !m.is_empty());
        let page = self
            .page(
                &i.bucket,
                i.prefix.as_deref(),
                i.delimiter.as_deref(),
                after,
                limit,
            )
            .await?;
        let (contents, prefixes) = Self::contents(&page, url, true);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(encode_key(i.prefix.as_deref().unwrap_or(""), url)),
            delimiter: i.delimiter.map(|d| encode_key(&d, url)),
            marker: i.marker.map(|m| encode_key(&m, url)),
            max_keys: Some(limit as i32),
            is_truncated: Some(page.next_cursor.is_some()),
            next_marker: page.next_cursor.map(|c| encode_key(&c, url)),
            encoding_type: i.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }

    pub(super) async fn op_list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        let url = url_encoding(i.encoding_type.as_ref())?;
        let limit = max_keys(i.max_keys)?.max(1);
        let key_marker = i.key_marker.as_deref().filter(|k| !k.is_empty());
        let version_id_marker = i.version_id_marker.as_deref().filter(|v| !v.is_empty());
        if version_id_marker.is_some() && key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let page = self
            .svc
            .list_bucket_versions(
                &i.bucket,
                i.prefix.as_deref().unwrap_or(""),
                i.delimiter.as_deref(),
                key_marker,
                version_id_marker,
                limit,
            )
            .await
            .s3()?;
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let prefixes = page
            .prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode_key(p, url)),
            })
            .collect();
        for (r, latest) in page.versions {
            if r.delete_marker {
                markers.push(DeleteMarkerEntry {
                    key: Some(encode_key(&r.key, url)),
                    version_id: Some(r.version_id.clone()),
                    is_latest: Some(latest),
                    last_modified: Some(timestamp(r.created_ms)),
                    owner: Some(super::owner()),
                });
            } else {
                versions.push(ObjectVersion {
                    key: Some(encode_key(&r.key, url)),
                    version_id: Some(r.version_id.clone()),
                    is_latest: Some(latest),
                    last_modified: Some(timestamp(r.created_ms)),
                    e_tag: Some(etag(&r)),
                    size: Some(r.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    owner: Some(super::owner()),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(encode_key(i.prefix.as_deref().unwrap_or(""), url)),
            delimiter: i.delimiter.map(|d| encode_key(&d, url)),
            key_marker: i.key_marker.map(|k| encode_key(&k, url)),
            version_id_marker: i.version_id_marker,
            max_keys: Some(limit as i32),
            is_truncated: Some(page.next_key_marker.is_some()),
            next_key_marker: page.next_key_marker.map(|k| encode_key(&k, url)),
            next_version_id_marker: page.next_version_id_marker,
            encoding_type: i.encoding_type,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }
}
