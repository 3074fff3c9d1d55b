//! Bucket operations: list, create, head, delete, location, versioning, lifecycle.

use bucketdb_object::{LifecycleRule, Versioning};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Api;
use super::convert::timestamp;
use super::error::IntoS3;

impl S3Api {
    pub(super) async fn op_list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .svc
            .list_buckets()
            .s3()?
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(super::owner()),
            ..Default::default()
        }))
    }

    pub(super) async fn op_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let b = self.svc.create_bucket(&req.input.bucket).await.s3()?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", b.name)),
        }))
    }

    pub(super) async fn op_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.svc.head_bucket(&req.input.bucket).s3()?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn op_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.svc.delete_bucket(&req.input.bucket).await.s3()?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn op_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.svc.head_bucket(&req.input.bucket).s3()?;
        // us-east-1, S3's default, is reported as an empty constraint.
        let location_constraint = self
            .region
            .as_deref()
            .filter(|r| *r != super::DEFAULT_REGION)
            .map(|r| BucketLocationConstraint::from(r.to_string()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    pub(super) async fn op_get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let b = self.svc.head_bucket(&req.input.bucket).s3()?;
        let status = match b.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    pub(super) async fn op_put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let state = match req
            .input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "Status must be Enabled or Suspended"
                ));
            }
        };
        self.svc
            .set_versioning(&req.input.bucket, state)
            .await
            .s3()?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(super) async fn op_get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let rules = self.svc.get_lifecycle(&req.input.bucket).s3()?;
        if rules.is_empty() {
            return Err(s3_error!(NoSuchLifecycleConfiguration));
        }
        let rules = rules
            .into_iter()
            .map(|r| s3s::dto::LifecycleRule {
                id: Some(r.id),
                status: ExpirationStatus::from_static(if r.enabled {
                    ExpirationStatus::ENABLED
                } else {
                    ExpirationStatus::DISABLED
                }),
                filter: Some(LifecycleRuleFilter {
                    prefix: Some(r.prefix),
                    ..Default::default()
                }),
                expiration: r.expiration_days.map(|d| LifecycleExpiration {
                    days: Some(d as i32),
                    ..Default::default()
                }),
                noncurrent_version_expiration: r.noncurrent_days.map(|d| {
                    NoncurrentVersionExpiration {
                        noncurrent_days: Some(d as i32),
                        newer_noncurrent_versions: None,
                    }
                }),
                abort_incomplete_multipart_upload: r.abort_incomplete_multipart_days.map(|d| {
                    AbortIncompleteMultipartUpload {
                        days_after_initiation: Some(d as i32),
                    }
                }),
                noncurrent_version_transitions: None,
                prefix: None,
                transitions: None,
            })
            .collect();
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules),
            ..Default::default()
        }))
    }

    pub(super) async fn op_put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let config = req
            .input
            .lifecycle_configuration
            .ok_or_else(|| s3_error!(MalformedXML, "missing LifecycleConfiguration"))?;
        let rules = lifecycle_rules_in(config)?;
        self.svc
            .set_lifecycle(&req.input.bucket, rules)
            .await
            .s3()?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn op_delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.svc
            .set_lifecycle(&req.input.bucket, Vec::new())
            .await
            .s3()?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
    }
}

/// Most rules one lifecycle configuration may hold (as S3).
pub const MAX_LIFECYCLE_RULES: usize = 1000;
/// Longest lifecycle rule ID (as S3).
pub const LIFECYCLE_ID_MAX_BYTES: usize = 255;

