//! Multipart uploads with S3's rules: parts 1..=10000, each at least 5 MiB except the
//! last, completed with matching ETags in ascending order.

use std::collections::HashMap;
use std::sync::Arc;

use bucketdb_store::chunks::bucket_hash;
use bucketdb_store::keys::{part_key, parts_prefix, prefix_end, upload_key};
use bucketdb_store::records::{Body, ObjectRecord, PartRecord, UploadRecord, decode, encode};
use bucketdb_store::{KvRead, KvWrite, StoreError, Table};
use md5::{Digest, Md5};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::ingest::{ByteStream, IngestLimits, StoredBody, chunks_sha256, ingest};
use crate::names::{validate_bucket_name, validate_key};
use crate::put::{BodyChecksums, DEFAULT_CONTENT_TYPE, PutOptions};
use crate::refs::{add_refs, release_refs};
use crate::versions::{load_bucket, version_op};

pub const MAX_PART_NUMBER: u32 = 10_000;
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Longest upload id accepted from a client.
const UPLOAD_ID_MAX_BYTES: usize = 128;

fn check_upload_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > UPLOAD_ID_MAX_BYTES || id.contains('\0') {
        return Err(ObjectError::NoSuchUpload(id.to_string()));
    }
    Ok(())
}

fn load_upload(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(Vec<u8>, UploadRecord)> {
    let k = upload_key(bucket, key, upload_id);
    match kv.get(Table::Uploads, &k)? {
        Some(v) => Ok((k, decode(&v)?)),
        None => Err(ObjectError::NoSuchUpload(upload_id.to_string())),
    }
}

fn load_parts(kv: &dyn KvRead, upload_id: &str) -> Result<Vec<PartRecord>, StoreError> {
    let prefix = parts_prefix(upload_id);
    kv.scan(
        Table::Parts,
        &prefix,
        prefix_end(&prefix).as_deref(),
        MAX_PART_NUMBER as usize,
    )?
    .into_iter()
    .map(|(_, v)| decode(&v))
    .collect()
}

/// Delete an upload and its parts, releasing their chunks; returns whether GC has work.
pub(crate) fn remove_upload(
    kv: &mut dyn KvWrite,
    upload_key: &[u8],
    upload_id: &str,
    now_ms: u64,
) -> Result<bool> {
    let mut freed = false;
    for p in load_parts(kv, upload_id)? {
        freed |= release_refs(kv, &p.chunks, now_ms)?;
        kv.delete(Table::Parts, &part_key(upload_id, p.part_number))?;
    }
    kv.delete(Table::Uploads, upload_key)?;
    Ok(freed)
}

impl ObjectService {
    pub async fn create_multipart_upload(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<UploadRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        opts.validate()?;
        let upload_id =
            self.cluster
                .new_upload_id(&hex::encode(bucketdb_store::env::random_bytes::<16>(
                    self.random.as_ref(),
                )));
        let up = UploadRecord {
            upload_id,
            bucket: bucket.to_string(),
            key: key.to_string(),
            created_ms: self.clock.now_ms(),
            content_type: opts
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
            user_meta: opts.user_meta,
            tags: opts.tags,
            checksum_algorithm: opts.checksum_algorithm,
            headers: opts.headers,
        };
        let new_bucket = opts.create_bucket.then(|| self.new_bucket_record(bucket));
        let svc = self.clone();
        self.cluster
            .meta()
            .write(move |kv| -> Result<_> {
                svc.bucket_for_write(kv, &up.bucket, new_bucket)?;
                kv.put(
                    Table::Uploads,
                    &upload_key(&up.bucket, &up.key, &up.upload_id),
                    &encode(&up)?,
                )?;
                Ok(up)
            })
            .await
    }

    pub async fn upload_part(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: impl ByteStream,
        declared_size: Option<u64>,
    ) -> Result<PartRecord> {
        let part = PartUpload {
            part_number,
            declared_size,
            checksums: BodyChecksums::default(),
        };
        self.upload_part_with(bucket, key, upload_id, part, body)
            .await
    }

    /// Store one part of an upload, with the checksums its body was verified against.
    pub async fn upload_part_with(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: PartUpload,
        body: impl ByteStream,
    ) -> Result<PartRecord> {
        let PartUpload {
            part_number,
            declared_size,
            checksums,
        } = part;
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        check_upload_id(upload_id)?;
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(ObjectError::InvalidArgument(format!(
                "part numbers run from 1 to {MAX_PART_NUMBER}"
            )));
        }
        load_upload(self.cluster.meta().read()?.as_ref(), bucket, key, upload_id)?;
        let _slot = self.upload_slot().await?;
        let ingested = ingest(
            &self.cluster,
            bucket_hash(bucket),
            body,
            IngestLimits {
                chunk_size: self.config.chunk_size,
                inline_threshold: 0,
                max_size: MAX_PART_SIZE.min(self.config.max_object_size),
                declared: declared_size,
            },
        )
        .await?;
        let StoredBody::Chunks(chunks) = ingested.body else {
            return Err(ObjectError::Internal("a part was kept inline".into()));
        };
        let part = PartRecord {
            part_number,
            etag: hex::encode(ingested.md5),
            size: ingested.size,
            created_ms: self.clock.now_ms(),
            chunks,
            checksums: checksums.take(),
        };
        let (bucket, key, upload_id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let now = self.clock.now_ms();
        let svc = self.clone();
        let (part, freed) = ingested
            .guard
            .commit(async move {
                svc.cluster
                    .meta()
                    .write(move |kv| -> Result<_> {
                        load_upload(kv, &bucket, &key, &upload_id)?;
                        let pk = part_key(&upload_id, part_number);
                        let mut freed = false;
                        if let Some(old) = kv.get(Table::Parts, &pk)? {
                            let old: PartRecord = decode(&old)?;
                            freed = release_refs(kv, &old.chunks, now)?;
                        }
                        kv.put(Table::Parts, &pk, &encode(&part)?)?;
                        add_refs(kv, &part.chunks)?;
                        Ok((part, freed))
                    })
                    .await
            })
            .await?;
        self.wake_gc(freed);
        Ok(part)
    }

    /// The record of an unfinished upload.
    pub fn multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        check_upload_id(upload_id)?;
        let kv = self.cluster.meta().read()?;
        Ok(load_upload(kv.as_ref(), bucket, key, upload_id)?.1)
    }

    pub fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<PartRecord>> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        check_upload_id(upload_id)?;
        let kv = self.cluster.meta().read()?;
        load_upload(kv.as_ref(), bucket, key, upload_id)?;
        Ok(load_parts(kv.as_ref(), upload_id)?)
    }

    /// Unfinished uploads of a bucket (at most `limit`).
    pub fn list_multipart_uploads(&self, bucket: &str, limit: usize) -> Result<Vec<UploadRecord>> {
        validate_bucket_name(bucket)?;
        let kv = self.cluster.meta().read()?;
        load_bucket(kv.as_ref(), bucket)?;
        let prefix = bucketdb_store::keys::bucket_prefix(bucket);
        kv.scan(
            Table::Uploads,
            &prefix,
            prefix_end(&prefix).as_deref(),
            limit,
        )?
        .into_iter()
        .map(|(_, v)| decode(&v).map_err(ObjectError::from))
        .collect()
    }

    pub async fn abort_multipart_upload(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        check_upload_id(upload_id)?;
        let (bucket, key, upload_id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let now = self.clock.now_ms();
        let freed = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                let (uk, _) = load_upload(kv, &bucket, &key, &upload_id)?;
                remove_upload(kv, &uk, &upload_id, now)
            })
            .await?;
        self.wake_gc(freed);
        Ok(())
    }

    /// Assemble the listed parts into an object. Parts uploaded but not listed are
    /// discarded. The ETag is S3's: MD5 of the concatenated part MD5s, then `-N`.
    pub async fn complete_multipart_upload(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<ObjectRecord> {
        self.complete_multipart_upload_with(bucket, key, upload_id, parts, None)
            .await
    }

    /// As [`Self::complete_multipart_upload`]; with `combine`, an upload that declared a
    /// checksum algorithm, and whose parts all carry that checksum, gets the composite
    /// checksum S3 gives it: the checksum of the part checksums, then `-N`.
    pub async fn complete_multipart_upload_with(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
        combine: Option<CombineChecksums>,
    ) -> Result<ObjectRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        check_upload_id(upload_id)?;
        if parts.is_empty() {
            return Err(ObjectError::InvalidPart(
                "at least one part is required".into(),
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ObjectError::InvalidPartOrder);
        }
        let (bucket, key, upload_id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let now = self.clock.now_ms();
        let completion = Completion {
            key: key.clone(),
            upload_id: upload_id.clone(),
            parts,
            now_ms: now,
            max_size: self.config.max_object_size,
            combine,
        };
        // In quorum mode the object is prepared on a majority of its replicas before the
        // commit, which checks that the upload still assembles to the same chunks.
        let mut rec = {
            let kv = self.cluster.meta().read()?;
            load_bucket(kv.as_ref(), &bucket)?;
            completion.assemble(kv.as_ref(), &bucket)?.1
        };
        let prepared = self.prepare_quorum(&bucket, &mut rec, None).await?;
        let svc = self.clone();
        let target = bucket.clone();
        let committed = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                let b = load_bucket(kv, &target)?;
                let (uk, assembled) = completion.assemble(&*kv, &target)?;
                if assembled.body != rec.body || assembled.etag != rec.etag {
                    return Err(ObjectError::InvalidPart(
                        "the upload's parts changed while it was being completed".into(),
                    ));
                }
                // The object takes its own references first, so releasing the parts
                // frees only the chunks of parts left out.
                let (rec, mut freed) = svc.install_version(kv, &b, rec, None)?;
                freed |= remove_upload(kv, &uk, &completion.upload_id, completion.now_ms)?;
                Ok((rec, freed))
            })
            .await;
        let (rec, freed) = self
            .finish_prepared(prepared, committed, |(rec, _)| {
                Some(version_op(&bucket, rec))
            })
            .await?;
        self.wake_gc(freed);
        Ok(rec)
    }
}

