//! Listing the current objects of a bucket: an ordered range scan with prefix, delimiter
//! (common prefixes are skipped over with one seek each, not walked) and a cursor.

use bucketdb_store::Table;
use bucketdb_store::keys::{bucket_prefix, prefix_end};
use bucketdb_store::records::{ObjectRecord, decode};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::validate_bucket_name;
use crate::versions::load_bucket;

/// Most entries (objects plus common prefixes) in one page.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Entries read per scan; small, because each common prefix restarts the scan past it.
const LIST_SCAN_BATCH: usize = 64;
/// Longest prefix, delimiter or cursor accepted.
const LIST_ARG_MAX_BYTES: usize = 1024;

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Return entries after this key or common prefix.
    pub start_after: Option<String>,
    /// 1..=MAX_LIST_LIMIT (0 means the maximum).
    pub limit: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectRecord>,
    pub prefixes: Vec<String>,
    /// Pass as `start_after` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl ObjectService {
    pub fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        validate_bucket_name(bucket)?;
        let too_long = |s: &str| s.len() > LIST_ARG_MAX_BYTES;
        if too_long(&q.prefix)
            || q.delimiter.as_deref().is_some_and(too_long)
            || q.start_after.as_deref().is_some_and(too_long)
        {
            return Err(ObjectError::InvalidArgument(
                "prefix, delimiter and cursor are limited to 1024 bytes".into(),
            ));
        }
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        let limit = if q.limit == 0 {
            MAX_LIST_LIMIT
        } else {
            q.limit.min(MAX_LIST_LIMIT)
        };
        let kv = self.cluster.meta().read()?;
        load_bucket(kv.as_ref(), bucket)?;

        let base = bucket_prefix(bucket);
        let full = |k: &str| [base.as_slice(), k.as_bytes()].concat();
        let scan_prefix = full(&q.prefix);
        let end = prefix_end(&scan_prefix);
        // The rolled-up common prefix a key falls under, if any.
        let common_prefix = |key: &str| -> Option<String> {
            let d = delimiter?;
            let rest = key.strip_prefix(q.prefix.as_str())?;
            rest.find(d)
                .map(|i| key[..q.prefix.len() + i + d.len()].to_string())
        };
        let mut from = scan_prefix.clone();
        if let Some(after) = &q.start_after {
            // Skip everything under a common prefix the cursor names.
            let skip = match common_prefix(after) {
                Some(cp) if &cp == after => prefix_end(&full(after)),
                _ => Some([full(after).as_slice(), &[0]].concat()),
            };
            match skip {
                Some(s) if s > from => from = s,
                Some(_) => {}
                None => return Ok(ListPage::default()),
            }
        }

        let mut page = ListPage::default();
        let mut last: Option<String> = None;
        'scan: loop {
            let want = LIST_SCAN_BATCH.min(limit + 1);
            let batch = kv.scan(Table::Current, &from, end.as_deref(), want)?;
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            for (k, v) in batch {
                let key = std::str::from_utf8(&k[base.len()..])
                    .map_err(|e| ObjectError::Internal(e.to_string()))?
                    .to_string();
                if page.objects.len() + page.prefixes.len() == limit {
                    page.next_cursor = last;
                    return Ok(page);
                }
                if let Some(cp) = common_prefix(&key) {
                    match prefix_end(&full(&cp)) {
                        Some(next) => from = next,
                        None => {
                            page.prefixes.push(cp);
                            break 'scan;
                        }
                    }
                    page.prefixes.push(cp.clone());
                    last = Some(cp);
                    continue 'scan;
                }
                from = [k.as_slice(), &[0]].concat();
                page.objects.push(decode(&v)?);
                last = Some(key);
            }
            if n < want {
                break;
            }
        }
        Ok(page)
    }
}
