//! Deleting objects and versions.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::membership::network::PATH_DELETE;
use bucketdb_cluster::replication::{decode_message, encode_message};
use bucketdb_store::KvRead;
use bucketdb_store::records::{Body, ObjectRecord};
use serde::{Deserialize, Serialize};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::{validate_bucket_name, validate_key};
use crate::versions::{DeleteOutcome, NULL_VERSION, load_bucket};
use bucketdb_store::records::Versioning;

/// How much longer than the replication timeout (the coordinator's own quorum wait) a
/// node waits for a coordinator's answer to a delete.
const REMOTE_DELETE_SPARE: Duration = Duration::from_secs(10);

/// A delete one node asks of a key's coordinator. DeleteObjects names keys with
/// different coordinators, so it cannot be forwarded whole like other requests; each
/// key's delete is made where every other change of that key is.
#[derive(Serialize, Deserialize)]
struct RemoteDelete {
    bucket: String,
    key: String,
    version_id: Option<String>,
}

/// The coordinator's answer to a [`RemoteDelete`].
#[derive(Serialize, Deserialize)]
enum RemoteDeleteReply {
    Deleted {
        version_id: Option<String>,
        delete_marker: bool,
    },
    NoSuchBucket(String),
    QuorumNotReached {
        durable: usize,
        needed: usize,
    },
    /// The coordinator could not reach enough replicas; try again later (503).
    Unavailable(String),
    /// The request itself was wrong (400).
    Invalid(String),
    Failed(String),
}

impl ObjectService {
    /// [`ObjectService::delete_object`], made by the key's coordinator (the first of
    /// its replicas that can be reached; this node when it comes first or none can).
    pub async fn delete_object_at_coordinator(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<DeleteOutcome> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        let request = encode_message(&RemoteDelete {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
        })?;
        let timeout =
            Duration::from_millis(self.cluster.replication_timeout_ms()) + REMOTE_DELETE_SPARE;
        for (id, address) in self.cluster.coordinators(bucket, key) {
            let answer = self
                .cluster
                .call_peer(&address, PATH_DELETE, request.clone(), timeout)
                .await
                .map_err(|e| {
                    ObjectError::Replication(format!(
                        "the key's coordinator {id} did not answer the delete: {e}"
                    ))
                })?;
            let Some(answer) = answer else {
                continue;
            };
            return match decode_message::<RemoteDeleteReply>(&answer)? {
                RemoteDeleteReply::Deleted {
                    version_id,
                    delete_marker,
                } => Ok(DeleteOutcome {
                    version_id,
                    delete_marker,
                }),
                RemoteDeleteReply::NoSuchBucket(b) => Err(ObjectError::NoSuchBucket(b)),
                RemoteDeleteReply::QuorumNotReached { durable, needed } => {
                    Err(ObjectError::QuorumNotReached { durable, needed })
                }
                RemoteDeleteReply::Unavailable(why) => Err(ObjectError::Replication(why)),
                RemoteDeleteReply::Invalid(why) => Err(ObjectError::InvalidArgument(why)),
                RemoteDeleteReply::Failed(why) => Err(ObjectError::Internal(format!(
                    "the key's coordinator {id} could not delete it: {why}"
                ))),
            };
        }
        self.delete_object(bucket, key, version_id).await
    }

    /// `POST /internal/delete`: make a delete another node asked of this node as the
    /// key's coordinator.
    pub async fn answer_remote_delete(self: &Arc<Self>, body: &[u8]) -> Result<Vec<u8>> {
        let r: RemoteDelete = decode_message(body)?;
        let reply = match self
            .delete_object(&r.bucket, &r.key, r.version_id.as_deref())
            .await
        {
            Ok(out) => RemoteDeleteReply::Deleted {
                version_id: out.version_id,
                delete_marker: out.delete_marker,
            },
            Err(ObjectError::NoSuchBucket(b)) => RemoteDeleteReply::NoSuchBucket(b),
            Err(ObjectError::QuorumNotReached { durable, needed }) => {
                RemoteDeleteReply::QuorumNotReached { durable, needed }
            }
            Err(ObjectError::Replication(why)) => RemoteDeleteReply::Unavailable(why),
            Err(
                e @ (ObjectError::InvalidArgument(_)
                | ObjectError::InvalidKey(_)
                | ObjectError::KeyTooLong { .. }
                | ObjectError::InvalidBucketName(_)),
            ) => RemoteDeleteReply::Invalid(e.to_string()),
            Err(e) => RemoteDeleteReply::Failed(e.to_string()),
        };
        Ok(encode_message(&reply)?)
    }

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
