//! Shared harness for the object-service integration tests: a service on a private
//! temporary directory, body helpers and small assertions.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bucketdb_cluster::{Cluster, NodeInfo, ReplicationConfig};
use bucketdb_object::{
    ObjectReader, ObjectRecord, ObjectService, PutOptions, RangeSpec, ServiceConfig,
};
use bucketdb_store::chunks::QUARANTINE_DIR;
use bucketdb_store::{ChunkStore, ManualClock, Meta, Random, RedbEngine, SeededRandom, StdDisk};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Md5;
use sha2::{Digest, Sha256};

pub const START_MS: u64 = 1_700_000_000_000;
pub const CHUNK: usize = 64 * 1024;
pub const INLINE: usize = 1024;
pub const MAX_OBJECT: u64 = 10 * 1024 * 1024;
pub const MIB: usize = 1024 * 1024;

/// Frame sizes cycled through when a body is cut into frames; none divides the chunk
/// size, so chunk boundaries fall inside frames.
const FRAME_SIZES: [usize; 6] = [1, 4_099, 65_521, 30_011, 7, 100_003];

pub fn default_config() -> ServiceConfig {
    ServiceConfig {
        chunk_size: CHUNK,
        inline_threshold: INLINE,
        max_object_size: MAX_OBJECT,
        gc_grace_ms: 0,
    }
}

/// A service built for multipart tests: 5 MiB parts must fit, and 1 MiB chunks keep the
/// number of chunk files (each one fsynced) small.
pub fn multipart_config() -> ServiceConfig {
    ServiceConfig {
        chunk_size: MIB,
        inline_threshold: INLINE,
        max_object_size: 64 * MIB as u64,
        gc_grace_ms: 0,
    }
}

/// One service on its own temporary directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub config: ServiceConfig,
    pub svc: Arc<ObjectService>,
    /// How many times the service was reopened.
    generation: u64,
}

fn build(
    dir: &Path,
    clock: Arc<ManualClock>,
    config: ServiceConfig,
    generation: u64,
) -> Arc<ObjectService> {
    // Chunk ids come from this generator: a reopened service must not replay the ids of
    // its previous life, or it would overwrite live chunk files.
    let random: Arc<dyn Random> = Arc::new(SeededRandom::new(1 + generation));
    let chunks = Arc::new(ChunkStore::new(
        dir.join("data"),
        Arc::new(StdDisk::default()),
        random.clone(),
    ));
    let meta = Arc::new(Meta::new(Arc::new(
        RedbEngine::open(&dir.join("meta")).unwrap(),
    )));
    let cluster = Arc::new(Cluster::single_node(
        NodeInfo {
            id: "n1".into(),
            address: "127.0.0.1:0".into(),
        },
        chunks,
        meta,
        clock.clone(),
        ReplicationConfig {
            replication_factor: 1,
            quorum_required: false,
            replication_timeout_ms: 10_000,
        },
    ));
    Arc::new(ObjectService::new(cluster, config, clock, random))
}

impl Env {
    pub fn new() -> Env {
        Env::with_config(default_config())
    }

