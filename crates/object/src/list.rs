//! Listing a bucket: an ordered range scan of one table (current objects, or every
//! version) with prefix, delimiter (common prefixes are skipped over with one seek each,
//! not walked) and a marker. `Listing` is that scan, shared by ListObjects and
//! ListObjectVersions; each caller only decides what a page holds and where it ends.

use bucketdb_store::keys::{SEP, bucket_prefix, prefix_end};
use bucketdb_store::records::{ObjectRecord, decode};
use bucketdb_store::{KvRead, Table};
use serde::{Deserialize, Serialize};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::list_cluster::NodeObjects;
use crate::names::validate_bucket_name;
use crate::versions::load_bucket;

/// Most entries (objects plus common prefixes) in one page.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Entries read per scan when a delimiter is given; small, because each common prefix
/// restarts the scan past it.
const LIST_SCAN_BATCH: usize = 64;
/// Longest prefix, delimiter or marker accepted.
const LIST_ARG_MAX_BYTES: usize = 1024;
/// Bytes after the object key in a version key: `NUL` and the 8-byte sequence number.
const VERSION_KEY_SUFFIX: usize = 1 + 8;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Return entries after this key or common prefix.
    pub start_after: Option<String>,
    /// 1..=MAX_LIST_LIMIT (0 means the maximum).
    pub limit: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListPage {
    pub objects: Vec<ObjectRecord>,
    pub prefixes: Vec<String>,
    /// Pass as `start_after` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Refuse listing arguments (prefix, delimiter, markers) longer than 1024 bytes.
pub(crate) fn check_list_args(args: &[Option<&str>]) -> Result<()> {
    if args.iter().flatten().any(|a| a.len() > LIST_ARG_MAX_BYTES) {
        return Err(ObjectError::InvalidArgument(
            "prefix, delimiter and markers are limited to 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// What a listing walk finds, in key order.
pub(crate) enum Step<'a> {
    /// A table entry (an object, or one version) of a key not rolled up into a common
    /// prefix.
    Entry { key: &'a str, value: &'a [u8] },
    /// A common prefix, found once, with the first table entry under it: the walk goes on
    /// past every key under it.
    Prefix { prefix: &'a str, first: &'a [u8] },
}

/// The keys of one bucket under a prefix, in one table whose keys are `bucket NUL key`
/// (current objects) or `bucket NUL key NUL !seq` (versions), rolled up into common
/// prefixes at a delimiter.
pub(crate) struct Listing<'q> {
    table: Table,
    base: Vec<u8>,
    prefix: &'q str,
    delimiter: Option<&'q str>,
}

impl<'q> Listing<'q> {
    /// An empty delimiter means none.
    pub(crate) fn new(
        table: Table,
        bucket: &str,
        prefix: &'q str,
        delimiter: Option<&'q str>,
    ) -> Self {
        Listing {
            table,
            base: bucket_prefix(bucket),
            prefix,
            delimiter: delimiter.filter(|d| !d.is_empty()),
        }
    }

    fn full(&self, key: &str) -> Vec<u8> {
        [self.base.as_slice(), key.as_bytes()].concat()
    }

    /// The common prefix `key` rolls up into, if any.
    pub(crate) fn common_prefix<'k>(&self, key: &'k str) -> Option<&'k str> {
        let d = self.delimiter?;
        let rest = key.strip_prefix(self.prefix)?;
        rest.find(d)
            .map(|i| &key[..self.prefix.len() + i + d.len()])
    }

    /// The object key of a table key.
    fn key_of<'k>(&self, table_key: &'k [u8]) -> Result<&'k str> {
        let suffix = match self.table {
            Table::Versions => VERSION_KEY_SUFFIX,
            _ => 0,
        };
        let key = table_key
            .get(self.base.len()..table_key.len().saturating_sub(suffix))
            .ok_or_else(|| ObjectError::Internal("malformed listing key".into()))?;
        std::str::from_utf8(key).map_err(|e| ObjectError::Internal(e.to_string()))
    }

    /// Where a walk resumes after `marker`: past every key under it if it names a
    /// common prefix, otherwise past the key itself (and all its versions). `None`:
    /// nothing can follow.
    pub(crate) fn past(&self, marker: &str) -> Option<Vec<u8>> {
        if self.common_prefix(marker) == Some(marker) {
            prefix_end(&self.full(marker))
        } else {
            prefix_end(&[self.full(marker).as_slice(), &[SEP]].concat())
        }
    }

    /// Visit, in key order from table key `resume` (or from the start of the prefix),
    /// every entry of a key that rolls up into no common prefix and every common prefix
    /// once, until `visit` returns `false`. `limit` is the page size, to size the scans.
    pub(crate) fn walk(
        &self,
        kv: &dyn KvRead,
        resume: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(Step<'_>) -> Result<bool>,
    ) -> Result<()> {
        let start = self.full(self.prefix);
        let end = prefix_end(&start);
        let mut from = match resume {
            Some(r) if r > start.as_slice() => r.to_vec(),
            _ => start,
        };
        // Without a delimiter nothing is skipped: one scan fills the page.
        let want = match self.delimiter {
            Some(_) => LIST_SCAN_BATCH.min(limit + 1),
            None => limit + 1,
        };
        'scan: loop {
            let batch = kv.scan(self.table, &from, end.as_deref(), want)?;
            for (k, v) in &batch {
                let key = self.key_of(k)?;
                if let Some(cp) = self.common_prefix(key) {
                    let next = prefix_end(&self.full(cp));
                    if !visit(Step::Prefix {
                        prefix: cp,
                        first: v,
                    })? {
                        return Ok(());
                    }
                    match next {
                        Some(next) => {
                            from = next;
                            continue 'scan;
                        }
                        None => return Ok(()),
                    }
                }
                if !visit(Step::Entry { key, value: v })? {
                    return Ok(());
                }
                from = [k.as_slice(), &[0]].concat();
            }
            if batch.len() < want {
                return Ok(());
            }
        }
    }
}

