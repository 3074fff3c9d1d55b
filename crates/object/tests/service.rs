//! Integration tests of the object service over a real chunk store and redb metadata,
//! each on its own temporary directory.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::task::Poll;

use bucketdb_object::{
    DeleteOutcome, LifecycleReport, LifecycleRule, ListQuery, MIN_PART_SIZE, ObjectError,
    PutOptions, RangeSpec, ServiceConfig, Versioning,
};
use bucketdb_store::chunks::bucket_hash;
use bytes::Bytes;
use common::*;
use futures::StreamExt;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
const HOUR_MS: u64 = 60 * 60 * 1000;

// ---------------------------------------------------------------------------------------
// 1. Round trips
// ---------------------------------------------------------------------------------------

/// Put `data` as bkt/obj, check the record, the bytes and the chunk files it left.
async fn round_trip(env: &Env, data: &[u8], expect_chunk_files: usize) {
    env.create_bucket("bkt").await;
    let rec = env.put("bkt", "obj", data).await;
    assert_eq!(rec.key, "obj");
    assert_eq!(rec.size, data.len() as u64);
    assert_eq!(rec.etag, md5_hex(data));
    assert_eq!(rec.version_id, "null");
    assert!(!rec.delete_marker);
    assert_eq!(rec.content_type, "application/octet-stream");
    assert_eq!(rec.created_ms, START_MS);
    let head = env.svc.head_object("bkt", "obj", None).unwrap();
    assert_eq!(head, rec);
    let got = env.get("bkt", "obj", None).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
    assert_eq!(env.chunk_files().len(), expect_chunk_files);
    assert_eq!(rec.chunks().len(), expect_chunk_files);
    for c in rec.chunks() {
        assert!(env.chunk_path(c).is_file());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_empty_object() {
    let env = Env::new();
    round_trip(&env, b"", 0).await;
    let rec = env.svc.head_object("bkt", "obj", None).unwrap();
    assert_eq!(rec.etag, "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(rec.sha256, sha256_hex(b""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_inline_object_creates_no_chunk_files() {
    let env = Env::new();
    let data = pattern(INLINE, 1);
    round_trip(&env, &data, 0).await;
    let rec = env.svc.head_object("bkt", "obj", None).unwrap();
    assert_eq!(rec.sha256, sha256_hex(&data));
    assert_eq!(rec.body, bucketdb_store::records::Body::Inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_just_above_inline_threshold_uses_one_chunk() {
    let env = Env::new();
    let data = pattern(INLINE + 1, 2);
    round_trip(&env, &data, 1).await;
    let rec = env.svc.head_object("bkt", "obj", None).unwrap();
    assert_eq!(rec.sha256, sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_exactly_one_chunk() {
    let env = Env::new();
    let data = pattern(CHUNK, 3);
    round_trip(&env, &data, 1).await;
    let rec = env.svc.head_object("bkt", "obj", None).unwrap();
    assert_eq!(rec.sha256, sha256_hex(&data));
    assert_eq!(rec.chunks()[0].len, CHUNK as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_multi_chunk() {
    let env = Env::new();
    let data = pattern(200 * 1024 + 7, 4);
    round_trip(&env, &data, 4).await;
    let rec = env.svc.head_object("bkt", "obj", None).unwrap();
    let lens: Vec<u64> = rec.chunks().iter().map(|c| c.len).collect();
    assert_eq!(
        lens,
        vec![CHUNK as u64, CHUNK as u64, CHUNK as u64, 8 * 1024 + 7]
    );
    assert_eq!(rec.sha256, multi_chunk_sha256(&data, CHUNK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_keeps_content_type_user_meta_and_tags() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let opts = PutOptions {
        content_type: Some("text/plain".into()),
        user_meta: vec![("colour".into(), "blue".into())],
        tags: vec![("team".into(), "storage".into())],
        declared_size: Some(5),
        create_bucket: false,
        ..PutOptions::default()
    };
    let rec = env
        .svc
        .put_object("bkt", "k", body(b"hello"), opts)
        .await
        .unwrap();
    let head = env.svc.head_object("bkt", "k", None).unwrap();
    assert_eq!(head, rec);
    assert_eq!(head.content_type, "text/plain");
    assert_eq!(
        head.user_meta,
        vec![("colour".to_string(), "blue".to_string())]
    );
    assert_eq!(head.tags, vec![("team".to_string(), "storage".to_string())]);
}

// ---------------------------------------------------------------------------------------
// 2. Ranges
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_across_chunk_boundaries() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(200 * 1024 + 7, 5);
    env.put("bkt", "obj", &data).await;
    let size = data.len() as u64;
    let c = CHUNK as u64;
    let cases: Vec<(RangeSpec, u64, u64)> = vec![
        (
            RangeSpec::From {
                start: 0,
                end: Some(0),
            },
            0,
            0,
        ),
        (
            RangeSpec::From {
                start: c - 1,
                end: Some(c),
            },
            c - 1,
            c,
        ),
        (
            RangeSpec::From {
                start: c,
                end: Some(2 * c - 1),
            },
            c,
            2 * c - 1,
        ),
        (
            RangeSpec::From {
                start: 10,
                end: Some(3 * c + 5),
            },
            10,
            3 * c + 5,
        ),
        (
            RangeSpec::From {
                start: c + 3,
                end: None,
            },
            c + 3,
            size - 1,
        ),
        (
            RangeSpec::From {
                start: 3 * c,
                end: Some(size + 1000),
            },
            3 * c,
            size - 1,
        ),
        (
            RangeSpec::From {
                start: size - 1,
                end: None,
            },
            size - 1,
            size - 1,
        ),
        (RangeSpec::Suffix(7), size - 7, size - 1),
        (RangeSpec::Suffix(c + 9), size - c - 9, size - 1),
        (RangeSpec::Suffix(size * 2), 0, size - 1),
    ];
    for (spec, s, e) in cases {
        let (reader, got) = env.get_range("bkt", "obj", spec).await;
        assert_eq!(reader.range, Some((s, e)), "{spec:?}");
        assert_eq!(reader.content_length(), e - s + 1, "{spec:?}");
        assert_eq!(got.len() as u64, e - s + 1, "{spec:?}");
        assert!(
            got == data[s as usize..=e as usize],
            "{spec:?}: wrong bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_of_inline_object() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(500, 6);
    env.put("bkt", "small", &data).await;
    let (r, got) = env
        .get_range(
            "bkt",
            "small",
            RangeSpec::From {
                start: 100,
                end: Some(199),
            },
        )
        .await;
    assert_eq!(r.range, Some((100, 199)));
    assert_eq!(got, data[100..200]);
    let (_, got) = env.get_range("bkt", "small", RangeSpec::Suffix(3)).await;
    assert_eq!(got, data[497..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_range_is_invalid_range() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(70_000, 7);
    env.put("bkt", "obj", &data).await;
    env.put("bkt", "empty", b"").await;
    let svc = &env.svc;
    for spec in [
        RangeSpec::From {
            start: 70_000,
            end: None,
        },
        RangeSpec::From {
            start: 80_000,
            end: Some(90_000),
        },
        RangeSpec::From {
            start: 10,
            end: Some(9),
        },
        RangeSpec::Suffix(0),
    ] {
        match svc
            .get_object("bkt", "obj", None, Some(spec), &Default::default())
            .await
        {
            Err(ObjectError::InvalidRange { size }) => assert_eq!(size, 70_000),
            Err(e) => panic!("{spec:?}: {e:?}"),
            Ok(_) => panic!("{spec:?} was satisfied"),
        }
    }
    for spec in [
        RangeSpec::From {
            start: 0,
            end: None,
        },
        RangeSpec::Suffix(1),
    ] {
        match svc
            .get_object("bkt", "empty", None, Some(spec), &Default::default())
            .await
        {
            Err(ObjectError::InvalidRange { size }) => assert_eq!(size, 0),
            Err(e) => panic!("{spec:?}: {e:?}"),
            Ok(_) => panic!("{spec:?} was satisfied on an empty object"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Failed uploads leave nothing behind
// ---------------------------------------------------------------------------------------

/// After a failed put of bkt/k: the key is not visible and every chunk file is gone.
async fn assert_nothing_left(env: &Env) {
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
    assert!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .is_empty()
    );
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert!(page.objects.is_empty());
    let left = env.settle_chunk_files(0).await;
    assert!(left.is_empty(), "chunk files left behind: {left:?}");
}

async fn put_declared(env: &Env, data: &[u8], declared: u64) -> Result<(), ObjectError> {
    let opts = PutOptions {
        declared_size: Some(declared),
        ..PutOptions::default()
    };
    env.svc
        .put_object("bkt", "k", body(data), opts)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_shorter_than_declared_size_is_incomplete_and_leaves_nothing() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    // Several chunks are written before the shortfall shows.
    let data = pattern(3 * CHUNK + 123, 8);
    assert_err!(
        put_declared(&env, &data, data.len() as u64 + 1).await,
        ObjectError::IncompleteBody(_)
    );
    assert_nothing_left(&env).await;
    // Same for a body that would have been inline.
    assert_err!(
        put_declared(&env, b"abc", 10).await,
        ObjectError::IncompleteBody(_)
    );
    assert_nothing_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_longer_than_declared_size_is_incomplete_and_leaves_nothing() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(3 * CHUNK + 123, 9);
    assert_err!(
        put_declared(&env, &data, 2 * CHUNK as u64 + 10).await,
        ObjectError::IncompleteBody(_)
    );
    assert_nothing_left(&env).await;
    assert_err!(
        put_declared(&env, b"abcdef", 5).await,
        ObjectError::IncompleteBody(_)
    );
    assert_nothing_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_error_midway_is_incomplete_and_leaves_nothing() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(2 * CHUNK + 5_000, 10);
    let r = env
        .svc
        .put_object("bkt", "k", failing_body(&data), PutOptions::default())
        .await;
    assert_err!(r, ObjectError::IncompleteBody(_));
    assert_nothing_left(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_object_size_is_too_large_and_leaves_nothing() {
    let env = Env::with_config(ServiceConfig {
        max_object_size: 300_000,
        ..default_config()
    });
    env.create_bucket("bkt").await;
    let data = pattern(400_000, 11);
    let r = env
        .svc
        .put_object("bkt", "k", body(&data), PutOptions::default())
        .await;
    match r {
        Err(ObjectError::EntityTooLarge { max }) => assert_eq!(max, 300_000),
        other => panic!("expected EntityTooLarge, got {:?}", other.map(|r| r.size)),
    }
    assert_nothing_left(&env).await;
    // A declared size over the limit is refused before any byte is read.
    assert_err!(
        put_declared(&env, &data, 400_000).await,
        ObjectError::EntityTooLarge { .. }
    );
    assert_nothing_left(&env).await;
    // Exactly the limit is fine.
    env.put("bkt", "k", &data[..300_000]).await;
    assert_eq!(env.get("bkt", "k", None).await, data[..300_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_overwrite_keeps_the_previous_object() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let old = pattern(2 * CHUNK + 1, 12);
    let before = env.put("bkt", "k", &old).await;
    let new = pattern(3 * CHUNK, 13);
    let r = env
        .svc
        .put_object("bkt", "k", failing_body(&new), PutOptions::default())
        .await;
    assert_err!(r, ObjectError::IncompleteBody(_));
    assert_eq!(env.svc.head_object("bkt", "k", None).unwrap(), before);
    let left = env.settle_chunk_files(before.chunks().len()).await;
    assert_eq!(left.len(), before.chunks().len());
    assert_eq!(env.get("bkt", "k", None).await, old);
}

/// A client that disconnects mid-upload: the request future is dropped while a chunk
/// write is still in flight. No chunk file may survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upload_leaves_no_chunk_files() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(2 * CHUNK + 100, 14);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    // The body delivers `data`, then says so and never ends.
    let stalled = body(&data).chain(futures::stream::poll_fn(move |_| {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
        Poll::<Option<std::io::Result<Bytes>>>::Pending
    }));
    let put = env
        .svc
        .put_object("bkt", "k", stalled, PutOptions::default());
    tokio::select! {
        r = put => panic!("the put finished: {:?}", r.map(|r| r.size)),
        _ = rx => {}
    }
    assert_nothing_left(&env).await;
}

// ---------------------------------------------------------------------------------------
// 4. Versioning
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unversioned_overwrite_keeps_one_null_version_and_gc_reclaims_old_chunks() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let v1 = pattern(200 * 1024 + 7, 20);
    env.put("bkt", "k", &v1).await;
    assert_eq!(env.chunk_files().len(), 4);
    let v2 = pattern(CHUNK + 1, 21);
    let rec2 = env.put("bkt", "k", &v2).await;
    assert_eq!(rec2.version_id, "null");
    let versions = env.svc.list_object_versions("bkt", "k").unwrap();
    assert_eq!(versions.versions.len(), 1);
    assert_eq!(versions.versions[0], rec2);
    assert_eq!(env.chunk_files().len(), 6, "old chunks wait for GC");
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 4);
    let mut expected: Vec<_> = rec2.chunks().iter().map(|c| env.chunk_path(c)).collect();
    expected.sort();
    assert_eq!(env.chunk_files(), expected);
    assert_eq!(env.get("bkt", "k", None).await, v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unversioned_delete_removes_object_and_gc_reclaims_chunks() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.put("bkt", "k", &pattern(2 * CHUNK + 3, 22)).await;
    let out = env.svc.delete_object("bkt", "k", None).await.unwrap();
    assert_eq!(
        out,
        DeleteOutcome {
            version_id: Some("null".into()),
            delete_marker: false
        }
    );
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
    assert!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .is_empty()
    );
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 3);
    assert!(env.chunk_files().is_empty());
    // Deleting what does not exist succeeds and reports nothing.
    let out = env.svc.delete_object("bkt", "k", None).await.unwrap();
    assert_eq!(out.version_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_versioning_keeps_every_version_newest_first() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    assert_eq!(
        env.svc.head_bucket("bkt").unwrap().versioning,
        Versioning::Enabled
    );
    let bodies = [
        pattern(100, 30),
        pattern(CHUNK + 17, 31),
        pattern(3 * CHUNK, 32),
    ];
    let mut ids = Vec::new();
    for b in &bodies {
        env.clock.advance_ms(1_000);
        ids.push(env.put("bkt", "k", b).await.version_id);
    }
    assert!(ids.iter().all(|id| id != "null" && !id.is_empty()));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3);
    let listed = env.svc.list_object_versions("bkt", "k").unwrap();
    assert!(!listed.truncated);
    let listed_ids: Vec<_> = listed
        .versions
        .iter()
        .map(|v| v.version_id.clone())
        .collect();
    assert_eq!(listed_ids, ids.iter().rev().cloned().collect::<Vec<_>>());
    assert!(listed.versions.windows(2).all(|w| w[0].seq > w[1].seq));
    for (id, b) in ids.iter().zip(&bodies) {
        assert_eq!(&env.get("bkt", "k", Some(id)).await, b);
        assert_eq!(
            env.svc.head_object("bkt", "k", Some(id)).unwrap().etag,
            md5_hex(b)
        );
    }
    assert_eq!(env.get("bkt", "k", None).await, bodies[2]);
    assert_err!(
        env.svc.head_object("bkt", "k", Some("no-such-version")),
        ObjectError::NoSuchVersion(_)
    );
    // Nothing was freed: every version still holds its chunks.
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 0);
    assert_eq!(env.chunk_files().len(), 2 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_version_id_adds_a_delete_marker() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let v1 = env.put("bkt", "k", b"first").await;
    let v2 = env.put("bkt", "k", b"second").await;
    let out = env.svc.delete_object("bkt", "k", None).await.unwrap();
    assert!(out.delete_marker);
    let marker_id = out.version_id.clone().unwrap();
    assert_ne!(marker_id, v2.version_id);
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
    assert_err!(
        env.svc
            .get_object("bkt", "k", None, None, &Default::default())
            .await,
        ObjectError::NoSuchKey(_)
    );
    assert_err!(
        env.svc.head_object("bkt", "k", Some(&marker_id)),
        ObjectError::MethodNotAllowed
    );
    let versions = env.svc.list_object_versions("bkt", "k").unwrap().versions;
    assert_eq!(versions.len(), 3);
    assert!(versions[0].delete_marker);
    assert_eq!(versions[0].version_id, marker_id);
    assert_eq!(versions[1], v2);
    assert_eq!(versions[2], v1);
    // Old versions are still readable by id, and the key is gone from listings.
    assert_eq!(env.get("bkt", "k", Some(&v1.version_id)).await, b"first");
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert!(page.objects.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_delete_marker_restores_the_previous_version() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    env.put("bkt", "k", b"first").await;
    let v2 = env.put("bkt", "k", &pattern(CHUNK + 5, 33)).await;
    let marker = env.svc.delete_object("bkt", "k", None).await.unwrap();
    let marker_id = marker.version_id.unwrap();
    let out = env
        .svc
        .delete_object("bkt", "k", Some(&marker_id))
        .await
        .unwrap();
    assert_eq!(
        out,
        DeleteOutcome {
            version_id: Some(marker_id),
            delete_marker: true
        }
    );
    assert_eq!(env.svc.head_object("bkt", "k", None).unwrap(), v2);
    assert_eq!(env.get("bkt", "k", None).await, pattern(CHUNK + 5, 33));
    let versions = env.svc.list_object_versions("bkt", "k").unwrap().versions;
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().all(|v| !v.delete_marker));
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.objects, vec![v2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_version_by_id_removes_it_for_good() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let v1 = env.put("bkt", "k", &pattern(CHUNK + 1, 34)).await;
    let v2 = env.put("bkt", "k", &pattern(CHUNK + 2, 35)).await;
    // Removing the current version makes the older one current again.
    let out = env
        .svc
        .delete_object("bkt", "k", Some(&v2.version_id))
        .await
        .unwrap();
    assert_eq!(out.version_id.as_deref(), Some(v2.version_id.as_str()));
    assert!(!out.delete_marker);
    assert_eq!(env.svc.head_object("bkt", "k", None).unwrap(), v1);
    assert_err!(
        env.svc.head_object("bkt", "k", Some(&v2.version_id)),
        ObjectError::NoSuchVersion(_)
    );
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);
    let mut expected: Vec<_> = v1.chunks().iter().map(|c| env.chunk_path(c)).collect();
    expected.sort();
    assert_eq!(env.chunk_files(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_versioning_replaces_only_the_null_version() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let e1 = env.put("bkt", "k", &pattern(5_000, 40)).await;
    let e2 = env.put("bkt", "k", &pattern(5_000, 41)).await;
    env.svc
        .set_versioning("bkt", Versioning::Suspended)
        .await
        .unwrap();
    let n1 = env.put("bkt", "k", &pattern(5_000, 42)).await;
    assert_eq!(n1.version_id, "null");
    let ids = |env: &Env| -> Vec<String> {
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .into_iter()
            .map(|v| v.version_id)
            .collect()
    };
    assert_eq!(
        ids(&env),
        vec![
            "null".to_string(),
            e2.version_id.clone(),
            e1.version_id.clone()
        ]
    );
    assert_eq!(env.chunk_files().len(), 3);
    let n2 = env.put("bkt", "k", &pattern(5_000, 43)).await;
    assert_eq!(n2.version_id, "null");
    assert_eq!(
        ids(&env),
        vec![
            "null".to_string(),
            e2.version_id.clone(),
            e1.version_id.clone()
        ]
    );
    assert_eq!(env.get("bkt", "k", None).await, pattern(5_000, 43));
    assert_eq!(env.get("bkt", "k", Some("null")).await, pattern(5_000, 43));
    assert_eq!(
        env.get("bkt", "k", Some(&e1.version_id)).await,
        pattern(5_000, 40)
    );
    assert_eq!(
        env.get("bkt", "k", Some(&e2.version_id)).await,
        pattern(5_000, 41)
    );
    // The replaced null version's chunk is garbage; the Enabled-era ones are not.
    assert_eq!(env.chunk_files().len(), 4);
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 1);
    assert_eq!(env.chunk_files().len(), 3);
    assert!(!env.chunk_path(&n1.chunks()[0]).exists());
    // A delete in a suspended bucket puts a null delete marker in place of the null version.
    let out = env.svc.delete_object("bkt", "k", None).await.unwrap();
    assert_eq!(out.version_id.as_deref(), Some("null"));
    assert!(out.delete_marker);
    let versions = env.svc.list_object_versions("bkt", "k").unwrap().versions;
    assert_eq!(versions.len(), 3);
    assert!(versions[0].delete_marker);
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_cannot_be_turned_off() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    assert_err!(
        env.svc.set_versioning("bkt", Versioning::Unversioned).await,
        ObjectError::InvalidArgument(_)
    );
    assert_eq!(
        env.svc.head_bucket("bkt").unwrap().versioning,
        Versioning::Enabled
    );
    assert_err!(
        env.svc.set_versioning("nope", Versioning::Enabled).await,
        ObjectError::NoSuchBucket(_)
    );
}

// ---------------------------------------------------------------------------------------
// 5. Listing
// ---------------------------------------------------------------------------------------

async fn bucket_with_keys(keys: &[&str]) -> Env {
    let env = Env::new();
    env.create_bucket("bkt").await;
    for k in keys {
        env.put("bkt", k, k.as_bytes()).await;
    }
    env
}

const TREE: [&str; 5] = ["a", "a/b", "a/c/d", "b", "c/x"];

fn keys_of(page: &bucketdb_object::ListPage) -> Vec<String> {
    page.objects.iter().map(|o| o.key.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_delimiter_rolls_up_common_prefixes() {
    let env = bucket_with_keys(&TREE).await;
    let page = env
        .svc
        .list_objects(
            "bkt",
            &ListQuery {
                delimiter: Some("/".into()),
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys_of(&page), vec!["a", "b"]);
    assert_eq!(page.prefixes, vec!["a/", "c/"]);
    assert_eq!(page.next_cursor, None);
    // Without a delimiter every key is listed.
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(keys_of(&page), TREE.to_vec());
    assert!(page.prefixes.is_empty());
    assert_eq!(page.objects[1].size, 3);
    assert_eq!(page.objects[1].etag, md5_hex(b"a/b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_prefix_and_delimiter() {
    let env = bucket_with_keys(&TREE).await;
    let q = ListQuery {
        prefix: "a/".into(),
        delimiter: Some("/".into()),
        ..ListQuery::default()
    };
    let page = env.svc.list_objects("bkt", &q).await.unwrap();
    assert_eq!(keys_of(&page), vec!["a/b"]);
    assert_eq!(page.prefixes, vec!["a/c/"]);
    let q = ListQuery {
        prefix: "a/".into(),
        ..ListQuery::default()
    };
    let page = env.svc.list_objects("bkt", &q).await.unwrap();
    assert_eq!(keys_of(&page), vec!["a/b", "a/c/d"]);
    let q = ListQuery {
        prefix: "zzz".into(),
        delimiter: Some("/".into()),
        ..ListQuery::default()
    };
    let page = env.svc.list_objects("bkt", &q).await.unwrap();
    assert!(page.objects.is_empty() && page.prefixes.is_empty() && page.next_cursor.is_none());
}

/// Walk every page of a listing, returning its entries (objects as `o:key`, prefixes as
/// `p:prefix`) and how many pages it took.
async fn walk(env: &Env, base: &ListQuery) -> (Vec<String>, usize) {
    assert!(base.limit > 0);
    let mut entries = Vec::new();
    let mut pages = 0;
    let mut q = base.clone();
    loop {
        let page = env.svc.list_objects("bkt", &q).await.unwrap();
        pages += 1;
        assert!(pages < 100, "the listing does not end");
        let n = page.objects.len() + page.prefixes.len();
        assert!(n <= q.limit, "a page larger than its limit");
        entries.extend(page.objects.iter().map(|o| format!("o:{}", o.key)));
        entries.extend(page.prefixes.iter().map(|p| format!("p:{p}")));
        match page.next_cursor {
            Some(c) => {
                assert!(n > 0, "an empty page with a cursor");
                q.start_after = Some(c);
            }
            None => return (entries, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pagination_visits_every_entry_exactly_once() {
    let env = bucket_with_keys(&TREE).await;
    let q = ListQuery {
        delimiter: Some("/".into()),
        limit: 1,
        ..ListQuery::default()
    };
    let (entries, pages) = walk(&env, &q).await;
    assert_eq!(entries, vec!["o:a", "p:a/", "o:b", "p:c/"]);
    assert_eq!(pages, 4);

    let q = ListQuery {
        limit: 1,
        ..ListQuery::default()
    };
    let (entries, pages) = walk(&env, &q).await;
    assert_eq!(entries, vec!["o:a", "o:a/b", "o:a/c/d", "o:b", "o:c/x"]);
    assert_eq!(pages, 5);

    let q = ListQuery {
        delimiter: Some("/".into()),
        limit: 2,
        ..ListQuery::default()
    };
    let (entries, _) = walk(&env, &q).await;
    let mut sorted = entries.clone();
    sorted.sort_by(|a, b| a[2..].cmp(&b[2..]));
    assert_eq!(sorted, vec!["o:a", "p:a/", "o:b", "p:c/"]);

    // The first page with limit 1 carries a cursor; the last page has none.
    let first = env
        .svc
        .list_objects(
            "bkt",
            &ListQuery {
                limit: 1,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some("a"));
    let last = env
        .svc
        .list_objects(
            "bkt",
            &ListQuery {
                limit: 1,
                start_after: Some("b".into()),
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys_of(&last), vec!["c/x"]);
    assert_eq!(last.next_cursor, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_missing_bucket_is_no_such_bucket() {
    let env = Env::new();
    assert_err!(
        env.svc.list_objects("missing", &ListQuery::default()).await,
        ObjectError::NoSuchBucket(_)
    );
    assert_err!(
        env.svc.list_object_versions("missing", "k"),
        ObjectError::NoSuchBucket(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_returns_keys_in_utf8_binary_order() {
    let keys = [
        "z", "A", "ä", "a", "日本", "~", "b/c", "Z9", "é", "a b", "😀", "ab",
    ];
    let env = bucket_with_keys(&keys).await;
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(keys_of(&page), expected);
    // The same order page by page.
    let (entries, _) = walk(
        &env,
        &ListQuery {
            limit: 5,
            ..ListQuery::default()
        },
    )
    .await;
    let walked: Vec<String> = entries.into_iter().map(|e| e[2..].to_string()).collect();
    assert_eq!(walked, expected);
}

/// A versioned bucket over `TREE`: `a` has two versions, `a/c/d` ends in a delete marker,
/// `b` has a version, a delete marker and a newer version. Returns the version ids of
/// each key, oldest first.
async fn versioned_tree() -> (Env, Vec<(&'static str, Vec<String>)>) {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let mut ids: Vec<(&'static str, Vec<String>)> = Vec::new();
    let ops: [(&'static str, bool); 9] = [
        ("a", false),
        ("a", false),
        ("a/b", false),
        ("a/c/d", false),
        ("a/c/d", true),
        ("b", false),
        ("b", true),
        ("b", false),
        ("c/x", false),
    ];
    for (key, delete) in ops {
        let id = if delete {
            env.svc
                .delete_object("bkt", key, None)
                .await
                .unwrap()
                .version_id
                .unwrap()
        } else {
            env.put("bkt", key, key.as_bytes()).await.version_id
        };
        match ids.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(id),
            None => ids.push((key, vec![id])),
        }
    }
    (env, ids)
}

/// `v:key:id` (`*` appended when latest) for each version, `p:prefix` for each common
/// prefix, merged in key order.
fn version_entries(page: &bucketdb_object::VersionPage) -> Vec<String> {
    let mut entries: Vec<(String, String)> = page
        .versions
        .iter()
        .map(|(r, latest)| {
            let star = if *latest { "*" } else { "" };
            (r.key.clone(), format!("v:{}:{}{star}", r.key, r.version_id))
        })
        .chain(page.prefixes.iter().map(|p| (p.clone(), format!("p:{p}"))))
        .collect();
    // Stable: the versions of one key stay newest first.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().map(|(_, e)| e).collect()
}

/// Page through a versions listing; returns every entry and the markers each page ended
/// with.
async fn walk_versions(
    env: &Env,
    prefix: &str,
    delimiter: Option<&str>,
    limit: usize,
) -> (Vec<String>, Vec<(String, Option<String>)>) {
    let mut entries = Vec::new();
    let mut markers: Vec<(String, Option<String>)> = Vec::new();
    loop {
        let (km, vm) = markers.last().cloned().unzip();
        let page = env
            .svc
            .list_bucket_versions(
                "bkt",
                prefix,
                delimiter,
                km.as_deref(),
                vm.flatten().as_deref(),
                limit,
            )
            .await
            .unwrap();
        let got = version_entries(&page);
        let n = got.len();
        assert!(n <= limit, "a page larger than its limit: {got:?}");
        entries.extend(got);
        assert!(markers.len() < 100, "the listing does not end");
        match page.next_key_marker {
            Some(km) => {
                assert!(n > 0, "an empty page with a marker");
                markers.push((km, page.next_version_id_marker));
            }
            None => {
                assert_eq!(page.next_version_id_marker, None);
                return (entries, markers);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_versions_with_delimiter_rolls_up_common_prefixes() {
    let (env, ids) = versioned_tree().await;
    let id = |key: &str, i: usize| ids.iter().find(|(k, _)| *k == key).unwrap().1[i].clone();
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("/"), None, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        version_entries(&page),
        vec![
            format!("v:a:{}*", id("a", 1)),
            format!("v:a:{}", id("a", 0)),
            "p:a/".to_string(),
            format!("v:b:{}*", id("b", 2)),
            format!("v:b:{}", id("b", 1)),
            format!("v:b:{}", id("b", 0)),
            "p:c/".to_string(),
        ]
    );
    assert_eq!(page.prefixes, vec!["a/", "c/"]);
    assert!(
        page.versions[3].0.delete_marker,
        "b's middle entry is its delete marker"
    );
    assert_eq!(
        (page.next_key_marker, page.next_version_id_marker),
        (None, None)
    );

    // Under a prefix, only what follows the prefix is looked at for the delimiter.
    let page = env
        .svc
        .list_bucket_versions("bkt", "a/", Some("/"), None, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        version_entries(&page),
        vec![format!("v:a/b:{}*", id("a/b", 0)), "p:a/c/".to_string()]
    );
    // A delimiter that is more than one character, or absent from every key.
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("c/"), None, None, 1000)
        .await
        .unwrap();
    assert_eq!(page.prefixes, vec!["a/c/", "c/"]);
    assert_eq!(page.versions.len(), 2 + 1 + 3);
    for delimiter in [None, Some(""), Some("|")] {
        let page = env
            .svc
            .list_bucket_versions("bkt", "", delimiter, None, None, 1000)
            .await
            .unwrap();
        assert!(page.prefixes.is_empty());
        assert_eq!(page.versions.len(), 9, "{delimiter:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_versions_paging_across_common_prefixes_visits_every_entry_once() {
    let (env, ids) = versioned_tree().await;
    let id = |key: &str, i: usize| ids.iter().find(|(k, _)| *k == key).unwrap().1[i].clone();
    let (all, _) = walk_versions(&env, "", Some("/"), 1000).await;
    assert_eq!(all.len(), 7);
    for limit in 1..=7 {
        let (entries, _) = walk_versions(&env, "", Some("/"), limit).await;
        assert_eq!(entries, all, "limit {limit}");
    }
    for prefix in ["a", "a/", "a/c", "b", "zzz"] {
        let (all, _) = walk_versions(&env, prefix, Some("/"), 1000).await;
        for limit in 1..=3 {
            assert_eq!(walk_versions(&env, prefix, Some("/"), limit).await.0, all);
        }
    }

    // A page ending on a common prefix: the next key marker is the prefix, with no
    // version marker, and the next page starts past every key under it.
    let (_, markers) = walk_versions(&env, "", Some("/"), 3).await;
    assert_eq!(
        markers,
        vec![
            ("a/".to_string(), None),
            ("b".to_string(), Some(id("b", 0))),
        ]
    );
    // Page by page with 2: the latest flag of `b` survives the page break inside `b`.
    let (entries, markers) = walk_versions(&env, "", Some("/"), 2).await;
    assert_eq!(
        markers,
        vec![
            ("a".to_string(), Some(id("a", 0))),
            ("b".to_string(), Some(id("b", 2))),
            ("b".to_string(), Some(id("b", 0))),
        ]
    );
    assert_eq!(entries, all);

    // A key marker naming a common prefix skips it whatever the version marker says.
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("/"), Some("a/"), Some(&id("a/b", 0)), 1)
        .await
        .unwrap();
    assert_eq!(version_entries(&page), vec![format!("v:b:{}*", id("b", 2))]);
    // Without the delimiter the same marker is just a key: `a/b` comes next.
    let page = env
        .svc
        .list_bucket_versions("bkt", "", None, Some("a/"), None, 1)
        .await
        .unwrap();
    assert_eq!(
        version_entries(&page),
        vec![format!("v:a/b:{}*", id("a/b", 0))]
    );
    // Resuming inside a key under a common prefix reports the prefix again (as ListObjects
    // does for a cursor inside a common prefix).
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("/"), Some("a/b"), None, 1000)
        .await
        .unwrap();
    assert_eq!(page.prefixes, vec!["a/", "c/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_versions_bad_arguments_are_errors() {
    let (env, _) = versioned_tree().await;
    let long = "x".repeat(1025);
    for (prefix, delimiter, key_marker, version_marker) in [
        (long.as_str(), None, None, None),
        ("", Some(long.as_str()), None, None),
        ("", Some("/"), Some(long.as_str()), None),
        ("", Some("/"), Some("a"), Some(long.as_str())),
    ] {
        assert_err!(
            env.svc
                .list_bucket_versions("bkt", prefix, delimiter, key_marker, version_marker, 10)
                .await,
            ObjectError::InvalidArgument(_)
        );
    }
    assert_err!(
        env.svc
            .list_bucket_versions("missing", "", Some("/"), None, None, 10)
            .await,
        ObjectError::NoSuchBucket(_)
    );
    // Limits outside 1..=1000 are clamped, unknown version markers resume after the key.
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("/"), None, None, 0)
        .await
        .unwrap();
    assert_eq!(version_entries(&page).len(), 1);
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("/"), None, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(version_entries(&page).len(), 7);
    let page = env
        .svc
        .list_bucket_versions("bkt", "", Some("/"), Some("a"), Some("no-such-version"), 10)
        .await
        .unwrap();
    assert_eq!(version_entries(&page)[0], "p:a/");
    // Markers past the end, or with odd bytes, give an empty page.
    for km in ["\u{10FFFF}", "zzz", "a\u{0}b"] {
        let page = env
            .svc
            .list_bucket_versions("bkt", "zz", Some("/"), Some(km), None, 10)
            .await
            .unwrap();
        assert!(
            page.versions.is_empty() && page.prefixes.is_empty(),
            "{km:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. Tags
// ---------------------------------------------------------------------------------------

fn tags(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_round_trip() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let rec = env.put("bkt", "k", &pattern(CHUNK + 1, 50)).await;
    assert!(env.svc.get_tags("bkt", "k", None).await.unwrap().is_empty());
    let vid = env.svc.put_tags("bkt", "k", None, tags(10)).await.unwrap();
    assert_eq!(vid.version_id, rec.version_id);
    assert_eq!(env.svc.get_tags("bkt", "k", None).await.unwrap(), tags(10));
    // The listing sees the current record with its tags.
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.objects[0].tags, tags(10));
    env.svc.put_tags("bkt", "k", None, tags(2)).await.unwrap();
    assert_eq!(env.svc.get_tags("bkt", "k", None).await.unwrap(), tags(2));
    // Tagging does not touch the content.
    assert_eq!(env.get("bkt", "k", None).await, pattern(CHUNK + 1, 50));
    assert_err!(
        env.svc.put_tags("bkt", "missing", None, tags(1)).await,
        ObjectError::NoSuchKey(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_ten_tags_are_refused() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.put("bkt", "k", b"x").await;
    env.svc.put_tags("bkt", "k", None, tags(3)).await.unwrap();
    assert_err!(
        env.svc.put_tags("bkt", "k", None, tags(11)).await,
        ObjectError::InvalidTag(_)
    );
    assert_eq!(env.svc.get_tags("bkt", "k", None).await.unwrap(), tags(3));
    let opts = PutOptions {
        tags: tags(11),
        ..PutOptions::default()
    };
    assert_err!(
        env.svc.put_object("bkt", "other", body(b"y"), opts).await,
        ObjectError::InvalidTag(_)
    );
    assert_err!(
        env.svc.head_object("bkt", "other", None),
        ObjectError::NoSuchKey(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_an_old_version_leaves_the_current_one_alone() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let v1 = env.put("bkt", "k", b"one").await;
    let opts = PutOptions {
        tags: vec![("state".into(), "current".into())],
        ..PutOptions::default()
    };
    let v2 = env
        .svc
        .put_object("bkt", "k", body(b"two"), opts)
        .await
        .unwrap();
    let old_tags = vec![("state".to_string(), "old".to_string())];
    let vid = env
        .svc
        .put_tags("bkt", "k", Some(&v1.version_id), old_tags.clone())
        .await
        .unwrap();
    assert_eq!(vid.version_id, v1.version_id);
    assert_eq!(
        env.svc
            .get_tags("bkt", "k", Some(&v1.version_id))
            .await
            .unwrap(),
        old_tags
    );
    let current = env.svc.head_object("bkt", "k", None).unwrap();
    assert_eq!(current, v2);
    assert_eq!(
        current.tags,
        vec![("state".to_string(), "current".to_string())]
    );
    let page = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.objects, vec![v2]);
    assert_err!(
        env.svc.put_tags("bkt", "k", Some("nope"), tags(1)).await,
        ObjectError::NoSuchVersion(_)
    );
}

// ---------------------------------------------------------------------------------------
// 7. Multipart uploads
// ---------------------------------------------------------------------------------------

async fn upload_part(env: &Env, key: &str, upload_id: &str, n: u32, data: &[u8]) -> String {
    let p = env
        .svc
        .upload_part(
            "bkt",
            key,
            upload_id,
            n,
            body(data),
            Some(data.len() as u64),
        )
        .await
        .unwrap_or_else(|e| panic!("part {n}: {e}"));
    assert_eq!(p.part_number, n);
    assert_eq!(p.size, data.len() as u64);
    assert_eq!(p.etag, md5_hex(data));
    p.etag
}

async fn new_upload(env: &Env, key: &str) -> String {
    env.svc
        .create_multipart_upload("bkt", key, PutOptions::default())
        .await
        .unwrap()
        .upload_id
}

fn s3_multipart_etag(parts: &[&[u8]]) -> String {
    let concat: Vec<u8> = parts.iter().flat_map(|p| md5_raw(p)).collect();
    format!("{}-{}", md5_hex(&concat), parts.len())
}

/// A listing page reads only what it needs, from its markers on: a small page far into
/// the uploads is still found.
#[tokio::test]
async fn upload_listings_start_at_their_markers() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let mut made = Vec::new();
    for key in ["a", "b", "b", "c/1", "c/2", "d"] {
        made.push((key.to_string(), new_upload(&env, key).await));
    }
    made.sort();
    let page = |prefix: &str, key_marker: Option<&str>, id_marker: Option<&str>, limit| {
        let query = bucketdb_object::UploadsQuery {
            prefix: prefix.into(),
            key_marker: key_marker.map(str::to_string),
            upload_id_marker: id_marker.map(str::to_string),
            limit,
        };
        let svc = env.svc.clone();
        async move {
            svc.list_uploads_everywhere("bkt", query)
                .await
                .unwrap()
                .into_iter()
                .map(|u| (u.key, u.upload_id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("", None, None, 100).await, made);
    assert_eq!(page("", Some("b"), None, 2).await, made[3..5]);
    assert_eq!(page("", Some("b"), Some(&made[1].1), 2).await, made[2..4]);
    assert_eq!(page("c/", Some("a"), None, 1).await, made[3..4]);
    assert_eq!(page("c/", Some("c/2"), None, 5).await, []);
    assert_eq!(page("", Some("e"), None, 5).await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_complete_concatenates_parts_with_s3_etag() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let up = env
        .svc
        .create_multipart_upload(
            "bkt",
            "big",
            PutOptions {
                content_type: Some("video/mp4".into()),
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    let p1 = pattern(MIN_PART_SIZE as usize + 3, 60);
    let p2 = pattern(MIN_PART_SIZE as usize, 61);
    let p3 = pattern(1_234, 62);
    let e1 = upload_part(&env, "big", &up.upload_id, 1, &p1).await;
    let e2 = upload_part(&env, "big", &up.upload_id, 2, &p2).await;
    let e3 = upload_part(&env, "big", &up.upload_id, 3, &p3).await;
    let listed = env.svc.list_parts("bkt", "big", &up.upload_id).unwrap();
    assert_eq!(
        listed.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        env.svc.list_multipart_uploads("bkt", 100).unwrap(),
        vec![up.clone()]
    );
    // Not visible until completed.
    assert_err!(
        env.svc.head_object("bkt", "big", None),
        ObjectError::NoSuchKey(_)
    );

    let rec = env
        .svc
        .complete_multipart_upload(
            "bkt",
            "big",
            &up.upload_id,
            vec![(1, e1), (2, format!("\"{e2}\"")), (3, e3)],
        )
        .await
        .unwrap();
    let whole = [p1.as_slice(), &p2, &p3].concat();
    assert_eq!(rec.etag, s3_multipart_etag(&[&p1, &p2, &p3]));
    assert!(rec.etag.ends_with("-3"));
    assert_eq!(rec.size, whole.len() as u64);
    assert_eq!(
        rec.part_sizes,
        vec![p1.len() as u64, p2.len() as u64, p3.len() as u64]
    );
    assert_eq!(rec.content_type, "video/mp4");
    assert_eq!(env.svc.head_object("bkt", "big", None).unwrap(), rec);
    assert!(env.get("bkt", "big", None).await == whole, "bytes differ");

    // The upload is gone; its chunks now belong to the object and none are garbage.
    assert_err!(
        env.svc.list_parts("bkt", "big", &up.upload_id),
        ObjectError::NoSuchUpload(_)
    );
    assert!(
        env.svc
            .list_multipart_uploads("bkt", 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 0);
    assert_eq!(env.chunk_files().len(), rec.chunks().len());
    assert!(env.get("bkt", "big", None).await == whole);

    // A range across the boundary between parts 1 and 2 (a short chunk sits there).
    let b = p1.len() as u64;
    let (_, got) = env
        .get_range(
            "bkt",
            "big",
            RangeSpec::From {
                start: b - 10,
                end: Some(b + 10),
            },
        )
        .await;
    assert_eq!(got, whole[(b - 10) as usize..=(b + 10) as usize]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_complete_with_wrong_etag_is_invalid_part() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let e1 = upload_part(&env, "k", &id, 1, b"only part").await;
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![(1, md5_hex(b"other"))])
            .await,
        ObjectError::InvalidPart(_)
    );
    // A part that was never uploaded.
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![(2, e1.clone())])
            .await,
        ObjectError::InvalidPart(_)
    );
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![])
            .await,
        ObjectError::InvalidPart(_)
    );
    // Failed completions change nothing.
    assert_eq!(env.svc.list_parts("bkt", "k", &id).unwrap().len(), 1);
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
    let rec = env
        .svc
        .complete_multipart_upload("bkt", "k", &id, vec![(1, e1)])
        .await
        .unwrap();
    assert_eq!(rec.etag, s3_multipart_etag(&[b"only part"]));
    assert_eq!(env.get("bkt", "k", None).await, b"only part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_complete_out_of_order_is_invalid_part_order() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let e1 = upload_part(&env, "k", &id, 1, b"one").await;
    let e2 = upload_part(&env, "k", &id, 2, b"two").await;
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![(2, e2.clone()), (1, e1.clone())])
            .await,
        ObjectError::InvalidPartOrder
    );
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![(1, e1.clone()), (1, e1.clone())])
            .await,
        ObjectError::InvalidPartOrder
    );
    assert_eq!(env.svc.list_parts("bkt", "k", &id).unwrap().len(), 2);
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_small_non_last_part_is_entity_too_small() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let small = pattern(MIN_PART_SIZE as usize - 1, 63);
    let exact = pattern(MIN_PART_SIZE as usize, 64);
    let tail = pattern(10, 65);
    let e1 = upload_part(&env, "k", &id, 1, &small).await;
    let e2 = upload_part(&env, "k", &id, 2, &exact).await;
    let e3 = upload_part(&env, "k", &id, 3, &tail).await;
    match env
        .svc
        .complete_multipart_upload("bkt", "k", &id, vec![(1, e1.clone()), (3, e3.clone())])
        .await
    {
        Err(ObjectError::EntityTooSmall { part, min }) => {
            assert_eq!(part, 1);
            assert_eq!(min, MIN_PART_SIZE);
        }
        other => panic!("expected EntityTooSmall, got {:?}", other.map(|r| r.size)),
    }
    assert_eq!(env.svc.list_parts("bkt", "k", &id).unwrap().len(), 3);
    // Exactly the minimum is enough, and the last part may be small.
    let rec = env
        .svc
        .complete_multipart_upload("bkt", "k", &id, vec![(2, e2), (3, e3)])
        .await
        .unwrap();
    assert_eq!(rec.size, MIN_PART_SIZE + 10);
    assert!(env.get("bkt", "k", None).await == [exact.as_slice(), &tail].concat());
    // The left-out part 1 is garbage now.
    assert!(env.svc.run_gc_until_empty().await.unwrap() > 0);
    assert_eq!(env.chunk_files().len(), rec.chunks().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_abort_removes_upload_and_gc_reclaims_chunks() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let e1 = upload_part(&env, "k", &id, 1, &pattern(2 * MIB + 5, 66)).await;
    upload_part(&env, "k", &id, 2, &pattern(100, 67)).await;
    assert_eq!(env.chunk_files().len(), 4);
    env.svc
        .abort_multipart_upload("bkt", "k", &id)
        .await
        .unwrap();
    assert_err!(
        env.svc.list_parts("bkt", "k", &id),
        ObjectError::NoSuchUpload(_)
    );
    assert!(
        env.svc
            .list_multipart_uploads("bkt", 10)
            .unwrap()
            .is_empty()
    );
    assert_err!(
        env.svc
            .upload_part("bkt", "k", &id, 3, body(b"late"), None)
            .await,
        ObjectError::NoSuchUpload(_)
    );
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![(1, e1)])
            .await,
        ObjectError::NoSuchUpload(_)
    );
    assert_err!(
        env.svc.abort_multipart_upload("bkt", "k", &id).await,
        ObjectError::NoSuchUpload(_)
    );
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 4);
    let left = env.settle_chunk_files(0).await;
    assert!(left.is_empty(), "{left:?}");
    assert_err!(
        env.svc.head_object("bkt", "k", None),
        ObjectError::NoSuchKey(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_left_out_of_complete_are_reclaimed() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let p1 = pattern(MIN_PART_SIZE as usize, 68);
    let p2 = pattern(MIB + 300, 69);
    let p3 = pattern(4_000, 70);
    let e1 = upload_part(&env, "k", &id, 1, &p1).await;
    upload_part(&env, "k", &id, 2, &p2).await;
    let e3 = upload_part(&env, "k", &id, 3, &p3).await;
    assert_eq!(env.chunk_files().len(), 5 + 2 + 1);
    let rec = env
        .svc
        .complete_multipart_upload("bkt", "k", &id, vec![(1, e1), (3, e3)])
        .await
        .unwrap();
    assert_eq!(rec.etag, s3_multipart_etag(&[&p1, &p3]));
    assert_eq!(rec.etag.rsplit('-').next(), Some("2"));
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);
    let mut expected: Vec<_> = rec.chunks().iter().map(|c| env.chunk_path(c)).collect();
    expected.sort();
    assert_eq!(env.chunk_files(), expected);
    assert!(env.get("bkt", "k", None).await == [p1.as_slice(), &p3].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_reuploading_a_part_replaces_it() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let first = pattern(MIB + 10, 71);
    let second = pattern(20_000, 72);
    let e_first = upload_part(&env, "k", &id, 1, &first).await;
    let first_chunks = env.svc.list_parts("bkt", "k", &id).unwrap()[0]
        .chunks
        .clone();
    let e_second = upload_part(&env, "k", &id, 1, &second).await;
    let parts = env.svc.list_parts("bkt", "k", &id).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].etag, e_second);
    assert_eq!(parts[0].size, second.len() as u64);
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);
    for c in &first_chunks {
        assert!(!env.chunk_path(c).exists());
    }
    assert_eq!(env.chunk_files().len(), 1);
    assert_err!(
        env.svc
            .complete_multipart_upload("bkt", "k", &id, vec![(1, e_first)])
            .await,
        ObjectError::InvalidPart(_)
    );
    env.svc
        .complete_multipart_upload("bkt", "k", &id, vec![(1, e_second)])
        .await
        .unwrap();
    assert_eq!(env.get("bkt", "k", None).await, second);
}

/// S3 has no minimum size for the last part, so an empty last part is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_empty_last_part_is_accepted() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    let p1 = pattern(MIN_PART_SIZE as usize, 73);
    let e1 = upload_part(&env, "k", &id, 1, &p1).await;
    let e2 = upload_part(&env, "k", &id, 2, b"").await;
    assert_eq!(e2, md5_hex(b""));
    let rec = env
        .svc
        .complete_multipart_upload("bkt", "k", &id, vec![(1, e1), (2, e2)])
        .await
        .unwrap();
    assert_eq!(rec.size, p1.len() as u64);
    assert_eq!(rec.etag, s3_multipart_etag(&[&p1, b""]));
    assert_eq!(rec.part_sizes, vec![p1.len() as u64, 0]);
    assert!(env.get("bkt", "k", None).await == p1);
    let (_, got) = env.get_range("bkt", "k", RangeSpec::Suffix(5)).await;
    assert_eq!(got, p1[p1.len() - 5..]);
    // An upload made of one empty part is an empty object.
    let id = new_upload(&env, "empty").await;
    let e = upload_part(&env, "empty", &id, 1, b"").await;
    let rec = env
        .svc
        .complete_multipart_upload("bkt", "empty", &id, vec![(1, e)])
        .await
        .unwrap();
    assert_eq!(rec.size, 0);
    assert!(env.get("bkt", "empty", None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_part_numbers_and_upload_ids_are_checked() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    for n in [0, 10_001] {
        assert_err!(
            env.svc
                .upload_part("bkt", "k", &id, n, body(b"x"), None)
                .await,
            ObjectError::InvalidArgument(_)
        );
    }
    assert_err!(
        env.svc
            .upload_part("bkt", "k", "not-an-upload", 1, body(b"x"), None)
            .await,
        ObjectError::NoSuchUpload(_)
    );
    // The upload id belongs to its key.
    assert_err!(
        env.svc
            .upload_part("bkt", "other", &id, 1, body(b"x"), None)
            .await,
        ObjectError::NoSuchUpload(_)
    );
    assert_err!(
        env.svc
            .create_multipart_upload("missing", "k", PutOptions::default())
            .await,
        ObjectError::NoSuchBucket(_)
    );
    let left = env.settle_chunk_files(0).await;
    assert!(left.is_empty(), "{left:?}");
}

// ---------------------------------------------------------------------------------------
// 8. Lifecycle
// ---------------------------------------------------------------------------------------

fn rule(id: &str, prefix: &str) -> LifecycleRule {
    LifecycleRule {
        id: id.into(),
        enabled: true,
        prefix: prefix.into(),
        expiration_days: None,
        noncurrent_days: None,
        abort_incomplete_multipart_days: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_expires_old_objects_under_the_prefix_only() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let rules = vec![LifecycleRule {
        expiration_days: Some(1),
        ..rule("logs", "logs/")
    }];
    env.svc.set_lifecycle("bkt", rules.clone()).await.unwrap();
    assert_eq!(env.svc.get_lifecycle("bkt").unwrap(), rules);
    env.put("bkt", "logs/a", b"old log").await;
    env.put("bkt", "logs/b/c", &pattern(CHUNK + 1, 80)).await;
    env.put("bkt", "logsx", b"not under logs/").await;
    env.put("bkt", "other/x", b"other").await;

    env.clock.advance_ms(12 * HOUR_MS);
    assert_eq!(
        env.svc.run_lifecycle_once().await.unwrap(),
        LifecycleReport::default()
    );
    assert!(env.svc.head_object("bkt", "logs/a", None).is_ok());

    env.clock.advance_ms(2 * DAY_MS);
    env.put("bkt", "logs/fresh", b"new log").await;
    let report = env.svc.run_lifecycle_once().await.unwrap();
    assert_eq!(
        report,
        LifecycleReport {
            expired: 2,
            ..LifecycleReport::default()
        }
    );
    for gone in ["logs/a", "logs/b/c"] {
        assert_err!(
            env.svc.head_object("bkt", gone, None),
            ObjectError::NoSuchKey(_)
        );
    }
    for kept in ["logsx", "other/x", "logs/fresh"] {
        assert!(env.svc.head_object("bkt", kept, None).is_ok(), "{kept}");
    }
    // The expired object's chunks are garbage; a second pass does nothing.
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);
    assert!(env.chunk_files().is_empty());
    assert_eq!(
        env.svc.run_lifecycle_once().await.unwrap(),
        LifecycleReport::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_disabled_rule_does_nothing() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let r = LifecycleRule {
        enabled: false,
        expiration_days: Some(1),
        ..rule("off", "")
    };
    env.svc.set_lifecycle("bkt", vec![r]).await.unwrap();
    env.put("bkt", "k", b"x").await;
    env.clock.advance_ms(10 * DAY_MS);
    assert_eq!(
        env.svc.run_lifecycle_once().await.unwrap(),
        LifecycleReport::default()
    );
    assert!(env.svc.head_object("bkt", "k", None).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_noncurrent_days_removes_superseded_versions_only() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let r = LifecycleRule {
        noncurrent_days: Some(1),
        ..rule("nc", "")
    };
    env.svc.set_lifecycle("bkt", vec![r]).await.unwrap();
    let v1 = env.put("bkt", "k", &pattern(CHUNK + 1, 81)).await;
    env.put("bkt", "solo", b"only version").await;
    env.clock.advance_ms(HOUR_MS);
    let v2 = env.put("bkt", "k", b"second").await;
    env.clock.advance_ms(2 * DAY_MS);
    // v2 becomes noncurrent only now.
    let v3 = env.put("bkt", "k", b"third").await;

    let report = env.svc.run_lifecycle_once().await.unwrap();
    assert_eq!(report.noncurrent_deleted, 1);
    assert_eq!(report.expired, 0);
    let ids: Vec<_> = env
        .svc
        .list_object_versions("bkt", "k")
        .unwrap()
        .versions
        .into_iter()
        .map(|v| v.version_id)
        .collect();
    assert_eq!(ids, vec![v3.version_id.clone(), v2.version_id.clone()]);
    assert_eq!(env.svc.head_object("bkt", "k", None).unwrap(), v3);
    assert_eq!(
        env.svc
            .list_object_versions("bkt", "solo")
            .unwrap()
            .versions
            .len(),
        1
    );
    assert_err!(
        env.svc.head_object("bkt", "k", Some(&v1.version_id)),
        ObjectError::NoSuchVersion(_)
    );
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);

    env.clock.advance_ms(2 * DAY_MS);
    let report = env.svc.run_lifecycle_once().await.unwrap();
    assert_eq!(report.noncurrent_deleted, 1);
    let versions = env.svc.list_object_versions("bkt", "k").unwrap().versions;
    assert_eq!(versions, vec![v3]);
    assert_eq!(env.get("bkt", "k", None).await, b"third");
    assert!(env.svc.head_object("bkt", "solo", None).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_aborts_stale_multipart_uploads() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let r = LifecycleRule {
        abort_incomplete_multipart_days: Some(1),
        ..rule("mpu", "")
    };
    env.svc.set_lifecycle("bkt", vec![r]).await.unwrap();
    let stale = new_upload(&env, "stale").await;
    upload_part(&env, "stale", &stale, 1, &pattern(MIB + 1, 82)).await;
    env.clock.advance_ms(2 * DAY_MS);
    let fresh = new_upload(&env, "fresh").await;
    upload_part(&env, "fresh", &fresh, 1, b"fresh part").await;
    assert_eq!(env.chunk_files().len(), 3);

    let report = env.svc.run_lifecycle_once().await.unwrap();
    assert_eq!(
        report,
        LifecycleReport {
            uploads_aborted: 1,
            ..LifecycleReport::default()
        }
    );
    assert_err!(
        env.svc.list_parts("bkt", "stale", &stale),
        ObjectError::NoSuchUpload(_)
    );
    let uploads = env.svc.list_multipart_uploads("bkt", 10).unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].upload_id, fresh);
    assert_eq!(env.svc.list_parts("bkt", "fresh", &fresh).unwrap().len(), 1);
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);
    assert_eq!(env.chunk_files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lifecycle_rules_are_refused() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let good = vec![LifecycleRule {
        expiration_days: Some(30),
        ..rule("keep", "")
    }];
    env.svc.set_lifecycle("bkt", good.clone()).await.unwrap();
    let no_action = vec![rule("none", "")];
    let zero_days = vec![LifecycleRule {
        expiration_days: Some(0),
        ..rule("zero", "")
    }];
    let zero_noncurrent = vec![LifecycleRule {
        expiration_days: Some(3),
        noncurrent_days: Some(0),
        ..rule("zero-nc", "")
    }];
    let duplicate = vec![
        LifecycleRule {
            expiration_days: Some(1),
            ..rule("same", "a/")
        },
        LifecycleRule {
            noncurrent_days: Some(1),
            ..rule("same", "b/")
        },
    ];
    let empty_id = vec![LifecycleRule {
        expiration_days: Some(1),
        ..rule("", "")
    }];
    for bad in [no_action, zero_days, zero_noncurrent, duplicate, empty_id] {
        assert_err!(
            env.svc.set_lifecycle("bkt", bad.clone()).await,
            ObjectError::InvalidArgument(_)
        );
        assert_eq!(env.svc.get_lifecycle("bkt").unwrap(), good, "{bad:?}");
    }
    assert_err!(
        env.svc.set_lifecycle("missing", good.clone()).await,
        ObjectError::NoSuchBucket(_)
    );
    // An empty rule set clears the configuration.
    env.svc.set_lifecycle("bkt", vec![]).await.unwrap();
    assert!(env.svc.get_lifecycle("bkt").unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// 9. Buckets
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_bucket_twice_is_already_owned() {
    let env = Env::new();
    let rec = env.svc.create_bucket("bkt").await.unwrap();
    assert_eq!(rec.name, "bkt");
    assert_eq!(rec.created_ms, START_MS);
    assert_eq!(rec.versioning, Versioning::Unversioned);
    assert_err!(
        env.svc.create_bucket("bkt").await,
        ObjectError::BucketAlreadyOwnedByYou(_)
    );
    assert_eq!(env.svc.list_buckets().unwrap(), vec![rec]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bucket_names_are_refused() {
    let env = Env::new();
    let long = "a".repeat(64);
    for bad in [
        "ab",
        long.as_str(),
        "Upper",
        "under_score",
        "-dash",
        "dot.",
        "a..b",
        "10.0.0.1",
        "xn--idn",
    ] {
        assert_err!(
            env.svc.create_bucket(bad).await,
            ObjectError::InvalidBucketName(_)
        );
        assert_err!(
            env.svc
                .put_object(
                    bad,
                    "k",
                    body(b"x"),
                    PutOptions {
                        create_bucket: true,
                        ..PutOptions::default()
                    }
                )
                .await,
            ObjectError::InvalidBucketName(_)
        );
    }
    assert!(env.svc.list_buckets().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_non_empty_bucket_is_refused() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.put("bkt", "k", b"x").await;
    assert_err!(
        env.svc.delete_bucket("bkt").await,
        ObjectError::BucketNotEmpty(_)
    );
    assert!(env.svc.head_bucket("bkt").is_ok());
    assert_eq!(env.get("bkt", "k", None).await, b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bucket_holding_only_versions_or_markers_is_refused() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.svc
        .set_versioning("bkt", Versioning::Enabled)
        .await
        .unwrap();
    let v = env.put("bkt", "k", b"x").await;
    env.svc.delete_object("bkt", "k", None).await.unwrap();
    assert!(
        env.svc
            .list_objects("bkt", &ListQuery::default())
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    assert_err!(
        env.svc.delete_bucket("bkt").await,
        ObjectError::BucketNotEmpty(_)
    );
    // Only a delete marker left.
    env.svc
        .delete_object("bkt", "k", Some(&v.version_id))
        .await
        .unwrap();
    assert_eq!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .len(),
        1
    );
    assert_err!(
        env.svc.delete_bucket("bkt").await,
        ObjectError::BucketNotEmpty(_)
    );
    // Remove the marker too and the bucket can go.
    let marker = env.svc.list_object_versions("bkt", "k").unwrap().versions[0].clone();
    env.svc
        .delete_object("bkt", "k", Some(&marker.version_id))
        .await
        .unwrap();
    env.svc.delete_bucket("bkt").await.unwrap();
    assert_err!(env.svc.head_bucket("bkt"), ObjectError::NoSuchBucket(_));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_empty_bucket_removes_it() {
    let env = Env::new();
    env.create_bucket("keep").await;
    env.create_bucket("bkt").await;
    env.put("bkt", "k", b"x").await;
    env.svc.delete_object("bkt", "k", None).await.unwrap();
    env.svc.delete_bucket("bkt").await.unwrap();
    let names: Vec<_> = env
        .svc
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, vec!["keep"]);
    assert_err!(env.svc.head_bucket("bkt"), ObjectError::NoSuchBucket(_));
    assert_err!(
        env.svc.delete_bucket("bkt").await,
        ObjectError::NoSuchBucket(_)
    );
    assert_err!(
        env.svc
            .put_object("bkt", "k", body(b"x"), PutOptions::default())
            .await,
        ObjectError::NoSuchBucket(_)
    );
    // The name can be used again.
    env.create_bucket("bkt").await;
    assert!(
        env.svc
            .list_objects("bkt", &ListQuery::default())
            .await
            .unwrap()
            .objects
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bucket_aborts_its_uploads() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let id = new_upload(&env, "k").await;
    upload_part(&env, "k", &id, 1, &pattern(MIB + 1, 90)).await;
    env.svc.delete_bucket("bkt").await.unwrap();
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 2);
    assert!(env.chunk_files().is_empty());
    env.create_bucket("bkt").await;
    assert!(
        env.svc
            .list_multipart_uploads("bkt", 10)
            .unwrap()
            .is_empty()
    );
    assert_err!(
        env.svc.list_parts("bkt", "k", &id),
        ObjectError::NoSuchUpload(_)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_create_bucket_creates_the_bucket() {
    let env = Env::new();
    assert_err!(
        env.svc
            .put_object("auto", "k", body(b"x"), PutOptions::default())
            .await,
        ObjectError::NoSuchBucket(_)
    );
    assert!(env.svc.list_buckets().unwrap().is_empty());
    let opts = PutOptions {
        create_bucket: true,
        ..PutOptions::default()
    };
    env.svc
        .put_object("auto", "k", body(&pattern(CHUNK + 3, 91)), opts.clone())
        .await
        .unwrap();
    let b = env.svc.head_bucket("auto").unwrap();
    assert_eq!(b.versioning, Versioning::Unversioned);
    assert_eq!(env.get("auto", "k", None).await, pattern(CHUNK + 3, 91));
    // Putting into an existing bucket with the flag set leaves the bucket as it was.
    env.svc
        .set_versioning("auto", Versioning::Enabled)
        .await
        .unwrap();
    env.svc
        .put_object("auto", "k2", body(b"y"), opts)
        .await
        .unwrap();
    assert_eq!(
        env.svc.head_bucket("auto").unwrap().versioning,
        Versioning::Enabled
    );
    assert_eq!(env.svc.list_buckets().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 10. Restart and orphan sweep
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_every_object_byte_identical() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.create_bucket("ver").await;
    env.svc
        .set_versioning("ver", Versioning::Enabled)
        .await
        .unwrap();
    let contents: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("inline", pattern(700, 100)),
        ("one-chunk", pattern(CHUNK, 101)),
        ("dir/multi", pattern(200 * 1024 + 7, 102)),
    ];
    let mut records = Vec::new();
    for (k, d) in &contents {
        records.push(env.put("bkt", k, d).await);
    }
    env.svc
        .put_tags("bkt", "inline", None, tags(2))
        .await
        .unwrap();
    let old = env.put("ver", "k", b"old version").await;
    let new = env.put("ver", "k", &pattern(CHUNK + 9, 103)).await;
    env.svc
        .set_lifecycle(
            "bkt",
            vec![LifecycleRule {
                expiration_days: Some(7),
                ..rule("r", "tmp/")
            }],
        )
        .await
        .unwrap();
    let buckets_before = env.svc.list_buckets().unwrap();
    let listing_before = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    let files_before = env.chunk_files();

    let env = env.reopen().await;

    assert_eq!(env.svc.list_buckets().unwrap(), buckets_before);
    let listing_after = env
        .svc
        .list_objects("bkt", &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(listing_after.objects, listing_before.objects);
    for ((k, d), rec) in contents.iter().zip(&records) {
        let head = env.svc.head_object("bkt", k, None).unwrap();
        assert_eq!(head.etag, rec.etag, "{k}");
        assert!(&env.get("bkt", k, None).await == d, "{k}: bytes differ");
    }
    assert_eq!(
        env.svc.get_tags("bkt", "inline", None).await.unwrap(),
        tags(2)
    );
    let versions = env.svc.list_object_versions("ver", "k").unwrap().versions;
    assert_eq!(versions, vec![new.clone(), old.clone()]);
    assert_eq!(
        env.get("ver", "k", Some(&old.version_id)).await,
        b"old version"
    );
    assert_eq!(env.get("ver", "k", None).await, pattern(CHUNK + 9, 103));
    // Nothing referenced is an orphan, and nothing was lost.
    assert_eq!(env.svc.sweep_orphans().unwrap(), 0);
    assert_eq!(env.chunk_files(), files_before);
    // The reopened service keeps working.
    env.put("bkt", "after", b"after restart").await;
    assert_eq!(env.get("bkt", "after", None).await, b"after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_orphans_removes_only_unreferenced_chunk_files() {
    let env = Env::with_config(multipart_config());
    env.create_bucket("bkt").await;
    let data = pattern(2 * MIB + 1, 110);
    let rec = env.put("bkt", "k", &data).await;
    // A part of an unfinished upload is referenced too.
    let id = new_upload(&env, "pending").await;
    upload_part(&env, "pending", &id, 1, b"part bytes").await;
    let referenced = env.chunk_files();
    assert_eq!(referenced.len(), 4);
    // Files a crash mid-upload would leave: a written chunk no record points at.
    let store = env.svc.cluster().chunk_store();
    let orphan = store.write(bucket_hash("bkt"), b"orphan chunk").unwrap();
    let orphan_other_bucket = store.write(bucket_hash("elsewhere"), b"orphan 2").unwrap();
    assert!(env.chunk_path(&orphan).is_file());
    assert_eq!(env.chunk_files().len(), 6);

    let env = env.reopen().await;
    assert_eq!(env.svc.sweep_orphans().unwrap(), 2);
    assert!(!env.chunk_path(&orphan).exists());
    assert!(!env.chunk_path(&orphan_other_bucket).exists());
    assert_eq!(env.chunk_files(), referenced);
    assert_eq!(env.svc.head_object("bkt", "k", None).unwrap(), rec);
    assert!(env.get("bkt", "k", None).await == data);
    assert_eq!(env.svc.list_parts("bkt", "pending", &id).unwrap().len(), 1);
    assert_eq!(env.svc.sweep_orphans().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// 11. Corruption
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_first_chunk_fails_the_get_and_is_quarantined() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(200 * 1024 + 7, 120);
    let rec = env.put("bkt", "k", &data).await;
    let first = env.chunk_path(&rec.chunks()[0]);
    flip_byte(&first, 1_000);
    assert_err!(
        env.svc
            .get_object("bkt", "k", None, None, &Default::default())
            .await,
        ObjectError::Corrupt(_)
    );
    assert!(!first.exists());
    let q = env.quarantined_files();
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].file_name().unwrap().to_str().unwrap(),
        format!(
            "{}-{}",
            hex::encode(rec.chunks()[0].id.bucket),
            hex::encode(rec.chunks()[0].id.id)
        )
    );
    // Once quarantined the chunk is missing, which is reported the same way.
    assert_err!(
        env.svc
            .get_object("bkt", "k", None, None, &Default::default())
            .await,
        ObjectError::Corrupt(_)
    );
    // A range that avoids the damaged chunk still reads.
    let c = CHUNK as u64;
    let (_, got) = env
        .get_range(
            "bkt",
            "k",
            RangeSpec::From {
                start: c,
                end: Some(2 * c + 10),
            },
        )
        .await;
    assert_eq!(got, data[CHUNK..=2 * CHUNK + 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_later_chunk_fails_the_stream_before_its_bytes() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(200 * 1024 + 7, 121);
    let rec = env.put("bkt", "k", &data).await;
    let third = env.chunk_path(&rec.chunks()[2]);
    flip_byte(&third, 0);
    let reader = env
        .svc
        .get_object("bkt", "k", None, None, &Default::default())
        .await
        .unwrap();
    assert_eq!(reader.content_length(), data.len() as u64);
    let (got, err) = read_until_error(reader.body).await;
    assert!(
        matches!(err, Some(ObjectError::Corrupt(_))),
        "expected a Corrupt error, got {err:?}"
    );
    assert_eq!(got.len(), 2 * CHUNK);
    assert!(
        got == data[..2 * CHUNK],
        "the bytes before the error differ"
    );
    assert!(!third.exists());
    assert_eq!(env.quarantined_files().len(), 1);
    // The other chunks are untouched.
    for (i, c) in rec.chunks().iter().enumerate() {
        assert_eq!(env.chunk_path(c).exists(), i != 2, "chunk {i}");
    }
}

// --- GC grace period -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_started_before_an_overwrite_finishes_with_the_old_bytes() {
    let env = Env::with_config(ServiceConfig {
        gc_grace_ms: 60_000,
        ..default_config()
    });
    env.create_bucket("bkt").await;
    let old = pattern(300 * 1024 + 3, 7);
    let rec = env.put("bkt", "k", &old).await;
    let reader = env
        .svc
        .get_object("bkt", "k", None, None, &Default::default())
        .await
        .unwrap();
    // Overwrite and delete while the download is open; GC inside the grace period
    // must leave the old chunks alone.
    env.put("bkt", "k", b"new").await;
    env.svc.delete_object("bkt", "k", None).await.unwrap();
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 0);
    let (got, err) = read_until_error(reader.body).await;
    assert!(err.is_none(), "the download failed: {err:?}");
    assert!(got == old, "the download returned other bytes");
    // Once the grace period has passed, GC reclaims every old chunk.
    env.clock.advance_ms(60_000);
    let freed = env.svc.run_gc_until_empty().await.unwrap();
    assert_eq!(freed, rec.chunks().len() as u64);
    for c in rec.chunks() {
        assert!(!env.chunk_path(c).exists());
    }
}

// --- cancelled requests ----------------------------------------------------------------

/// A request future dropped at any point (a client disconnecting) must leave either no
/// object, or a complete and readable one: never a visible object whose chunks were
/// deleted by the cleanup of the cancelled request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cancelled_at_any_point_leaves_nothing_or_a_whole_object() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let data = pattern(3 * CHUNK + 11, 5);
    for i in 0..40usize {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut done_tx = Some(done_tx);
        let frames = frames(&data);
        let stream = futures::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>)).chain(
            futures::stream::poll_fn(move |_| {
                if let Some(tx) = done_tx.take() {
                    let _ = tx.send(());
                }
                std::task::Poll::Ready(None)
            }),
        );
        let svc = env.svc.clone();
        let key = format!("k{i}");
        let task = tokio::spawn(async move {
            svc.put_object("bkt", &key, Box::pin(stream), PutOptions::default())
                .await
        });
        // Cancel after the whole body arrived, at a different moment each round, sweeping
        // across the chunk write and the metadata commit (a fault schedule, not a wait).
        let _ = done_rx.await;
        tokio::time::sleep(std::time::Duration::from_micros(i as u64 * 100)).await;
        task.abort();
        let _ = task.await;
    }
    let mut visible = 0;
    let mut objects = 0;
    for i in 0..40usize {
        match env.svc.head_object("bkt", &format!("k{i}"), None) {
            Ok(rec) => {
                objects += 1;
                visible += rec.chunks().len();
                assert!(env.get("bkt", &format!("k{i}"), None).await == data);
            }
            Err(ObjectError::NoSuchKey(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    eprintln!("{objects} of 40 cancelled puts committed");
    assert_eq!(env.settle_chunk_files(visible).await.len(), visible);
}

/// A lifecycle pass decides from a snapshot; a write that lands between that snapshot
/// and the expiring delete must win. Overwrite every expired key while a pass runs:
/// afterwards each key holds its new bytes (never deleted by the pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_never_expires_a_write_that_landed_during_the_pass() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let rules = vec![LifecycleRule {
        expiration_days: Some(1),
        ..rule("tmp", "tmp/")
    }];
    env.svc.set_lifecycle("bkt", rules).await.unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("tmp/{i:03}")).collect();
    for k in &keys {
        env.put("bkt", k, b"old").await;
    }
    env.clock.advance_ms(2 * DAY_MS);
    let svc = env.svc.clone();
    let pass = tokio::spawn(async move { svc.run_lifecycle_once().await });
    // Newest first, so overwrites meet the pass mid-way.
    for k in keys.iter().rev() {
        env.put("bkt", k, b"new").await;
    }
    pass.await.unwrap().unwrap();
    for k in &keys {
        assert_eq!(env.get("bkt", k, None).await, b"new", "{k}");
    }
}

/// The stored-bytes total follows every version written and removed, and a store without
/// one (written before it was kept) gets it added up at startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_follow_versions_and_are_added_up_for_old_stores() {
    let env = Env::new();
    env.svc.init_usage().await.unwrap(); // as the server does at startup
    env.create_bucket("plain").await;
    env.put("plain", "a", &pattern(10, 1)).await;
    env.put("plain", "big", &pattern(300 * 1024, 2)).await;
    env.put("plain", "a", &pattern(20, 3)).await; // replaces the 10 bytes
    assert_eq!(env.svc.stored_bytes().unwrap(), 20 + 300 * 1024);

    env.create_versioned_bucket("kept").await;
    let first = env.put("kept", "k", &pattern(5, 4)).await;
    env.put("kept", "k", &pattern(7, 5)).await;
    let base = 20 + 300 * 1024;
    assert_eq!(env.svc.stored_bytes().unwrap(), base + 12);
    env.svc.delete_object("kept", "k", None).await.unwrap(); // a marker: nothing freed
    assert_eq!(env.svc.stored_bytes().unwrap(), base + 12);
    env.svc
        .delete_object("kept", "k", Some(&first.version_id))
        .await
        .unwrap();
    assert_eq!(env.svc.stored_bytes().unwrap(), base + 7);
    env.svc.delete_object("plain", "big", None).await.unwrap();
    assert_eq!(env.svc.stored_bytes().unwrap(), 20 + 7);

    // An old store has no total row: nothing is counted until startup adds it up.
    env.svc
        .cluster()
        .meta()
        .write(|kv| -> Result<(), bucketdb_store::StoreError> {
            kv.delete(bucketdb_store::Table::Usage, b"stored_bytes")?;
            Ok(())
        })
        .await
        .unwrap();
    env.put("plain", "late", &pattern(3, 6)).await;
    assert_eq!(env.svc.stored_bytes().unwrap(), 0);
    env.svc.init_usage().await.unwrap();
    assert_eq!(env.svc.stored_bytes().unwrap(), 30);
    // Once there, it is not added up again.
    env.svc.init_usage().await.unwrap();
    assert_eq!(env.svc.stored_bytes().unwrap(), 30);
}
