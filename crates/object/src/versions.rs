//! Versioning: how a new version (or delete marker) is installed, how one is removed, and
//! how the versions of a key are listed. All functions here run inside one metadata
//! transaction, so each change to a key is atomic.

use bucketdb_cluster::replication::ReplOp;
use bucketdb_store::keys::{object_key, prefix_end, tombstone_key, version_key, versions_prefix};
use bucketdb_store::records::{
    BucketRecord, ObjectRecord, PendingChange, Tombstone, Versioning, decode, encode,
};
use bucketdb_store::{KvRead, KvWrite, StoreError, Table};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::list::{Listing, Step, check_list_args};
use crate::list_cluster::{NodeVersions, VersionsQuery};
use crate::refs::{add_refs, release_refs};
use crate::usage::count_version;

/// Most versions returned by one listing.
pub const MAX_VERSIONS_LISTED: usize = 1000;
/// Versions read per scan while searching a key's history.
const VERSION_SCAN_PAGE: usize = 256;
/// Most tombstones of one key read to find its latest removal (tombstones are kept for
/// `TOMBSTONE_TTL` only, so a key rarely has more).
const MAX_TOMBSTONES_PER_KEY: usize = 1024;

pub const NULL_VERSION: &str = "null";

/// What a delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The version removed or the delete marker created (`None`: nothing existed).
    pub version_id: Option<String>,
    pub delete_marker: bool,
}

/// One page of a bucket's versions (S3 ListObjectVersions).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct VersionPage {
    /// Versions and delete markers, by key, newest first within a key; with whether each
    /// is the latest version of its key.
    pub versions: Vec<(ObjectRecord, bool)>,
    /// Common prefixes (only with a delimiter), in key order.
    pub prefixes: Vec<String>,
    /// Where the next page starts (`None`: this is the last page): the last key listed,
    /// or the common prefix the page ended on.
    pub next_key_marker: Option<String>,
    /// The last version listed; `None` when the page ended on a common prefix.
    pub next_version_id_marker: Option<String>,
}

#[derive(Clone, Debug)]
pub struct VersionList {
    pub versions: Vec<ObjectRecord>,
    pub truncated: bool,
}

pub(crate) fn load_bucket(kv: &dyn KvRead, bucket: &str) -> Result<BucketRecord> {
    match kv.get(Table::Buckets, bucket.as_bytes())? {
        Some(v) => Ok(decode(&v)?),
        None => Err(ObjectError::NoSuchBucket(bucket.to_string())),
    }
}

/// Every version of a key, newest first, visiting each until `visit` returns `false`.
pub(crate) fn scan_versions(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    visit: &mut dyn FnMut(Vec<u8>, ObjectRecord) -> bool,
) -> Result<(), StoreError> {
    let prefix = versions_prefix(bucket, key);
    let end = prefix_end(&prefix);
    let mut from = prefix.clone();
    loop {
        let page = kv.scan(Table::Versions, &from, end.as_deref(), VERSION_SCAN_PAGE)?;
        let n = page.len();
        for (k, v) in page {
            from = k.clone();
            from.push(0);
            if !visit(k, decode(&v)?) {
                return Ok(());
            }
        }
        if n < VERSION_SCAN_PAGE {
            return Ok(());
        }
    }
}

