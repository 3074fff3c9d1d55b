//! Quorum writes (docs/CLUSTER.md, "Writes"): before a change is committed here, a
//! majority of the key's replicas must hold it durably, prepared: a new version's chunks
//! and record, a version's new tags, or a pending removal, kept invisible. Only then
//! does the local commit make it visible, and the usual replication of that commit
//! makes it visible on the replicas. Without a majority within `replication_timeout`
//! the change fails with 503 and the prepared copies are aborted, so it never appears.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::replication::{QuorumPlan, ReplOp, ReplPayload};
use bucketdb_store::keys::{pending_key, pending_prefix, prefix_end};
use bucketdb_store::records::{
    ObjectRecord, PendingChange, PreparedChange, Versioning, decode, encode,
};
use bucketdb_store::{KvWrite, Table};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::gc::expired_keys;
use crate::refs::{add_refs, release_refs};
use crate::versions::{NULL_VERSION, load_bucket};

/// Prepared copies of one version kept at most (retried prepares of the same version).
const PENDING_PER_VERSION_MAX: usize = 64;
/// A prepared copy is dropped once it is this old, or `PREPARED_TTL_TIMEOUTS` times the
/// replication timeout if that is longer: by then its coordinator has long committed or
/// given up. Dropping loses nothing: a commit still on its way brings the record, and
/// the chunks are fetched again from the coordinator, which references them.
pub const PREPARED_TTL_MIN: Duration = Duration::from_secs(60);
const PREPARED_TTL_TIMEOUTS: u32 = 10;

/// A change prepared on enough replicas, to be finished by
/// [`ObjectService::finish_prepared`].
pub(crate) struct Prepared {
    plan: QuorumPlan,
    bucket: String,
    key: String,
    version_id: String,
    seq: u64,
    tags_seq: u64,
}

impl Prepared {
    /// The version the change was prepared for.
    pub(crate) fn version_id(&self) -> &str {
        &self.version_id
    }

    /// The `tags_seq` new tags were prepared with (0 for other changes).
    pub(crate) fn tags_seq(&self) -> u64 {
        self.tags_seq
    }
}

impl ObjectService {
    fn replication_timeout(&self) -> Duration {
        Duration::from_millis(self.cluster.replication_timeout_ms())
    }

    /// Whom a change of `bucket/key` must be prepared on; `None` when changes do not
    /// wait for a quorum.
    pub(crate) fn quorum_plan(&self, bucket: &str, key: &str) -> Option<QuorumPlan> {
        if !self.cluster.quorum_required() {
            return None;
        }
        self.cluster.quorum_plan(bucket, key)
    }

    /// Quorum mode: give `rec` its version id and `seq` now and prepare it on a majority
    /// of its key's replicas. `None` when writes do not wait for a quorum.
    pub(crate) async fn prepare_quorum(
        &self,
        bucket: &str,
        rec: &mut ObjectRecord,
        inline: Option<&[u8]>,
    ) -> Result<Option<Prepared>> {
        let Some(plan) = self.quorum_plan(bucket, &rec.key) else {
            return Ok(None);
        };
        self.assign_version(bucket, rec)?;
        self.prepare_record(plan, bucket, rec, inline)
            .await
            .map(Some)
    }

    /// Prepare `rec`, with its version id and `seq` already given (a new version, or
    /// new tags of a stored one), on a majority of the replicas `plan` names.
    pub(crate) async fn prepare_record(
        &self,
        plan: QuorumPlan,
        bucket: &str,
        rec: &ObjectRecord,
        inline: Option<&[u8]>,
    ) -> Result<Prepared> {
        let payload = ReplPayload::Prepare {
            bucket: bucket.to_string(),
            record: encode(rec)?,
            inline: inline.map(<[u8]>::to_vec),
        };
        let target = Prepared {
            plan,
            bucket: bucket.to_string(),
            key: rec.key.clone(),
            version_id: rec.version_id.clone(),
            seq: rec.seq,
            tags_seq: rec.tags_seq,
        };
        self.prepare_on_majority(payload, target).await
    }

    /// Prepare the removal of `bucket/key`'s version `version_id`, its tombstone at
    /// `seq`, on a majority of the replicas `plan` names.
    pub(crate) async fn prepare_removal(
        &self,
        plan: QuorumPlan,
        bucket: &str,
        key: &str,
        version_id: &str,
        seq: u64,
    ) -> Result<Prepared> {
        let payload = ReplPayload::PrepareRemoval {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
            seq,
        };
        let target = Prepared {
            plan,
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
            seq,
            tags_seq: 0,
        };
        self.prepare_on_majority(payload, target).await
    }

