//! Writing whole objects.

use std::sync::{Arc, Mutex};

use bucketdb_store::chunks::bucket_hash;
use bucketdb_store::records::{Body, ObjectRecord, StandardHeaders};

use crate::error::{ObjectError, Result};
use crate::ingest::{ByteStream, IngestLimits, StoredBody, ingest};
use crate::names::{
    CONTENT_TYPE_MAX_BYTES, validate_bucket_name, validate_key, validate_standard_headers,
    validate_tags, validate_user_meta,
};
use crate::versions::version_op;
use crate::{Conditions, ObjectService};

/// The content type of objects uploaded without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub user_meta: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// The length the client announced; the body must match it.
    pub declared_size: Option<u64>,
    /// Create the bucket if it does not exist (the REST API's upload does).
    pub create_bucket: bool,
    /// The MD5 the client says the body has (`Content-MD5`); a mismatch stores nothing.
    pub content_md5: Option<[u8; 16]>,
    /// Conditional write (`If-Match` / `If-None-Match: *`), checked against the current
    /// version inside the commit, so it is atomic with respect to other writers.
    pub write_conditions: Conditions,
    /// Checksums the body was verified against, stored with the object.
    pub checksums: BodyChecksums,
    /// Multipart uploads only: the algorithm whose part checksums are combined into the
    /// object's composite checksum (`"CRC32"`, `"SHA256"`, ...).
    pub checksum_algorithm: Option<String>,
    /// `Cache-Control`, `Content-Disposition`, ... to store with the object.
    pub headers: StandardHeaders,
}

/// The checksums of an upload's body, as (algorithm, value) pairs. Values sent as
/// trailers are known only once the body stream has ended, so the stream's owner sets
/// them then; the service reads them after consuming the whole body, before it commits.
#[derive(Clone, Debug, Default)]
pub struct BodyChecksums(Arc<Mutex<Vec<(String, String)>>>);

impl BodyChecksums {
    /// Checksums already known before the body is read (a copy's source).
    pub fn known(values: Vec<(String, String)>) -> Self {
        Self(Arc::new(Mutex::new(values)))
    }

    /// The checksums that still hold for a copy of `source`'s bytes stored as one part:
    /// the whole-body ones, not a multipart composite value (`...-N`).
    pub fn for_copy_of(source: &ObjectRecord) -> Self {
        Self::known(
            source
                .checksums
                .iter()
                .filter(|(_, v)| !v.contains('-'))
                .cloned()
                .collect(),
        )
    }

    /// Record the body's verified checksums.
    pub fn set(&self, values: Vec<(String, String)>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = values;
    }

    pub(crate) fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl PutOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_user_meta(&self.user_meta)?;
        validate_tags(&self.tags)?;
        if self.content_type.as_ref().is_some_and(|c| {
            c.len() > CONTENT_TYPE_MAX_BYTES
                || c.chars().any(|ch| !ch.is_ascii() || ch.is_control())
        }) {
            return Err(crate::ObjectError::InvalidArgument(
                "the content type must be printable ASCII of at most 1024 bytes".into(),
            ));
        }
        validate_standard_headers(&self.headers)
    }
}

