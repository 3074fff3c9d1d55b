//! Replication of changes to the other replicas of a key (docs/CLUSTER.md, "Writes").
//!
//! A change made here (a version installed or removed, a bucket changed) is queued for
//! each other replica in the `repl_queue` table, in the same transaction as the change,
//! so a queued change survives a crash exactly when the change does. One worker per
//! peer sends the queue in order, in batches, reading the data each entry names when it
//! sends it (a version overwritten meanwhile is simply skipped). Replicas fetch the
//! chunks they lack from the sender, one verified chunk at a time, so no object is ever
//! held in memory whole. Failed sends are retried with capped exponential backoff until
//! the peer answers; a peer that was down catches up from its queue when it returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bucketdb_store::keys::{
    number_of_repl_queue_key, prefix_end, repl_queue_key, repl_queue_prefix, version_key,
};
use bucketdb_store::records::{ObjectRecord, Record, decode, encode};
use bucketdb_store::{ChunkRef, KvRead, KvWrite, StoreError, Table, run_blocking};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::membership::Liveness;
use crate::membership::network::{
    PATH_CHUNK, PATH_DIGESTS, PATH_LOOKUP, PATH_RANGE_SUMMARY, PATH_REPLICATE, PeerError,
    TransportError,
};
use crate::membership::ring_state::MemberState;
use crate::{Cluster, ClusterError};

/// Most queued operations sent in one batch.
pub const REPL_BATCH_OPS: usize = 64;
/// A batch stops growing once its payloads (records and inline bodies) pass this size.
pub const REPL_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Backoff between failed sends to a peer: doubles from the minimum up to the maximum.
pub const REPL_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const REPL_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Longest a batch may take on the replica, which may fetch up to a batch's chunks.
pub const REPL_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest one chunk fetch may take.
pub const CHUNK_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle worker looks at its queue without being woken, and how often the
/// set of workers is matched to the ring.
pub const REPL_IDLE_POLL: Duration = Duration::from_millis(500);

/// Longest wait for peers to take a bucket change before the client is answered.
pub const BUCKET_PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The `usage` entry holding the next replication queue number.
const QUEUE_COUNTER: &[u8] = b"repl_queue_next";
/// Ends the node tag at the start of a multipart upload id.
const UPLOAD_ID_TAG_END: char = '-';
/// Hex digits of a node's tag in upload ids.
const NODE_TAG_HEX: usize = 8;

/// Where a multipart upload's parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadHolder {
    Here,
    /// A current member: (node id, address).
    Peer(String, String),
    /// The id names no current member (or has no tag): found by the key instead.
    Unknown,
}

/// A short, stable tag for node `id` (hex of its SHA-256).
fn node_tag(id: &str) -> String {
    let mut tag = hex::encode(sha256_of(id.as_bytes()));
    tag.truncate(NODE_TAG_HEX);
    tag
}

/// A change to send to the other replicas; it names the data, which is read when sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplOp {
    /// A version was installed or changed (tags): send its record (and inline body).
    Version {
        bucket: String,
        key: String,
        version_id: String,
        seq: u64,
    },
    /// A version was removed.
    Removed {
        bucket: String,
        key: String,
        version_id: String,
        seq: u64,
    },
    /// A bucket was created, changed or deleted: send its record and settings.
    Bucket { name: String },
}

impl Record for ReplOp {}

/// A queued operation with the data it names, as sent to a replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplPayload {
    Version {
        bucket: String,
        /// The version's `ObjectRecord` in its stored encoding.
        record: Vec<u8>,
        inline: Option<Vec<u8>>,
    },
    Removed {
        bucket: String,
        key: String,
        version_id: String,
        seq: u64,
    },
    Bucket {
        name: String,
        /// `BucketRecord` and `BucketConfig` in their stored encodings; no record: the
        /// bucket was deleted.
        record: Option<Vec<u8>>,
        config: Option<Vec<u8>>,
        /// When the bucket last changed: replicas keep the latest change.
        stamp: u64,
    },
    /// Quorum mode, first phase: hold this version (chunks fetched and kept, record
    /// staged, invisible) until the coordinator's `Version` (its commit) or `Abort`.
    /// New tags of a version are prepared the same way, at the version's own `seq`.
    Prepare {
        bucket: String,
        record: Vec<u8>,
        inline: Option<Vec<u8>>,
    },
    /// Quorum mode: the coordinator gave up on a prepared change.
    Abort {
        bucket: String,
        key: String,
        version_id: String,
        seq: u64,
    },
    // Variants are numbered in order on the wire: new ones go last.
    /// Quorum mode, first phase of a removal: remember it as pending (invisible) until
    /// the coordinator's `Removed` (its commit) or `Abort`.
    PrepareRemoval {
        bucket: String,
        key: String,
        version_id: String,
        seq: u64,
    },
}

