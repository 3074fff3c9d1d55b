//! Deleting objects and versions.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::membership::network::PATH_DELETE;
use bucketdb_cluster::replication::{ReplOp, decode_message, encode_message};
use bucketdb_store::KvRead;
use bucketdb_store::records::ObjectRecord;
use serde::{Deserialize, Serialize};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::{validate_bucket_name, validate_key};
use crate::quorum::Prepared;
use crate::versions::{DeleteOutcome, NULL_VERSION, find_version, load_bucket, version_op};
use bucketdb_store::records::{BucketRecord, Versioning};

/// How much longer than twice the replication timeout (the coordinator's own quorum
/// waits: the prepare, then the commit) a node waits for a coordinator's answer to a
/// delete.
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
            Duration::from_millis(self.cluster.replication_timeout_ms()) * 2 + REMOTE_DELETE_SPARE;
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
    /// prepared on a majority of the key's replicas first: without one it is not made
    /// and the answer is 503.
    pub async fn delete_object(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<DeleteOutcome> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        let b = load_bucket(self.cluster.meta().read()?.as_ref(), bucket)?;
        let mut deletion = self.deletion_for(&b, key, version_id);
        let prepared = self.prepare_deletion(bucket, key, &mut deletion).await?;
        let committed = self
            .commit_deletion(bucket, key, move |_, _| Ok(Some(deletion)))
            .await;
        let done = self
            .finish_prepared(prepared, committed, |done| {
                done.as_ref().and_then(|(_, op)| op.clone())
            })
            .await?;
        Ok(done.map_or(
            DeleteOutcome {
                version_id: None,
                delete_marker: false,
            },
            |(outcome, _)| outcome,
        ))
    }

    /// [`ObjectService::delete_object`] without a quorum, done only if `still_wanted`
    /// holds when checked inside the delete's own transaction (background work decides
    /// from an older snapshot and must not act on a key that changed since). `None`:
    /// not done.
    pub(crate) async fn delete_object_if(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        still_wanted: impl FnOnce(&dyn KvRead) -> Result<bool> + Send + 'static,
    ) -> Result<Option<DeleteOutcome>> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        let svc = self.clone();
        let (name, version_id) = (key.to_string(), version_id.map(str::to_string));
        let done = self
            .commit_deletion(bucket, key, move |kv, b| {
                Ok(still_wanted(kv)?.then(|| svc.deletion_for(b, &name, version_id.as_deref())))
            })
            .await?;
        Ok(done.map(|(outcome, _)| outcome))
    }

    /// What deleting `key` (or its version `version_id`) in bucket `b` does now.
    fn deletion_for(&self, b: &BucketRecord, key: &str, version_id: Option<&str>) -> Deletion {
        match version_id {
            Some(v) => Deletion::Remove {
                version_id: v.to_string(),
                at_least_seq: 0,
            },
            None if b.versioning == Versioning::Unversioned => Deletion::Remove {
                version_id: NULL_VERSION.to_string(),
                at_least_seq: self.now_seq(),
            },
            None => Deletion::Marker(Box::new(delete_marker(key, self.clock.now_ms()))),
        }
    }

    /// Quorum mode: prepare `deletion` on a majority of the key's replicas, fixing the
    /// `seq` (and a marker's version id) its commit will have. `None` when deletes do
    /// not wait for a quorum, or there is nothing to remove.
    async fn prepare_deletion(
        &self,
        bucket: &str,
        key: &str,
        deletion: &mut Deletion,
    ) -> Result<Option<Prepared>> {
        match deletion {
            Deletion::Marker(marker) => self.prepare_quorum(bucket, marker, None).await,
            Deletion::Remove {
                version_id,
                at_least_seq,
            } => {
                let Some(plan) = self.quorum_plan(bucket, key) else {
                    return Ok(None);
                };
                // The removal's tombstone covers the version removed, or more.
                let found = {
                    let kv = self.cluster.meta().read()?;
                    find_version(kv.as_ref(), bucket, key, version_id)?.map(|(_, rec)| rec.seq)
                };
                // A version named by id that this node lacks (it stands in for an
                // unreachable coordinator and missed it) may be on the other replicas:
                // its removal is made, and prepared, at its own seq all the same.
                let found = match found {
                    None if *at_least_seq == 0 => self
                        .read_remote(bucket, key, Some(version_id))
                        .await?
                        .map(|(rec, _)| rec.seq),
                    found => found,
                };
                let seq = found.unwrap_or(0).max(*at_least_seq);
                if seq == 0 {
                    return Ok(None);
                }
                *at_least_seq = seq;
                let prepared = self
                    .prepare_removal(plan, bucket, key, version_id, seq)
                    .await?;
                Ok(Some(prepared))
            }
        }
    }

    /// Make the deletion `decide` picks inside the commit's transaction (given the
    /// bucket as it is there); `None` when it picks none. With the outcome comes what
    /// was queued for the replicas, if anything changed.
    async fn commit_deletion(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        decide: impl FnOnce(&dyn KvRead, &BucketRecord) -> Result<Option<Deletion>> + Send + 'static,
    ) -> Result<Option<(DeleteOutcome, Option<ReplOp>)>> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let svc = self.clone();
        let (outcome, freed) = self
            .cluster
            .meta()
            .write(move |kv| -> Result<_> {
                let b = load_bucket(kv, &bucket)?;
                let Some(deletion) = decide(&*kv, &b)? else {
                    return Ok((None, false));
                };
                match deletion {
                    Deletion::Remove {
                        version_id,
                        at_least_seq,
                    } => {
                        let (removed, freed, op) =
                            svc.remove_version(kv, &bucket, &key, &version_id, at_least_seq)?;
                        let outcome = DeleteOutcome {
                            delete_marker: removed.as_ref().is_some_and(|r| r.delete_marker),
                            version_id: removed.map(|r| r.version_id),
                        };
                        Ok((Some((outcome, op)), freed))
                    }
                    Deletion::Marker(marker) => {
                        let (rec, freed) = svc.install_version(kv, &b, *marker, None)?;
                        let op = version_op(&bucket, &rec);
                        let outcome = DeleteOutcome {
                            version_id: Some(rec.version_id),
                            delete_marker: true,
                        };
                        Ok((Some((outcome, Some(op))), freed))
                    }
                }
            })
            .await?;
        self.wake_gc(freed);
        Ok(outcome)
    }
}

/// What a delete does to a key.
enum Deletion {
    /// Remove one version for good; its tombstone covers at least `at_least_seq`.
    Remove {
        version_id: String,
        at_least_seq: u64,
    },
    /// Add this delete marker (its version id and `seq` are given in advance in quorum
    /// mode).
    Marker(Box<ObjectRecord>),
}

/// A new delete marker for `key`.
fn delete_marker(key: &str, now_ms: u64) -> ObjectRecord {
    ObjectRecord {
        key: key.to_string(),
        delete_marker: true,
        created_ms: now_ms,
        ..ObjectRecord::default()
    }
}
