//! The filesystem seam. Everything the chunk store does to disk goes through [`Disk`],
//! so a test can inject failures or a simulator can keep files in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of files that are still being written; never valid chunks.
pub const TEMP_SUFFIX: &str = ".tmp";

pub trait Disk: Send + Sync + 'static {
    /// Write `data` to `path` so that after return it survives a crash:
    /// temp file → fsync → rename → fsync of the directory.
    fn write_durable(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Rename within the same filesystem, creating the target's directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Every regular file below `root`, visited one at a time.
    fn walk(&self, root: &Path, visit: &mut dyn FnMut(&Path)) -> io::Result<()>;
    /// (total, free) bytes of the filesystem holding `path`.
    fn space(&self, path: &Path) -> io::Result<(u64, u64)>;
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdDisk;

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Disk for StdDisk {
    fn write_durable(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(grand) = dir.parent() {
                sync_dir(grand)?;
            }
        }
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
