//! Object tags (S3 limits: at most 10, keys ≤ 128 and values ≤ 256 characters).

use std::sync::Arc;

use bucketdb_store::keys::{object_key, version_key};
use bucketdb_store::records::{ObjectRecord, decode, encode};
use bucketdb_store::{KvRead, Table};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::{validate_bucket_name, validate_key, validate_tags};
use crate::quorum::Prepared;
use crate::versions::{find_version, load_bucket, version_op};

impl ObjectService {
    pub async fn get_tags(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        Ok(self.stat_object(bucket, key, version_id).await?.tags)
    }

    /// Replace the tags of the current version (or of `version_id`); returns the
    /// updated version. In quorum mode the new tags are prepared on a majority of the
    /// key's replicas first: without one they are not set and the answer is 503.
    pub async fn put_tags(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> Result<ObjectRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        validate_tags(&tags)?;
        let prepared = match self.quorum_plan(bucket, key) {
            Some(plan) => {
                self.catch_up(bucket, key).await?;
                let (mut rec, inline) = {
                    let kv = self.cluster.meta().read()?;
                    let (vkey, rec, _) = tag_target(kv.as_ref(), bucket, key, version_id)?;
                    (rec, kv.get(Table::Inline, &vkey)?)
                };
                rec.tags = tags.clone();
                rec.tags_seq = self.next_tags_seq(&rec);
                Some(
                    self.prepare_record(plan, bucket, &rec, inline.as_deref())
                        .await?,
                )
            }
            None => None,
        };
        // The tags' `seq` prepared, if any: the commit keeps it or goes higher.
        let prepared_tags_seq = prepared.as_ref().map_or(0, Prepared::tags_seq);
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let target = bucket.clone();
        // Committed on the version prepared, even if another became current meanwhile.
        let version_id = match &prepared {
            Some(p) => Some(p.version_id().to_string()),
            None => version_id.map(str::to_string),
        };
        let svc = self.clone();
        let committed = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                let (vkey, mut rec, current) =
                    tag_target(&*kv, &bucket, &key, version_id.as_deref())?;
                rec.tags = tags;
                rec.tags_seq = svc.next_tags_seq(&rec).max(prepared_tags_seq);
                let encoded = encode(&rec)?;
                kv.put(Table::Versions, &vkey, &encoded)?;
                if current {
                    kv.put(Table::Current, &object_key(&bucket, &key), &encoded)?;
                }
                svc.replicate_version(kv, &bucket, &rec)?;
                Ok(rec)
            })
            .await;
        self.finish_prepared(prepared, committed, |rec| Some(version_op(&target, rec)))
            .await
    }
}

impl ObjectService {
    /// The `tags_seq` for new tags of `rec` made now: later than its current tags'.
    fn next_tags_seq(&self, rec: &ObjectRecord) -> u64 {
        self.now_seq().max(rec.tags_seq + 1)
    }
}

/// The version whose tags a change of `bucket/key`'s tags (or of its version
/// `version_id`) replaces: its key in the versions table, its record, and whether it is
/// the current version.
fn tag_target(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<(Vec<u8>, ObjectRecord, bool)> {
    load_bucket(kv, bucket)?;
    let current: Option<ObjectRecord> = kv
        .get(Table::Current, &object_key(bucket, key))?
        .map(|v| decode(&v))
        .transpose()?;
    let (vkey, rec) = match version_id {
        Some(v) => find_version(kv, bucket, key, v)?
            .ok_or_else(|| ObjectError::NoSuchVersion(v.to_string()))?,
        None => {
            let rec = current
                .clone()
                .ok_or_else(|| ObjectError::NoSuchKey(key.to_string()))?;
            (version_key(bucket, key, rec.seq), rec)
        }
    };
    if rec.delete_marker {
        return Err(ObjectError::MethodNotAllowed);
    }
    let is_current = current.is_some_and(|c| c.seq == rec.seq);
    Ok((vkey, rec, is_current))
}
