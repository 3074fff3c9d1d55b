//! Shared helpers of the REST API integration tests: a real server on an ephemeral port
//! with its own temporary directories, an authenticated `reqwest` client, a raw HTTP/1.1
//! client for requests `reqwest` would refuse or normalise, and filesystem probes.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bucketdb::Config;
use bucketdb::server::{RunningServer, start};
use md5::{Digest, Md5};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sha2::Sha256;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

pub const ACCESS_KEY: &str = "BKTESTACCESSKEY0001";
pub const SECRET_KEY: &str = "TestSecretKey0123456789abcdefghijklmnopq";
/// The smallest chunk size the server accepts.
pub const CHUNK_SIZE: usize = 64 * 1024;
pub const INLINE_THRESHOLD: usize = 1024;
pub const MAX_OBJECT_SIZE: u64 = 8 * 1024 * 1024;
/// Longest wait for anything asynchronous (cleanup, shutdown, a response).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The configuration every test server starts from.
pub fn test_config(root: &Path) -> Config {
    Config {
        storage_path: root.join("data"),
        metadata_path: root.join("meta"),
        chunk_size: CHUNK_SIZE,
        inline_threshold: INLINE_THRESHOLD,
        max_object_size: MAX_OBJECT_SIZE,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        s3_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        access_key: Some(ACCESS_KEY.to_string()),
        secret_key: Some(SECRET_KEY.to_string()),
        gc_interval: Duration::from_millis(200),
        gc_grace: Duration::ZERO,
        ..Config::default()
    }
}

/// A running node and everything a test needs to talk to it.
pub struct TestServer {
    server: Option<RunningServer>,
    pub addr: SocketAddr,
    /// The S3 API's address (an ephemeral loopback port).
    pub s3_addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    /// Holds `data/` and `meta/`; removed when the test ends.
    pub dir: TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Start with the test configuration adjusted by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        f(&mut config);
        Self::start_in(dir, config).await
    }

    /// Start on existing directories (a restart).
    pub async fn start_in(dir: TempDir, config: Config) -> TestServer {
        let server = start(config.clone()).await.expect("server starts");
        let addr = server.http_addr;
        let s3_addr = server.s3_addr;
        assert_eq!(server.credentials.access_key, ACCESS_KEY);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        TestServer {
            server: Some(server),
            addr,
            s3_addr,
            base: format!("http://{addr}"),
            client,
            config,
            dir,
        }
    }

    /// Take the running server out (to shut it down concurrently with a request).
    pub fn take_server(&mut self) -> RunningServer {
        self.server.take().expect("server still running")
    }

    /// Shut down gracefully (bounded by [`DEADLINE`]) and hand back the directories.
    pub async fn shutdown(mut self) -> (TempDir, Config) {
        if let Some(s) = self.server.take() {
            tokio::time::timeout(DEADLINE, s.shutdown())
                .await
                .expect("shutdown finishes in time")
                .expect("shutdown succeeds");
        }
        (self.dir, self.config)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with the root credentials as HTTP Basic.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path)
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.req(Method::GET, path)
    }
    pub fn head(&self, path: &str) -> RequestBuilder {
        self.req(Method::HEAD, path)
    }
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.req(Method::POST, path)
    }
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.req(Method::PUT, path)
    }
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.req(Method::DELETE, path)
    }

    /// Upload through `POST /objects/bucket/key`, expecting 201; returns the JSON.
    pub async fn put_object(&self, bucket: &str, key: &str, data: &[u8]) -> Value {
        let resp = self
            .post(&format!("/objects/{bucket}/{key}"))
            .body(data.to_vec())
            .send()
            .await
            .expect("upload request");
        let status = resp.status();
        let body = resp.text().await.expect("upload response body");
        assert_eq!(
            status,
            StatusCode::CREATED,
            "upload of {bucket}/{key}: {body}"
        );
        serde_json::from_str(&body).expect("upload response is JSON")
    }

    /// `GET /objects/bucket/key`: status and body.
    pub async fn get_object(&self, bucket: &str, key: &str) -> (StatusCode, Vec<u8>) {
        let resp = self
            .get(&format!("/objects/{bucket}/{key}"))
            .send()
            .await
            .expect("download request");
        let status = resp.status();
        let body = resp.bytes().await.expect("download body").to_vec();
        (status, body)
    }

    /// `GET /metrics` (no credentials).
    pub async fn metrics(&self) -> String {
        let resp = self
            .anon(Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics request");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.expect("metrics text")
    }

    pub fn storage_path(&self) -> &Path {
        &self.config.storage_path
    }

    /// Every regular file under `storage_path` except quarantined ones.
    pub fn chunk_files(&self) -> Vec<PathBuf> {
        chunk_files(self.storage_path())
    }

    pub fn quarantined_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk_files(
            &self.storage_path().join(".quarantine"),
            &mut |_| true,
            &mut out,
        );
        out
    }

    /// Wait until no chunk file is left under `storage_path`.
    pub async fn wait_for_no_chunk_files(&self) {
        let storage = self.storage_path().to_path_buf();
        wait_until("no chunk files are left in storage_path", || {
            let storage = storage.clone();
            async move { chunk_files(&storage).is_empty() }
        })
        .await;
    }

    /// `Authorization` header value for raw requests.
    pub fn basic_auth_header(&self) -> String {
        basic_auth_value(ACCESS_KEY, SECRET_KEY)
    }

    /// Open a raw TCP connection to the server.
    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    /// Send a hand-written request (head lines without the final blank line, plus a body)
    /// on a fresh connection and read the response.
    pub async fn raw(
        &self,
        method: &str,
        target: &str,
        extra: &[&str],
        body: &[u8],
    ) -> RawResponse {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: close\r\n",
            self.addr,
            self.basic_auth_header()
        );
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for h in extra {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut stream = self.connect().await;
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes)
            .await
            .expect("write request");
        let head_only = method == "HEAD";
        tokio::time::timeout(DEADLINE, read_response(&mut stream, head_only))
            .await
            .expect("response in time")
            .expect("a complete response")
    }
}

