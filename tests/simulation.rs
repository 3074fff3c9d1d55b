//! A deterministic simulation of a cluster: 5 nodes at replication factor 3 for the
//! randomized workload, 3 for the targeted scenarios. A random workload of uploads,
//! deletes and listings runs through random nodes while nodes are partitioned, healed, stopped and
//! restarted. Afterwards every node must hold exactly what the acknowledged operations
//! imply: the last acknowledged write of each key, and nothing for keys whose last
//! acknowledged operation was a delete (deleted objects never come back; writes refused
//! with 503 never appear).
//!
//! Everything a run depends on derives from its seed:
//! - the workload, the object bodies and the fault schedule;
//! - every node's randomness (node ids, version and upload ids, temp file names);
//! - the network: node-to-node calls, forwarded requests and the test's own requests
//!   travel over in-memory pipes, each delayed by a seeded latency;
//! - time and interleaving: all nodes run as tasks of one current-thread tokio runtime
//!   whose clock is paused (it jumps to the next timer only when every task waits), the
//!   nodes' wall clocks read that simulated time, and disk work runs inline on the one
//!   thread (see `bucketdb_store::blocking`), so the scheduler decides every order.
//!
//! A failure prints its seed; `BUCKETDB_SIM_SEED=<seed>` replays it, and a test checks
//! that two runs of one seed are the same run (the same outcomes at the same simulated
//! times, the same messages in the same order). `BUCKETDB_SIM_SEEDS=<n>` runs more
//! seeds.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bucketdb::server::{NodeEnv, RunningServer, start_with_env};
use bucketdb_cluster::membership::ElectionTimeout;
use bucketdb_cluster::membership::network::{
    MAX_INTERNAL_BODY_BYTES, PATH_REPLICATE, PeerConnection, Transport, TransportError,
    TransportResponse,
};
use bucketdb_cluster::ring::Ring;
use bucketdb_store::{Clock, SeededRandom};
use bytes::Bytes;
use common::{ACCESS_KEY, SECRET_KEY, test_config};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Nodes of the randomized workload: more than the replication factor (3), so each
/// node holds only part of the keys.
const WORKLOAD_NODES: usize = 5;
/// Nodes of the targeted scenarios below.
const SCENARIO_NODES: usize = 3;
const KEYS: usize = 6;
const OPS_PER_SEED: usize = 60;
/// Chance that a step of the quorum-mode workload ends with a listing through a random
/// node, checked against the model.
const LIST_CHANCE: f64 = 0.3;
/// Seeds per test run unless `BUCKETDB_SIM_SEEDS` says otherwise.
const DEFAULT_SEEDS: u64 = 3;
const CLUSTER_SECRET: &str = "simulation-cluster-secret-0123456";
const BUCKET: &str = "sim";
/// Longest (simulated) wait for the cluster to form, or to converge after the workload.
const SETTLE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);
/// The test's requests give up after this long (simulated): longer than a node waits
/// for a coordinator's answer to a forwarded request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2 * 3_600);
/// Range of the one-way delay of every call and connection, microseconds.
const LATENCY_US: std::ops::RangeInclusive<u64> = 200..=5_000;
/// Bytes buffered in each direction of an in-memory connection.
const PIPE_BYTES: usize = 64 * 1024;
/// Largest response the test reads (bodies in the workload are far smaller).
const MAX_CLIENT_RESPONSE_BYTES: usize = 16 << 20;
/// The simulated wall clock starts at 2026-01-01T00:00:00Z (Unix ms).
const EPOCH_MS: u64 = 1_767_225_600_000;
/// The test's requests come from here; it is never partitioned.
const CLIENT: &str = "client";

/// Wall-clock time of the simulated world: the epoch plus the runtime's (paused) time.
struct SimClock {
    start: Instant,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        EPOCH_MS + self.start.elapsed().as_millis() as u64
    }
}

/// An open in-memory connection: who opened it to whom, and the task serving its far
/// end (aborting it breaks the connection, as a crash or partition would).
struct Conn {
    from: String,
    to: String,
    served_by: JoinHandle<()>,
    gate: Arc<Gate>,
}

/// Stops a connection's far end dead while shut (no bytes either way, no error): how a
/// connection looks when the network drops packets instead of refusing them.
#[derive(Default)]
struct Gate {
    shut: std::sync::atomic::AtomicBool,
    waiting: Mutex<Vec<std::task::Waker>>,
    /// Far ends closed while shut: their closing is not seen across the silence until
    /// the gate opens.
    closed_in_silence: Mutex<Vec<DuplexStream>>,
}

impl Gate {
    fn set(&self, shut: bool) {
        self.shut.store(shut, std::sync::atomic::Ordering::SeqCst);
        if !shut {
            for waker in std::mem::take(&mut *self.waiting.lock().expect("waiting")) {
                waker.wake();
            }
            self.closed_in_silence.lock().expect("closed").clear();
        }
    }

    fn holds_closed(&self) -> bool {
        !self.closed_in_silence.lock().expect("closed").is_empty()
    }

    /// True (and the task parked until the gate opens) while shut.
    fn holds(&self, cx: &std::task::Context<'_>) -> bool {
        if !self.shut.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let mut waiting = self.waiting.lock().expect("waiting");
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        true
    }
}

/// A connection's far end behind a [`Gate`].
struct Gated {
    /// Always `Some` until dropped.
    inner: Option<DuplexStream>,
    gate: Arc<Gate>,
}

