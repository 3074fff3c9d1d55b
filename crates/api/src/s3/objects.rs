//! Object operations: put, get, head, delete, delete many, copy, tagging.

use base64::Engine;
use bucketdb_object::{
    BodyChecksums, Conditions, ObjectReader, ObjectRecord, PutOptions, RangeSpec,
};
use futures::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Api;
use super::checksum::{StoredChecksums, set_checksums};
use super::convert::{
    conditions, etag, expires_out, headers_in, metadata_in, metadata_out, range, timestamp,
    version_id,
};
use super::error::{IntoS3, s3_error};

/// Most keys one DeleteObjects request may name.
pub const MAX_DELETE_OBJECTS: usize = 1000;
/// Keys of one DeleteObjects request being deleted at once.
const DELETE_OBJECTS_IN_FLIGHT: usize = 16;
/// Longest `x-amz-tagging` header or form accepted.
const TAGGING_HEADER_MAX_BYTES: usize = 4096;

/// The body length a request declared, if any.
pub(super) fn declared_length(content_length: Option<i64>) -> S3Result<Option<u64>> {
    content_length
        .map(|l| {
            u64::try_from(l).map_err(|_| s3_error!(InvalidArgument, "negative Content-Length"))
        })
        .transpose()
}

/// A request body as the object service takes it (no body: empty).
pub(super) fn body_stream(
    body: Option<StreamingBlob>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin {
    match body {
        Some(b) => futures::future::Either::Left(b.map_err(std::io::Error::other)),
        None => futures::future::Either::Right(futures::stream::empty()),
    }
}

fn content_md5(v: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    v.map(|s| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not a base64 MD5"))
    })
    .transpose()
}

/// `x-amz-tagging`: URL-encoded `k=v&k2=v2`.
pub(super) fn tagging_header(v: Option<&str>) -> S3Result<Vec<(String, String)>> {
    match v {
        None => Ok(Vec::new()),
        Some(s) if s.len() > TAGGING_HEADER_MAX_BYTES => {
            Err(s3_error!(InvalidTag, "the tagging header is too long"))
        }
        Some(s) => Ok(form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()),
    }
}

pub(super) fn tags_in(tagging: Tagging) -> Vec<(String, String)> {
    tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect()
}