/// What CompleteMultipartUpload asks for.
struct Completion {
    key: String,
    upload_id: String,
    parts: Vec<(u32, String)>,
    now_ms: u64,
    max_size: u64,
    combine: Option<CombineChecksums>,
}

impl Completion {
    /// The upload's key in the uploads table and the object its listed parts make (no
    /// version id or `seq` yet), checked against the parts stored in `kv`.
    fn assemble(&self, kv: &dyn KvRead, bucket: &str) -> Result<(Vec<u8>, ObjectRecord)> {
        let (uk, up) = load_upload(kv, bucket, &self.key, &self.upload_id)?;
        let stored: HashMap<u32, PartRecord> = load_parts(kv, &self.upload_id)?
            .into_iter()
            .map(|p| (p.part_number, p))
            .collect();
        let mut chosen = Vec::with_capacity(self.parts.len());
        for (i, (n, etag)) in self.parts.iter().enumerate() {
            let want = etag.trim_matches('"');
            let p = stored.get(n).filter(|p| p.etag == want).ok_or_else(|| {
                ObjectError::InvalidPart(format!("part {n} with ETag {etag} was not uploaded"))
            })?;
            if i + 1 < self.parts.len() && p.size < MIN_PART_SIZE {
                return Err(ObjectError::EntityTooSmall {
                    part: *n,
                    min: MIN_PART_SIZE,
                });
            }
            chosen.push(p);
        }
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        if size > self.max_size {
            return Err(ObjectError::EntityTooLarge { max: self.max_size });
        }
        let mut md5s = Md5::new();
        for p in &chosen {
            let raw = hex::decode(&p.etag).map_err(|e| ObjectError::Internal(e.to_string()))?;
            md5s.update(raw);
        }
        let chunks: Vec<_> = chosen
            .iter()
            .flat_map(|p| p.chunks.iter().cloned())
            .collect();
        let rec = ObjectRecord {
            key: self.key.clone(),
            version_id: String::new(),
            seq: 0,
            delete_marker: false,
            created_ms: self.now_ms,
            size,
            etag: format!("{}-{}", hex::encode(md5s.finalize()), chosen.len()),
            sha256: chunks_sha256(&chunks),
            content_type: up.content_type.clone(),
            user_meta: up.user_meta.clone(),
            tags: up.tags.clone(),
            part_sizes: chosen.iter().map(|p| p.size).collect(),
            body: Body::Chunks(chunks),
            checksums: composite_checksum(up.checksum_algorithm.as_deref(), &chosen, self.combine),
            headers: up.headers.clone(),
            tags_seq: 0,
        };
        Ok((uk, rec))
    }
}

