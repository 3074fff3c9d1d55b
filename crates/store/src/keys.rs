//! Byte encodings of metadata keys. Bucket names and object keys never contain NUL
//! (validated above this layer), so NUL separates the parts and byte order of the encoded
//! key is the UTF-8 binary order of the object key, as S3 lists.

pub const SEP: u8 = 0;

/// `bucket NUL`: every object entry of a bucket starts with this.
pub fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1);
    k.extend_from_slice(bucket.as_bytes());
    k.push(SEP);
    k
}

/// `bucket NUL key`: the current-version table's key.
pub fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `bucket NUL key NUL`: every version of one key starts with this.
pub fn versions_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(SEP);
    k
}

/// `bucket NUL key NUL !seq`: newest version sorts first.
pub fn version_key(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = versions_prefix(bucket, key);
    k.extend_from_slice(&(!seq).to_be_bytes());
    k
}

/// The sequence number stored in a version key.
pub fn seq_of_version_key(k: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = k.get(k.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(!u64::from_be_bytes(tail))
}

/// `bucket NUL key NUL upload_id`.
pub fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = versions_prefix(bucket, key);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// `upload_id NUL`: every part of one upload starts with this.
pub fn parts_prefix(upload_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(upload_id.len() + 1);
    k.extend_from_slice(upload_id.as_bytes());
    k.push(SEP);
    k
}

/// `upload_id NUL part_number`.
pub fn part_key(upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = parts_prefix(upload_id);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

/// The smallest key greater than every key that starts with `prefix`
/// (`None`: no such key, scan to the end).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// `bucket NUL key NUL version_id`: a removed version's tombstone.
pub fn tombstone_key(bucket: &str, key: &str, version_id: &str) -> Vec<u8> {
    let mut k = versions_prefix(bucket, key);
    k.extend_from_slice(version_id.as_bytes());
    k
}

/// `bucket NUL key NUL version_id NUL`: every prepared copy of one version.
pub fn pending_prefix(bucket: &str, key: &str, version_id: &str) -> Vec<u8> {
    let mut k = tombstone_key(bucket, key, version_id);
    k.push(SEP);
    k
}

/// `bucket NUL key NUL version_id NUL seq`: one prepared copy of a version.
pub fn pending_key(bucket: &str, key: &str, version_id: &str, seq: u64) -> Vec<u8> {
    let mut k = pending_prefix(bucket, key, version_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `peer NUL`: every queued replication operation for one peer starts with this.
pub fn repl_queue_prefix(peer: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(peer.len() + 1);
    k.extend_from_slice(peer.as_bytes());
    k.push(SEP);
    k
}

/// `peer NUL number`: queued operations for a peer sort in the order they were queued.
pub fn repl_queue_key(peer: &str, number: u64) -> Vec<u8> {
    let mut k = repl_queue_prefix(peer);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

/// The queue number stored in a replication queue key.
pub fn number_of_repl_queue_key(k: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = k.get(k.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_newest_first_and_stay_within_their_key() {
        let a1 = version_key("b", "a", 1);
        let a2 = version_key("b", "a", 2);
        let ab = version_key("b", "a/b", 0);
        assert!(a2 < a1);
        assert!(a1 < ab);
        assert!(a1.starts_with(&versions_prefix("b", "a")));
        assert!(!ab.starts_with(&versions_prefix("b", "a")));
        assert_eq!(seq_of_version_key(&a2), Some(2));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
