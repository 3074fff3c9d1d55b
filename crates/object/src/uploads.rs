//! Listing unfinished multipart uploads across the cluster. An upload lives on the node
//! that coordinated its creation, so a listing through any node gathers every live
//! node's uploads of the bucket.

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::membership::network::PATH_UPLOADS;
use bucketdb_cluster::replication::{decode_message, encode_message};
use bucketdb_store::Table;
use bucketdb_store::keys::{bucket_prefix, prefix_end, upload_key, versions_prefix};
use bucketdb_store::records::{UploadRecord, decode};
use serde::{Deserialize, Serialize};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::list::{MAX_LIST_LIMIT, check_list_args};
use crate::names::validate_bucket_name;
use crate::versions::load_bucket;

/// Most uploads one listing page gathers (from each node, and in all).
pub const MAX_UPLOADS_GATHERED: usize = 10 * MAX_LIST_LIMIT;
/// Longest wait for one peer's uploads.
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

/// Which of a bucket's uploads a listing page wants: those under `prefix`, after the
/// markers (S3 ListMultipartUploads), at most `limit`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UploadsQuery {
    pub prefix: String,
    /// Uploads of keys after this one; with `upload_id_marker`, also this key's own
    /// uploads whose ids come after that.
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub limit: usize,
}

/// A node's request for a peer's uploads of `bucket` (`POST /internal/uploads`).
#[derive(Serialize, Deserialize)]
struct UploadsRequest {
    bucket: String,
    query: UploadsQuery,
}

impl ObjectService {
    /// A page of the bucket's unfinished uploads (by key, then upload id) gathered from
    /// this node and every peer not seen down. Each upload lives on one node only, so a
    /// peer that does not answer makes the listing fail (503) rather than come back
    /// short.
    pub async fn list_uploads_everywhere(
        self: &Arc<Self>,
        bucket: &str,
        mut query: UploadsQuery,
    ) -> Result<Vec<UploadSummary>> {
        query.limit = query.limit.clamp(1, MAX_UPLOADS_GATHERED);
        let limit = query.limit;
        let mut all = self.uploads_here(bucket, &query)?;
        let Some(coverage) = self.cluster.coverage() else {
            return Ok(all);
        };
        let request = encode_message(&UploadsRequest {
            bucket: bucket.to_string(),
            query,
        })?;
        let answers = self
            .cluster
            .call_each(
                coverage.peers(),
                PATH_UPLOADS,
                request,
                PEER_UPLOADS_TIMEOUT,
            )
            .await;
        for (id, answer) in answers {
            match answer.and_then(|b| decode_message::<Vec<UploadSummary>>(&b)) {
                Ok(theirs) => all.extend(theirs.into_iter().take(limit)),
                Err(e) => {
                    return Err(ObjectError::Unavailable(format!(
                        "listing incomplete: node {id} did not list its uploads: {e}"
                    )));
                }
            }
        }
        all.sort();
        all.dedup_by(|a, b| a.upload_id == b.upload_id);
        all.truncate(limit);
        Ok(all)
    }

    /// `POST /internal/uploads`: this node's uploads of a bucket that a peer's listing
    /// page wants.
    pub fn answer_uploads(&self, body: &[u8]) -> Result<Vec<u8>> {
        let mut request: UploadsRequest = decode_message(body)?;
        request.query.limit = request.query.limit.clamp(1, MAX_UPLOADS_GATHERED);
        // A bucket not known here yet has no uploads here.
        let mine = match self.uploads_here(&request.bucket, &request.query) {
            Err(ObjectError::NoSuchBucket(_)) => Vec::new(),
            other => other?,
        };
        Ok(encode_message(&mine)?)
    }

    /// The uploads `query` wants among those this node holds, read as one range of the
    /// uploads table (`bucket NUL key NUL upload_id`, so by key, then upload id).
    fn uploads_here(&self, bucket: &str, query: &UploadsQuery) -> Result<Vec<UploadSummary>> {
        validate_bucket_name(bucket)?;
        check_list_args(&[
            Some(&query.prefix),
            query.key_marker.as_deref(),
            query.upload_id_marker.as_deref(),
        ])?;
        let kv = self.cluster.meta().read()?;
        load_bucket(kv.as_ref(), bucket)?;
        let mut under = bucket_prefix(bucket);
        under.extend_from_slice(query.prefix.as_bytes());
        let end = prefix_end(&under);
        let mut start = under;
        if let Some(marker) = query.key_marker.as_deref().filter(|k| !k.is_empty()) {
            let past = match query.upload_id_marker.as_deref() {
                // Just past that upload.
                Some(id) => [upload_key(bucket, marker, id).as_slice(), &[0]].concat(),
                // Past every upload of the marker's key.
                None => match prefix_end(&versions_prefix(bucket, marker)) {
                    Some(p) => p,
                    None => return Ok(Vec::new()),
                },
            };
            start = start.max(past);
        }
        if end.as_ref().is_some_and(|end| start >= *end) {
            return Ok(Vec::new());
        }
        kv.scan(Table::Uploads, &start, end.as_deref(), query.limit)?
            .into_iter()
            .map(|(_, v)| Ok(UploadSummary::from(decode::<UploadRecord>(&v)?)))
            .collect()
    }
}
