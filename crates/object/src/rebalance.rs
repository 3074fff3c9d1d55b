//! Anti-entropy and rebalancing (docs/CLUSTER.md, "Repair and rebalancing").
//!
//! A round walks every version stored here, a page at a time, and asks each of the
//! version's replicas under the current ring how its copy compares. It first sends one
//! hash for the page (`RangeSummary`): when the replica holds exactly those copies, which
//! is the usual case, that is all. Otherwise it sends a digest per version (bucket, key,
//! version id, `seq`, `tags_seq`). Versions a replica lacks are queued for it on the usual
//! replication queue; versions a replica removed are removed here too. A version this
//! node no longer owns (the ring changed: a node joined, or this node is draining) is
//! deleted here once every one of its replicas has confirmed holding it: that is how
//! data moves to new owners without ever being unreadable. Buckets are compared first,
//! so the versions that follow have somewhere to land.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bucketdb_cluster::ClusterError;
use bucketdb_cluster::membership::network::PeerError;
use bucketdb_cluster::replication::{
    DigestAnswer, DigestReply, DigestRequest, RangeHasher, RangeSummary, ReplOp, VersionDigest,
    decode_message, encode_message,
};
use bucketdb_store::keys::{SEP, tombstone_key};
use bucketdb_store::records::{ObjectRecord, decode};
use bucketdb_store::{KvWrite, Table};

use crate::ObjectService;
use crate::buckets::MAX_BUCKETS;
use crate::error::{ObjectError, Result};
use crate::versions::{
    find_version, refresh_current, remove_version_entry, tombstone_seq, version_op, write_tombstone,
};

/// Versions compared per page (one digest call per replica per page).
pub const ANTI_ENTROPY_PAGE: usize = 256;
/// Pause between pages, so a round never crowds out client requests.
pub const ANTI_ENTROPY_PAGE_PAUSE: Duration = Duration::from_millis(20);
/// Most `versions` rows a node reads to answer one page's hash; a range holding more
/// (versions the asker does not share with it) is answered "compare one by one".
pub const RANGE_SUMMARY_SCAN_MAX: usize = 4 * ANTI_ENTROPY_PAGE;

/// What one anti-entropy round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AntiEntropyReport {
    pub versions_checked: u64,
    /// Copies queued for replicas that lacked them.
    pub copies_queued: u64,
    /// Versions removed here because a replica had removed them.
    pub removals_applied: u64,
    /// Versions deleted here after their new owners confirmed holding them.
    pub handed_off: u64,
    /// Versions this node holds but no longer owns, still waiting for their owners.
    pub handoff_pending: u64,
    /// (page, replica) pairs settled by one hash.
    pub ranges_matched: u64,
    /// (page, replica) pairs compared version by version.
    pub ranges_compared: u64,
}

/// A version found on this node during a round.
struct Held {
    bucket: String,
    rec: ObjectRecord,
    replicas: Vec<String>,
}

/// One page of versions: its first and last `versions` keys, and what it holds.
struct Page {
    first: Vec<u8>,
    last: Vec<u8>,
    held: Vec<Held>,
}

fn digest_of(bucket: &str, rec: &ObjectRecord) -> VersionDigest {
    VersionDigest {
        bucket: bucket.to_string(),
        key: rec.key.clone(),
        version_id: rec.version_id.clone(),
        seq: rec.seq,
        tags_seq: rec.tags_seq,
    }
}

/// The bucket a `versions` key belongs to (the part before the first NUL).
fn bucket_of(vkey: &[u8]) -> Option<String> {
    let end = vkey.iter().position(|b| *b == SEP)?;
    String::from_utf8(vkey[..end].to_vec()).ok()
}

