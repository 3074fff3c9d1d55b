//! Quorum writes (docs/CLUSTER.md, "Writes"): before a new version is committed here,
//! a majority of the key's replicas must hold it durably (prepared: chunks and record
//! kept, invisible). Only then does the local commit make it visible, and the usual
//! replication of that commit makes it visible on the replicas. Without a majority
//! within `replication_timeout` the write fails with 503 and the prepared copies are
//! aborted, so it never appears.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::replication::ReplPayload;
use bucketdb_store::keys::{pending_key, pending_prefix, prefix_end, tombstone_key};
use bucketdb_store::records::{ObjectRecord, PendingVersion, Versioning, decode, encode};
use bucketdb_store::{KvWrite, Table};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::gc::expired_keys;
use crate::refs::{add_refs, release_refs};
use crate::versions::{NULL_VERSION, load_bucket, scan_versions, tombstone_seq};

/// Prepared copies of one version kept at most (retried prepares of the same version).
const PENDING_PER_VERSION_MAX: usize = 64;
/// A prepared copy is dropped once it is this old, or `PREPARED_TTL_TIMEOUTS` times the
/// replication timeout if that is longer: by then its coordinator has long committed or
/// given up. Dropping loses nothing: a commit still on its way brings the record, and
/// the chunks are fetched again from the coordinator, which references them.
pub const PREPARED_TTL_MIN: Duration = Duration::from_secs(60);
const PREPARED_TTL_TIMEOUTS: u32 = 10;

/// A version prepared on enough replicas; [`ObjectService::abort_prepared`] undoes it.
pub(crate) struct Prepared {
    peers: Vec<(String, String)>,
}

impl ObjectService {
    fn replication_timeout(&self) -> Duration {
        Duration::from_millis(self.cluster.replication_timeout_ms())
    }

    /// Quorum mode: give `rec` its version id and `seq` now and prepare it on a majority
    /// of its key's replicas. `None` when writes do not wait for a quorum.
    pub(crate) async fn prepare_quorum(
        &self,
        bucket: &str,
        rec: &mut ObjectRecord,
        inline: Option<&[u8]>,
    ) -> Result<Option<Prepared>> {
        if !self.cluster.quorum_required() {
            return Ok(None);
        }
        let Some(plan) = self.cluster.quorum_plan(bucket, &rec.key) else {
            return Ok(None);
        };
        self.assign_version(bucket, rec)?;
        let from_peers = plan.needed.saturating_sub(usize::from(plan.local));
        let payload = ReplPayload::Prepare {
            bucket: bucket.to_string(),
            record: encode(&*rec)?,
            inline: inline.map(<[u8]>::to_vec),
        };
        let applied = self
            .cluster
            .send_now(&plan.peers, payload, from_peers, self.replication_timeout())
            .await?;
        let prepared = Prepared { peers: plan.peers };
        if applied.len() < from_peers {
            self.abort_prepared(bucket, rec, prepared);
            return Err(ObjectError::QuorumNotReached {
                durable: applied.len() + usize::from(plan.local),
                needed: plan.needed,
            });
        }
        Ok(Some(prepared))
    }

    /// Quorum mode, for changes that are not new versions with data (deletes, tag
    /// changes): refuse at once when fewer than a majority of the key's replicas seem
    /// alive, so the change is not made.
    pub(crate) fn check_quorum_reachable(&self, bucket: &str, key: &str) -> Result<()> {
        if !self.cluster.quorum_required() {
            return Ok(());
        }
        let Some(plan) = self.cluster.quorum_plan(bucket, key) else {
            return Ok(());
        };
        let alive = self.cluster.live_count(&plan.peers) + usize::from(plan.local);
        if alive < plan.needed {
            return Err(ObjectError::QuorumNotReached {
                durable: alive,
                needed: plan.needed,
            });
        }
        Ok(())
    }

    /// Quorum mode, after such a change was committed here: wait until a majority of
    /// the key's replicas applied it (it travels through the replication queue, where it
    /// was queued after `since`, a [`bucketdb_cluster::Cluster::queue_mark`] taken
    /// before the change). Without a majority within `replication_timeout` the answer is
    /// 503, though the change stays made here and reaches the replicas later.
    pub(crate) async fn await_quorum_replication(
        &self,
        bucket: &str,
        key: &str,
        since: u64,
    ) -> Result<()> {
        if !self.cluster.quorum_required() {
            return Ok(());
        }
        let Some(plan) = self.cluster.quorum_plan(bucket, key) else {
            return Ok(());
        };
        let from_peers = plan.needed.saturating_sub(usize::from(plan.local));
        if from_peers == 0 {
            return Ok(());
        }
        let until = self.cluster.queue_mark()?;
        let peers: Vec<String> = plan.peers.into_iter().map(|(id, _)| id).collect();
        let done = self
            .cluster
            .wait_replicated(
                &peers,
                (since, until),
                from_peers,
                self.replication_timeout(),
            )
            .await?;
        if done < from_peers {
            return Err(ObjectError::QuorumNotReached {
                durable: done + usize::from(plan.local),
                needed: plan.needed,
            });
        }
        Ok(())
    }

    /// How long a prepared copy is kept without its commit or abort.
    pub fn prepared_ttl(&self) -> Duration {
        PREPARED_TTL_MIN.max(self.replication_timeout() * PREPARED_TTL_TIMEOUTS)
    }

