//! Coordinator forwarding with real processes on loopback: a 5-node cluster at
//! replication factor 3 in async mode (so most requests arrive at a node that holds no
//! copy of their key) where every change to a key is served by the key's coordinator, whichever node
//! received it. Conditional creates racing through three nodes have exactly one
//! winner; read-modify-write loops with `If-Match` through three nodes lose no update;
//! a multipart upload is driven through all three nodes; and with the coordinator
//! killed, its keys are still written through the others at once, and uploads started
//! then are finished through every node after it returns.
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline.

mod cluster_common;
mod common;
#[path = "common/s3.rs"]
mod sdk;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, Tag, Tagging,
};
use cluster_common::*;

/// Keys raced by three conditional creates each.
const RACED_KEYS: usize = 12;
/// Increments each of the three workers makes to the shared counter.
const INCREMENTS_PER_WORKER: u64 = 8;
/// Tries one increment may take (each lost race or stale read costs one).
const MAX_TRIES_PER_INCREMENT: usize = 400;
/// Multipart parts other than the last must be at least this large (as S3).
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Tag changes made through one node and read back through the next.
const TAG_ROUNDS: usize = 9;
/// Multipart uploads started while a node is down, finished after it returns.
const PINNED_UPLOADS: usize = 4;
/// Keys one DeleteObjects request removes (their coordinators are spread over the
/// nodes).
const BULK_DELETED_KEYS: usize = 12;
/// Keys written right after their coordinator was killed.
const KEYS_AFTER_KILL: usize = 24;

async fn get_bytes(s3: &Client, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let etag = out.e_tag().unwrap_or_default().to_string();
    let bytes = out.body.collect().await.ok()?.into_bytes().to_vec();
    Some((bytes, etag))
}

/// Whether every node serves exactly `want` for `bucket/key`.
async fn everywhere(s3: &[Client], bucket: &str, key: &str, want: &[u8]) -> Option<()> {
    for s in s3 {
        if get_bytes(s, bucket, key).await?.0 != want {
            return None;
        }
    }
    Some(())
}

async fn racing_conditional_creates_have_one_winner(s3: &[Client], nodes: &[&Node]) {
    for k in 0..RACED_KEYS {
        let key = format!("once-{k}");
        let tries = s3.iter().enumerate().map(|(i, s)| {
            s.put_object()
                .bucket("coord")
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from(vec![i as u8; 1000]))
                .send()
        });
        let results = futures::future::join_all(tries).await;
        let mut winners = Vec::new();
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(_) => winners.push(i),
                Err(e) => assert!(
                    matches!(s3_status(e), 409 | 412),
                    "{key} through node {i}: {e:?}"
                ),
            }
        }
        assert_eq!(winners.len(), 1, "{key}: winners {winners:?}");
        let want = vec![winners[0] as u8; 1000];
        eventually(&format!("{key} everywhere"), nodes, || {
            everywhere(s3, "coord", &key, &want)
        })
        .await;
    }
}

/// Add one to the counter through `s3` with `If-Match`, retrying lost races.
async fn increment(s3: &Client) {
    for _ in 0..MAX_TRIES_PER_INCREMENT {
        let Some((bytes, etag)) = get_bytes(s3, "coord", "counter").await else {
            continue;
        };
        let n: u64 = String::from_utf8_lossy(&bytes).parse().expect("a number");
        let put = s3
            .put_object()
            .bucket("coord")
            .key("counter")
            .if_match(etag)
            .body(ByteStream::from((n + 1).to_string().into_bytes()))
            .send()
            .await;
        match put {
            Ok(_) => return,
            Err(e) => assert!(matches!(s3_status(&e), 409 | 412), "increment: {e:?}"),
        }
    }
    panic!("no increment succeeded in {MAX_TRIES_PER_INCREMENT} tries");
}

