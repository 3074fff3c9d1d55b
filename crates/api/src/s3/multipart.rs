//! Multipart uploads: create, upload part, complete, abort, list parts and uploads.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use bucketdb_object::{
    BodyChecksums, MAX_PART_NUMBER, PartUpload, PutOptions, RangeSpec, UploadsQuery,
};

use super::S3Api;
use super::checksum::{self, StoredChecksums, set_checksums};
use super::convert::{headers_in, metadata_in, timestamp, version_id};
use super::error::IntoS3;
use super::objects::{CopySourceConditions, body_stream, declared_length, tagging_header};

/// Most parts or uploads listed per page.
const MAX_LISTED: i32 = 1000;

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| s3_error!(InvalidArgument, "part numbers run from 1 to 10000"))
}

/// The part checksums a CompleteMultipartUpload lists must be the ones stored for those
/// parts (S3 answers InvalidPart otherwise). A part whose ETag differs is refused later
/// anyway; equal ETags mean equal bytes, so checking before the commit is sound.
fn check_listed_checksums(
    stored: &[bucketdb_object::PartRecord],
    listed: &[CompletedPart],
) -> S3Result<()> {
    for p in listed {
        let Some(n) = p.part_number.and_then(|n| u32::try_from(n).ok()) else {
            continue;
        };
        let Some(part) = stored.iter().find(|s| s.part_number == n) else {
            continue;
        };
        let given = [
            ("CRC32", &p.checksum_crc32),
            ("CRC32C", &p.checksum_crc32c),
            ("CRC64NVME", &p.checksum_crc64nvme),
            ("SHA1", &p.checksum_sha1),
            ("SHA256", &p.checksum_sha256),
        ];
        for (algorithm, value) in given {
            let Some(value) = value else { continue };
            let have = part.checksums.iter().find(|(a, _)| a == algorithm);
            if have.is_some_and(|(_, v)| v != value) || have.is_none() {
                return Err(s3_error!(
                    InvalidPart,
                    "part {n}: the {algorithm} checksum listed is not the one uploaded"
                ));
            }
        }
    }
    Ok(())
}

