//! The S3 API (port 8080). s3s parses requests, checks SigV4 (headers, presigned URLs,
//! `aws-chunked` bodies with checksum trailers) and writes S3 XML; [`S3Api`] maps each
//! operation onto the object service. One file per family of operations.

mod bucket_config;
mod buckets;
mod checksum;
mod convert;
mod cors;
mod error;
mod list;
mod multipart;
mod objects;

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bucketdb_object::ObjectService;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use crate::ApiState;

/// The owner shown in listings: the single root account.
fn owner() -> Owner {
    Owner {
        display_name: Some("bucketdb".into()),
        id: Some("bucketdb".into()),
    }
}

/// The S3 operations BucketDB implements; every other operation answers NotImplemented.
pub struct S3Api {
    svc: Arc<ObjectService>,
}

macro_rules! delegate {
    ($($op:ident => $impl:ident : $in:ty => $out:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for S3Api {
            $(
                async fn $op(&self, req: S3Request<$in>) -> S3Result<S3Response<$out>> {
                    self.$impl(req).await
                }
            )*
        }
    };
}

delegate! {
    list_buckets => op_list_buckets: ListBucketsInput => ListBucketsOutput;
    create_bucket => op_create_bucket: CreateBucketInput => CreateBucketOutput;
    head_bucket => op_head_bucket: HeadBucketInput => HeadBucketOutput;
    delete_bucket => op_delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    get_bucket_location => op_get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    get_bucket_versioning => op_get_bucket_versioning: GetBucketVersioningInput => GetBucketVersioningOutput;
    put_bucket_versioning => op_put_bucket_versioning: PutBucketVersioningInput => PutBucketVersioningOutput;
    get_bucket_lifecycle_configuration => op_get_bucket_lifecycle_configuration:
        GetBucketLifecycleConfigurationInput => GetBucketLifecycleConfigurationOutput;
    put_bucket_lifecycle_configuration => op_put_bucket_lifecycle_configuration:
        PutBucketLifecycleConfigurationInput => PutBucketLifecycleConfigurationOutput;
    delete_bucket_lifecycle => op_delete_bucket_lifecycle: DeleteBucketLifecycleInput => DeleteBucketLifecycleOutput;
    put_object => op_put_object: PutObjectInput => PutObjectOutput;
    get_object => op_get_object: GetObjectInput => GetObjectOutput;
    head_object => op_head_object: HeadObjectInput => HeadObjectOutput;
    delete_object => op_delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects => op_delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    copy_object => op_copy_object: CopyObjectInput => CopyObjectOutput;
    get_object_tagging => op_get_object_tagging: GetObjectTaggingInput => GetObjectTaggingOutput;
    put_object_tagging => op_put_object_tagging: PutObjectTaggingInput => PutObjectTaggingOutput;
    delete_object_tagging => op_delete_object_tagging: DeleteObjectTaggingInput => DeleteObjectTaggingOutput;
    list_objects => op_list_objects: ListObjectsInput => ListObjectsOutput;
    list_objects_v2 => op_list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
    list_object_versions => op_list_object_versions: ListObjectVersionsInput => ListObjectVersionsOutput;
    create_multipart_upload => op_create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload_part => op_upload_part: UploadPartInput => UploadPartOutput;
    complete_multipart_upload => op_complete_multipart_upload:
        CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload => op_abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    list_parts => op_list_parts: ListPartsInput => ListPartsOutput;
    list_multipart_uploads => op_list_multipart_uploads: ListMultipartUploadsInput => ListMultipartUploadsOutput;
    upload_part_copy => op_upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
    put_bucket_acl => op_put_bucket_acl: PutBucketAclInput => PutBucketAclOutput;
    get_bucket_acl => op_get_bucket_acl: GetBucketAclInput => GetBucketAclOutput;
    get_bucket_tagging => op_get_bucket_tagging: GetBucketTaggingInput => GetBucketTaggingOutput;
    put_bucket_tagging => op_put_bucket_tagging: PutBucketTaggingInput => PutBucketTaggingOutput;
    delete_bucket_tagging => op_delete_bucket_tagging: DeleteBucketTaggingInput => DeleteBucketTaggingOutput;
    get_bucket_cors => op_get_bucket_cors: GetBucketCorsInput => GetBucketCorsOutput;
    put_bucket_cors => op_put_bucket_cors: PutBucketCorsInput => PutBucketCorsOutput;
    delete_bucket_cors => op_delete_bucket_cors: DeleteBucketCorsInput => DeleteBucketCorsOutput;
}

/// Who may do what: the root credentials anything; anonymous requesters only read
/// (GET/HEAD objects, list) buckets switched to public-read.
struct Access {
    svc: Arc<ObjectService>,
}

/// Operations anonymous requesters may perform on a public-read bucket.
const PUBLIC_READ_OPS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "ListObjects",
    "ListObjectsV2",
    "HeadBucket",
];

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() {
            return Ok(());
        }
        let bucket = match cx.s3_path() {
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket.to_string(),
            S3Path::Root => {
                return Err(s3s::s3_error!(
                    AccessDenied,
                    "Anonymous access is not allowed"
                ));
            }
        };
        let readable = PUBLIC_READ_OPS.contains(&cx.s3_op().name())
            && self.svc.bucket_config(&bucket).is_ok_and(|c| c.public_read);
        if readable {
            Ok(())
        } else {
            Err(s3s::s3_error!(
                AccessDenied,
                "Anonymous access is not allowed"
            ))
        }
    }
}