    pub fn with_config(config: ServiceConfig) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START_MS));
        let svc = build(dir.path(), clock.clone(), config.clone(), 0);
        Env {
            dir,
            clock,
            config,
            svc,
            generation: 0,
        }
    }

    /// Drop the service (and with it the metadata writer and the database) and open a
    /// new one on the same directories, as after a restart.
    pub async fn reopen(self) -> Env {
        self.offline(|_| ()).await.0
    }

    /// Close the service, run `work` on the directory while nothing holds its stores
    /// (offline tools), then open a new service there, as after a restart.
    pub async fn offline<R>(self, work: impl FnOnce(&Path) -> R) -> (Env, R) {
        let Env {
            dir,
            clock,
            config,
            svc,
            generation,
        } = self;
        // A finished download's read-ahead task may still be letting go of its handle.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&svc) > 1 {
            assert!(
                Instant::now() < deadline,
                "something still holds the service"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(svc);
        let out = work(dir.path());
        let generation = generation + 1;
        let svc = build(dir.path(), clock.clone(), config.clone(), generation);
        let env = Env {
            dir,
            clock,
            config,
            svc,
            generation,
        };
        (env, out)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir().join(QUARANTINE_DIR)
    }

    /// Every file under data/, quarantine excluded.
    pub fn chunk_files(&self) -> Vec<PathBuf> {
        let quarantine = self.quarantine_dir();
        let mut out = files_under(&self.data_dir());
        out.retain(|p| !p.starts_with(&quarantine));
        out.sort();
        out
    }

    pub fn quarantined_files(&self) -> Vec<PathBuf> {
        files_under(&self.quarantine_dir())
    }

    pub fn chunk_path(&self, r: &bucketdb_store::ChunkRef) -> PathBuf {
        self.svc.cluster().chunk_store().path_of(&r.id)
    }

    pub async fn create_bucket(&self, name: &str) {
        self.svc.create_bucket(name).await.unwrap();
    }

    /// A new bucket with versioning enabled.
    pub async fn create_versioned_bucket(&self, name: &str) {
        self.create_bucket(name).await;
        self.svc
            .set_versioning(name, bucketdb_object::Versioning::Enabled)
            .await
            .unwrap();
    }

    pub async fn put(&self, bucket: &str, key: &str, data: &[u8]) -> ObjectRecord {
        self.svc
            .put_object(bucket, key, body(data), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e}"))
    }

    /// The whole body of an object (or version), which must read without error.
    pub async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Vec<u8> {
        let r = self
            .svc
            .get_object(bucket, key, version, None, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e}"));
        read_all(r).await
    }

    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: RangeSpec,
    ) -> (ObjectReader, Vec<u8>) {
        let mut r = self
            .svc
            .get_object(bucket, key, None, Some(range), &Default::default())
            .await
            .unwrap_or_else(|e| panic!("get {bucket}/{key} {range:?}: {e}"));
        let body = std::mem::replace(&mut r.body, Box::pin(futures::stream::empty()));
        let bytes = collect_ok(body).await;
        (r, bytes)
    }

    /// Run GC until the queue is empty, then wait (bounded) until no chunk files are
    /// left beyond `expected`, for the asynchronous cleanup of failed uploads.
    pub async fn settle_chunk_files(&self, expected: usize) -> Vec<PathBuf> {
        self.svc.run_gc_until_empty().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let files = self.chunk_files();
            if files.len() <= expected || Instant::now() >= deadline {
                return files;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Deterministic, non-repeating-looking content.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` cut into frames of odd sizes.
pub fn frames(data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = FRAME_SIZES[i % FRAME_SIZES.len()].min(rest.len());
        out.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
        i += 1;
    }
    out
}

pub fn body(data: &[u8]) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + use<> {
    futures::stream::iter(frames(data).into_iter().map(Ok::<_, std::io::Error>))
}

/// A body that yields `data` and then fails.
pub fn failing_body(
    data: &[u8],
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + use<> {
    let mut items: Vec<std::io::Result<Bytes>> = frames(data).into_iter().map(Ok).collect();
    items.push(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    futures::stream::iter(items)
}

pub async fn read_all(r: ObjectReader) -> Vec<u8> {
    collect_ok(r.body).await
}

async fn collect_ok(mut body: bucketdb_object::BodyStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(item) = body.next().await {
        out.extend_from_slice(&item.unwrap_or_else(|e| panic!("body failed: {e}")));
    }
    out
}

/// Bytes yielded before the first error, and that error (if any).
pub async fn read_until_error(
    mut body: bucketdb_object::BodyStream,
) -> (Vec<u8>, Option<bucketdb_object::ObjectError>) {
    let mut out = Vec::new();
    while let Some(item) = body.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

pub fn md5_raw(data: &[u8]) -> Vec<u8> {
    Md5::digest(data).to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The object-level SHA-256 of a multi-chunk object: SHA-256 over the chunk digests,
/// then `-<chunks>`.
pub fn multi_chunk_sha256(data: &[u8], chunk_size: usize) -> String {
    let mut h = Sha256::new();
    let mut n = 0;
    for c in data.chunks(chunk_size) {
        h.update(Sha256::digest(c));
        n += 1;
    }
    format!("{}-{n}", hex::encode(h.finalize()))
}

/// Flip one bit of a file in place.
pub fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Assert that a `Result<_, ObjectError>` is an error matching a pattern (the `Ok` type
/// need not be `Debug`).
#[allow(unused_macros)] // shared by several test crates; not all use it
macro_rules! assert_err {
    ($e:expr, $p:pat) => {
        match $e {
            Err($p) => {}
            Err(other) => panic!("expected {}, got error {other:?}", stringify!($p)),
            Ok(_) => panic!("expected {}, got Ok", stringify!($p)),
        }
    };
}
