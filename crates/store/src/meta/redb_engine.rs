use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Entry, KvEngine, KvRead, KvWrite, Table};
use crate::error::StoreError;

/// Name of the database file under `metadata_path`.
pub const DB_FILE: &str = "bucketdb.redb";
/// Page cache redb may use.
pub const CACHE_BYTES: usize = 256 * 1024 * 1024;

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

/// [`KvEngine`] over redb: copy-on-write B-trees, checksummed commits, MVCC readers.
pub struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    /// Open the store in `dir`, creating the directory and the database if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        Self::open_file(&dir.join(DB_FILE))
    }

    /// Open the store in `dir` only if it exists (offline tools must not create one).
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::MetadataMissing(path));
        }
        Self::open_file(&path)
    }

    fn open_file(path: &Path) -> Result<Self, StoreError> {
        // redb locks the file while it is open, so a second opener (another server, or
        // fsck while a server runs) is refused rather than corrupting it.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::MetadataInUse(path.to_path_buf())
                }
                other => other.into(),
            })?;
        let txn = db.begin_write()?;
        for t in Table::ALL {
            txn.open_table(def(t))?;
        }
        txn.commit()?;
        Ok(RedbEngine { db })
    }
}

fn scan_table<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    from: &[u8],
    to: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    let iter = match to {
        Some(to) => table.range::<&[u8]>(from..to)?,
        None => table.range::<&[u8]>(from..)?,
    };
    for item in iter.take(limit) {
        let (k, v) = item?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

struct RedbRead(redb::ReadTransaction);

impl KvRead for RedbRead {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.0.open_table(def(table))?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }
    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        scan_table(&self.0.open_table(def(table))?, from, to, limit)
    }
    fn count(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self.0.open_table(def(table))?.len()?)
    }
}

struct RedbWrite<'a>(&'a redb::WriteTransaction);

impl KvRead for RedbWrite<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.0.open_table(def(table))?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }
    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        scan_table(&self.0.open_table(def(table))?, from, to, limit)
    }
    fn count(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self.0.open_table(def(table))?.len()?)
    }
}

impl KvWrite for RedbWrite<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.open_table(def(table))?.insert(key, value)?;
        Ok(())
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.0.open_table(def(table))?.remove(key)?.is_some())
    }
}

impl KvEngine for RedbEngine {
    fn read(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        Ok(Box::new(RedbRead(self.db.begin_read()?)))
    }

    fn write(
        &self,
        apply: &mut dyn FnMut(&mut dyn KvWrite) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        match apply(&mut RedbWrite(&txn)) {
            Ok(()) => Ok(txn.commit()?),
            Err(e) => {
                txn.abort()?;
                Err(e)
            }
        }
    }
}
