//! A seeded simulation of a 3-node cluster in one process. Node-to-node traffic goes
//! through a simulated network (the cluster's `Transport` seam) that can cut a node off
//! from the others; a random workload of uploads and deletes runs through random nodes
//! while nodes are partitioned, healed, stopped and restarted. Afterwards every node
//! must hold exactly what the acknowledged operations imply: the last acknowledged
//! write of each key, and nothing for keys whose last acknowledged operation was a
//! delete (deleted objects never come back; writes refused with 503 never appear).
//!
//! The workload, bodies and fault schedule all derive from one seed, printed with every
//! failure; `BUCKETDB_SIM_SEED=<seed>` replays that schedule (thread scheduling and
//! timing are the machine's, so a replay is faithful in what is done, not in exact
//! interleaving). `BUCKETDB_SIM_SEEDS=<n>` runs more seeds.

mod cluster_common;
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bucketdb::server::{RunningServer, start_with_transport};
use bucketdb_api::transport::HttpTransport;
use bucketdb_cluster::membership::network::{
    PATH_REPLICATE, Transport, TransportError, TransportResponse,
};
use common::{ACCESS_KEY, SECRET_KEY, test_config};
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const NODES: usize = 3;
const KEYS: usize = 6;
const OPS_PER_SEED: usize = 60;
/// Seeds per test run unless `BUCKETDB_SIM_SEEDS` says otherwise.
const DEFAULT_SEEDS: u64 = 3;
const CLUSTER_SECRET: &str = "simulation-cluster-secret-0123456";
const BUCKET: &str = "sim";
/// Longest wait for the cluster to form, or to converge after the workload.
const SETTLE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The simulated network: where each node's (stable, simulated) address currently
/// listens, and which nodes are cut off from the rest.
#[derive(Default)]
struct Net {
    routes: Mutex<HashMap<String, SocketAddr>>,
    isolated: Mutex<HashSet<String>>,
    /// Streaming connections opened between nodes (from, to, a handle on the socket):
    /// cutting a node off shuts its connections down, as a real partition breaks them.
    dialed: Mutex<Vec<(String, String, std::net::TcpStream)>>,
    /// Calls lost on their way: (to node, internal path).
    dropped: Mutex<HashSet<(String, &'static str)>>,
    http: HttpTransport,
}

impl Net {
    fn route(&self, sim: &str, real: Option<SocketAddr>) {
        let mut routes = self.routes.lock().expect("routes");
        match real {
            Some(r) => routes.insert(sim.to_string(), r),
            None => routes.remove(sim),
        };
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

    fn isolate(&self, sim: &str, cut: bool) {
        let mut isolated = self.isolated.lock().expect("isolated");
        if cut {
            isolated.insert(sim.to_string());
            let mut dialed = self.dialed.lock().expect("dialed");
            dialed.retain(|(from, to, socket)| {
                let crosses = from == sim || to == sim;
                if crosses {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
                !crosses
            });
        } else {
            isolated.remove(sim);
        }
    }
}

/// One node's side of the network: calls from `me`.
struct Link {
    me: String,
    net: Arc<Net>,
}

impl Link {
    /// Where `address` really listens, unless the network cut this call off.
    fn resolve(&self, address: &str) -> Result<SocketAddr, TransportError> {
        let target = address
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let unreachable = |reason: &str| TransportError::Unreachable {
            address: target.clone(),
            reason: reason.to_string(),
        };
        {
            let isolated = self.net.isolated.lock().expect("isolated");
            if isolated.contains(&self.me) != isolated.contains(&target) {
                return Err(unreachable("partitioned"));
            }
        }
        let real = self
            .net
            .routes
            .lock()
            .expect("routes")
            .get(&target)
            .copied();
        real.ok_or_else(|| unreachable("stopped"))
    }
}

#[async_trait::async_trait]
impl Transport for Link {
    async fn dial(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, TransportError> {
        let real = self.resolve(address)?;
        let stream = self.net.http.dial(&real.to_string(), timeout).await?;
        let to = address.trim_start_matches("http://").trim_end_matches('/');
        let failed = |e: std::io::Error| TransportError::Unreachable {
            address: to.to_string(),
            reason: e.to_string(),
        };
        // into_std keeps the socket non-blocking, as from_std needs.
        let socket = stream.into_std().map_err(failed)?;
        let handle = socket.try_clone().map_err(failed)?;
        self.net
            .dialed
            .lock()
            .expect("dialed")
            .push((self.me.clone(), to.to_string(), handle));
        tokio::net::TcpStream::from_std(socket).map_err(failed)
    }

    async fn post(
        &self,
        address: &str,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<TransportResponse, TransportError> {
        let real = self.resolve(address)?;
        let to = address.trim_start_matches("http://").trim_end_matches('/');
        let lost = self
            .net
            .dropped
            .lock()
            .expect("dropped")
            .iter()
            .any(|(t, p)| t == to && *p == path);
        if lost {
            return Err(TransportError::Unreachable {
                address: to.to_string(),
                reason: "the simulated network lost the call".into(),
            });
        }
        self.net
            .http
            .post(&real.to_string(), path, headers, body, timeout)
            .await
    }
}

struct SimNode {
    root: PathBuf,
    sim_addr: String,
    server: Option<RunningServer>,
}

struct Sim {
    seed: u64,
    quorum: bool,
    net: Arc<Net>,
    nodes: Vec<SimNode>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Sim {
    async fn start(seed: u64, quorum: bool) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (0..NODES)
            .map(|i| SimNode {
                root: dir.path().join(format!("n{i}")),
                sim_addr: format!("sim-node-{i}:9080"),
                server: None,
            })
            .collect();
        let mut sim = Sim {
            seed,
            quorum,
            net: Arc::new(Net::default()),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            _dir: dir,
        };
        for i in 0..NODES {
            sim.boot(i).await;
        }
        sim.wait("3 active members", |s| async move { s.ring_agreed().await })
            .await;
        let r = sim
            .send(0, reqwest::Method::PUT, &format!("/buckets/{BUCKET}"), None)
            .await
            .expect("create bucket");
        assert_eq!(r.status(), 201, "seed {seed}");
        sim.wait("the bucket on every node", |s| async move {
            for i in 0..NODES {
                s.json(i, &format!("/buckets/{BUCKET}")).await?;
            }
            Some(())
        })
        .await;
        sim
    }

    /// Start node `i` on a fresh port; the first start bootstraps (node 0) or joins.
    async fn boot(&mut self, i: usize) {
        let node = &self.nodes[i];
        let first = !node.root.exists();
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
        // The port is known before the node starts, so peers reach it while it joins.
        let port = cluster_common::free_port();
        config.http_addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.net.route(&node.sim_addr, Some(config.http_addr));
        let link = Arc::new(Link {
            me: node.sim_addr.clone(),
            net: self.net.clone(),
        });
        let server = start_with_transport(config, link)
            .await
            .unwrap_or_else(|e| panic!("seed {}: starting node {i}: {e}", self.seed));
        self.nodes[i].server = Some(server);
    }

    async fn stop(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        self.net.route(&node.sim_addr, None);
        if let Some(s) = node.server.take() {
            s.shutdown()
                .await
                .unwrap_or_else(|e| panic!("seed {}: stopping node {i}: {e}", self.seed));
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..NODES)
            .filter(|i| self.nodes[*i].server.is_some())
            .collect()
    }

    async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Option<reqwest::Response> {
        let server = self.nodes[i].server.as_ref()?;
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", server.http_addr))
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY));
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.ok()
    }

    /// The status of an upload (`POST`) or delete of `key` through node `i`.
    async fn status(&self, i: usize, method: &str, key: &str, body: &[u8]) -> Option<u16> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
        let body = (!body.is_empty()).then(|| body.to_vec());
        let r = self
            .send(i, method, &format!("/objects/{BUCKET}/{key}"), body)
            .await?;
        Some(r.status().as_u16())
    }

    async fn json(&self, i: usize, path: &str) -> Option<Value> {
        let r = self.send(i, reqwest::Method::GET, path, None).await?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn ring_agreed(&self) -> Option<()> {
        let mut versions = HashSet::new();
        for i in 0..NODES {
            let s = self.json(i, "/cluster").await?;
            let members = s["nodes"].as_array()?;
            if members.len() != NODES || members.iter().any(|m| m["state"] != "active") {
                return None;
            }
            versions.insert(s["ringVersion"].as_u64()?);
        }
        (versions.len() == 1).then_some(())
    }

    async fn wait<'a, F, Fut>(&'a self, what: &str, mut f: F)
    where
        F: FnMut(&'a Sim) -> Fut,
        Fut: std::future::Future<Output = Option<()>>,
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
}

fn etag_of(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// One seeded run: the workload with faults, then healing and the final check.
async fn run(seed: u64, quorum: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::start(seed, quorum).await;
    // What the acknowledged operations imply, per key.
    let mut model: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    // Keys whose last operation was a delete refused with 503 in quorum mode: refused
    // before anything changed, or made on its coordinator without a majority in time
    // (then it reaches the others later). Either outcome is allowed, on every node alike.
    let mut maybe_deleted: HashSet<String> = HashSet::new();
    let mut isolated: Option<usize> = None;
    let mut log = Vec::new();
    let started = Instant::now();
    for step in 0..OPS_PER_SEED {
        // Steps are logged with the time they started, to find slow ones.
        let step = format!("{step} @{} ms", started.elapsed().as_millis());
        let roll = rng.random_range(0..100);
        let running = sim.running();
        let via = running[rng.random_range(0..running.len())];
        let key = format!("key-{}", rng.random_range(0..KEYS));
        let path = format!("/objects/{BUCKET}/{key}");
        if roll < 55 {
            let len = if rng.random_bool(0.3) {
                rng.random_range(70_000..200_000)
            } else {
                rng.random_range(1..2_000)
            };
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let r = sim
                .send(via, reqwest::Method::POST, &path, Some(body.clone()))
                .await;
            let status = r.as_ref().map(|r| r.status().as_u16());
            log.push(format!(
                "{step}: PUT {key} ({len} B) via n{via} -> {status:?}"
            ));
            match status {
                Some(201) => {
                    // Read-your-write through the node that acknowledged it.
                    let got = sim.send(via, reqwest::Method::GET, &path, None).await;
                    let got = match got {
                        Some(r) if r.status() == 200 => r.bytes().await.ok().map(|b| b.to_vec()),
                        _ => None,
                    };
                    assert!(
                        got.as_ref() == Some(&body),
                        "seed {seed}: an acknowledged write is not readable where it was made\n{}",
                        log.join("\n")
                    );
                    maybe_deleted.remove(&key);
                    model.insert(key, Some(body));
                }
                Some(503) if quorum => {}
                other => panic!("seed {seed}: PUT answered {other:?}\n{}", log.join("\n")),
            }
        } else if roll < 75 {
            let r = sim.send(via, reqwest::Method::DELETE, &path, None).await;
            let status = r.as_ref().map(|r| r.status().as_u16());
            log.push(format!("{step}: DELETE {key} via n{via} -> {status:?}"));
            match status {
                Some(204) => {
                    maybe_deleted.remove(&key);
                    model.insert(key, None);
                }
                Some(503) if quorum => {
                    maybe_deleted.insert(key);
                }
                other => panic!("seed {seed}: DELETE answered {other:?}\n{}", log.join("\n")),
            }
        } else if roll < 88 {
            match isolated.take() {
                Some(n) => {
                    sim.net.isolate(&sim.nodes[n].sim_addr, false);
                    log.push(format!("{step}: heal n{n}"));
                }
                None => {
                    let n = rng.random_range(0..NODES);
                    sim.net.isolate(&sim.nodes[n].sim_addr, true);
                    isolated = Some(n);
                    log.push(format!("{step}: isolate n{n}"));
                }
            }
        } else {
            let stopped: Vec<usize> = (0..NODES).filter(|i| !running.contains(i)).collect();
            if let Some(&n) = stopped.first() {
                sim.boot(n).await;
                log.push(format!("{step}: restart n{n}"));
            } else {
                let n = running[rng.random_range(0..running.len())];
                sim.stop(n).await;
                log.push(format!("{step}: stop n{n}"));
            }
        }
    }
    let count = |what: &str| log.iter().filter(|l| l.contains(what)).count();
    eprintln!(
        "seed {seed} (quorum {quorum}): {} uploads acknowledged, {} refused (503), {} deletes, \
         {} partitions, {} stops",
        count("-> Some(201)"),
        count("-> Some(503)"),
        count("DELETE"),
        count("isolate"),
        count(": stop"),
    );
    // Heal everything and let the cluster converge.
    if let Some(n) = isolated {
        sim.net.isolate(&sim.nodes[n].sim_addr, false);
    }
    for i in 0..NODES {
        if sim.nodes[i].server.is_none() {
            sim.boot(i).await;
        }
    }
    assert_converges(&sim, &model, &maybe_deleted, &log).await;
    for i in 0..NODES {
        sim.stop(i).await;
    }
}

/// Wait until every node holds exactly the state `model` describes (each key's last
/// acknowledged write, or nothing), then check every node serves those bytes.
async fn assert_converges(
    sim: &Sim,
    model: &BTreeMap<String, Option<Vec<u8>>>,
    maybe_deleted: &HashSet<String>,
    log: &[String],
) {
    let (seed, quorum) = (sim.seed, sim.quorum);
    let expected: Vec<(String, Option<String>)> = (0..KEYS)
        .map(|k| {
            let key = format!("key-{k}");
            let etag = model.get(&key).cloned().flatten().map(|b| etag_of(&b));
            (key, etag)
        })
        .collect();
    let deadline = Instant::now() + SETTLE;
    // What each key settled on (the model's state, or deleted where that is allowed).
    let mut settled: BTreeMap<String, Option<String>> = BTreeMap::new();
    loop {
        let mut diff = Vec::new();
        for (key, want) in &expected {
            let mut seen = Vec::new();
            for i in 0..NODES {
                let have = sim.local_etag(i, key).await;
                let allowed = have.as_ref() == Some(want)
                    || (maybe_deleted.contains(key) && have == Some(None));
                if !allowed {
                    diff.push(format!("n{i} {key}: has {have:?}, expected {want:?}"));
                }
                seen.push(have.flatten());
            }
            if seen.windows(2).any(|w| w[0] != w[1]) {
                diff.push(format!("{key}: the nodes differ: {seen:?}"));
            }
            settled.insert(key.clone(), seen.first().cloned().flatten());
        }
        if diff.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed} (quorum {quorum}): the nodes did not converge on the acknowledged \
             state:\n{}\nworkload:\n{}",
            diff.join("\n"),
            log.join("\n")
        );
        tokio::time::sleep(POLL).await;
    }
    // And every node serves exactly those bytes.
    for i in 0..NODES {
        for (key, body) in model {
            let body = match settled.get(key) {
                Some(None) => &None,
                _ => body,
            };
            let r = sim
                .send(
                    i,
                    reqwest::Method::GET,
                    &format!("/objects/{BUCKET}/{key}"),
                    None,
                )
                .await
                .expect("GET");
            match body {
                Some(b) => {
                    assert_eq!(r.status(), 200, "seed {seed}: {key} via n{i}");
                    assert!(r.bytes().await.expect("body").as_ref() == b.as_slice());
                }
                None => assert_eq!(r.status(), 404, "seed {seed}: deleted {key} via n{i}"),
            }
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_replication_converges_on_the_acknowledged_state() {
    for seed in seeds() {
        eprintln!("simulation seed {seed} (async mode)");
        run(seed, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_converge_and_refused_writes_never_appear() {
    for seed in seeds() {
        eprintln!("simulation seed {seed} (quorum mode)");
        run(seed, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_cannot_complete_quorum_writes_and_catches_up_after_healing() {
    let mut sim = Sim::start(0, true).await;
    let mut model = BTreeMap::new();
    assert_eq!(sim.status(0, "POST", "key-0", b"before").await, Some(201));
    model.insert("key-0".to_string(), Some(b"before".to_vec()));

    // n2 is cut off: its side has one of three replicas, so its quorum writes fail and
    // leave nothing behind; the majority side goes on.
    sim.net.isolate(&sim.nodes[2].sim_addr, true);
    assert_eq!(
        sim.status(2, "POST", "key-1", &[7u8; 100_000]).await,
        Some(503)
    );
    assert_eq!(sim.status(2, "POST", "key-0", b"minority").await, Some(503));
    assert_eq!(sim.status(0, "POST", "key-2", b"majority").await, Some(201));
    model.insert("key-2".to_string(), Some(b"majority".to_vec()));
    assert_eq!(sim.status(1, "DELETE", "key-0", b"").await, Some(204));
    model.insert("key-0".to_string(), None);
    model.insert("key-1".to_string(), None);

    // Healed: n2 catches up, and the refused writes appear nowhere.
    sim.net.isolate(&sim.nodes[2].sim_addr, false);
    assert_converges(&sim, &model, &HashSet::new(), &[]).await;
    for i in 0..NODES {
        sim.stop(i).await;
    }
}

/// Quorum reads: a replica that missed a write (its replication calls are lost) still
/// serves the newest version, because it consults a majority first, and repairs its own
/// copy from the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_serves_the_newest_version_and_repairs_itself_in_quorum_mode() {
    let mut sim = Sim::start(0, true).await;
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
    sim.net.isolate(&stale, true);
    assert_eq!(sim.status(0, "POST", "key-0", b"second").await, Some(201));
    let second = etag_of(b"second");
    sim.wait("the second version committed on n1", |s| {
        let second = second.clone();
        async move { (s.local_etag(1, "key-0").await? == Some(second)).then_some(()) }
    })
    .await;
    sim.net.isolate(&stale, false);
    assert_eq!(
        sim.local_etag(2, "key-0").await,
        Some(Some(first.clone())),
        "n2 must still hold the first version"
    );

    let r = sim
        .send(
            2,
            reqwest::Method::GET,
            &format!("/objects/{BUCKET}/key-0"),
            None,
        )
        .await
        .expect("GET through n2");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"second");
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
    for i in 0..NODES {
        sim.stop(i).await;
    }
}
