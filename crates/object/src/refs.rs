//! Chunk reference counts. A chunk id is in the `Chunks` table exactly while some record
//! (an object version or an uploaded part) points at it; when the count drops to zero the
//! id moves to the GC queue in the same transaction.

use bucketdb_store::records::{decode, encode};
use bucketdb_store::{ChunkId, ChunkRef, KvWrite, StoreError, Table};

/// Length of a GC queue key: enqueue time, then the chunk id.
pub(crate) const GC_KEY_LEN: usize = 8 + ChunkId::ENCODED_LEN;

/// GC queue keys sort by the time the chunk became garbage, so GC finds what is past its
/// grace period at the front of the queue.
pub(crate) fn gc_key(queued_ms: u64, id: &ChunkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(GC_KEY_LEN);
    k.extend_from_slice(&queued_ms.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The enqueue time and chunk id of a GC queue key.
pub(crate) fn parse_gc_key(k: &[u8]) -> Option<(u64, ChunkId)> {
    let (ms, id) = k.split_at_checked(8)?;
    Some((
        u64::from_be_bytes(ms.try_into().ok()?),
        ChunkId::from_bytes(id)?,
    ))
}

pub(crate) fn add_refs(kv: &mut dyn KvWrite, chunks: &[ChunkRef]) -> Result<(), StoreError> {
    for c in chunks {
        let k = c.id.to_bytes();
        let n: u32 = match kv.get(Table::Chunks, &k)? {
            Some(v) => decode(&v)?,
            None => 0,
        };
        kv.put(Table::Chunks, &k, &encode(&(n + 1))?)?;
    }
    Ok(())
}

/// Drop one reference to each chunk; returns whether any chunk became garbage. Freed
/// chunks are queued with `now_ms`, so GC can leave them to readers for a grace period.
pub(crate) fn release_refs(
    kv: &mut dyn KvWrite,
    chunks: &[ChunkRef],
    now_ms: u64,
) -> Result<bool, StoreError> {
    let mut freed = false;
    for c in chunks {
        let n: u32 = match kv.get(Table::Chunks, &c.id.to_bytes())? {
            Some(v) => decode(&v)?,
            None => 0,
        };
        let left = n.saturating_sub(1);
        set_ref_count(kv, &c.id, left, now_ms)?;
        freed |= left == 0;
    }
    Ok(freed)
}

/// Record that `refs` references to a chunk exist. At zero the count goes and the chunk
/// is queued for GC (with `now_ms`), as when its last reference is released.
pub(crate) fn set_ref_count(
    kv: &mut dyn KvWrite,
    id: &ChunkId,
    refs: u32,
    now_ms: u64,
) -> Result<(), StoreError> {
    let k = id.to_bytes();
    if refs == 0 {
        kv.delete(Table::Chunks, &k)?;
        kv.put(Table::GcQueue, &gc_key(now_ms, id), &encode(&())?)?;
    } else {
        kv.put(Table::Chunks, &k, &encode(&refs)?)?;
    }
    Ok(())
}
