//! Listing unfinished multipart uploads across the cluster. An upload lives on the node
//! that coordinated its creation, so a listing through any node gathers every live
//! node's uploads of the bucket.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::membership::network::PATH_UPLOADS;
use bucketdb_cluster::replication::{decode_message, encode_message};
use bucketdb_store::records::UploadRecord;
use serde::{Deserialize, Serialize};

use crate::ObjectService;
use crate::error::Result;
use crate::list::MAX_LIST_LIMIT;

/// Most uploads one listing gathers (from each node, and in all).
pub const MAX_UPLOADS_GATHERED: usize = 10 * MAX_LIST_LIMIT;
/// Longest wait for one peer's uploads; a peer that does not answer is left out.
const PEER_UPLOADS_TIMEOUT: Duration = Duration::from_secs(5);

/// An unfinished upload as a listing shows it. Ordered by key, then upload id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UploadSummary {
    pub key: String,
    pub upload_id: String,
    pub created_ms: u64,
}

impl From<UploadRecord> for UploadSummary {
    fn from(u: UploadRecord) -> Self {
        UploadSummary {
            key: u.key,
            upload_id: u.upload_id,
            created_ms: u.created_ms,
        }
    }
}

/// A node's request for a peer's uploads of `bucket` (`POST /internal/uploads`).
#[derive(Serialize, Deserialize)]
struct UploadsRequest {
    bucket: String,
    limit: u32,
}

impl ObjectService {
    /// The bucket's first `limit` unfinished uploads (by key, then upload id) on this
    /// node and every peer not seen down. A peer that cannot answer is left out.
    pub async fn list_uploads_everywhere(
        self: &Arc<Self>,
        bucket: &str,
        limit: usize,
    ) -> Result<Vec<UploadSummary>> {
        let limit = limit.min(MAX_UPLOADS_GATHERED);
        let mut all: Vec<UploadSummary> = self
            .list_multipart_uploads(bucket, limit)?
            .into_iter()
            .map(UploadSummary::from)
            .collect();
        let request = encode_message(&UploadsRequest {
            bucket: bucket.to_string(),
            limit: limit as u32,
        })?;
        for (id, address) in self.cluster.live_peers() {
            let answer = self
                .cluster
                .call_peer(
                    &address,
                    PATH_UPLOADS,
                    request.clone(),
                    PEER_UPLOADS_TIMEOUT,
                )
                .await
                .and_then(|a| {
                    a.map(|b| decode_message::<Vec<UploadSummary>>(&b))
                        .transpose()
                });
            match answer {
                Ok(Some(theirs)) => all.extend(theirs.into_iter().take(limit)),
                Ok(None) => {
                    tracing::debug!(peer = %id, "peer unreachable: its uploads are not listed")
                }
                Err(e) => {
                    tracing::warn!(peer = %id, error = %e, "listing a peer's uploads failed")
                }
            }
        }
        all.sort();
        all.dedup_by(|a, b| a.upload_id == b.upload_id);
        all.truncate(limit);
        Ok(all)
    }

    /// `POST /internal/uploads`: this node's first uploads of a bucket, for a peer's
    /// listing.
    pub fn answer_uploads(&self, body: &[u8]) -> Result<Vec<u8>> {
        let request: UploadsRequest = decode_message(body)?;
        let limit = (request.limit as usize).min(MAX_UPLOADS_GATHERED);
        let mine: Vec<UploadSummary> = self
            .list_multipart_uploads(&request.bucket, limit)?
            .into_iter()
            .map(UploadSummary::from)
            .collect();
        Ok(encode_message(&mine)?)
    }
}
