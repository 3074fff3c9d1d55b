//! Garbage collection of chunks: the GC queue (filled in the same transaction that drops
//! a chunk's last reference) is drained in bounded batches once an entry is older than
//! the grace period, so a download that started before an overwrite or delete can still
//! read its chunks. At startup, chunk files that no record references (left by a crash
//! mid-upload) are swept.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bucketdb_store::{ChunkId, KvRead, StoreError, Table};

use crate::ObjectService;
use crate::error::Result;
use crate::refs::parse_gc_key;

/// Chunks deleted per GC batch.
pub const GC_BATCH: usize = 1024;

/// Entries of `table` examined per scan by [`expired_keys`].
const EXPIRY_SCAN_PAGE: usize = 256;

/// Keys of entries of `table` that `expired` picks, scanning a page at a time, at most
/// `GC_BATCH` of them (background expiry of tombstones and prepared copies).
pub(crate) fn expired_keys(
    kv: &dyn KvRead,
    table: Table,
    expired: &mut dyn FnMut(&[u8]) -> Result<bool>,
) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut from = Vec::new();
    loop {
        let page = kv.scan(table, &from, None, EXPIRY_SCAN_PAGE)?;
        for (k, v) in &page {
            if keys.len() < GC_BATCH && expired(v)? {
                keys.push(k.clone());
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == EXPIRY_SCAN_PAGE && keys.len() < GC_BATCH => {
                from = k.clone();
                from.push(0);
            }
            _ => return Ok(keys),
        }
    }
}

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

    /// Delete one batch of queued chunks past their grace period; returns how many.
    pub async fn run_gc_once(self: &Arc<Self>) -> Result<u64> {
        let cutoff = self.clock.now_ms().saturating_sub(self.config.gc_grace_ms);
        let due: Vec<(Vec<u8>, ChunkId)> = self
            .cluster
            .meta()
            .read()?
            .scan(Table::GcQueue, b"", None, GC_BATCH)?
            .into_iter()
            .filter_map(|(k, _)| parse_gc_key(&k).map(|(ms, id)| (k, ms, id)))
            .take_while(|(_, ms, _)| *ms <= cutoff)
            .map(|(k, _, id)| (k, id))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        // A chunk another node sent again (replication reuses chunk ids) may have been
        // referenced anew since it was queued: such a file is kept. The gate keeps
        // replicas from storing and referencing chunks between this check and the
        // deletes.
        let _gate = self.cluster.gc_gate().await;
        let referenced: Vec<bool> = {
            let kv = self.cluster.meta().read()?;
            due.iter()
                .map(|(_, id)| Ok(kv.get(Table::Chunks, &id.to_bytes())?.is_some()))
                .collect::<Result<_, StoreError>>()?
        };
        let garbage: Vec<ChunkId> = due
            .iter()
            .zip(&referenced)
            .filter(|(_, r)| !**r)
            .map(|((_, id), _)| *id)
            .collect();
        // Files first, queue entries after: a crash in between only repeats a delete.
        let n = garbage.len() as u64;
        self.cluster.delete_chunks(garbage).await?;
        self.cluster
            .meta()
            .write(move |kv| -> Result<(), StoreError> {
                for (k, _) in &due {
                    kv.delete(Table::GcQueue, k)?;
                }
                Ok(())
            })
            .await?;
        self.stats.gc_chunks_deleted.fetch_add(n, Ordering::Relaxed);
        self.stats.gc_runs.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    /// Drain every queued chunk that is past its grace period.
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
            // Queued garbage counts as unreferenced: no reader is running yet.
            Ok(kv.get(Table::Chunks, &chunk)?.is_some())
        })?;
        self.stats.orphans_swept.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}
