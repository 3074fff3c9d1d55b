//! Turning a byte stream into stored chunks: the upload half of the streaming engine.
//!
//! The stream is cut into `chunk_size` chunks. Each full chunk goes, by reference, to two
//! places at once: a blocking thread that feeds the whole-object MD5 (the ETag), and a
//! blocking writer that hashes the chunk with SHA-256 and writes it durably. The next chunk
//! is received meanwhile, so at most about three chunks of one request are in memory.

use std::future::Future;
use std::sync::Arc;

use bucketdb_cluster::Cluster;
use bucketdb_store::ChunkRef;
use bucketdb_store::chunks::BucketHash;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{ObjectError, Result};

/// Chunks queued for the MD5 thread beyond the one it is hashing.
const MD5_QUEUE_DEPTH: usize = 1;

/// A body as the service accepts it.
pub trait ByteStream: Stream<Item = std::io::Result<Bytes>> + Send + Unpin {}
impl<S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin> ByteStream for S {}

pub(crate) enum StoredBody {
    Inline(Bytes),
    Chunks(Vec<ChunkRef>),
}

pub(crate) struct Ingested {
    pub size: u64,
    pub md5: [u8; 16],
    pub sha256: String,
    pub body: StoredBody,
    /// Deletes the chunks if the caller never commits them.
    pub guard: ChunkGuard,
}

/// Chunks written for a request that has not been committed yet. Dropping the guard
/// without [`ChunkGuard::disarm`] deletes them, so failed and abandoned uploads leave no
/// garbage behind.
pub(crate) struct ChunkGuard {
    cluster: Arc<Cluster>,
    chunks: Vec<ChunkRef>,
}

impl ChunkGuard {
    fn new(cluster: Arc<Cluster>) -> Self {
        ChunkGuard {
            cluster,
            chunks: Vec::new(),
        }
    }

    pub fn disarm(mut self) {
        self.chunks.clear();
    }

    /// Run the metadata commit that makes the guarded chunks reachable. It runs in a task
    /// of its own, so a caller that goes away mid-commit (a client disconnect drops the
    /// request future) cannot split the two: the chunks are kept exactly when the commit
    /// succeeded, and deleted otherwise.
    pub async fn commit<T: Send + 'static>(
        self,
        commit: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        tokio::spawn(async move {
            let result = commit.await;
            if result.is_ok() {
                self.disarm();
            }
            result
        })
        .await
        .map_err(|e| ObjectError::Internal(e.to_string()))?
    }
}

impl Drop for ChunkGuard {
    fn drop(&mut self) {
        if self.chunks.is_empty() {
            return;
        }
        let ids: Vec<_> = self.chunks.drain(..).map(|c| c.id).collect();
        let cluster = self.cluster.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = cluster.delete_chunks(ids).await {
                    tracing::warn!(error = %e, "could not delete chunks of a failed upload; the startup sweep will");
                }
            });
        }
    }
}

pub(crate) struct IngestLimits {
    pub chunk_size: usize,
    /// Keep the body inline when it is at most this long (0: never).
    pub inline_threshold: usize,
    pub max_size: u64,
    /// The length the client declared, if any; the body must match it exactly.
    pub declared: Option<u64>,
}

/// Hashes a body's MD5 while its chunks are written: on its own thread on the server's
/// multi-threaded runtime, inline on a current-thread runtime (see
/// [`bucketdb_store::blocking`]).
enum Md5Feeder {
    Thread {
        tx: mpsc::Sender<Bytes>,
        task: JoinHandle<[u8; 16]>,
    },
    Inline(Md5),
}

