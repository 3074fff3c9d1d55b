//! Lifecycle rules and the pass that applies them: expire current objects by age and
//! prefix, remove noncurrent versions some days after they were superseded, and abort
//! multipart uploads left unfinished. Each pass works in bounded pages and is idempotent,
//! so an interrupted pass simply resumes at the next one.

use std::sync::Arc;

use bucketdb_store::keys::object_key;
use bucketdb_store::keys::{bucket_prefix, prefix_end};
use bucketdb_store::records::{LifecycleRule, ObjectRecord, UploadRecord, decode};
use bucketdb_store::{KvRead, Table};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::names::validate_bucket_name;
use crate::versions::scan_versions;
use std::sync::atomic::Ordering;

pub const MAX_LIFECYCLE_RULES: usize = 1000;
pub const RULE_ID_MAX_CHARS: usize = 255;
/// Entries examined per scan during a pass.
const LIFECYCLE_PAGE: usize = 256;
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LifecycleReport {
    pub expired: u64,
    pub noncurrent_deleted: u64,
    pub uploads_aborted: u64,
}

fn validate_rules(rules: &[LifecycleRule]) -> Result<()> {
    if rules.len() > MAX_LIFECYCLE_RULES {
        return Err(ObjectError::InvalidArgument(format!(
            "at most {MAX_LIFECYCLE_RULES} lifecycle rules are allowed"
        )));
    }
    for (i, r) in rules.iter().enumerate() {
        if r.id.is_empty() || r.id.chars().count() > RULE_ID_MAX_CHARS {
            return Err(ObjectError::InvalidArgument(format!(
                "rule ids must be 1 to {RULE_ID_MAX_CHARS} characters"
            )));
        }
        if rules[..i].iter().any(|o| o.id == r.id) {
            return Err(ObjectError::InvalidArgument(format!(
                "duplicate rule id {:?}",
                r.id
            )));
        }
        let days = [
            r.expiration_days,
            r.noncurrent_days,
            r.abort_incomplete_multipart_days,
        ];
        if days.iter().all(Option::is_none) {
            return Err(ObjectError::InvalidArgument(format!(
                "rule {:?} has no action",
                r.id
            )));
        }
        if days.iter().flatten().any(|d| *d == 0) {
            return Err(ObjectError::InvalidArgument("days must be positive".into()));
        }
        if r.prefix.len() > crate::names::KEY_MAX_BYTES {
            return Err(ObjectError::InvalidArgument(
                "the rule prefix is too long".into(),
            ));
        }
    }
    Ok(())
}

impl ObjectService {
    pub async fn set_lifecycle(
        self: &Arc<Self>,
        bucket: &str,
        rules: Vec<LifecycleRule>,
    ) -> Result<()> {
        validate_bucket_name(bucket)?;
        validate_rules(&rules)?;
        self.update_bucket(bucket.to_string(), move |b| {
            b.lifecycle = rules;
            Ok(())
        })
        .await
    }

    pub fn get_lifecycle(&self, bucket: &str) -> Result<Vec<LifecycleRule>> {
        Ok(self.head_bucket(bucket)?.lifecycle)
    }

    /// Apply every bucket's enabled rules once, as of the service clock's now.
    pub async fn run_lifecycle_once(self: &Arc<Self>) -> Result<LifecycleReport> {
        let now = self.clock.now_ms();
        let mut report = LifecycleReport::default();
        for bucket in self.list_buckets()? {
            for rule in bucket.lifecycle.iter().filter(|r| r.enabled) {
                if let Some(days) = rule.expiration_days {
                    report.expired += self
                        .expire_current(&bucket.name, &rule.prefix, now, days)
                        .await?;
                }
                if let Some(days) = rule.noncurrent_days {
                    report.noncurrent_deleted += self
                        .expire_noncurrent(&bucket.name, &rule.prefix, now, days)
                        .await?;
                }
                if let Some(days) = rule.abort_incomplete_multipart_days {
                    report.uploads_aborted += self
                        .abort_stale_uploads(&bucket.name, &rule.prefix, now, days)
                        .await?;
                }
            }
        }
        let s = &self.stats;
        s.lifecycle_runs.fetch_add(1, Ordering::Relaxed);
        s.lifecycle_expired
            .fetch_add(report.expired, Ordering::Relaxed);
        s.lifecycle_noncurrent_deleted
            .fetch_add(report.noncurrent_deleted, Ordering::Relaxed);
        s.lifecycle_uploads_aborted
            .fetch_add(report.uploads_aborted, Ordering::Relaxed);
        if report != LifecycleReport::default() {
            tracing::info!(
                expired = report.expired,
                noncurrent = report.noncurrent_deleted,
                aborted = report.uploads_aborted,
                "lifecycle pass"
            );
        }
        Ok(report)
    }

