//! Prometheus metrics of one node. Each server owns its recorder (no global state), so
//! several nodes can run in one process (tests, simulation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::ApiState;
use crate::stats::NodeStats;

static META: Metadata<'static> = Metadata::new("bucketdb", metrics::Level::INFO, None);

/// Latency histogram buckets (upper bounds), in seconds.
pub const LATENCY_BUCKETS_SECS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The APIs whose requests are counted: the REST API (with the console) and S3.
pub const APIS: [&str; 2] = ["rest", "s3"];

/// Running totals of one API's requests, kept beside the Prometheus series (recorded by
/// the same call) so `/stats` can report them as JSON.
#[derive(Default)]
struct Traffic {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    duration_micros: AtomicU64,
    /// Requests per latency bucket: one per bound, then one for slower requests.
    latency: [AtomicU64; LATENCY_BUCKETS_SECS.len() + 1],
}

/// A copy of one API's [`Traffic`] totals.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSnapshot {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_seconds_sum: f64,
    /// Requests per bucket of [`LATENCY_BUCKETS_SECS`] (not cumulative), then those
    /// slower than the last bound.
    pub latency_counts: Vec<u64>,
}

impl Traffic {
    fn record(&self, status: u16, seconds: f64, bytes_in: u64, bytes_out: u64) {
        let add = |a: &AtomicU64, n: u64| a.fetch_add(n, Ordering::Relaxed);
        add(&self.requests, 1);
        match status {
            400..=499 => add(&self.client_errors, 1),
            500.. => add(&self.server_errors, 1),
            _ => 0,
        };
        add(&self.bytes_in, bytes_in);
        add(&self.bytes_out, bytes_out);
        add(&self.duration_micros, (seconds * 1e6) as u64);
        let bucket = LATENCY_BUCKETS_SECS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS_SECS.len());
        if let Some(slot) = self.latency.get(bucket) {
            add(slot, 1);
        }
    }

    fn snapshot(&self) -> TrafficSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TrafficSnapshot {
            requests: load(&self.requests),
            client_errors: load(&self.client_errors),
            server_errors: load(&self.server_errors),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            duration_seconds_sum: load(&self.duration_micros) as f64 / 1e6,
            latency_counts: self.latency.iter().map(load).collect(),
        }
    }
}

/// The metric handles of one (api, operation, status), registered once.
#[derive(Clone)]
struct RequestHandles {
    requests: Counter,
    duration: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Bounded by the number of operations times the statuses they return.
    handles: Mutex<HashMap<(&'static str, &'static str, u16), RequestHandles>>,
    /// Totals per API, in the order of [`APIS`].
    traffic: [Traffic; APIS.len()],
    /// Requests handed to their key's coordinator on another node.
    forwarded: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

impl Metrics {
    pub fn new() -> Self {
        // `set_buckets` only fails on an empty list, which the constant is not.
        let recorder = match PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS_SECS) {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            handles: Mutex::new(HashMap::new()),
            traffic: Default::default(),
            forwarded: AtomicU64::new(0),
        }
    }

    /// Count a request answered by its key's coordinator on another node.
    pub fn record_forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered by their key's coordinator on another node since start.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Request totals of each API in [`APIS`].
    pub fn traffic(&self) -> Vec<(&'static str, TrafficSnapshot)> {
        APIS.iter()
            .zip(&self.traffic)
            .map(|(api, t)| (*api, t.snapshot()))
            .collect()
    }

    pub fn record_request(
        &self,
        api: &'static str,
        operation: &'static str,
        status: u16,
        seconds: f64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let handles = {
            let mut cache = match self.handles.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            cache
                .entry((api, operation, status))
                .or_insert_with(|| self.register_request(api, operation, status))
                .clone()
        };
        handles.requests.increment(1);
        handles.duration.record(seconds);
        handles.bytes_in.increment(bytes_in);
        handles.bytes_out.increment(bytes_out);
        if let Some(t) = APIS
            .iter()
            .position(|a| *a == api)
            .and_then(|i| self.traffic.get(i))
        {
            t.record(status, seconds, bytes_in, bytes_out);
        }
    }