impl ObjectService {
    /// One anti-entropy round over every version stored here. Outside a cluster it does
    /// nothing.
    pub async fn anti_entropy_round(self: &Arc<Self>) -> Result<AntiEntropyReport> {
        let mut report = AntiEntropyReport::default();
        let Some(ring) = self.cluster.placement() else {
            return Ok(report);
        };
        let me = self.cluster.node().id.clone();
        let peers: BTreeMap<String, String> = self.cluster.live_peers().into_iter().collect();
        self.sync_buckets(&peers).await?;
        let mut from = Vec::new();
        loop {
            let page = self.cluster.meta().read()?.scan(
                Table::Versions,
                &from,
                None,
                ANTI_ENTROPY_PAGE,
            )?;
            let (Some((first, _)), Some((last, _))) = (page.first(), page.last()) else {
                break;
            };
            let (first, last) = (first.clone(), last.clone());
            from = last.clone();
            from.push(0);
            let full = page.len() == ANTI_ENTROPY_PAGE;
            let mut held = Vec::with_capacity(page.len());
            for (k, v) in page {
                let Some(bucket) = bucket_of(&k) else {
                    continue;
                };
                let rec: ObjectRecord = decode(&v)?;
                let replicas = ring
                    .replicas(&bucket, &rec.key)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                held.push(Held {
                    bucket,
                    rec,
                    replicas,
                });
            }
            report.versions_checked += held.len() as u64;
            let page = Page { first, last, held };
            self.compare_page(&me, &peers, page, &mut report).await?;
            if !full {
                break;
            }
            tokio::time::sleep(ANTI_ENTROPY_PAGE_PAUSE).await;
        }
        let s = self.stats();
        s.anti_entropy_rounds.fetch_add(1, Ordering::Relaxed);
        s.anti_entropy_copies
            .fetch_add(report.copies_queued, Ordering::Relaxed);
        s.handoffs.fetch_add(report.handed_off, Ordering::Relaxed);
        s.handoff_pending
            .store(report.handoff_pending, Ordering::Relaxed);
        s.anti_entropy_ranges_matched
            .fetch_add(report.ranges_matched, Ordering::Relaxed);
        s.anti_entropy_ranges_compared
            .fetch_add(report.ranges_compared, Ordering::Relaxed);
        self.cluster
            .record_rebalance(report.handoff_pending, report.versions_checked);
        Ok(report)
    }