/// A read this node could not answer from its own store, asked of a peer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LookupRequest {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// For the current version: how far the asker has seen the key change. The record
    /// is sent only when the peer has seen it change later (`None`: always).
    pub known_seq: Option<u64>,
    /// SHA-256 of the asker's current record (stored encoding), if it has one: a peer
    /// at the same `seq` sends its record only when it differs (tags changed).
    pub known_record: Option<[u8; 32]>,
}

/// The peer's copy: the version's record (stored encoding) and inline body; no record
/// when the peer lacks it too (or holds nothing newer than `known_seq`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LookupReply {
    pub record: Option<Vec<u8>>,
    pub inline: Option<Vec<u8>>,
    /// For the current version: how far this peer has seen the key change (its newest
    /// version's or latest removal's `seq`; 0 if never).
    pub state_seq: u64,
    /// The peer holds exactly what the asker does (same state seq, same current
    /// record), so it sent no record.
    pub unchanged: bool,
    /// The newest prepared (quorum mode, not yet committed here) version of the key
    /// above `state_seq`, as its `seq` and the node coordinating it: that node knows
    /// whether the write was acknowledged.
    pub pending: Option<(u64, String)>,
}

fn sha256_of(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Anti-entropy: what a node holds, sent to a peer that should hold it too.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DigestRequest {
    /// Bucket names.
    pub buckets: Vec<String>,
    pub versions: Vec<VersionDigest>,
}

/// One stored version, by identity and order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDigest {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub seq: u64,
    /// When the version's tags last changed (`ObjectRecord::tags_seq`).
    pub tags_seq: u64,
}

/// Anti-entropy's first question about one page of versions: a hash of the digests of
/// the versions in `first..=last` (keys of the `versions` table) that the asker holds and
/// the peer should hold too. The peer hashes its own versions of that range that both
/// should hold; equal hashes mean it holds exactly those copies, so the page needs no
/// per-version digests. Anything else (a missing or newer copy, a ring change, a
/// handoff) makes the hashes differ, and the page is compared version by version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangeSummary {
    /// Node id of the asker.
    pub asker: String,
    pub first: Vec<u8>,
    pub last: Vec<u8>,
    /// How many versions the hash covers.
    pub count: u32,
    pub hash: [u8; 32],
}

/// Hashes version digests in `versions` table order into a [`RangeSummary`] hash.
#[derive(Default)]
pub struct RangeHasher {
    hasher: sha2::Sha256,
    count: u32,
}

impl RangeHasher {
    pub fn add(&mut self, d: &VersionDigest) {
        use sha2::Digest;
        // Length-prefixed, so no two digest lists hash the same bytes.
        for field in [&d.bucket, &d.key, &d.version_id] {
            self.hasher.update((field.len() as u64).to_le_bytes());
            self.hasher.update(field.as_bytes());
        }
        self.hasher.update(d.seq.to_le_bytes());
        self.hasher.update(d.tags_seq.to_le_bytes());
        self.count += 1;
    }

    /// (versions hashed, hash)
    pub fn finish(self) -> (u32, [u8; 32]) {
        use sha2::Digest;
        (self.count, self.hasher.finalize().into())
    }
}

/// The peer's answer: the buckets it lacks (indexes into the request), and per version
/// (in request order) how its copy compares.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DigestReply {
    pub missing_buckets: Vec<u32>,
    pub versions: Vec<DigestAnswer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestAnswer {
    /// The peer holds this version (or a newer copy of it).
    Have,
    /// The peer lacks it (or holds an older copy): send it.
    Lacks,
    /// The peer removed it (a tombstone at or after its `seq`): remove it here too.
    Removed { seq: u64 },
}

/// Where a key's copies live, for a quorum write coordinated here.
#[derive(Clone, Debug)]
pub struct QuorumPlan {
    /// The key's replicas other than this node: (node id, address).
    pub peers: Vec<(String, String)>,
    /// Whether this node is one of the key's replicas.
    pub local: bool,
    /// Copies that must be durable before the write is acknowledged: a majority of the
    /// key's replicas.
    pub needed: usize,
}