async fn if_match_loops_lose_no_update(s3: &[Client], nodes: &[&Node]) {
    s3[0]
        .put_object()
        .bucket("coord")
        .key("counter")
        .body(ByteStream::from_static(b"0"))
        .send()
        .await
        .expect("counter");
    let workers = s3.iter().map(|s| async move {
        for _ in 0..INCREMENTS_PER_WORKER {
            increment(s).await;
        }
    });
    futures::future::join_all(workers).await;
    let total = (INCREMENTS_PER_WORKER * s3.len() as u64).to_string();
    eventually("the counter's final value everywhere", nodes, || {
        everywhere(s3, "coord", "counter", total.as_bytes())
    })
    .await;
}

/// Tag changes through one node are read back at once through another (the reading
/// node's copy has the same version with older tags until replication arrives).
async fn tag_changes_are_read_back_through_any_node(s3: &[Client]) {
    s3[0]
        .put_object()
        .bucket("coord")
        .key("tagged")
        .body(ByteStream::from_static(b"tagged"))
        .send()
        .await
        .expect("tagged");
    for round in 0..TAG_ROUNDS {
        let writer = &s3[round % s3.len()];
        let reader = &s3[(round + 1) % s3.len()];
        let tag = Tag::builder()
            .key("round")
            .value(round.to_string())
            .build()
            .expect("tag");
        writer
            .put_object_tagging()
            .bucket("coord")
            .key("tagged")
            .tagging(Tagging::builder().tag_set(tag).build().expect("tagging"))
            .send()
            .await
            .expect("put tags");
        let read = reader
            .get_object_tagging()
            .bucket("coord")
            .key("tagged")
            .send()
            .await
            .expect("get tags");
        let values: Vec<&str> = read.tag_set().iter().map(|t| t.value()).collect();
        assert_eq!(values, [round.to_string()], "round {round}");
    }
}

/// Upload part `number` of upload `id` of `key` (bucket `coord`) through `s3`; the
/// part as a completion lists it.
async fn upload_part(
    s3: &Client,
    key: &str,
    id: &str,
    number: i32,
    body: Vec<u8>,
) -> CompletedPart {
    let part = s3
        .upload_part()
        .bucket("coord")
        .key(key)
        .upload_id(id)
        .part_number(number)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key} part {number}: {e:?}"));
    CompletedPart::builder()
        .part_number(number)
        .e_tag(part.e_tag().unwrap_or_default())
        .build()
}

/// Complete upload `id` of `key` (bucket `coord`) through `s3` with `parts`.
async fn complete(s3: &Client, key: &str, id: &str, parts: Vec<CompletedPart>) {
    s3.complete_multipart_upload()
        .bucket("coord")
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("complete {key}: {e:?}"));
}