    /// Queue every bucket for each live peer that lacks it.
    async fn sync_buckets(self: &Arc<Self>, peers: &BTreeMap<String, String>) -> Result<()> {
        let names: Vec<String> = self.list_buckets()?.into_iter().map(|b| b.name).collect();
        if names.is_empty() {
            return Ok(());
        }
        let request = DigestRequest {
            buckets: names.clone(),
            versions: Vec::new(),
        };
        for (peer, address) in peers {
            let reply = match self.cluster.compare_digests(address, &request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "bucket comparison failed");
                    continue;
                }
            };
            let missing: Vec<ReplOp> = reply
                .missing_buckets
                .iter()
                .filter_map(|i| names.get(*i as usize))
                .map(|name| ReplOp::Bucket { name: name.clone() })
                .collect();
            if missing.is_empty() {
                continue;
            }
            let (svc, peer) = (self.clone(), vec![peer.clone()]);
            self.cluster
                .meta()
                .write(move |kv| -> Result<()> {
                    for op in &missing {
                        svc.cluster.enqueue_to(kv, &peer, op)?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Compare one page of versions with their replicas and act on the answers.
    async fn compare_page(
        self: &Arc<Self>,
        me: &str,
        peers: &BTreeMap<String, String>,
        page: Page,
        report: &mut AntiEntropyReport,
    ) -> Result<()> {
        let held = page.held;
        // The versions each replica should hold, as indexes into `held`.
        let mut asks: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, h) in held.iter().enumerate() {
            for r in &h.replicas {
                if r != me {
                    asks.entry(r.as_str()).or_default().push(i);
                }
            }
        }
        // Per version: replicas that confirmed holding it.
        let mut confirmed = vec![0usize; held.len()];
        let mut queue: Vec<(String, ReplOp)> = Vec::new();
        let mut removed: Vec<(usize, u64)> = Vec::new();
        for (peer, indexes) in asks {
            let Some(address) = peers.get(peer) else {
                continue;
            };
            let versions: Vec<VersionDigest> = indexes
                .iter()
                .map(|i| digest_of(&held[*i].bucket, &held[*i].rec))
                .collect();
            let mut hasher = RangeHasher::default();
            versions.iter().for_each(|d| hasher.add(d));
            let (count, hash) = hasher.finish();
            let summary = RangeSummary {
                asker: me.to_string(),
                first: page.first.clone(),
                last: page.last.clone(),
                count,
                hash,
            };
            match self.cluster.compare_range(address, &summary).await {
                Ok(true) => {
                    report.ranges_matched += 1;
                    indexes.iter().for_each(|i| confirmed[*i] += 1);
                    continue;
                }
                Ok(false) => {}
                // A node without the route compares version by version; one that cannot
                // be reached now is skipped, as the digest call would be (no second wait).
                Err(ClusterError::Peer(PeerError::Status { status: 404, .. })) => {}
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "range comparison failed");
                    continue;
                }
            }
            report.ranges_compared += 1;
            let request = DigestRequest {
                buckets: Vec::new(),
                versions,
            };
            let reply: DigestReply = match self.cluster.compare_digests(address, &request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "version comparison failed");
                    continue;
                }
            };
            for (i, answer) in indexes.iter().zip(reply.versions) {
                match answer {
                    DigestAnswer::Have => confirmed[*i] += 1,
                    DigestAnswer::Lacks => {
                        let h = &held[*i];
                        queue.push((peer.to_string(), version_op(&h.bucket, &h.rec)));
                    }
                    DigestAnswer::Removed { seq } if seq >= held[*i].rec.seq => {
                        removed.push((*i, seq));
                    }
                    DigestAnswer::Removed { .. } => {}
                }
            }
        }
        let mut handoff = Vec::new();
        for (i, h) in held.iter().enumerate() {
            if h.replicas.iter().any(|r| r == me) {
                continue;
            }
            if !h.replicas.is_empty() && confirmed[i] == h.replicas.len() {
                handoff.push(i);
            } else {
                report.handoff_pending += 1;
            }
        }
        report.copies_queued += queue.len() as u64;
        if queue.is_empty() && removed.is_empty() && handoff.is_empty() {
            return Ok(());
        }
        let svc = self.clone();
        let now_ms = self.now_ms();
        let targets: Vec<(String, ObjectRecord, Option<u64>)> = removed
            .iter()
            .map(|(i, seq)| (held[*i].bucket.clone(), held[*i].rec.clone(), Some(*seq)))
            .chain(
                handoff
                    .iter()
                    .map(|i| (held[*i].bucket.clone(), held[*i].rec.clone(), None)),
            )
            .collect();
        let (applied, moved) = self
            .cluster
            .meta()
            .write(move |kv| -> Result<(u64, u64)> {
                for (peer, op) in &queue {
                    svc.cluster.enqueue_to(kv, std::slice::from_ref(peer), op)?;
                }
                let (mut applied, mut moved) = (0, 0);
                for (bucket, rec, removal) in &targets {
                    if drop_local_copy(kv, bucket, rec, *removal, now_ms)? {
                        match removal {
                            Some(_) => applied += 1,
                            None => moved += 1,
                        }
                    }
                }
                Ok((applied, moved))
            })
            .await?;
        report.removals_applied += applied;
        report.handed_off += moved;
        if applied + moved > 0 {
            self.wake_gc(true);
        }
        Ok(())
    }

    /// Answer a peer's page hash (`/internal/range-summary`): whether this node holds
    /// exactly the versions it covers.
    pub fn answer_range_summary(&self, body: &[u8]) -> Result<Vec<u8>> {
        let summary: RangeSummary = decode_message(body)?;
        if summary.first > summary.last || summary.count as usize > ANTI_ENTROPY_PAGE {
            return Err(ObjectError::InvalidArgument(
                "a range summary is not one page".into(),
            ));
        }
        Ok(encode_message(&self.holds_range(&summary)?)?)
    }

    /// Hash this node's versions in the summary's range that it and the asker should
    /// both hold, and compare.
    fn holds_range(&self, summary: &RangeSummary) -> Result<bool> {
        let Some(ring) = self.cluster.placement() else {
            return Ok(false);
        };
        let me = self.cluster.node().id.as_str();
        let mut end = summary.last.clone();
        end.push(0);
        let kv = self.cluster.meta().read()?;
        let rows = kv.scan(
            Table::Versions,
            &summary.first,
            Some(&end),
            RANGE_SUMMARY_SCAN_MAX + 1,
        )?;
        if rows.len() > RANGE_SUMMARY_SCAN_MAX {
            return Ok(false);
        }
        let mut hasher = RangeHasher::default();
        for (k, v) in rows {
            let Some(bucket) = bucket_of(&k) else {
                continue;
            };
            let rec: ObjectRecord = decode(&v)?;
            let replicas = ring.replicas(&bucket, &rec.key);
            if !(replicas.contains(&me) && replicas.contains(&summary.asker.as_str())) {
                continue;
            }
            // A copy next to a removal covering it (never stored so today) must be
            // compared one by one, where the removal is reported.
            let removed = tombstone_seq(
                kv.as_ref(),
                &tombstone_key(&bucket, &rec.key, &rec.version_id),
            )?;
            if removed.is_some_and(|seq| seq >= rec.seq) {
                return Ok(false);
            }
            hasher.add(&digest_of(&bucket, &rec));
        }
        Ok(hasher.finish() == (summary.count, summary.hash))
    }

    /// Answer a peer's digest request (`/internal/digests`).
    pub fn answer_digests(&self, body: &[u8]) -> Result<Vec<u8>> {
        let request: DigestRequest = decode_message(body)?;
        if request.buckets.len() > MAX_BUCKETS as usize
            || request.versions.len() > ANTI_ENTROPY_PAGE
        {
            return Err(ObjectError::InvalidArgument(
                "a digest request is larger than a page".into(),
            ));
        }
        let kv = self.cluster.meta().read()?;
        let mut reply = DigestReply::default();
        for (i, name) in request.buckets.iter().enumerate() {
            if kv.get(Table::Buckets, name.as_bytes())?.is_none() {
                reply.missing_buckets.push(i as u32);
            }
        }
        for d in &request.versions {
            let removed = tombstone_seq(
                kv.as_ref(),
                &tombstone_key(&d.bucket, &d.key, &d.version_id),
            )?;
            let answer = match removed {
                Some(seq) if seq >= d.seq => DigestAnswer::Removed { seq },
                _ => match find_version(kv.as_ref(), &d.bucket, &d.key, &d.version_id)? {
                    // Same version: the copy with the later tags, or a newer one.
                    Some((_, rec)) if (rec.seq, rec.tags_seq) >= (d.seq, d.tags_seq) => {
                        DigestAnswer::Have
                    }
                    _ => DigestAnswer::Lacks,
                },
            };
            reply.versions.push(answer);
        }
        Ok(encode_message(&reply)?)
    }
}

/// Delete this node's copy of `rec` if it is still the stored one: because a replica
/// removed it (`removal`: remembered with a tombstone), or because its owners hold it
/// (a handoff: no tombstone, nothing replicated). Returns whether it was deleted.
fn drop_local_copy(
    kv: &mut dyn KvWrite,
    bucket: &str,
    rec: &ObjectRecord,
    removal: Option<u64>,
    now_ms: u64,
) -> Result<bool> {
    let Some((vkey, stored)) = find_version(kv, bucket, &rec.key, &rec.version_id)? else {
        return Ok(false);
    };
    if stored.seq != rec.seq {
        return Ok(false);
    }
    remove_version_entry(kv, &vkey, &stored, now_ms)?;
    refresh_current(kv, bucket, &rec.key)?;
    if let Some(seq) = removal {
        write_tombstone(kv, bucket, &rec.key, &rec.version_id, seq, now_ms)?;
    }
    Ok(true)
}