impl Md5Feeder {
    fn start() -> Self {
        if bucketdb_store::blocking::runs_inline() {
            return Md5Feeder::Inline(Md5::new());
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(MD5_QUEUE_DEPTH);
        let task = tokio::task::spawn_blocking(move || {
            let mut h = Md5::new();
            while let Some(b) = rx.blocking_recv() {
                h.update(&b);
            }
            h.finalize().into()
        });
        Md5Feeder::Thread { tx, task }
    }

    async fn feed(&mut self, chunk: Bytes) -> Result<()> {
        match self {
            Md5Feeder::Thread { tx, .. } => tx
                .send(chunk)
                .await
                .map_err(|_| ObjectError::Internal("MD5 thread stopped".into())),
            Md5Feeder::Inline(h) => {
                h.update(&chunk);
                Ok(())
            }
        }
    }

    async fn finish(self) -> Result<[u8; 16]> {
        match self {
            Md5Feeder::Thread { tx, task } => {
                drop(tx);
                task.await.map_err(|e| ObjectError::Internal(e.to_string()))
            }
            Md5Feeder::Inline(h) => Ok(h.finalize().into()),
        }
    }
}

pub(crate) async fn ingest(
    cluster: &Arc<Cluster>,
    bucket: BucketHash,
    body: impl ByteStream,
    limits: IngestLimits,
) -> Result<Ingested> {
    if let Some(d) = limits.declared
        && d > limits.max_size
    {
        return Err(ObjectError::EntityTooLarge {
            max: limits.max_size,
        });
    }
    let mut p = Pipeline {
        cluster: cluster.clone(),
        bucket,
        guard: ChunkGuard::new(cluster.clone()),
        md5: None,
        inflight: None,
    };
    match p.run(body, &limits).await {
        Ok(ingested) => Ok(ingested),
        Err(e) => {
            // Let the chunk being written land in the guard, so that it is deleted too.
            p.settle().await.ok();
            Err(e)
        }
    }
}

struct Pipeline {
    cluster: Arc<Cluster>,
    bucket: BucketHash,
    guard: ChunkGuard,
    md5: Option<Md5Feeder>,
    inflight: Option<JoinHandle<Result<ChunkRef>>>,
}

impl Pipeline {
    async fn run(&mut self, mut body: impl ByteStream, limits: &IngestLimits) -> Result<Ingested> {
        let first_cap = limits
            .declared
            .map_or(limits.chunk_size, |d| (d as usize).min(limits.chunk_size));
        let mut buf = BytesMut::with_capacity(first_cap);
        let mut total: u64 = 0;
        while let Some(frame) = body.next().await {
            let frame = frame.map_err(|e| ObjectError::IncompleteBody(e.to_string()))?;
            total += frame.len() as u64;
            if total > limits.max_size {
                return Err(ObjectError::EntityTooLarge {
                    max: limits.max_size,
                });
            }
            if limits.declared.is_some_and(|d| total > d) {
                return Err(ObjectError::IncompleteBody(
                    "the body is longer than its declared length".into(),
                ));
            }
            buf.extend_from_slice(&frame);
            while buf.len() >= limits.chunk_size {
                let chunk = buf.split_to(limits.chunk_size).freeze();
                buf.reserve(limits.chunk_size);
                self.flush(chunk).await?;
            }
        }
        if let Some(d) = limits.declared
            && total != d
        {
            return Err(ObjectError::IncompleteBody(format!(
                "received {total} of {d} declared bytes"
            )));
        }

        if limits.inline_threshold > 0 && self.md5.is_none() && buf.len() <= limits.inline_threshold
        {
            let data = buf.freeze();
            return Ok(Ingested {
                size: total,
                md5: Md5::digest(&data).into(),
                sha256: hex::encode(Sha256::digest(&data)),
                body: StoredBody::Inline(data),
                guard: ChunkGuard::new(self.cluster.clone()),
            });
        }
        if !buf.is_empty() || self.md5.is_none() {
            self.flush(buf.freeze()).await?;
        }
        self.settle().await?;
        let Some(feeder) = self.md5.take() else {
            return Err(ObjectError::Internal("MD5 thread missing".into()));
        };
        let md5 = feeder.finish().await?;
        let chunks = std::mem::take(&mut self.guard.chunks);
        let guard = ChunkGuard {
            cluster: self.cluster.clone(),
            chunks: chunks.clone(),
        };
        Ok(Ingested {
            size: total,
            md5,
            sha256: chunks_sha256(&chunks),
            body: StoredBody::Chunks(chunks),
            guard,
        })
    }

    /// Hand a chunk to the MD5 thread and the writer, after the previous write finished.
    async fn flush(&mut self, chunk: Bytes) -> Result<()> {
        let md5 = self.md5.get_or_insert_with(Md5Feeder::start);
        md5.feed(chunk.clone()).await?;
        self.settle().await?;
        let c = self.cluster.clone();
        let bucket = self.bucket;
        self.inflight = Some(tokio::spawn(async move {
            c.write_chunk(bucket, chunk)
                .await
                .map_err(ObjectError::from)
        }));
        Ok(())
    }

    /// Wait for the chunk being written and record it.
    async fn settle(&mut self) -> Result<()> {
        // Await in place: if this future is dropped meanwhile, the write stays in
        // `inflight`, where `Drop` finds it and deletes its chunk.
        if let Some(prev) = self.inflight.as_mut() {
            let joined = prev.await;
            self.inflight = None;
            let r = joined.map_err(|e| ObjectError::Internal(e.to_string()))??;
            self.guard.chunks.push(r);
        }
        Ok(())
    }
}

impl Drop for Pipeline {
    /// A request dropped mid-upload (the client went away) leaves a chunk write in flight
    /// that never reached the guard: delete that chunk once it lands.
    fn drop(&mut self) {
        let Some(write) = self.inflight.take() else {
            return;
        };
        let cluster = self.cluster.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Ok(Ok(chunk)) = write.await
                    && let Err(e) = cluster.delete_chunks(vec![chunk.id]).await
                {
                    tracing::warn!(error = %e, "could not delete a chunk of an abandoned upload; the startup sweep will");
                }
            });
        }
    }
}

/// The object-level SHA-256 reported to users: the content's own digest when it fits in
/// one chunk, otherwise the digest of the chunk digests with the chunk count appended.
pub(crate) fn chunks_sha256(chunks: &[ChunkRef]) -> String {
    match chunks {
        [one] => hex::encode(one.sha256),
        many => {
            let mut h = Sha256::new();
            for c in many {
                h.update(c.sha256);
            }
            format!("{}-{}", hex::encode(h.finalize()), many.len())
        }
    }
}
