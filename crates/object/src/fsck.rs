//! `fsck`: an offline check of one node's data.
//!
//! Every chunk file that metadata references is read and checked against its SHA-256;
//! metadata is checked against the chunk files (missing chunks, and which versions and
//! multipart parts they damage), chunk files against metadata (orphans), the reference
//! counts against the references that exist, and inline bodies against their records.
//!
//! With `repair`, what one node can fix is fixed: orphaned files are removed (as the
//! server's startup sweep does; there is no record to restore them into), corrupt chunk
//! files are moved to quarantine, reference counts are rewritten (a chunk left with none
//! is queued for GC, as when its last reference is released) and GC queue entries of
//! chunks still referenced are dropped. Lost bytes cannot come back from one node:
//! damaged versions and parts keep their metadata, so that a cluster repair can fetch
//! their chunks from a replica.
//!
//! Offline only: [`check_node`] opens the metadata store itself, which redb refuses while
//! a server holds it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bucketdb_store::keys::SEP;
use bucketdb_store::records::{
    Body, ObjectRecord, PartRecord, PendingChange, UploadRecord, decode,
};
use bucketdb_store::{
    ChunkHealth, ChunkId, ChunkRef, ChunkStore, KvEngine, KvRead, KvWrite, OsRandom, RedbEngine,
    StdDisk, StoreError, StoredFile, Table,
};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::refs::{parse_gc_key, set_ref_count};

/// Most problems of each kind a report lists in detail; the rest are only counted. Per
/// kind, so that thousands of orphans cannot crowd out the objects that lost data.
pub const PROBLEMS_LISTED_PER_KIND_MAX: usize = 1000;
/// Most damaged chunk ids named per damaged version or part.
pub const DAMAGED_CHUNKS_NAMED_MAX: usize = 8;
/// Metadata entries read per scan step.
const SCAN_BATCH: usize = 1024;
/// Metadata repairs committed per transaction.
const FIX_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error(
        "the metadata store {0} is in use: a server seems to be running on this data; stop it before running fsck"
    )]
    ServerRunning(PathBuf),
    #[error("there is no metadata store at {0} (check the metadata path)")]
    NoMetadata(PathBuf),
    #[error("the storage directory {0} does not exist (check the storage path)")]
    NoStorage(PathBuf),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for FsckError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::MetadataInUse(p) => FsckError::ServerRunning(p),
            StoreError::MetadataMissing(p) => FsckError::NoMetadata(p),
            other => FsckError::Store(other),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FsckOptions {
    /// Fix what can be fixed locally (otherwise nothing is changed).
    pub repair: bool,
    /// The time GC queue entries written by a repair carry (GC's grace period counts
    /// from it).
    pub now_ms: u64,
}

/// What was checked, found and fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsckCounts {
    pub versions_checked: u64,
    pub parts_checked: u64,
    pub inline_bodies_checked: u64,
    /// Chunk files found on disk.
    pub chunk_files: u64,
    /// Referenced chunk files read and checked against their SHA-256, and their bytes.
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    /// Unreferenced chunk files already queued for GC: normal, not a problem.
    pub awaiting_gc: u64,
    /// Files whose names the store never writes; left alone.
    pub foreign_files: u64,
    pub corrupt_chunks: u64,
    pub missing_chunks: u64,
    pub orphaned_files: u64,
    pub refcount_mismatches: u64,
    /// Referenced chunks that were queued for GC (GC would have deleted live data).
    pub gc_queue_conflicts: u64,
    pub missing_inline: u64,
    pub corrupt_inline: u64,
    /// Versions and multipart parts whose bytes are (partly) lost.
    pub damaged_versions: u64,
    pub damaged_parts: u64,
    /// Repairs done.
    pub quarantined: u64,
    pub orphans_removed: u64,
    pub refcounts_fixed: u64,
    pub queued_for_gc: u64,
    pub gc_entries_removed: u64,
}

