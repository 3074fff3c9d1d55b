//! The cluster layer: where an object's chunks and records live and how many copies are
//! kept. Nodes form a cluster whose ring configuration is agreed by raft ([`membership`]),
//! but every placement still resolves to the local store (no replication yet). The object
//! service only talks to [`Cluster`], so replication, quorum and repair slot in here
//! without touching the layers above.

pub mod coverage;
pub mod membership;
pub mod replication;
pub mod ring;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bucketdb_store::chunks::BucketHash;
use bucketdb_store::{ChunkId, ChunkRef, ChunkStore, Clock, Meta, StoreError, Table, run_blocking};
use bytes::Bytes;
use serde::Serialize;

use membership::network::PeerError;
use membership::{Membership, NodeFigures};
use ring::Ring;

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("bad message: {0}")]
    Codec(String),
    #[error("node {0} is not a cluster member")]
    UnknownNode(String),
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub address: String,
}

/// Replication settings (the seed's names).
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    pub replication_factor: usize,
    pub quorum_required: bool,
    pub replication_timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub id: String,
    pub address: String,
    /// `active` | `joining` | `draining` | `removed`
    pub state: &'static str,
    /// `alive` | `suspect` | `down`
    pub liveness: &'static str,
    pub last_heartbeat_ms: u64,
    pub disk_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_free_bytes: u64,
    pub object_count: u64,
    pub ring_share: f64,
    /// Changes this node has queued for that node and not yet delivered.
    pub replication_backlog: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub ring_version: u64,
    pub replication_factor: usize,
    pub configured_replication_factor: usize,
    pub quorum_required: bool,
    pub replication_timeout_ms: u64,
    pub nodes: Vec<NodeStatus>,
    /// The raft leader's node id as this node knows it (absent on a standalone node, or
    /// while an election is running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Progress (0 to 1) of moving this node's data to its new owners after a
    /// topology change, as of the last anti-entropy round; `None` when nothing waits.
    pub rebalancing: Option<f64>,
}

pub struct Cluster {
    node: NodeInfo,
    chunks: Arc<ChunkStore>,
    meta: Arc<Meta>,
    clock: Arc<dyn Clock>,
    config: ReplicationConfig,
    quorum: AtomicBool,
    storage_path: PathBuf,
    /// Set when the node runs in a cluster (`--bootstrap`, `--join` or stored raft
    /// state); `None` for a standalone node.
    membership: OnceLock<Arc<Membership>>,
    /// The placement ring built from the agreed ring configuration, rebuilt when its
    /// version changes.
    placement: Mutex<Option<(u64, Arc<Ring>)>>,
    /// Wakes the replication senders when something was queued.
    repl_wake: tokio::sync::Notify,
    /// Chunks rewritten from a peer's copy after failing verification here.
    chunks_repaired: std::sync::atomic::AtomicU64,
    /// Held exclusively by garbage collection while it decides which queued chunks to
    /// delete and deletes them, and by a replica while it stores chunks received from a
    /// peer and commits their references (chunk ids are reused across nodes, so a
    /// queued id can be referenced again).
    chunk_gate: tokio::sync::RwLock<()>,
    /// The last anti-entropy round's (versions held here but owned elsewhere, versions
    /// checked): data still to move off this node.
    rebalance: Mutex<(u64, u64)>,
}

impl Cluster {
    pub fn single_node(
        node: NodeInfo,
        chunks: Arc<ChunkStore>,
        meta: Arc<Meta>,
        clock: Arc<dyn Clock>,
        config: ReplicationConfig,
    ) -> Self {
        let storage_path = chunks.root().to_path_buf();
        Cluster {
            node,
            quorum: AtomicBool::new(config.quorum_required),
            chunks,
            meta,
            clock,
            config,
            storage_path,
            membership: OnceLock::new(),
            placement: Mutex::new(None),
            repl_wake: tokio::sync::Notify::new(),
            chunks_repaired: std::sync::atomic::AtomicU64::new(0),
            rebalance: Mutex::new((0, 0)),
            chunk_gate: tokio::sync::RwLock::new(()),
        }
    }

    /// Make this node part of a cluster (once, at startup).
    pub fn attach_membership(&self, membership: Arc<Membership>) {
        let (chunks, meta) = (self.chunks.clone(), self.meta.clone());
        let path = self.storage_path.clone();
        membership.set_figures_source(Box::new(move || own_figures(&chunks, &meta, &path)));
        let _ = self.membership.set(membership);
    }