impl Gated {
    /// Run one I/O step on the inner stream, unless the gate holds it (then the task
    /// waits for the gate to open).
    fn step<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        op: impl FnOnce(
            std::pin::Pin<&mut DuplexStream>,
            &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        if self.gate.holds(cx) {
            return std::task::Poll::Pending;
        }
        match self.inner.as_mut() {
            Some(inner) => op(std::pin::Pin::new(inner), cx),
            None => std::task::Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        if self.gate.shut.load(std::sync::atomic::Ordering::SeqCst)
            && let Some(inner) = self.inner.take()
        {
            self.gate
                .closed_in_silence
                .lock()
                .expect("closed")
                .push(inner);
        }
    }
}

impl tokio::io::AsyncRead for Gated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.step(cx, |inner, cx| inner.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Gated {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.step(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.step(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.step(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

/// Everything the network did, in order, with the simulated time: two runs of one seed
/// must agree on all of it.
#[derive(Default)]
struct Trace {
    events: Vec<String>,
}

/// The simulated network between the nodes and the test.
struct Net {
    /// Each running node's HTTP application, by its (stable) simulated address.
    apps: Mutex<BTreeMap<String, axum::Router>>,
    isolated: Mutex<BTreeSet<String>>,
    /// Nodes whose traffic the network silently drops (connections hang, no errors).
    silenced: Mutex<BTreeSet<String>>,
    conns: Mutex<Vec<Conn>>,
    /// Calls lost on their way: (to node, internal path).
    dropped: Mutex<BTreeSet<(String, &'static str)>>,
    latency: Mutex<StdRng>,
    trace: Mutex<Trace>,
    started: Instant,
}

impl Net {
    fn new(seed: u64) -> Net {
        Net {
            apps: Mutex::default(),
            isolated: Mutex::default(),
            silenced: Mutex::default(),
            conns: Mutex::default(),
            dropped: Mutex::default(),
            latency: Mutex::new(StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00)),
            trace: Mutex::default(),
            started: Instant::now(),
        }
    }

    fn record(&self, event: String) {
        let at = self.started.elapsed().as_micros();
        let mut t = self.trace.lock().expect("trace");
        t.events.push(format!("@{at} us {event}"));
    }

    fn take_trace(&self) -> Vec<String> {
        std::mem::take(&mut self.trace.lock().expect("trace").events)
    }

    fn plug(&self, node: &str, app: axum::Router) {
        self.apps
            .lock()
            .expect("apps")
            .insert(node.to_string(), app);
    }

    /// Take `node` off the network: it stops answering, and every connection from or to
    /// it breaks.
    async fn unplug(&self, node: &str) {
        self.apps.lock().expect("apps").remove(node);
        self.cut(|c| c.from == node || c.to == node).await;
    }

    /// Break the connections `crosses` picks, and wait until they are gone (their
    /// tasks hold the far node's application).
    async fn cut(&self, crosses: impl Fn(&Conn) -> bool) {
        let cut: Vec<Conn> = {
            let mut conns = self.conns.lock().expect("conns");
            let (cut, kept) = std::mem::take(&mut *conns).into_iter().partition(crosses);
            *conns = kept;
            cut
        };
        for c in cut {
            c.served_by.abort();
            let _ = c.served_by.await;
        }
    }

    /// Lose (or, with `lose` false, deliver again) every call to `path` on node `to`.
    fn drop_calls(&self, to: &str, path: &'static str, lose: bool) {
        let mut dropped = self.dropped.lock().expect("dropped");
        if lose {
            dropped.insert((to.to_string(), path));
        } else {
            dropped.remove(&(to.to_string(), path));
        }
    }

    /// Cut `node` off from the other nodes (the test still reaches it), or heal it.
    async fn isolate(&self, node: &str, cut: bool) {
        {
            let mut isolated = self.isolated.lock().expect("isolated");
            if cut {
                isolated.insert(node.to_string());
            } else {
                isolated.remove(node);
            }
        }
        if cut {
            self.cut(|c| c.from != CLIENT && (c.from == node || c.to == node))
                .await;
        }
    }

    fn is_silenced(&self, from: &str, to: &str) -> bool {
        let silenced = self.silenced.lock().expect("silenced");
        from != CLIENT && (silenced.contains(from) || silenced.contains(to))
    }

    /// Silently drop every packet from or to `node` (other nodes'; the test still
    /// reaches it): its open connections go quiet without breaking and new ones never
    /// complete. With `silent` false, traffic flows again.
    fn silence(&self, node: &str, silent: bool) {
        {
            let mut silenced = self.silenced.lock().expect("silenced");
            if silent {
                silenced.insert(node.to_string());
            } else {
                silenced.remove(node);
            }
        }
        for c in self.conns.lock().expect("conns").iter() {
            if c.from != CLIENT && (c.from == node || c.to == node) {
                c.gate.set(silent);
            }
        }
    }

    /// Open a connection from `from` to `to` after a seeded delay, unless the network
    /// has cut `to` off from `from` or `to` is not running.
    async fn connect(&self, from: &str, to: &str) -> Result<DuplexStream, &'static str> {
        let delay = self
            .latency
            .lock()
            .expect("latency")
            .random_range(LATENCY_US);
        tokio::time::sleep(Duration::from_micros(delay)).await;
        let verdict = {
            let isolated = self.isolated.lock().expect("isolated");
            let apps = self.apps.lock().expect("apps");
            if from != CLIENT && !apps.contains_key(from) {
                // A crashed node's leftover tasks reach no one.
                Err("crashed")
            } else if from != CLIENT && isolated.contains(from) != isolated.contains(to) {
                Err("partitioned")
            } else {
                apps.get(to).cloned().ok_or("stopped")
            }
        };
        self.record(format!(
            "connect {from} -> {to}: {:?}",
            verdict.as_ref().err()
        ));
        let app = verdict?;
        if self.is_silenced(from, to) {
            // A connection attempt into silence never completes; callers time out.
            std::future::pending::<()>().await;
        }
        let (near, far) = tokio::io::duplex(PIPE_BYTES);
        let gate = Arc::new(Gate::default());
        let far = Gated {
            inner: Some(far),
            gate: gate.clone(),
        };
        let served_by = tokio::spawn(async move {
            let _ = bucketdb_api::http1_connection(far, app).await;
        });
        let mut conns = self.conns.lock().expect("conns");
        // A connection is forgotten once served to its end, unless its closing is still
        // held up by silence.
        conns.retain(|c| !c.served_by.is_finished() || c.gate.holds_closed());
        conns.push(Conn {
            from: from.to_string(),
            to: to.to_string(),
            served_by,
            gate,
        });
        Ok(near)
    }
}

/// One HTTP/1 request over a fresh in-memory connection: (status, body).
async fn exchange(
    stream: DuplexStream,
    request: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(u16, Bytes), String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn host_of(address: &str) -> String {
    address
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// One node's side of the network: calls from `me`.
struct Link {
    me: String,
    net: Arc<Net>,
}

#[async_trait::async_trait]
impl Transport for Link {
    async fn dial(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<PeerConnection, TransportError> {
        let to = host_of(address);
        let unreachable = |reason: &str| TransportError::Unreachable {
            address: to.clone(),
            reason: reason.to_string(),
        };
        match tokio::time::timeout(timeout, self.net.connect(&self.me, &to)).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(why)) => Err(unreachable(why)),
            Err(_) => Err(unreachable("no connection in time")),
        }
    }

    async fn post(
        &self,
        address: &str,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<TransportResponse, TransportError> {
        let to = host_of(address);
        let lost = self
            .net
            .dropped
            .lock()
            .expect("dropped")
            .iter()
            .any(|(t, p)| *t == to && *p == path);
        if lost {
            self.net.record(format!("lost {} -> {to} {path}", self.me));
            return Err(TransportError::Unreachable {
                address: to,
                reason: "the simulated network lost the call".into(),
            });
        }
        let call = async {
            let stream = self.net.connect(&self.me, &to).await.map_err(|why| {
                TransportError::Unreachable {
                    address: to.clone(),
                    reason: why.to_string(),
                }
            })?;
            let mut request = http::Request::post(path).header("host", &to);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request =
                request
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| TransportError::Failed {
                        address: to.clone(),
                        reason: e.to_string(),
                    })?;
            exchange(stream, request, MAX_INTERNAL_BODY_BYTES)
                .await
                .map_err(|reason| TransportError::Failed {
                    address: to.clone(),
                    reason,
                })
        };
        let outcome = match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::TimedOut {
                address: to.clone(),
                reason: format!("no answer within {timeout:?}"),
            }),
        };
        self.net.record(format!(
            "post {} -> {to} {path}: {:?}",
            self.me,
            outcome
                .as_ref()
                .map(|(status, _)| *status)
                .map_err(|e| e.to_string())
        ));
        let (status, body) = outcome?;
        Ok(TransportResponse {
            status,
            body: body.to_vec(),
        })
    }
}

/// A response to one of the test's requests.
struct Reply {
    status: u16,
    body: Bytes,
}

struct SimNode {
    root: PathBuf,
    sim_addr: String,
    boots: u64,
    server: Option<RunningServer>,
}

struct Sim {
    seed: u64,
    quorum: bool,
    net: Arc<Net>,
    clock: Arc<SimClock>,
    nodes: Vec<SimNode>,
    _dir: tempfile::TempDir,
}

impl Sim {
    async fn start(seed: u64, quorum: bool, count: usize) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (0..count)
            .map(|i| SimNode {
                root: dir.path().join(format!("n{i}")),
                sim_addr: format!("sim-node-{i}:9080"),
                boots: 0,
                server: None,
            })
            .collect();
        let mut sim = Sim {
            seed,
            quorum,
            net: Arc::new(Net::new(seed)),
            clock: Arc::new(SimClock {
                start: Instant::now(),
            }),
            nodes,
            _dir: dir,
        };
        for i in 0..count {
            sim.boot(i).await;
        }
        sim.wait(
            "every member active",
            |s| async move { s.ring_agreed().await },
        )
        .await;
        let r = sim
            .send(0, "PUT", &format!("/buckets/{BUCKET}"), None)
            .await
            .expect("create bucket");
        assert_eq!(r.status, 201, "seed {seed}");
        sim.wait("the bucket on every node", |s| async move {
            for i in 0..s.nodes.len() {
                s.json(i, &format!("/buckets/{BUCKET}")).await?;
            }
            Some(())
        })
        .await;
        sim
    }

    /// Milliseconds of simulated time since the start.
    fn now_ms(&self) -> u128 {
        self.clock.start.elapsed().as_millis()
    }

    /// Start node `i`; the first start bootstraps (node 0) or joins.
    async fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let first = !node.root.exists();
        node.boots += 1;
        let mut config = test_config(&node.root);
        config.cluster_secret = Some(CLUSTER_SECRET.into());
        config.advertise_addr = Some(node.sim_addr.clone());
        config.heartbeat_interval = Duration::from_millis(100);
        config.node_down_timeout = Duration::from_secs(1);
        config.anti_entropy_interval = Duration::from_secs(1);
        config.replication_timeout = Duration::from_secs(1);
        config.quorum_required = self.quorum;
        config.bootstrap = first && i == 0;
        config.join = (first && i > 0).then(|| format!("http://{}", self.nodes[0].sim_addr));
        // Requests cut short by a crash can leave tasks behind (a commit runs in its own
        // task, raft's replication streams wind down). They reach no one any more and end
        // soon; a killed process's would be gone before its restart, so until they have
        // released the node's stores, starting again fails, and is retried.
        let deadline = Instant::now() + SETTLE;
        let server = loop {
            match start_with_env(config.clone(), self.node_env(i)).await {
                Ok(server) => break server,
                Err(e) if Instant::now() < deadline => {
                    self.net.record(format!("node {i} cannot start yet: {e}"));
                    // It may have been plugged in before the part that failed.
                    self.net.unplug(&self.nodes[i].sim_addr).await;
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => panic!("seed {}: starting node {i}: {e}", self.seed),
            }
        };
        self.nodes[i].server = Some(server);
    }

    /// Node `i`'s surroundings: its side of the network, the simulated clock, and
    /// randomness seeded by the run's seed, the node and its start.
    fn node_env(&self, i: usize) -> NodeEnv {
        let node = &self.nodes[i];
        let (net, addr) = (self.net.clone(), node.sim_addr.clone());
        NodeEnv {
            transport: Arc::new(Link {
                me: node.sim_addr.clone(),
                net: self.net.clone(),
            }),
            clock: self.clock.clone(),
            random: Arc::new(SeededRandom::new(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add((i as u64) << 32 | node.boots),
            )),
            also_serve: Some(Box::new(move |app| net.plug(&addr, app))),
            election_timeout: ElectionTimeout::PinnedById,
        }
    }

    async fn stop(&mut self, i: usize) {
        self.net.unplug(&self.nodes[i].sim_addr).await;
        let Some(server) = self.nodes[i].server.take() else {
            return;
        };
        server
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("seed {}: stopping node {i}: {e}", self.seed));
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].server.is_some())
            .collect()
    }