impl ObjectService {
    /// A page of the bucket's current objects as this node holds them.
    pub(crate) fn list_objects_here(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        Ok(self.objects_here(bucket, q)?.page)
    }

    /// [`ObjectService::list_objects_here`], and the first object under each common
    /// prefix of the page (a merged listing checks that one still exists elsewhere).
    pub(crate) fn objects_here(&self, bucket: &str, q: &ListQuery) -> Result<NodeObjects> {
        validate_bucket_name(bucket)?;
        check_list_args(&[
            Some(q.prefix.as_str()),
            q.delimiter.as_deref(),
            q.start_after.as_deref(),
        ])?;
        let limit = if q.limit == 0 {
            MAX_LIST_LIMIT
        } else {
            q.limit.min(MAX_LIST_LIMIT)
        };
        let kv = self.cluster.meta().read()?;
        load_bucket(kv.as_ref(), bucket)?;

        let listing = Listing::new(Table::Current, bucket, &q.prefix, q.delimiter.as_deref());
        let resume = match &q.start_after {
            Some(after) => match listing.past(after) {
                Some(r) => Some(r),
                None => return Ok(NodeObjects::default()),
            },
            None => None,
        };
        let mut page = ListPage::default();
        let mut firsts = Vec::new();
        let mut last: Option<String> = None;
        listing.walk(kv.as_ref(), resume.as_deref(), limit, &mut |step| {
            if page.objects.len() + page.prefixes.len() == limit {
                page.next_cursor = last.take();
                return Ok(false);
            }
            match step {
                Step::Prefix { prefix, first } => {
                    page.prefixes.push(prefix.to_string());
                    firsts.push(decode(first)?);
                    last = Some(prefix.to_string());
                }
                Step::Entry { key, value } => {
                    page.objects.push(decode(value)?);
                    last = Some(key.to_string());
                }
            }
            Ok(true)
        })?;
        Ok(NodeObjects { page, firsts })
    }
}
