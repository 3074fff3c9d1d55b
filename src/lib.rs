//! BucketDB: a distributed, self-hosted, S3-compatible object store, usable as a server
//! (`bucketdb server`) or embedded in a Rust program through [`BucketDb`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), bucketdb::Error> {
//! let db = bucketdb::BucketDb::open(&bucketdb::Config::default())?;
//! let file = tokio::fs::File::open("video.mp4").await?;
//! let size = file.metadata().await?.len();
//! db.put_object_from_stream("movies", "video.mp4", file, size, None).await?;
//! db.set_quorum(true);
//! for v in db.list_object_versions("movies", "video.mp4")? {
//!     println!("version {} size {}", v.version_id, v.size);
//! }
//! # Ok(()) }
//! ```

pub mod config;
mod credentials;
mod db;
mod rebalance;
pub mod server;

pub use bucketdb_object::{
    DeleteOutcome, ListPage, ListQuery, ObjectError, ObjectReader, ObjectRecord, ObjectService,
    PutOptions, RangeSpec, Versioning,
};
pub use config::{Config, ConfigArgs, ConfigError, LogFormat};
pub use credentials::resolve_credentials;
pub use db::BucketDb;

/// Errors of the embeddable library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Store(#[from] bucketdb_store::StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A file or folder the node needs could not be created or read (a data folder owned
    /// by another user, say): the message names it.
    #[error("cannot use {}", path.display())]
    Path {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] bucketdb_cluster::membership::MembershipError),
}

impl Error {
    /// An I/O failure on `path`, named in the message.
    pub(crate) fn at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Path {
            path: path.to_path_buf(),
            source,
        }
    }
}
