//! Optional bucket settings: the public-read switch (canned ACLs) and bucket tags.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Api;
use super::error::IntoS3;

/// The group every anonymous requester belongs to, in ACL grants.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

impl S3Api {
    /// Canned ACLs only: `private` and `public-read` (anyone may list and read).
    pub(super) async fn op_put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let i = req.input;
        let public = match i.acl.as_ref().map(|a| a.as_str()) {
            Some(BucketCannedACL::PRIVATE) => false,
            Some(BucketCannedACL::PUBLIC_READ) => true,
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "only the canned ACLs private and public-read are supported"
                ));
            }
        };
        self.svc
            .update_bucket_config(&i.bucket, move |c| {
                c.public_read = public;
                Ok(())
            })
            .await
            .s3()?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    pub(super) async fn op_get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let config = self.svc.bucket_config(&req.input.bucket).s3()?;
        let owner = super::owner();
        let mut grants = vec![Grant {
            grantee: Some(Grantee {
                type_: Type::from_static(Type::CANONICAL_USER),
                id: owner.id.clone(),
                display_name: owner.display_name.clone(),
                email_address: None,
                uri: None,
            }),
            permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
        }];
        if config.public_read {
            grants.push(Grant {
                grantee: Some(Grantee {
                    type_: Type::from_static(Type::GROUP),
                    uri: Some(ALL_USERS.into()),
                    id: None,
                    display_name: None,
                    email_address: None,
                }),
                permission: Some(Permission::from_static(Permission::READ)),
            });
        }
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants),
            owner: Some(owner),
        }))
    }

    pub(super) async fn op_get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let config = self.svc.bucket_config(&req.input.bucket).s3()?;
        if config.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: super::objects::tags_out(config.tags),
        }))
    }

    pub(super) async fn op_put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let tags = super::objects::tags_in(req.input.tagging);
        self.svc
            .update_bucket_config(&req.input.bucket, move |c| {
                c.tags = tags;
                Ok(())
            })
            .await
            .s3()?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(super) async fn op_delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.svc
            .update_bucket_config(&req.input.bucket, |c| {
                c.tags.clear();
                Ok(())
            })
            .await
            .s3()?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }
}
