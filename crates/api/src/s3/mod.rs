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
    /// The configured region (`--s3-region`), if any.
    region: Option<String>,
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
        let bucket = match cx.s3_path() {
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(&**bucket),
            S3Path::Root => None,
        };
        crate::observe::note_s3_operation(cx.s3_op().name(), bucket);
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
    xml_error_with(status, code, message, &[])
}

/// An S3 XML error response with extra elements (e.g. `<Region>`).
fn xml_error_with(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> Response {
    use quick_xml::escape::escape;
    let extra: String = extra
        .iter()
        .map(|(name, value)| format!("<{name}>{}</{name}>", escape(*value)))
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>{extra}<RequestId>{}</RequestId></Error>",
        escape(message),
        crate::observe::current_request_id()
    );
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/xml")],
        body,
    )
        .into_response()
}

/// The region a request must be signed for when none is configured and the client's
/// own cannot be used (S3 region names are lower case).
const DEFAULT_REGION: &str = "us-east-1";

/// What the auth screen checks before s3s verifies signatures.
#[derive(Clone)]
struct AuthScreen {
    /// The only region requests may be signed for (`--s3-region`); any when `None`.
    region: Option<Arc<str>>,
}

impl AuthScreen {
    /// The region a request signed for `signed` must use instead, if it is not
    /// acceptable: another region than the configured one, or not a region name at all
    /// (s3cmd signs for `US` by default, and retries with the region this names).
    fn expected_region(&self, signed: &str) -> Option<&str> {
        match &self.region {
            Some(r) => (signed != &**r).then_some(&**r),
            None => {
                let valid = !signed.is_empty()
                    && signed
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                (!valid).then_some(DEFAULT_REGION)
            }
        }
    }
}

/// The region of a SigV4 credential scope `KEY/DATE/REGION/SERVICE/aws4_request`.
fn scope_region(credential: &str) -> Option<&str> {
    credential.split('/').nth(2)
}

/// What s3s would accept but BucketDB refuses: Signature Version 2 (header or query),
/// presigned URLs valid for more than seven days, and signatures for a region this
/// server does not serve, answered as S3 does so that clients retry in the right one.
async fn screen_auth(
    axum::extract::State(screen): axum::extract::State<AuthScreen>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let v2_header = authorization.is_some_and(|v| v.starts_with("AWS "));
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if v2_header || (param("AWSAccessKeyId").is_some() && param("Signature").is_some()) {
        return xml_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Signature Version 2 is not supported; sign requests with Signature Version 4",
        );
    }
    if let Some(expires) = param("X-Amz-Expires") {
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
    let header_region = authorization
        .and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256"))
        .and_then(|a| a.split_once("Credential="))
        .and_then(|(_, rest)| scope_region(rest.split(',').next().unwrap_or("")));
    if let Some(signed) = header_region
        && let Some(expected) = screen.expected_region(signed)
    {
        return xml_error_with(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            &format!(
                "The authorization header is malformed; the region '{signed}' is wrong; expecting '{expected}'"
            ),
            &[("Region", expected)],
        );
    }
    if let Some(signed) = param("X-Amz-Credential").and_then(|c| scope_region(c))
        && let Some(expected) = screen.expected_region(signed)
    {
        return xml_error_with(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            &format!(
                "Error parsing the X-Amz-Credential parameter; the region '{signed}' is wrong; expecting '{expected}'"
            ),
            &[("Region", expected)],
        );
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

/// The bucket and key a request addresses, found the way s3s finds them.
pub(crate) fn request_path(
    domain: Option<&s3s::host::SingleDomain>,
    req: &axum::extract::Request,
) -> Option<S3Path> {
    use s3s::host::S3Host;
    use std::net::{IpAddr, SocketAddr};
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8()
        .ok()?;
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let is_ip = |h: &str| h.parse::<SocketAddr>().is_ok() || h.parse::<IpAddr>().is_ok();
    match (host, domain) {
        (Some(h), Some(domain)) if !is_ip(h) => {
            let vh = domain.parse_host_header(h).ok()?;
            s3s::path::parse_virtual_hosted_style(vh.bucket(), &path).ok()
        }
        _ => s3s::path::parse_path_style(&path).ok(),
    }
}

/// What the coordinating layer needs: the node, and how requests name their bucket.
#[derive(Clone)]
struct Coordinating {
    state: Arc<ApiState>,
    host: Option<Arc<s3s::host::SingleDomain>>,
}

/// S3 requests that change one key: every PUT, DELETE and POST on an object (uploads,
/// copies, tags, multipart steps) and ListParts, whose upload lives at the coordinator.
fn changes_key(req: &axum::extract::Request) -> bool {
    use axum::http::Method;
    match *req.method() {
        Method::PUT | Method::DELETE | Method::POST => true,
        Method::GET => req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|p| p.split('=').next() == Some("uploadId"))
        }),
        _ => false,
    }
}

/// Whether a request is signed (header or presigned URL). Others are not forwarded:
/// s3s answers them here, so an anonymous client cannot make nodes relay its bodies.
fn carries_credentials(req: &axum::extract::Request) -> bool {
    req.headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        || req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|p| p.split('=').next() == Some("X-Amz-Signature"))
        })
}

/// Hand key changes to the key's coordinator (see [`crate::forward`]).
async fn coordinate(
    axum::extract::State(c): axum::extract::State<Coordinating>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if changes_key(&req)
        && carries_credentials(&req)
        && let Some(S3Path::Object { bucket, key }) = request_path(c.host.as_deref(), &req)
    {
        return crate::forward::coordinate(
            &c.state,
            crate::forward::Api::S3,
            &bucket,
            &key,
            req,
            next,
        )
        .await;
    }
    next.run(req).await
}

/// Settings of the S3 endpoint.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// Base domain for virtual-host-style requests (`bucket.DOMAIN`); path style always works.
    pub domain: Option<String>,
    /// The only region requests may be signed for; any region when `None`.
    pub region: Option<String>,
}

/// The S3 application (no socket).
pub fn s3_router(state: Arc<ApiState>, settings: &S3Settings) -> Result<Router, String> {
    let mut builder = S3ServiceBuilder::new(S3Api {
        svc: state.service.clone(),
        region: settings.region.clone(),
    });
    builder.set_access(Access {
        svc: state.service.clone(),
    });
    builder.set_auth(RootAuth {
        access_key: state.credentials.access_key.clone(),
        secret_key: SecretKey::from(state.credentials.secret_key.clone()),
    });
    let mut coordinating = Coordinating {
        state: state.clone(),
        host: None,
    };
    let mut cors_state = cors::CorsState {
        svc: state.service.clone(),
        host: None,
    };
    if let Some(domain) = &settings.domain {
        let host = || s3s::host::SingleDomain::new(domain).map_err(|e| format!("s3_domain: {e}"));
        builder.set_host(host()?);
        cors_state.host = Some(Arc::new(host()?));
        coordinating.host = cors_state.host.clone();
    }
    let service = HandleError::new(builder.build(), http_error);
    Ok(Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(
            AuthScreen {
                region: settings.region.as_deref().map(Arc::from),
            },
            screen_auth,
        ))
        .layer(axum::middleware::from_fn_with_state(
            coordinating,
            coordinate,
        ))
        .layer(axum::middleware::from_fn_with_state(cors_state, cors::cors))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::observe::observe_s3,
        )))
}
