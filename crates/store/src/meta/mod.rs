//! The metadata store: an ordered, transactional KV ([`KvEngine`]) and [`Meta`], which
//! funnels every mutation through one writer thread that commits concurrent mutations
//! together (group commit), so one fsync covers many requests. Each mutation runs against
//! its own write set and is applied only if it succeeds.

mod overlay;
mod redb_engine;
mod writer;

pub use redb_engine::RedbEngine;
pub use writer::{MAX_BATCH_JOBS, Meta, WRITE_QUEUE_DEPTH};

use crate::error::StoreError;

/// The tables of the metadata store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// bucket name → `BucketRecord`
    Buckets,
    /// `bucket NUL key` → `ObjectRecord` of the live (non-delete-marker) latest version
    Current,
    /// `bucket NUL key NUL !seq` → `ObjectRecord`, newest first
    Versions,
    /// version key → object bytes of small objects
    Inline,
    /// `bucket NUL key NUL upload_id` → `UploadRecord`
    Uploads,
    /// `upload_id NUL part_number` → `PartRecord`
    Parts,
    /// chunk id → reference count
    Chunks,
    /// `queued_ms ++ chunk id` → () : chunks no longer referenced, waiting for GC
    GcQueue,
    /// bucket name → `BucketConfig` (optional settings: public read, tags)
    BucketConfig,
    /// counter name → `u64` (e.g. `stored_bytes`): totals kept up to date in the same
    /// transactions that change them, so reading one costs no scan
    Usage,
    /// `peer NUL queue number` → a replication operation still to deliver to that peer
    /// (written in the same transaction as the change it replicates)
    ReplQueue,
    /// `bucket NUL key NUL version_id` → `Tombstone`: versions removed here, so a late
    /// copy arriving from another node is not installed again
    Tombstones,
    /// `bucket NUL key NUL version_id NUL seq` → `PendingChange`: quorum mode, a new
    /// version (chunks held), new tags or a removal prepared here, invisible until its
    /// coordinator commits or aborts it
    Pending,
    /// bucket name → `u64`: when the bucket last changed (microseconds, only growing),
    /// so replicas apply bucket changes in the order they were made; kept after a
    /// delete, so a late copy of the bucket does not bring it back
    BucketStamps,
}

impl Table {
    pub const ALL: [Table; 14] = [
        Table::Buckets,
        Table::Current,
        Table::Versions,
        Table::Inline,
        Table::Uploads,
        Table::Parts,
        Table::Chunks,
        Table::GcQueue,
        Table::BucketConfig,
        Table::Usage,
        Table::ReplQueue,
        Table::Tombstones,
        Table::Pending,
        Table::BucketStamps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Buckets => "buckets",
            Table::Current => "current",
            Table::Versions => "versions",
            Table::Inline => "inline",
            Table::Uploads => "uploads",
            Table::Parts => "parts",
            Table::Chunks => "chunks",
            Table::GcQueue => "gc_queue",
            Table::BucketConfig => "bucket_config",
            Table::Usage => "usage",
            Table::ReplQueue => "repl_queue",
            Table::Tombstones => "tombstones",
            Table::Pending => "pending",
            Table::BucketStamps => "bucket_stamps",
        }
    }
}

pub type Entry = (Vec<u8>, Vec<u8>);

/// Consistent reads (one snapshot per reader).
pub trait KvRead {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries with `from <= key < to` (`to = None`: to the end), ascending, at most `limit`.
    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
    fn count(&self, table: Table) -> Result<u64, StoreError>;
}

/// Reads and writes inside one transaction.
pub trait KvWrite: KvRead {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Returns whether the key existed.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError>;
}

/// An embedded ordered KV engine.
pub trait KvEngine: Send + Sync + 'static {
    fn read(&self) -> Result<Box<dyn KvRead + '_>, StoreError>;
    /// Run `apply` in one write transaction and commit it durably; if `apply` fails,
    /// nothing it wrote is kept.
    fn write(
        &self,
        apply: &mut dyn FnMut(&mut dyn KvWrite) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests;