/// One call to a replica: operations in queue order, each with its queue number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplBatch {
    pub source: String,
    pub ops: Vec<(u64, ReplPayload)>,
}

/// The replica's answer: the queue numbers it applied (the others are retried).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplAck {
    pub applied: Vec<u64>,
}

fn codec(e: postcard::Error) -> ClusterError {
    ClusterError::Codec(e.to_string())
}

pub fn encode_message<T: Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    postcard::to_allocvec(value).map_err(codec)
}

pub fn decode_message<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, ClusterError> {
    postcard::from_bytes(bytes).map_err(codec)
}

impl Cluster {
    /// Queue `op` for every other replica it concerns, inside the transaction making the
    /// change. A standalone node queues nothing.
    pub fn enqueue(&self, kv: &mut dyn KvWrite, op: &ReplOp) -> Result<(), StoreError> {
        let targets = self.replication_targets(op);
        self.enqueue_to(kv, &targets, op)
    }

    /// Queue `op` for each of `peers`, inside the caller's transaction.
    pub fn enqueue_to(
        &self,
        kv: &mut dyn KvWrite,
        peers: &[String],
        op: &ReplOp,
    ) -> Result<(), StoreError> {
        if peers.is_empty() {
            return Ok(());
        }
        let targets = peers;
        let mut next: u64 = kv
            .get(Table::Usage, QUEUE_COUNTER)?
            .map(|v| decode(&v))
            .transpose()?
            .unwrap_or(0);
        let value = encode(op)?;
        for peer in targets {
            kv.put(Table::ReplQueue, &repl_queue_key(peer, next), &value)?;
            next += 1;
        }
        kv.put(Table::Usage, QUEUE_COUNTER, &encode(&next)?)?;
        self.repl_wake.notify_waiters();
        Ok(())
    }

