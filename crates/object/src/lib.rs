//! The object service: buckets, objects, versions, tags, multipart uploads, lifecycle and
//! garbage collection, with S3 semantics. It speaks Rust types only (no HTTP, XML or JSON)
//! and reaches storage through the cluster layer.

mod buckets;
mod conditions;
mod delete;
mod error;
pub mod fsck;
mod gc;
mod get;
mod ingest;
mod lifecycle;
mod list;
mod list_cluster;
mod multipart;
pub mod names;
mod newest;
mod put;
mod quorum;
mod rebalance;
mod refs;
mod replica;
mod tags;
mod uploads;
mod usage;
mod versions;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bucketdb_cluster::Cluster;
use bucketdb_store::{Clock, Random};
use tokio::sync::{Notify, Semaphore};

pub use bucketdb_store::records::{
    Body as StoredBody, BucketConfig, BucketRecord, CorsRule, LifecycleRule, ObjectRecord,
    PartRecord, StandardHeaders, UploadRecord, Versioning,
};
pub use conditions::Conditions;
pub use error::{ObjectError, Result};
pub use get::{BodyStream, ObjectReader, RangeSpec};
pub use lifecycle::LifecycleReport;
pub use list::{ListPage, ListQuery, MAX_LIST_LIMIT};
pub use list_cluster::LIST_PEER_TIMEOUT;
pub use multipart::{CombineChecksums, MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE, PartUpload};
pub use put::{BodyChecksums, PutOptions};
pub use rebalance::AntiEntropyReport;
pub use replica::TOMBSTONE_TTL;
pub use uploads::{MAX_UPLOADS_GATHERED, UploadSummary, UploadsQuery};
pub use versions::{DeleteOutcome, MAX_VERSIONS_LISTED, VersionList, VersionPage};

/// Default size of a chunk.
pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Default largest object kept inline in the metadata store.
pub const DEFAULT_INLINE_THRESHOLD: usize = 64 * 1024;
/// Default largest object.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Uploads streaming into chunks at once; more wait (their clients see TCP backpressure).
/// Bounds upload memory to about `3 * chunk_size` per slot.
pub const MAX_CONCURRENT_UPLOADS: usize = 32;
/// Default time freed chunks stay readable.
pub const DEFAULT_GC_GRACE_MS: u64 = 15 * 60 * 1000;
/// Smallest and largest chunk size accepted in configuration.
pub const CHUNK_SIZE_MIN: usize = 64 * 1024;
pub const CHUNK_SIZE_MAX: usize = 64 * 1024 * 1024;
/// Largest inline threshold accepted (inline objects live in metadata transactions).
pub const INLINE_THRESHOLD_MAX: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub chunk_size: usize,
    pub inline_threshold: usize,
    pub max_object_size: u64,
    /// How long freed chunks stay readable before GC deletes them, so downloads that
    /// began before an overwrite or delete can finish.
    pub gc_grace_ms: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            chunk_size: DEFAULT_CHUNK_SIZE,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            gc_grace_ms: DEFAULT_GC_GRACE_MS,
        }
    }
}

/// Counters of background and integrity work, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub gc_chunks_deleted: AtomicU64,
    pub gc_runs: AtomicU64,
    pub orphans_swept: AtomicU64,
    pub lifecycle_runs: AtomicU64,
    pub lifecycle_expired: AtomicU64,
    pub lifecycle_noncurrent_deleted: AtomicU64,
    pub lifecycle_uploads_aborted: AtomicU64,
    pub uploads_abandoned: AtomicU64,
    pub anti_entropy_rounds: AtomicU64,
    /// Copies queued for replicas that lacked them, found by anti-entropy.
    pub anti_entropy_copies: AtomicU64,
    /// Versions deleted here after their new owners confirmed holding them.
    pub handoffs: AtomicU64,
    /// Versions held here that this node no longer owns (after the last round).
    pub handoff_pending: AtomicU64,
    /// Anti-entropy (page, replica) pairs settled by one hash, and compared version by
    /// version.
    pub anti_entropy_ranges_matched: AtomicU64,
    pub anti_entropy_ranges_compared: AtomicU64,
    /// Stale replicas (this node or peers) given the newest version by a quorum read.
    pub read_repairs: AtomicU64,
}

/// Most best-effort background tasks (read repairs, aborts of prepared copies) running
/// at once; more are skipped (anti-entropy and expiry cover what they would have done).
pub const MAX_BACKGROUND_TASKS: usize = 256;

pub struct ObjectService {
    /// Best-effort work started by requests; aborted at shutdown, since it holds the
    /// stores open.
    background: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Read repairs running, as (bucket, key, seq): one at a time per version.
    repairs_running: std::sync::Mutex<std::collections::HashSet<(String, String, u64)>>,
    cluster: Arc<Cluster>,
    config: ServiceConfig,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    stats: ServiceStats,
    gc_wake: Notify,
    upload_slots: Semaphore,
}

impl ObjectService {
    pub fn new(
        cluster: Arc<Cluster>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Self {
        ObjectService {
            background: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            repairs_running: std::sync::Mutex::new(std::collections::HashSet::new()),
            cluster,
            config,
            clock,
            random,
            stats: ServiceStats::default(),
            gc_wake: Notify::new(),
            upload_slots: Semaphore::new(MAX_CONCURRENT_UPLOADS),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Run best-effort `work` in the background; `false` (not run) when
    /// [`MAX_BACKGROUND_TASKS`] already run.
    pub(crate) fn spawn_best_effort(
        &self,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> bool {
        let mut tasks = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= MAX_BACKGROUND_TASKS {
            return false;
        }
        tasks.spawn(work);
        true
    }

    /// Abort the best-effort background work and wait until it is gone (at shutdown).
    pub async fn stop_background_tasks(&self) {
        let mut tasks =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// One of the `MAX_CONCURRENT_UPLOADS` slots for streaming a body into chunks.
    pub(crate) async fn upload_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.upload_slots
            .acquire()
            .await
            .map_err(|_| ObjectError::Internal("upload slots closed".into()))
    }
}
