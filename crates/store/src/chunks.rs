//! Chunk files: immutable byte runs of at most `chunk_size`, each named by a random id and
//! checked against its SHA-256 every time it is read.
//!
//! Layout: `<root>/<bucket_hash>/<id[0..2]>/<id>`; damaged chunks move to
//! `<root>/.quarantine/<bucket_hash>-<id>`. Chunk ids never derive from keys, so no key
//! can name a path.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::disk::{Disk, TEMP_SUFFIX};
use crate::env::{Random, random_bytes};
use crate::error::StoreError;

/// Directory under the storage root that holds chunks that failed verification.
pub const QUARANTINE_DIR: &str = ".quarantine";
/// Fresh ids tried when a generated chunk id is already taken.
const ID_ATTEMPTS: usize = 8;
/// Bytes read at a time when a chunk file is checked offline ([`ChunkStore::verify`]).
const VERIFY_BLOCK_BYTES: usize = 1024 * 1024;

/// Which bucket a chunk belongs to (first 8 bytes of SHA-256 of the bucket name).
pub type BucketHash = [u8; 8];

pub fn bucket_hash(bucket: &str) -> BucketHash {
    let d = Sha256::digest(bucket.as_bytes());
    let mut h = [0u8; 8];
    h.copy_from_slice(&d[..8]);
    h
}

/// The name of one chunk file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId {
    pub bucket: BucketHash,
    pub id: [u8; 16],
}

impl ChunkId {
    pub const ENCODED_LEN: usize = 24;

    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[..8].copy_from_slice(&self.bucket);
        b[8..].copy_from_slice(&self.id);
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<ChunkId> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let mut bucket = [0u8; 8];
        let mut id = [0u8; 16];
        bucket.copy_from_slice(&b[..8]);
        id.copy_from_slice(&b[8..]);
        Some(ChunkId { bucket, id })
    }

    /// Parse a path below the storage root back into an id (`None` for anything else).
    fn from_relative_path(rel: &Path) -> Option<ChunkId> {
        let mut parts = rel.iter().map(|p| p.to_str());
        let (Some(Some(b)), Some(Some(fan)), Some(Some(id)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let mut bucket = [0u8; 8];
        let mut idb = [0u8; 16];
        hex::decode_to_slice(b, &mut bucket).ok()?;
        hex::decode_to_slice(id, &mut idb).ok()?;
        (fan == &id[..2]).then_some(ChunkId { bucket, id: idb })
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", hex::encode(self.bucket), hex::encode(self.id))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A reference to a stored chunk, as kept in object metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u64,
    pub sha256: [u8; 32],
}

/// What a file below the storage root is, judged by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredFile {
    /// A chunk file.
    Chunk(ChunkId),
    /// The temp file of a chunk write that never finished.
    Unfinished,
    /// Not a file the store wrote: always left alone.
    Foreign,
}

impl StoredFile {
    /// Classify a path relative to the storage root.
    pub fn of_relative_path(rel: &Path) -> StoredFile {
        if let Some(id) = ChunkId::from_relative_path(rel) {
            return StoredFile::Chunk(id);
        }
        let unfinished = rel
            .to_str()
            .and_then(|r| r.strip_suffix(TEMP_SUFFIX))
            .and_then(|r| ChunkId::from_relative_path(Path::new(r)))
            .is_some();
        if unfinished {
            StoredFile::Unfinished
        } else {
            StoredFile::Foreign
        }
    }
}

/// A chunk file compared with the reference that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkHealth {
    Intact,
    Missing,
    /// Wrong length or SHA-256.
    Corrupt,
}

/// Counters the chunk store keeps about itself.
#[derive(Debug, Default)]
pub struct ChunkStats {
    pub corrupt_chunks: AtomicU64,
    pub chunks_written: AtomicU64,
    pub chunks_deleted: AtomicU64,
}

pub struct ChunkStore {
    root: PathBuf,
    disk: Arc<dyn Disk>,
    random: Arc<dyn Random>,
    stats: ChunkStats,
}

