//! The records kept in the metadata store. Each is stored as one format-version byte
//! followed by its postcard encoding; a reader refuses versions newer than it knows.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::chunks::ChunkRef;
use crate::error::StoreError;

/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut out).map_err(|e| StoreError::Decode(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| StoreError::Decode("empty record".into()))?;
    if version > FORMAT_VERSION {
        return Err(StoreError::FutureFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    // Version 1 is the only format so far; older versions would be migrated here.
    postcard::from_bytes(body).map_err(|e| StoreError::Decode(e.to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    pub prefix: String,
    pub expiration_days: Option<u32>,
    pub noncurrent_days: Option<u32>,
    pub abort_incomplete_multipart_days: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_ms: u64,
    pub versioning: Versioning,
    pub lifecycle: Vec<LifecycleRule>,
}

/// Optional settings of a bucket, kept apart from `BucketRecord` so that new settings
/// do not change the bucket record's format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketConfig {
    /// Anyone may read objects (GET/HEAD) and list the bucket without credentials.
    pub public_read: bool,
    pub tags: Vec<(String, String)>,
}

/// Where an object's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// In the metadata store's inline table, under the version key.
    Inline,
    /// In chunk files, in order.
    Chunks(Vec<ChunkRef>),
}

/// One version of an object (or a delete marker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    /// `"null"` or a generated id.
    pub version_id: String,
    /// Orders the versions of a key; larger is newer.
    pub seq: u64,
    pub delete_marker: bool,
    pub created_ms: u64,
    pub size: u64,
    pub etag: String,
    /// SHA-256 of the content for single-chunk objects; for larger ones the SHA-256 of
    /// the concatenated chunk digests followed by `-<chunks>`.
    pub sha256: String,
    pub content_type: String,
    pub user_meta: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Sizes of the parts a multipart object was assembled from (empty otherwise).
    pub part_sizes: Vec<u64>,
    pub body: Body,
}

impl ObjectRecord {
    pub fn chunks(&self) -> &[ChunkRef] {
        match &self.body {
            Body::Chunks(c) => c,
            Body::Inline => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub created_ms: u64,
    pub content_type: String,
    pub user_meta: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub created_ms: u64,
    pub chunks: Vec<ChunkRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_future_versions_are_refused() {
        let b = BucketRecord {
            name: "logs".into(),
            created_ms: 5,
            versioning: Versioning::Suspended,
            lifecycle: vec![],
        };
        let bytes = encode(&b).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<BucketRecord>(&bytes).unwrap(), b);
        let mut future = bytes.clone();
        future[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode::<BucketRecord>(&future),
            Err(StoreError::FutureFormat { .. })
        ));
        assert!(decode::<BucketRecord>(&[]).is_err());
    }
}
