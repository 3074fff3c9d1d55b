//! Applying replicated changes to one real store (no network: the chunks the changes
//! name are already here): versions ordered by `seq` whatever order they arrive in,
//! tombstones refusing late copies, and quorum prepares held, committed, aborted or
//! expired, with chunk references left right (fsck clean).

mod common;

use bucketdb_cluster::replication::{
    ReplAck, ReplBatch, ReplPayload, decode_message, encode_message,
};
use bucketdb_object::ObjectRecord;
use bucketdb_object::fsck::{FsckOptions, check_node};
use bucketdb_store::records::encode;
use bucketdb_store::{Clock, Table};
use common::*;

/// Send one batch to the service as a peer would; the queue numbers it applied.
async fn apply(env: &Env, ops: Vec<ReplPayload>) -> Vec<u64> {
    let batch = ReplBatch {
        source: "peer".into(),
        ops: ops
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u64, p))
            .collect(),
    };
    let answer = env
        .svc
        .apply_replicated(&encode_message(&batch).unwrap())
        .await
        .unwrap();
    decode_message::<ReplAck>(&answer).unwrap().applied
}

fn version(bucket: &str, rec: &ObjectRecord) -> ReplPayload {
    ReplPayload::Version {
        bucket: bucket.into(),
        record: encode(rec).unwrap(),
        inline: None,
    }
}

fn prepare(bucket: &str, rec: &ObjectRecord) -> ReplPayload {
    ReplPayload::Prepare {
        bucket: bucket.into(),
        record: encode(rec).unwrap(),
        inline: None,
    }
}

/// A copy of `rec` as another node might send it: another version id and `seq`.
fn variant(rec: &ObjectRecord, version_id: &str, seq: u64) -> ObjectRecord {
    let mut v = rec.clone();
    v.version_id = version_id.into();
    v.seq = seq;
    v
}

fn pending_count(env: &Env) -> u64 {
    env.svc
        .cluster()
        .meta()
        .read()
        .unwrap()
        .count(Table::Pending)
        .unwrap()
}

/// fsck on the closed store finds nothing wrong; returns the reopened env.
async fn assert_fsck_clean(env: Env) -> Env {
    let opts = FsckOptions {
        repair: false,
        now_ms: env.clock.now_ms(),
    };
    let (env, report) = env
        .offline(move |dir| check_node(&dir.join("data"), &dir.join("meta"), &opts).unwrap())
        .await;
    assert!(!report.damage_remains, "{report:#?}");
    assert!(report.problems.is_empty(), "{report:#?}");
    env
}

#[tokio::test]
async fn versions_apply_by_seq_and_tombstones_refuse_late_copies() {
    let env = Env::with_config(multipart_config());
    env.create_versioned_bucket("bkt").await;
    let local = env.put("bkt", "k", &vec![7u8; 300 * 1024]).await;
    // A newer version made elsewhere (same chunks, so nothing needs fetching).
    let newer = variant(&local, "0000000000000000000000000000remote", local.seq + 10);
    // An older one that arrives late.
    let older = variant(&local, "0000000000000000000000000000older", local.seq - 10);
    assert_eq!(
        apply(&env, vec![version("bkt", &newer), version("bkt", &older)]).await,
        [0, 1]
    );
    let head = env.svc.head_object("bkt", "k", None).unwrap();
    assert_eq!(
        head.version_id, newer.version_id,
        "the newest seq is current"
    );
    let versions = env.svc.list_object_versions("bkt", "k").unwrap().versions;
    let ids: Vec<_> = versions.iter().map(|v| v.version_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            newer.version_id.as_str(),
            &local.version_id,
            &older.version_id
        ]
    );

    // Applying the same change twice changes nothing.
    assert_eq!(apply(&env, vec![version("bkt", &newer)]).await, [0]);
    assert_eq!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .len(),
        3
    );

    // A removal, then a late copy of the removed version: it stays removed.
    let removed = ReplPayload::Removed {
        bucket: "bkt".into(),
        key: "k".into(),
        version_id: newer.version_id.clone(),
        seq: newer.seq,
    };
    assert_eq!(
        apply(&env, vec![removed, version("bkt", &newer)]).await,
        [0, 1]
    );
    let head = env.svc.head_object("bkt", "k", None).unwrap();
    assert_eq!(head.version_id, local.version_id);
    assert_eq!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .len(),
        2
    );

    // A version for a bucket this node does not have is not applied (retried later).
    assert!(
        apply(&env, vec![version("nobucket", &newer)])
            .await
            .is_empty()
    );
    assert_fsck_clean(env).await;
}

