//! The records kept in the metadata store. Each is stored as one format-version byte
//! followed by its postcard encoding. Every record type has its own format version: a
//! reader refuses versions newer than it knows and upgrades older ones as it reads them,
//! so a record is rewritten in the new format only when it next changes.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::chunks::ChunkRef;
use crate::error::StoreError;

/// A value kept in the metadata store.
pub trait Record: Serialize + DeserializeOwned {
    /// The format version this build writes.
    const VERSION: u8 = 1;

    /// Decode a body written in an older format version (`version < VERSION`).
    fn decode_older(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        let _ = body;
        Err(StoreError::Decode(format!(
            "format version {version} of this record is not known"
        )))
    }
}

pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![T::VERSION];
    postcard::to_io(value, &mut out).map_err(|e| StoreError::Decode(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, StoreError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| StoreError::Decode("empty record".into()))?;
    if version > T::VERSION {
        return Err(StoreError::FutureFormat {
            found: version,
            supported: T::VERSION,
        });
    }
    if version < T::VERSION {
        return T::decode_older(version, body);
    }
    postcard_decode(body)
}

fn postcard_decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(body).map_err(|e| StoreError::Decode(e.to_string()))
}

/// Chunk reference counts.
impl Record for u32 {}
/// Usage counters.
impl Record for u64 {}
/// Presence markers (the GC queue).
impl Record for () {}

/// A removed version: copies of it with `seq <= seq` arriving from other nodes are stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub seq: u64,
    pub removed_ms: u64,
}

impl Record for Tombstone {}

/// Quorum mode: a change another node prepared here, invisible until the coordinator's
/// commit arrives; dropped on its abort or when it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// The coordinator's node id.
    pub source: String,
    pub bucket: String,
    pub prepared_ms: u64,
    pub change: PreparedChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreparedChange {
    /// A new version, or new tags of one: its chunks are referenced (kept).
    Version {
        record: Box<ObjectRecord>,
        inline: Option<Vec<u8>>,
    },
    /// The removal of a version, with the `seq` its tombstone will have.
    Removal {
        key: String,
        version_id: String,
        seq: u64,
    },
}

impl PendingChange {
    pub fn key(&self) -> &str {
        match &self.change {
            PreparedChange::Version { record, .. } => &record.key,
            PreparedChange::Removal { key, .. } => key,
        }
    }

    pub fn version_id(&self) -> &str {
        match &self.change {
            PreparedChange::Version { record, .. } => &record.version_id,
            PreparedChange::Removal { version_id, .. } => version_id,
        }
    }

    pub fn seq(&self) -> u64 {
        match &self.change {
            PreparedChange::Version { record, .. } => record.seq,
            PreparedChange::Removal { seq, .. } => *seq,
        }
    }

    /// The chunks the prepared change keeps referenced.
    pub fn chunks(&self) -> &[ChunkRef] {
        match &self.change {
            PreparedChange::Version { record, .. } => record.chunks(),
            PreparedChange::Removal { .. } => &[],
        }
    }
}

/// Format 1 of `PendingChange`, when only new versions were prepared (their records in
/// format 2).
#[derive(Serialize, Deserialize)]
struct PendingVersionV1 {
    source: String,
    bucket: String,
    prepared_ms: u64,
    record: ObjectRecordV2,
    inline: Option<Vec<u8>>,
}

/// Format 2 of `PendingChange`: its prepared versions' records in format 2.
#[derive(Serialize, Deserialize)]
struct PendingChangeV2 {
    source: String,
    bucket: String,
    prepared_ms: u64,
    change: PreparedChangeV2,
}

#[derive(Serialize, Deserialize)]
enum PreparedChangeV2 {
    Version {
        record: Box<ObjectRecordV2>,
        inline: Option<Vec<u8>>,
    },
    Removal {
        key: String,
        version_id: String,
        seq: u64,
    },
}

impl Record for PendingChange {
    const VERSION: u8 = 3;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        match version {
            1 => {
                let v1: PendingVersionV1 = postcard_decode(body)?;
                Ok(PendingChange {
                    source: v1.source,
                    bucket: v1.bucket,
                    prepared_ms: v1.prepared_ms,
                    change: PreparedChange::Version {
                        record: Box::new(v1.record.into()),
                        inline: v1.inline,
                    },
                })
            }
            2 => {
                let v2: PendingChangeV2 = postcard_decode(body)?;
                Ok(PendingChange {
                    source: v2.source,
                    bucket: v2.bucket,
                    prepared_ms: v2.prepared_ms,
                    change: match v2.change {
                        PreparedChangeV2::Version { record, inline } => PreparedChange::Version {
                            record: Box::new((*record).into()),
                            inline,
                        },
                        PreparedChangeV2::Removal {
                            key,
                            version_id,
                            seq,
                        } => PreparedChange::Removal {
                            key,
                            version_id,
                            seq,
                        },
                    },
                })
            }
            _ => Err(StoreError::Decode(format!(
                "unknown pending change format {version}"
            ))),
        }
    }
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