/// One thing found wrong. Chunk ids read `bucket_hash/id`, as in the chunk's path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Problem {
    /// A referenced chunk file whose length or SHA-256 is wrong.
    CorruptChunk {
        #[serde(serialize_with = "chunk_as_text")]
        chunk: ChunkId,
        quarantined: bool,
    },
    /// A referenced chunk file that is not there (perhaps quarantined earlier).
    MissingChunk {
        #[serde(serialize_with = "chunk_as_text")]
        chunk: ChunkId,
        in_quarantine: bool,
    },
    /// A chunk file (or unfinished chunk write) nothing refers to.
    OrphanedFile { path: PathBuf, removed: bool },
    /// The stored reference count (`None`: no count) is not the number of references.
    RefcountMismatch {
        #[serde(serialize_with = "chunk_as_text")]
        chunk: ChunkId,
        recorded: Option<u32>,
        actual: u32,
        fixed: bool,
    },
    /// A referenced chunk queued for GC.
    QueuedWhileReferenced {
        #[serde(serialize_with = "chunk_as_text")]
        chunk: ChunkId,
        fixed: bool,
    },
    /// A version kept inline whose body is missing or does not match its SHA-256.
    DamagedInline {
        bucket: String,
        key: String,
        version_id: String,
        missing: bool,
    },
    /// A version some of whose chunks are missing or corrupt.
    DamagedVersion {
        bucket: String,
        key: String,
        version_id: String,
        chunks_total: u64,
        damaged_chunks: u64,
        /// The first [`DAMAGED_CHUNKS_NAMED_MAX`] of them.
        #[serde(serialize_with = "chunks_as_text")]
        chunks: Vec<ChunkId>,
    },
    /// An uploaded part of an unfinished multipart upload with damaged chunks (bucket
    /// and key are `None` when the upload record itself is gone).
    DamagedPart {
        bucket: Option<String>,
        key: Option<String>,
        upload_id: String,
        part_number: u32,
        chunks_total: u64,
        damaged_chunks: u64,
        #[serde(serialize_with = "chunks_as_text")]
        chunks: Vec<ChunkId>,
    },
}

