//! Deleting objects and versions.

use std::sync::Arc;

use bucketdb_store::KvRead;
use bucketdb_store::records::{Body, ObjectRecord};

use crate::ObjectService;
use crate::error::Result;
use crate::names::{validate_bucket_name, validate_key};
use crate::versions::{DeleteOutcome, NULL_VERSION, load_bucket};
use bucketdb_store::records::Versioning;

impl ObjectService {
    /// Delete with S3 semantics: without a version id, unversioned buckets remove the
    /// object and versioned ones add a delete marker; with one, that version is removed
    /// for good. Deleting what does not exist succeeds. In quorum mode the delete is
    /// acknowledged once a majority of the key's replicas applied it.
    pub async fn delete_object(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<DeleteOutcome> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        self.check_quorum_reachable(bucket, key)?;
        let since = self.cluster.queue_mark()?;
        let outcome = self
            .delete_object_if(bucket, key, version_id, |_| Ok(true))
            .await?;
        if outcome.is_some() {
            self.await_quorum_replication(bucket, key, since).await?;
        }
        Ok(outcome.unwrap_or(DeleteOutcome {
            version_id: None,
            delete_marker: false,
        }))
    }

    /// [`ObjectService::delete_object`], done only if `still_wanted` holds when checked
    /// inside the delete's own transaction (background work decides from an older
    /// snapshot and must not act on a key that changed since). `None`: not done.
    pub(crate) async fn delete_object_if(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        still_wanted: impl FnOnce(&dyn KvRead) -> Result<bool> + Send + 'static,
    ) -> Result<Option<DeleteOutcome>> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let version_id = version_id.map(str::to_string);
        let svc = self.clone();
        let now = self.clock.now_ms();
        let (outcome, freed) = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                let b = load_bucket(kv, &bucket)?;
                if !still_wanted(&*kv)? {
                    return Ok((None, false));
                }
                if let Some(v) = version_id {
                    let (removed, freed) = svc.remove_version(kv, &bucket, &key, &v, 0)?;
                    return Ok((
                        Some(DeleteOutcome {
                            delete_marker: removed.as_ref().is_some_and(|r| r.delete_marker),
                            version_id: removed.map(|r| r.version_id),
                        }),
                        freed,
                    ));
                }
                if b.versioning == Versioning::Unversioned {
                    let (removed, freed) =
                        svc.remove_version(kv, &bucket, &key, NULL_VERSION, svc.now_seq())?;
                    return Ok((
                        Some(DeleteOutcome {
                            version_id: removed.map(|r| r.version_id),
                            delete_marker: false,
                        }),
                        freed,
                    ));
                }
                let marker = ObjectRecord {
                    key: key.clone(),
                    version_id: String::new(),
                    seq: 0,
                    delete_marker: true,
                    created_ms: now,
                    size: 0,
                    etag: String::new(),
                    sha256: String::new(),
                    content_type: String::new(),
                    user_meta: Vec::new(),
                    tags: Vec::new(),
                    part_sizes: Vec::new(),
                    body: Body::Chunks(Vec::new()),
                    checksums: Vec::new(),
                    headers: Default::default(),
                };
                let (rec, freed) = svc.install_version(kv, &b, marker, None)?;
                Ok((
                    Some(DeleteOutcome {
                        version_id: Some(rec.version_id),
                        delete_marker: true,
                    }),
                    freed,
                ))
            })
            .await?;
        self.wake_gc(freed);
        Ok(outcome)
    }
}
