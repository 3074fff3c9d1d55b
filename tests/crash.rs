//! Crash safety of the real `bucketdb server` binary.
//!
//! - `kill -9` while many uploads are in flight: after a restart on the same directories
//!   (no repair step) every acknowledged write is there, byte for byte, nothing
//!   half-written is visible, and no temp file or unreferenced chunk file is left.
//! - `SIGTERM` during an upload: the upload finishes (`201`), the process exits 0 and the
//!   object is there after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const ACCESS_KEY: &str = "CRASHTESTACCESSKEY01";
const SECRET_KEY: &str = "crash-test-secret-key-0123456789abcdefgh";
const BUCKET: &str = "crash";
/// How long a node may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping node may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on any single HTTP request made by the tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// A node process that is always killed, even when the test panics.

/// Fresh directories for one node: storage, metadata and the node's log.
struct Dirs {
    _root: tempfile::TempDir,
    data: PathBuf,
    meta: PathBuf,
    logs: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::tempdir().expect("creating a temp dir");
        let data = root.path().join("data");
        let meta = root.path().join("meta");
        let logs = root.path().join("logs");
        std::fs::create_dir_all(&logs).expect("creating the log dir");
        Dirs {
            data,
            meta,
            logs,
            _root: root,
        }
    }
}

struct Node {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

impl Node {
    /// Start `bucketdb server` on `dirs` with a free loopback port and fixed credentials,
    /// and wait (with a deadline) until it prints its listening line.
    fn start(dirs: &Dirs, generation: usize, extra: &[&str]) -> Node {
        let log = dirs.logs.join(format!("node-{generation}.log"));
        let stderr = std::fs::File::create(&log).expect("creating the node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucketdb"));
        cmd.arg("server")
            .arg("--storage-path")
            .arg(&dirs.data)
            .arg("--metadata-path")
            .arg(&dirs.meta)
            .args(["--http-addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("BUCKETDB_") && k != "BUCKETDB_LOG" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawning bucketdb");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Forward stdout lines, and keep draining it for the life of the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut node = Node {
            child: Some(child),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening_line(&line) {
                        node.addr = addr;
                        return node;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "bucketdb did not report its address within {START_TIMEOUT:?}; log:\n{}",
                        node.log_text()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "bucketdb exited before listening; log:\n{}",
                        node.log_text()
                    )
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (what `Child::kill` sends on unix) and reap.
    fn kill_9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        child.kill().expect("sending SIGKILL");
        child.wait().expect("reaping the killed node")
    }

    fn signal(&self, sig: libc::c_int) {
        assert!(self.child.is_some(), "node is not running");
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet (we still
        // hold its `Child`), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Wait (with a deadline) for the process to exit by itself.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(timeout) {
            Ok(status) => status.expect("waiting for the node"),
            Err(_) => {
                // The waiting thread owns the child now: kill it by pid so it is reaped.
                // SAFETY: kill(2) on our unreaped child.
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
                panic!(
                    "bucketdb did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `BucketDB node <id> listening on http://<addr> (REST API, health, metrics)`
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    if !line.starts_with("BucketDB node ") {
        return None;
    }
    let rest = line.split_once(" listening on http://")?.1;
    let addr = rest.split_whitespace().next()?;
    addr.parse().ok()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("building the HTTP client")
}

// ---------------------------------------------------------------------------------------
// Deterministic object contents: the key alone says what the object must contain.

/// FNV-1a, to seed the generator from a key.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `size` bytes from a splitmix64 stream seeded by `key`.
fn content(key: &str, size: usize) -> Vec<u8> {
    let mut state = fnv1a(key);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(&Sha256::digest(data)[..])
}

/// What BucketDB reports as an object's SHA-256 (`x-bucketdb-sha256`, listing `sha256`):
/// the content's digest when it fits in one chunk, else the digest of the chunk digests
/// with `-<chunk count>` appended.
fn reported_sha256(data: &[u8], chunk_size: usize) -> String {
    if data.len() <= chunk_size {
        return sha256_hex(data);
    }
    let mut outer = Sha256::new();
    let mut n = 0;
    for c in data.chunks(chunk_size) {
        outer.update(Sha256::digest(c));
        n += 1;
    }
    format!("{}-{n}", hex::encode(&outer.finalize()[..]))
}

/// Keys are `k<task>-<seq>-<size>`: unique per PUT (no overwrites) and self-describing.
fn object_key(task: usize, seq: usize, size: usize) -> String {
    format!("k{task:02}-{seq:05}-{size}")
}

fn size_of_key(key: &str) -> Option<usize> {
    let mut parts = key.strip_prefix('k')?.split('-');
    let (Some(_task), Some(_seq), Some(size), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    size.parse().ok()
}

// ---------------------------------------------------------------------------------------
// kill -9 under concurrent load

const WRITERS: usize = 16;
/// Kill once at least this many PUTs were acknowledged.
const KILL_AFTER_ACKS: usize = 200;
/// ... and at least this many requests are in flight.
const KILL_WITH_IN_FLIGHT: usize = 4;
/// Bound on each writer's work, whatever happens.
const MAX_PUTS_PER_WRITER: usize = 400;
const CHUNK_SIZE: usize = 64 * 1024;
const INLINE_THRESHOLD: usize = 4 * 1024;
/// 1 KiB (inline), 100 KiB (2 chunks), ~300 KiB (5 chunks, the last partial).
const SIZES: [usize; 3] = [1024, 100 * 1024, 300 * 1024 + 517];

#[derive(Default)]
struct Progress {
    acked: Vec<String>,
    in_flight: usize,
    attempted: usize,
    /// Anything that went wrong before the kill (a failure of the server, not the test).
    failures: Vec<String>,
    killed: bool,
    errors_after_kill: usize,
}

struct Shared {
    progress: Mutex<Progress>,
    changed: Notify,
}

impl Shared {
    fn update<R>(&self, f: impl FnOnce(&mut Progress) -> R) -> R {
        let r = f(&mut self.progress.lock().unwrap());
        self.changed.notify_one();
        r
    }
}

async fn writer(task: usize, client: reqwest::Client, base: String, shared: Arc<Shared>) {
    for seq in 0..MAX_PUTS_PER_WRITER {
        let size = SIZES[(task + seq) % SIZES.len()];
        let key = object_key(task, seq, size);
        let data = content(&key, size);
        let url = format!("{base}/objects/{BUCKET}/{key}");
        // Every fourth large object is sent with chunked transfer encoding (no length).
        let body = if size > INLINE_THRESHOLD && seq % 4 == 0 {
            let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
            reqwest::Body::wrap_stream(futures::stream::iter(pieces))
        } else {
            reqwest::Body::from(data)
        };
        shared.update(|p| {
            p.in_flight += 1;
            p.attempted += 1;
        });
        let res = client
            .post(&url)
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await;
        // (acknowledged, error): a 201 is an acknowledgement whatever follows it; a
        // transport error is expected only once the server was killed.
        let (acked, error) = match res {
            Ok(resp) if resp.status() == reqwest::StatusCode::CREATED => {
                match resp.json::<serde_json::Value>().await {
                    Ok(j) if j["key"] != key.as_str() || j["size"] != size as u64 => (
                        true,
                        Some((false, format!("{key}: 201 with a wrong body {j}"))),
                    ),
                    // The body may be cut off by the kill after the status line arrived.
                    _ => (true, None),
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let msg = format!("{key}: unexpected {status}: {text}");
                (false, Some((false, msg)))
            }
            Err(e) => (false, Some((true, format!("{key}: transport error: {e}")))),
        };
        let stop = shared.update(|p| {
            p.in_flight -= 1;
            if acked {
                p.acked.push(key.clone());
            }
            match error {
                None => false,
                Some((true, _)) if p.killed => {
                    p.errors_after_kill += 1;
                    true
                }
                Some((_, msg)) => {
                    p.failures.push(msg);
                    true
                }
            }
        });
        if stop {
            return;
        }
    }
}

/// Every regular file below `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", d.display()),
        };
        for entry in entries {
            let entry = entry.expect("reading a directory entry");
            let ty = entry.file_type().expect("file type");
            if ty.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every listed object of `bucket`, following `nextCursor`: key → size.
async fn list_all(client: &reqwest::Client, node: &Node, bucket: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _page in 0..10_000 {
        let mut url = node.url(&format!("/objects/{bucket}?limit=1000"));
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(&query_escape(c));
        }
        let resp = client
            .get(url)
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
            .send()
            .await
            .expect("listing");
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "listing status");
        let page: serde_json::Value = resp.json().await.expect("listing JSON");
        for o in page["objects"].as_array().expect("objects array") {
            let key = o["key"].as_str().expect("key").to_string();
            let size = o["size"].as_u64().expect("size");
            if let Some(expected) = size_of_key(&key) {
                let want = reported_sha256(&content(&key, expected), CHUNK_SIZE);
                if let Some(sha) = o["sha256"].as_str() {
                    assert_eq!(sha, want, "listed sha256 of {key}");
                }
            }
            assert!(
                out.insert(key.clone(), size).is_none(),
                "{key} listed twice"
            );
        }
        match page["nextCursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
            _ => return out,
        }
    }
    panic!("listing did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_puts_loses_no_acknowledged_write() {
    let dirs = Dirs::new();
    let args = [
        "--chunk-size",
        "64KiB",
        "--inline-threshold",
        "4KiB",
        "--log-format",
        "json",
    ];
    let mut node = Node::start(&dirs, 1, &args);
    let client = client();
    let shared = Arc::new(Shared {
        progress: Mutex::new(Progress::default()),
        changed: Notify::new(),
    });
    let base = node.url("");
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| tokio::spawn(writer(t, client.clone(), base.clone(), shared.clone())))
        .collect();

    // Wait for enough acknowledged work with requests still in flight, then SIGKILL.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let notified = shared.changed.notified();
        {
            let p = shared.progress.lock().unwrap();
            assert!(
                p.failures.is_empty(),
                "writes failed before the kill: {:?}",
                p.failures
            );
            if p.acked.len() >= KILL_AFTER_ACKS && p.in_flight >= KILL_WITH_IN_FLIGHT {
                break;
            }
            assert!(
                p.attempted < WRITERS * MAX_PUTS_PER_WRITER,
                "writers finished without reaching {KILL_AFTER_ACKS} acknowledgements"
            );
        }
        // notify_one keeps a permit, so a change between the check and here is not lost.
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let p = shared.progress.lock().unwrap();
            panic!(
                "only {} PUTs acknowledged ({} in flight) before the deadline; log:\n{}",
                p.acked.len(),
                p.in_flight,
                node.log_text()
            );
        }
    }
    let (acked_at_kill, in_flight_at_kill) = shared.update(|p| {
        p.killed = true;
        (p.acked.len(), p.in_flight)
    });
    let status = node.kill_9();
    assert!(
        !status.success(),
        "SIGKILL should not look like a clean exit"
    );

    for w in writers {
        tokio::time::timeout(REQUEST_TIMEOUT, w)
            .await
            .expect("a writer did not stop after the kill")
            .expect("a writer panicked");
    }
    let (acked, errors_after_kill, failures) = {
        let p = shared.progress.lock().unwrap();
        (
            p.acked.iter().cloned().collect::<BTreeSet<_>>(),
            p.errors_after_kill,
            p.failures.clone(),
        )
    };
    assert!(
        failures.is_empty(),
        "writes failed before the kill: {failures:?}"
    );
    assert_eq!(acked.len(), shared.progress.lock().unwrap().acked.len());
    eprintln!(
        "killed with {acked_at_kill} acknowledged and {in_flight_at_kill} in flight; \
         {} acknowledged in total, {errors_after_kill} requests cut off",
        acked.len()
    );
    assert!(errors_after_kill > 0, "no request was cut off by the kill");

    // What the kill left behind (the restart must clean it up by itself).
    let left_behind = files_under(&dirs.data);
    let left_temps = left_behind
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .count();
    eprintln!(
        "after the kill: {} files under storage_path ({left_temps} temp files)",
        left_behind.len()
    );

    // Restart on the same directories, no repair step.
    let node = Node::start(&dirs, 2, &args);

    // The storage directory right after start: no temp files, no unreferenced chunks.
    let files = files_under(&dirs.data);
    let quarantine = dirs.data.join(".quarantine");
    let temps: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files survived a restart: {temps:?}");
    let quarantined: Vec<_> = files
        .iter()
        .filter(|p| p.starts_with(&quarantine))
        .collect();
    assert!(
        quarantined.is_empty(),
        "chunks were quarantined: {quarantined:?}"
    );
    let chunk_files = files.iter().filter(|p| !p.starts_with(&quarantine)).count();

    // Everything visible is exactly what its key says; everything acknowledged is visible.
    let listed = list_all(&client, &node, BUCKET).await;
    let mut expected_chunks = 0;
    for (key, size) in &listed {
        let want_size = size_of_key(key).unwrap_or_else(|| panic!("unexpected key {key:?}"));
        assert_eq!(*size, want_size as u64, "listed size of {key}");
        if want_size > INLINE_THRESHOLD {
            expected_chunks += want_size.div_ceil(CHUNK_SIZE);
        }
    }
    let missing: Vec<_> = acked.iter().filter(|k| !listed.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged objects are not listed after the restart: {missing:?}",
        missing.len()
    );
    let keys: BTreeSet<&String> = listed.keys().chain(acked.iter()).collect();
    for key in keys {
        let size = size_of_key(key).unwrap_or_else(|| panic!("unexpected key {key:?}"));
        let data = content(key, size);
        let want = sha256_hex(&data);
        let resp = client
            .get(node.url(&format!("/objects/{BUCKET}/{key}")))
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key}: {e}"));
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::OK,
            "GET {key} (acknowledged: {})",
            acked.contains(key)
        );
        if let Some(h) = resp.headers().get("x-bucketdb-sha256") {
            assert_eq!(
                h.to_str().unwrap(),
                reported_sha256(&data, CHUNK_SIZE),
                "x-bucketdb-sha256 of {key}"
            );
        }
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {key} body: {e}"));
        assert_eq!(body.len(), size, "length of {key}");
        assert_eq!(sha256_hex(&body), want, "content of {key}");
    }
    eprintln!(
        "after restart: {} objects visible ({} acknowledged), {chunk_files} chunk files",
        listed.len(),
        acked.len()
    );
    assert_eq!(
        chunk_files, expected_chunks,
        "chunk files on disk vs chunks of the visible objects; files: {:?}",
        files
    );
    drop(node);
}

// ---------------------------------------------------------------------------------------
// SIGTERM during an upload

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Read from `stream` until `buf` holds a complete header block; returns its length.
async fn read_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> usize {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return i + 4;
        }
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut tmp))
            .await
            .expect("timed out waiting for a response")
            .expect("reading the response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_upload() {
    const SIZE: usize = 2 * 1024 * 1024;
    let dirs = Dirs::new();
    let args = ["--chunk-size", "256KiB"];
    let mut node = Node::start(&dirs, 1, &args);
    let key = "big/upload.bin";
    let data = content(key, SIZE);

    let mut stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connecting");
    let auth = base64(format!("{ACCESS_KEY}:{SECRET_KEY}").as_bytes());
    let head = format!(
        "POST /objects/{BUCKET}/{key} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        node.addr
    );
    stream.write_all(head.as_bytes()).await.expect("sending");
    // `100 Continue` proves the request reached the handler (it is reading the body), so
    // the connection is in flight when the signal arrives.
    let mut buf = Vec::new();
    let n = read_head(&mut stream, &mut buf).await;
    let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {interim:?}"
    );
    buf.drain(..n);
    let (first, second) = data.split_at(SIZE / 2);
    stream.write_all(first).await.expect("sending half");
    stream.flush().await.expect("flushing");

    node.signal(libc::SIGTERM);

    stream.write_all(second).await.expect("sending the rest");
    stream.flush().await.expect("flushing");
    let n = read_head(&mut stream, &mut buf).await;
    let response_head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut rest = buf.split_off(n);
    tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("timed out reading the response body")
        .expect("reading the response body");
    assert!(
        response_head.starts_with("HTTP/1.1 201"),
        "upload during shutdown: {response_head}{}",
        String::from_utf8_lossy(&rest)
    );
    let json: serde_json::Value = serde_json::from_slice(&rest).expect("201 JSON body");
    assert_eq!(json["key"], key);
    assert_eq!(json["size"], SIZE as u64);

    let status = node.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.success(),
        "bucketdb exited with {status} after SIGTERM; log:\n{}",
        node.log_text()
    );

    let node = Node::start(&dirs, 2, &args);
    let resp = client()
        .get(node.url(&format!("/objects/{BUCKET}/{key}")))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .send()
        .await
        .expect("GET after restart");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), SIZE);
    assert_eq!(sha256_hex(&body), sha256_hex(&data));
}

#[test]
fn helpers_behave() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(
        parse_listening_line(
            "BucketDB node node-1 listening on http://127.0.0.1:4242 (REST API, health, metrics)"
        ),
        Some(SocketAddr::from(([127, 0, 0, 1], 4242)))
    );
    assert_eq!(parse_listening_line("  access key: X"), None);
    assert_eq!(size_of_key(&object_key(3, 17, 1024)), Some(1024));
    assert_eq!(query_escape("a/b c~"), "a%2Fb%20c~");
    assert_eq!(content("a", 100), content("a", 100));
    assert_ne!(content("a", 100), content("b", 100));
}