    /// Send a prepare to the replicas `plan` names; the change it prepares, once
    /// enough of them hold it. Otherwise it is aborted and the answer is 503.
    async fn prepare_on_majority(
        &self,
        payload: ReplPayload,
        target: Prepared,
    ) -> Result<Prepared> {
        let plan = &target.plan;
        let from_peers = plan.needed.saturating_sub(usize::from(plan.local));
        let applied = self
            .cluster
            .send_now(&plan.peers, payload, from_peers, self.replication_timeout())
            .await?;
        if applied.len() < from_peers {
            let error = ObjectError::QuorumNotReached {
                durable: applied.len() + usize::from(plan.local),
                needed: plan.needed,
            };
            self.abort_prepared(target);
            return Err(error);
        }
        Ok(target)
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
            &mut |v| Ok(decode::<PendingChange>(v)?.prepared_ms <= cutoff),
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
                        let p: PendingChange = decode(&v)?;
                        kv.delete(Table::Pending, &k)?;
                        freed |= release_refs(kv, p.chunks(), now_ms)?;
                    }
                }
                Ok(freed)
            })
            .await?;
        self.wake_gc(freed);
        Ok(n)
    }

    /// The commit here of a change prepared as `prepared` (if it was) ended with
    /// `committed`. A failed commit aborts the prepared copies. A change made is sent to
    /// the replicas at once (`commit` names what was queued for them), and the answer
    /// waits until a majority, this node included, applied it, so a read of any
    /// majority finds it even if this node fails right after acknowledging. Should the
    /// replicas fail between the two phases, the change is still acknowledged: it is
    /// committed here, prepared there, and queued for them.
    pub(crate) async fn finish_prepared<T>(
        &self,
        prepared: Option<Prepared>,
        committed: Result<T>,
        commit: impl FnOnce(&T) -> Option<ReplOp>,
    ) -> Result<T> {
        let Some(prepared) = prepared else {
            return committed;
        };
        let done = match committed {
            Ok(done) => done,
            Err(e) => {
                self.abort_prepared(prepared);
                return Err(e);
            }
        };
        let Some(op) = commit(&done) else {
            return Ok(done);
        };
        let plan = &prepared.plan;
        let from_peers = plan.needed.saturating_sub(usize::from(plan.local));
        if from_peers == 0 {
            return Ok(done);
        }
        let timeout = self.replication_timeout();
        match self
            .cluster
            .commit_now(&plan.peers, op, from_peers, timeout)
            .await
        {
            Ok(applied) if applied.len() >= from_peers => {}
            Ok(applied) => tracing::warn!(
                bucket = %prepared.bucket,
                key = %prepared.key,
                applied = applied.len(),
                needed = from_peers,
                "a quorum change was committed but reached too few replicas in time; \
                 they get it from the replication queue"
            ),
            Err(e) => tracing::warn!(error = %e, "sending a quorum commit failed"),
        }
        Ok(done)
    }

    /// Tell the replicas to drop a prepared change (in the background: a replica that
    /// misses it drops the copy when it expires).
    fn abort_prepared(&self, prepared: Prepared) {
        let payload = ReplPayload::Abort {
            bucket: prepared.bucket,
            key: prepared.key,
            version_id: prepared.version_id,
            seq: prepared.seq,
        };
        let cluster = self.cluster.clone();
        let timeout = self.replication_timeout();
        let peers = prepared.plan.peers;
        self.spawn_best_effort(async move {
            let n = peers.len();
            if let Err(e) = cluster.send_now(&peers, payload, n, timeout).await {
                tracing::debug!(error = %e, "aborting a prepared change failed");
            }
        });
    }

    /// The version id and `seq` `rec` will be committed with, chosen before the commit
    /// as [`ObjectService::install_version`] would (it keeps both, or raises the `seq`
    /// if the key changed meanwhile).
    fn assign_version(&self, bucket: &str, rec: &mut ObjectRecord) -> Result<()> {
        let kv = self.cluster.meta().read()?;
        let b = load_bucket(kv.as_ref(), bucket)?;
        rec.seq = self.next_seq(kv.as_ref(), bucket, &rec.key)?;
        rec.version_id = if b.versioning == Versioning::Enabled {
            self.new_version_id()
        } else {
            NULL_VERSION.to_string()
        };
        Ok(())
    }
}

/// Hold a change another node prepared: a version's chunks are referenced (kept), and
/// the change waits, invisible, for the commit or the abort. A copy already prepared
/// at the same version and `seq` is kept as it is (a retried prepare).
pub(crate) fn hold_prepared(
    kv: &mut dyn KvWrite,
    source: &str,
    bucket: &str,
    change: PreparedChange,
    now_ms: u64,
) -> Result<()> {
    load_bucket(kv, bucket)?;
    let pending = PendingChange {
        source: source.to_string(),
        bucket: bucket.to_string(),
        prepared_ms: now_ms,
        change,
    };
    let pkey = pending_key(bucket, pending.key(), pending.version_id(), pending.seq());
    if kv.get(Table::Pending, &pkey)?.is_some() {
        return Ok(());
    }
    let prefix = pending_prefix(bucket, pending.key(), pending.version_id());
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
    add_refs(kv, pending.chunks())?;
    kv.put(Table::Pending, &pkey, &encode(&pending)?)?;
    Ok(())
}

/// Drop prepared changes of a version with `seq <= up_to` (committed or aborted);
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
        let p: PendingChange = decode(&v)?;
        if p.seq() <= up_to {
            kv.delete(Table::Pending, &k)?;
            freed |= release_refs(kv, p.chunks(), now_ms)?;
        }
    }
    Ok(freed)
}