pub(super) fn tags_out(tags: Vec<(String, String)>) -> TagSet {
    tags.into_iter()
        .map(|(k, v)| Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

/// The byte range of part `n` of an object (1-based), as S3's `partNumber` selects.
fn part_range(r: &ObjectRecord, n: i32) -> S3Result<Option<RangeSpec>> {
    let n = usize::try_from(n).ok().filter(|n| *n >= 1);
    let Some(n) = n else {
        return Err(s3_error!(InvalidArgument, "partNumber must be positive"));
    };
    if r.part_sizes.is_empty() {
        return if n == 1 {
            Ok(None)
        } else {
            Err(s3_error!(InvalidArgument, "no such part number"))
        };
    }
    let size = *r
        .part_sizes
        .get(n - 1)
        .ok_or_else(|| s3_error!(InvalidArgument, "no such part number"))?;
    let start: u64 = r.part_sizes[..n - 1].iter().sum();
    if size == 0 {
        return Ok(None);
    }
    Ok(Some(RangeSpec::From {
        start,
        end: Some(start + size - 1),
    }))
}

/// The `x-amz-copy-source-if-*` headers of a copy.
pub(super) struct CopySourceConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl S3Api {
    /// Open the source of CopyObject / UploadPartCopy: its reader, bucket, key and
    /// version. A copy-source condition that fails is a 412, never a 304.
    pub(super) async fn open_copy_source(
        &self,
        source: &CopySource,
        cond: CopySourceConditions<'_>,
        range: Option<RangeSpec>,
    ) -> S3Result<(ObjectReader, String, String, Option<String>)> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(
                NotImplemented,
                "access point copy sources are not supported"
            ));
        };
        let cond = conditions(
            cond.if_match,
            cond.if_none_match,
            cond.if_modified_since,
            cond.if_unmodified_since,
        );
        let reader = self
            .svc
            .get_object(bucket, key, version_id.as_deref(), range, &cond)
            .await
            .map_err(|e| match e {
                bucketdb_object::ObjectError::NotModified { .. } => s3_error!(PreconditionFailed),
                other => s3_error(other),
            })?;
        Ok((
            reader,
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_string),
        ))
    }

    pub(super) async fn op_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let S3Request {
            input: i,
            headers,
            trailing_headers,
            ..
        } = req;
        let declared = declared_length(i.content_length)?;
        let opts = PutOptions {
            content_type: i.content_type,
            user_meta: metadata_in(i.metadata),
            tags: tagging_header(i.tagging.as_deref())?,
            declared_size: declared,
            create_bucket: false,
            content_md5: content_md5(i.content_md5.as_deref())?,
            write_conditions: conditions(i.if_match.as_ref(), i.if_none_match.as_ref(), None, None),
            checksums: BodyChecksums::default(),
            checksum_algorithm: None,
            headers: headers_in(
                i.cache_control,
                i.content_disposition,
                i.content_encoding,
                i.content_language,
                i.expires,
            ),
        };
        let (body, mismatch) = super::checksum::verify(
            &headers,
            trailing_headers,
            body_stream(i.body),
            opts.checksums.clone(),
        );
        let rec = super::checksum::checked(
            self.svc.put_object(&i.bucket, &i.key, body, opts).await,
            &mismatch,
        )?;
        let mut out = PutObjectOutput {
            e_tag: Some(etag(&rec)),
            version_id: version_id(&rec),
            ..Default::default()
        };
        set_checksums!(out, StoredChecksums::all(&rec), type);
        Ok(S3Response::new(out))
    }

    pub(super) async fn op_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        let cond = conditions(
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        );
        let mut wanted = i.range.as_ref().map(range);
        if let Some(n) = i.part_number {
            let head = self
                .svc
                .stat_object(&i.bucket, &i.key, i.version_id.as_deref())
                .await
                .s3()?;
            wanted = part_range(&head, n)?;
        }
        let reader = self
            .svc
            .get_object(&i.bucket, &i.key, i.version_id.as_deref(), wanted, &cond)
            .await
            .s3()?;
        let r = &reader.record;
        let content_range = reader
            .range
            .map(|(s, e)| format!("bytes {s}-{e}/{}", r.size));
        let sums = StoredChecksums::of(r, i.checksum_mode.as_ref(), reader.range.is_none());
        let mut out = GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(reader.content_length() as i64),
            content_range,
            content_type: Some(
                i.response_content_type
                    .unwrap_or_else(|| r.content_type.clone()),
            ),
            content_disposition: i
                .response_content_disposition
                .or_else(|| r.headers.content_disposition.clone()),
            cache_control: i
                .response_cache_control
                .or_else(|| r.headers.cache_control.clone()),
            content_encoding: i
                .response_content_encoding
                .or_else(|| r.headers.content_encoding.clone()),
            content_language: i
                .response_content_language
                .or_else(|| r.headers.content_language.clone()),
            expires: i.response_expires.or_else(|| expires_out(&r.headers)),
            e_tag: Some(etag(r)),
            last_modified: Some(timestamp(r.created_ms)),
            metadata: metadata_out(r),
            version_id: version_id(r),
            tag_count: (!r.tags.is_empty()).then_some(r.tags.len() as i32),
            parts_count: (i.part_number.is_some() && !r.part_sizes.is_empty())
                .then_some(r.part_sizes.len() as i32),
            body: Some(StreamingBlob::wrap(reader.body)),
            ..Default::default()
        };
        set_checksums!(out, sums, type);
        let mut resp = S3Response::new(out);
        if reader.range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    pub(super) async fn op_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let r = self
            .svc
            .stat_object(&i.bucket, &i.key, i.version_id.as_deref())
            .await
            .s3()?;
        conditions(
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        )
        .check(&r)
        .s3()?;
        let mut length = r.size;
        let mut content_range = None;
        let wanted = match i.part_number {
            Some(n) => part_range(&r, n)?,
            None => i.range.as_ref().map(range),
        };
        let sums = StoredChecksums::of(&r, i.checksum_mode.as_ref(), wanted.is_none());
        if let Some(w) = wanted {
            let (s, e) = w.resolve(r.size).s3()?;
            length = e - s + 1;
            content_range = Some(format!("bytes {s}-{e}/{}", r.size));
        }
        let mut out = HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(length as i64),
            content_range,
            content_type: Some(r.content_type.clone()),
            cache_control: r.headers.cache_control.clone(),
            content_disposition: r.headers.content_disposition.clone(),
            content_encoding: r.headers.content_encoding.clone(),
            content_language: r.headers.content_language.clone(),
            expires: expires_out(&r.headers),
            e_tag: Some(etag(&r)),
            last_modified: Some(timestamp(r.created_ms)),
            metadata: metadata_out(&r),
            version_id: version_id(&r),
            parts_count: (i.part_number.is_some() && !r.part_sizes.is_empty())
                .then_some(r.part_sizes.len() as i32),
            ..Default::default()
        };
        set_checksums!(out, sums, type);
        Ok(S3Response::new(out))
    }

    pub(super) async fn op_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        let out = self
            .svc
            .delete_object(&i.bucket, &i.key, i.version_id.as_deref())
            .await
            .s3()?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: out.delete_marker.then_some(true),
            version_id: out.version_id.filter(|v| v != "null"),
            ..Default::default()
        }))
    }

    pub(super) async fn op_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        if i.delete.objects.len() > MAX_DELETE_OBJECTS {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per request"));
        }
        self.svc.head_bucket(&i.bucket).s3()?;
        let quiet = i.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        // Each key's delete is made by that key's coordinator, a bounded number at once;
        // the answers keep the request's order.
        let (svc, bucket) = (&self.svc, &i.bucket);
        let outcomes: Vec<_> = futures::stream::iter(i.delete.objects)
            .map(|o| async move {
                let outcome = svc
                    .delete_object_at_coordinator(bucket, &o.key, o.version_id.as_deref())
                    .await;
                (o, outcome)
            })
            .buffered(DELETE_OBJECTS_IN_FLIGHT)
            .collect()
            .await;
        for (o, outcome) in outcomes {
            match outcome {
                Ok(out) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(o.key),
                            version_id: o.version_id,
                            delete_marker: out.delete_marker.then_some(true),
                            delete_marker_version_id: out
                                .delete_marker
                                .then_some(out.version_id)
                                .flatten(),
                        });
                    }
                }
                Err(e) => {
                    let e = s3_error(e);
                    errors.push(Error {
                        code: Some(e.code().as_str().to_string()),
                        key: Some(o.key),
                        message: e.message().map(str::to_string),
                        version_id: o.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn op_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        let (reader, src_bucket, src_key, src_version) = self
            .open_copy_source(
                &i.copy_source,
                CopySourceConditions {
                    if_match: i.copy_source_if_match.as_ref(),
                    if_none_match: i.copy_source_if_none_match.as_ref(),
                    if_modified_since: i.copy_source_if_modified_since.as_ref(),
                    if_unmodified_since: i.copy_source_if_unmodified_since.as_ref(),
                },
                None,
            )
            .await?;
        let src = reader.record.clone();
        let replace_meta = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace_meta && src_bucket == i.bucket && src_key == i.key && src_version.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "copying an object onto itself needs a REPLACE metadata directive"
            ));
        }
        let replace_tags = i
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
        let opts = PutOptions {
            content_type: if replace_meta {
                i.content_type
            } else {
                Some(src.content_type.clone())
            },
            user_meta: if replace_meta {
                metadata_in(i.metadata)
            } else {
                src.user_meta.clone()
            },
            tags: if replace_tags {
                tagging_header(i.tagging.as_deref())?
            } else {
                src.tags.clone()
            },
            declared_size: Some(src.size),
            create_bucket: false,
            content_md5: None,
            write_conditions: Conditions::default(),
            checksums: BodyChecksums::for_copy_of(&src),
            checksum_algorithm: None,
            headers: if replace_meta {
                headers_in(
                    i.cache_control,
                    i.content_disposition,
                    i.content_encoding,
                    i.content_language,
                    i.expires,
                )
            } else {
                src.headers.clone()
            },
        };
        let body = reader.body.map_err(std::io::Error::other);
        let rec = self
            .svc
            .put_object(&i.bucket, &i.key, body, opts)
            .await
            .s3()?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&rec)),
                last_modified: Some(timestamp(rec.created_ms)),
                ..Default::default()
            }),
            copy_source_version_id: version_id(&src),
            version_id: version_id(&rec),
            ..Default::default()
        }))
    }

    pub(super) async fn op_get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let i = req.input;
        let r = self
            .svc
            .stat_object(&i.bucket, &i.key, i.version_id.as_deref())
            .await
            .s3()?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            version_id: version_id(&r),
            tag_set: tags_out(r.tags),
        }))
    }

    pub(super) async fn op_put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let i = req.input;
        let r = self
            .svc
            .put_tags(
                &i.bucket,
                &i.key,
                i.version_id.as_deref(),
                tags_in(i.tagging),
            )
            .await
            .s3()?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: version_id(&r),
        }))
    }

    pub(super) async fn op_delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let i = req.input;
        let r = self
            .svc
            .put_tags(&i.bucket, &i.key, i.version_id.as_deref(), Vec::new())
            .await
            .s3()?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: version_id(&r),
        }))
    }
}
