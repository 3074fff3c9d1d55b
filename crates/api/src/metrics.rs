//! Prometheus metrics of one node. Each server owns its recorder (no global state), so
//! several nodes can run in one process (tests, simulation).

use std::sync::atomic::Ordering;

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::{Counter, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::ApiState;

static META: Metadata<'static> = Metadata::new("bucketdb", metrics::Level::INFO, None);

/// Latency histogram buckets, in seconds.
const LATENCY_BUCKETS_SECS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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
        let recorder = match PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS_SECS) {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            handles: Mutex::new(HashMap::new()),
        }
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
        let svc = &state.service;
        let s = svc.stats();
        let c = svc.cluster().chunk_store().stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        self.set_counter(
            "bucketdb_chunk_verify_failures_total",
            load(&c.corrupt_chunks),
        );
        self.set_counter("bucketdb_chunks_written_total", load(&c.chunks_written));
        self.set_counter("bucketdb_chunks_deleted_total", load(&c.chunks_deleted));
        self.set_counter(
            "bucketdb_gc_chunks_deleted_total",
            load(&s.gc_chunks_deleted),
        );
        self.set_counter("bucketdb_gc_runs_total", load(&s.gc_runs));
        self.set_counter("bucketdb_gc_orphans_swept_total", load(&s.orphans_swept));
        self.set_counter("bucketdb_lifecycle_runs_total", load(&s.lifecycle_runs));
        self.set_counter(
            "bucketdb_lifecycle_expired_total",
            load(&s.lifecycle_expired),
        );
        self.set_counter(
            "bucketdb_lifecycle_noncurrent_deleted_total",
            load(&s.lifecycle_noncurrent_deleted),
        );
        self.set_counter(
            "bucketdb_lifecycle_uploads_aborted_total",
            load(&s.lifecycle_uploads_aborted),
        );
        let status = svc.cluster().status();
        if let Some(node) = status.nodes.first() {
            self.set_gauge("bucketdb_objects", node.object_count as f64);
            self.set_gauge("bucketdb_disk_total_bytes", node.disk_total_bytes as f64);
            self.set_gauge("bucketdb_disk_free_bytes", node.disk_free_bytes as f64);
        }
        self.set_gauge(
            "bucketdb_replication_factor",
            status.replication_factor as f64,
        );
        self.set_gauge(
            "bucketdb_ready",
            if state.ready.load(Ordering::SeqCst) {
                1.0
            } else {
                0.0
            },
        );
        self.handle.render()
    }
}
