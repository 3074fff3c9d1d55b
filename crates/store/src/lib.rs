//! The local store of one node: chunk files on disk and the metadata KV.
//!
//! This crate knows nothing about HTTP, peers or S3 semantics. It offers:
//! - [`ChunkStore`]: immutable chunk files, written durably and verified on read;
//! - [`Meta`]: an ordered, transactional KV with group commit, over a [`KvEngine`];
//! - [`records`]: the versioned on-disk records the object service stores in it;
//! - [`env`] and [`disk`]: the clock, randomness and filesystem seams.

pub mod blocking;
pub mod chunks;
pub mod disk;
pub mod env;
mod error;
pub mod keys;
pub mod meta;
pub mod records;

pub use blocking::{BlockingError, run_blocking};
pub use chunks::{ChunkHealth, ChunkId, ChunkRef, ChunkStore, StoredFile};
pub use disk::{Disk, StdDisk};
pub use env::{Clock, ManualClock, OsRandom, Random, SeededRandom, SystemClock};
pub use error::StoreError;
pub use meta::{KvEngine, KvRead, KvWrite, Meta, RedbEngine, Table};