fn chunk_as_text<S: Serializer>(id: &ChunkId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn chunks_as_text<S: Serializer>(ids: &[ChunkId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(ToString::to_string))
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsckReport {
    pub repair: bool,
    /// Lost data, or (without `repair`) anything wrong at all.
    pub damage_remains: bool,
    pub counts: FsckCounts,
    /// The first [`PROBLEMS_LISTED_PER_KIND_MAX`] problems of each kind, in the order
    /// found.
    pub problems: Vec<Problem>,
    pub problems_not_listed: u64,
}

impl FsckReport {
    /// Problems no local repair can fix: bytes that are gone.
    pub fn data_lost(&self) -> u64 {
        let c = &self.counts;
        c.corrupt_chunks + c.missing_chunks + c.missing_inline + c.corrupt_inline
    }

    /// Problems a repair fixes (or, with `repair`, fixed).
    pub fn fixable(&self) -> u64 {
        let c = &self.counts;
        c.corrupt_chunks + c.orphaned_files + c.refcount_mismatches + c.gc_queue_conflicts
    }
}

/// Check the node whose chunks live in `storage_path` and metadata in `metadata_path`.
pub fn check_node(
    storage_path: &Path,
    metadata_path: &Path,
    opts: &FsckOptions,
) -> Result<FsckReport, FsckError> {
    let engine = RedbEngine::open_existing(metadata_path)?;
    if !storage_path.is_dir() {
        return Err(FsckError::NoStorage(storage_path.to_path_buf()));
    }
    // Randomness only names new chunks, which fsck never writes.
    let chunks = ChunkStore::new(
        storage_path,
        Arc::new(StdDisk::default()),
        Arc::new(OsRandom),
    );
    Ok(check(&engine, &chunks, opts)?)
}

/// Check (and with `opts.repair`, repair) a store nothing else is using.
pub fn check(
    engine: &dyn KvEngine,
    chunks: &ChunkStore,
    opts: &FsckOptions,
) -> Result<FsckReport, StoreError> {
    // One snapshot for every read; repairs commit in their own transactions.
    let snapshot = engine.read()?;
    let kv = snapshot.as_ref();
    let mut checker = Checker {
        engine,
        chunks,
        opts: *opts,
        report: FsckReport {
            repair: opts.repair,
            ..FsckReport::default()
        },
        referenced: HashMap::new(),
        queued: HashSet::new(),
        damaged: HashSet::new(),
        fixes: Vec::new(),
        listed: HashMap::new(),
    };
    checker.collect_refs(kv)?;
    checker.check_gc_queue(kv)?;
    checker.check_files(kv)?;
    checker.find_missing();
    checker.check_ref_counts(kv)?;
    checker.flush_fixes()?;
    if !checker.damaged.is_empty() {
        checker.name_damaged(kv)?;
    }
    let mut report = checker.report;
    report.damage_remains = report.data_lost() > 0 || (!opts.repair && report.fixable() > 0);
    Ok(report)
}

/// What the references to one chunk say it should be.
struct Expected {
    len: u64,
    sha256: [u8; 32],
    refs: u32,
    file_seen: bool,
    count_seen: bool,
}

enum Fix {
    SetRefCount(ChunkId, u32),
    Unqueue(Vec<u8>),
}

struct Checker<'a> {
    engine: &'a dyn KvEngine,
    chunks: &'a ChunkStore,
    opts: FsckOptions,
    report: FsckReport,
    /// Every referenced chunk: the one structure that grows with the store, about 100
    /// bytes per distinct chunk (about 25 MB per TB of 4 MiB chunks), so that each chunk
    /// file is judged in one pass over the directory.
    referenced: HashMap<ChunkId, Expected>,
    /// Unreferenced chunks waiting in the GC queue (bounded by the queue's length).
    queued: HashSet<ChunkId>,
    /// Corrupt and missing chunks (bounded by the damage found).
    damaged: HashSet<ChunkId>,
    /// Repairs waiting to be committed (at most `FIX_BATCH`).
    fixes: Vec<Fix>,
    /// Problems listed so far, by kind.
    listed: HashMap<std::mem::Discriminant<Problem>, usize>,
}

/// Called with each key and value of a table.
type EntryVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'v;

/// Visit every entry of `table` in key order, `SCAN_BATCH` at a time.
fn for_each_entry(
    kv: &dyn KvRead,
    table: Table,
    visit: &mut EntryVisitor<'_>,
) -> Result<(), StoreError> {
    let mut from = Vec::new();
    loop {
        let batch = kv.scan(table, &from, None, SCAN_BATCH)?;
        for (k, v) in &batch {
            visit(k, v)?;
        }
        match batch.last() {
            Some((last, _)) if batch.len() == SCAN_BATCH => {
                // The smallest key after `last`.
                from = [last.as_slice(), &[0]].concat();
            }
            _ => return Ok(()),
        }
    }
}

/// The text before the first separator of a metadata key (the bucket of a version key,
/// the upload id of a part key).
fn first_segment(key: &[u8]) -> String {
    let end = key.iter().position(|b| *b == SEP).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

impl Checker<'_> {
    fn problem(&mut self, p: Problem) {
        let listed = self.listed.entry(std::mem::discriminant(&p)).or_default();
        if *listed < PROBLEMS_LISTED_PER_KIND_MAX {
            *listed += 1;
            self.report.problems.push(p);
        } else {
            self.report.problems_not_listed += 1;
        }
    }

    /// Count the references of every version and part, and check inline bodies.
    fn collect_refs(&mut self, kv: &dyn KvRead) -> Result<(), StoreError> {
        for_each_entry(kv, Table::Versions, &mut |k, v| {
            let rec: ObjectRecord = decode(v)?;
            self.report.counts.versions_checked += 1;
            match &rec.body {
                Body::Chunks(refs) => self.expect(refs),
                Body::Inline => self.check_inline(kv, k, &rec)?,
            }
            Ok(())
        })?;
        for_each_entry(kv, Table::Parts, &mut |_, v| {
            let part: PartRecord = decode(v)?;
            self.report.counts.parts_checked += 1;
            self.expect(&part.chunks);
            Ok(())
        })?;
        // Versions prepared here by a quorum write hold their chunks too.
        for_each_entry(kv, Table::Pending, &mut |_, v| {
            let pending: PendingChange = decode(v)?;
            self.expect(pending.chunks());
            Ok(())
        })
    }

    fn expect(&mut self, refs: &[ChunkRef]) {
        for r in refs {
            let e = self.referenced.entry(r.id).or_insert(Expected {
                len: r.len,
                sha256: r.sha256,
                refs: 0,
                file_seen: false,
                count_seen: false,
            });
            e.refs = e.refs.saturating_add(1);
        }
    }

    fn check_inline(
        &mut self,
        kv: &dyn KvRead,
        version_key: &[u8],
        rec: &ObjectRecord,
    ) -> Result<(), StoreError> {
        self.report.counts.inline_bodies_checked += 1;
        let missing = match kv.get(Table::Inline, version_key)? {
            None => true,
            Some(body) if hex::encode(Sha256::digest(&body)) != rec.sha256 => false,
            Some(_) => return Ok(()),
        };
        let c = &mut self.report.counts;
        if missing {
            c.missing_inline += 1;
        } else {
            c.corrupt_inline += 1;
        }
        c.damaged_versions += 1;
        self.problem(Problem::DamagedInline {
            bucket: first_segment(version_key),
            key: rec.key.clone(),
            version_id: rec.version_id.clone(),
            missing,
        });
        Ok(())
    }

    /// Remember what GC will delete, and take referenced chunks off its queue.
    fn check_gc_queue(&mut self, kv: &dyn KvRead) -> Result<(), StoreError> {
        for_each_entry(kv, Table::GcQueue, &mut |k, _| {
            // GC skips keys it cannot parse; so do we.
            let Some((_, id)) = parse_gc_key(k) else {
                return Ok(());
            };
            if !self.referenced.contains_key(&id) {
                self.queued.insert(id);
                return Ok(());
            }
            self.report.counts.gc_queue_conflicts += 1;
            let fixed = self.opts.repair;
            if fixed {
                self.fix(Fix::Unqueue(k.to_vec()))?;
                self.report.counts.gc_entries_removed += 1;
            }
            self.problem(Problem::QueuedWhileReferenced { chunk: id, fixed });
            Ok(())
        })
    }

    /// One pass over the chunk directory: verify referenced chunks, find orphans.
    fn check_files(&mut self, kv: &dyn KvRead) -> Result<(), StoreError> {
        let chunks = self.chunks;
        chunks.visit_files(&mut |path, kind| match kind {
            StoredFile::Foreign => {
                self.report.counts.foreign_files += 1;
                Ok(())
            }
            StoredFile::Unfinished => self.orphan(path),
            StoredFile::Chunk(id) => {
                self.report.counts.chunk_files += 1;
                if self.referenced.contains_key(&id) {
                    self.verify(id)
                } else if self.queued.contains(&id) {
                    self.report.counts.awaiting_gc += 1;
                    Ok(())
                } else if kv.get(Table::Chunks, &id.to_bytes())?.is_some() {
                    // Counted but unreferenced: reported (and fixed) with the counts.
                    Ok(())
                } else {
                    self.orphan(path)
                }
            }
        })
    }

    fn verify(&mut self, id: ChunkId) -> Result<(), StoreError> {
        let Some(e) = self.referenced.get_mut(&id) else {
            return Ok(());
        };
        let r = ChunkRef {
            id,
            len: e.len,
            sha256: e.sha256,
        };
        let (health, bytes) = self.chunks.verify(&r)?;
        // A file gone since it was listed is left for `find_missing`.
        e.file_seen = health != ChunkHealth::Missing;
        let c = &mut self.report.counts;
        c.chunks_checked += 1;
        c.bytes_checked += bytes;
        if health != ChunkHealth::Corrupt {
            return Ok(());
        }
        c.corrupt_chunks += 1;
        self.damaged.insert(id);
        let quarantined = self.opts.repair;
        if quarantined {
            self.chunks.quarantine(&id)?;
            self.report.counts.quarantined += 1;
        }
        self.problem(Problem::CorruptChunk {
            chunk: id,
            quarantined,
        });
        Ok(())
    }

    fn orphan(&mut self, path: &Path) -> Result<(), StoreError> {
        self.report.counts.orphaned_files += 1;
        let removed = self.opts.repair;
        if removed {
            self.chunks.remove_file(path)?;
            self.report.counts.orphans_removed += 1;
        }
        self.problem(Problem::OrphanedFile {
            path: path.to_path_buf(),
            removed,
        });
        Ok(())
    }

    fn find_missing(&mut self) {
        let mut missing: Vec<ChunkId> = self
            .referenced
            .iter()
            .filter(|(_, e)| !e.file_seen)
            .map(|(id, _)| *id)
            .collect();
        missing.sort();
        for id in missing {
            self.report.counts.missing_chunks += 1;
            self.damaged.insert(id);
            let in_quarantine = self.chunks.is_quarantined(&id);
            self.problem(Problem::MissingChunk {
                chunk: id,
                in_quarantine,
            });
        }
    }

    /// Compare every stored count with the references found, both ways.
    fn check_ref_counts(&mut self, kv: &dyn KvRead) -> Result<(), StoreError> {
        for_each_entry(kv, Table::Chunks, &mut |k, v| {
            let Some(id) = ChunkId::from_bytes(k) else {
                return Ok(());
            };
            let recorded: u32 = decode(v)?;
            let actual = match self.referenced.get_mut(&id) {
                Some(e) => {
                    e.count_seen = true;
                    e.refs
                }
                None => 0,
            };
            // A stored count of zero is wrong too: the count goes with the last reference.
            if recorded != actual || actual == 0 {
                self.ref_count_mismatch(id, Some(recorded), actual)?;
            }
            Ok(())
        })?;
        let mut uncounted: Vec<(ChunkId, u32)> = self
            .referenced
            .iter()
            .filter(|(_, e)| !e.count_seen)
            .map(|(id, e)| (*id, e.refs))
            .collect();
        uncounted.sort();
        for (id, refs) in uncounted {
            self.ref_count_mismatch(id, None, refs)?;
        }
        Ok(())
    }

    fn ref_count_mismatch(
        &mut self,
        id: ChunkId,
        recorded: Option<u32>,
        actual: u32,
    ) -> Result<(), StoreError> {
        self.report.counts.refcount_mismatches += 1;
        let fixed = self.opts.repair;
        if fixed {
            self.fix(Fix::SetRefCount(id, actual))?;
            self.report.counts.refcounts_fixed += 1;
            if actual == 0 {
                self.report.counts.queued_for_gc += 1;
            }
        }
        self.problem(Problem::RefcountMismatch {
            chunk: id,
            recorded,
            actual,
            fixed,
        });
        Ok(())
    }

    fn fix(&mut self, fix: Fix) -> Result<(), StoreError> {
        self.fixes.push(fix);
        if self.fixes.len() >= FIX_BATCH {
            self.flush_fixes()?;
        }
        Ok(())
    }

    fn flush_fixes(&mut self) -> Result<(), StoreError> {
        if self.fixes.is_empty() {
            return Ok(());
        }
        let fixes = std::mem::take(&mut self.fixes);
        let now_ms = self.opts.now_ms;
        self.engine.write(&mut |kv: &mut dyn KvWrite| {
            for fix in &fixes {
                match fix {
                    Fix::SetRefCount(id, refs) => set_ref_count(kv, id, *refs, now_ms)?,
                    Fix::Unqueue(key) => {
                        kv.delete(Table::GcQueue, key)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The damaged chunks among `refs`: how many, and the first few.
    fn damaged_among(&self, refs: &[ChunkRef]) -> (u64, Vec<ChunkId>) {
        let mut n = 0;
        let mut named = Vec::new();
        for r in refs.iter().filter(|r| self.damaged.contains(&r.id)) {
            n += 1;
            if named.len() < DAMAGED_CHUNKS_NAMED_MAX {
                named.push(r.id);
            }
        }
        (n, named)
    }

    /// Name the versions and parts that lost chunks: a second pass over their records,
    /// so that no chunk-to-owner index has to be kept.
    fn name_damaged(&mut self, kv: &dyn KvRead) -> Result<(), StoreError> {
        for_each_entry(kv, Table::Versions, &mut |k, v| {
            let rec: ObjectRecord = decode(v)?;
            let (damaged_chunks, chunks) = self.damaged_among(rec.chunks());
            if damaged_chunks > 0 {
                self.report.counts.damaged_versions += 1;
                let chunks_total = rec.chunks().len() as u64;
                self.problem(Problem::DamagedVersion {
                    bucket: first_segment(k),
                    key: rec.key,
                    version_id: rec.version_id,
                    chunks_total,
                    damaged_chunks,
                    chunks,
                });
            }
            Ok(())
        })?;
        // Part records name only their upload; the upload records name bucket and key.
        // Held until then: bounded by the damaged chunks.
        let mut parts = Vec::new();
        for_each_entry(kv, Table::Parts, &mut |k, v| {
            let part: PartRecord = decode(v)?;
            let (damaged_chunks, chunks) = self.damaged_among(&part.chunks);
            if damaged_chunks > 0 {
                parts.push(Problem::DamagedPart {
                    bucket: None,
                    key: None,
                    upload_id: first_segment(k),
                    part_number: part.part_number,
                    chunks_total: part.chunks.len() as u64,
                    damaged_chunks,
                    chunks,
                });
            }
            Ok(())
        })?;
        if parts.is_empty() {
            return Ok(());
        }
        let mut uploads: HashMap<String, Option<(String, String)>> = parts
            .iter()
            .filter_map(|p| match p {
                Problem::DamagedPart { upload_id, .. } => Some((upload_id.clone(), None)),
                _ => None,
            })
            .collect();
        for_each_entry(kv, Table::Uploads, &mut |_, v| {
            let up: UploadRecord = decode(v)?;
            if let Some(names) = uploads.get_mut(&up.upload_id) {
                *names = Some((up.bucket, up.key));
            }
            Ok(())
        })?;
        for mut p in parts {
            if let Problem::DamagedPart {
                bucket,
                key,
                upload_id,
                ..
            } = &mut p
                && let Some(Some((b, k))) = uploads.get(upload_id.as_str())
            {
                *bucket = Some(b.clone());
                *key = Some(k.clone());
            }
            self.report.counts.damaged_parts += 1;
            self.problem(p);
        }
        Ok(())
    }
}