    /// The other nodes an operation goes to: the key's other replicas, or every other
    /// member for bucket changes.
    fn replication_targets(&self, op: &ReplOp) -> Vec<String> {
        let Some(m) = self.membership.get() else {
            return Vec::new();
        };
        let me = self.node.id.as_str();
        match op {
            ReplOp::Version { bucket, key, .. } | ReplOp::Removed { bucket, key, .. } => self
                .placement()
                .map(|ring| {
                    ring.replicas(bucket, key)
                        .into_iter()
                        .filter(|id| *id != me)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            ReplOp::Bucket { .. } => m
                .ring()
                .members
                .values()
                .filter(|x| x.id != me && x.state != MemberState::Removed)
                .map(|x| x.id.clone())
                .collect(),
        }
    }

    /// The peer that coordinates changes to `bucket/key`, as `(node id, address)`: the
    /// key's first replica that this node does not believe down. `None` when that is
    /// this node, outside a cluster, or when no replica seems alive (then this node
    /// coordinates, as the only one that can).
    pub fn coordinator(&self, bucket: &str, key: &str) -> Option<(String, String)> {
        self.coordinators(bucket, key).into_iter().next()
    }

    /// The peers that may coordinate changes to `bucket/key`, in the order to try them:
    /// the key's replicas this node does not believe down, up to this node (which comes
    /// next, if it is a replica). A peer that cannot be reached is skipped for the next,
    /// so nodes that still think a dead peer alive agree on who takes its place.
    pub fn coordinators(&self, bucket: &str, key: &str) -> Vec<(String, String)> {
        let (Some(m), Some(ring)) = (self.membership.get(), self.placement()) else {
            return Vec::new();
        };
        let me = self.node.id.as_str();
        ring.replicas(bucket, key)
            .into_iter()
            .take_while(|id| *id != me)
            .filter(|id| m.liveness_of(id).0 != Liveness::Down)
            .filter_map(|id| Some((id.to_string(), m.address_of(id)?)))
            .collect()
    }

    /// An id for a new multipart upload coordinated here: this node's tag, then
    /// `random_hex`. Every later step of the upload names it, so any node can send the
    /// step to the node holding the upload's parts ([`Cluster::upload_holder`]).
    pub fn new_upload_id(&self, random_hex: &str) -> String {
        format!("{}{UPLOAD_ID_TAG_END}{random_hex}", node_tag(&self.node.id))
    }

    /// Which node holds the multipart upload `upload_id` (by the tag its id starts
    /// with).
    pub fn upload_holder(&self, upload_id: &str) -> UploadHolder {
        let Some(m) = self.membership.get() else {
            return UploadHolder::Unknown;
        };
        let Some((tag, _)) = upload_id.split_once(UPLOAD_ID_TAG_END) else {
            return UploadHolder::Unknown;
        };
        if tag == node_tag(&self.node.id) {
            return UploadHolder::Here;
        }
        let ring = m.ring();
        ring.members
            .values()
            .find(|x| x.state != MemberState::Removed && node_tag(&x.id) == tag)
            .map_or(UploadHolder::Unknown, |x| {
                UploadHolder::Peer(x.id.clone(), x.address.clone())
            })
    }

    /// The replicas a quorum write of `bucket/key` needs; `None` outside a cluster.
    pub fn quorum_plan(&self, bucket: &str, key: &str) -> Option<QuorumPlan> {
        let m = self.membership.get()?;
        let ring = self.placement()?;
        let state = m.ring();
        let replicas = ring.replicas(bucket, key);
        let me = self.node.id.as_str();
        Some(QuorumPlan {
            peers: replicas
                .iter()
                .filter(|id| **id != me)
                .filter_map(|id| {
                    let member = state.members.get(*id)?;
                    Some((member.id.clone(), member.address.clone()))
                })
                .collect(),
            local: replicas.contains(&me),
            needed: replicas.len() / 2 + 1,
        })
    }

    /// Send `payload` to each of `peers` at once; waits until `enough` of them applied
    /// it or `timeout` passed, and returns the ids of those that did by then. Calls
    /// still running go on in the background (a late `Prepare` is undone by the
    /// coordinator's `Abort`, or made visible by its commit).
    pub async fn send_now(
        &self,
        peers: &[(String, String)],
        payload: ReplPayload,
        enough: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        let m = self
            .membership
            .get()
            .ok_or_else(|| ClusterError::Codec("not in a cluster".into()))?;
        let body = encode_message(&ReplBatch {
            source: self.node.id.clone(),
            ops: vec![(0, payload)],
        })?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(peers.len().max(1));
        for (id, address) in peers {
            let (client, tx) = (m.client().clone(), tx.clone());
            let (id, address, body) = (id.clone(), address.clone(), body.clone());
            tokio::spawn(async move {
                let answer = client
                    .call_bytes(&address, PATH_REPLICATE, body, timeout)
                    .await;
                let applied = match answer {
                    Ok(bytes) => {
                        decode_message::<ReplAck>(&bytes).is_ok_and(|ack| ack.applied.contains(&0))
                    }
                    Err(e) => {
                        tracing::debug!(peer = %id, error = %e, "synchronous replication failed");
                        false
                    }
                };
                let _ = tx.send((id, applied)).await;
            });
        }
        drop(tx);
        let mut applied = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while applied.len() < enough {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((id, true))) => applied.push(id),
                Ok(Some((_, false))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Ok(applied)
    }

    /// Push a bucket's current record and settings to every live peer now, waiting up
    /// to `BUCKET_PUSH_TIMEOUT`, so requests through other nodes see a new or changed
    /// bucket at once. Peers this misses get the change from the replication queue.
    pub async fn push_bucket_now(&self, name: &str) {
        let peers = self.live_peers();
        if peers.is_empty() {
            return;
        }
        let payload = match self.meta.read().and_then(|kv| {
            materialise(
                kv.as_ref(),
                ReplOp::Bucket {
                    name: name.to_string(),
                },
            )
        }) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(bucket = %name, error = %e, "reading a bucket to push failed");
                return;
            }
        };
        let n = peers.len();
        if let Err(e) = self.send_now(&peers, payload, n, BUCKET_PUSH_TIMEOUT).await {
            tracing::debug!(bucket = %name, error = %e, "pushing a bucket change failed");
        }
    }

    /// Members other than this node that are not removed and not down in this node's
    /// view: (node id, address).
    pub fn live_peers(&self) -> Vec<(String, String)> {
        let Some(m) = self.membership.get() else {
            return Vec::new();
        };
        m.ring()
            .members
            .values()
            .filter(|x| {
                x.id != self.node.id
                    && x.state != MemberState::Removed
                    && m.liveness_of(&x.id).0 != Liveness::Down
            })
            .map(|x| (x.id.clone(), x.address.clone()))
            .collect()
    }

    /// Ask a peer whether it holds exactly the versions `summary` covers (`Ok(false)`:
    /// compare them one by one).
    pub async fn compare_range(
        &self,
        address: &str,
        summary: &RangeSummary,
    ) -> Result<bool, ClusterError> {
        self.ask_anti_entropy(address, PATH_RANGE_SUMMARY, summary)
            .await
    }

    /// Ask a peer how its copies compare with `request`.
    pub async fn compare_digests(
        &self,
        address: &str,
        request: &DigestRequest,
    ) -> Result<DigestReply, ClusterError> {
        let reply: DigestReply = self
            .ask_anti_entropy(address, PATH_DIGESTS, request)
            .await?;
        if reply.versions.len() != request.versions.len() {
            return Err(ClusterError::Codec(
                "a digest reply does not match its request".into(),
            ));
        }
        Ok(reply)
    }

    /// One anti-entropy question to a peer, answered in one message.
    async fn ask_anti_entropy<T: Serialize, R: for<'a> Deserialize<'a>>(
        &self,
        address: &str,
        path: &str,
        question: &T,
    ) -> Result<R, ClusterError> {
        let m = self
            .membership
            .get()
            .ok_or_else(|| ClusterError::Codec("not in a cluster".into()))?;
        let answer = m
            .client()
            .call_bytes(
                address,
                path,
                encode_message(question)?,
                CHUNK_FETCH_TIMEOUT,
            )
            .await?;
        decode_message(&answer)
    }

    /// Operations still queued for `peer` (for status and tests).
    pub fn queued_for(&self, peer: &str) -> Result<u64, ClusterError> {
        let kv = self.meta.read()?;
        let prefix = repl_queue_prefix(peer);
        let end = prefix_end(&prefix);
        let mut from = prefix;
        let mut n = 0u64;
        loop {
            let page = kv.scan(Table::ReplQueue, &from, end.as_deref(), REPL_BATCH_OPS)?;
            n += page.len() as u64;
            match page.last() {
                Some((k, _)) if page.len() == REPL_BATCH_OPS => {
                    from = k.clone();
                    from.push(0);
                }
                _ => return Ok(n),
            }
        }
    }

    /// Start one sender per peer (more as members join) until `stop`.
    pub fn spawn_replication(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut workers: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
            let mut stop_rx = stop.clone();
            loop {
                if *stop_rx.borrow() {
                    break;
                }
                if let Some(m) = me.membership.get() {
                    for member in m.ring().members.values() {
                        if member.id == me.node.id || workers.contains_key(&member.id) {
                            continue;
                        }
                        let worker = me.clone().run_sender(member.id.clone(), stop.clone());
                        workers.insert(member.id.clone(), tokio::spawn(worker));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(REPL_IDLE_POLL) => {}
                    _ = stop_rx.changed() => {}
                }
            }
            for (_, w) in workers {
                let _ = w.await;
            }
        })
    }