impl S3Api {
    pub(super) async fn op_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        // Composite checksums only: a full-object CRC of a multipart upload (CRC64NVME
        // always is one) would need the parts' CRCs combined, which is not done yet.
        let full_object = i
            .checksum_type
            .as_ref()
            .is_some_and(|t| t.as_str() == ChecksumType::FULL_OBJECT);
        let checksum_algorithm = match i.checksum_algorithm.as_ref() {
            None => None,
            Some(a) => Some(checksum::algorithm_name(a.as_str()).ok_or_else(|| {
                s3_error!(InvalidRequest, "unknown checksum algorithm {}", a.as_str())
            })?),
        }
        .filter(|a| *a != "CRC64NVME" && !full_object);
        let opts = PutOptions {
            content_type: i.content_type,
            user_meta: metadata_in(i.metadata),
            tags: tagging_header(i.tagging.as_deref())?,
            checksum_algorithm: checksum_algorithm.map(str::to_string),
            headers: headers_in(
                i.cache_control,
                i.content_disposition,
                i.content_encoding,
                i.content_language,
                i.expires,
            ),
            ..PutOptions::default()
        };
        let up = self
            .svc
            .create_multipart_upload(&i.bucket, &i.key, opts)
            .await
            .s3()?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(up.bucket),
            key: Some(up.key),
            upload_id: Some(up.upload_id),
            checksum_algorithm: up.checksum_algorithm.map(ChecksumAlgorithm::from),
            checksum_type: checksum_algorithm
                .map(|_| ChecksumType::from_static(ChecksumType::COMPOSITE)),
            ..Default::default()
        }))
    }

    pub(super) async fn op_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let S3Request {
            input: i,
            headers,
            trailing_headers,
            ..
        } = req;
        let n = part_number(i.part_number)?;
        let declared = declared_length(i.content_length)?;
        let upload = PartUpload {
            part_number: n,
            declared_size: declared,
            checksums: BodyChecksums::default(),
        };
        let (body, mismatch) = checksum::verify(
            &headers,
            trailing_headers,
            body_stream(i.body),
            upload.checksums.clone(),
        );
        // An upload created with a checksum algorithm needs that checksum on every part,
        // or the object could not get its composite checksum (S3 refuses such parts).
        let wanted = self
            .svc
            .multipart_upload(&i.bucket, &i.key, &i.upload_id)
            .s3()?
            .checksum_algorithm;
        if let Some(algorithm) = wanted.filter(|a| !body.declares(a)) {
            return Err(s3_error!(
                InvalidRequest,
                "this upload was created with the {algorithm} checksum algorithm; send the part's x-amz-checksum-{}",
                algorithm.to_ascii_lowercase()
            ));
        }
        let part = checksum::checked(
            self.svc
                .upload_part_with(&i.bucket, &i.key, &i.upload_id, upload, body)
                .await,
            &mismatch,
        )?;
        let mut out = UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            ..Default::default()
        };
        set_checksums!(out, StoredChecksums::from_pairs(&part.checksums));
        Ok(S3Response::new(out))
    }

    pub(super) async fn op_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let listed = i
            .multipart_upload
            .and_then(|m| m.parts)
            .ok_or_else(|| s3_error!(MalformedXML, "the request lists no parts"))?;
        if listed.len() > MAX_PART_NUMBER as usize {
            return Err(s3_error!(MalformedXML, "too many parts"));
        }
        check_listed_checksums(
            &self.svc.list_parts(&i.bucket, &i.key, &i.upload_id).s3()?,
            &listed,
        )?;
        let mut parts = Vec::with_capacity(listed.len());
        for p in listed {
            let n = part_number(
                p.part_number
                    .ok_or_else(|| s3_error!(InvalidPart, "a part has no number"))?,
            )?;
            let etag = p
                .e_tag
                .map(|e| e.value().to_string())
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} has no ETag"))?;
            parts.push((n, etag));
        }
        let rec = self
            .svc
            .complete_multipart_upload_with(
                &i.bucket,
                &i.key,
                &i.upload_id,
                parts,
                Some(checksum::combine_part_checksums),
            )
            .await
            .s3()?;
        let mut out = CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(rec.key.clone()),
            e_tag: Some(ETag::Strong(rec.etag.clone())),
            location: Some(format!("/{}/{}", i.bucket, rec.key)),
            version_id: version_id(&rec),
            ..Default::default()
        };
        set_checksums!(out, StoredChecksums::all(&rec), type);
        Ok(S3Response::new(out))
    }

    pub(super) async fn op_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        self.svc
            .abort_multipart_upload(&i.bucket, &i.key, &i.upload_id)
            .await
            .s3()?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn op_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let max = i.max_parts.unwrap_or(MAX_LISTED).clamp(0, MAX_LISTED) as usize;
        let after = u32::try_from(i.part_number_marker.unwrap_or(0)).unwrap_or(0);
        let all = self.svc.list_parts(&i.bucket, &i.key, &i.upload_id).s3()?;
        let mut rest = all.into_iter().filter(|p| p.part_number > after);
        let page: Vec<_> = rest.by_ref().take(max).collect();
        let truncated = rest.next().is_some();
        let next = page.last().map(|p| p.part_number as i32);
        let parts = page
            .into_iter()
            .map(|p| {
                let mut part = Part {
                    part_number: Some(p.part_number as i32),
                    e_tag: Some(ETag::Strong(p.etag)),
                    size: Some(p.size as i64),
                    last_modified: Some(timestamp(p.created_ms)),
                    ..Default::default()
                };
                set_checksums!(part, StoredChecksums::from_pairs(&p.checksums));
                part
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            is_truncated: Some(truncated),
            parts: Some(parts),
            owner: Some(super::owner()),
            initiator: None,
            ..Default::default()
        }))
    }

    pub(super) async fn op_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let max = i.max_uploads.unwrap_or(MAX_LISTED).clamp(1, MAX_LISTED) as usize;
        // Uploads live on the node that coordinated their creation: every node is asked
        // for its part of the page (one more than the page, to tell if there are more).
        let key_marker = i.key_marker.clone().filter(|k| !k.is_empty());
        let query = UploadsQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            upload_id_marker: i.upload_id_marker.clone().filter(|_| key_marker.is_some()),
            key_marker,
            limit: max + 1,
        };
        let mut page = self
            .svc
            .list_uploads_everywhere(&i.bucket, query)
            .await
            .s3()?;
        let truncated = page.len() > max;
        page.truncate(max);
        let next = page.last().map(|u| (u.key.clone(), u.upload_id.clone()));
        let uploads = page
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.upload_id),
                initiated: Some(timestamp(u.created_ms)),
                owner: Some(super::owner()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: i.prefix,
            key_marker: i.key_marker,
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: if truncated {
                next.clone().map(|n| n.0)
            } else {
                None
            },
            next_upload_id_marker: if truncated { next.map(|n| n.1) } else { None },
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    /// A part whose bytes come from (a range of) an existing object.
    pub(super) async fn op_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        let n = part_number(i.part_number)?;
        let range = match i.copy_source_range.as_deref() {
            None => None,
            Some(r) => match crate::range::parse_range(r) {
                Ok(Some(full @ RangeSpec::From { end: Some(_), .. })) => Some(full),
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "x-amz-copy-source-range must be bytes=first-last"
                    ));
                }
            },
        };
        let (reader, ..) = self
            .open_copy_source(
                &i.copy_source,
                CopySourceConditions {
                    if_match: i.copy_source_if_match.as_ref(),
                    if_none_match: i.copy_source_if_none_match.as_ref(),
                    if_modified_since: i.copy_source_if_modified_since.as_ref(),
                    if_unmodified_since: i.copy_source_if_unmodified_since.as_ref(),
                },
                range,
            )
            .await?;
        let length = reader.content_length();
        let source_version = version_id(&reader.record);
        let body = futures::TryStreamExt::map_err(reader.body, std::io::Error::other);
        let part = self
            .svc
            .upload_part(&i.bucket, &i.key, &i.upload_id, n, body, Some(length))
            .await
            .s3()?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(part.etag)),
                last_modified: Some(timestamp(part.created_ms)),
                ..Default::default()
            }),
            copy_source_version_id: source_version,
            ..Default::default()
        }))
    }
}
