//! The filesystem seam. Everything the chunk store does to disk goes through [`Disk`],
//! so a test can inject failures or a simulator can keep files in memory.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Suffix of files that are still being written; never valid chunks.
pub const TEMP_SUFFIX: &str = ".tmp";

pub trait Disk: Send + Sync + 'static {
    /// Write `data` to `path` so that after return it survives a crash:
    /// temp file → fsync → rename → fsync of the directory.
    fn write_durable(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Open a file to read it piece by piece (checking a file without holding all of it).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Rename within the same filesystem, creating the target's directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Every regular file below `root`, visited one at a time.
    fn walk(&self, root: &Path, visit: &mut dyn FnMut(&Path)) -> io::Result<()>;
    /// (total, free) bytes of the filesystem holding `path`.
    fn space(&self, path: &Path) -> io::Result<(u64, u64)>;
}

/// Most directories remembered as durably created (one per bucket and fan-out prefix).
const DURABLE_DIRS_MAX: usize = 1 << 20;

/// The real filesystem.
#[derive(Debug, Default)]
pub struct StdDisk {
    /// Directories whose creation is known to be durable (their entries in every parent
    /// were fsynced), so that only the first write into a directory pays for it.
    durable_dirs: Mutex<HashSet<PathBuf>>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StdDisk {
    /// Create `dir` if needed and make its existence durable: fsync it and each parent
    /// up to `DIR_SYNC_DEPTH` levels (the chunk layout's depth). Also done when another
    /// writer created it, since that writer may not have synced it yet.
    fn ensure_durable_dir(&self, dir: &Path) -> io::Result<()> {
        if self
            .durable_dirs
            .lock()
            .map(|d| d.contains(dir))
            .unwrap_or(false)
        {
            return Ok(());
        }
        fs::create_dir_all(dir)?;
        let mut d = Some(dir);
        for _ in 0..DIR_SYNC_DEPTH {
            let Some(cur) = d else { break };
            sync_dir(cur)?;
            d = cur.parent().filter(|p| !p.as_os_str().is_empty());
        }
        if let Ok(mut known) = self.durable_dirs.lock()
            && known.len() < DURABLE_DIRS_MAX
        {
            known.insert(dir.to_path_buf());
        }
        Ok(())
    }
}

/// Levels of directories fsynced when a chunk directory is first used:
/// `<fan>`, `<bucket_hash>` and the storage root.
const DIR_SYNC_DEPTH: usize = 3;

impl Disk for StdDisk {
    fn write_durable(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
        self.ensure_durable_dir(dir)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TEMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(from, to)?;
        if let Some(dir) = to.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn walk(&self, root: &Path, visit: &mut dyn FnMut(&Path)) -> io::Result<()> {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let ty = entry.file_type()?;
                if ty.is_dir() {
                    stack.push(entry.path());
                } else if ty.is_file() {
                    visit(&entry.path());
                }
            }
        }
        Ok(())
    }

    fn space(&self, path: &Path) -> io::Result<(u64, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `c` is a valid NUL-terminated path and `st` is a plain struct that
        // statvfs fills in completely on success.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let frsize = st.f_frsize as u64;
        Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
    }
}
