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
        let days = |d: Option<i32>| -> S3Result<Option<u32>> {
            d.map(|d| {
                u32::try_from(d)
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| s3_error!(InvalidArgument, "Days must be a positive integer"))
            })
            .transpose()
        };
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.into_iter().enumerate() {
            if r.transitions.is_some() || r.noncurrent_version_transitions.is_some() {
                return Err(s3_error!(
                    NotImplemented,
                    "storage-class transitions are not supported"
                ));
            }
            if r.expiration.as_ref().is_some_and(|e| e.date.is_some()) {
                return Err(s3_error!(
                    NotImplemented,
                    "expiration by date is not supported; use Days"
                ));
            }
            let prefix = r
                .filter
                .as_ref()
                .and_then(|f| f.prefix.clone())
                .or(r.prefix)
                .unwrap_or_default();
            rules.push(LifecycleRule {
                id: r.id.unwrap_or_else(|| format!("rule-{}", i + 1)),
                enabled: r.status.as_str() == ExpirationStatus::ENABLED,
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