/// Longest lifetime of a presigned URL (7 days, as S3).
pub const PRESIGNED_EXPIRY_MAX_SECS: u64 = 7 * 24 * 60 * 60;

/// An S3 XML error response.
fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{}</RequestId></Error>",
        crate::observe::current_request_id()
    );
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/xml")],
        body,
    )
        .into_response()
}

/// What s3s would accept but BucketDB refuses: Signature Version 2 (header or query) and
/// presigned URLs valid for more than seven days.
async fn refuse_unsupported_auth(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let v2_header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "));
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    if v2_header || (has("AWSAccessKeyId") && has("Signature")) {
        return xml_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Signature Version 2 is not supported; sign requests with Signature Version 4",
        );
    }
    if let Some((_, expires)) = query.iter().find(|(k, _)| k == "X-Amz-Expires") {
        match expires.parse::<u64>() {
            Ok(secs) if secs <= PRESIGNED_EXPIRY_MAX_SECS => {}
            _ => {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "AuthorizationQueryParametersError",
                    "X-Amz-Expires must be a number of seconds from 0 to 604800",
                );
            }
        }
    }
    next.run(req).await
}

/// The root credentials. An unknown access key is S3's `InvalidAccessKeyId` (s3s's
/// `SimpleAuth` would answer `NotSignedUp`, which S3 clients do not expect).
struct RootAuth {
    access_key: String,
    secret_key: SecretKey,
}

#[async_trait::async_trait]
impl S3Auth for RootAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

async fn http_error(err: s3s::HttpError) -> Response {
    tracing::error!(error = ?err, "S3 request could not be processed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Settings of the S3 endpoint.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// Base domain for virtual-host-style requests (`bucket.DOMAIN`); path style always works.
    pub domain: Option<String>,
}

/// The S3 application (no socket).
pub fn s3_router(state: Arc<ApiState>, settings: &S3Settings) -> Result<Router, String> {
    let mut builder = S3ServiceBuilder::new(S3Api {
        svc: state.service.clone(),
    });
    builder.set_access(Access {
        svc: state.service.clone(),
    });
    builder.set_auth(RootAuth {
        access_key: state.credentials.access_key.clone(),
        secret_key: SecretKey::from(state.credentials.secret_key.clone()),
    });
    let mut cors_state = cors::CorsState {
        svc: state.service.clone(),
        host: None,
    };
    if let Some(domain) = &settings.domain {
        let host = || s3s::host::SingleDomain::new(domain).map_err(|e| format!("s3_domain: {e}"));
        builder.set_host(host()?);
        cors_state.host = Some(Arc::new(host()?));
    }
    let service = HandleError::new(builder.build(), http_error);
    Ok(Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(refuse_unsupported_auth))
        .layer(axum::middleware::from_fn_with_state(cors_state, cors::cors))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::observe::observe_s3,
        )))
}