pub fn basic_auth_value(access_key: &str, secret_key: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{access_key}:{secret_key}"))
    )
}

fn walk_files(dir: &Path, keep: &mut dyn FnMut(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if keep(&path) {
                walk_files(&path, keep, out);
            }
        } else if keep(&path) {
            out.push(path);
        }
    }
}

/// Every regular file under `storage`, skipping `.quarantine`.
pub fn chunk_files(storage: &Path) -> Vec<PathBuf> {
    let quarantine = storage.join(".quarantine");
    let mut out = Vec::new();
    walk_files(storage, &mut |p| !p.starts_with(&quarantine), &mut out);
    out
}

/// Every file or directory below `root` whose name contains `needle`.
pub fn paths_named(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn visit(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(path.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                visit(&path, needle, out);
            }
        }
    }
    visit(root, needle, &mut out);
    out
}

/// Poll `cond` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deterministic pseudo-random bytes (xorshift), different for each seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Percent-encode a query value (everything but RFC 3986 unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `error.code` of a JSON error response, checking the error document's shape.
pub async fn error_code(resp: reqwest::Response) -> String {
    let text = resp.text().await.expect("error body");
    error_code_of(text.as_bytes())
}

pub fn error_code_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    let err = &v["error"];
    assert!(err["message"].is_string(), "error without message: {v}");
    assert!(err["requestId"].is_string(), "error without requestId: {v}");
    err["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without code: {v}"))
        .to_string()
}

/// Sum of the samples of a Prometheus metric whose labels contain every `label` given
/// (as `name="value"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_part) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            if metric != name || !labels.iter().all(|want| label_part.contains(want)) {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn error_code(&self) -> String {
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "error response is not JSON: {self:?}"
        );
        error_code_of(&self.body)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut tmp = [0u8; 16 * 1024];
    let n = stream.read(&mut tmp).await?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n > 0)
}

fn eof() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed mid-response",
    )
}

/// Read one HTTP/1.1 response (skipping `100 Continue`). `head_only`: the request was a
/// HEAD, so there is no body whatever the headers say.
pub async fn read_response(
    stream: &mut (impl AsyncRead + Unpin),
    head_only: bool,
) -> std::io::Result<RawResponse> {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if !fill(stream, &mut buf).await? {
                return Err(eof());
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if status == 100 {
            continue;
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if head_only || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
            while buf.len() < len {
                if !fill(stream, &mut buf).await? {
                    return Err(eof());
                }
            }
            buf[..len].to_vec()
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&buf, b"\r\n") {
                        break i;
                    }
                    if !fill(stream, &mut buf).await? {
                        return Err(eof());
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| std::io::Error::other("bad chunk size"))?;
                buf.drain(..line_end + 2);
                while buf.len() < size + 2 {
                    if !fill(stream, &mut buf).await? {
                        return Err(eof());
                    }
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            while fill(stream, &mut buf).await? {}
            buf
        };
        return Ok(RawResponse {
            status,
            headers,
            body,
        });
    }
}
