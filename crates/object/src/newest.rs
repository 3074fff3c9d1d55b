//! Finding the newest state of a key before a read of its current version. In a
//! cluster a node may hold an older copy than the key's coordinator (replication still
//! on its way), or none. So a node that is not the key's coordinator first asks the
//! coordinator how far it has seen the key change; in quorum mode it asks every
//! replica, needs a majority of them (itself included when it is one) and waits for
//! the coordinator while it is alive. The newest answer wins. In quorum mode, replicas
//! found stale get the newest version at once in the background (read repair);
//! removals found newer are left to replication and anti-entropy.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bucketdb_cluster::replication::{LookupReply, LookupRequest, ReplPayload};
use bucketdb_store::Table;
use bucketdb_store::keys::object_key;
use bucketdb_store::records::{ObjectRecord, decode, encode};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::get::record_fingerprint;
use crate::versions::{key_state_seq, newest_pending};

/// How long an async-mode read waits for the coordinator's answer before serving this
/// node's own copy.
pub const COORDINATOR_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What this node holds of a key, from the snapshot its read uses.
pub(crate) struct LocalState {
    /// How far it has seen the key change (`versions::key_state_seq`).
    pub seq: u64,
    /// The fingerprint of its current record, if it has one.
    pub record: Option<[u8; 32]>,
    /// That record.
    pub current: Option<ObjectRecord>,
    /// The newest copy prepared here and not committed (quorum mode).
    pub pending: Option<(u64, String)>,
}

/// What the replicas asked know of a key, compared with this node's copy.
pub(crate) enum Newest {
    /// Nothing newer elsewhere: serve this node's copy.
    Here,
    /// A newer live version, from the peer `source`.
    Elsewhere {
        record: Box<ObjectRecord>,
        inline: Option<Vec<u8>>,
        source: String,
    },
    /// The key was deleted (or its current version removed) after this node's copy.
    Removed,
}

/// Whom a read of a key's current version must consult before serving it.
pub(crate) struct ReadPlan {
    peers: Vec<(String, String)>,
    /// Answers needed from `peers`.
    needed: usize,
    /// A peer whose answer is awaited too while it is alive (quorum mode: the key's
    /// coordinator).
    awaited: Option<String>,
    timeout: Duration,
    pub(crate) quorum: bool,
    /// Whether this node is one of the key's replicas.
    local_replica: bool,
    /// Replicas in all, for the error when too few answer.
    replicas_needed: usize,
}

impl ObjectService {
    /// `None` when this node's copy is authoritative: outside a cluster, or in async
    /// mode on the key's coordinator.
    pub(crate) fn read_plan(&self, bucket: &str, key: &str) -> Option<ReadPlan> {
        if self.cluster.quorum_required() {
            let coordinator = self.cluster.coordinator(bucket, key);
            let plan = self.cluster.quorum_plan(bucket, key)?;
            return Some(ReadPlan {
                needed: plan.needed.saturating_sub(usize::from(plan.local)),
                peers: plan.peers,
                awaited: coordinator.map(|(id, _)| id),
                timeout: Duration::from_millis(self.cluster.replication_timeout_ms()),
                quorum: true,
                local_replica: plan.local,
                replicas_needed: plan.needed,
            });
        }
        // Every peer ahead of this node in the key's coordinator line is asked: the first
        // one reachable coordinated the latest changes.
        let line = self.cluster.coordinators(bucket, key);
        if line.is_empty() {
            return None;
        }
        Some(ReadPlan {
            needed: line.len(),
            peers: line,
            awaited: None,
            timeout: COORDINATOR_CHECK_TIMEOUT,
            quorum: false,
            local_replica: false,
            replicas_needed: 1,
        })
    }