impl ObjectService {
    /// Store an object from a stream. Nothing becomes visible unless the whole body
    /// arrived and was stored durably.
    pub async fn put_object(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        body: impl ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        opts.validate()?;
        if !opts.create_bucket {
            self.head_bucket(bucket)?;
        }
        if !opts.write_conditions.is_empty() {
            // The conditions are checked against the newest version.
            self.catch_up(bucket, key).await?;
        }
        // Small bodies hold no chunk buffers; larger ones wait for an upload slot.
        let _slot = match opts.declared_size {
            Some(d) if d <= self.config.inline_threshold as u64 => None,
            _ => Some(self.upload_slot().await?),
        };
        let ingested = ingest(
            &self.cluster,
            bucket_hash(bucket),
            body,
            IngestLimits {
                chunk_size: self.config.chunk_size,
                inline_threshold: self.config.inline_threshold,
                max_size: self.config.max_object_size,
                declared: opts.declared_size,
            },
        )
        .await?;
        if opts.content_md5.is_some_and(|m| m != ingested.md5) {
            return Err(crate::ObjectError::BadDigest);
        }
        let (body, inline) = match ingested.body {
            StoredBody::Inline(data) => (Body::Inline, Some(data)),
            StoredBody::Chunks(c) => (Body::Chunks(c), None),
        };
        let rec = ObjectRecord {
            key: key.to_string(),
            version_id: String::new(),
            seq: 0,
            delete_marker: false,
            created_ms: self.clock.now_ms(),
            size: ingested.size,
            etag: hex::encode(ingested.md5),
            sha256: ingested.sha256,
            content_type: opts
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
            user_meta: opts.user_meta,
            tags: opts.tags,
            part_sizes: Vec::new(),
            body,
            checksums: opts.checksums.take(),
            headers: opts.headers,
            tags_seq: 0,
        };
        let new_bucket = opts.create_bucket.then(|| self.new_bucket_record(bucket));
        let mut rec = rec;
        let mut creating = new_bucket.is_some() && self.head_bucket(bucket).is_err();
        if creating && self.cluster.quorum_required() && self.cluster.membership().is_some() {
            // A quorum write needs its bucket on the replicas first: create it (and
            // push it to them) before preparing.
            match self.create_bucket(bucket).await {
                Ok(_) | Err(ObjectError::BucketAlreadyOwnedByYou(_)) => creating = false,
                Err(e) => return Err(e),
            }
        }
        // Otherwise a bucket created by this write is not on the replicas yet: the write
        // replicates after its commit, like the bucket.
        let prepared = if creating {
            None
        } else {
            self.prepare_quorum(bucket, &mut rec, inline.as_deref())
                .await?
        };
        let bucket = bucket.to_string();
        let svc = self.clone();
        let conditions = opts.write_conditions;
        let target = bucket.clone();
        let committed = ingested
            .guard
            .commit(async move {
                let writer = svc.clone();
                svc.cluster
                    .meta()
                    .write(move |kv| -> Result<_> {
                        let b = writer.bucket_for_write(kv, &bucket, new_bucket)?;
                        if !conditions.is_empty() {
                            check_write_conditions(&*kv, &bucket, &rec.key, &conditions)?;
                        }
                        writer.install_version(kv, &b, rec, inline.as_deref())
                    })
                    .await
            })
            .await;
        let (rec, freed) = self
            .finish_prepared(prepared, committed, |(rec, _)| {
                Some(version_op(&target, rec))
            })
            .await?;
        self.wake_gc(freed);
        if creating {
            self.cluster.push_bucket_now(&target).await;
        }
        Ok(rec)
    }
}

/// `If-None-Match: *` needs the key to be absent; `If-Match` needs the current version
/// to have that ETag (`NoSuchKey` when there is none, as S3 answers).
fn check_write_conditions(
    kv: &dyn bucketdb_store::KvRead,
    bucket: &str,
    key: &str,
    c: &Conditions,
) -> Result<()> {
    use bucketdb_store::keys::object_key;
    use bucketdb_store::records::decode;
    let current: Option<ObjectRecord> = kv
        .get(bucketdb_store::Table::Current, &object_key(bucket, key))?
        .map(|v| decode(&v))
        .transpose()?;
    match (&current, &c.if_none_match, &c.if_match) {
        (Some(_), Some(m), _) if m.trim() == "*" => Err(crate::ObjectError::PreconditionFailed),
        (None, _, Some(_)) => Err(crate::ObjectError::NoSuchKey(key.to_string())),
        (Some(cur), _, Some(_)) => c
            .check(cur)
            .map_err(|_| crate::ObjectError::PreconditionFailed),
        _ => Ok(()),
    }
}