pub(crate) fn find_version(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<(Vec<u8>, ObjectRecord)>> {
    let mut found = None;
    scan_versions(kv, bucket, key, &mut |k, rec| {
        if rec.version_id == version_id {
            found = Some((k, rec));
            false
        } else {
            true
        }
    })?;
    Ok(found)
}

fn newest_version(kv: &dyn KvRead, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
    let mut newest = None;
    scan_versions(kv, bucket, key, &mut |_, rec| {
        newest = Some(rec);
        false
    })?;
    Ok(newest)
}

/// How far this node has seen `bucket/key` change: the `seq` of its newest version
/// (delete markers included) or of its latest remembered removal, whichever is higher;
/// 0 for a key never seen. Replicas compare it to find the newest state of a key.
pub(crate) fn key_state_seq(kv: &dyn KvRead, bucket: &str, key: &str) -> Result<u64> {
    let prefix = versions_prefix(bucket, key);
    let end = prefix_end(&prefix);
    // Versions sort newest first: the first entry is the newest.
    let newest = match kv
        .scan(Table::Versions, &prefix, end.as_deref(), 1)?
        .first()
    {
        Some((_, v)) => decode::<ObjectRecord>(v)?.seq,
        None => 0,
    };
    Ok(newest.max(latest_removal(kv, bucket, key)?))
}

/// The `seq` of the latest removal of any version of `bucket/key` remembered here (0:
/// none).
fn latest_removal(kv: &dyn KvRead, bucket: &str, key: &str) -> Result<u64> {
    let prefix = versions_prefix(bucket, key);
    let end = prefix_end(&prefix);
    let mut removed = 0;
    for (_, v) in kv.scan(
        Table::Tombstones,
        &prefix,
        end.as_deref(),
        MAX_TOMBSTONES_PER_KEY,
    )? {
        removed = removed.max(decode::<Tombstone>(&v)?.seq);
    }
    Ok(removed)
}

/// The latest change of `bucket/key` here: its `seq` (as [`key_state_seq`]) and whether
/// it is a removal (a tombstone at or after the newest version) rather than a version.
pub(crate) fn latest_change(kv: &dyn KvRead, bucket: &str, key: &str) -> Result<(u64, bool)> {
    let newest = newest_version(kv, bucket, key)?.map_or(0, |r| r.seq);
    let removed = latest_removal(kv, bucket, key)?;
    Ok((newest.max(removed), removed > 0 && removed >= newest))
}

/// Prepared copies of one key read to find its newest (a key rarely has more than one
/// write in flight).
const MAX_PENDING_PER_KEY: usize = 64;

/// The newest change of `bucket/key` prepared here above `above` (a version or a
/// removal), as its `seq` and its coordinator's node id.
pub(crate) fn newest_pending(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    above: u64,
) -> Result<Option<(u64, String)>> {
    let prefix = versions_prefix(bucket, key);
    let end = prefix_end(&prefix);
    let mut newest: Option<(u64, String)> = None;
    for (_, v) in kv.scan(Table::Pending, &prefix, end.as_deref(), MAX_PENDING_PER_KEY)? {
        let p: PendingChange = decode(&v)?;
        if p.key() == key && p.seq() > above && newest.as_ref().is_none_or(|(s, _)| p.seq() > *s) {
            newest = Some((p.seq(), p.source));
        }
    }
    Ok(newest)
}

/// The replication of `rec` as stored in `bucket`.
pub(crate) fn version_op(bucket: &str, rec: &ObjectRecord) -> ReplOp {
    ReplOp::Version {
        bucket: bucket.to_string(),
        key: rec.key.clone(),
        version_id: rec.version_id.clone(),
        seq: rec.seq,
    }
}

/// Remove one stored version and everything hanging off it; returns whether GC has work.
pub(crate) fn remove_version_entry(
    kv: &mut dyn KvWrite,
    vkey: &[u8],
    rec: &ObjectRecord,
    now_ms: u64,
) -> Result<bool> {
    kv.delete(Table::Versions, vkey)?;
    kv.delete(Table::Inline, vkey)?;
    count_version(kv, rec, false)?;
    Ok(release_refs(kv, rec.chunks(), now_ms)?)
}

/// Remember that `rec` was removed, so a late copy of it from another node is refused.
pub(crate) fn write_tombstone(
    kv: &mut dyn KvWrite,
    bucket: &str,
    key: &str,
    version_id: &str,
    seq: u64,
    now_ms: u64,
) -> Result<()> {
    let tkey = tombstone_key(bucket, key, version_id);
    let seq = match tombstone_seq(kv, &tkey)? {
        Some(old) => old.max(seq),
        None => seq,
    };
    let t = Tombstone {
        seq,
        removed_ms: now_ms,
    };
    kv.put(Table::Tombstones, &tkey, &encode(&t)?)?;
    Ok(())
}

/// The newest removed `seq` of a version, if it was ever removed here.
pub(crate) fn tombstone_seq(kv: &dyn KvRead, tkey: &[u8]) -> Result<Option<u64>> {
    Ok(match kv.get(Table::Tombstones, tkey)? {
        Some(v) => Some(decode::<Tombstone>(&v)?.seq),
        None => None,
    })
}

/// Point the current-version table at the newest version if it is a live object.
pub(crate) fn refresh_current(kv: &mut dyn KvWrite, bucket: &str, key: &str) -> Result<()> {
    let ok = object_key(bucket, key);
    match newest_version(kv, bucket, key)? {
        Some(rec) if !rec.delete_marker => kv.put(Table::Current, &ok, &encode(&rec)?)?,
        _ => {
            kv.delete(Table::Current, &ok)?;
        }
    }
    Ok(())
}

impl ObjectService {
    pub(crate) fn new_version_id(&self) -> String {
        let rand = bucketdb_store::env::random_bytes::<10>(self.random.as_ref());
        uuid::Builder::from_unix_timestamp_millis(self.clock.now_ms(), &rand)
            .into_uuid()
            .simple()
            .to_string()
    }

    /// Install `rec` as the newest version of its key, following the bucket's versioning
    /// state: unversioned and suspended buckets replace the `null` version, enabled
    /// buckets keep every version. `inline` is the body of small objects. Returns the
    /// installed record and whether chunks became garbage.
    pub(crate) fn install_version(
        &self,
        kv: &mut dyn KvWrite,
        bucket: &BucketRecord,
        mut rec: ObjectRecord,
        inline: Option<&[u8]>,
    ) -> Result<(ObjectRecord, bool)> {
        let b = bucket.name.as_str();
        let key = rec.key.clone();
        let now_us = self.now_seq();
        // One pass over the key's versions finds the newest (for ordering) and, unless
        // versioning is on, the `null` version this write replaces.
        let replaces_null = bucket.versioning != Versioning::Enabled;
        let mut newest_seq = None;
        let mut null_version = None;
        scan_versions(kv, b, &key, &mut |vkey, r| {
            newest_seq.get_or_insert(r.seq);
            if replaces_null && r.version_id == NULL_VERSION {
                null_version = Some((vkey, r));
                return false;
            }
            replaces_null
        })?;
        // Only ever later than a `seq` given in advance (a quorum write's prepare).
        rec.seq = rec.seq.max(now_us).max(newest_seq.map_or(0, |s| s + 1));
        let mut freed = false;
        if replaces_null {
            // Newer than any removal of the `null` version, or replicas would refuse it.
            let removed = tombstone_seq(kv, &tombstone_key(b, &key, NULL_VERSION))?;
            rec.seq = rec.seq.max(removed.map_or(0, |s| s + 1));
            rec.version_id = NULL_VERSION.to_string();
            if let Some((vkey, old)) = null_version {
                freed |= remove_version_entry(kv, &vkey, &old, self.clock.now_ms())?;
            }
        } else if rec.version_id.is_empty() || rec.version_id == NULL_VERSION {
            // (A version id given in advance, by a quorum write's prepare, is kept.)
            rec.version_id = self.new_version_id();
        }
        let vkey = version_key(b, &key, rec.seq);
        kv.put(Table::Versions, &vkey, &encode(&rec)?)?;
        if let Some(data) = inline {
            kv.put(Table::Inline, &vkey, data)?;
        }
        add_refs(kv, rec.chunks())?;
        count_version(kv, &rec, true)?;
        let ok = object_key(b, &key);
        if rec.delete_marker {
            kv.delete(Table::Current, &ok)?;
        } else {
            kv.put(Table::Current, &ok, &encode(&rec)?)?;
        }
        self.replicate_version(kv, b, &rec)?;
        Ok((rec, freed))
    }

    /// Queue `rec` (as stored when it is sent) for the key's other replicas.
    pub(crate) fn replicate_version(
        &self,
        kv: &mut dyn KvWrite,
        bucket: &str,
        rec: &ObjectRecord,
    ) -> Result<()> {
        Ok(self.cluster.enqueue(kv, &version_op(bucket, rec))?)
    }

    /// Permanently remove one version; the current version is recomputed. The removal
    /// is remembered (and replicated) as covering every copy of the version up to its
    /// own `seq`, or up to `at_least_seq` when that is later: an unversioned delete
    /// passes its own time, so a write made elsewhere before the delete, but arriving
    /// here after it, stays deleted, even when this node never saw that write.
    /// Returns the version removed, whether chunks became garbage, and the removal
    /// queued for the replicas (none when nothing was removed).
    pub(crate) fn remove_version(
        &self,
        kv: &mut dyn KvWrite,
        bucket: &str,
        key: &str,
        version_id: &str,
        at_least_seq: u64,
    ) -> Result<(Option<ObjectRecord>, bool, Option<ReplOp>)> {
        let now_ms = self.clock.now_ms();
        let (removed, freed, seq) = match find_version(kv, bucket, key, version_id)? {
            Some((vkey, rec)) => {
                let freed = remove_version_entry(kv, &vkey, &rec, now_ms)?;
                refresh_current(kv, bucket, key)?;
                let seq = rec.seq.max(at_least_seq);
                (Some(rec), freed, seq)
            }
            None if at_least_seq > 0 => (None, false, at_least_seq),
            None => return Ok((None, false, None)),
        };
        write_tombstone(kv, bucket, key, version_id, seq, now_ms)?;
        let op = ReplOp::Removed {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
            seq,
        };
        self.cluster.enqueue(kv, &op)?;
        Ok((removed, freed, Some(op)))
    }

    /// The `seq` for a change of `bucket/key` made now: the clock in microseconds, and
    /// above the key's newest version and any removal of its `null` version, so every
    /// replica orders the change after them.
    pub(crate) fn next_seq(&self, kv: &dyn KvRead, bucket: &str, key: &str) -> Result<u64> {
        let mut newest = None;
        scan_versions(kv, bucket, key, &mut |_, v| {
            newest = Some(v.seq);
            false
        })?;
        let removed = tombstone_seq(kv, &tombstone_key(bucket, key, NULL_VERSION))?;
        Ok(self
            .now_seq()
            .max(newest.map_or(0, |s| s + 1))
            .max(removed.map_or(0, |s| s + 1)))
    }

    /// A `seq` for a change made now: the clock in microseconds.
    pub(crate) fn now_seq(&self) -> u64 {
        self.clock.now_ms().saturating_mul(1000)
    }

    /// A page of every version in a bucket under `prefix`, after the given markers (S3
    /// ListObjectVersions), as this node holds them. With a `delimiter`, keys containing
    /// it after the prefix are rolled up into common prefixes, each one entry toward
    /// `limit`, as in [`ObjectService::list_objects`]. A `key_marker` naming a common
    /// prefix resumes past every key under it (the `version_id_marker` is then ignored).
    pub(crate) fn list_bucket_versions_here(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        limit: usize,
    ) -> Result<VersionPage> {
        let query = VersionsQuery {
            prefix: prefix.to_string(),
            delimiter: delimiter.map(str::to_string),
            key_marker: key_marker.map(str::to_string),
            version_id_marker: version_id_marker.map(str::to_string),
            after_seq: None,
            limit,
        };
        Ok(self.versions_here(bucket, &query, false)?.page)
    }

    /// [`ObjectService::list_bucket_versions_here`], and the `seq` of the version marker
    /// when this node holds it. Without it the page resumes past the marker's key, or
    /// with `keep_marker_key` at its first version (a listing merged from several nodes
    /// then skips the versions up to the marker, known from another node).
    pub(crate) fn versions_here(
        &self,
        bucket: &str,
        q: &VersionsQuery,
        keep_marker_key: bool,
    ) -> Result<NodeVersions> {
        let (prefix, delimiter) = (q.prefix.as_str(), q.delimiter.as_deref());
        let key_marker = q.key_marker.as_deref();
        let version_id_marker = q.version_id_marker.as_deref();
        crate::names::validate_bucket_name(bucket)?;
        check_list_args(&[Some(prefix), delimiter, key_marker, version_id_marker])?;
        let limit = q.limit.clamp(1, MAX_VERSIONS_LISTED);
        let kv = self.cluster.meta().read()?;
        load_bucket(kv.as_ref(), bucket)?;
        let listing = Listing::new(Table::Versions, bucket, prefix, delimiter);
        // The key whose versions the page starts in the middle of, if any.
        let mut prev_key: Option<String> = None;
        let mut resume = None;
        let mut marker_seq = None;
        if let Some(km) = key_marker.filter(|k| !k.is_empty()) {
            let version_marker = version_id_marker
                .filter(|v| !v.is_empty() && listing.common_prefix(km) != Some(km));
            // A merged listing may say where the marker version sorts (its `seq`), for
            // members that lack it or hold another copy of its id.
            let after_version = match (version_marker, q.after_seq) {
                (Some(_), Some(seq)) => Some((version_key(bucket, km, seq), seq)),
                (Some(vm), None) => {
                    find_version(kv.as_ref(), bucket, km, vm)?.map(|(k, r)| (k, r.seq))
                }
                (None, _) => None,
            };
            resume = match after_version {
                Some((vkey, seq)) => {
                    prev_key = Some(km.to_string());
                    marker_seq = Some(seq);
                    Some([vkey.as_slice(), &[0]].concat())
                }
                None if keep_marker_key && version_marker.is_some() => {
                    Some(versions_prefix(bucket, km))
                }
                None => match listing.past(km) {
                    Some(r) => Some(r),
                    None => {
                        return Ok(NodeVersions {
                            marker_seq,
                            ..NodeVersions::default()
                        });
                    }
                },
            };
        }
        let mut page = VersionPage::default();
        let mut firsts = Vec::new();
        // The last entry of the page: a key and version, or a common prefix.
        let mut last: Option<(String, Option<String>)> = None;
        listing.walk(kv.as_ref(), resume.as_deref(), limit, &mut |step| {
            if page.versions.len() + page.prefixes.len() == limit {
                if let Some((key, version)) = last.take() {
                    page.next_key_marker = Some(key);
                    page.next_version_id_marker = version;
                }
                return Ok(false);
            }
            match step {
                Step::Prefix { prefix, first } => {
                    page.prefixes.push(prefix.to_string());
                    firsts.push(decode(first)?);
                    last = Some((prefix.to_string(), None));
                }
                Step::Entry { key, value } => {
                    let rec: ObjectRecord = decode(value)?;
                    let latest = prev_key.as_deref() != Some(key);
                    prev_key = Some(key.to_string());
                    last = Some((key.to_string(), Some(rec.version_id.clone())));
                    page.versions.push((rec, latest));
                }
            }
            Ok(true)
        })?;
        Ok(NodeVersions {
            page,
            marker_seq,
            firsts,
        })
    }

    /// Every version of a key (delete markers included), newest first.
    pub fn list_object_versions(&self, bucket: &str, key: &str) -> Result<VersionList> {
        crate::names::validate_bucket_name(bucket)?;
        crate::names::validate_key(key)?;
        let meta = self.cluster.meta();
        let kv = meta.read()?;
        load_bucket(kv.as_ref(), bucket)?;
        let mut versions = Vec::new();
        let mut truncated = false;
        scan_versions(kv.as_ref(), bucket, key, &mut |_, rec| {
            if versions.len() == MAX_VERSIONS_LISTED {
                truncated = true;
                return false;
            }
            versions.push(rec);
            true
        })?;
        Ok(VersionList {
            versions,
            truncated,
        })
    }
}
