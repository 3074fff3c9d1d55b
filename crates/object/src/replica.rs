//! Applying changes another node replicated here (`/internal/replicate`).
//!
//! Every version carries the `seq` its coordinator gave it, so replicas order versions
//! the same way whatever order changes arrive in: a copy older than what is stored, or
//! than a removal remembered in `tombstones`, is ignored; a newer one replaces it. Changes
//! applied here are not queued again: only the node where a change was made sends it.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::replication::{
    ReplAck, ReplBatch, ReplPayload, decode_message, encode_message,
};
use bucketdb_store::keys::{bucket_prefix, pending_prefix, prefix_end, tombstone_key, version_key};
use bucketdb_store::records::{
    BucketConfig, BucketRecord, ObjectRecord, PreparedChange, Tombstone, UploadRecord, decode,
    encode,
};
use bucketdb_store::{ChunkRef, KvWrite, Table};

use crate::ObjectService;
use crate::buckets::bucket_stamp;
use crate::error::{ObjectError, Result};
use crate::gc::expired_keys;
use crate::multipart::remove_upload;
use crate::names::{validate_bucket_name, validate_key};
use crate::quorum::{hold_prepared, release_prepared};
use crate::refs::add_refs;
use crate::usage::count_version;
use crate::versions::{
    find_version, load_bucket, refresh_current, remove_version_entry, tombstone_seq,
    write_tombstone,
};