    /// Drop prepared copies older than their time to live; returns how many.
    pub async fn drop_stale_prepared(self: &Arc<Self>) -> Result<u64> {
        let ttl = self.prepared_ttl();
        let now_ms = self.now_ms();
        let cutoff = now_ms.saturating_sub(ttl.as_millis() as u64);
        let stale = expired_keys(
            self.cluster.meta().read()?.as_ref(),
            Table::Pending,
            &mut |v| Ok(decode::<PendingVersion>(v)?.prepared_ms <= cutoff),
        )?;
        if stale.is_empty() {
            return Ok(0);
        }
        let n = stale.len() as u64;
        let freed = self
            .cluster
            .meta()
            .write(move |kv| -> Result<bool> {
                let mut freed = false;
                for k in stale {
                    if let Some(v) = kv.get(Table::Pending, &k)? {
                        let p: PendingVersion = decode(&v)?;
                        kv.delete(Table::Pending, &k)?;
                        freed |= release_refs(kv, p.record.chunks(), now_ms)?;
                    }
                }
                Ok(freed)
            })
            .await?;
        self.wake_gc(freed);
        Ok(n)
    }

    /// Tell the replicas to drop a prepared version (in the background: a replica that
    /// misses it drops the copy when it expires).
    pub(crate) fn abort_prepared(&self, bucket: &str, rec: &ObjectRecord, prepared: Prepared) {
        let payload = ReplPayload::Abort {
            bucket: bucket.to_string(),
            key: rec.key.clone(),
            version_id: rec.version_id.clone(),
            seq: rec.seq,
        };
        let cluster = self.cluster.clone();
        let timeout = self.replication_timeout();
        self.spawn_best_effort(async move {
            let n = prepared.peers.len();
            if let Err(e) = cluster.send_now(&prepared.peers, payload, n, timeout).await {
                tracing::debug!(error = %e, "aborting a prepared version failed");
            }
        });
    }

    /// The version id and `seq` `rec` will be committed with, chosen before the commit
    /// as [`ObjectService::install_version`] would (it keeps both, or raises the `seq`
    /// if the key changed meanwhile).
    fn assign_version(&self, bucket: &str, rec: &mut ObjectRecord) -> Result<()> {
        let kv = self.cluster.meta().read()?;
        let b = load_bucket(kv.as_ref(), bucket)?;
        let mut newest = None;
        scan_versions(kv.as_ref(), bucket, &rec.key, &mut |_, v| {
            newest = Some(v.seq);
            false
        })?;
        let removed = tombstone_seq(kv.as_ref(), &tombstone_key(bucket, &rec.key, NULL_VERSION))?;
        rec.seq = self
            .now_seq()
            .max(newest.map_or(0, |s| s + 1))
            .max(removed.map_or(0, |s| s + 1));
        rec.version_id = if b.versioning == Versioning::Enabled {
            self.new_version_id()
        } else {
            NULL_VERSION.to_string()
        };
        Ok(())
    }
}

/// Hold a version another node prepared: its chunks are referenced (kept), the record
/// waits, invisible, for the commit or the abort.
pub(crate) fn hold_prepared(
    kv: &mut dyn KvWrite,
    source: &str,
    bucket: &str,
    record: ObjectRecord,
    inline: Option<Vec<u8>>,
    now_ms: u64,
) -> Result<()> {
    load_bucket(kv, bucket)?;
    let pkey = pending_key(bucket, &record.key, &record.version_id, record.seq);
    if kv.get(Table::Pending, &pkey)?.is_some() {
        return Ok(());
    }
    let prefix = pending_prefix(bucket, &record.key, &record.version_id);
    let end = prefix_end(&prefix);
    if kv
        .scan(
            Table::Pending,
            &prefix,
            end.as_deref(),
            PENDING_PER_VERSION_MAX,
        )?
        .len()
        >= PENDING_PER_VERSION_MAX
    {
        return Err(ObjectError::InvalidArgument(
            "too many prepared copies of one version".into(),
        ));
    }
    add_refs(kv, record.chunks())?;
    let pending = PendingVersion {
        source: source.to_string(),
        bucket: bucket.to_string(),
        prepared_ms: now_ms,
        record,
        inline,
    };
    kv.put(Table::Pending, &pkey, &encode(&pending)?)?;
    Ok(())
}

/// Drop prepared copies of a version with `seq <= up_to` (committed or aborted);
/// returns whether chunks became garbage.
pub(crate) fn release_prepared(
    kv: &mut dyn KvWrite,
    bucket: &str,
    key: &str,
    version_id: &str,
    up_to: u64,
    now_ms: u64,
) -> Result<bool> {
    let prefix = pending_prefix(bucket, key, version_id);
    let end = prefix_end(&prefix);
    let mut freed = false;
    for (k, v) in kv.scan(
        Table::Pending,
        &prefix,
        end.as_deref(),
        PENDING_PER_VERSION_MAX,
    )? {
        let p: PendingVersion = decode(&v)?;
        if p.record.seq <= up_to {
            kv.delete(Table::Pending, &k)?;
            freed |= release_refs(kv, p.record.chunks(), now_ms)?;
        }
    }
    Ok(freed)
}
