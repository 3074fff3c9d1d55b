//! A minimal S3 client for the load generator: path-style PutObject, GetObject and the
//! bucket check, signed with SigV4 (`UNSIGNED-PAYLOAD`, so bodies are never hashed) and
//! sent over a keep-alive connection pool.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::args::{BenchPlan, Scheme};

/// Longest wait for a TCP connection (and so for an unreachable endpoint to be reported).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a single request may take, body included; a slower one counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the bucket check and creation before the run.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of an error response read to find its S3 error code; the rest is dropped.
pub const ERROR_BODY_MAX_BYTES: usize = 8 * 1024;
/// The S3 error code is shown up to this many characters.
const ERROR_CODE_MAX_CHARS: usize = 64;

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A non-2xx answer, with the S3 error code of its XML body when there is one.
    #[error("{status}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        status: StatusCode,
        code: Option<String>,
    },
    #[error("no complete answer within {}s", .0.as_secs())]
    Timeout(Duration),
    /// Connecting, sending or receiving failed (the message includes the causes).
    #[error("{0}")]
    Transport(String),
    #[error("body of {got} bytes, expected {expected}")]
    BodyLength { got: u64, expected: u64 },
    #[error("signing failed: {0}")]
    Signing(String),
}

type Pool = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends signed requests to one endpoint and bucket; cheap to clone (shared pool).
#[derive(Clone)]
pub struct S3Client {
    pool: Pool,
    inner: Arc<Endpoint>,
}

struct Endpoint {
    /// `scheme://authority`, no trailing slash.
    base: String,
    host: HeaderValue,
    bucket: String,
    region: String,
    credentials: Credentials,
}

/// What the bucket check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketState {
    Existed,
    Created,
}

impl S3Client {
    /// A client for the plan's endpoint keeping up to `plan.concurrency` idle
    /// connections. Fails when TLS is needed and no root certificates are found.
    pub fn new(plan: &BenchPlan) -> Result<S3Client, RequestError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = match plan.scheme {
            Scheme::Https => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| {
                    RequestError::Transport(format!("loading the system's root certificates: {e}"))
                })?,
            // Plain HTTP never uses the TLS configuration: it needs no certificates.
            Scheme::Http => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| RequestError::Transport(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let pool = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(plan.concurrency)
            .build(connector);
        let host = HeaderValue::from_str(&plan.authority)
            .map_err(|_| RequestError::Transport(format!("bad host {:?}", plan.authority)))?;
        Ok(S3Client {
            pool,
            inner: Arc::new(Endpoint {
                base: plan.endpoint(),
                host,
                bucket: plan.bucket.clone(),
                region: plan.region.clone(),
                credentials: Credentials::new(
                    plan.access_key.clone(),
                    plan.secret_key.clone(),
                    None,
                    None,
                    "bucketdb-bench",
                ),
            }),
        })
    }

    /// Check that the bucket exists (GetBucketLocation, whose error answers carry an S3
    /// error code), creating it when it does not.
    pub async fn ensure_bucket(&self) -> Result<BucketState, RequestError> {
        within(SETUP_TIMEOUT, self.check_or_create_bucket()).await
    }

