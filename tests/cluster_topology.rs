//! Topology changes with real processes on loopback, under continuous reads: a 4th node
//! joins and receives its share of the data; a killed node is removed and the
//! replication factor is restored on the others; a node is decommissioned, hands its
//! data off and leaves the ring. Reads of existing keys through every serving node
//! never fail meanwhile (a node that lacks a key asks its peers).
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline.

mod cluster_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cluster_common::*;

const KEYS: usize = 40;
const NODE_ARGS: [&str; 4] = ["--chunk-size", "64KiB", "--anti-entropy-interval", "2s"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    with_args(&NODE_ARGS, extra)
}

/// Key `i`'s bytes: small ones inline, every third one spanning several chunks.
fn body_of(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(3) {
        150 * 1024 + i
    } else {
        100 + i
    };
    (0..len)
        .map(|j| (j as u8).wrapping_mul(7) ^ i as u8)
        .collect()
}

fn key_of(i: usize) -> String {
    format!("k/{i:03}")
}

/// Objects stored on the node itself.
async fn local_objects(c: &reqwest::Client, n: &Node) -> Option<u64> {
    get_json(c, n, "/stats").await?["objects"].as_u64()
}

async fn node_id(c: &reqwest::Client, n: &Node) -> String {
    eventually("node id", &[n], || async {
        get_json(c, n, "/stats").await?["nodeId"]
            .as_str()
            .map(String::from)
    })
    .await
}

/// A member's state as `n` sees it.
async fn state_of(c: &reqwest::Client, n: &Node, id: &str) -> Option<String> {
    let s = get_json(c, n, "/cluster").await?;
    s["nodes"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["state"].as_str().map(String::from))
}

fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bucketdb"))
        .arg("cluster")
        .args(args)
        .env("BUCKETDB_ACCESS_KEY", ACCESS_KEY)
        .env("BUCKETDB_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("running bucketdb cluster");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bucketdb cluster {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Reads every key in turn through each of `targets` (REST base URLs) until stopped,
/// counting reads and recording every failure.
struct Readers {
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    /// Passes started (each takes a fresh copy of the targets).
    passes: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Readers {
    fn start(c: reqwest::Client, targets: Vec<String>) -> Readers {
        let targets = Arc::new(Mutex::new(targets));
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let passes = Arc::new(AtomicU64::new(0));
        let (t, s, r, f) = (
            targets.clone(),
            stop.clone(),
            reads.clone(),
            failures.clone(),
        );
        let p = passes.clone();
        let task = tokio::spawn(async move {
            let mut i = 0usize;
            while !s.load(Ordering::SeqCst) {
                p.fetch_add(1, Ordering::SeqCst);
                let bases = t.lock().expect("targets").clone();
                for base in bases {
                    let key = key_of(i % KEYS);
                    let url = format!("{base}/objects/data/{key}");
                    let got = c
                        .get(&url)
                        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
                        .send()
                        .await;
                    let outcome = match got {
                        Ok(resp) if resp.status() == 200 => match resp.bytes().await {
                            Ok(b) if b.as_ref() == body_of(i % KEYS).as_slice() => None,
                            Ok(_) => Some("wrong bytes".to_string()),
                            Err(e) => Some(format!("body: {e}")),
                        },
                        Ok(resp) => Some(format!("status {}", resp.status())),
                        Err(e) => Some(format!("request: {e}")),
                    };
                    r.fetch_add(1, Ordering::SeqCst);
                    if let Some(why) = outcome {
                        f.lock()
                            .expect("failures")
                            .push(format!("GET {url}: {why}"));
                    }
                }
                i += 1;
            }
        });
        Readers {
            targets,
            stop,
            reads,
            passes,
            failures,
            task,
        }
    }

    /// Read through `targets` from now on; returns once no read goes elsewhere.
    async fn switch_to(&self, targets: Vec<String>) {
        *self.targets.lock().expect("targets") = targets;
        let from = self.passes.load(Ordering::SeqCst);
        eventually("the readers to switch targets", &[], || async {
            (self.passes.load(Ordering::SeqCst) >= from + 2).then_some(())
        })
        .await;
    }

    /// Wait for a full pass over the keys with the current targets.
    async fn one_more_pass(&self) {
        let from = self.reads.load(Ordering::SeqCst);
        let per_pass = (KEYS * self.targets.lock().expect("targets").len()) as u64;
        eventually("a pass of reads", &[], || async {
            (self.reads.load(Ordering::SeqCst) >= from + per_pass).then_some(())
        })
        .await;
    }

    fn assert_no_failures(&self, during: &str) {
        let failures = self.failures.lock().expect("failures");
        assert!(
            failures.is_empty(),
            "{} failed reads during {during} (of {}); first: {:?}",
            failures.len(),
            self.reads.load(Ordering::SeqCst),
            failures.iter().take(5).collect::<Vec<_>>()
        );
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.reads.load(Ordering::SeqCst)
    }
}

/// A node's anti-entropy counters.
struct AntiEntropyCounts {
    rounds: u64,
    matched: u64,
    compared: u64,
}

async fn anti_entropy_counts(
    c: &reqwest::Client,
    nodes: &[&Node],
) -> Option<Vec<AntiEntropyCounts>> {
    let mut counts = Vec::new();
    for n in nodes {
        counts.push(AntiEntropyCounts {
            rounds: metric(c, n, "bucketdb_anti_entropy_rounds_total").await?,
            matched: metric(c, n, "bucketdb_anti_entropy_ranges_matched_total").await?,
            compared: metric(c, n, "bucketdb_anti_entropy_ranges_compared_total").await?,
        });
    }
    Some(counts)
}

/// Wait until the nodes together hold `copies` copies of every key, each holding a
/// share and at most one copy of a key.
async fn copies_settle(c: &reqwest::Client, nodes: &[&Node], copies: u64, what: &str) {
    eventually(what, nodes, || async {
        let mut counts = Vec::new();
        for n in nodes {
            counts.push(local_objects(c, n).await?);
        }
        let total: u64 = counts.iter().sum();
        let shares = counts.iter().all(|n| (1..=KEYS as u64).contains(n));
        (total == copies * KEYS as u64 && shares).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_leave_and_die_while_every_key_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut a = Node::new(dir.path(), "a");
    let mut b = Node::new(dir.path(), "b");
    let mut cc = Node::new(dir.path(), "c");
    let mut d = Node::new(dir.path(), "d");
    let join_a = a.url("");
    form_three(&c, &mut a, &mut b, &mut cc, &NODE_ARGS).await;
    let three = [&a, &b, &cc];

    let r = c
        .put(a.url("/buckets/data"))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .send()
        .await
        .expect("create bucket");
    assert_eq!(r.status(), 201);
    for i in 0..KEYS {
        let n = three[i % 3];
        let r = c
            .post(n.url(&format!("/objects/data/{}", key_of(i))))
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
            .body(body_of(i))
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }
    copies_settle(&c, &three, 3, "every key on all three nodes").await;

    // A 4th node joins while every node is read from: it ends up with its share and
    // the others hand off what they no longer own (3 copies of each key over 4 nodes).
    let readers = Readers::start(c.clone(), three.iter().map(|n| n.url("")).collect());
    d.start(CLUSTER_SECRET, &args(&["--join", &join_a]));
    eventually("d ready", &[&d], || async {
        ready(&c, &d).await.then_some(())
    })
    .await;
    readers
        .switch_to([&a, &b, &cc, &d].iter().map(|n| n.url("")).collect())
        .await;
    let four = [&a, &b, &cc, &d];
    copies_settle(&c, &four, 3, "3 copies of each key over 4 nodes").await;
    eventually("rebalancing finished", &four, || async {
        for n in four {
            let s = get_json(&c, n, "/cluster").await?;
            if !s["rebalancing"].is_null() {
                return None;
            }
        }
        Some(())
    })
    .await;
    readers.one_more_pass().await;
    readers.assert_no_failures("a join");

    // Settled, anti-entropy agrees with each peer on a whole page by one hash: a window
    // of two full rounds on every node with no page compared version by version, and
    // at least one page settled by hash per peer (3 copies over 4 nodes: every node
    // shares keys with the three others).
    eventually("pages settled by their hash", &four, || async {
        let start = anti_entropy_counts(&c, &four).await?;
        eventually("two more anti-entropy rounds", &four, || async {
            let now = anti_entropy_counts(&c, &four).await?;
            now.iter()
                .zip(&start)
                .all(|(n, s)| n.rounds >= s.rounds + 2)
                .then_some(())
        })
        .await;
        let end = anti_entropy_counts(&c, &four).await?;
        end.iter()
            .zip(&start)
            .all(|(e, s)| e.compared == s.compared && e.matched >= s.matched + 3)
            .then_some(())
    })
    .await;

    // c dies and is removed: the survivors re-create its copies (every key on a, b, d).
    readers
        .switch_to([&a, &b, &d].iter().map(|n| n.url("")).collect())
        .await;
    let c_id = node_id(&c, &cc).await;
    cc.kill_9();
    let out = cli(&["remove", &c_id, "--endpoint", &b.url("")]);
    assert!(out.contains("removed"), "{out}");
    let survivors = [&a, &b, &d];
    copies_settle(&c, &survivors, 3, "every key on a, b and d").await;
    readers.one_more_pass().await;
    readers.assert_no_failures("a removal");

    // b is decommissioned: it hands everything off and leaves the ring.
    let b_id = node_id(&c, &b).await;
    let out = cli(&["decommission", &b_id, "--endpoint", &a.url("")]);
    assert!(out.contains("draining"), "{out}");
    eventually("b removed after handing off", &survivors, || async {
        (state_of(&c, &a, &b_id).await? == "removed").then_some(())
    })
    .await;
    assert_eq!(local_objects(&c, &b).await, Some(0), "b kept no data");
    copies_settle(&c, &[&a, &d], 2, "every key on a and d").await;
    readers.one_more_pass().await;
    readers.assert_no_failures("a decommission");
    let reads = readers.stop().await;
    assert!(reads >= (KEYS * 3) as u64, "only {reads} reads");

    // Refused: removing a member that does not exist.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bucketdb"))
        .args([
            "cluster",
            "remove",
            "no-such-node",
            "--endpoint",
            &a.url(""),
        ])
        .env("BUCKETDB_ACCESS_KEY", ACCESS_KEY)
        .env("BUCKETDB_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("running bucketdb cluster remove");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    for n in [&mut a, &mut b, &mut d] {
        n.stop();
    }
}