    /// Visit, page by page, the entries of `table` under `bucket`/`prefix`.
    fn scan_pages(
        &self,
        table: Table,
        bucket: &str,
        prefix: &str,
        from: &mut Vec<u8>,
    ) -> Result<Option<Vec<bucketdb_store::meta::Entry>>> {
        let start = [bucket_prefix(bucket).as_slice(), prefix.as_bytes()].concat();
        if from.is_empty() {
            *from = start.clone();
        }
        let page = self.cluster.meta().read()?.scan(
            table,
            from,
            prefix_end(&start).as_deref(),
            LIFECYCLE_PAGE,
        )?;
        if let Some((k, _)) = page.last() {
            *from = [k.as_slice(), &[0]].concat();
        }
        Ok((!page.is_empty()).then_some(page))
    }

    async fn expire_current(
        self: &Arc<Self>,
        bucket: &str,
        prefix: &str,
        now: u64,
        days: u32,
    ) -> Result<u64> {
        let cutoff = now.saturating_sub(u64::from(days) * DAY_MS);
        let mut from = Vec::new();
        let mut n = 0;
        while let Some(page) = self.scan_pages(Table::Current, bucket, prefix, &mut from)? {
            for (_, v) in page {
                let rec: ObjectRecord = decode(&v)?;
                // In a cluster each key expires once, on its primary, which replicates
                // the deletion (every replica deleting would mint different markers).
                if rec.created_ms <= cutoff && self.cluster.is_primary(bucket, &rec.key) {
                    // Only if this is still the current version: a newer write wins.
                    let (b, k, seq) = (bucket.to_string(), rec.key.clone(), rec.seq);
                    let still_current = move |kv: &dyn KvRead| -> Result<bool> {
                        Ok(match kv.get(Table::Current, &object_key(&b, &k))? {
                            Some(v) => decode::<ObjectRecord>(&v)?.seq == seq,
                            None => false,
                        })
                    };
                    if self
                        .delete_object_if(bucket, &rec.key, None, still_current)
                        .await?
                        .is_some()
                    {
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    async fn expire_noncurrent(
        self: &Arc<Self>,
        bucket: &str,
        prefix: &str,
        now: u64,
        days: u32,
    ) -> Result<u64> {
        let cutoff = now.saturating_sub(u64::from(days) * DAY_MS);
        let mut from = Vec::new();
        let mut n = 0;
        // Versions arrive newest first per key; a version became noncurrent when the
        // one just newer than it was written.
        let mut newer: Option<ObjectRecord> = None;
        while let Some(page) = self.scan_pages(Table::Versions, bucket, prefix, &mut from)? {
            for (_, v) in page {
                let rec: ObjectRecord = decode(&v)?;
                let superseded_at = newer
                    .as_ref()
                    .filter(|nw| nw.key == rec.key)
                    .map(|nw| nw.created_ms);
                if let Some(t) = superseded_at
                    && t <= cutoff
                    && self.cluster.is_primary(bucket, &rec.key)
                {
                    // Only if it is still this version, still noncurrent, and was
                    // superseded long enough ago (versions may have changed meanwhile).
                    let (b, k, seq) = (bucket.to_string(), rec.key.clone(), rec.seq);
                    let still_noncurrent = move |kv: &dyn KvRead| -> Result<bool> {
                        let mut newer: Option<u64> = None;
                        let mut verdict = false;
                        scan_versions(kv, &b, &k, &mut |_, v| {
                            if v.seq == seq {
                                verdict = newer.is_some_and(|t| t <= cutoff);
                                return false;
                            }
                            newer = Some(v.created_ms);
                            true
                        })?;
                        Ok(verdict)
                    };
                    if self
                        .delete_object_if(bucket, &rec.key, Some(&rec.version_id), still_noncurrent)
                        .await?
                        .is_some()
                    {
                        n += 1;
                    }
                }
                newer = Some(rec);
            }
        }
        Ok(n)
    }

    async fn abort_stale_uploads(
        self: &Arc<Self>,
        bucket: &str,
        prefix: &str,
        now: u64,
        days: u32,
    ) -> Result<u64> {
        let cutoff = now.saturating_sub(u64::from(days) * DAY_MS);
        let mut from = Vec::new();
        let mut n = 0;
        while let Some(page) = self.scan_pages(Table::Uploads, bucket, prefix, &mut from)? {
            for (_, v) in page {
                let up: UploadRecord = decode(&v)?;
                if up.created_ms <= cutoff {
                    self.abort_multipart_upload(bucket, &up.key, &up.upload_id)
                        .await?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