#[tokio::test]
async fn prepared_versions_stay_invisible_until_committed_and_expire_if_never() {
    let env = Env::with_config(multipart_config());
    env.create_versioned_bucket("bkt").await;
    let local = env.put("bkt", "k", &vec![3u8; 300 * 1024]).await;
    let committed = variant(&local, "00000000000000000000000000committed", local.seq + 1);
    let aborted = variant(&local, "000000000000000000000000000aborted", local.seq + 2);
    let forgotten = variant(&local, "00000000000000000000000000forgotten", local.seq + 3);

    let prepared = vec![
        prepare("bkt", &committed),
        prepare("bkt", &aborted),
        prepare("bkt", &forgotten),
    ];
    assert_eq!(apply(&env, prepared).await, [0, 1, 2]);
    assert_eq!(pending_count(&env), 3);
    // Prepared is not visible.
    assert_eq!(
        env.svc.head_object("bkt", "k", None).unwrap().version_id,
        local.version_id
    );
    assert_eq!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .len(),
        1
    );

    // The commit installs it and drops its prepared copy; the abort drops another.
    let abort = ReplPayload::Abort {
        bucket: "bkt".into(),
        key: "k".into(),
        version_id: aborted.version_id.clone(),
        seq: aborted.seq,
    };
    assert_eq!(
        apply(&env, vec![version("bkt", &committed), abort]).await,
        [0, 1]
    );
    assert_eq!(
        env.svc.head_object("bkt", "k", None).unwrap().version_id,
        committed.version_id
    );
    assert_eq!(pending_count(&env), 1);

    // The one never committed nor aborted expires.
    assert_eq!(
        env.svc.drop_stale_prepared().await.unwrap(),
        0,
        "not stale yet"
    );
    env.clock
        .advance_ms(env.svc.prepared_ttl().as_millis() as u64 + 1);
    assert_eq!(env.svc.drop_stale_prepared().await.unwrap(), 1);
    assert_eq!(pending_count(&env), 0);
    assert_eq!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .len(),
        2
    );
    assert_fsck_clean(env).await;
}

#[tokio::test]
async fn copies_of_one_version_keep_the_later_tags_whatever_order_they_arrive_in() {
    let env = Env::with_config(multipart_config());
    env.create_versioned_bucket("bkt").await;
    let local = env.put("bkt", "k", b"tagged").await;
    let tagged = |tag: &str, tags_seq: u64| {
        let mut rec = local.clone();
        rec.tags = vec![("t".into(), tag.into())];
        rec.tags_seq = tags_seq;
        rec
    };
    let (earlier, later) = (tagged("earlier", 10), tagged("later", 20));
    let tags = |env: &Env| env.svc.head_object("bkt", "k", None).unwrap().tags;
    // The later tags first, then the earlier ones: the later stay.
    assert_eq!(
        apply(&env, vec![version("bkt", &later), version("bkt", &earlier)]).await,
        [0, 1]
    );
    assert_eq!(tags(&env), later.tags);
    // Tags changed here are stamped after any copy's.
    let rec = env
        .svc
        .put_tags("bkt", "k", None, vec![("t".into(), "here".into())])
        .await
        .unwrap();
    assert!(rec.tags_seq > later.tags_seq, "{rec:?}");
    assert_eq!(rec.seq, local.seq, "a tag change keeps the version's seq");
    assert_eq!(apply(&env, vec![version("bkt", &later)]).await, [0]);
    assert_eq!(tags(&env), rec.tags);
}

