//! The embeddable database: the seed's Go SDK, in Rust.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::{Cluster, NodeInfo, ReplicationConfig};
use bucketdb_object::{ObjectReader, ObjectRecord, ObjectService, PutOptions, ServiceConfig};
use bucketdb_store::env::random_bytes;
use bucketdb_store::{ChunkStore, Clock, Meta, OsRandom, Random, RedbEngine, StdDisk, SystemClock};
use tokio::io::AsyncRead;
use tokio::sync::watch;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::{Config, Error};

/// Name of the file under `metadata_path` that holds the node id.
const NODE_ID_FILE: &str = "node_id";
/// Read size when streaming from an `AsyncRead`.
const READER_BUFFER_BYTES: usize = 256 * 1024;

/// An open BucketDB node.
pub struct BucketDb {
    service: Arc<ObjectService>,
}

fn node_id(config: &Config, random: &dyn Random) -> Result<String, Error> {
    if let Some(id) = &config.node_id {
        return Ok(id.clone());
    }
    let path = config.metadata_path.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::at(&path)(e)),
    }
    let id = format!("node-{}", hex::encode(random_bytes::<6>(random)));
    crate::credentials::write_private_file(&path, &id).map_err(Error::at(&path))?;
    Ok(id)
}

impl BucketDb {
    /// Open (or create) the node's stores and sweep chunk files a crash left behind.
    pub fn open(config: &Config) -> Result<Self, Error> {
        Self::open_with(config, Arc::new(SystemClock), Arc::new(OsRandom))
    }

    /// [`BucketDb::open`] with an injected clock and randomness (tests, simulation).
    pub fn open_with(
        config: &Config,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, Error> {
        for dir in [&config.storage_path, &config.metadata_path] {
            std::fs::create_dir_all(dir).map_err(Error::at(dir))?;
        }
        let node = NodeInfo {
            id: node_id(config, random.as_ref())?,
            address: config
                .advertise_addr
                .clone()
                .unwrap_or_else(|| config.http_addr.to_string()),
        };
        let chunks = Arc::new(ChunkStore::new(
            &config.storage_path,
            Arc::new(StdDisk::default()),
            random.clone(),
        ));
        let meta = Arc::new(Meta::new(Arc::new(RedbEngine::open(
            &config.metadata_path,
        )?)));
        let cluster = Arc::new(Cluster::single_node(
            node,
            chunks,
            meta,
            clock.clone(),
            ReplicationConfig {
                replication_factor: config.replication_factor,
                quorum_required: config.quorum_required,
                replication_timeout_ms: config.replication_timeout.as_millis() as u64,
            },
        ));
        let service = Arc::new(ObjectService::new(
            cluster,
            ServiceConfig {
                chunk_size: config.chunk_size,
                inline_threshold: config.inline_threshold,
                max_object_size: config.max_object_size,
                gc_grace_ms: config.gc_grace.as_millis() as u64,
            },
            clock,
            random,
        ));
        let swept = service.sweep_orphans()?;
        if swept > 0 {
            tracing::info!(
                files = swept,
                "removed chunk files left by an interrupted write"
            );
        }
        Ok(BucketDb { service })
    }

    /// The object service, for everything beyond this convenience API.
    pub fn service(&self) -> &Arc<ObjectService> {
        &self.service
    }

    /// Store `size` bytes from `reader` as `bucket/key`, creating the bucket if needed.
    pub async fn put_object_from_stream(
        &self,
        bucket: &str,
        key: &str,
        reader: impl AsyncRead + Send + Unpin,
        size: u64,
        opts: Option<PutOptions>,
    ) -> Result<ObjectRecord, Error> {
        let mut opts = opts.unwrap_or(PutOptions {
            create_bucket: true,
            ..PutOptions::default()
        });
        opts.declared_size = Some(size);
        let stream = ReaderStream::with_capacity(reader, READER_BUFFER_BYTES);
        Ok(self.service.put_object(bucket, key, stream, opts).await?)
    }

    /// The current version (or `version_id`) as a stream of verified bytes.
    pub async fn get_object_as_stream(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectRecord, impl AsyncRead + Send + Unpin + use<>), Error> {
        let ObjectReader { record, body, .. } = self
            .service
            .get_object(bucket, key, version_id, None, &Default::default())
            .await?;
        let body = futures::TryStreamExt::map_err(body, std::io::Error::other);
        Ok((record, StreamReader::new(body)))
    }

    /// Every version of a key, newest first (delete markers included).
    pub fn list_object_versions(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<ObjectRecord>, Error> {
        Ok(self.service.list_object_versions(bucket, key)?.versions)
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), Error> {
        self.service.delete_object(bucket, key, None).await?;
        Ok(())
    }

    /// Switch between async replication and quorum writes at runtime.
    pub fn set_quorum(&self, required: bool) {
        self.service.cluster().set_quorum(required);
    }

    /// Run garbage collection and lifecycle in the background until `stop` turns true.
    pub fn spawn_background_work(
        &self,
        gc_interval: Duration,
        lifecycle_interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.service.clone();
        tokio::spawn(async move {
            let mut lifecycle = tokio::time::interval(lifecycle_interval);
            loop {
                tokio::select! {
                    _ = stop.changed() => {
                        if *stop.borrow() { return; }
                    }
                    _ = svc.gc_wanted(gc_interval) => {
                        if let Err(e) = svc.expire_tombstones().await {
                            tracing::warn!(error = %e, "expiring tombstones failed");
                        }
                        if let Err(e) = svc.drop_stale_prepared().await {
                            tracing::warn!(error = %e, "dropping stale prepared versions failed");
                        }
                        if let Err(e) = svc.run_gc_until_empty().await {
                            tracing::warn!(error = %e, "garbage collection pass failed");
                        }
                    }
                    _ = lifecycle.tick() => {
                        if let Err(e) = svc.run_lifecycle_once().await {
                            tracing::warn!(error = %e, "lifecycle pass failed");
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data folder the node cannot create is named in the error, so an operator knows
    /// which mount or permission to fix.
    #[tokio::test]
    async fn an_unusable_data_folder_is_named_in_the_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blocker = dir.path().join("a-file");
        std::fs::write(&blocker, b"not a folder")?;
        let config = Config {
            storage_path: blocker.join("storage"),
            metadata_path: dir.path().join("meta"),
            ..Config::default()
        };
        let Err(err) = BucketDb::open(&config) else {
            anyhow::bail!("a storage path under a regular file must not open");
        };
        let message = err.to_string();
        assert!(
            message.contains(&config.storage_path.display().to_string()),
            "{message}"
        );
        Ok(())
    }
}