/// How long a removal is remembered. A copy of a removed version still queued
/// somewhere when this has passed (a node down for longer) could bring it back.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl ObjectService {
    /// Forget removals older than [`TOMBSTONE_TTL`], a bounded batch per call;
    /// returns how many.
    pub async fn expire_tombstones(&self) -> Result<u64> {
        let cutoff = self
            .now_ms()
            .saturating_sub(TOMBSTONE_TTL.as_millis() as u64);
        let expired = expired_keys(
            self.cluster.meta().read()?.as_ref(),
            Table::Tombstones,
            &mut |v| Ok(decode::<Tombstone>(v)?.removed_ms <= cutoff),
        )?;
        let n = expired.len() as u64;
        if n > 0 {
            self.cluster
                .meta()
                .write(move |kv| -> Result<()> {
                    for k in &expired {
                        kv.delete(Table::Tombstones, k)?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(n)
    }

    /// Apply a batch a peer sent; answers which of its operations were applied (the
    /// sender retries the rest later).
    pub async fn apply_replicated(self: &Arc<Self>, body: &[u8]) -> Result<Vec<u8>> {
        let batch: ReplBatch = decode_message(body)?;
        let mut ack = ReplAck::default();
        for (number, payload) in batch.ops {
            match self.apply_payload(&batch.source, payload).await {
                Ok(()) => ack.applied.push(number),
                Err(e) => {
                    tracing::debug!(source = %batch.source, error = %e, "replicated change not applied yet");
                }
            }
        }
        Ok(encode_message(&ack)?)
    }

    pub(crate) async fn apply_payload(
        self: &Arc<Self>,
        source: &str,
        payload: ReplPayload,
    ) -> Result<()> {
        match payload {
            ReplPayload::Version {
                bucket,
                record,
                inline,
            } => {
                let rec: ObjectRecord = decode(&record)?;
                if self.holds_exactly(&bucket, &rec)? {
                    // A quorum commit arrives twice (at once, then from the queue).
                    return Ok(());
                }
                let _gate = self.gate_for(&rec).await;
                let fetched = if self.holds_newer(&bucket, &rec)? {
                    Vec::new()
                } else {
                    self.receive_chunks(source, &bucket, &rec).await?
                };
                let svc = self.clone();
                self.write_freeing(move |kv| {
                    svc.install_replica(kv, &bucket, rec, inline.as_deref())
                })
                .await?;
                self.cluster.drop_unreferenced(fetched).await?;
            }
            ReplPayload::Removed {
                bucket,
                key,
                version_id,
                seq,
            } => {
                let now_ms = self.now_ms();
                self.write_freeing(move |kv| {
                    if load_bucket(kv, &bucket).is_err() {
                        return Ok(false);
                    }
                    // The commit of a removal prepared here, or the end of a version
                    // prepared here that is removed already.
                    let mut freed = release_prepared(kv, &bucket, &key, &version_id, seq, now_ms)?;
                    if let Some((vkey, old)) = find_version(kv, &bucket, &key, &version_id)?
                        && old.seq <= seq
                    {
                        freed = remove_version_entry(kv, &vkey, &old, now_ms)?;
                        refresh_current(kv, &bucket, &key)?;
                    }
                    write_tombstone(kv, &bucket, &key, &version_id, seq, now_ms)?;
                    Ok(freed)
                })
                .await?;
            }
            ReplPayload::Prepare {
                bucket,
                record,
                inline,
            } => {
                let rec: ObjectRecord = decode(&record)?;
                let _gate = self.gate_for(&rec).await;
                let fetched = self.receive_chunks(source, &bucket, &rec).await?;
                let (source, now_ms) = (source.to_string(), self.now_ms());
                let held = self
                    .cluster
                    .meta()
                    .write(move |kv| {
                        let change = PreparedChange::Version {
                            record: Box::new(rec),
                            inline,
                        };
                        hold_prepared(kv, &source, &bucket, change, now_ms)
                    })
                    .await;
                self.cluster.drop_unreferenced(fetched).await?;
                held?;
            }
            ReplPayload::PrepareRemoval {
                bucket,
                key,
                version_id,
                seq,
            } => {
                validate_bucket_name(&bucket)?;
                validate_key(&key)?;
                let (source, now_ms) = (source.to_string(), self.now_ms());
                self.cluster
                    .meta()
                    .write(move |kv| {
                        let change = PreparedChange::Removal {
                            key,
                            version_id,
                            seq,
                        };
                        hold_prepared(kv, &source, &bucket, change, now_ms)
                    })
                    .await?;
            }
            ReplPayload::Abort {
                bucket,
                key,
                version_id,
                seq,
            } => {
                let now_ms = self.now_ms();
                self.write_freeing(move |kv| {
                    release_prepared(kv, &bucket, &key, &version_id, seq, now_ms)
                })
                .await?;
            }
            ReplPayload::Bucket {
                name,
                record,
                config,
                stamp,
            } => {
                validate_bucket_name(&name)?;
                let now_ms = self.now_ms();
                self.write_freeing(move |kv| {
                    apply_bucket(kv, &name, record, config, stamp, now_ms)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Run a metadata change that reports whether chunks became garbage, and wake GC
    /// if they did.
    async fn write_freeing(
        &self,
        change: impl FnOnce(&mut dyn KvWrite) -> Result<bool> + Send + 'static,
    ) -> Result<()> {
        let freed = self.cluster.meta().write(change).await?;
        self.wake_gc(freed);
        Ok(())
    }

    /// The receive gate, for a version with chunk files (inline ones have none for GC
    /// to race with, so they keep group commit).
    async fn gate_for(&self, rec: &ObjectRecord) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        if rec.chunks().is_empty() {
            None
        } else {
            Some(self.cluster.receive_gate().await)
        }
    }

    /// Check a version another node sent and make sure its chunks are here, fetching
    /// those that are not from the sender; returns the chunks it fetched (to be deleted
    /// again if the change does not take them).
    async fn receive_chunks(
        &self,
        source: &str,
        bucket: &str,
        rec: &ObjectRecord,
    ) -> Result<Vec<ChunkRef>> {
        validate_bucket_name(bucket)?;
        validate_key(&rec.key)?;
        let mut fetched = Vec::new();
        for chunk in rec.chunks() {
            match self.cluster.fetch_chunk(source, chunk).await {
                Ok(true) => fetched.push(chunk.clone()),
                Ok(false) => {}
                Err(e) => {
                    self.cluster.drop_unreferenced(fetched).await?;
                    return Err(e.into());
                }
            }
        }
        Ok(fetched)
    }

    /// Whether this node holds `rec` exactly as it is and nothing prepared of its
    /// version: installing it would write nothing new.
    fn holds_exactly(&self, bucket: &str, rec: &ObjectRecord) -> Result<bool> {
        let kv = self.cluster.meta().read()?;
        let same = find_version(kv.as_ref(), bucket, &rec.key, &rec.version_id)?
            .is_some_and(|(_, held)| held == *rec);
        if !same {
            return Ok(false);
        }
        let prefix = pending_prefix(bucket, &rec.key, &rec.version_id);
        let end = prefix_end(&prefix);
        Ok(kv
            .scan(Table::Pending, &prefix, end.as_deref(), 1)?
            .is_empty())
    }

    /// Whether this node already holds `rec`'s version at its `seq` or later, or removed
    /// it: installing it would change nothing, so its chunks are not fetched.
    fn holds_newer(&self, bucket: &str, rec: &ObjectRecord) -> Result<bool> {
        let kv = self.cluster.meta().read()?;
        let tkey = tombstone_key(bucket, &rec.key, &rec.version_id);
        if tombstone_seq(kv.as_ref(), &tkey)?.is_some_and(|removed| removed >= rec.seq) {
            return Ok(true);
        }
        Ok(
            find_version(kv.as_ref(), bucket, &rec.key, &rec.version_id)?
                .is_some_and(|(_, held)| held.seq >= rec.seq),
        )
    }

    /// Install a version made on another node, unless this node already has it or
    /// something newer in its place. Returns whether chunks became garbage.
    fn install_replica(
        &self,
        kv: &mut dyn KvWrite,
        bucket: &str,
        rec: ObjectRecord,
        inline: Option<&[u8]>,
    ) -> Result<bool> {
        load_bucket(kv, bucket)?;
        let key = rec.key.clone();
        let now_ms = self.now_ms();
        // The commit of a quorum write prepared here: the prepared copy has done its job.
        let mut freed = release_prepared(kv, bucket, &key, &rec.version_id, rec.seq, now_ms)?;
        let tkey = tombstone_key(bucket, &key, &rec.version_id);
        if tombstone_seq(kv, &tkey)?.is_some_and(|removed| removed >= rec.seq) {
            return Ok(freed);
        }
        if let Some((vkey, old)) = find_version(kv, bucket, &key, &rec.version_id)? {
            if old.seq > rec.seq {
                return Ok(freed);
            }
            if old.seq == rec.seq {
                // The same version with other tags (same chunks, same size): the later
                // tags stay, whichever copy arrives last.
                if later_tags(&rec, &old) {
                    kv.put(Table::Versions, &vkey, &encode(&rec)?)?;
                    refresh_current(kv, bucket, &key)?;
                }
                return Ok(freed);
            }
            freed |= remove_version_entry(kv, &vkey, &old, now_ms)?;
        }
        let vkey = version_key(bucket, &key, rec.seq);
        if let Some(other) = kv.get(Table::Versions, &vkey)? {
            // Two coordinators gave different versions the same seq: every replica keeps
            // the one with the greater version id, so they all agree.
            let other: ObjectRecord = decode(&other)?;
            if other.version_id >= rec.version_id {
                return Ok(freed);
            }
            freed |= remove_version_entry(kv, &vkey, &other, now_ms)?;
        }
        kv.put(Table::Versions, &vkey, &encode(&rec)?)?;
        if let Some(data) = inline {
            kv.put(Table::Inline, &vkey, data)?;
        }
        add_refs(kv, rec.chunks())?;
        count_version(kv, &rec, true)?;
        refresh_current(kv, bucket, &key)?;
        Ok(freed)
    }
}

/// Whether copy `a` of a version has later tags than copy `b` (same version, same
/// `seq`). Equal stamps (two coordinators in the same microsecond) are settled by the
/// tags themselves, so every replica keeps the same copy.
pub(crate) fn later_tags(a: &ObjectRecord, b: &ObjectRecord) -> bool {
    (a.tags_seq, &a.tags) > (b.tags_seq, &b.tags)
}

/// Make a bucket look as it does on the node that changed it: created or updated with
/// its record and settings, or deleted once it holds no objects here too (until then
/// the sender retries, as the removals of its objects arrive). Unfinished multipart
/// uploads held here go with the bucket, as S3 deletes a bucket with uploads in
/// progress. Returns whether chunks became garbage.
fn apply_bucket(
    kv: &mut dyn KvWrite,
    name: &str,
    record: Option<Vec<u8>>,
    config: Option<Vec<u8>>,
    stamp: u64,
    now_ms: u64,
) -> Result<bool> {
    if bucket_stamp(kv, name)? >= stamp {
        // This node has this change already, or a later one.
        return Ok(false);
    }
    let mut freed = false;
    kv.put(Table::BucketStamps, name.as_bytes(), &encode(&stamp)?)?;
    match record {
        Some(record) => {
            let rec: BucketRecord = decode(&record)?;
            if rec.name != name {
                return Err(ObjectError::InvalidArgument(
                    "a replicated bucket record names another bucket".into(),
                ));
            }
            kv.put(Table::Buckets, name.as_bytes(), &record)?;
            match config {
                Some(c) => {
                    decode::<BucketConfig>(&c)?;
                    kv.put(Table::BucketConfig, name.as_bytes(), &c)?;
                }
                None => {
                    kv.delete(Table::BucketConfig, name.as_bytes())?;
                }
            }
        }
        None => {
            if kv.get(Table::Buckets, name.as_bytes())?.is_none() {
                return Ok(false);
            }
            let prefix = bucket_prefix(name);
            let end = prefix_end(&prefix);
            for t in [Table::Current, Table::Versions] {
                if !kv.scan(t, &prefix, end.as_deref(), 1)?.is_empty() {
                    return Err(ObjectError::BucketNotEmpty(name.to_string()));
                }
            }
            loop {
                let uploads = kv.scan(
                    Table::Uploads,
                    &prefix,
                    end.as_deref(),
                    UPLOADS_DROPPED_PAGE,
                )?;
                for (uk, v) in &uploads {
                    let upload: UploadRecord = decode(v)?;
                    freed |= remove_upload(kv, uk, &upload.upload_id, now_ms)?;
                }
                if uploads.len() < UPLOADS_DROPPED_PAGE {
                    break;
                }
            }
            kv.delete(Table::Buckets, name.as_bytes())?;
            kv.delete(Table::BucketConfig, name.as_bytes())?;
        }
    }
    Ok(freed)
}

/// Uploads read per scan while dropping those of a deleted bucket.
const UPLOADS_DROPPED_PAGE: usize = 256;