    /// The newest state of `bucket/key` among this node (`local`) and the peers `plan`
    /// names.
    pub(crate) async fn newest_state(
        self: &Arc<Self>,
        plan: ReadPlan,
        bucket: &str,
        key: &str,
        local: LocalState,
    ) -> Result<Newest> {
        let local_seq = local.seq;
        let request = LookupRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: None,
            known_seq: Some(local_seq),
            known_record: local.record,
        };
        let mut answers = self
            .cluster
            .ask_peers(
                &request,
                &plan.peers,
                plan.needed,
                plan.awaited.as_deref(),
                plan.timeout,
            )
            .await?;
        if plan.quorum && answers.len() < plan.needed {
            return Err(ObjectError::QuorumNotReached {
                durable: answers.len() + usize::from(plan.local_replica),
                needed: plan.replicas_needed,
            });
        }
        if plan.quorum
            && let Some(settled) = self.settle_pending(&request, &answers, &local).await?
        {
            answers.push(settled);
        }
        let newest_seq = answers
            .iter()
            .map(|(_, r)| r.state_seq)
            .max()
            .unwrap_or(0)
            .max(local_seq);
        // What each node at the newest state seq holds as its current version: a peer
        // that answered "unchanged" holds what this node holds.
        let mut at_newest: Vec<HeldAt<(&String, &LookupReply)>> = Vec::new();
        if local_seq == newest_seq {
            at_newest.push((None, local.current.clone()));
        }
        for ((source, _), reply) in answers.iter().filter(|(_, r)| r.state_seq == newest_seq) {
            if reply.unchanged {
                continue;
            }
            let record = reply
                .record
                .as_deref()
                .map(decode::<ObjectRecord>)
                .transpose()?;
            at_newest.push((Some((source, reply)), record));
        }
        let Some((from, record)) = newest_of(newest_seq, at_newest) else {
            return Ok(Newest::Here);
        };
        let Some((source, reply)) = from else {
            // This node's own state is the newest.
            if plan.quorum && plan.local_replica {
                self.repair_from_here(bucket, key, local_seq, &answers);
            }
            return Ok(Newest::Here);
        };
        let Some(record) = record.filter(|r| !r.delete_marker) else {
            return Ok(Newest::Removed);
        };
        if plan.quorum && newest_seq > local_seq {
            let stale = stale_peers(&answers, newest_seq);
            self.spawn_read_repair(
                (bucket, key, newest_seq),
                source.clone(),
                reply.clone(),
                plan.local_replica,
                stale,
            );
        }
        Ok(Newest::Elsewhere {
            record: Box::new(record),
            inline: reply.inline.clone(),
            source: source.clone(),
        })
    }

    /// Quorum mode, before a change that builds on the key's current version (new tags,
    /// a conditional write), made here as the key's coordinator: make sure this node
    /// holds the newest version a majority of the replicas knows. A node standing in
    /// for an unreachable coordinator may have been cut off while the last changes were
    /// made; a change based on its stale copy would be lost when they reach it. A newer
    /// version is installed here first; a newer removal that has not reached this node
    /// yet makes the change answer 503 (to be retried).
    pub(crate) async fn catch_up(self: &Arc<Self>, bucket: &str, key: &str) -> Result<()> {
        let Some(plan) = self.read_plan(bucket, key).filter(|p| p.quorum) else {
            return Ok(());
        };
        let local = {
            let kv = self.cluster.meta().read()?;
            let seq = key_state_seq(kv.as_ref(), bucket, key)?;
            let current: Option<ObjectRecord> = kv
                .get(Table::Current, &object_key(bucket, key))?
                .map(|v| decode(&v))
                .transpose()?;
            LocalState {
                seq,
                record: current.as_ref().map(record_fingerprint).transpose()?,
                current,
                pending: newest_pending(kv.as_ref(), bucket, key, seq)?,
            }
        };
        let current_seq = local.current.as_ref().map_or(0, |c| c.seq);
        match self.newest_state(plan, bucket, key, local).await? {
            Newest::Here => Ok(()),
            // An older version is current elsewhere: this node's was removed there.
            Newest::Elsewhere { record, .. } if record.seq < current_seq => Err(not_caught_up(key)),
            Newest::Elsewhere {
                record,
                inline,
                source,
            } => {
                let payload = ReplPayload::Version {
                    bucket: bucket.to_string(),
                    record: encode(&*record)?,
                    inline,
                };
                self.apply_payload(&source, payload).await
            }
            Newest::Removed => Err(not_caught_up(key)),
        }
    }

    /// A write newer than anything committed among the answers is prepared somewhere: ask
    /// the node coordinating it, which committed it if the write was acknowledged (its
    /// commit may not have reached the replicas asked yet). Its answer, if it has one.
    async fn settle_pending(
        &self,
        request: &LookupRequest,
        answers: &[((String, String), LookupReply)],
        local: &LocalState,
    ) -> Result<Option<((String, String), LookupReply)>> {
        let committed = answers
            .iter()
            .map(|(_, r)| r.state_seq)
            .max()
            .unwrap_or(0)
            .max(local.seq);
        let pending = answers
            .iter()
            .filter_map(|(_, r)| r.pending.clone())
            .chain(local.pending.clone())
            .filter(|(seq, _)| *seq > committed)
            .max_by_key(|(seq, _)| *seq);
        let Some((_, source)) = pending else {
            return Ok(None);
        };
        // This node, or one already asked, answered with what it committed.
        if source == self.cluster.node().id || answers.iter().any(|((id, _), _)| *id == source) {
            return Ok(None);
        }
        let Some(address) = self
            .cluster
            .membership()
            .and_then(|m| m.address_of(&source))
        else {
            return Ok(None);
        };
        let peer = [(source, address)];
        // A coordinator seen down cannot answer: not waited for.
        if self.cluster.live_count(&peer) == 0 {
            return Ok(None);
        }
        let timeout = Duration::from_millis(self.cluster.replication_timeout_ms());
        let got = self
            .cluster
            .ask_peers(request, &peer, 1, None, timeout)
            .await?;
        Ok(got.into_iter().next())
    }

    /// This node holds the newest version: send it to the replicas that answered with
    /// an older state.
    fn repair_from_here(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        local_seq: u64,
        answers: &[((String, String), LookupReply)],
    ) {
        let stale = stale_peers(answers, local_seq);
        if stale.is_empty() {
            return;
        }
        let Ok((record, inline)) = self.read_local(bucket, key, None) else {
            return;
        };
        if record.seq != local_seq {
            return;
        }
        let Ok(record) = encode(&record) else {
            return;
        };
        let reply = LookupReply {
            record: Some(record),
            inline,
            state_seq: local_seq,
            pending: None,
            unchanged: false,
        };
        let me = self.cluster.node().id.clone();
        self.spawn_read_repair((bucket, key, local_seq), me, reply, false, stale);
    }

    /// In the background: install the version `source` sent (when this node is a stale
    /// replica), then send it to the `stale` replicas from here.
    fn spawn_read_repair(
        self: &Arc<Self>,
        (bucket, key, seq): (&str, &str, u64),
        source: String,
        reply: LookupReply,
        repair_here: bool,
        stale: Vec<(String, String)>,
    ) {
        // Reads of a hot key find the same stale copies: one repair per version at once.
        let Some(claim) = self.claim_repair(bucket, key, seq) else {
            return;
        };
        let svc = self.clone();
        let bucket = bucket.to_string();
        let me = self.cluster.node().id.clone();
        self.spawn_best_effort(async move {
            let _claim = claim;
            let Some(record) = reply.record else {
                return;
            };
            let payload = ReplPayload::Version {
                bucket,
                record,
                inline: reply.inline,
            };
            if repair_here {
                match svc.apply_payload(&source, payload.clone()).await {
                    Ok(()) => {
                        svc.stats.read_repairs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "read repair of this node failed");
                        return;
                    }
                }
            }
            // Peers fetch the chunks from the sender, so only a node holding them sends.
            if stale.is_empty() || (source != me && !repair_here) {
                return;
            }
            let timeout = Duration::from_millis(svc.cluster.replication_timeout_ms());
            match svc
                .cluster
                .send_now(&stale, payload, stale.len(), timeout)
                .await
            {
                Ok(repaired) => {
                    svc.stats
                        .read_repairs
                        .fetch_add(repaired.len() as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, "read repair of peers failed"),
            }
        });
    }
}