    async fn run_sender(self: Arc<Self>, peer: String, mut stop: watch::Receiver<bool>) {
        let mut backoff = REPL_BACKOFF_MIN;
        loop {
            if *stop.borrow() {
                return;
            }
            // Register for wake-ups before looking, so a change queued meanwhile is seen.
            let woken = self.repl_wake.notified();
            let wait = match self.send_batch(&peer).await {
                Ok(0) => {
                    backoff = REPL_BACKOFF_MIN;
                    tokio::select! {
                        () = woken => continue,
                        _ = tokio::time::sleep(REPL_IDLE_POLL) => continue,
                        _ = stop.changed() => continue,
                    }
                }
                Ok(_) => {
                    backoff = REPL_BACKOFF_MIN;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "replication to peer failed; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(REPL_BACKOFF_MAX);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Send the next batch queued for `peer`; how many entries left the queue.
    async fn send_batch(&self, peer: &str) -> Result<usize, ClusterError> {
        let Some(m) = self.membership.get() else {
            return Ok(0);
        };
        let ring = m.ring();
        let (batch, done) = self.next_batch(peer)?;
        let address = match ring.members.get(peer) {
            Some(member) if member.state != MemberState::Removed => member.address.clone(),
            // A removed member gets nothing more: its queue is dropped.
            _ => {
                let all: Vec<u64> = batch.ops.iter().map(|(n, _)| *n).chain(done).collect();
                return self.dequeue(peer, all).await;
            }
        };
        let mut finished = done;
        if !batch.ops.is_empty() {
            let body = encode_message(&batch)?;
            let answer = m
                .client()
                .call_bytes(&address, PATH_REPLICATE, body, REPL_CALL_TIMEOUT)
                .await?;
            let ack: ReplAck = decode_message(&answer)?;
            finished.extend(ack.applied);
        }
        self.dequeue(peer, finished).await
    }

    /// The next batch for `peer`, and the queue numbers of entries with nothing left to
    /// send (their version was overwritten or removed since).
    fn next_batch(&self, peer: &str) -> Result<(ReplBatch, Vec<u64>), ClusterError> {
        let kv = self.meta.read()?;
        let prefix = repl_queue_prefix(peer);
        let end = prefix_end(&prefix);
        let entries = kv.scan(Table::ReplQueue, &prefix, end.as_deref(), REPL_BATCH_OPS)?;
        let mut batch = ReplBatch {
            source: self.node.id.clone(),
            ops: Vec::new(),
        };
        let mut superseded = Vec::new();
        let mut bytes = 0usize;
        for (k, v) in entries {
            let Some(number) = number_of_repl_queue_key(&k) else {
                continue;
            };
            let op: ReplOp = decode(&v)?;
            match materialise(kv.as_ref(), op)? {
                Some(payload) => {
                    bytes += payload_size(&payload);
                    batch.ops.push((number, payload));
                }
                None => superseded.push(number),
            }
            if bytes >= REPL_BATCH_BYTES {
                break;
            }
        }
        Ok((batch, superseded))
    }

    async fn dequeue(&self, peer: &str, numbers: Vec<u64>) -> Result<usize, ClusterError> {
        if numbers.is_empty() {
            return Ok(0);
        }
        let n = numbers.len();
        let peer = peer.to_string();
        self.meta
            .write(move |kv| -> Result<(), StoreError> {
                for number in numbers {
                    kv.delete(Table::ReplQueue, &repl_queue_key(&peer, number))?;
                }
                Ok(())
            })
            .await?;
        Ok(n)
    }

    /// Send a change just committed here (`op`, as it is stored now) to `peers` at
    /// once, as [`Cluster::send_now`] does; the ids of those that applied it in time.
    /// It is queued for them as well, so one that misses it gets it later.
    pub async fn commit_now(
        &self,
        peers: &[(String, String)],
        op: ReplOp,
        enough: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        let payload = materialise(self.meta.read()?.as_ref(), op)?;
        match payload {
            Some(payload) => self.send_now(peers, payload, enough, timeout).await,
            // Changed again meanwhile: that later change travels on its own.
            None => Ok(Vec::new()),
        }
    }

    /// How many of `peers` this node does not believe down.
    pub fn live_count(&self, peers: &[(String, String)]) -> usize {
        let Some(m) = self.membership.get() else {
            return 0;
        };
        peers
            .iter()
            .filter(|(id, _)| m.liveness_of(id).0 != Liveness::Down)
            .count()
    }

    /// Make sure this node holds `chunk`, fetching it from `source` if not: verified
    /// against its length and SHA-256 before it is written (durably, under the same id).
    /// Returns whether it wrote the chunk here.
    pub async fn fetch_chunk(&self, source: &str, chunk: &ChunkRef) -> Result<bool, ClusterError> {
        let present = self
            .meta
            .read()?
            .get(Table::Chunks, &chunk.id.to_bytes())?
            .is_some();
        if present {
            return Ok(false);
        }
        let m = self
            .membership
            .get()
            .ok_or_else(|| ClusterError::Codec("not in a cluster".into()))?;
        let address = m
            .ring()
            .members
            .get(source)
            .map(|x| x.address.clone())
            .ok_or_else(|| ClusterError::UnknownNode(source.to_string()))?;
        let data = m
            .client()
            .call_bytes(
                &address,
                PATH_CHUNK,
                encode_message(chunk)?,
                CHUNK_FETCH_TIMEOUT,
            )
            .await?;
        let store = self.chunks.clone();
        let chunk = chunk.clone();
        run_blocking(move || store.write_replica(&chunk, &data))
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))??;
        Ok(true)
    }

    /// Delete the files of chunks fetched for a change that did not take them after all
    /// (a newer copy or a removal was already here). Call with the receive gate held.
    pub async fn drop_unreferenced(&self, fetched: Vec<ChunkRef>) -> Result<(), ClusterError> {
        if fetched.is_empty() {
            return Ok(());
        }
        let unreferenced: Vec<_> = {
            let kv = self.meta.read()?;
            let mut out = Vec::new();
            for c in fetched {
                if kv.get(Table::Chunks, &c.id.to_bytes())?.is_none() {
                    out.push(c.id);
                }
            }
            out
        };
        self.delete_chunks(unreferenced).await
    }

    /// Answer a peer's chunk fetch: the chunk's bytes from this node's disk, verified.
    pub async fn serve_chunk(&self, request: &[u8]) -> Result<Bytes, ClusterError> {
        let chunk: ChunkRef = decode_message(request)?;
        self.read_local_chunk(chunk).await
    }

    /// Fetch `chunk` from a live peer that has it intact, store it here (a repair) and
    /// return its bytes.
    pub(crate) async fn repair_chunk(&self, chunk: &ChunkRef) -> Result<Bytes, ClusterError> {
        let (data, from) = self.read_chunk_from_peers(chunk).await?;
        let store = self.chunks.clone();
        let c = chunk.clone();
        let data = run_blocking(move || store.write_replica(&c, &data).map(|()| data))
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))??;
        self.chunks_repaired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(chunk = %chunk.id, from = %from, "chunk repaired from a peer");
        Ok(data)
    }