    /// A request from the test to node `i` (`None`: not running, or no answer).
    async fn send(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Option<Reply> {
        self.nodes[i].server.as_ref()?;
        let to = &self.nodes[i].sim_addr;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCESS_KEY}:{SECRET_KEY}"));
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", to)
            .header("authorization", format!("Basic {auth}"))
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .ok()?;
        let call = async {
            let stream = self.net.connect(CLIENT, to).await.ok()?;
            exchange(stream, request, MAX_CLIENT_RESPONSE_BYTES)
                .await
                .ok()
        };
        let (status, body) = tokio::time::timeout(CLIENT_TIMEOUT, call).await.ok()??;
        Some(Reply { status, body })
    }

    /// The status of an upload (`POST`) or delete of `key` through node `i`.
    async fn status(&self, i: usize, method: &str, key: &str, body: &[u8]) -> Option<u16> {
        let body = (!body.is_empty()).then(|| body.to_vec());
        let r = self
            .send(i, method, &format!("/objects/{BUCKET}/{key}"), body)
            .await?;
        Some(r.status)
    }

    async fn json(&self, i: usize, path: &str) -> Option<Value> {
        let r = self.send(i, "GET", path, None).await?;
        if !(200..300).contains(&r.status) {
            return None;
        }
        serde_json::from_slice(&r.body).ok()
    }

    async fn ring_agreed(&self) -> Option<()> {
        let mut versions = HashSet::new();
        for i in 0..self.nodes.len() {
            let s = self.json(i, "/cluster").await?;
            let members = s["nodes"].as_array()?;
            if members.len() != self.nodes.len() || members.iter().any(|m| m["state"] != "active") {
                return None;
            }
            versions.insert(s["ringVersion"].as_u64()?);
        }
        (versions.len() == 1).then_some(())
    }

