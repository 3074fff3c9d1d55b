//! Chunk reference counts. A chunk id is in the `Chunks` table exactly while some record
//! (an object version or an uploaded part) points at it; when the count drops to zero the
//! id moves to the GC queue in the same transaction.

use bucketdb_store::records::{decode, encode};
use bucketdb_store::{ChunkRef, KvWrite, StoreError, Table};

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
        let k = c.id.to_bytes();
        let n: u32 = match kv.get(Table::Chunks, &k)? {
            Some(v) => decode(&v)?,
            None => 0,
        };
        if n <= 1 {
            kv.delete(Table::Chunks, &k)?;
            kv.put(Table::GcQueue, &k, &encode(&now_ms)?)?;
            freed = true;
        } else {
            kv.put(Table::Chunks, &k, &encode(&(n - 1))?)?;
        }
    }
    Ok(freed)
}
