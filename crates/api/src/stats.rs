//! `GET /stats`: this node's figures as JSON for the console's live metrics — the same
//! counters `/metrics` exposes (it renders from [`NodeStats`] too), plus the request
//! totals per API with their latency histogram. Rates are for the reader to compute
//! from two snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ApiState;
use crate::metrics::{LATENCY_BUCKETS_SECS, TrafficSnapshot};

/// Space on the filesystem holding `storage_path`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunks {
    pub written: u64,
    pub deleted: u64,
    pub verify_failures: u64,
    /// Chunks that failed verification here and were rewritten from a peer's copy.
    pub repaired: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gc {
    pub runs: u64,
    pub chunks_deleted: u64,
    pub orphans_swept: u64,
    pub uploads_abandoned: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub runs: u64,
    pub expired: u64,
    pub noncurrent_deleted: u64,
    pub uploads_aborted: u64,
}

/// Anti-entropy and data movement (cluster nodes).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebalance {
    pub rounds: u64,
    /// Copies queued for replicas that lacked them.
    pub copies_queued: u64,
    /// Versions deleted here after their new owners confirmed holding them.
    pub handed_off: u64,
    /// Versions held here that belong elsewhere, as of the last round.
    pub handoff_pending: u64,
    /// (page, replica) pairs settled by one hash, and compared version by version.
    pub ranges_matched: u64,
    pub ranges_compared: u64,
}

/// A snapshot of one node's counters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_id: String,
    pub time_ms: u64,
    pub ready: bool,
    pub replication_factor: usize,
    /// `None` if this node is missing from the cluster status.
    pub disk: Option<Disk>,
    pub objects: u64,
    /// Bytes of every stored version (what users store, before chunking).
    pub stored_bytes: u64,
    /// Upper bounds of the buckets of each API's `latencyCounts`.
    pub latency_bounds_secs: &'static [f64],
    /// Request totals by API (`rest`, `s3`).
    pub requests: BTreeMap<&'static str, TrafficSnapshot>,
    pub chunks: Chunks,
    /// Replication changes queued here and not yet delivered, over all peers.
    pub replication_backlog: u64,
    pub rebalance: Rebalance,
    /// Requests this node handed to their key's coordinator on another node.
    pub forwarded_requests: u64,
    /// Stale replicas given the newest version by quorum reads through this node.
    pub read_repairs: u64,
    pub gc: Gc,
    pub lifecycle: Lifecycle,
}

impl NodeStats {
    pub fn collect(state: &ApiState) -> NodeStats {
        let svc = &state.service;
        let s = svc.stats();
        let c = svc.cluster().chunk_store().stats();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let node_id = svc.cluster().node().id.clone();
        let status = svc.cluster().status();
        let me = status.nodes.iter().find(|n| n.id == node_id);
        NodeStats {
            time_ms: svc.now_ms(),
            ready: state.ready.load(Ordering::SeqCst),
            replication_factor: status.replication_factor,
            disk: me.map(|n| Disk {
                total_bytes: n.disk_total_bytes,
                used_bytes: n.disk_used_bytes,
                free_bytes: n.disk_free_bytes,
            }),
            objects: me.map_or(0, |n| n.object_count),
            stored_bytes: svc.stored_bytes().unwrap_or(0),
            latency_bounds_secs: &LATENCY_BUCKETS_SECS,
            requests: state.metrics.traffic().into_iter().collect(),
            chunks: Chunks {
                written: load(&c.chunks_written),
                deleted: load(&c.chunks_deleted),
                verify_failures: load(&c.corrupt_chunks),
                repaired: svc.cluster().chunks_repaired(),
            },
            replication_backlog: status.nodes.iter().map(|n| n.replication_backlog).sum(),
            rebalance: Rebalance {
                rounds: load(&s.anti_entropy_rounds),
                copies_queued: load(&s.anti_entropy_copies),
                handed_off: load(&s.handoffs),
                handoff_pending: load(&s.handoff_pending),
                ranges_matched: load(&s.anti_entropy_ranges_matched),
                ranges_compared: load(&s.anti_entropy_ranges_compared),
            },
            forwarded_requests: state.metrics.forwarded(),
            read_repairs: load(&s.read_repairs),
            gc: Gc {
                runs: load(&s.gc_runs),
                chunks_deleted: load(&s.gc_chunks_deleted),
                orphans_swept: load(&s.orphans_swept),
                uploads_abandoned: load(&s.uploads_abandoned),
            },
            lifecycle: Lifecycle {
                runs: load(&s.lifecycle_runs),
                expired: load(&s.lifecycle_expired),
                noncurrent_deleted: load(&s.lifecycle_noncurrent_deleted),
                uploads_aborted: load(&s.lifecycle_uploads_aborted),
            },
            node_id,
        }
    }
}

/// `GET /stats`.
pub async fn stats(State(state): State<Arc<ApiState>>) -> Response {
    let mut resp = Json(NodeStats::collect(&state)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
