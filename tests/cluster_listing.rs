//! Listings of a cluster larger than its replication factor: five real processes on
//! loopback, RF 3, so each node holds only about 3/5 of the keys. Every listing (S3
//! ListObjects v1 and v2, ListObjectVersions, ListMultipartUploads and the REST listing)
//! through every node returns every key right after it was written and none right after
//! it was deleted; DeleteBucket sees keys held elsewhere; and a listing that cannot
//! reach enough replicas answers 503 instead of a short page.
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline.

mod cluster_common;

use std::collections::BTreeSet;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
};
use cluster_common::*;

const NODES: usize = 5;
const NAMES: [&str; NODES] = ["n1", "n2", "n3", "n4", "n5"];
/// Keys written in the quorum-mode test, spread over `DIRS` folders.
const KEYS: usize = 200;
const DIRS: usize = 4;
/// Keys deleted again.
const DELETED: usize = 50;
/// Small pages, so listings page through many cursors.
const SMALL_PAGE: i32 = 7;
/// Write-then-list rounds of the async-mode test, and keys per round.
const ROUNDS: usize = 10;
const KEYS_PER_ROUND: usize = 10;

fn key(i: usize) -> String {
    format!("dir{}/k{i:03}", i % DIRS)
}

/// Every key of a ListObjectsV2 listing through `s3`, paged by `page` (and with
/// `delimiter`, the common prefixes too).
async fn list_v2(
    s3: &Client,
    bucket: &str,
    page: i32,
    delimiter: Option<&str>,
) -> Result<(Vec<String>, Vec<String>), u16> {
    let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(page)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| s3_status(&e))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(String::from)),
        );
        assert!(
            out.contents().len() + out.common_prefixes().len() <= page as usize,
            "a page larger than max-keys"
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok((keys, prefixes)),
        }
    }
}

/// Every key of a ListObjects (v1) listing through `s3`, following NextMarker.
async fn list_v1(s3: &Client, bucket: &str, page: i32) -> Vec<String> {
    let mut keys = Vec::new();
    let mut marker = None;
    loop {
        let out = s3
            .list_objects()
            .bucket(bucket)
            .max_keys(page)
            .set_marker(marker)
            .send()
            .await
            .expect("ListObjects");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        if out.is_truncated() != Some(true) {
            return keys;
        }
        marker = out.next_marker().map(String::from);
        assert!(marker.is_some(), "a truncated page without NextMarker");
    }
}

/// Every key of the REST listing through node `n`, paged by `limit`.
async fn list_rest(c: &reqwest::Client, n: &Node, bucket: &str, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(
            c,
            n,
            &format!("/objects/{bucket}?limit={limit}&cursor={cursor}"),
        )
        .await
        .expect("REST listing");
        let objects = page["objects"].as_array().expect("objects");
        keys.extend(
            objects
                .iter()
                .filter_map(|o| o["key"].as_str().map(String::from)),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = urlencoding(c),
            None => return keys,
        }
    }
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
}

