use bucketdb_cluster::ClusterError;
use bucketdb_store::StoreError;

/// Everything an object-service operation can fail with. The API layer maps each variant
/// to its S3 error code and HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("the bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("the key {0} does not exist")]
    NoSuchKey(String),
    #[error("the version {0} does not exist")]
    NoSuchVersion(String),
    #[error("the upload {0} does not exist")]
    NoSuchUpload(String),
    #[error("the bucket {0} already exists")]
    BucketAlreadyOwnedByYou(String),
    #[error("the bucket {0} is not empty")]
    BucketNotEmpty(String),
    #[error("invalid bucket name: {0}")]
    InvalidBucketName(String),
    #[error("the key is longer than {max} bytes")]
    KeyTooLong { max: usize },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("the object is larger than the {max}-byte limit")]
    EntityTooLarge { max: u64 },
    #[error("part {part} is smaller than the {min}-byte minimum")]
    EntityTooSmall { part: u32, min: u64 },
    #[error("the body ended early or did not match its declared length: {0}")]
    IncompleteBody(String),
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("parts must be listed in ascending order without repeats")]
    InvalidPartOrder,
    #[error("invalid tag: {0}")]
    InvalidTag(String),
    #[error("user metadata is larger than {max} bytes")]
    MetadataTooLarge { max: usize },
    #[error("the range is not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the body does not match its Content-MD5")]
    BadDigest,
    #[error("at least one precondition did not hold")]
    PreconditionFailed,
    #[error("not modified")]
    NotModified { etag: String, last_modified_ms: u64 },
    #[error("the version is a delete marker")]
    MethodNotAllowed,
    #[error("stored data failed verification: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
    /// Quorum mode: too few replicas stored the write in time; nothing was stored.
    #[error("only {durable} of the {needed} copies a quorum write needs were stored in time")]
    QuorumNotReached { durable: usize, needed: usize },
    /// Too few nodes answered to serve the request completely (a listing); retryable.
    #[error("{0}")]
    Unavailable(String),
    /// A change from (or to) another node could not be applied; the sender retries.
    #[error("replication: {0}")]
    Replication(String),
}

impl From<StoreError> for ObjectError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CorruptChunk(c) | StoreError::MissingChunk(c) => ObjectError::Corrupt(c),
            other => ObjectError::Store(other),
        }
    }
}

impl From<ClusterError> for ObjectError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Store(s) => s.into(),
            ClusterError::Task(t) => ObjectError::Internal(t),
            other => ObjectError::Replication(other.to_string()),
        }
    }
}

pub type Result<T, E = ObjectError> = std::result::Result<T, E>;