    /// Poll `f` until it holds, for at most `SETTLE` of simulated time.
    async fn wait<'a, F, Fut>(&'a self, what: &str, mut f: F)
    where
        F: FnMut(&'a Sim) -> Fut,
        Fut: Future<Output = Option<()>>,
    {
        let deadline = Instant::now() + SETTLE;
        while f(self).await.is_none() {
            assert!(
                Instant::now() < deadline,
                "seed {} (quorum {}): timed out waiting for {what}",
                self.seed,
                self.quorum
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every node's own copy of `key`: the ETag of its current version, or `None`.
    async fn local_etag(&self, i: usize, key: &str) -> Option<Option<String>> {
        let v = self.json(i, &format!("/versions/{BUCKET}/{key}")).await?;
        let latest = v["versions"].as_array()?.first().cloned();
        Some(match latest {
            Some(l) if l["deleteMarker"] == false => l["etag"].as_str().map(String::from),
            _ => None,
        })
    }

    /// The indexes of `key`'s replicas, from the agreed ring as node `via` reports it.
    async fn replicas(&self, via: usize, key: &str) -> Option<Vec<usize>> {
        let status = self.json(via, "/cluster").await?;
        let members = status["nodes"].as_array()?;
        let ids: Vec<String> = members
            .iter()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect();
        let ring = Ring::new(ids, status["replicationFactor"].as_u64()? as usize).ok()?;
        ring.replicas(BUCKET, key)
            .into_iter()
            .map(|id| {
                let m = members.iter().find(|m| m["id"] == id)?;
                let address = m["address"].as_str()?;
                self.nodes.iter().position(|n| n.sim_addr == address)
            })
            .collect()
    }

    /// The bucket as a listing through node `i` shows it, paged by `limit`: each key's
    /// ETag. `Err(status)` when a page was refused; `None` without an answer.
    async fn list(&self, i: usize, limit: usize) -> Option<Result<BTreeMap<String, String>, u16>> {
        let mut listed = BTreeMap::new();
        let mut cursor = String::new();
        for _ in 0..=KEYS {
            let path = format!("/objects/{BUCKET}?limit={limit}&cursor={cursor}");
            let r = self.send(i, "GET", &path, None).await?;
            if r.status != 200 {
                return Some(Err(r.status));
            }
            let page: Value = serde_json::from_slice(&r.body).ok()?;
            let objects = page["objects"].as_array()?;
            assert!(objects.len() <= limit, "a page larger than its limit");
            for o in objects {
                let key = o["key"].as_str()?.to_string();
                let etag = o["etag"].as_str()?.to_string();
                assert!(
                    listed.insert(key.clone(), etag).is_none(),
                    "seed {}: {key} listed twice",
                    self.seed
                );
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return Some(Ok(listed)),
            }
        }
        panic!("seed {}: a listing of {KEYS} keys did not end", self.seed);
    }

    async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Run `scenario` as the simulated world: one thread, a paused clock, and (when built
/// with `--cfg tokio_unstable`, as `.cargo/config.toml` does) the scheduler's own
/// random choices seeded too.
fn simulate<T>(seed: u64, scenario: impl Future<Output = T>) -> T {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    builder.build().expect("runtime").block_on(scenario)
}

fn etag_of(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// What a run did: its log (each step with its simulated start time and outcome) and
/// everything its network carried.
#[derive(Debug, PartialEq)]
struct Outcome {
    log: Vec<String>,
    network: Vec<String>,
    finished_at_ms: u128,
}

/// What the operations so far allow each key to hold.
#[derive(Default)]
struct Model {
    /// The last acknowledged write (`Some`) or delete (`None`) of each key.
    acked: BTreeMap<String, Option<Vec<u8>>>,
    /// Keys whose later delete has an unknown outcome: cut short by a crash. (A delete
    /// refused with 503 in quorum mode was never made.)
    maybe_deleted: BTreeSet<String>,
    /// Bodies of later writes with an unknown outcome (cut short by a crash): each may
    /// or may not have been made.
    maybe_written: BTreeMap<String, Vec<Vec<u8>>>,
    /// The tags acknowledged tag changes of each key set, in order, since the key's
    /// last acknowledged write or delete.
    tagged: BTreeMap<String, Vec<String>>,
    /// Tags of later tag changes with an unknown outcome (cut short by a crash).
    maybe_tagged: BTreeMap<String, Vec<String>>,
}

impl Model {
    fn acknowledged(&mut self, key: &str, body: Option<Vec<u8>>) {
        self.maybe_deleted.remove(key);
        self.maybe_written.remove(key);
        self.tagged.remove(key);
        self.maybe_tagged.remove(key);
        self.acked.insert(key.to_string(), body);
    }

    fn tag_acknowledged(&mut self, key: &str, tag: String) {
        self.maybe_tagged.remove(key);
        self.tagged.entry(key.to_string()).or_default().push(tag);
    }

    /// The tags `key` may end with (`None`: no tag), where its body is certain (a tag
    /// change may have applied to a version whose fate is open); `None` if it is not.
    /// In quorum mode the last acknowledged tag stays. In async mode both sides of a
    /// partition take changes, so a tag change made on a side holding an older version
    /// is lost when the newer one arrives, leaving an earlier tag (or none) in place.
    fn allowed_tags(&self, key: &str, quorum: bool) -> Option<Vec<Option<&str>>> {
        if self.maybe_deleted.contains(key) || self.maybe_written.contains_key(key) {
            return None;
        }
        let tagged = self.tagged.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut out = vec![tagged.last().map(String::as_str)];
        if !quorum {
            out.push(None);
            out.extend(tagged.iter().map(|t| Some(t.as_str())));
        }
        for tag in self.maybe_tagged.get(key).into_iter().flatten() {
            out.push(Some(tag));
        }
        Some(out)
    }

    /// The bodies `key` may end with (`None`: deleted or never written).
    fn allowed(&self, key: &str) -> Vec<Option<&[u8]>> {
        let mut out = vec![self.acked.get(key).and_then(|b| b.as_deref())];
        if self.maybe_deleted.contains(key) {
            out.push(None);
        }
        for body in self.maybe_written.get(key).into_iter().flatten() {
            out.push(Some(body));
        }
        out
    }
}

/// Longest simulated pause between two steps of the workload, milliseconds: longer
/// than `node_down_timeout` and the anti-entropy interval the simulation configures.
const PAUSE_MAX_MS: u64 = 1_500;

/// Largest simulated time a request runs before the node chosen to crash goes down,
/// microseconds: a few network hops, so crashes land before, during and after writes.
const CRASH_WITHIN_US: u64 = 40_000;

fn random_body(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.random_bool(0.3) {
        rng.random_range(70_000..200_000)
    } else {
        rng.random_range(1..2_000)
    };
    (0..len).map(|_| rng.random()).collect()
}

/// One seeded run: the workload with faults, then healing and the final check.
async fn run(seed: u64, quorum: bool) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::start(seed, quorum, WORKLOAD_NODES).await;
    let mut model = Model::default();
    let mut isolated: Option<usize> = None;
    let mut log = Vec::new();
    for step_no in 0..OPS_PER_SEED {
        // Time passes between steps, so heartbeats, liveness timeouts, replication
        // retries and anti-entropy rounds interleave with the workload.
        let pause = rng.random_range(0..=PAUSE_MAX_MS);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // Steps are logged with the simulated time they started.
        let step = format!("{step_no} @{} ms", sim.now_ms());
        // Each tag change sets a tag no other step sets.
        let tag = format!("t{step_no}");
        let roll = rng.random_range(0..100);
        let running = sim.running();
        let via = running[rng.random_range(0..running.len())];
        let key = format!("key-{}", rng.random_range(0..KEYS));
        let path = format!("/objects/{BUCKET}/{key}");
        if roll < 42 {
            let body = random_body(&mut rng);
            let r = sim.send(via, "POST", &path, Some(body.clone())).await;
            let status = r.as_ref().map(|r| r.status);
            log.push(format!(
                "{step}: PUT {key} ({} B) via n{via} -> {status:?}",
                body.len()
            ));
            match status {
                Some(201) => {
                    // Read-your-write through the node that acknowledged it.
                    let got = sim.send(via, "GET", &path, None).await;
                    let got = match got {
                        Some(r) if r.status == 200 => Some(r.body.to_vec()),
                        _ => None,
                    };
                    assert!(
                        got.as_ref() == Some(&body),
                        "seed {seed}: an acknowledged write is not readable where it was made\n{}",
                        log.join("\n")
                    );
                    model.acknowledged(&key, Some(body));
                }
                Some(503) if quorum => {}
                other => panic!("seed {seed}: PUT answered {other:?}\n{}", log.join("\n")),
            }
        } else if roll < 50 {
            let r = sim
                .send(via, "PUT", &format!("{path}/tags"), Some(tag_body(&tag)))
                .await;
            let status = r.as_ref().map(|r| r.status);
            log.push(format!(
                "{step}: PUT {key}/tags {tag} via n{via} -> {status:?}"
            ));
            match status {
                Some(200) => model.tag_acknowledged(&key, tag),
                // No current version where the change was made.
                Some(404) => {}
                // Refused: prepared on too few replicas, so never made anywhere.
                Some(503) if quorum => {}
                other => panic!("seed {seed}: TAG answered {other:?}\n{}", log.join("\n")),
            }
        } else if roll < 68 {
            let r = sim.send(via, "DELETE", &path, None).await;
            let status = r.as_ref().map(|r| r.status);
            log.push(format!("{step}: DELETE {key} via n{via} -> {status:?}"));
            match status {
                Some(204) => model.acknowledged(&key, None),
                // Refused: prepared on too few replicas, so never made anywhere.
                Some(503) if quorum => {}
                other => panic!("seed {seed}: DELETE answered {other:?}\n{}", log.join("\n")),
            }
        } else if roll < 80 {
            match isolated.take() {
                Some(n) => {
                    sim.net.isolate(&sim.nodes[n].sim_addr, false).await;
                    log.push(format!("{step}: heal n{n}"));
                }
                None => {
                    let n = rng.random_range(0..sim.nodes.len());
                    sim.net.isolate(&sim.nodes[n].sim_addr, true).await;
                    isolated = Some(n);
                    log.push(format!("{step}: isolate n{n}"));
                }
            }
        } else if roll < 90 && running.len() == sim.nodes.len() {
            // A node crashes while a write or delete is in flight: it drops off the
            // network at once, cutting every request it was serving or making.
            let victim = rng.random_range(0..sim.nodes.len());
            let kind = rng.random_range(0..10);
            let body = random_body(&mut rng);
            let crash_at = Duration::from_micros(rng.random_range(0..=CRASH_WITHIN_US));
            let (method, target, sent) = match kind {
                0..3 => ("DELETE", path.clone(), None),
                3..5 => ("PUT", format!("{path}/tags"), Some(tag_body(&tag))),
                _ => ("POST", path.clone(), Some(body.clone())),
            };
            let status = {
                let request = sim.send(via, method, &target, sent);
                tokio::pin!(request);
                let done_first = tokio::select! {
                    biased;
                    r = &mut request => Some(r),
                    () = tokio::time::sleep(crash_at) => None,
                };
                sim.net.unplug(&sim.nodes[victim].sim_addr).await;
                let r = match done_first {
                    Some(r) => r,
                    None => request.await,
                };
                r.map(|r| r.status)
            };
            sim.stop(victim).await;
            log.push(format!(
                "{step}: {method} {target} via n{via}, n{victim} crashes after {} us -> {status:?}",
                crash_at.as_micros()
            ));
            match (method, status) {
                ("POST", Some(201)) => model.acknowledged(&key, Some(body)),
                ("DELETE", Some(204)) => model.acknowledged(&key, None),
                ("PUT", Some(200)) => model.tag_acknowledged(&key, tag),
                // No current version where it would have been made: not made.
                ("PUT", Some(404)) => {}
                // Cut short: the client cannot know whether it happened.
                ("POST", _) => model.maybe_written.entry(key).or_default().push(body),
                ("DELETE", _) => {
                    model.maybe_deleted.insert(key);
                }
                _ => model.maybe_tagged.entry(key).or_default().push(tag),
            }
        } else {
            let stopped: Vec<usize> = (0..sim.nodes.len())
                .filter(|i| !running.contains(i))
                .collect();
            if let Some(&n) = stopped.first() {
                sim.boot(n).await;
                log.push(format!("{step}: restart n{n}"));
            } else {
                let n = running[rng.random_range(0..running.len())];
                sim.stop(n).await;
                log.push(format!("{step}: stop n{n}"));
            }
        }
        // Quorum mode promises list-after-write and list-after-delete through any node:
        // a listing shows what the operations acknowledged so far allow, or is refused.
        if quorum && rng.random_bool(LIST_CHANCE) {
            let running = sim.running();
            let via = running[rng.random_range(0..running.len())];
            let limit = rng.random_range(1..=KEYS);
            match sim.list(via, limit).await {
                Some(Ok(listed)) => {
                    log.push(format!(
                        "{step}: LIST via n{via} (pages of {limit}) -> {listed:?}"
                    ));
                    check_listing(&model, &listed, seed, &log);
                }
                Some(Err(503)) => log.push(format!("{step}: LIST via n{via} -> LIST refused")),
                Some(Err(status)) => {
                    panic!("seed {seed}: LIST answered {status}\n{}", log.join("\n"))
                }
                None => log.push(format!("{step}: LIST via n{via} -> no answer")),
            }
        }
    }
    let count = |what: &str| log.iter().filter(|l| l.contains(what)).count();
    eprintln!(
        "seed {seed} (quorum {quorum}): {} listings checked, {} refused",
        count("LIST") - count("LIST refused"),
        count("LIST refused")
    );
    eprintln!(
        "seed {seed} (quorum {quorum}): {} uploads acknowledged, {} refused (503), {} deletes, \
         {} tag changes ({} acknowledged), {} partitions, {} stops, {} crashes",
        count("-> Some(201)"),
        count("-> Some(503)"),
        count("DELETE"),
        count("/tags"),
        log.iter()
            .filter(|l| l.contains("/tags") && l.ends_with("Some(200)"))
            .count(),
        count("isolate"),
        count(": stop"),
        count("crashes"),
    );
    // Heal everything and let the cluster converge.
    if let Some(n) = isolated {
        sim.net.isolate(&sim.nodes[n].sim_addr, false).await;
    }
    for i in 0..sim.nodes.len() {
        if sim.nodes[i].server.is_none() {
            sim.boot(i).await;
        }
    }
    assert_converges(&sim, &model, &log).await;
    let finished_at_ms = sim.now_ms();
    sim.stop_all().await;
    Outcome {
        log,
        network: sim.net.take_trace(),
        finished_at_ms,
    }
}

/// Wait until every replica of each key holds the same state of it, one `model` allows
/// (its last acknowledged write, or nothing; or an outcome left open), and no other node
/// holds a copy; then check every node serves those bytes and lists exactly those keys.
async fn assert_converges(sim: &Sim, model: &Model, log: &[String]) {
    let (seed, quorum) = (sim.seed, sim.quorum);
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
    let deadline = Instant::now() + SETTLE;
    // The body each key settled on (`None`: absent).
    let mut settled: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    for key in &keys {
        let r = sim.replicas(0, key).await.expect("the ring");
        replicas.insert(key.as_str(), r);
    }
    loop {
        let mut diff = Vec::new();
        for key in &keys {
            let allowed = model.allowed(key);
            let mut seen = Vec::new();
            for i in 0..sim.nodes.len() {
                let have = sim.local_etag(i, key).await;
                if !replicas[key.as_str()].contains(&i) {
                    // Copies made while the replicas were unreachable move to them.
                    if have != Some(None) {
                        diff.push(format!("n{i} {key}: has {have:?} but is not a replica"));
                    }
                    continue;
                }
                let body = have
                    .as_ref()
                    .and_then(|etag| allowed.iter().find(|b| b.map(etag_of) == *etag).copied());
                match body {
                    Some(b) => {
                        settled.insert(key, b);
                    }
                    None => diff.push(format!(
                        "n{i} {key}: has {have:?}, allowed {:?}",
                        allowed.iter().map(|b| b.map(etag_of)).collect::<Vec<_>>()
                    )),
                }
                seen.push(have.flatten());
            }
            if seen.windows(2).any(|w| w[0] != w[1]) {
                diff.push(format!("{key}: the nodes differ: {seen:?}"));
                continue;
            }
            // Where the body is certain, so are the tags every node serves.
            let Some(allowed) = model
                .allowed_tags(key, quorum)
                .filter(|_| matches!(settled.get(key.as_str()), Some(Some(_))))
            else {
                continue;
            };
            let mut served = Vec::new();
            for &i in &replicas[key.as_str()] {
                let tags = sim.json(i, &format!("/objects/{BUCKET}/{key}?tags")).await;
                let tag = tags
                    .as_ref()
                    .and_then(|t| t.get(TAG_NAME))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if tags.is_none() || !allowed.contains(&tag.as_deref()) {
                    diff.push(format!("n{i} {key}: tag {tag:?}, allowed {allowed:?}"));
                }
                served.push(tag);
            }
            if served.windows(2).any(|w| w[0] != w[1]) {
                diff.push(format!("{key}: the nodes serve different tags: {served:?}"));
            }
        }
        if diff.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed} (quorum {quorum}): the nodes did not converge on an allowed \
             state:\n{}\nworkload:\n{}",
            diff.join("\n"),
            log.join("\n")
        );
        tokio::time::sleep(POLL).await;
    }
    // And every node serves exactly those bytes.
    for i in 0..sim.nodes.len() {
        for (key, body) in &settled {
            let r = sim
                .send(i, "GET", &format!("/objects/{BUCKET}/{key}"), None)
                .await
                .expect("GET");
            match body {
                Some(b) => {
                    assert_eq!(r.status, 200, "seed {seed}: {key} via n{i}");
                    assert!(r.body.as_ref() == *b, "seed {seed}: {key} via n{i}");
                }
                None => assert_eq!(r.status, 404, "seed {seed}: deleted {key} via n{i}"),
            }
        }
    }
    let want: BTreeMap<String, String> = settled
        .iter()
        .filter_map(|(k, b)| b.map(|b| (k.to_string(), etag_of(b))))
        .collect();
    for i in 0..sim.nodes.len() {
        let listed = sim.list(i, 1 + i % 3).await.expect("a listing");
        assert_eq!(
            listed,
            Ok(want.clone()),
            "seed {seed} (quorum {quorum}): the settled listing through n{i}"
        );
    }
}

/// Check a listing made during the workload (quorum mode) against what the operations
/// acknowledged so far allow: each key listed with a body it may hold, or absent where
/// it may be.
fn check_listing(model: &Model, listed: &BTreeMap<String, String>, seed: u64, log: &[String]) {
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let got = listed.get(&key);
        let allowed: Vec<Option<String>> =
            model.allowed(&key).iter().map(|b| b.map(etag_of)).collect();
        assert!(
            allowed.contains(&got.cloned()),
            "seed {seed}: {key} listed as {got:?}, allowed {allowed:?}\n{}",
            log.join("\n")
        );
    }
    assert!(
        listed.keys().all(|k| k.starts_with("key-")),
        "seed {seed}: a key never written was listed: {listed:?}"
    );
}

/// The name of the one tag the workload sets.
const TAG_NAME: &str = "step";

/// A tag change's body: the one tag, set to `value`.
fn tag_body(value: &str) -> Vec<u8> {
    serde_json::json!({ TAG_NAME: value })
        .to_string()
        .into_bytes()
}

/// The seeds to run: the one asked for, or a fresh one per run (printed, so a failure
/// can be replayed).
fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("BUCKETDB_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("BUCKETDB_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    let base: u64 = rand::random();
    (0..n).map(|i| base.wrapping_add(i)).collect()
}

#[test]
fn async_replication_converges_on_the_acknowledged_state() {
    for seed in seeds() {
        eprintln!("simulation seed {seed} (async mode)");
        simulate(seed, run(seed, false));
    }
}

#[test]
fn quorum_writes_converge_and_refused_writes_never_appear() {
    for seed in seeds() {
        eprintln!("simulation seed {seed} (quorum mode)");
        simulate(seed, run(seed, true));
    }
}

/// Determinism itself: one seed, run twice, is the same run: every step's outcome at
/// the same simulated time, and the same network messages in the same order.
#[test]
fn a_seed_replays_the_same_run() {
    if cfg!(not(tokio_unstable)) {
        // Without the flag tokio's own choices are not seeded: runs are still checked
        // by the other tests, but two runs need not be identical.
        eprintln!(
            "skipped: built without --cfg tokio_unstable (a RUSTFLAGS variable replaces \
             .cargo/config.toml's flags)"
        );
        return;
    }
    for seed in seeds() {
        eprintln!("simulation seed {seed} (replayed, quorum mode)");
        let first = simulate(seed, run(seed, true));
        let second = simulate(seed, run(seed, true));
        assert_same_run(seed, &first, &second);
    }
}

fn assert_same_run(seed: u64, first: &Outcome, second: &Outcome) {
    if first != second {
        let first_difference = |a: &[String], b: &[String]| {
            let at = a.iter().zip(b).position(|(x, y)| x != y)?;
            Some(format!(
                "#{at}:\n  {}\n  {}",
                a[at.saturating_sub(3)..=at].join("\n  "),
                b[at]
            ))
        };
        panic!(
            "seed {seed}: two runs differ; workload: {:?}; network ({} vs {} events): {:?}; \
             finished at {} vs {} ms",
            first_difference(&first.log, &second.log),
            first.network.len(),
            second.network.len(),
            first_difference(&first.network, &second.network),
            first.finished_at_ms,
            second.finished_at_ms,
        );
    }
}

#[test]
fn a_partitioned_node_cannot_complete_quorum_writes_and_catches_up_after_healing() {
    simulate(0, partitioned_minority());
}

async fn partitioned_minority() {
    let mut sim = Sim::start(0, true, SCENARIO_NODES).await;
    let mut model = Model::default();
    assert_eq!(sim.status(0, "POST", "key-0", b"before").await, Some(201));
    model.acknowledged("key-0", Some(b"before".to_vec()));

    // n2 is cut off: its side has one of three replicas, so its quorum writes fail and
    // leave nothing behind; the majority side goes on.
    sim.net.isolate(&sim.nodes[2].sim_addr, true).await;
    assert_eq!(
        sim.status(2, "POST", "key-1", &[7u8; 100_000]).await,
        Some(503)
    );
    assert_eq!(sim.status(2, "POST", "key-0", b"minority").await, Some(503));
    assert_eq!(sim.status(0, "POST", "key-2", b"majority").await, Some(201));
    model.acknowledged("key-2", Some(b"majority".to_vec()));
    assert_eq!(sim.status(1, "DELETE", "key-0", b"").await, Some(204));
    model.acknowledged("key-0", None);
    model.acknowledged("key-1", None);

    // Healed: n2 catches up, and the refused writes appear nowhere.
    sim.net.isolate(&sim.nodes[2].sim_addr, false).await;
    assert_converges(&sim, &model, &[]).await;
    sim.stop_all().await;
}

/// Quorum reads: a replica that missed a write (its replication calls are lost) still
/// serves the newest version, because it consults a majority first, and repairs its own
/// copy from the answer.
#[test]
fn a_stale_replica_serves_the_newest_version_and_repairs_itself_in_quorum_mode() {
    simulate(0, stale_replica());
}

async fn stale_replica() {
    let mut sim = Sim::start(0, true, SCENARIO_NODES).await;
    let stale = sim.nodes[2].sim_addr.clone();
    assert_eq!(sim.status(0, "POST", "key-0", b"first").await, Some(201));
    let first = etag_of(b"first");
    sim.wait("the first version on n2", |s| {
        let first = first.clone();
        async move { (s.local_etag(2, "key-0").await? == Some(first)).then_some(()) }
    })
    .await;

    // n2 misses the second version: cut off while it is written, and every
    // replication call to it is lost afterwards too.
    sim.net.drop_calls(&stale, PATH_REPLICATE, true);
    sim.net.isolate(&stale, true).await;
    assert_eq!(sim.status(0, "POST", "key-0", b"second").await, Some(201));
    let second = etag_of(b"second");
    sim.wait("the second version committed on n1", |s| {
        let second = second.clone();
        async move { (s.local_etag(1, "key-0").await? == Some(second)).then_some(()) }
    })
    .await;
    sim.net.isolate(&stale, false).await;
    assert_eq!(
        sim.local_etag(2, "key-0").await,
        Some(Some(first.clone())),
        "n2 must still hold the first version"
    );

    let r = sim
        .send(2, "GET", &format!("/objects/{BUCKET}/key-0"), None)
        .await
        .expect("GET through n2");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), b"second");
    sim.wait("n2 repaired by the read", |s| {
        let second = second.clone();
        async move {
            let repaired = s.local_etag(2, "key-0").await? == Some(second);
            let counted = s.json(2, "/stats").await?["readRepairs"].as_u64()? >= 1;
            (repaired && counted).then_some(())
        }
    })
    .await;
    sim.net.drop_calls(&stale, PATH_REPLICATE, false);
    sim.stop_all().await;
}