/// The rules of a lifecycle configuration, as the object service applies them. Anything
/// BucketDB cannot honour exactly is refused rather than ignored: a filter by tag or size,
/// or a count of noncurrent versions to keep, left out would make a rule delete more
/// than its author meant.
fn lifecycle_rules_in(config: BucketLifecycleConfiguration) -> S3Result<Vec<LifecycleRule>> {
    if config.rules.len() > MAX_LIFECYCLE_RULES {
        return Err(s3_error!(
            InvalidRequest,
            "a lifecycle configuration holds at most 1000 rules"
        ));
    }
    let days = |d: Option<i32>| -> S3Result<Option<u32>> {
        d.map(|d| {
            u32::try_from(d)
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| s3_error!(InvalidArgument, "Days must be a positive integer"))
        })
        .transpose()
    };
    let mut rules: Vec<LifecycleRule> = Vec::with_capacity(config.rules.len());
    for (i, r) in config.rules.into_iter().enumerate() {
        if r.transitions.is_some() || r.noncurrent_version_transitions.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "storage-class transitions are not supported"
            ));
        }
        if let Some(e) = &r.expiration {
            if e.date.is_some() {
                return Err(s3_error!(
                    NotImplemented,
                    "expiration by date is not supported; use Days"
                ));
            }
            if e.expired_object_delete_marker == Some(true) {
                return Err(s3_error!(
                    NotImplemented,
                    "ExpiredObjectDeleteMarker is not supported"
                ));
            }
        }
        if r.noncurrent_version_expiration
            .as_ref()
            .is_some_and(|n| n.newer_noncurrent_versions.is_some())
        {
            return Err(s3_error!(
                NotImplemented,
                "NewerNoncurrentVersions is not supported"
            ));
        }
        if let Some(f) = &r.filter
            && (f.and.is_some()
                || f.tag.is_some()
                || f.object_size_greater_than.is_some()
                || f.object_size_less_than.is_some())
        {
            return Err(s3_error!(
                NotImplemented,
                "lifecycle filters by tag or object size are not supported; filter by Prefix"
            ));
        }
        let id = r.id.unwrap_or_else(|| format!("rule-{}", i + 1));
        if id.len() > LIFECYCLE_ID_MAX_BYTES {
            return Err(s3_error!(
                InvalidArgument,
                "a lifecycle rule ID is at most 255 characters"
            ));
        }
        if rules.iter().any(|other| other.id == id) {
            return Err(s3_error!(
                InvalidArgument,
                "Rule ID must be unique. Found same ID for more than one rule"
            ));
        }
        let status = r.status.as_str();
        if status != ExpirationStatus::ENABLED && status != ExpirationStatus::DISABLED {
            return Err(s3_error!(
                MalformedXML,
                "Status must be Enabled or Disabled"
            ));
        }
        let prefix = r
            .filter
            .and_then(|f| f.prefix)
            .or(r.prefix)
            .unwrap_or_default();
        rules.push(LifecycleRule {
            id,
            enabled: status == ExpirationStatus::ENABLED,
            prefix,
            expiration_days: days(r.expiration.and_then(|e| e.days))?,
            noncurrent_days: days(
                r.noncurrent_version_expiration
                    .and_then(|e| e.noncurrent_days),
            )?,
            abort_incomplete_multipart_days: days(
                r.abort_incomplete_multipart_upload
                    .and_then(|a| a.days_after_initiation),
            )?,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn days() -> impl Strategy<Value = Option<i32>> {
        prop_oneof![
            Just(None),
            (-3i32..5).prop_map(Some),
            any::<i32>().prop_map(Some)
        ]
    }

    /// A lifecycle rule with any mix of the fields S3 defines, supported or not.
    fn any_rule() -> impl Strategy<Value = s3s::dto::LifecycleRule> {
        (
            (
                proptest::option::of(".{0,300}"),
                "Enabled|Disabled|enabled|[A-Za-z]{0,8}",
            ),
            (
                proptest::option::of(".{0,20}"),
                proptest::option::of(".{0,20}"),
            ),
            (days(), days(), days()),
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (id, status),
                    (filter_prefix, old_prefix),
                    (exp, nc, abort),
                    (tag, size, newer, marker),
                )| {
                    s3s::dto::LifecycleRule {
                        id,
                        status: ExpirationStatus::from(status),
                        filter: Some(LifecycleRuleFilter {
                            prefix: filter_prefix,
                            tag: tag.then(|| Tag {
                                key: Some("k".into()),
                                value: Some("v".into()),
                            }),
                            object_size_greater_than: size.then_some(10),
                            ..Default::default()
                        }),
                        prefix: old_prefix,
                        expiration: (exp.is_some() || marker).then(|| LifecycleExpiration {
                            days: exp,
                            expired_object_delete_marker: marker.then_some(true),
                            ..Default::default()
                        }),
                        noncurrent_version_expiration: nc.map(|d| NoncurrentVersionExpiration {
                            noncurrent_days: Some(d),
                            newer_noncurrent_versions: newer.then_some(2),
                        }),
                        abort_incomplete_multipart_upload: abort.map(|d| {
                            AbortIncompleteMultipartUpload {
                                days_after_initiation: Some(d),
                            }
                        }),
                        noncurrent_version_transitions: None,
                        transitions: None,
                    }
                },
            )
    }

    proptest! {
        /// Whatever the configuration, the conversion answers (never panics), and what it
        /// accepts is exactly what was asked: positive days, the given prefix, no field
        /// it would have to ignore.
        #[test]
        fn lifecycle_rules_are_accepted_only_as_written(rules in proptest::collection::vec(any_rule(), 0..4)) {
            let config = BucketLifecycleConfiguration { rules: rules.clone() };
            match lifecycle_rules_in(config) {
                Ok(out) => {
                    prop_assert_eq!(out.len(), rules.len());
                    for (got, asked) in out.iter().zip(&rules) {
                        let f = asked.filter.as_ref();
                        prop_assert!(f.is_none_or(|f| f.tag.is_none() && f.object_size_greater_than.is_none()));
                        prop_assert!(asked.expiration.as_ref().is_none_or(|e| e.expired_object_delete_marker.is_none()));
                        prop_assert!(asked.noncurrent_version_expiration.as_ref().is_none_or(|n| n.newer_noncurrent_versions.is_none()));
                        let want_prefix = f.and_then(|f| f.prefix.clone()).or(asked.prefix.clone()).unwrap_or_default();
                        prop_assert_eq!(&got.prefix, &want_prefix);
                        prop_assert_eq!(got.enabled, asked.status.as_str() == "Enabled");
                        let positive = |d: Option<u32>, a: Option<i32>| d.map(|d| d as i64) == a.map(i64::from) && d.is_none_or(|d| d > 0);
                        prop_assert!(positive(got.expiration_days, asked.expiration.as_ref().and_then(|e| e.days)));
                        prop_assert!(positive(got.noncurrent_days, asked.noncurrent_version_expiration.as_ref().and_then(|n| n.noncurrent_days)));
                        prop_assert!(positive(got.abort_incomplete_multipart_days, asked.abort_incomplete_multipart_upload.as_ref().and_then(|a| a.days_after_initiation)));
                        prop_assert!(got.id.len() <= LIFECYCLE_ID_MAX_BYTES);
                    }
                }
                Err(e) => {
                    let code = e.code().as_str().to_string();
                    prop_assert!(["InvalidArgument", "NotImplemented", "MalformedXML", "InvalidRequest"].contains(&code.as_str()), "{}", code);
                }
            }
        }
    }

    #[test]
    fn a_tag_filter_is_refused_not_widened_to_every_object() {
        let rule = s3s::dto::LifecycleRule {
            id: Some("temp".into()),
            status: ExpirationStatus::from_static(ExpirationStatus::ENABLED),
            filter: Some(LifecycleRuleFilter {
                tag: Some(Tag {
                    key: Some("temp".into()),
                    value: Some("1".into()),
                }),
                ..Default::default()
            }),
            expiration: Some(LifecycleExpiration {
                days: Some(1),
                ..Default::default()
            }),
            abort_incomplete_multipart_upload: None,
            noncurrent_version_expiration: None,
            noncurrent_version_transitions: None,
            prefix: None,
            transitions: None,
        };
        let config = BucketLifecycleConfiguration { rules: vec![rule] };
        let e = lifecycle_rules_in(config).unwrap_err();
        assert_eq!(e.code().as_str(), "NotImplemented");
    }
}