    /// The node's cluster membership, if it runs in a cluster.
    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.get()
    }

    /// The placement ring of the agreed configuration (`None` outside a cluster).
    pub fn placement(&self) -> Option<Arc<Ring>> {
        let m = self.membership.get()?;
        let state = m.ring();
        let mut cache = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, ring)) = cache.as_ref()
            && *version == state.ring_version
        {
            return Some(ring.clone());
        }
        let ring = Arc::new(Ring::new(state.ring_members(), state.replication_factor.max(1)).ok()?);
        *cache = Some((state.ring_version, ring.clone()));
        Some(ring)
    }

    /// True when this node is the first replica of `bucket/key` (or standalone): the
    /// node that runs background work (lifecycle) for the key.
    pub fn is_primary(&self, bucket: &str, key: &str) -> bool {
        match self.placement() {
            Some(ring) => ring.replicas(bucket, key).first() == Some(&self.node.id.as_str()),
            None => true,
        }
    }

    /// Held by garbage collection while it deletes chunk files.
    pub async fn gc_gate(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.chunk_gate.write().await
    }

    /// Held while chunks received from a peer are stored and referenced (or found
    /// unneeded and deleted again): one change at a time, so two copies of the same
    /// version arriving from two peers cannot delete each other's chunk files.
    pub async fn receive_gate(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.chunk_gate.write().await
    }

    /// Record what the last anti-entropy round found still to move off this node.
    pub fn record_rebalance(&self, pending: u64, checked: u64) {
        *self.rebalance.lock().unwrap_or_else(|e| e.into_inner()) = (pending, checked);
    }

    /// Progress of moving data off this node (0 to 1), `None` when nothing is waiting.
    fn rebalance_progress(&self) -> Option<f64> {
        let (pending, checked) = *self.rebalance.lock().unwrap_or_else(|e| e.into_inner());
        (pending > 0).then(|| 1.0 - pending as f64 / checked.max(1) as f64)
    }

    /// Chunks repaired from peers since start.
    pub fn chunks_repaired(&self) -> u64 {
        self.chunks_repaired.load(Ordering::Relaxed)
    }

    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn chunk_store(&self) -> &ChunkStore {
        &self.chunks
    }

    /// Replication factor in effect: the configured one, capped at the node count.
    pub fn replication_factor(&self) -> usize {
        self.config.replication_factor.clamp(1, 1)
    }

    /// Longest a quorum write waits for its replicas.
    pub fn replication_timeout_ms(&self) -> u64 {
        self.config.replication_timeout_ms
    }

    pub fn set_quorum(&self, required: bool) {
        self.quorum.store(required, Ordering::SeqCst);
    }

    /// Whether writes wait for a quorum: the agreed ring's setting in a cluster (every
    /// node applies the same), this node's own otherwise.
    pub fn quorum_required(&self) -> bool {
        match self.membership.get() {
            Some(m) => m.ring().quorum_required,
            None => self.quorum.load(Ordering::SeqCst),
        }
    }

    /// Store a chunk on its replicas (here: the local disk) and return its reference.
    pub async fn write_chunk(
        &self,
        bucket: BucketHash,
        data: Bytes,
    ) -> Result<ChunkRef, ClusterError> {
        let store = self.chunks.clone();
        run_blocking(move || store.write(bucket, &data))
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))?
            .map_err(ClusterError::from)
    }

    /// Read a chunk, verified against its SHA-256. In a cluster, a chunk that is corrupt
    /// or missing here is fetched from a peer holding the same chunk, rewritten here
    /// (repaired) and served; the corrupt file stays in quarantine.
    pub async fn read_chunk(&self, r: ChunkRef) -> Result<Bytes, ClusterError> {
        match self.read_local_chunk(r.clone()).await {
            Err(ClusterError::Store(
                e @ (StoreError::CorruptChunk(_) | StoreError::MissingChunk(_)),
            )) if self.membership.get().is_some() => match self.repair_chunk(&r).await {
                Ok(data) => Ok(data),
                Err(why) => {
                    tracing::warn!(chunk = %r.id, error = %why, "no peer could repair the chunk");
                    Err(ClusterError::Store(e))
                }
            },
            other => other,
        }
    }

    /// Read a chunk from this node's disk only, verified against its SHA-256.
    pub async fn read_local_chunk(&self, r: ChunkRef) -> Result<Bytes, ClusterError> {
        let store = self.chunks.clone();
        run_blocking(move || store.read_verified(&r))
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))?
            .map_err(ClusterError::from)
    }

    /// Remove a chunk from its replicas.
    pub async fn delete_chunks(&self, ids: Vec<ChunkId>) -> Result<(), ClusterError> {
        let store = self.chunks.clone();
        run_blocking(move || {
            for id in &ids {
                store.delete(id)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| ClusterError::Task(e.to_string()))?
        .map_err(ClusterError::from)
    }

    pub fn status(&self) -> ClusterStatus {
        let NodeFigures {
            disk_total_bytes: total,
            disk_free_bytes: free,
            object_count,
        } = own_figures(&self.chunks, &self.meta, &self.storage_path);
        if let Some(m) = self.membership.get() {
            return self.cluster_status(m, total, free, object_count);
        }
        ClusterStatus {
            ring_version: 1,
            replication_factor: self.replication_factor(),
            configured_replication_factor: self.config.replication_factor,
            quorum_required: self.quorum_required(),
            replication_timeout_ms: self.config.replication_timeout_ms,
            nodes: vec![NodeStatus {
                id: self.node.id.clone(),
                address: self.node.address.clone(),
                state: "active",
                liveness: "alive",
                last_heartbeat_ms: self.clock.now_ms(),
                disk_total_bytes: total,
                disk_used_bytes: total.saturating_sub(free),
                disk_free_bytes: free,
                object_count,
                ring_share: 1.0,
                replication_backlog: 0,
            }],
            leader: None,
            rebalancing: None,
        }
    }

    /// `/cluster` from the agreed ring and this node's liveness view. Peers' disk and
    /// object figures are those of their last heartbeat reply (0 until one arrived).
    fn cluster_status(
        &self,
        m: &Membership,
        total: u64,
        free: u64,
        object_count: u64,
    ) -> ClusterStatus {
        let ring = m.ring();
        let shares = ring.ring_shares();
        let ring_members = ring.ring_members().len();
        let nodes = ring
            .members
            .values()
            .map(|member| {
                let (liveness, last_heartbeat_ms) = m.liveness_of(&member.id);
                let me = member.id == self.node.id;
                let figures = if me {
                    Some(NodeFigures {
                        disk_total_bytes: total,
                        disk_free_bytes: free,
                        object_count,
                    })
                } else {
                    m.figures_of(&member.id)
                }
                .unwrap_or_default();
                NodeStatus {
                    id: member.id.clone(),
                    address: member.address.clone(),
                    state: member.state.as_str(),
                    liveness: liveness.as_str(),
                    last_heartbeat_ms,
                    disk_total_bytes: figures.disk_total_bytes,
                    disk_used_bytes: figures
                        .disk_total_bytes
                        .saturating_sub(figures.disk_free_bytes),
                    disk_free_bytes: figures.disk_free_bytes,
                    object_count: figures.object_count,
                    ring_share: shares.get(&member.id).copied().unwrap_or(0.0),
                    replication_backlog: if me {
                        0
                    } else {
                        self.queued_for(&member.id).unwrap_or(0)
                    },
                }
            })
            .collect();
        ClusterStatus {
            ring_version: ring.ring_version,
            replication_factor: ring.replication_factor.clamp(1, ring_members.max(1)),
            configured_replication_factor: ring.replication_factor,
            quorum_required: self.quorum_required(),
            replication_timeout_ms: self.config.replication_timeout_ms,
            nodes,
            leader: m.leader(),
            rebalancing: self.rebalance_progress(),
        }
    }
}

/// A node's disk space (of the filesystem holding `storage_path`) and object count.
fn own_figures(chunks: &ChunkStore, meta: &Meta, storage_path: &std::path::Path) -> NodeFigures {
    let (total, free) = chunks.disk().space(storage_path).unwrap_or((0, 0));
    NodeFigures {
        disk_total_bytes: total,
        disk_free_bytes: free,
        object_count: meta
            .read()
            .and_then(|r| r.count(Table::Current))
            .unwrap_or(0),
    }
}
