//! Usage totals kept in the metadata store: the bytes of every stored version, updated in
//! the same transaction as the versions themselves, so `/metrics` reads one row instead of
//! scanning a bucket.

use bucketdb_store::records::{ObjectRecord, decode, encode};
use bucketdb_store::{KvRead, KvWrite, Table};

use crate::ObjectService;
use crate::error::Result;

/// Bytes of all stored versions (delete markers count 0).
const STORED_BYTES: &[u8] = b"stored_bytes";
/// Versions read per scan while adding up an old store's total.
const INIT_SCAN_BATCH: usize = 1024;

fn read_counter(kv: &dyn KvRead, name: &[u8]) -> Result<Option<u64>> {
    Ok(kv
        .get(Table::Usage, name)?
        .map(|v| decode::<u64>(&v))
        .transpose()?)
}

/// Account for a version being stored (`added`) or removed (not `added`). Until
/// [`ObjectService::init_usage`] has created the total nothing is counted: it adds up
/// everything written before it, in one transaction.
pub(crate) fn count_version(kv: &mut dyn KvWrite, rec: &ObjectRecord, added: bool) -> Result<()> {
    if rec.size == 0 {
        return Ok(());
    }
    let Some(now) = read_counter(&*kv, STORED_BYTES)? else {
        return Ok(());
    };
    let next = if added {
        now.saturating_add(rec.size)
    } else {
        now.saturating_sub(rec.size)
    };
    kv.put(Table::Usage, STORED_BYTES, &encode(&next)?)?;
    Ok(())
}

impl ObjectService {
    /// Bytes of every stored version of every object.
    pub fn stored_bytes(&self) -> Result<u64> {
        let kv = self.cluster.meta().read()?;
        Ok(read_counter(kv.as_ref(), STORED_BYTES)?.unwrap_or(0))
    }

    /// Create the usage totals if the store has none (a new store, or one written before
    /// they were kept): one scan of the versions table, in a single transaction so no
    /// write is counted twice or missed. Called once at startup.
    pub async fn init_usage(&self) -> Result<()> {
        self.cluster
            .meta()
            .write(|kv| -> Result<()> {
                if read_counter(&*kv, STORED_BYTES)?.is_some() {
                    return Ok(());
                }
                let mut total = 0u64;
                let mut unreadable = 0u64;
                let mut from = Vec::new();
                loop {
                    let page = kv.scan(Table::Versions, &from, None, INIT_SCAN_BATCH)?;
                    for (_, v) in &page {
                        // A record this build cannot read must not stop the node from
                        // starting: it is left out of the total, and logged below.
                        match decode::<ObjectRecord>(v) {
                            Ok(r) => total = total.saturating_add(r.size),
                            Err(_) => unreadable += 1,
                        }
                    }
                    match page.last() {
                        Some((k, _)) if page.len() == INIT_SCAN_BATCH => {
                            // The smallest key after `k`.
                            from = k.clone();
                            from.push(0);
                        }
                        _ => break,
                    }
                }
                if unreadable > 0 {
                    tracing::warn!(
                        records = unreadable,
                        "unreadable version records are left out of the stored-bytes total"
                    );
                }
                kv.put(Table::Usage, STORED_BYTES, &encode(&total)?)?;
                Ok(())
            })
            .await
    }
}