    fn register_request(
        &self,
        api: &'static str,
        operation: &'static str,
        status: u16,
    ) -> RequestHandles {
        let r = &self.recorder;
        let labels = [
            ("api", api.to_string()),
            ("operation", operation.to_string()),
            ("status", status.to_string()),
        ];
        let op = [
            ("api", api.to_string()),
            ("operation", operation.to_string()),
        ];
        RequestHandles {
            requests: r.register_counter(&key("bucketdb_requests_total", &labels), &META),
            duration: r.register_histogram(&key("bucketdb_request_duration_seconds", &op), &META),
            bytes_in: r.register_counter(&key("bucketdb_bytes_in_total", &op), &META),
            bytes_out: r.register_counter(&key("bucketdb_bytes_out_total", &op), &META),
        }
    }

    fn set_counter(&self, name: &'static str, value: u64) {
        self.recorder
            .register_counter(&key(name, &[]), &META)
            .absolute(value);
    }

    fn set_gauge(&self, name: &'static str, value: f64) {
        self.recorder
            .register_gauge(&key(name, &[]), &META)
            .set(value);
    }

    /// The Prometheus text exposition, with storage figures refreshed.
    pub fn render(&self, state: &ApiState) -> String {
        let s = NodeStats::collect(state);
        let counters = [
            (
                "bucketdb_chunk_verify_failures_total",
                s.chunks.verify_failures,
            ),
            ("bucketdb_chunks_written_total", s.chunks.written),
            ("bucketdb_chunks_deleted_total", s.chunks.deleted),
            ("bucketdb_chunks_repaired_total", s.chunks.repaired),
            ("bucketdb_anti_entropy_rounds_total", s.rebalance.rounds),
            (
                "bucketdb_anti_entropy_copies_total",
                s.rebalance.copies_queued,
            ),
            (
                "bucketdb_anti_entropy_ranges_matched_total",
                s.rebalance.ranges_matched,
            ),
            (
                "bucketdb_anti_entropy_ranges_compared_total",
                s.rebalance.ranges_compared,
            ),
            ("bucketdb_handoffs_total", s.rebalance.handed_off),
            ("bucketdb_forwarded_requests_total", s.forwarded_requests),
            ("bucketdb_read_repairs_total", s.read_repairs),
            ("bucketdb_gc_chunks_deleted_total", s.gc.chunks_deleted),
            ("bucketdb_gc_runs_total", s.gc.runs),
            ("bucketdb_gc_orphans_swept_total", s.gc.orphans_swept),
            ("bucketdb_uploads_abandoned_total", s.gc.uploads_abandoned),
            ("bucketdb_lifecycle_runs_total", s.lifecycle.runs),
            ("bucketdb_lifecycle_expired_total", s.lifecycle.expired),
            (
                "bucketdb_lifecycle_noncurrent_deleted_total",
                s.lifecycle.noncurrent_deleted,
            ),
            (
                "bucketdb_lifecycle_uploads_aborted_total",
                s.lifecycle.uploads_aborted,
            ),
        ];
        for (name, value) in counters {
            self.set_counter(name, value);
        }
        if let Some(disk) = &s.disk {
            self.set_gauge("bucketdb_objects", s.objects as f64);
            self.set_gauge("bucketdb_stored_bytes", s.stored_bytes as f64);
            self.set_gauge("bucketdb_disk_total_bytes", disk.total_bytes as f64);
            self.set_gauge("bucketdb_disk_free_bytes", disk.free_bytes as f64);
        }
        self.set_gauge("bucketdb_replication_factor", s.replication_factor as f64);
        self.set_gauge("bucketdb_replication_backlog", s.replication_backlog as f64);
        self.set_gauge("bucketdb_ready", if s.ready { 1.0 } else { 0.0 });
        self.handle.render()
    }
}