/// A coordinator that goes silent (its connections stay open but carry nothing, as when
/// a partition drops packets instead of refusing them) does not hold requests forwarded
/// to it forever: they fail with 503 once its answer is overdue (the replication
/// timeout plus a margin after the request was sent), and later ones go elsewhere.
#[test]
fn requests_forwarded_to_a_silent_coordinator_fail_in_time() {
    simulate(0, silent_coordinator());
}

async fn silent_coordinator() {
    let mut sim = Sim::start(0, false, SCENARIO_NODES).await;
    // n1 forwards to every key's coordinator, keeping the connections open.
    for k in 0..KEYS {
        let key = format!("key-{k}");
        assert_eq!(sim.status(1, "POST", &key, b"first").await, Some(201));
    }
    let silent = sim.nodes[0].sim_addr.clone();
    sim.net.silence(&silent, true);
    let mut outcomes = Vec::new();
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let started = Instant::now();
        let status = sim.status(1, "POST", &key, b"second").await;
        outcomes.push((key, status, started.elapsed().as_secs()));
    }
    // None would be the test's own client giving up after CLIENT_TIMEOUT.
    assert!(
        outcomes
            .iter()
            .all(|(_, s, _)| matches!(s, Some(201 | 503))),
        "{outcomes:?}"
    );
    // The answer is given up on after the replication timeout plus the forwarding
    // margin (`FORWARD_ANSWER_SPARE`, one hour), not later.
    assert!(
        outcomes.iter().all(|(_, _, secs)| *secs <= 3_600 + 60),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|(_, s, _)| *s == Some(503)),
        "no request went to the silent coordinator: {outcomes:?}"
    );
    sim.net.silence(&silent, false);
    sim.stop_all().await;
}