#[tokio::test]
async fn prepared_removals_change_nothing_until_committed() {
    let env = Env::with_config(multipart_config());
    env.create_versioned_bucket("bkt").await;
    let local = env.put("bkt", "k", &vec![4u8; 300 * 1024]).await;
    let removal = |seq| ReplPayload::PrepareRemoval {
        bucket: "bkt".into(),
        key: "k".into(),
        version_id: local.version_id.clone(),
        seq,
    };
    let visible = |env: &Env| env.svc.head_object("bkt", "k", None).is_ok();

    // Prepared, then aborted: the version stays.
    assert_eq!(apply(&env, vec![removal(local.seq)]).await, [0]);
    assert_eq!(pending_count(&env), 1);
    assert!(visible(&env), "a prepared removal is invisible");
    let abort = ReplPayload::Abort {
        bucket: "bkt".into(),
        key: "k".into(),
        version_id: local.version_id.clone(),
        seq: local.seq,
    };
    assert_eq!(apply(&env, vec![abort]).await, [0]);
    assert_eq!(pending_count(&env), 0);
    assert!(visible(&env));

    // Prepared, then committed: the commit removes the version and its prepared
    // removal. A prepared copy of a version removed before its commit goes too.
    let doomed = variant(&local, "0000000000000000000000000000doomed", local.seq + 1);
    let prepared = vec![removal(local.seq), prepare("bkt", &doomed)];
    assert_eq!(apply(&env, prepared).await, [0, 1]);
    assert_eq!(pending_count(&env), 2);
    let removed = |rec: &ObjectRecord| ReplPayload::Removed {
        bucket: "bkt".into(),
        key: "k".into(),
        version_id: rec.version_id.clone(),
        seq: rec.seq,
    };
    assert_eq!(
        apply(&env, vec![removed(&local), removed(&doomed)]).await,
        [0, 1]
    );
    assert_eq!(pending_count(&env), 0);
    assert!(!visible(&env));
    // A removal for a bucket this node does not have is not held (retried later).
    let elsewhere = ReplPayload::PrepareRemoval {
        bucket: "nobucket".into(),
        key: "k".into(),
        version_id: "null".into(),
        seq: 1,
    };
    assert!(apply(&env, vec![elsewhere]).await.is_empty());
    assert_fsck_clean(env).await;
}

#[tokio::test]
async fn a_chunk_queued_for_gc_and_referenced_again_is_kept() {
    let env = Env::with_config(bucketdb_object::ServiceConfig {
        gc_grace_ms: 0,
        ..multipart_config()
    });
    env.create_versioned_bucket("bkt").await;
    let data = vec![9u8; 300 * 1024];
    let local = env.put("bkt", "k", &data).await;
    // A peer prepares a copy sharing the chunks; the local version goes away, so only
    // the prepared copy holds them.
    let copy = variant(&local, "0000000000000000000000000000copy", local.seq + 1);
    assert_eq!(apply(&env, vec![prepare("bkt", &copy)]).await, [0]);
    env.svc
        .delete_object("bkt", "k", Some(&local.version_id))
        .await
        .unwrap();
    // The commit drops the prepared copy's references (the chunks are queued for GC)
    // and takes the version's own (they are referenced again) in one transaction.
    assert_eq!(apply(&env, vec![version("bkt", &copy)]).await, [0]);
    env.svc.run_gc_until_empty().await.unwrap();
    assert_eq!(env.get("bkt", "k", Some(&copy.version_id)).await, data);
    assert_fsck_clean(env).await;
}

#[tokio::test]
async fn removals_are_remembered_for_the_tombstone_ttl_then_forgotten() {
    let env = Env::with_config(multipart_config());
    env.create_versioned_bucket("bkt").await;
    let local = env.put("bkt", "k", b"small").await;
    let removed = ReplPayload::Removed {
        bucket: "bkt".into(),
        key: "k".into(),
        version_id: local.version_id.clone(),
        seq: local.seq,
    };
    assert_eq!(apply(&env, vec![removed]).await, [0]);
    let tombstones = |env: &Env| {
        env.svc
            .cluster()
            .meta()
            .read()
            .unwrap()
            .count(Table::Tombstones)
            .unwrap()
    };
    assert_eq!(tombstones(&env), 1);
    // Within the TTL a late copy is refused; after it the removal is forgotten.
    assert_eq!(env.svc.expire_tombstones().await.unwrap(), 0);
    assert_eq!(apply(&env, vec![version("bkt", &local)]).await, [0]);
    assert!(
        env.svc
            .list_object_versions("bkt", "k")
            .unwrap()
            .versions
            .is_empty()
    );
    env.clock
        .advance_ms(bucketdb_object::TOMBSTONE_TTL.as_millis() as u64 + 1);
    assert_eq!(env.svc.expire_tombstones().await.unwrap(), 1);
    assert_eq!(tombstones(&env), 0);
}