impl Record for BucketRecord {}

/// Optional settings of a bucket, kept apart from `BucketRecord` so that new settings
/// do not change the bucket record's format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketConfig {
    /// Anyone may read objects (GET/HEAD) and list the bucket without credentials.
    pub public_read: bool,
    pub tags: Vec<(String, String)>,
    /// Cross-origin rules browsers are told about (S3 CORS configuration).
    pub cors: Vec<CorsRule>,
}

/// Format 1 of `BucketConfig`, before CORS rules.
#[derive(Serialize, Deserialize)]
struct BucketConfigV1 {
    public_read: bool,
    tags: Vec<(String, String)>,
}

impl Record for BucketConfig {
    const VERSION: u8 = 2;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        match version {
            1 => {
                let v1: BucketConfigV1 = postcard_decode(body)?;
                Ok(BucketConfig {
                    public_read: v1.public_read,
                    tags: v1.tags,
                    cors: Vec::new(),
                })
            }
            _ => Err(StoreError::Decode(format!(
                "unknown bucket config format {version}"
            ))),
        }
    }
}

/// One S3 CORS rule: which origins may use which methods and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    pub id: Option<String>,
    /// Origins, each possibly with one `*` wildcard.
    pub allowed_origins: Vec<String>,
    /// `GET`, `PUT`, `POST`, `DELETE` or `HEAD`.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for, each possibly with one `*` wildcard.
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<i32>,
}

/// Where an object's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// In the metadata store's inline table, under the version key.
    Inline,
    /// In chunk files, in order.
    Chunks(Vec<ChunkRef>),
}

/// No bytes at all (an empty object, a delete marker).
impl Default for Body {
    fn default() -> Self {
        Body::Chunks(Vec::new())
    }
}

/// One version of an object (or a delete marker). `Default` is an empty record, for
/// building one field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Checksums the client declared and the body was verified against, as
    /// (algorithm, value in S3's base64 form), e.g. `("SHA256", "n4bQ...=")`.
    pub checksums: Vec<(String, String)>,
    pub headers: StandardHeaders,
    /// When the tags were last changed (a `seq`; 0 if never since the version was made).
    /// Tag changes keep the version's `seq`, so copies of one version order their tags
    /// by this instead: a replica keeps the copy with the later tags.
    pub tags_seq: u64,
}

/// Standard HTTP headers given on upload, stored with the object and returned on
/// GET/HEAD.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardHeaders {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    /// `Expires`, as Unix seconds.
    pub expires_secs: Option<i64>,
}

/// Format 1 of `ObjectRecord`, before stored checksums.
#[derive(Serialize, Deserialize)]
struct ObjectRecordV1 {
    key: String,
    version_id: String,
    seq: u64,
    delete_marker: bool,
    created_ms: u64,
    size: u64,
    etag: String,
    sha256: String,
    content_type: String,
    user_meta: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    part_sizes: Vec<u64>,
    body: Body,
}

/// Format 2 of `ObjectRecord`, before `tags_seq`: format 1's fields, then these
/// (postcard writes a nested struct's fields in place, so this is the flat layout).
#[derive(Serialize, Deserialize)]
struct ObjectRecordV2 {
    v1: ObjectRecordV1,
    checksums: Vec<(String, String)>,
    headers: StandardHeaders,
}

impl From<ObjectRecordV2> for ObjectRecord {
    fn from(
        ObjectRecordV2 {
            v1,
            checksums,
            headers,
        }: ObjectRecordV2,
    ) -> Self {
        ObjectRecord {
            key: v1.key,
            version_id: v1.version_id,
            seq: v1.seq,
            delete_marker: v1.delete_marker,
            created_ms: v1.created_ms,
            size: v1.size,
            etag: v1.etag,
            sha256: v1.sha256,
            content_type: v1.content_type,
            user_meta: v1.user_meta,
            tags: v1.tags,
            part_sizes: v1.part_sizes,
            body: v1.body,
            checksums,
            headers,
            tags_seq: 0,
        }
    }
}

