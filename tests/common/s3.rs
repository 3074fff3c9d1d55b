//! aws-sdk-s3 helpers for the S3 API tests: a client pointed at a test server's S3 port
//! (path style, plain HTTP on loopback, no retries) and the S3 error code and HTTP status
//! of a failed call. Included by the S3 test files next to `common`.

#![allow(dead_code)]

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;

use crate::common::{ACCESS_KEY, SECRET_KEY, TestServer};

/// The region the test clients sign for.
pub const REGION: &str = "us-east-1";

fn config(endpoint: String, access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
    config_in(endpoint, access_key, secret_key, REGION)
}

fn config_in(
    endpoint: String,
    access_key: &str,
    secret_key: &str,
    region: &'static str,
) -> aws_sdk_s3::config::Builder {
    let credentials = Credentials::new(access_key, secret_key, None, None, "bucketdb-tests");
    aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .credentials_provider(credentials)
        .region(Region::new(region))
        .endpoint_url(endpoint)
        .force_path_style(true)
        // A failure must surface as it is, not be hidden (or slowed down) by retries.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
}

/// An S3 client for `addr` signing with the given keys.
pub fn client_with_keys(addr: SocketAddr, access_key: &str, secret_key: &str) -> Client {
    Client::from_conf(config(format!("http://{addr}"), access_key, secret_key).build())
}

/// An S3 client for `addr` with the test keys, signing for `region`.
pub fn client_in_region(addr: SocketAddr, region: &'static str) -> Client {
    Client::from_conf(config_in(format!("http://{addr}"), ACCESS_KEY, SECRET_KEY, region).build())
}

/// Sends requests signed for an `https://` endpoint over plain HTTP (a SigV4 signature
/// does not cover the scheme).
#[derive(Debug)]
struct PlainHttp;

impl Intercept for PlainHttp {
    fn name(&self) -> &'static str {
        "PlainHttp"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let uri = ctx.request().uri().to_string();
        if let Some(rest) = uri.strip_prefix("https://") {
            ctx.request_mut()
                .set_uri(format!("http://{rest}"))
                .map_err(|e| BoxError::from(format!("bad URI: {e}")))?;
        }
        Ok(())
    }
}

/// A client that behaves as over HTTPS, though it talks plain HTTP to `addr`: streamed
/// bodies then go as `aws-chunked` with STREAMING-UNSIGNED-PAYLOAD-TRAILER (unsigned
/// chunks, checksum trailer), as boto3 and the AWS CLI send by default. Over `http://`
/// the Rust SDK signs every chunk instead.
pub fn https_style_client(addr: SocketAddr) -> Client {
    Client::from_conf(
        config(format!("https://{addr}"), ACCESS_KEY, SECRET_KEY)
            .interceptor(PlainHttp)
            .build(),
    )
}

/// An S3 client for the test server with its root credentials.
pub fn client(s: &TestServer) -> Client {
    client_with_keys(s.s3_addr, ACCESS_KEY, SECRET_KEY)
}

/// A test server and an S3 client for it.
pub async fn start() -> (TestServer, Client) {
    let s = TestServer::start().await;
    let c = client(&s);
    (s, c)
}

/// A failed S3 call: the HTTP status and the S3 error code and message, if the body had them.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// The failure of a call that must fail (panics on success or on a failure without an
/// HTTP response, such as a connection error).
pub fn failure<T, E>(r: Result<T, SdkError<E, HttpResponse>>) -> Failure
where
    T: Debug,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = match r {
        Ok(v) => panic!("expected the call to fail, it succeeded: {v:?}"),
        Err(e) => e,
    };
    let Some(raw) = e.raw_response() else {
        panic!(
            "the call failed without an HTTP response: {}",
            DisplayErrorContext(&e)
        );
    };
    Failure {
        status: raw.status().as_u16(),
        code: e.code().map(str::to_string),
        message: e.message().map(str::to_string),
    }
}

/// Assert that the call failed with `status` and S3 error `code`.
#[track_caller]
pub fn assert_fails<T, E>(r: Result<T, SdkError<E, HttpResponse>>, status: u16, code: &str)
where
    T: Debug,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = failure(r);
    assert_eq!(
        (f.status, f.code.as_deref()),
        (status, Some(code)),
        "unexpected failure {f:?}"
    );
}

/// The whole body of a GetObject response.
pub async fn body(out: GetObjectOutput) -> Vec<u8> {
    out.body
        .collect()
        .await
        .expect("object body")
        .into_bytes()
        .to_vec()
}

/// An ETag as S3 sends it: the MD5 (or multipart hash) in double quotes.
pub fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Decode `%XX` escapes (and nothing else) of an `encoding-type=url` listing value.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii escape");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("decoded value is UTF-8")
}

/// A TCP proxy on an ephemeral loopback port in front of `target`: it records every byte
/// clients send and, when `rewrite` is given, replaces each occurrence of its first
/// string by its second (of the same length) on the way, so a test can see exactly what
/// the SDK puts on the wire or corrupt a body after it was signed and checksummed.
pub struct Proxy {
    pub addr: SocketAddr,
    pub sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr, rewrite: Option<(&[u8], &[u8])>) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rewrite = rewrite.map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "a rewrite keeps the length");
            assert!(!a.is_empty());
            (a.to_vec(), b.to_vec())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                let rewrite = rewrite.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // Bytes held back because they may start a match split across reads.
                    let mut pending: Vec<u8> = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        recorded.lock().unwrap().extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        let mut keep = 0;
                        if let Some((from, to)) = &rewrite {
                            let mut i = 0;
                            while i + from.len() <= pending.len() {
                                if pending[i..i + from.len()] == from[..] {
                                    pending[i..i + from.len()].copy_from_slice(to);
                                    i += from.len();
                                } else {
                                    i += 1;
                                }
                            }
                            // Hold back the longest tail that is a proper prefix of `from`.
                            keep = (1..from.len())
                                .rev()
                                .find(|k| {
                                    *k <= pending.len()
                                        && pending[pending.len() - k..] == from[..*k]
                                })
                                .unwrap_or(0);
                        }
                        let send = pending.len() - keep;
                        if sw.write_all(&pending[..send]).await.is_err() {
                            break;
                        }
                        pending.drain(..send);
                    }
                    let _ = sw.write_all(&pending).await;
                    let _ = sw.shutdown().await;
                });
            }
        });
        Proxy { addr, sent, task }
    }

    /// Everything sent through the proxy so far, as text (lossy).
    pub fn sent_text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

/// Turn versioning on for `bucket`.
pub async fn enable_versioning(c: &Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    c.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
}