/// Quorum mode: a change is acknowledged only once a majority of its replicas applied
/// it, so the other nodes serve it even when its coordinator is cut off the moment it
/// answers (before its replication queue could deliver anything).
#[test]
fn an_acknowledged_quorum_change_is_served_when_its_coordinator_is_cut_off_at_once() {
    simulate(0, coordinator_cut_off_after_answering());
}

async fn coordinator_cut_off_after_answering() {
    let mut sim = Sim::start(0, true, SCENARIO_NODES).await;
    let n0 = sim.nodes[0].sim_addr.clone();
    let mut checked = 0;
    for k in 0..KEYS_TRIED {
        if checked == KEYS_CHECKED {
            break;
        }
        let key = format!("key-{k}");
        let path = format!("/objects/{BUCKET}/{key}");
        let expected = format!("body of {key}");
        let body = expected.clone().into_bytes();
        let before = forwarded_by(&sim, 0).await.expect("stats of n0");
        assert_eq!(sim.status(0, "POST", &key, &body).await, Some(201));
        sim.net.isolate(&n0, true).await;
        // Only keys n0 coordinates (it forwarded nothing) test the point.
        let coordinated_by_n0 = forwarded_by(&sim, 0).await.expect("stats of n0") == before;
        if coordinated_by_n0 {
            let r = sim.send(1, "GET", &path, None).await.expect("GET via n1");
            let got = String::from_utf8_lossy(&r.body);
            assert_eq!((r.status, got.as_ref()), (200, expected.as_str()), "{key}");
        }
        sim.net.isolate(&n0, false).await;
        if !coordinated_by_n0 {
            continue;
        }
        // The same for a delete.
        assert_eq!(sim.status(0, "DELETE", &key, b"").await, Some(204));
        sim.net.isolate(&n0, true).await;
        let r = sim.send(2, "GET", &path, None).await.expect("GET via n2");
        assert_eq!(r.status, 404, "{key}");
        sim.net.isolate(&n0, false).await;
        checked += 1;
    }
    assert_eq!(checked, KEYS_CHECKED, "too few keys coordinated by n0");
    sim.stop_all().await;
}