impl ObjectService {
    fn claim_repair(self: &Arc<Self>, bucket: &str, key: &str, seq: u64) -> Option<RepairClaim> {
        let id = (bucket.to_string(), key.to_string(), seq);
        let mut running = self
            .repairs_running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        running.insert(id.clone()).then(|| RepairClaim {
            svc: self.clone(),
            id,
        })
    }
}

/// A read repair of one version marked running; the mark goes when it is dropped (the
/// repair ended, was aborted, or never started).
struct RepairClaim {
    svc: Arc<ObjectService>,
    id: (String, String, u64),
}

impl Drop for RepairClaim {
    fn drop(&mut self) {
        self.svc
            .repairs_running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// What one node holds of a key at a state seq: where its answer came from (`None`:
/// this node) and its current version.
type HeldAt<T> = (Option<T>, Option<ObjectRecord>);

/// A removal of `key` made elsewhere has not reached this node yet (503: retry).
fn not_caught_up(key: &str) -> ObjectError {
    ObjectError::Replication(format!(
        "a newer change of {key} has not reached this node yet; retry"
    ))
}

/// Of the nodes whose state of a key is at `seq` (each with where its answer came
/// from, `None` for this node, and its current version), the one whose state is the
/// latest. A removal made at `seq` (a node with no current version, or one older than
/// `seq`, since a version's removal keeps its `seq`) wins over copies of the version
/// made at `seq`, the live older version first; among those copies the later tags win
/// (two versions given one `seq`: the greater version id, as replicas keep). This
/// node wins ties, so it serves its own copy unless another is later.
fn newest_of<T>(seq: u64, nodes: Vec<HeldAt<T>>) -> Option<HeldAt<T>> {
    let rank = |record: &Option<ObjectRecord>| match record {
        Some(r) if r.seq >= seq => (0, 0, r.version_id.clone(), r.tags_seq, r.tags.clone()),
        Some(r) => (2, r.seq, String::new(), 0, Vec::new()),
        None => (1, 0, String::new(), 0, Vec::new()),
    };
    let mut best: Option<HeldAt<T>> = None;
    for (from, record) in nodes {
        if best.as_ref().is_none_or(|(_, b)| rank(&record) > rank(b)) {
            best = Some((from, record));
        }
    }
    best
}

/// The peers (with their addresses) whose answers show an older state than `seq`.
fn stale_peers(answers: &[((String, String), LookupReply)], seq: u64) -> Vec<(String, String)> {
    answers
        .iter()
        .filter(|(_, r)| r.state_seq < seq)
        .map(|(peer, _)| peer.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketdb_store::records::Body;

    fn version(version_id: &str, seq: u64, tags_seq: u64) -> Option<ObjectRecord> {
        Some(ObjectRecord {
            key: "k".into(),
            version_id: version_id.into(),
            seq,
            body: Body::Inline,
            tags_seq,
            ..ObjectRecord::default()
        })
    }

    /// Which node `newest_of` picks among (node, current version) at state seq 10.
    fn pick(nodes: Vec<(Option<&str>, Option<ObjectRecord>)>) -> Option<&str> {
        newest_of(10, nodes).and_then(|(from, _)| from)
    }

    #[test]
    fn a_removal_at_the_state_seq_wins_over_copies_of_the_removed_version() {
        // This node still holds v10; a peer removed it (nothing current there).
        assert_eq!(
            pick(vec![(None, version("v", 10, 0)), (Some("p"), None)]),
            Some("p")
        );
        // The peer removed it and serves the version before it.
        let older = (Some("q"), version("u", 5, 0));
        assert_eq!(
            pick(vec![(None, version("v", 10, 0)), (Some("p"), None), older]),
            Some("q")
        );
        // This node removed it; a peer that has not yet does not win.
        assert_eq!(
            pick(vec![(None, None), (Some("p"), version("v", 10, 0))]),
            None
        );
    }

    #[test]
    fn among_copies_of_one_version_the_later_tags_win_and_ties_stay_here() {
        let nodes = vec![
            (None, version("v", 10, 3)),
            (Some("p"), version("v", 10, 7)),
        ];
        assert_eq!(pick(nodes), Some("p"));
        let nodes = vec![
            (None, version("v", 10, 7)),
            (Some("p"), version("v", 10, 3)),
        ];
        assert_eq!(pick(nodes), None);
        let nodes = vec![
            (None, version("v", 10, 7)),
            (Some("p"), version("v", 10, 7)),
        ];
        assert_eq!(pick(nodes), None);
    }
}