impl ChunkStore {
    pub fn new(root: impl Into<PathBuf>, disk: Arc<dyn Disk>, random: Arc<dyn Random>) -> Self {
        ChunkStore {
            root: root.into(),
            disk,
            random,
            stats: ChunkStats::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stats(&self) -> &ChunkStats {
        &self.stats
    }

    pub fn disk(&self) -> &dyn Disk {
        self.disk.as_ref()
    }

    pub fn path_of(&self, id: &ChunkId) -> PathBuf {
        let idh = hex::encode(id.id);
        self.root
            .join(hex::encode(id.bucket))
            .join(&idh[..2])
            .join(idh)
    }

    fn quarantine_path(&self, id: &ChunkId) -> PathBuf {
        self.root.join(QUARANTINE_DIR).join(format!(
            "{}-{}",
            hex::encode(id.bucket),
            hex::encode(id.id)
        ))
    }

    /// Write a new chunk durably; blocking (call from a blocking thread).
    pub fn write(&self, bucket: BucketHash, data: &[u8]) -> Result<ChunkRef, StoreError> {
        let sha256: [u8; 32] = Sha256::digest(data).into();
        self.write_hashed(bucket, data, sha256)
    }

    /// Write a chunk whose SHA-256 the caller already computed.
    pub fn write_hashed(
        &self,
        bucket: BucketHash,
        data: &[u8],
        sha256: [u8; 32],
    ) -> Result<ChunkRef, StoreError> {
        // Ids are 128 random bits; the existence check only matters for seeded
        // generators replayed over an existing store, where a repeat would overwrite data.
        let mut id = ChunkId {
            bucket,
            id: random_bytes::<16>(self.random.as_ref()),
        };
        for _ in 0..ID_ATTEMPTS {
            if !self.path_of(&id).exists() {
                break;
            }
            id.id = random_bytes::<16>(self.random.as_ref());
        }
        let path = self.path_of(&id);
        self.disk
            .write_durable(&path, data)
            .map_err(|e| StoreError::io(&path, e))?;
        self.stats.chunks_written.fetch_add(1, Ordering::Relaxed);
        Ok(ChunkRef {
            id,
            len: data.len() as u64,
            sha256,
        })
    }

    /// Store a chunk another node sent under its id, after checking its length and
    /// SHA-256 against `r`; blocking.
    pub fn write_replica(&self, r: &ChunkRef, data: &[u8]) -> Result<(), StoreError> {
        let sha256: [u8; 32] = Sha256::digest(data).into();
        if data.len() as u64 != r.len || sha256 != r.sha256 {
            return Err(StoreError::CorruptChunk(r.id.to_string()));
        }
        let path = self.path_of(&r.id);
        self.disk
            .write_durable(&path, data)
            .map_err(|e| StoreError::io(&path, e))?;
        self.stats.chunks_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Read a chunk and check it against its reference. A chunk that fails the check is
    /// moved to quarantine and never returned.
    pub fn read_verified(&self, r: &ChunkRef) -> Result<Bytes, StoreError> {
        let path = self.path_of(&r.id);
        let data = match self.disk.read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingChunk(r.id.to_string()));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let digest: [u8; 32] = Sha256::digest(&data).into();
        if data.len() as u64 != r.len || digest != r.sha256 {
            self.stats.corrupt_chunks.fetch_add(1, Ordering::Relaxed);
            match self.quarantine(&r.id) {
                Err(e) => {
                    tracing::error!(chunk = %r.id, error = %e, "could not quarantine corrupt chunk")
                }
                Ok(q) => {
                    tracing::error!(chunk = %r.id, quarantine = %q.display(), "chunk failed SHA-256 check; quarantined")
                }
            }
            return Err(StoreError::CorruptChunk(r.id.to_string()));
        }
        Ok(Bytes::from(data))
    }

    /// Check a chunk file against its reference without changing anything (offline
    /// checks), reading it in blocks so that a file of any size takes bounded memory.
    /// Returns the verdict and the bytes read.
    pub fn verify(&self, r: &ChunkRef) -> Result<(ChunkHealth, u64), StoreError> {
        let path = self.path_of(&r.id);
        let mut file = match self.disk.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((ChunkHealth::Missing, 0));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let block = usize::try_from(r.len)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(VERIFY_BLOCK_BYTES);
        let mut buf = vec![0u8; block];
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            };
            read += n as u64;
            if read > r.len {
                // Longer than recorded: corrupt whatever the rest holds.
                return Ok((ChunkHealth::Corrupt, read));
            }
            hasher.update(&buf[..n]);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let health = if read == r.len && digest == r.sha256 {
            ChunkHealth::Intact
        } else {
            ChunkHealth::Corrupt
        };
        Ok((health, read))
    }

    /// Move a chunk file to quarantine; returns where it went.
    pub fn quarantine(&self, id: &ChunkId) -> Result<PathBuf, StoreError> {
        let (from, to) = (self.path_of(id), self.quarantine_path(id));
        self.disk
            .rename(&from, &to)
            .map_err(|e| StoreError::io(&from, e))?;
        Ok(to)
    }

    /// Whether a chunk with this id was moved to quarantine.
    pub fn is_quarantined(&self, id: &ChunkId) -> bool {
        self.quarantine_path(id).is_file()
    }

    /// Remove a file found by [`ChunkStore::visit_files`] (missing is fine).
    pub fn remove_file(&self, path: &Path) -> Result<(), StoreError> {
        self.disk.remove(path).map_err(|e| StoreError::io(path, e))
    }

    /// Visit every file below the root except quarantine, one at a time, with what its
    /// name says it is; stops at the first error `visit` returns. Memory stays bounded
    /// whatever the number of files. Files added or removed meanwhile (by `visit` or
    /// anyone else) may or may not be visited.
    pub fn visit_files(
        &self,
        visit: &mut dyn FnMut(&Path, StoredFile) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let quarantine = self.root.join(QUARANTINE_DIR);
        let mut failed = None;
        self.disk
            .walk(&self.root, &mut |path| {
                if failed.is_some() || path.starts_with(&quarantine) {
                    return;
                }
                if let Ok(rel) = path.strip_prefix(&self.root)
                    && let Err(e) = visit(path, StoredFile::of_relative_path(rel))
                {
                    failed = Some(e);
                }
            })
            .map_err(|e| StoreError::io(&self.root, e))?;
        failed.map_or(Ok(()), Err)
    }

    /// Remove a chunk file (missing is fine: deletion is idempotent).
    pub fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        let path = self.path_of(id);
        self.disk
            .remove(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        self.stats.chunks_deleted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Delete every leftover temp file and every chunk file that `is_referenced` does not
    /// claim. Only safe when no write is in flight (at startup, or offline). Returns how
    /// many files were removed.
    pub fn sweep_orphans(
        &self,
        is_referenced: &mut dyn FnMut(&ChunkId) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        // Collected first, so that nothing is removed from a directory being listed.
        let mut candidates = Vec::new();
        self.visit_files(&mut |path, kind| {
            if kind != StoredFile::Foreign {
                candidates.push((path.to_path_buf(), kind));
            }
            Ok(())
        })?;
        let mut removed = 0;
        for (path, kind) in candidates {
            let orphan = match kind {
                StoredFile::Chunk(id) => !is_referenced(&id)?,
                StoredFile::Unfinished | StoredFile::Foreign => true,
            };
            if orphan {
                self.remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Count files in quarantine.
    pub fn quarantined(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = Vec::new();
        let q = self.root.join(QUARANTINE_DIR);
        self.disk
            .walk(&q, &mut |p| out.push(p.to_path_buf()))
            .map_err(|e| StoreError::io(&q, e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::StdDisk;
    use crate::env::SeededRandom;

    fn store(dir: &Path) -> ChunkStore {
        ChunkStore::new(
            dir,
            Arc::new(StdDisk::default()),
            Arc::new(SeededRandom::new(7)),
        )
    }

    #[test]
    fn chunk_round_trips_and_lives_under_its_bucket_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let r = s.write(bucket_hash("photos"), b"hello chunk").unwrap();
        let path = s.path_of(&r.id);
        assert!(path.starts_with(dir.path().join(hex::encode(bucket_hash("photos")))));
        assert_eq!(s.read_verified(&r).unwrap().as_ref(), b"hello chunk");
        s.delete(&r.id).unwrap();
        assert!(matches!(
            s.read_verified(&r),
            Err(StoreError::MissingChunk(_))
        ));
    }

    #[test]
    fn flipped_byte_is_detected_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let r = s.write(bucket_hash("b"), &[7u8; 1000]).unwrap();
        let path = s.path_of(&r.id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[500] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            s.read_verified(&r),
            Err(StoreError::CorruptChunk(_))
        ));
        assert!(!path.exists());
        assert_eq!(s.quarantined().unwrap().len(), 1);
        assert_eq!(s.stats().corrupt_chunks.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn verify_judges_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let r = s.write(bucket_hash("b"), &[3u8; 5000]).unwrap();
        assert_eq!(s.verify(&r).unwrap(), (ChunkHealth::Intact, 5000));
        let path = s.path_of(&r.id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4999] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(s.verify(&r).unwrap().0, ChunkHealth::Corrupt);
        assert!(path.exists() && s.quarantined().unwrap().is_empty());
        bytes[4999] ^= 0x01;
        bytes.push(0);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(s.verify(&r).unwrap().0, ChunkHealth::Corrupt);
        assert!(!s.is_quarantined(&r.id));
        s.quarantine(&r.id).unwrap();
        assert!(s.is_quarantined(&r.id));
        assert_eq!(s.verify(&r).unwrap(), (ChunkHealth::Missing, 0));
    }

    #[test]
    fn visit_files_names_each_file_and_skips_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let chunk = s.write(bucket_hash("b"), b"chunk").unwrap();
        let bad = s.write(bucket_hash("b"), b"bad").unwrap();
        s.quarantine(&bad.id).unwrap();
        let tmp = dir
            .path()
            .join("0011223344556677/ab/ab0102030405060708090a0b0c0d0e0f.tmp");
        std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
        std::fs::write(&tmp, b"partial").unwrap();
        std::fs::write(dir.path().join("README"), b"not ours").unwrap();
        let mut seen = Vec::new();
        s.visit_files(&mut |p, kind| {
            seen.push((p.to_path_buf(), kind));
            Ok(())
        })
        .unwrap();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = vec![
            (s.path_of(&chunk.id), StoredFile::Chunk(chunk.id)),
            (tmp, StoredFile::Unfinished),
            (dir.path().join("README"), StoredFile::Foreign),
        ];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, want);
        let err = s.visit_files(&mut |_, _| Err(StoreError::Decode("stop".into())));
        assert!(matches!(err, Err(StoreError::Decode(_))));
    }

    #[test]
    fn sweep_removes_unreferenced_and_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let keep = s.write(bucket_hash("b"), b"keep").unwrap();
        let drop = s.write(bucket_hash("b"), b"drop").unwrap();
        let tmp = dir
            .path()
            .join("0011223344556677/ab/ab0102030405060708090a0b0c0d0e0f.tmp");
        let foreign_tmp = dir.path().join("notes.tmp");
        std::fs::write(&foreign_tmp, b"a user file").unwrap();
        std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
        std::fs::write(&tmp, b"partial").unwrap();
        let foreign = dir.path().join("README");
        std::fs::write(&foreign, b"not ours").unwrap();
        let removed = s.sweep_orphans(&mut |id| Ok(*id == keep.id)).unwrap();
        assert_eq!(removed, 2);
        assert!(s.path_of(&keep.id).exists());
        assert!(!s.path_of(&drop.id).exists());
        assert!(!tmp.exists());
        assert!(foreign.exists());
        assert!(foreign_tmp.exists());
    }
}