/// Keys n0 coordinates that the cut-off test checks, and keys it tries to find them.
const KEYS_CHECKED: usize = 3;
const KEYS_TRIED: usize = 40;

/// Requests node `i` forwarded to other coordinators so far.
async fn forwarded_by(sim: &Sim, i: usize) -> Option<u64> {
    sim.json(i, "/stats").await?["forwardedRequests"].as_u64()
}

#[test]
fn a_delete_by_version_id_through_a_coordinator_that_missed_the_version_removes_it_everywhere() {
    simulate(0, delete_of_a_missed_version());
}

/// The liveness node `i` reports for `of`.
async fn liveness_seen(sim: &Sim, i: usize, of: &str) -> Option<String> {
    let status = sim.json(i, "/cluster").await?;
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["address"] == of)
        .and_then(|n| n["liveness"].as_str().map(String::from))
}

/// The version ids node `i` itself holds for `key`.
async fn local_version_ids(sim: &Sim, i: usize, key: &str) -> Option<Vec<String>> {
    let v = sim.json(i, &format!("/versions/{BUCKET}/{key}")).await?;
    v["versions"]
        .as_array()?
        .iter()
        .map(|v| v["versionId"].as_str().map(String::from))
        .collect()
}

async fn delete_of_a_missed_version() {
    let mut sim = Sim::start(0, true, SCENARIO_NODES).await;
    let n0 = sim.nodes[0].sim_addr.clone();
    let r = sim
        .send(
            0,
            "PUT",
            &format!("/versioning/{BUCKET}"),
            Some(br#"{"status":"Enabled"}"#.to_vec()),
        )
        .await
        .expect("enable versioning");
    assert_eq!(r.status, 200);

    // A key n0 coordinates (it forwarded nothing), with a first version everywhere.
    let mut key = None;
    for k in 0..KEYS_TRIED {
        let candidate = format!("key-{k}");
        let before = forwarded_by(&sim, 0).await.expect("stats of n0");
        assert_eq!(sim.status(0, "POST", &candidate, b"first").await, Some(201));
        if forwarded_by(&sim, 0).await.expect("stats of n0") == before {
            key = Some(candidate);
            break;
        }
    }
    let key = key.expect("a key coordinated by n0");
    sim.wait("the first version on every node", |s| {
        let key = key.clone();
        async move {
            for i in 0..s.nodes.len() {
                (local_version_ids(s, i, &key).await?.len() == 1).then_some(())?;
            }
            Some(())
        }
    })
    .await;

    // n0 misses the second version: cut off (and seen down) while n1 stands in for it,
    // and every replication call to it is lost afterwards too.
    sim.net.drop_calls(&n0, PATH_REPLICATE, true);
    sim.net.isolate(&n0, true).await;
    sim.wait("n1 sees n0 down", |s| {
        let n0 = n0.clone();
        async move { (liveness_seen(s, 1, &n0).await? == "down").then_some(()) }
    })
    .await;
    let path = format!("/objects/{BUCKET}/{key}");
    let r = sim
        .send(1, "POST", &path, Some(b"second".to_vec()))
        .await
        .expect("second version through n1");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let written: Value = serde_json::from_slice(&r.body).expect("upload JSON");
    let second = written["versionId"]
        .as_str()
        .expect("versionId")
        .to_string();
    sim.net.isolate(&n0, false).await;
    sim.wait("n1 sees n0 alive again", |s| {
        let n0 = n0.clone();
        async move { (liveness_seen(s, 1, &n0).await? == "alive").then_some(()) }
    })
    .await;
    let held = local_version_ids(&sim, 0, &key).await.expect("n0 versions");
    assert!(!held.contains(&second), "n0 must have missed {second}");

    // Deleting it by id through n0, its coordinator, removes it where it is.
    let before = forwarded_by(&sim, 0).await.expect("stats of n0");
    let r = sim
        .send(0, "DELETE", &format!("{path}?versionId={second}"), None)
        .await
        .expect("delete through n0");
    assert_eq!(r.status, 204);
    assert_eq!(
        forwarded_by(&sim, 0).await,
        Some(before),
        "n0 coordinated the delete"
    );
    // The delete was acknowledged once a majority applied it; the other replica's
    // commit may still be on its way.
    sim.wait("the version removed from n1 and n2", |s| {
        let (key, second) = (key.clone(), second.clone());
        async move {
            for i in 1..s.nodes.len() {
                (!local_version_ids(s, i, &key).await?.contains(&second)).then_some(())?;
            }
            Some(())
        }
    })
    .await;
    let r = sim.send(2, "GET", &path, None).await.expect("GET via n2");
    assert_eq!((r.status, r.body.as_ref()), (200, &b"first"[..]));

    // Healed, and after further anti-entropy rounds everywhere, it stays gone.
    sim.net.drop_calls(&n0, PATH_REPLICATE, false);
    let mut rounds = Vec::new();
    for i in 0..sim.nodes.len() {
        rounds.push(anti_entropy_rounds(&sim, i).await.expect("stats"));
    }
    sim.wait("two more anti-entropy rounds on every node", |s| {
        let rounds = rounds.clone();
        async move {
            for (i, start) in rounds.iter().enumerate() {
                (anti_entropy_rounds(s, i).await? >= start + 2).then_some(())?;
            }
            Some(())
        }
    })
    .await;
    for i in 0..sim.nodes.len() {
        let ids = local_version_ids(&sim, i, &key).await.expect("versions");
        assert_eq!(ids.len(), 1, "n{i}: {ids:?}");
        assert!(!ids.contains(&second), "n{i} got {second} back");
    }
    sim.stop_all().await;
}

/// Anti-entropy rounds node `i` has finished.
async fn anti_entropy_rounds(sim: &Sim, i: usize) -> Option<u64> {
    sim.json(i, "/stats").await?["rebalance"]["rounds"].as_u64()
}