impl Record for ObjectRecord {
    const VERSION: u8 = 3;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        match version {
            2 => Ok(postcard_decode::<ObjectRecordV2>(body)?.into()),
            1 => Ok(ObjectRecordV2 {
                v1: postcard_decode(body)?,
                checksums: Vec::new(),
                headers: StandardHeaders::default(),
            }
            .into()),
            _ => Err(StoreError::Decode(format!(
                "unknown object record format {version}"
            ))),
        }
    }
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
    /// Tags the completed object gets (`x-amz-tagging` on CreateMultipartUpload).
    pub tags: Vec<(String, String)>,
    /// The algorithm whose per-part checksums are combined into the object's composite
    /// checksum (`x-amz-checksum-algorithm` on CreateMultipartUpload), e.g. `"CRC32"`.
    pub checksum_algorithm: Option<String>,
    /// Standard headers the completed object gets.
    pub headers: StandardHeaders,
}

/// Format 1 of `UploadRecord`, before tags.
#[derive(Serialize, Deserialize)]
struct UploadRecordV1 {
    upload_id: String,
    bucket: String,
    key: String,
    created_ms: u64,
    content_type: String,
    user_meta: Vec<(String, String)>,
}

impl Record for UploadRecord {
    const VERSION: u8 = 2;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        match version {
            1 => {
                let v1: UploadRecordV1 = postcard_decode(body)?;
                Ok(UploadRecord {
                    upload_id: v1.upload_id,
                    bucket: v1.bucket,
                    key: v1.key,
                    created_ms: v1.created_ms,
                    content_type: v1.content_type,
                    user_meta: v1.user_meta,
                    tags: Vec::new(),
                    checksum_algorithm: None,
                    headers: StandardHeaders::default(),
                })
            }
            _ => Err(StoreError::Decode(format!(
                "unknown upload record format {version}"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub created_ms: u64,
    pub chunks: Vec<ChunkRef>,
    /// Checksums the part's body was verified against, as in `ObjectRecord`.
    pub checksums: Vec<(String, String)>,
}

/// Format 1 of `PartRecord`, before stored checksums.
#[derive(Serialize, Deserialize)]
struct PartRecordV1 {
    part_number: u32,
    etag: String,
    size: u64,
    created_ms: u64,
    chunks: Vec<ChunkRef>,
}

impl Record for PartRecord {
    const VERSION: u8 = 2;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        match version {
            1 => {
                let v1: PartRecordV1 = postcard_decode(body)?;
                Ok(PartRecord {
                    part_number: v1.part_number,
                    etag: v1.etag,
                    size: v1.size,
                    created_ms: v1.created_ms,
                    chunks: v1.chunks,
                    checksums: Vec::new(),
                })
            }
            _ => Err(StoreError::Decode(format!(
                "unknown part record format {version}"
            ))),
        }
    }
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
        assert_eq!(bytes[0], BucketRecord::VERSION);
        assert_eq!(decode::<BucketRecord>(&bytes).unwrap(), b);
        let mut future = bytes.clone();
        future[0] = BucketRecord::VERSION + 1;
        assert!(matches!(
            decode::<BucketRecord>(&future),
            Err(StoreError::FutureFormat { .. })
        ));
        assert!(decode::<BucketRecord>(&[]).is_err());
    }

    fn with_version<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
        let mut out = vec![version];
        postcard::to_io(value, &mut out).unwrap();
        out
    }

    #[test]
    fn format_1_object_records_are_read_without_checksums() {
        let v1 = ObjectRecordV1 {
            key: "a/b".into(),
            version_id: "null".into(),
            seq: 7,
            delete_marker: false,
            created_ms: 9,
            size: 3,
            etag: "e".into(),
            sha256: "s".into(),
            content_type: "text/plain".into(),
            user_meta: vec![("k".into(), "v".into())],
            tags: vec![("t".into(), "u".into())],
            part_sizes: vec![1, 2],
            body: Body::Inline,
        };
        let rec: ObjectRecord = decode(&with_version(1, &v1)).unwrap();
        assert_eq!((rec.key.as_str(), rec.seq, rec.size), ("a/b", 7, 3));
        assert_eq!(rec.user_meta, v1.user_meta);
        assert_eq!(rec.tags, v1.tags);
        assert_eq!(rec.part_sizes, vec![1, 2]);
        assert!(rec.checksums.is_empty());
        // Written again, it takes the current format and keeps its new field.
        let mut rec = rec;
        rec.checksums = vec![("CRC32".into(), "AAAAAA==".into())];
        let bytes = encode(&rec).unwrap();
        assert_eq!(bytes[0], ObjectRecord::VERSION);
        assert_eq!(decode::<ObjectRecord>(&bytes).unwrap(), rec);
    }

    /// A format-1 record of key `k` with one tag, inline.
    fn tagged_v1(version_id: &str, seq: u64) -> ObjectRecordV1 {
        ObjectRecordV1 {
            key: "k".into(),
            version_id: version_id.into(),
            seq,
            delete_marker: false,
            created_ms: 1,
            size: 2,
            etag: "e".into(),
            sha256: "s".into(),
            content_type: "c".into(),
            user_meta: vec![],
            tags: vec![("t".into(), "u".into())],
            part_sizes: vec![],
            body: Body::Inline,
        }
    }

    #[test]
    fn format_2_object_records_are_read_with_tags_never_changed() {
        let v2 = ObjectRecordV2 {
            v1: tagged_v1("v", 5),
            checksums: vec![("CRC32".into(), "AAAAAA==".into())],
            headers: StandardHeaders::default(),
        };
        let bytes = with_version(2, &v2);
        let rec: ObjectRecord = decode(&bytes).unwrap();
        assert_eq!((rec.seq, rec.tags_seq), (5, 0));
        assert_eq!((&rec.tags, &rec.checksums), (&v2.v1.tags, &v2.checksums));
        // Format 3 is format 2's layout with `tags_seq` appended (0: one byte).
        let now = encode(&rec).unwrap();
        assert_eq!(now[1..], [&bytes[1..], &[0]].concat());
    }

    #[test]
    fn format_1_uploads_and_parts_are_read_without_new_fields() {
        let up = UploadRecordV1 {
            upload_id: "u".into(),
            bucket: "b".into(),
            key: "k".into(),
            created_ms: 1,
            content_type: "c".into(),
            user_meta: vec![("m".into(), "v".into())],
        };
        let got: UploadRecord = decode(&with_version(1, &up)).unwrap();
        assert_eq!((got.key.as_str(), got.user_meta.len()), ("k", 1));
        assert!(got.tags.is_empty() && got.checksum_algorithm.is_none());
        let part = PartRecordV1 {
            part_number: 3,
            etag: "e".into(),
            size: 9,
            created_ms: 2,
            chunks: vec![],
        };
        let got: PartRecord = decode(&with_version(1, &part)).unwrap();
        assert_eq!((got.part_number, got.size), (3, 9));
        assert!(got.checksums.is_empty());
    }

    #[test]
    fn format_1_bucket_configs_are_read_without_cors_rules() {
        let v1 = BucketConfigV1 {
            public_read: true,
            tags: vec![("team".into(), "a".into())],
        };
        let c: BucketConfig = decode(&with_version(1, &v1)).unwrap();
        assert!(c.public_read);
        assert_eq!(c.tags, v1.tags);
        assert!(c.cors.is_empty());
    }

    #[test]
    fn format_1_and_2_pending_changes_are_read_with_their_older_records() {
        let old_record = || ObjectRecordV2 {
            v1: tagged_v1("null", 11),
            checksums: vec![],
            headers: StandardHeaders::default(),
        };
        let want = PreparedChange::Version {
            record: Box::new(old_record().into()),
            inline: Some(b"hi".to_vec()),
        };
        let v1 = PendingVersionV1 {
            source: "n1".into(),
            bucket: "b".into(),
            prepared_ms: 4,
            record: old_record(),
            inline: Some(b"hi".to_vec()),
        };
        let got: PendingChange = decode(&with_version(1, &v1)).unwrap();
        assert_eq!((got.key(), got.seq(), got.source.as_str()), ("k", 11, "n1"));
        assert_eq!(got.change, want);
        let v2 = PendingChangeV2 {
            source: "n1".into(),
            bucket: "b".into(),
            prepared_ms: 4,
            change: PreparedChangeV2::Version {
                record: Box::new(old_record()),
                inline: Some(b"hi".to_vec()),
            },
        };
        let got: PendingChange = decode(&with_version(2, &v2)).unwrap();
        assert_eq!(got.change, want);
        let removal = PendingChange {
            change: PreparedChange::Removal {
                key: "k".into(),
                version_id: "null".into(),
                seq: 12,
            },
            ..got
        };
        let back: PendingChange = decode(&encode(&removal).unwrap()).unwrap();
        assert_eq!((back.seq(), back.chunks().len()), (12, 0));
    }
}