/// One part as the caller uploads it.
#[derive(Clone, Debug, Default)]
pub struct PartUpload {
    pub part_number: u32,
    /// The length the client announced; the body must match it.
    pub declared_size: Option<u64>,
    /// Checksums the body was verified against, stored with the part.
    pub checksums: BodyChecksums,
}

/// Combines the base64 checksums of `algorithm`, one per part in order, into the value
/// of the object's composite checksum (without the `-N` suffix); `None` if it cannot.
pub type CombineChecksums = fn(algorithm: &str, parts: &[&str]) -> Option<String>;

/// The composite checksum of an upload of `algorithm` assembled from `parts`, if every
/// part has that checksum.
fn composite_checksum(
    algorithm: Option<&str>,
    parts: &[&PartRecord],
    combine: Option<CombineChecksums>,
) -> Vec<(String, String)> {
    let (Some(algorithm), Some(combine)) = (algorithm, combine) else {
        return Vec::new();
    };
    let values: Option<Vec<&str>> = parts
        .iter()
        .map(|p| {
            p.checksums
                .iter()
                .find(|(a, _)| a == algorithm)
                .map(|(_, v)| v.as_str())
        })
        .collect();
    values
        .and_then(|v| combine(algorithm, &v))
        .map(|c| vec![(algorithm.to_string(), format!("{c}-{}", parts.len()))])
        .unwrap_or_default()
}