    /// Read `chunk` from the first live peer that has it intact (checked here against
    /// its length and SHA-256); the bytes and the peer's id. Nothing is stored here.
    pub async fn read_chunk_from_peers(
        &self,
        chunk: &ChunkRef,
    ) -> Result<(Bytes, String), ClusterError> {
        let m = self
            .membership
            .get()
            .ok_or_else(|| ClusterError::Codec("not in a cluster".into()))?;
        let request = encode_message(chunk)?;
        let mut last = ClusterError::UnknownNode("no live peer".into());
        for (id, address) in self.live_peers() {
            let answer = m
                .client()
                .call_bytes(&address, PATH_CHUNK, request.clone(), CHUNK_FETCH_TIMEOUT)
                .await;
            match answer {
                Ok(d) if d.len() as u64 == chunk.len && sha256_of(&d) == chunk.sha256 => {
                    return Ok((Bytes::from(d), id));
                }
                Ok(_) => last = ClusterError::Store(StoreError::CorruptChunk(chunk.id.to_string())),
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }

    /// Ask `peers` at once what they hold of a key (`/internal/lookup`). Returns the
    /// answers in hand once `enough` peers answered and `awaited` (if any) answered or
    /// failed, or when `timeout` passes. Peers that fail are left out.
    pub async fn ask_peers(
        &self,
        request: &LookupRequest,
        peers: &[(String, String)],
        enough: usize,
        awaited: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<((String, String), LookupReply)>, ClusterError> {
        let Some(m) = self.membership.get() else {
            return Ok(Vec::new());
        };
        let body = encode_message(request)?;
        let mut calls = tokio::task::JoinSet::new();
        for (id, address) in peers {
            let (m, body, id, address) = (m.clone(), body.clone(), id.clone(), address.clone());
            calls.spawn(async move {
                let answer = m
                    .client()
                    .call_bytes(&address, PATH_LOOKUP, body, timeout)
                    .await
                    .map_err(ClusterError::from)
                    .and_then(|b| decode_message::<LookupReply>(&b));
                ((id, address), answer)
            });
        }
        let mut answers = Vec::new();
        let mut waiting_for = awaited.map(str::to_string);
        let collect = async {
            while let Some(joined) = calls.join_next().await {
                let Ok((peer, answer)) = joined else {
                    continue;
                };
                if waiting_for.as_deref() == Some(peer.0.as_str()) {
                    waiting_for = None;
                }
                match answer {
                    Ok(reply) => answers.push((peer, reply)),
                    Err(e) => {
                        tracing::debug!(peer = %peer.0, error = %e, "lookup on a peer failed")
                    }
                }
                if answers.len() >= enough && waiting_for.is_none() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, collect).await;
        Ok(answers)
    }

    /// Send a postcard `body` to `path` on the peer at `address` and return its answer;
    /// `None` when the peer could not be reached, so nothing was sent (for a change: the
    /// next in [`Cluster::coordinators`] may take its place). Any other failure,
    /// including no answer in time, leaves a change's outcome unknown.
    pub async fn call_peer(
        &self,
        address: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let Some(m) = self.membership.get() else {
            return Ok(None);
        };
        match m.client().call_bytes(address, path, body, timeout).await {
            Ok(answer) => Ok(Some(answer)),
            Err(PeerError::Transport(TransportError::Unreachable { .. })) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Find a version on the peers (the key's replicas first) when this node lacks it:
    /// the record and inline body of the first peer that has it.
    pub async fn lookup_on_peers(
        &self,
        request: &LookupRequest,
    ) -> Result<Option<LookupReply>, ClusterError> {
        let Some(m) = self.membership.get() else {
            return Ok(None);
        };
        let mut peers = self.live_peers();
        if let Some(ring) = self.placement() {
            let replicas = ring.replicas(&request.bucket, &request.key);
            peers
                .sort_by_key(|(id, _)| replicas.iter().position(|r| r == id).unwrap_or(usize::MAX));
        }
        let body = encode_message(request)?;
        for (id, address) in peers {
            let answer = m
                .client()
                .call_bytes(&address, PATH_LOOKUP, body.clone(), CHUNK_FETCH_TIMEOUT)
                .await
                .map_err(ClusterError::from)
                .and_then(|b| decode_message::<LookupReply>(&b));
            match answer {
                Ok(reply) if reply.record.is_some() => return Ok(Some(reply)),
                Ok(_) => {}
                Err(e) => tracing::debug!(peer = %id, error = %e, "lookup on a peer failed"),
            }
        }
        Ok(None)
    }
}

/// The data a queued operation names, or `None` when it no longer exists.
fn materialise(kv: &dyn KvRead, op: ReplOp) -> Result<Option<ReplPayload>, StoreError> {
    Ok(match op {
        ReplOp::Version {
            bucket,
            key,
            version_id,
            seq,
        } => {
            let vkey = version_key(&bucket, &key, seq);
            let Some(record) = kv.get(Table::Versions, &vkey)? else {
                return Ok(None);
            };
            let rec: ObjectRecord = decode(&record)?;
            if rec.version_id != version_id {
                return Ok(None);
            }
            let inline = kv.get(Table::Inline, &vkey)?;
            Some(ReplPayload::Version {
                bucket,
                record,
                inline,
            })
        }
        ReplOp::Removed {
            bucket,
            key,
            version_id,
            seq,
        } => Some(ReplPayload::Removed {
            bucket,
            key,
            version_id,
            seq,
        }),
        ReplOp::Bucket { name } => Some(ReplPayload::Bucket {
            record: kv.get(Table::Buckets, name.as_bytes())?,
            config: kv.get(Table::BucketConfig, name.as_bytes())?,
            stamp: kv
                .get(Table::BucketStamps, name.as_bytes())?
                .map(|v| decode(&v))
                .transpose()?
                .unwrap_or(0),
            name,
        }),
    })
}

fn payload_size(p: &ReplPayload) -> usize {
    match p {
        ReplPayload::Version { record, inline, .. } => {
            record.len() + inline.as_ref().map_or(0, Vec::len)
        }
        ReplPayload::Removed { key, .. } | ReplPayload::PrepareRemoval { key, .. } => key.len(),
        ReplPayload::Bucket { record, config, .. } => {
            record.as_ref().map_or(0, Vec::len) + config.as_ref().map_or(0, Vec::len)
        }
        ReplPayload::Prepare { record, inline, .. } => {
            record.len() + inline.as_ref().map_or(0, Vec::len)
        }
        ReplPayload::Abort { key, .. } => key.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bucket: &str, key: &str, seq: u64, tags_seq: u64) -> VersionDigest {
        VersionDigest {
            bucket: bucket.into(),
            key: key.into(),
            version_id: "null".into(),
            seq,
            tags_seq,
        }
    }

    fn hash_of(digests: &[VersionDigest]) -> (u32, [u8; 32]) {
        let mut h = RangeHasher::default();
        digests.iter().for_each(|d| h.add(d));
        h.finish()
    }

    /// Two nodes agree on a page's hash only when they hold the same copies: any
    /// difference in a version's identity, order, `seq` or tags changes it.
    #[test]
    fn a_range_hash_covers_every_field_of_every_version() {
        let page = [digest("b", "k1", 5, 0), digest("b", "k2", 7, 9)];
        assert_eq!(hash_of(&page), hash_of(&page.clone()));
        assert_eq!(hash_of(&page).0, 2);
        let variants = [
            vec![digest("b", "k1", 5, 0)],
            vec![digest("b", "k1", 5, 0), digest("b", "k2", 8, 9)],
            vec![digest("b", "k1", 5, 0), digest("b", "k2", 7, 10)],
            vec![digest("b", "k2", 7, 9), digest("b", "k1", 5, 0)],
            // The same bytes split differently between bucket and key.
            vec![digest("bk", "1", 5, 0), digest("b", "k2", 7, 9)],
        ];
        for v in &variants {
            assert_ne!(hash_of(&page).1, hash_of(v).1, "{v:?}");
        }
    }
}
