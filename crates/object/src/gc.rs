//! Garbage collection of chunks: the GC queue (filled in the same transaction that drops
//! a chunk's last reference) is drained in bounded batches; at startup, chunk files that
//! no record references (left by a crash mid-upload) are swept.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bucketdb_store::{ChunkId, StoreError, Table};

use crate::ObjectService;
use crate::error::Result;

/// Chunks deleted per GC batch.
pub const GC_BATCH: usize = 1024;

impl ObjectService {
    pub(crate) fn wake_gc(&self, freed: bool) {
        if freed {
            self.gc_wake.notify_one();
        }
    }

    /// Wait until some operation freed chunks (or `timeout` passes).
    pub async fn gc_wanted(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.gc_wake.notified()).await;
    }

    /// Delete one batch of queued chunks; returns how many were deleted.
    pub async fn run_gc_once(self: &Arc<Self>) -> Result<u64> {
        let ids: Vec<ChunkId> = self
            .cluster
            .meta()
            .read()?
            .scan(Table::GcQueue, b"", None, GC_BATCH)?
            .into_iter()
            .filter_map(|(k, _)| ChunkId::from_bytes(&k))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        // Files first, queue entries after: a crash in between only repeats a delete.
        self.cluster.delete_chunks(ids.clone()).await?;
        let n = ids.len() as u64;
        self.cluster
            .meta()
            .write(move |kv| -> Result<(), StoreError> {
                for id in &ids {
                    kv.delete(Table::GcQueue, &id.to_bytes())?;
                }
                Ok(())
            })
            .await?;
        self.stats.gc_chunks_deleted.fetch_add(n, Ordering::Relaxed);
        self.stats.gc_runs.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    /// Drain the whole GC queue.
    pub async fn run_gc_until_empty(self: &Arc<Self>) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.run_gc_once().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Remove chunk files no record references. Only call while no upload is in flight
    /// (startup, before serving).
    pub fn sweep_orphans(&self) -> Result<u64> {
        let meta = self.cluster.meta();
        let kv = meta.read()?;
        let n = self.cluster.chunk_store().sweep_orphans(&mut |id| {
            let chunk = id.to_bytes();
            Ok(kv.get(Table::Chunks, &chunk)?.is_some()
                || kv.get(Table::GcQueue, &chunk)?.is_some())
        })?;
        self.stats.orphans_swept.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}