async fn delete_keys(s3: &Client, bucket: &str, keys: &[String]) {
    let objects: Vec<ObjectIdentifier> = keys
        .iter()
        .map(|k| {
            ObjectIdentifier::builder()
                .key(k)
                .build()
                .expect("identifier")
        })
        .collect();
    let out = s3
        .delete_objects()
        .bucket(bucket)
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("DeleteObjects");
    assert!(
        out.errors().is_empty(),
        "DeleteObjects errors: {:?}",
        out.errors()
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every listing form through every node returns exactly `want` (sorted).
async fn every_listing_is(c: &reqwest::Client, nodes: &[Node], bucket: &str, want: &[String]) {
    let dirs: BTreeSet<String> = want
        .iter()
        .filter_map(|k| k.split_once('/').map(|(d, _)| format!("{d}/")))
        .collect();
    for n in nodes {
        let s3 = s3_client(n);
        let (keys, prefixes) = list_v2(&s3, bucket, 1000, None)
            .await
            .expect("ListObjectsV2");
        assert_eq!(keys, want, "ListObjectsV2 through {}", n.name);
        assert!(prefixes.is_empty());
        let (keys, _) = list_v2(&s3, bucket, SMALL_PAGE, None)
            .await
            .expect("ListObjectsV2");
        assert_eq!(
            keys, want,
            "ListObjectsV2 in pages of {SMALL_PAGE} through {}",
            n.name
        );
        let (keys, prefixes) = list_v2(&s3, bucket, 2, Some("/")).await.expect("delimiter");
        assert!(keys.is_empty(), "every key is in a folder");
        assert_eq!(
            prefixes,
            dirs.iter().cloned().collect::<Vec<_>>(),
            "common prefixes through {}",
            n.name
        );
        assert_eq!(
            list_v1(&s3, bucket, SMALL_PAGE).await,
            want,
            "ListObjects through {}",
            n.name
        );
        assert_eq!(
            list_rest(c, n, bucket, 13).await,
            want,
            "REST listing through {}",
            n.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_at_rf3_list_every_key_through_every_node_in_quorum_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut nodes: Vec<Node> = NAMES.iter().map(|n| Node::new(dir.path(), n)).collect();
    form_cluster(
        &c,
        &mut nodes,
        &["--quorum-required", "true", "--replication-timeout", "2s"],
    )
    .await;
    let s3: Vec<Client> = nodes.iter().map(s3_client).collect();
    s3[0]
        .create_bucket()
        .bucket("flat")
        .send()
        .await
        .expect("create bucket");

    // Written through one node, listed at once through every node.
    for i in 0..KEYS {
        put(&s3[0], "flat", &key(i), &format!("body {i}")).await;
    }
    let mut want = sorted((0..KEYS).map(key).collect());
    every_listing_is(&c, &nodes, "flat", &want).await;
    // Each node holds only part of the keys: the listings above were merged.
    for n in &nodes {
        let held = cluster(&c, n).await.expect("cluster status")["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|m| m["address"] == format!("127.0.0.1:{}", n.http_port))
            .and_then(|m| m["objectCount"].as_u64())
            .expect("objectCount");
        assert!(held < KEYS as u64, "{} holds {held} of {KEYS} keys", n.name);
    }

    // Deleted through another node, gone at once from every listing.
    let deleted: Vec<String> = (0..DELETED).map(|i| key(i * 3)).collect();
    delete_keys(&s3[2], "flat", &deleted).await;
    want.retain(|k| !deleted.contains(k));
    every_listing_is(&c, &nodes, "flat", &want).await;

    // Versions: two of each key and a delete marker on some, listed through every node.
    s3[1]
        .create_bucket()
        .bucket("versioned")
        .send()
        .await
        .expect("create");
    s3[1]
        .put_bucket_versioning()
        .bucket("versioned")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
    for i in 0..30 {
        put(&s3[1], "versioned", &key(i), "one").await;
        put(&s3[3], "versioned", &key(i), "two").await;
    }
    for i in 0..5 {
        s3[4]
            .delete_object()
            .bucket("versioned")
            .key(key(i))
            .send()
            .await
            .expect("delete marker");
    }
    for s in &s3 {
        let (versions, markers) = list_versions(s, "versioned", SMALL_PAGE).await;
        assert_eq!(versions.len(), 60, "versions");
        assert_eq!(markers.len(), 5, "delete markers");
        // The newest of each key is the one marked latest: the marker, or "two".
        let latest: BTreeSet<String> = versions
            .iter()
            .chain(&markers)
            .filter(|v| v.1)
            .map(|v| v.0.clone())
            .collect();
        assert_eq!(latest.len(), 30, "one latest entry per key");
        assert!(
            markers.iter().all(|m| m.1),
            "the delete markers are the latest"
        );
    }

    // DeleteBucket through any node sees the keys other nodes hold.
    for s in &s3 {
        let err = s
            .delete_bucket()
            .bucket("flat")
            .send()
            .await
            .expect_err("not empty");
        assert_eq!(
            s3_status(&err),
            409,
            "DeleteBucket of a bucket holding keys elsewhere"
        );
    }
    delete_keys(&s3[0], "flat", &want).await;
    every_listing_is(&c, &nodes, "flat", &[]).await;
    s3[4]
        .delete_bucket()
        .bucket("flat")
        .send()
        .await
        .expect("DeleteBucket of an empty bucket");

    // One node killed: every key range still has a majority of its replicas.
    for i in 0..20 {
        put(&s3[0], "versioned", &format!("after/{i}"), "x").await;
    }
    nodes[3].kill_9();
    let (keys, _) = list_v2(&s3[0], "versioned", SMALL_PAGE, None)
        .await
        .expect("one node down");
    assert_eq!(
        keys.len(),
        30 - 5 + 20,
        "a complete listing with one node down"
    );
    // Two killed: some range has lost its majority, and the listing says so.
    nodes[4].kill_9();
    let status = list_v2(&s3[0], "versioned", SMALL_PAGE, None)
        .await
        .expect_err("too few");
    assert_eq!(
        status, 503,
        "a listing that cannot cover every range is refused"
    );
}

/// Every (key, is latest) of a ListObjectVersions listing, versions and delete markers
/// apart, paged by `page`.
async fn list_versions(
    s3: &Client,
    bucket: &str,
    page: i32,
) -> (Vec<(String, bool)>, Vec<(String, bool)>) {
    let (mut versions, mut markers) = (Vec::new(), Vec::new());
    let (mut km, mut vm) = (None, None);
    let mut seen = BTreeSet::new();
    loop {
        let out = s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(page)
            .set_key_marker(km)
            .set_version_id_marker(vm)
            .send()
            .await
            .expect("ListObjectVersions");
        for v in out.versions() {
            let id = (
                v.key().unwrap_or_default().to_string(),
                v.version_id().map(String::from),
            );
            assert!(seen.insert(id), "a version listed twice");
            versions.push((
                v.key().unwrap_or_default().to_string(),
                v.is_latest() == Some(true),
            ));
        }
        for m in out.delete_markers() {
            let id = (
                m.key().unwrap_or_default().to_string(),
                m.version_id().map(String::from),
            );
            assert!(seen.insert(id), "a delete marker listed twice");
            markers.push((
                m.key().unwrap_or_default().to_string(),
                m.is_latest() == Some(true),
            ));
        }
        if out.is_truncated() != Some(true) {
            return (versions, markers);
        }
        km = out.next_key_marker().map(String::from);
        vm = out.next_version_id_marker().map(String::from);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_at_rf3_list_after_write_and_delete_through_another_node_in_async_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut nodes: Vec<Node> = NAMES.iter().map(|n| Node::new(dir.path(), n)).collect();
    form_cluster(&c, &mut nodes, &[]).await;
    let s3: Vec<Client> = nodes.iter().map(s3_client).collect();
    s3[0]
        .create_bucket()
        .bucket("async")
        .send()
        .await
        .expect("create bucket");
    let mut want = Vec::new();
    for round in 0..ROUNDS {
        let batch: Vec<String> = (0..KEYS_PER_ROUND)
            .map(|i| format!("r{round:02}/k{i}"))
            .collect();
        for k in &batch {
            put(&s3[round % NODES], "async", k, k).await;
        }
        want.extend(batch);
        let via = &s3[(round + 1) % NODES];
        let (keys, _) = list_v2(via, "async", 1000, None).await.expect("list");
        assert_eq!(
            keys,
            sorted(want.clone()),
            "round {round}: listed through another node"
        );
    }
    // Deletes through one node, gone at once through another.
    let gone: Vec<String> = want.iter().step_by(3).cloned().collect();
    delete_keys(&s3[1], "async", &gone).await;
    want.retain(|k| !gone.contains(k));
    every_listing_is(&c, &nodes, "async", &sorted(want.clone())).await;

    // Unfinished uploads live on their keys' coordinators; every node lists them all.
    let mut uploads = BTreeSet::new();
    for i in 0..6 {
        let out = s3[0]
            .create_multipart_upload()
            .bucket("async")
            .key(format!("upload-{i}"))
            .send()
            .await
            .expect("create upload");
        uploads.insert(out.upload_id().expect("id").to_string());
    }
    for s in &s3 {
        let out = s
            .list_multipart_uploads()
            .bucket("async")
            .send()
            .await
            .expect("ListMultipartUploads");
        let listed: BTreeSet<String> = out
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id().map(String::from))
            .collect();
        assert_eq!(listed, uploads);
    }

    // Emptied through one node, deleted through another.
    delete_keys(&s3[2], "async", &want).await;
    every_listing_is(&c, &nodes, "async", &[]).await;
    s3[3]
        .delete_bucket()
        .bucket("async")
        .send()
        .await
        .expect("DeleteBucket");
    // The unfinished uploads held on other nodes go with the bucket there too (as S3
    // deletes a bucket with uploads in progress): every node forgets it.
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("the bucket gone from every node", &all, || async {
        for n in &nodes {
            let r = c
                .head(n.url("/buckets/async"))
                .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
                .send()
                .await
                .ok()?;
            (r.status() == 404).then_some(())?;
        }
        Some(())
    })
    .await;
}