    async fn check_or_create_bucket(&self) -> Result<BucketState, RequestError> {
        let e = &self.inner;
        let location_url = format!("{}/{}?location", e.base, e.bucket);
        match self
            .exchange(Method::GET, &location_url, Bytes::new())
            .await
        {
            Ok(_) => return Ok(BucketState::Existed),
            Err(RequestError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {}
            Err(other) => return Err(other),
        }
        // us-east-1 is S3's default location and must not be named (AWS refuses it).
        let body = if e.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                e.region
            ))
        };
        let bucket_url = format!("{}/{}", e.base, e.bucket);
        match self.exchange(Method::PUT, &bucket_url, body).await {
            Ok(_) => Ok(BucketState::Created),
            // Created by someone else (another bench run) since the check.
            Err(RequestError::Status { code: Some(c), .. }) if c == "BucketAlreadyOwnedByYou" => {
                Ok(BucketState::Existed)
            }
            Err(other) => Err(other),
        }
    }

    /// PutObject of `body` (a shared buffer: cloning `Bytes` copies no data).
    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<u64, RequestError> {
        let len = body.len() as u64;
        within(REQUEST_TIMEOUT, async {
            self.exchange(Method::PUT, &self.object_url(key), body)
                .await?;
            Ok(len)
        })
        .await
    }

    /// GetObject, counting and discarding the body as it arrives; a body of another
    /// length than `expected` bytes is a failure.
    pub async fn get_object(&self, key: &str, expected: u64) -> Result<u64, RequestError> {
        within(REQUEST_TIMEOUT, async {
            let got = self
                .exchange(Method::GET, &self.object_url(key), Bytes::new())
                .await?;
            if got != expected {
                return Err(RequestError::BodyLength { got, expected });
            }
            Ok(got)
        })
        .await
    }

    fn object_url(&self, key: &str) -> String {
        // Keys are generated from [a-z0-9/-] only: nothing to percent-encode.
        format!("{}/{}/{key}", self.inner.base, self.inner.bucket)
    }

    /// Send, then read the answer's body to its end without keeping it: its length, or
    /// the failure (with the S3 error code of a non-2xx answer).
    async fn exchange(&self, method: Method, url: &str, body: Bytes) -> Result<u64, RequestError> {
        let response = self.send(method, url, body).await?;
        drain(check_status(response).await?).await
    }

    /// Sign and send; returns when the response's headers have arrived.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, RequestError> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(HOST, self.inner.host.clone());
        if method == Method::PUT {
            builder = builder.header(CONTENT_LENGTH, body.len());
        }
        let mut request = builder
            .body(Full::new(body))
            .map_err(|e| RequestError::Transport(format!("building the request: {e}")))?;
        self.sign(&mut request)?;
        self.pool
            .request(request)
            .await
            .map_err(|e| RequestError::Transport(error_chain(&e)))
    }

    /// Add `x-amz-date`, `x-amz-content-sha256: UNSIGNED-PAYLOAD` and `Authorization`.
    fn sign(&self, request: &mut Request<Full<Bytes>>) -> Result<(), RequestError> {
        let signing_error = |e: &dyn std::fmt::Display| RequestError::Signing(e.to_string());
        let mut settings = SigningSettings::default();
        // S3 signs the path as sent: encoded once, not normalised.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = self.inner.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.inner.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| signing_error(&e))?
            .into();
        let uri = request.uri().to_string();
        let host = self.inner.host.to_str().map_err(|e| signing_error(&e))?;
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri,
            std::iter::once(("host", host)),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| signing_error(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| signing_error(&e))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

/// The body of a 2xx response, or the error with the S3 code from the first
/// [`ERROR_BODY_MAX_BYTES`] of the body.
async fn check_status(response: hyper::Response<Incoming>) -> Result<Incoming, RequestError> {
    let status = response.status();
    let body = response.into_body();
    if status.is_success() {
        return Ok(body);
    }
    let head = read_prefix(body, ERROR_BODY_MAX_BYTES).await;
    Err(RequestError::Status {
        status,
        code: s3_error_code(&head),
    })
}

/// Up to `limit` bytes of a body; a failing body yields what arrived before.
async fn read_prefix(mut body: Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            let take = data.len().min(limit - out.len());
            out.extend_from_slice(&data[..take]);
        }
    }
    out
}

/// Read a body to its end without keeping it; returns its length.
async fn drain(mut body: Incoming) -> Result<u64, RequestError> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RequestError::Transport(error_chain(&e)))?;
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// `request` (headers and body), failing with [`RequestError::Timeout`] after `limit`.
async fn within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or(Err(RequestError::Timeout(limit)))
}

/// The `<Code>` of an S3 XML error document.
pub fn s3_error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = text[start..start + len].trim();
    (!code.is_empty()).then(|| code.chars().take(ERROR_CODE_MAX_CHARS).collect())
}

/// An error and its `source()`s: the inner ones name the actual cause ("Connection
/// refused (os error 111)") where the outer one only says "client error (Connect)".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![e.to_string()];
    let mut current = e.source();
    while let Some(inner) = current {
        messages.push(inner.to_string());
        current = inner.source();
    }
    messages.dedup();
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_s3_xml() {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
        assert_eq!(s3_error_code(xml).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(s3_error_code(b""), None);
        assert_eq!(s3_error_code(b"<Code></Code>"), None);
        assert_eq!(s3_error_code(b"<Code>unterminated"), None);
        assert_eq!(s3_error_code(&[0xff, 0xfe]), None);
    }

    #[test]
    fn errors_read_as_status_and_code() {
        let e = RequestError::Status {
            status: StatusCode::FORBIDDEN,
            code: Some("SignatureDoesNotMatch".into()),
        };
        assert_eq!(e.to_string(), "403 Forbidden SignatureDoesNotMatch");
        let e = RequestError::Status {
            status: StatusCode::NOT_FOUND,
            code: None,
        };
        assert_eq!(e.to_string(), "404 Not Found");
    }
}