async fn multipart_upload_spans_nodes(s3: &[Client], nodes: &[&Node]) {
    let first: Vec<u8> = (0..PART_SIZE).map(|i| (i % 251) as u8).collect();
    let last = b"the last part".to_vec();
    let up = s3[0]
        .create_multipart_upload()
        .bucket("coord")
        .key("big/assembled")
        .send()
        .await
        .expect("create upload");
    let id = up.upload_id().expect("upload id").to_string();
    let mut done = Vec::new();
    for (n, (s, body)) in [(&s3[1], &first), (&s3[2], &last)].into_iter().enumerate() {
        done.push(upload_part(s, "big/assembled", &id, n as i32 + 1, body.clone()).await);
    }
    let listed = s3[2]
        .list_parts()
        .bucket("coord")
        .key("big/assembled")
        .upload_id(&id)
        .send()
        .await
        .expect("list parts");
    assert_eq!(listed.parts().len(), 2);
    complete(&s3[1], "big/assembled", &id, done).await;
    let whole = [first, last].concat();
    eventually("the assembled object everywhere", nodes, || {
        everywhere(s3, "coord", "big/assembled", &whole)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_to_a_key_meet_at_its_coordinator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut members: Vec<Node> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .map(|name| Node::new(dir.path(), name))
        .collect();
    form_cluster(&c, &mut members, &[]).await;
    let [a, b, cc, d, e] = &mut members[..] else {
        unreachable!("five nodes")
    };
    let s3: Vec<Client> = [&*a, &*b, &*cc, &*d, &*e]
        .into_iter()
        .map(s3_client)
        .collect();
    s3[0]
        .create_bucket()
        .bucket("coord")
        .send()
        .await
        .expect("bucket");
    let nodes = [&*a, &*b, &*cc, &*d, &*e];

    racing_conditional_creates_have_one_winner(&s3, &nodes).await;
    if_match_loops_lose_no_update(&s3, &nodes).await;
    multipart_upload_spans_nodes(&s3, &nodes).await;
    tag_changes_are_read_back_through_any_node(&s3).await;
    s3[0]
        .create_bucket()
        .bucket("versioned")
        .send()
        .await
        .expect("versioned bucket");
    deleting_the_newest_version_by_id_restores_the_previous(&s3, &nodes).await;
    bulk_deletes_are_made_by_each_keys_coordinator(&s3, &nodes).await;

    let mut forwarded = 0;
    for n in nodes {
        let stats = get_json(&c, n, "/stats").await.expect("stats");
        forwarded += stats["forwardedRequests"]
            .as_u64()
            .expect("forwardedRequests");
    }
    assert!(forwarded > 0, "no request was forwarded");

    // With c killed (and not yet seen down), the keys it coordinated are written
    // through the others at once: nothing waits for the failure to be noticed.
    cc.kill_9();
    let survivors = [&*a, &*b, &*d, &*e];
    let s3_left: Vec<Client> = survivors.into_iter().map(s3_client).collect();
    for k in 0..KEYS_AFTER_KILL {
        let s = &s3_left[k % s3_left.len()];
        s.put_object()
            .bucket("coord")
            .key(format!("after-kill-{k}"))
            .if_none_match("*")
            .body(ByteStream::from(vec![k as u8; 10]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("after-kill-{k}: {e:?}"));
    }
    for k in 0..KEYS_AFTER_KILL {
        let want = vec![k as u8; 10];
        let key = format!("after-kill-{k}");
        eventually("writes made without c", &survivors, || {
            everywhere(&s3_left, "coord", &key, &want)
        })
        .await;
    }

    // A listing of uploads needs an answer from every node not seen down (each upload
    // lives on one node): until a and b see c down it answers 503, never a short list.
    let refused = s3[0].list_multipart_uploads().bucket("coord").send().await;
    if let Err(e) = &refused {
        assert_eq!(s3_status(e), 503, "{e:?}");
    }
    let c_port = cc.http_port;
    eventually("the others see c down", &survivors, || async {
        for n in survivors {
            let status = cluster(&c, n).await?;
            (liveness_of(&status, c_port)? == "down").then_some(())?;
        }
        Some(())
    })
    .await;

    // Uploads started while c is down stay on the node that took them: once c is back
    // (and coordinates some of their keys again), every step still reaches them,
    // through any node, the holder itself included.
    let mut pinned = Vec::new();
    for k in 0..PINNED_UPLOADS {
        let key = format!("pinned-{k}");
        let up = s3_left[k % s3_left.len()]
            .create_multipart_upload()
            .bucket("coord")
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create {key}: {e:?}"));
        pinned.push((key, up.upload_id().expect("upload id").to_string()));
    }
    // Each node lists every node's uploads, not only those it holds.
    for s in &s3_left {
        let listed = s
            .list_multipart_uploads()
            .bucket("coord")
            .prefix("pinned-")
            .send()
            .await
            .expect("ListMultipartUploads");
        let mut ids: Vec<&str> = listed
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id())
            .collect();
        ids.sort_unstable();
        let mut want: Vec<&str> = pinned.iter().map(|(_, id)| id.as_str()).collect();
        want.sort_unstable();
        assert_eq!(ids, want, "uploads listed through one node");
    }
    // Paged two at a time through a, the markers carry across nodes: every upload once,
    // in key order.
    let (mut paged, mut key_marker, mut id_marker) = (Vec::new(), None, None);
    loop {
        let page = s3[0]
            .list_multipart_uploads()
            .bucket("coord")
            .prefix("pinned-")
            .max_uploads(2)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await
            .expect("ListMultipartUploads page");
        assert!(page.uploads().len() <= 2, "{page:?}");
        paged.extend(page.uploads().iter().map(|u| {
            let key = u.key().unwrap_or_default().to_string();
            (key, u.upload_id().unwrap_or_default().to_string())
        }));
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_upload_id_marker().map(str::to_string);
    }
    let mut want = pinned.clone();
    want.sort();
    assert_eq!(paged, want, "uploads paged through a");
    cc.start(CLUSTER_SECRET, &[]);
    let all = [&*a, &*b, &*cc, &*d, &*e];
    eventually("c back and seen alive", &all, || agreed_ring(&c, &all)).await;
    for (k, (key, id)) in pinned.iter().enumerate() {
        let body = vec![k as u8; 100];
        let mut parts = Vec::new();
        // Part n goes through node n - 1.
        for (i, s) in s3.iter().enumerate() {
            let body = if i + 1 == s3.len() {
                body.clone()
            } else {
                vec![k as u8; PART_SIZE]
            };
            parts.push(upload_part(s, key, id, i as i32 + 1, body).await);
        }
        complete(&s3[k % s3.len()], key, id, parts).await;
    }
}

/// Deleting a versioned key's newest version by id makes the one before it current
/// again, and every node serves that one at once.
async fn deleting_the_newest_version_by_id_restores_the_previous(s3: &[Client], nodes: &[&Node]) {
    sdk::enable_versioning(&s3[0], "versioned").await;
    let put = |body: &'static [u8]| {
        s3[0]
            .put_object()
            .bucket("versioned")
            .key("undone")
            .body(ByteStream::from_static(body))
            .send()
    };
    put(b"older").await.expect("older");
    let newer = put(b"newer").await.expect("newer");
    eventually("the newer version everywhere", nodes, || {
        everywhere(s3, "versioned", "undone", b"newer")
    })
    .await;
    s3[1]
        .delete_object()
        .bucket("versioned")
        .key("undone")
        .version_id(newer.version_id().expect("version id"))
        .send()
        .await
        .expect("delete the newer version");
    for (i, s) in s3.iter().enumerate() {
        let got = get_bytes(s, "versioned", "undone").await.map(|(b, _)| b);
        assert_eq!(got.as_deref(), Some(&b"older"[..]), "through node {i}");
    }
}

/// DeleteObjects through one node, for keys coordinated by every node: each key's
/// delete is made by that key's coordinator (over `/internal/delete`), and right after
/// the answer no node serves any of the keys.
async fn bulk_deletes_are_made_by_each_keys_coordinator(s3: &[Client], nodes: &[&Node]) {
    let keys: Vec<String> = (0..BULK_DELETED_KEYS)
        .map(|k| format!("bulk-{k}"))
        .collect();
    for key in &keys {
        s3[0]
            .put_object()
            .bucket("coord")
            .key(key)
            .body(ByteStream::from_static(b"to be deleted"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    }
    for key in &keys {
        eventually("the bulk keys everywhere", nodes, || {
            everywhere(s3, "coord", key, b"to be deleted")
        })
        .await;
    }
    let objects: Vec<ObjectIdentifier> = keys
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build().expect("id"))
        .collect();
    let out = s3[1]
        .delete_objects()
        .bucket("coord")
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("DeleteObjects");
    assert_eq!(out.deleted().len(), BULK_DELETED_KEYS, "{:?}", out.errors());
    // The keys' coordinators made the deletes: the other nodes were asked for them
    // (twelve keys all coordinated by the receiving node would be a 1 in 5^12 chance).
    let mut asked = Vec::new();
    for n in nodes {
        asked.push(requests_counted(n, "InternalDelete").await);
    }
    assert_eq!(asked[1], 0, "the receiving node asked itself: {asked:?}");
    assert!(
        asked.iter().sum::<u64>() > 0,
        "no coordinator was asked: {asked:?}"
    );
    for (i, s) in s3.iter().enumerate() {
        for key in &keys {
            assert!(
                get_bytes(s, "coord", key).await.is_none(),
                "{key} still served through node {i} after DeleteObjects"
            );
        }
    }
}

/// How many requests of `operation` node `n` has answered, from its `/metrics`.
async fn requests_counted(n: &Node, operation: &str) -> u64 {
    let text = client()
        .get(n.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let label = format!("operation=\"{operation}\"");
    text.lines()
        .filter(|l| l.starts_with("bucketdb_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
