use std::path::PathBuf;

/// Everything the local store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata engine error: {0}")]
    Engine(String),
    #[error("metadata commit failed: {0}")]
    Commit(String),
    #[error("chunk {0} failed its SHA-256 check and was quarantined")]
    CorruptChunk(String),
    #[error("chunk {0} is missing")]
    MissingChunk(String),
    #[error("stored record is unreadable: {0}")]
    Decode(String),
    #[error("record format version {found} is newer than this build understands ({supported})")]
    FutureFormat { found: u8, supported: u8 },
    #[error("the metadata writer has stopped")]
    WriterGone,
    #[error("the metadata store {0} is already open elsewhere (another server?)")]
    MetadataInUse(PathBuf),
    #[error("there is no metadata store at {0}")]
    MetadataMissing(PathBuf),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Engine(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
