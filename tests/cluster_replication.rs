//! Replication with real processes on loopback: a 3-node cluster with replication factor
//! 3 in async mode. Writes through any node become readable through every node; a node
//! killed with -9 misses writes, overwrites and deletes, and after its restart catches up
//! from its peers' durable queues until every node holds the same objects, versions and
//! chunk files.
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline.

mod cluster_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cluster_common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Small chunks so a modest object spans several chunk files; freed chunks are deleted
/// at once so chunk directories can be compared.
const NODE_ARGS: [&str; 6] = [
    "--chunk-size",
    "64KiB",
    "--gc-grace",
    "0s",
    "--gc-interval",
    "200ms",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    with_args(&NODE_ARGS, extra)
}

fn body_of(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

struct Rest<'a> {
    c: &'a reqwest::Client,
}

impl Rest<'_> {
    async fn send(&self, req: reqwest::RequestBuilder) -> reqwest::Response {
        req.basic_auth(ACCESS_KEY, Some(SECRET_KEY))
            .send()
            .await
            .expect("request")
    }

    async fn create_bucket(&self, n: &Node, bucket: &str) {
        let r = self
            .send(self.c.put(n.url(&format!("/buckets/{bucket}"))))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    async fn put(&self, n: &Node, bucket: &str, key: &str, body: &[u8]) {
        let url = n.url(&format!("/objects/{bucket}/{key}"));
        let r = self.send(self.c.post(url).body(body.to_vec())).await;
        assert!(
            r.status().is_success(),
            "PUT {key}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Start a multipart upload of `body` (one part) through `n`; its upload id and the
    /// body of the completion request.
    async fn start_multipart(
        &self,
        n: &Node,
        bucket: &str,
        key: &str,
        body: &[u8],
    ) -> (String, String) {
        let url = n.url(&format!("/multipart/{bucket}/{key}"));
        let r = self.send(self.c.post(&url)).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let up: Value = r.json().await.expect("upload");
        let id = up["uploadId"].as_str().expect("uploadId").to_string();
        let part_url = format!("{url}?uploadId={id}&partNumber=1");
        let r = self.send(self.c.post(part_url).body(body.to_vec())).await;
        assert!(
            r.status().is_success(),
            "{}",
            r.text().await.unwrap_or_default()
        );
        let part: Value = r.json().await.expect("part");
        let complete = serde_json::json!({"parts": [{"partNumber": 1, "etag": part["etag"]}]});
        (id, complete.to_string())
    }

    /// The status of completing upload `id` of `key` through `n`.
    async fn complete_multipart(
        &self,
        n: &Node,
        bucket: &str,
        key: &str,
        id: &str,
        body: &str,
    ) -> u16 {
        let url = n.url(&format!("/multipart/{bucket}/{key}?uploadId={id}"));
        let r = self.send(self.c.put(url).body(body.to_string())).await;
        r.status().as_u16()
    }

    async fn delete(&self, n: &Node, bucket: &str, key: &str) {
        let url = n.url(&format!("/objects/{bucket}/{key}"));
        let r = self.send(self.c.delete(url)).await;
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    }

    /// The object's bytes through `n`, `None` when absent (404), panicking on errors.
    async fn get(&self, n: &Node, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.try_get(n, bucket, key).await {
            Ok(found) => found,
            Err(s) => panic!("GET {key} through {} answered {s}", n.name),
        }
    }

    /// Like `get`, but other answers (a quorum read without a majority: 503) are
    /// `Err(status)`; a request that got no answer is `Err(0)`.
    async fn try_get(&self, n: &Node, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, u16> {
        let url = n.url(&format!("/objects/{bucket}/{key}"));
        let r = self
            .c
            .get(url)
            .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
            .send()
            .await
            .map_err(|_| 0u16)?;
        match r.status().as_u16() {
            200 => Ok(Some(r.bytes().await.map_err(|_| 0u16)?.to_vec())),
            404 => Ok(None),
            s => Err(s),
        }
    }

    async fn json(&self, n: &Node, path: &str) -> Option<Value> {
        get_json(self.c, n, path).await
    }

    /// What a node holds for `keys` of `bucket`: each key's versions (id, delete marker,
    /// ETag) and the SHA-256 of its current bytes.
    async fn state(&self, n: &Node, bucket: &str, keys: &[&str]) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for key in keys {
            let v = self.json(n, &format!("/versions/{bucket}/{key}")).await?;
            let versions: Vec<String> = v["versions"]
                .as_array()?
                .iter()
                .map(|x| format!("{}:{}:{}", x["versionId"], x["deleteMarker"], x["etag"]))
                .collect();
            let bytes = self.get(n, bucket, key).await;
            let digest = bytes.map(|b| hex(&Sha256::digest(&b)));
            out.push(format!("{key} {versions:?} {digest:?}"));
        }
        Some(out)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every chunk file under a node's storage path (quarantine and unfinished temp files,
/// whose names start with a dot, aside).
fn chunk_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("data"), &mut out);
    out
}

/// The SHA-256 of every chunk file on a node, counted.
fn chunk_digests(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for path in chunk_files(root) {
        if let Ok(bytes) = std::fs::read(&path) {
            *out.entry(hex(&Sha256::digest(&bytes))).or_default() += 1;
        }
    }
    out
}

/// Wait until no node has changes queued for another and all hold the same chunk files.
async fn storage_converges(rest: &Rest<'_>, all: &[&Node]) {
    eventually("queues drained and chunk files equal", all, || async {
        for n in all {
            if backlog(rest, n).await? != 0 {
                return None;
            }
        }
        let digests: Vec<_> = all.iter().map(|n| chunk_digests(&n.root)).collect();
        digests.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
}

/// Replication entries each node still holds for its peers (from `/cluster`).
async fn backlog(rest: &Rest<'_>, n: &Node) -> Option<u64> {
    let s = rest.json(n, "/cluster").await?;
    Some(
        s["nodes"]
            .as_array()?
            .iter()
            .map(|m| m["replicationBacklog"].as_u64().unwrap_or(0))
            .sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_reach_every_replica_and_a_killed_node_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let rest = Rest { c: &c };
    let mut a = Node::new(dir.path(), "a");
    let mut b = Node::new(dir.path(), "b");
    let mut cc = Node::new(dir.path(), "c");
    form_three(&c, &mut a, &mut b, &mut cc, &NODE_ARGS).await;
    let all = [&a, &b, &cc];

    // Writes through every node: a bucket, an inline object, a chunked one, one
    // written and deleted, and a versioned bucket with versions and a delete marker.
    // A new bucket is on every live node by the time its creation is acknowledged.
    rest.create_bucket(&a, "photos").await;
    for n in [&b, &cc] {
        assert!(
            rest.json(n, "/buckets/photos").await.is_some(),
            "{}",
            n.name
        );
    }
    let small = body_of(1, 100);
    let big = body_of(2, 300 * 1024 + 7);
    rest.put(&a, "photos", "small.txt", &small).await;
    rest.put(&b, "photos", "dir/big.bin", &big).await;
    rest.put(&cc, "photos", "gone.txt", b"short-lived").await;
    rest.delete(&a, "photos", "gone.txt").await;
    for n in all {
        eventually("every object through every node", &all, || async {
            let ok = rest.get(n, "photos", "small.txt").await.as_ref() == Some(&small)
                && rest.get(n, "photos", "dir/big.bin").await.as_ref() == Some(&big)
                && rest.get(n, "photos", "gone.txt").await.is_none();
            ok.then_some(())
        })
        .await;
    }

    rest.create_bucket(&b, "docs").await;
    let r = rest
        .send(
            c.put(a.url("/versioning/docs"))
                .json(&serde_json::json!({"status": "Enabled"})),
        )
        .await;
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let v = rest
        .json(&cc, "/versioning/docs")
        .await
        .expect("versioning");
    assert_eq!(
        v["status"], "Enabled",
        "bucket settings reach every node at once"
    );
    rest.put(&a, "docs", "report", b"v1").await;
    rest.put(&b, "docs", "report", b"v2").await;
    rest.delete(&cc, "docs", "report").await;

    // kill -9 c; a and b keep taking writes, overwrites and deletes.
    cc.kill_9();
    let later = body_of(3, 200 * 1024);
    let small2 = body_of(4, 50);
    rest.put(&a, "photos", "while-down.bin", &later).await;
    rest.put(&b, "photos", "small.txt", &small2).await;
    rest.delete(&a, "photos", "dir/big.bin").await;
    rest.put(&b, "docs", "report", b"v3").await;
    // Async mode: the writes reach the other survivor shortly after they are
    // acknowledged.
    eventually("a's and b's writes on each other", &[&a, &b], || async {
        let ok = rest.get(&b, "photos", "while-down.bin").await.as_ref() == Some(&later)
            && rest.get(&a, "photos", "small.txt").await.as_ref() == Some(&small2)
            && rest.get(&b, "photos", "dir/big.bin").await.is_none();
        ok.then_some(())
    })
    .await;

    // c restarts from its own state and catches up: all three agree on every key's
    // versions and bytes, and hold the same chunk files.
    cc.start(CLUSTER_SECRET, &args(&[]));
    let all = [&a, &b, &cc];
    let photo_keys = ["small.txt", "dir/big.bin", "gone.txt", "while-down.bin"];
    let converged = eventually("all nodes converge", &all, || async {
        let mut states = Vec::new();
        for n in all {
            let mut s = rest.state(n, "photos", &photo_keys).await?;
            s.extend(rest.state(n, "docs", &["report"]).await?);
            states.push(s);
        }
        (states[0] == states[1] && states[1] == states[2]).then(|| states.remove(0))
    })
    .await;
    assert_eq!(
        rest.get(&cc, "photos", "small.txt").await,
        Some(small2.clone())
    );
    assert_eq!(
        rest.get(&cc, "photos", "while-down.bin").await,
        Some(later.clone())
    );
    assert_eq!(rest.get(&cc, "photos", "dir/big.bin").await, None);
    assert_eq!(rest.get(&cc, "docs", "report").await, Some(b"v3".to_vec()));
    assert_eq!(converged.len(), photo_keys.len() + 1);
    let versions = rest
        .json(&cc, "/versions/docs/report")
        .await
        .expect("versions");
    let versions = versions["versions"].as_array().expect("versions list");
    assert_eq!(
        versions.len(),
        4,
        "v1, v2, the delete marker and v3: {versions:?}"
    );
    assert_eq!(
        versions
            .iter()
            .filter(|v| v["deleteMarker"] == true)
            .count(),
        1
    );
    storage_converges(&rest, &all).await;
    // Every node's /cluster shows every member's figures (peers' from heartbeats).
    eventually("peer figures in /cluster", &all, || async {
        let s = rest.json(&b, "/cluster").await?;
        let nodes = s["nodes"].as_array()?;
        let ok = nodes.iter().all(|n| {
            n["diskTotalBytes"].as_u64() > Some(0) && n["objectCount"].as_u64() == Some(3)
        });
        ok.then_some(())
    })
    .await;

    // Damage every chunk file on c: reads through c still return the right bytes,
    // fetched from a peer, and c's files are rewritten (repaired).
    let damaged = corrupt_every_chunk(&cc.root);
    assert!(
        damaged >= 4,
        "while-down.bin alone spans 4 chunks; damaged {damaged}"
    );
    assert_eq!(rest.get(&cc, "photos", "while-down.bin").await, Some(later));
    assert_eq!(rest.get(&cc, "photos", "small.txt").await, Some(small2));
    assert_eq!(
        chunk_digests(&cc.root),
        chunk_digests(&a.root),
        "c's chunk files are whole again"
    );
    let stats = rest.json(&cc, "/stats").await.expect("stats");
    assert!(stats["chunks"]["repaired"].as_u64() >= Some(4), "{stats}");
    for n in [&mut a, &mut b, &mut cc] {
        n.stop();
    }
    fsck_clean(&[&a, &b, &cc]);
}

/// `bucketdb fsck` finds every stopped node's store consistent (every chunk file
/// referenced and intact, reference counts right).
fn fsck_clean(nodes: &[&Node]) {
    for n in nodes {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bucketdb"))
            .arg("fsck")
            .arg("--storage-path")
            .arg(n.root.join("data"))
            .arg("--metadata-path")
            .arg(n.root.join("meta"))
            .output()
            .expect("running bucketdb fsck");
        assert!(
            out.status.success(),
            "fsck of {}: {}{}",
            n.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_need_a_majority_and_a_refused_write_never_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let rest = Rest { c: &c };
    let mut a = Node::new(dir.path(), "a");
    let mut b = Node::new(dir.path(), "b");
    let mut cc = Node::new(dir.path(), "c");
    let quorum = args(&["--quorum-required", "true", "--replication-timeout", "2s"]);
    form_three(&c, &mut a, &mut b, &mut cc, &quorum).await;
    let all = [&a, &b, &cc];
    let status = rest.json(&b, "/cluster").await.expect("status");
    assert_eq!(status["quorumRequired"], true, "{status}");

    rest.create_bucket(&a, "quorum").await;
    rest.create_bucket(&a, "quorum-v").await;
    let r = rest
        .send(
            c.put(a.url("/versioning/quorum-v"))
                .body(r#"{"status":"Enabled"}"#),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    eventually("the buckets everywhere", &all, || async {
        for n in all {
            rest.json(n, "/buckets/quorum").await?;
            let v = rest.json(n, "/versioning/quorum-v").await?;
            (v["status"] == "Enabled").then_some(())?;
        }
        Some(())
    })
    .await;
    let kept = body_of(4, 1000);
    rest.put(&a, "quorum-v", "kept.bin", &kept).await;
    let first = body_of(5, 200 * 1024);
    rest.put(&a, "quorum", "first.bin", &first).await;
    // Acknowledged means visible on the coordinator at once.
    assert_eq!(
        rest.get(&a, "quorum", "first.bin").await,
        Some(first.clone())
    );

    // One replica down: a majority (2 of 3) is still there.
    rest.put(&a, "quorum", "doomed.bin", b"to be deleted").await;
    cc.kill_9();
    let second = body_of(6, 100 * 1024);
    rest.put(&b, "quorum", "second.bin", &second).await;
    // One down: a delete finds its majority too.
    rest.delete(&a, "quorum", "doomed.bin").await;
    // One down: a multipart completion finds its majority too.
    let assembled = body_of(8, 130 * 1024);
    let (id, parts) = rest
        .start_multipart(&b, "quorum", "assembled.bin", &assembled)
        .await;
    assert_eq!(
        rest.complete_multipart(&a, "quorum", "assembled.bin", &id, &parts)
            .await,
        201
    );

    // Two down: quorum writes fail with 503, and the refused write is not visible.
    b.kill_9();
    // Even before a sees b down, a delete, a delete marker and a tag change are refused
    // without being made: each is prepared on a majority before it is committed.
    let refused = [
        c.delete(a.url("/objects/quorum/first.bin")),
        c.delete(a.url("/objects/quorum-v/kept.bin")),
        c.put(a.url("/objects/quorum/first.bin/tags"))
            .body(r#"{"state":"refused"}"#),
    ];
    for request in refused {
        let r = rest.send(request).await;
        assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    }
    // The upload's parts stay on a, which coordinates it (b is unreachable): only its
    // completion needs a majority.
    let late = body_of(9, 90 * 1024);
    let (late_id, late_parts) = rest.start_multipart(&a, "quorum", "late.bin", &late).await;
    assert_eq!(
        rest.complete_multipart(&a, "quorum", "late.bin", &late_id, &late_parts)
            .await,
        503
    );
    // An upload that creates its bucket needs its majority too.
    let r = rest
        .send(
            c.post(a.url("/objects/brand-new/refused.bin"))
                .body(body_of(3, 1000)),
        )
        .await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    // Once a sees both down, deletes and tag changes are refused without being made.
    eventually("b and c seen down by a", &[&a], || async {
        let status = cluster(&c, &a).await?;
        let down = |port| liveness_of(&status, port).as_deref() == Some("down");
        (down(b.http_port) && down(cc.http_port)).then_some(())
    })
    .await;
    let r = rest
        .send(c.delete(a.url("/objects/quorum/first.bin")))
        .await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    let r = rest
        .send(
            c.put(a.url("/objects/quorum/first.bin/tags"))
                .body(r#"{"state":"refused"}"#),
        )
        .await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    for (key, len) in [("refused.bin", 150 * 1024), ("refused.txt", 10)] {
        let url = a.url(&format!("/objects/quorum/{key}"));
        let r = rest.send(c.post(url).body(body_of(7, len))).await;
        assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
        let body: Value = r.json().await.unwrap_or_default();
        assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");
        // Reads cannot consult a majority either: 503, not a possibly stale answer.
        assert_eq!(rest.try_get(&a, "quorum", key).await, Err(503));
    }

    // Both return: the acknowledged writes reach every node, the refused ones none.
    b.start(CLUSTER_SECRET, &args(&[]));
    cc.start(CLUSTER_SECRET, &args(&[]));
    let all = [&a, &b, &cc];
    for n in all {
        eventually("acknowledged writes everywhere", &all, || async {
            let ok = rest.try_get(n, "quorum", "first.bin").await == Ok(Some(first.clone()))
                && rest.try_get(n, "quorum", "second.bin").await == Ok(Some(second.clone()))
                && rest.try_get(n, "quorum", "assembled.bin").await == Ok(Some(assembled.clone()))
                && rest.try_get(n, "quorum-v", "kept.bin").await == Ok(Some(kept.clone()));
            ok.then_some(())
        })
        .await;
    }
    for n in all {
        for key in ["refused.bin", "refused.txt", "late.bin", "doomed.bin"] {
            assert_eq!(
                rest.get(n, "quorum", key).await,
                None,
                "{key} on {}",
                n.name
            );
        }
    }
    for n in all {
        assert_eq!(rest.try_get(n, "brand-new", "refused.bin").await, Ok(None));
    }
    // The refused completion left the upload in place: completing it again now works.
    assert_eq!(
        rest.complete_multipart(&b, "quorum", "late.bin", &late_id, &late_parts)
            .await,
        201
    );
    eventually("the late upload everywhere", &all, || async {
        for n in all {
            if rest.try_get(n, "quorum", "late.bin").await != Ok(Some(late.clone())) {
                return None;
            }
        }
        Some(())
    })
    .await;
    // Every node then holds the same versions and chunk files (the upload's parts,
    // held on a until now, are part of the object).
    storage_converges(&rest, &all).await;
    // The refused delete marker and tag change were made nowhere.
    for n in all {
        let v = rest.json(n, "/versions/quorum-v/kept.bin").await;
        let versions = v.as_ref().map(|v| v["versions"].clone());
        assert_eq!(
            versions.as_ref().and_then(Value::as_array).map(Vec::len),
            Some(1),
            "{versions:?} on {}",
            n.name
        );
        let tags = rest.json(n, "/objects/quorum/first.bin?tags").await;
        assert_eq!(tags, Some(serde_json::json!({})), "tags on {}", n.name);
    }
    for n in [&mut a, &mut b, &mut cc] {
        n.stop();
    }
    fsck_clean(&[&a, &b, &cc]);
}

/// Flip one byte in every chunk file on a node; how many.
fn corrupt_every_chunk(root: &Path) -> usize {
    let mut n = 0;
    for path in chunk_files(root) {
        let Ok(mut bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(first) = bytes.first_mut() {
            *first ^= 0xff;
            std::fs::write(&path, bytes).expect("rewriting a chunk");
            n += 1;
        }
    }
    n
}
