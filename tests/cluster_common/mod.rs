//! Shared harness of the cluster tests: real `bucketdb` processes on loopback, each
//! with its own directories and ports, started, killed (-9) and restarted; and polling
//! helpers with a deadline (nothing sleeps to synchronise).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ACCESS_KEY: &str = "BKCLUSTERTEST0001";
pub const SECRET_KEY: &str = "ClusterTestSecretKey0123456789abcdefghij";
pub const CLUSTER_SECRET: &str = "cluster-membership-test-secret-0123";
/// Small liveness timings so the test stays short.
pub const HEARTBEAT: &str = "200ms";
pub const NODE_DOWN_TIMEOUT: &str = "2s";
/// Longest wait for anything (a start, a join, a liveness change).
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(100);

/// Ports handed to nodes come from below Linux's ephemeral range (32768 and up), so no
/// outgoing connection can take one between the check here and the node's own bind.
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback port for a node, never handed out twice in this process. Nodes keep
/// the same port across restarts (their address is part of the agreed ring).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let span = NODE_PORTS.end - NODE_PORTS.start;
    // Start at a per-process offset so concurrent test binaries rarely probe alike.
    let offset = (std::process::id() % u32::from(span)) as u16;
    for i in 0..span {
        let port = NODE_PORTS.start + (offset + i) % span;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {NODE_PORTS:?}");
}

pub struct Node {
    pub name: &'static str,
    pub root: PathBuf,
    pub http_port: u16,
    pub s3_port: u16,
    pub child: Option<Child>,
    pub starts: usize,
}

impl Node {
    pub fn new(root: &Path, name: &'static str) -> Node {
        Node {
            name,
            root: root.join(name),
            http_port: free_port(),
            s3_port: free_port(),
            child: None,
            starts: 0,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join(format!("log-{}.txt", self.starts))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn start(&mut self, secret: &str, extra: &[&str]) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        std::fs::create_dir_all(&self.root).expect("node dir");
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucketdb"));
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("BUCKETDB_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("server")
            .arg("--storage-path")
            .arg(self.root.join("data"))
            .arg("--metadata-path")
            .arg(self.root.join("meta"))
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--s3-addr", &format!("127.0.0.1:{}", self.s3_port)])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args(["--heartbeat-interval", HEARTBEAT])
            .args(["--node-down-timeout", NODE_DOWN_TIMEOUT])
            .args(extra)
            .env("BUCKETDB_CLUSTER_SECRET", secret)
            // TEST_NODE_LOG overrides the nodes' log filter when debugging a test.
            .env(
                "BUCKETDB_LOG",
                std::env::var("TEST_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        self.child = Some(cmd.spawn().expect("spawning bucketdb"));
    }

    /// SIGKILL and reap.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + DEADLINE;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "{} exited with {status}", self.name);
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("{} did not stop; log:\n{}", self.name, self.log());
                }
            }
        }
    }

    /// The exit status, once the process has exited by itself (with a deadline).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let c = self.child.as_mut().expect("running");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// `GET path` on a node's REST API with the root credentials: the JSON of a success.
pub async fn get_json(c: &reqwest::Client, n: &Node, path: &str) -> Option<Value> {
    let resp = c
        .get(n.url(path))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// An unlabelled counter or gauge from a node's `/metrics`.
pub async fn metric(c: &reqwest::Client, n: &Node, name: &str) -> Option<u64> {
    let text = c
        .get(n.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .map(|v| v as u64)
}

pub async fn cluster(c: &reqwest::Client, n: &Node) -> Option<Value> {
    get_json(c, n, "/cluster").await
}

pub async fn ready(c: &reqwest::Client, n: &Node) -> bool {
    matches!(c.get(n.url("/health/ready")).send().await, Ok(r) if r.status() == 200)
}

/// Poll `f` until it returns `Some`, or fail after [`DEADLINE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, nodes: &[&Node], mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- {} ---\n{}", n.name, n.log()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Each member's liveness in `status`, by address port.
pub fn liveness_of(status: &Value, port: u16) -> Option<String> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["address"].as_str() == Some(&format!("127.0.0.1:{port}")))
        .and_then(|n| n["liveness"].as_str().map(String::from))
}

/// The ring version when `nodes` all report the same active members (all of them), all
/// alive.
pub async fn agreed_ring(c: &reqwest::Client, nodes: &[&Node]) -> Option<u64> {
    let mut version = None;
    for n in nodes {
        let s = cluster(c, n).await?;
        let members = s["nodes"].as_array()?;
        if members.len() != nodes.len()
            || members
                .iter()
                .any(|m| m["state"] != "active" || m["liveness"] != "alive")
        {
            return None;
        }
        let v = s["ringVersion"].as_u64()?;
        if version.is_some_and(|x| x != v) {
            return None;
        }
        version = Some(v);
    }
    version
}

/// Start `a` with `--bootstrap` and then `b` and `c` joining it, each with `args` too;
/// returns once all three agree on a ring of three active members.
pub async fn form_three(
    c: &reqwest::Client,
    a: &mut Node,
    b: &mut Node,
    cc: &mut Node,
    args: &[&str],
) {
    let join_a = a.url("");
    let with = |extra: &[&str]| -> Vec<String> {
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let start = |n: &mut Node, extra: &[&str]| {
        let v = with(extra);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        n.start(CLUSTER_SECRET, &refs);
    };
    start(a, &["--bootstrap"]);
    eventually("the first node ready", &[&*a], || async {
        ready(c, a).await.then_some(())
    })
    .await;
    start(b, &["--join", &join_a]);
    start(cc, &["--join", &join_a]);
    let all = [&*a, &*b, &*cc];
    eventually("3 members", &all, || agreed_ring(c, &all)).await;
}

/// Start `nodes[0]` with `--bootstrap` and the others joining it, each with `args` too;
/// returns once all agree on a ring of them all, active.
pub async fn form_cluster(c: &reqwest::Client, nodes: &mut [Node], args: &[&str]) {
    let (first, rest) = nodes.split_first_mut().expect("at least one node");
    let join = first.url("");
    let start = |n: &mut Node, extra: &[&str]| {
        let v: Vec<&str> = args.iter().chain(extra).copied().collect();
        n.start(CLUSTER_SECRET, &v);
    };
    start(first, &["--bootstrap"]);
    eventually("the first node ready", &[&*first], || async {
        ready(c, first).await.then_some(())
    })
    .await;
    for n in rest.iter_mut() {
        start(n, &["--join", &join]);
    }
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("every member active", &all, || agreed_ring(c, &all)).await;
}

/// An aws-sdk-s3 client for a node's S3 port: path style, the test keys, no retries
/// (a failure must show as it is).
pub fn s3_client(n: &Node) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::{Credentials, Region};
    let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bucketdb-tests");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .credentials_provider(credentials)
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{}", n.s3_port))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The HTTP status of a failed S3 call (0 when it got no answer).
pub fn s3_status<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

/// A node's command line: the test file's common flags, then `extra`.
pub fn with_args<'a>(common: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    common.iter().chain(extra).copied().collect()
}
