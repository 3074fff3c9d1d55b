//! Object tags (S3 limits: at most 10, keys ≤ 128 and values ≤ 256 characters).

use std::sync::Arc;

use bucketdb_store::Table;
use bucketdb_store::keys::{object_key, version_key};
use bucketdb_store::records::{ObjectRecord, decode, encode};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::{validate_bucket_name, validate_key, validate_tags};
use crate::versions::{find_version, load_bucket};

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
    /// updated version. In quorum mode the change is acknowledged once a majority of the
    /// key's replicas applied it.
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
        self.check_quorum_reachable(bucket, key)?;
        let since = self.cluster.queue_mark()?;
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let version_id = version_id.map(str::to_string);
        let svc = self.clone();
        let (target, name) = (bucket.clone(), key.clone());
        let rec = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                load_bucket(kv, &bucket)?;
                let ok = object_key(&bucket, &key);
                let current: Option<ObjectRecord> = kv
                    .get(Table::Current, &ok)?
                    .map(|v| decode(&v))
                    .transpose()?;
                let (vkey, mut rec) = match &version_id {
                    Some(v) => find_version(kv, &bucket, &key, v)?
                        .ok_or_else(|| ObjectError::NoSuchVersion(v.clone()))?,
                    None => {
                        let rec = current
                            .clone()
                            .ok_or_else(|| ObjectError::NoSuchKey(key.clone()))?;
                        (version_key(&bucket, &key, rec.seq), rec)
                    }
                };
                if rec.delete_marker {
                    return Err(ObjectError::MethodNotAllowed);
                }
                rec.tags = tags;
                let encoded = encode(&rec)?;
                kv.put(Table::Versions, &vkey, &encoded)?;
                if current.is_some_and(|c| c.seq == rec.seq) {
                    kv.put(Table::Current, &ok, &encoded)?;
                }
                svc.replicate_version(kv, &bucket, &rec)?;
                Ok(rec)
            })
            .await?;
        self.await_quorum_replication(&target, &name, since).await?;
        Ok(rec)
    }
}
