//! Cluster membership with real processes on loopback: bootstrap, join (directly and
//! through a follower), every node agreeing on the ring, kill -9 and liveness, restart
//! without re-joining, a wrong cluster secret, unsigned internal requests, and a full
//! restart remembering the membership (raft state on disk).
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline.

mod cluster_common;

use std::process::Command;

use cluster_common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_form_a_cluster_that_survives_kills_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut a = Node::new(dir.path(), "a");
    let mut b = Node::new(dir.path(), "b");
    let mut cc = Node::new(dir.path(), "c");
    let join_a = a.url("");
    let join_b = b.url("");

    a.start(CLUSTER_SECRET, &["--bootstrap"]);
    eventually("a ready", &[&a], || async {
        ready(&c, &a).await.then_some(())
    })
    .await;
    b.start(CLUSTER_SECRET, &["--join", &join_a]);
    // c joins through b, a follower: the join is forwarded to the leader.
    cc.start(CLUSTER_SECRET, &["--join", &join_b]);
    let all = [&a, &b, &cc];
    eventually("b and c ready", &all, || async {
        (ready(&c, &b).await && ready(&c, &cc).await).then_some(())
    })
    .await;
    let version = eventually("3 members, one ring version", &all, || {
        agreed_ring(&c, &all)
    })
    .await;
    let status = cluster(&c, &a).await.expect("status");
    let shares: f64 = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["ringShare"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((shares - 1.0).abs() < 1e-6, "ring shares sum to {shares}");

    // The CLI shows the same through any node's REST API.
    let out = Command::new(env!("CARGO_BIN_EXE_bucketdb"))
        .args(["cluster", "nodes", "--endpoint", &b.url("")])
        .env("BUCKETDB_ACCESS_KEY", ACCESS_KEY)
        .env("BUCKETDB_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("running bucketdb cluster nodes");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" active ")).count(),
        3,
        "{table}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bucketdb"))
        .args(["cluster", "status", "--json", "--endpoint", &cc.url("")])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .output()
        .expect("running bucketdb cluster status");
    let json: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(json["ringVersion"].as_u64(), Some(version));

    // Unsigned and badly signed node-to-node requests are refused.
    let unsigned = c
        .post(a.url("/internal/heartbeat"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(unsigned.status(), 401);
    let body: Value = unsigned.json().await.expect("json");
    assert_eq!(body["error"]["code"], "InvalidClusterSignature");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let forged = c
        .post(a.url("/internal/join"))
        .header("x-bucketdb-node", "intruder")
        .header("x-bucketdb-date", now.to_string())
        .header("x-bucketdb-signature", "00".repeat(32))
        .body(r#"{"id":"intruder","address":"127.0.0.1:1"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), 401);
    // The root credentials do not open internal routes either.
    let with_root = c
        .post(a.url("/internal/raft/vote"))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(with_root.status(), 401);

    // A node with the wrong cluster secret cannot join: it exits non-zero, saying why.
    let mut intruder = Node::new(dir.path(), "intruder");
    intruder.start("a-different-cluster-secret-000", &["--join", &join_a]);
    let status = intruder.wait_exit();
    assert!(!status.success(), "joining with a wrong secret must fail");
    let log = intruder.log();
    assert!(log.contains("cluster secret"), "log:\n{log}");
    assert_eq!(
        agreed_ring(&c, &all).await,
        Some(version),
        "the ring is unchanged"
    );

    // A second node claiming a's node id is refused at once; a keeps its address.
    let status = cluster(&c, &a).await.expect("status");
    let a_id = status["nodes"]
        .as_array()
        .and_then(|nodes| {
            nodes
                .iter()
                .find(|n| n["address"] == format!("127.0.0.1:{}", a.http_port))
        })
        .and_then(|n| n["id"].as_str())
        .expect("a's node id")
        .to_string();
    let mut twin = Node::new(dir.path(), "twin");
    twin.start(CLUSTER_SECRET, &["--join", &join_b, "--node-id", &a_id]);
    let exit = twin.wait_exit();
    assert!(
        !exit.success(),
        "a node reusing a member's id must not join"
    );
    let log = twin.log();
    assert!(log.contains("already"), "log:\n{log}");
    assert_eq!(
        agreed_ring(&c, &all).await,
        Some(version),
        "the ring is unchanged"
    );
    let status = cluster(&c, &a).await.expect("status");
    assert!(
        status["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.iter().any(|n| n["id"] == a_id.as_str()
                && n["address"] == format!("127.0.0.1:{}", a.http_port))),
        "{status}"
    );

    // kill -9 c: a and b report it down after node_down_timeout.
    cc.kill_9();
    let c_port = cc.http_port;
    for n in [&a, &b] {
        eventually("c down", &[&a, &b], || async {
            let s = cluster(&c, n).await?;
            (liveness_of(&s, c_port)? == "down").then_some(())
        })
        .await;
    }

    // Restart c on the same directories without --join: it resumes from its raft state.
    cc.start(CLUSTER_SECRET, &[]);
    let all = [&a, &b, &cc];
    eventually("c ready again", &all, || async {
        ready(&c, &cc).await.then_some(())
    })
    .await;
    let again = eventually("c alive again", &all, || agreed_ring(&c, &all)).await;
    assert_eq!(again, version, "no re-join: the ring did not change");

    // Restart everything: the membership is remembered.
    for n in [&mut a, &mut b, &mut cc] {
        n.stop();
    }
    a.start(CLUSTER_SECRET, &["--bootstrap"]);
    b.start(CLUSTER_SECRET, &["--join", &join_a]);
    cc.start(CLUSTER_SECRET, &[]);
    let all = [&a, &b, &cc];
    let after = eventually("the cluster after a full restart", &all, || {
        agreed_ring(&c, &all)
    })
    .await;
    assert_eq!(after, version, "the same ring after a full restart");
    // ... and the restarted group elects a leader that every node knows.
    eventually("a leader after the restart", &all, || async {
        let mut leaders = Vec::new();
        for n in all {
            leaders.push(cluster(&c, n).await?["leader"].as_str()?.to_string());
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
    for n in [&mut a, &mut b, &mut cc] {
        n.stop();
    }
}

#[tokio::test]
async fn a_standalone_node_refuses_internal_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = Node::new(dir.path(), "solo");
    n.start(CLUSTER_SECRET, &[]);
    let c = client();
    eventually("ready", &[&n], || async {
        ready(&c, &n).await.then_some(())
    })
    .await;
    let resp = c
        .post(n.url("/internal/heartbeat"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 403);
    let status = cluster(&c, &n).await.expect("status");
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(1));
    n.stop();
}

#[tokio::test]
async fn a_joining_node_is_not_ready_until_it_is_a_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on the seed's port, so the join keeps retrying.
    let seed = format!("http://127.0.0.1:{}", free_port());
    let mut n = Node::new(dir.path(), "joiner");
    n.start(CLUSTER_SECRET, &["--join", &seed]);
    let c = client();
    eventually("live", &[&n], || async {
        let r = c.get(n.url("/health/live")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = c.get(n.url("/health/ready")).send().await.expect("ready");
    assert_eq!(r.status(), 503);
    n.kill_9();
}

/// A node may join through a seed that is itself still joining (not in a cluster yet, so
/// it answers 403): the joiner keeps retrying instead of giving up, and all three end up
/// in one ring once the first node bootstraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_a_node_that_is_still_joining_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut a = Node::new(dir.path(), "a");
    let mut b = Node::new(dir.path(), "b");
    let mut cc = Node::new(dir.path(), "c");
    // a is not up yet: b keeps retrying its join.
    b.start(CLUSTER_SECRET, &["--join", &a.url("")]);
    cc.start(CLUSTER_SECRET, &["--join", &b.url("")]);
    eventually(
        "b turning c's join away while not in a cluster",
        &[&b, &cc],
        || async {
            b.log()
                .lines()
                .any(|l| {
                    l.contains("path=/internal/join")
                        && (l.contains("status=403") || l.contains("status=503"))
                })
                .then_some(())
        },
    )
    .await;
    a.start(CLUSTER_SECRET, &["--bootstrap"]);
    let all = [&a, &b, &cc];
    eventually("all ready", &all, || async {
        (ready(&c, &a).await && ready(&c, &b).await && ready(&c, &cc).await).then_some(())
    })
    .await;
    eventually("one ring of 3", &all, || agreed_ring(&c, &all)).await;
}

/// A seed that is not in a cluster (yet) answers 403: for the joiner that is a reason to
/// retry, not a wrong secret to give up on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_outside_any_cluster_is_retried_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut standalone = Node::new(dir.path(), "standalone");
    let mut joiner = Node::new(dir.path(), "joiner");
    standalone.start(CLUSTER_SECRET, &[]);
    joiner.start(CLUSTER_SECRET, &["--join", &standalone.url("")]);
    eventually(
        "the joiner retrying after a 403",
        &[&standalone, &joiner],
        || async {
            joiner
                .log()
                .lines()
                .any(|l| l.contains("join failed; retrying") && l.contains("403"))
                .then_some(())
        },
    )
    .await;
    assert!(
        joiner
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
        "the joiner gave up:\n{}",
        joiner.log()
    );
}
