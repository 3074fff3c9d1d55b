//! Buckets: create, delete-if-empty, list, versioning state.

use std::sync::Arc;

use bucketdb_store::keys::{bucket_prefix, prefix_end};
use bucketdb_store::records::{BucketConfig, BucketRecord, Versioning, decode, encode};
use bucketdb_store::{KvRead, KvWrite, Table};

use bucketdb_cluster::replication::ReplOp;

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::validate_bucket_name;
use crate::versions::{MAX_VERSIONS_LISTED, load_bucket};

/// Unfinished uploads aborted per page when their bucket is deleted.
const UPLOAD_ABORT_PAGE: usize = 256;
/// Longest a bucket deletion in a cluster waits for this node's stale copies of deleted
/// objects to be removed (their removals are on their way), and how often it looks.
const BUCKET_DELETE_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);
const BUCKET_DELETE_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// Most buckets one node holds (listing returns them all).
pub const MAX_BUCKETS: u64 = 10_000;

/// When the bucket last changed here (0: never).
pub(crate) fn bucket_stamp(kv: &dyn KvRead, name: &str) -> Result<u64> {
    Ok(match kv.get(Table::BucketStamps, name.as_bytes())? {
        Some(v) => decode(&v)?,
        None => 0,
    })
}

/// Whether a bucket (by its key prefix) still has objects or versions.
fn holds_data(kv: &dyn KvRead, prefix: &[u8], end: Option<&[u8]>) -> Result<bool> {
    for t in [Table::Current, Table::Versions] {
        if !kv.scan(t, prefix, end, 1)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl ObjectService {
    /// Stamp the bucket as changed now and queue its record and settings, as they are
    /// when sent, for every peer.
    fn replicate_bucket(&self, kv: &mut dyn KvWrite, name: &str) -> Result<()> {
        let stamp = self.now_seq().max(bucket_stamp(kv, name)? + 1);
        kv.put(Table::BucketStamps, name.as_bytes(), &encode(&stamp)?)?;
        let op = ReplOp::Bucket {
            name: name.to_string(),
        };
        Ok(self.cluster.enqueue(kv, &op)?)
    }

    pub(crate) fn new_bucket_record(&self, name: &str) -> BucketRecord {
        BucketRecord {
            name: name.to_string(),
            created_ms: self.clock.now_ms(),
            versioning: Versioning::Unversioned,
            lifecycle: Vec::new(),
        }
    }

    /// The bucket's record, creating it when `create` is set and it does not exist.
    pub(crate) fn bucket_for_write(
        &self,
        kv: &mut dyn KvWrite,
        name: &str,
        create: Option<BucketRecord>,
    ) -> Result<BucketRecord> {
        match (load_bucket(kv, name), create) {
            (Ok(b), _) => Ok(b),
            (Err(ObjectError::NoSuchBucket(_)), Some(new)) => {
                self.replicate_bucket(kv, name)?;
                if kv.count(Table::Buckets)? >= MAX_BUCKETS {
                    return Err(ObjectError::InvalidArgument(format!(
                        "a node holds at most {MAX_BUCKETS} buckets"
                    )));
                }
                kv.put(Table::Buckets, name.as_bytes(), &encode(&new)?)?;
                Ok(new)
            }
            (Err(e), _) => Err(e),
        }
    }

    pub async fn create_bucket(self: &Arc<Self>, name: &str) -> Result<BucketRecord> {
        validate_bucket_name(name)?;
        let rec = self.new_bucket_record(name);
        let name = name.to_string();
        let svc = self.clone();
        let created = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                if kv.get(Table::Buckets, name.as_bytes())?.is_some() {
                    return Err(ObjectError::BucketAlreadyOwnedByYou(name));
                }
                svc.bucket_for_write(kv, &name, Some(rec))
            })
            .await?;
        self.cluster.push_bucket_now(&created.name).await;
        Ok(created)
    }

    pub fn head_bucket(&self, name: &str) -> Result<BucketRecord> {
        validate_bucket_name(name)?;
        load_bucket(self.cluster.meta().read()?.as_ref(), name)
    }

    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        let kv = self.cluster.meta().read()?;
        kv.scan(Table::Buckets, b"", None, MAX_BUCKETS as usize)?
            .into_iter()
            .map(|(_, v)| decode(&v).map_err(ObjectError::from))
            .collect()
    }

    /// Delete a bucket that holds no objects and no versions on any node; its unfinished
    /// multipart uploads are aborted first, a page at a time.
    pub async fn delete_bucket(self: &Arc<Self>, name: &str) -> Result<()> {
        validate_bucket_name(name)?;
        let prefix = bucket_prefix(name);
        let end = prefix_end(&prefix);
        let clustered = self.cluster.coverage().is_some();
        // In a cluster, this node's copies may be stale while removals made elsewhere
        // are still on their way here: the whole cluster's listing decides, and this
        // node waits a little for its own copies to follow.
        let settle_until = self.clock.now_ms() + BUCKET_DELETE_SETTLE.as_millis() as u64;
        loop {
            if clustered {
                self.check_empty_everywhere(name).await?;
            }
            let holds = {
                let kv = self.cluster.meta().read()?;
                load_bucket(kv.as_ref(), name)?;
                holds_data(kv.as_ref(), &prefix, end.as_deref())?
            };
            if !holds {
                break;
            }
            if !clustered || self.clock.now_ms() >= settle_until {
                return Err(ObjectError::BucketNotEmpty(name.to_string()));
            }
            tokio::time::sleep(BUCKET_DELETE_POLL).await;
        }
        loop {
            let uploads = self.list_multipart_uploads(name, UPLOAD_ABORT_PAGE)?;
            if uploads.is_empty() {
                break;
            }
            for up in uploads {
                match self
                    .abort_multipart_upload(name, &up.key, &up.upload_id)
                    .await
                {
                    Ok(()) | Err(ObjectError::NoSuchUpload(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let name = name.to_string();
        let pushed = name.clone();
        let svc = self.clone();
        self.cluster
            .meta()
            .write(move |kv| -> Result<_> {
                load_bucket(kv, &name)?;
                svc.replicate_bucket(kv, &name)?;
                // Re-checked inside the transaction: writes may have landed meanwhile.
                if holds_data(&*kv, &prefix, end.as_deref())?
                    || !kv
                        .scan(Table::Uploads, &prefix, end.as_deref(), 1)?
                        .is_empty()
                {
                    return Err(ObjectError::BucketNotEmpty(name));
                }
                kv.delete(Table::Buckets, name.as_bytes())?;
                kv.delete(Table::BucketConfig, name.as_bytes())?;
                Ok(())
            })
            .await?;
        self.cluster.push_bucket_now(&pushed).await;
        Ok(())
    }

    /// `BucketNotEmpty` unless a listing of the whole cluster finds no version of the
    /// bucket (delete markers included). A full page, so entries some replica still
    /// holds but others removed are dropped within it; a page that still ends with a
    /// cursor may have more to come.
    async fn check_empty_everywhere(self: &Arc<Self>, name: &str) -> Result<()> {
        let page = self
            .list_bucket_versions(name, "", None, None, None, MAX_VERSIONS_LISTED)
            .await?;
        if !page.versions.is_empty() || page.next_key_marker.is_some() {
            return Err(ObjectError::BucketNotEmpty(name.to_string()));
        }
        Ok(())
    }

    /// The bucket's optional settings (defaults when none were set).
    pub fn bucket_config(&self, name: &str) -> Result<BucketConfig> {
        validate_bucket_name(name)?;
        let kv = self.cluster.meta().read()?;
        load_bucket(kv.as_ref(), name)?;
        Ok(match kv.get(Table::BucketConfig, name.as_bytes())? {
            Some(v) => decode(&v)?,
            None => BucketConfig::default(),
        })
    }

    /// Change the bucket's optional settings.
    pub async fn update_bucket_config(
        self: &Arc<Self>,
        name: &str,
        change: impl FnOnce(&mut BucketConfig) -> Result<()> + Send + 'static,
    ) -> Result<BucketConfig> {
        validate_bucket_name(name)?;
        let name = name.to_string();
        let pushed = name.clone();
        let svc = self.clone();
        let config = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                load_bucket(kv, &name)?;
                svc.replicate_bucket(kv, &name)?;
                let mut c: BucketConfig = match kv.get(Table::BucketConfig, name.as_bytes())? {
                    Some(v) => decode(&v)?,
                    None => BucketConfig::default(),
                };
                change(&mut c)?;
                crate::names::validate_tags(&c.tags)?;
                kv.put(Table::BucketConfig, name.as_bytes(), &encode(&c)?)?;
                Ok(c)
            })
            .await?;
        self.cluster.push_bucket_now(&pushed).await;
        Ok(config)
    }

    pub async fn set_versioning(self: &Arc<Self>, name: &str, state: Versioning) -> Result<()> {
        validate_bucket_name(name)?;
        if state == Versioning::Unversioned {
            return Err(ObjectError::InvalidArgument(
                "versioning can be Enabled or Suspended, not turned off".into(),
            ));
        }
        let name = name.to_string();
        self.update_bucket(name, move |b| {
            b.versioning = state;
            Ok(())
        })
        .await
    }

    pub(crate) async fn update_bucket(
        self: &Arc<Self>,
        name: String,
        change: impl FnOnce(&mut BucketRecord) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let svc = self.clone();
        let pushed = name.clone();
        self.cluster
            .meta()
            .write(move |kv| -> Result<_> {
                let mut b = load_bucket(kv, &name)?;
                svc.replicate_bucket(kv, &name)?;
                change(&mut b)?;
                kv.put(Table::Buckets, name.as_bytes(), &encode(&b)?)?;
                Ok(())
            })
            .await?;
        self.cluster.push_bucket_now(&pushed).await;
        Ok(())
    }
}
