//! `fsck` over a real chunk store and redb metadata: a clean store, planted damage on
//! disk, tampered reference counts and inline bodies, and a store in use.

mod common;

use std::path::{Path, PathBuf};

use bucketdb_object::fsck::{
    DAMAGED_CHUNKS_NAMED_MAX, FsckError, FsckOptions, FsckReport, PROBLEMS_LISTED_PER_KIND_MAX,
    Problem, check_node,
};
use bucketdb_object::{ObjectError, ObjectRecord, PutOptions};
use bucketdb_store::chunks::QUARANTINE_DIR;
use bucketdb_store::keys::version_key;
use bucketdb_store::records::encode;
use bucketdb_store::{ChunkId, Clock, KvEngine, RedbEngine, Table};
use common::*;

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn meta_dir(dir: &Path) -> PathBuf {
    dir.join("meta")
}

/// Close the service, run fsck on its directories, reopen.
async fn fsck(env: Env, repair: bool) -> (Env, FsckReport) {
    let opts = FsckOptions {
        repair,
        now_ms: env.clock.now_ms(),
    };
    env.offline(move |dir| {
        check_node(&data_dir(dir), &meta_dir(dir), &opts).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
}

/// Change the metadata directly (the service closed), as damage or a bug would.
async fn tamper(env: Env, change: impl FnOnce(&mut dyn bucketdb_store::KvWrite)) -> Env {
    env.offline(|dir| {
        let engine = RedbEngine::open_existing(&meta_dir(dir)).unwrap();
        let mut change = Some(change);
        engine
            .write(&mut |kv| {
                if let Some(f) = change.take() {
                    f(kv);
                }
                Ok(())
            })
            .unwrap();
    })
    .await
    .0
}

fn has(report: &FsckReport, want: &Problem) -> bool {
    report.problems.contains(want)
}

/// Copy a chunk file to a fresh chunk id of the same bucket: a valid-looking file that
/// nothing references.
fn plant_orphan(env: &Env, of: &ObjectRecord) -> PathBuf {
    let source = env.chunk_path(&of.chunks()[0]);
    let mut id = of.chunks()[0].id;
    id.id = [0xab; 16];
    let path = env.svc.cluster().chunk_store().path_of(&id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(source, &path).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_store_is_clean_and_every_referenced_chunk_is_read() {
    let env = Env::new();
    env.create_versioned_bucket("bkt").await;
    let small = env.put("bkt", "small", b"inline body").await;
    assert_eq!(small.body, bucketdb_store::records::Body::Inline);
    let big = env.put("bkt", "big", &pattern(3 * CHUNK - 5, 1)).await;
    let old = env.put("bkt", "gone", &pattern(CHUNK + 1, 2)).await;
    // A permanently deleted version leaves chunk files queued for GC: not a problem.
    env.svc
        .delete_object("bkt", "gone", Some(&old.version_id))
        .await
        .unwrap();
    let up = env
        .svc
        .create_multipart_upload("bkt", "mp", PutOptions::default())
        .await
        .unwrap();
    let part_data = pattern(CHUNK + 7, 3);
    env.svc
        .upload_part("bkt", "mp", &up.upload_id, 1, body(&part_data), None)
        .await
        .unwrap();

    let (env, report) = fsck(env, false).await;
    assert!(!report.damage_remains, "{report:#?}");
    assert!(report.problems.is_empty(), "{report:#?}");
    let c = &report.counts;
    assert_eq!(c.chunks_checked, 3 + 2);
    assert_eq!(
        c.bytes_checked,
        big.size + part_data.len() as u64,
        "every referenced byte is read"
    );
    assert_eq!((c.awaiting_gc, c.chunk_files), (2, 7));
    assert_eq!((c.versions_checked, c.parts_checked), (2, 1));
    assert_eq!(c.inline_bodies_checked, 1);

    // Repairing a healthy store changes nothing.
    let files = env.chunk_files();
    let (env, repaired) = fsck(env, true).await;
    assert!(!repaired.damage_remains && repaired.problems.is_empty());
    assert_eq!(env.chunk_files(), files);
    assert_eq!(env.get("bkt", "big", None).await, pattern(3 * CHUNK - 5, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_damage_is_found_named_and_repaired_as_far_as_one_node_can() {
    let env = Env::new();
    env.create_versioned_bucket("vbkt").await;
    let a1 = env.put("vbkt", "a", &pattern(2 * CHUNK, 1)).await;
    let a2 = env.put("vbkt", "a", &pattern(3 * CHUNK, 2)).await;
    let b = env.put("vbkt", "b", &pattern(CHUNK, 3)).await;
    let wide = env.put("vbkt", "wide", &pattern(10 * CHUNK, 4)).await;
    env.create_bucket("ubkt").await;
    let up = env
        .svc
        .create_multipart_upload("ubkt", "mp", PutOptions::default())
        .await
        .unwrap();
    let part = env
        .svc
        .upload_part(
            "ubkt",
            "mp",
            &up.upload_id,
            1,
            body(&pattern(2 * CHUNK, 5)),
            None,
        )
        .await
        .unwrap();

    let corrupt = a1.chunks()[1].id;
    flip_byte(&env.chunk_path(&a1.chunks()[1]), 100);
    let missing = part.chunks[0].id;
    std::fs::remove_file(env.chunk_path(&part.chunks[0])).unwrap();
    for c in wide.chunks() {
        std::fs::remove_file(env.chunk_path(c)).unwrap();
    }
    let orphan = plant_orphan(&env, &b);
    let unfinished = PathBuf::from(format!("{}.tmp", env.chunk_path(&b.chunks()[0]).display()));
    std::fs::write(&unfinished, b"half a chunk").unwrap();

    let (env, report) = fsck(env, false).await;
    assert!(report.damage_remains);
    let c = &report.counts;
    assert_eq!(c.corrupt_chunks, 1);
    assert_eq!(c.missing_chunks, 1 + 10);
    assert_eq!(c.orphaned_files, 2);
    assert_eq!((c.damaged_versions, c.damaged_parts), (2, 1));
    assert_eq!(
        (c.refcount_mismatches, c.quarantined, c.orphans_removed),
        (0, 0, 0)
    );
    assert!(has(
        &report,
        &Problem::CorruptChunk {
            chunk: corrupt,
            quarantined: false
        }
    ));
    assert!(has(
        &report,
        &Problem::MissingChunk {
            chunk: missing,
            in_quarantine: false
        }
    ));
    assert!(has(
        &report,
        &Problem::OrphanedFile {
            path: orphan.clone(),
            removed: false
        }
    ));
    assert!(has(
        &report,
        &Problem::OrphanedFile {
            path: unfinished.clone(),
            removed: false
        }
    ));
    assert!(has(
        &report,
        &Problem::DamagedVersion {
            bucket: "vbkt".into(),
            key: "a".into(),
            version_id: a1.version_id.clone(),
            chunks_total: 2,
            damaged_chunks: 1,
            chunks: vec![corrupt],
        }
    ));
    assert!(has(
        &report,
        &Problem::DamagedPart {
            bucket: Some("ubkt".into()),
            key: Some("mp".into()),
            upload_id: up.upload_id.clone(),
            part_number: 1,
            chunks_total: 2,
            damaged_chunks: 1,
            chunks: vec![missing],
        }
    ));
    let named_wide = report.problems.iter().find_map(|p| match p {
        Problem::DamagedVersion {
            key,
            damaged_chunks,
            chunks,
            ..
        } if key == "wide" => Some((*damaged_chunks, chunks.len())),
        _ => None,
    });
    assert_eq!(named_wide, Some((10, DAMAGED_CHUNKS_NAMED_MAX)));
    // A check changes nothing.
    assert!(orphan.exists() && unfinished.exists());
    assert!(env.chunk_path(&a1.chunks()[1]).exists());
    assert!(env.quarantined_files().is_empty());

    let (env, repaired) = fsck(env, true).await;
    assert!(repaired.damage_remains, "lost data stays lost");
    let c = &repaired.counts;
    assert_eq!((c.quarantined, c.orphans_removed), (1, 2));
    assert!(!orphan.exists() && !unfinished.exists());
    assert_eq!(env.quarantined_files().len(), 1);
    assert!(
        env.quarantined_files()[0].starts_with(env.data_dir().join(QUARANTINE_DIR)),
        "corrupt chunks go to quarantine"
    );

    let (env, after) = fsck(env, false).await;
    assert!(after.damage_remains);
    let c = &after.counts;
    assert_eq!((c.corrupt_chunks, c.orphaned_files), (0, 0));
    assert_eq!((c.missing_chunks, c.refcount_mismatches), (2 + 10, 0));
    assert_eq!((c.damaged_versions, c.damaged_parts), (2, 1));
    assert!(has(
        &after,
        &Problem::MissingChunk {
            chunk: corrupt,
            in_quarantine: true
        }
    ));
    // The metadata of damaged objects is kept (for a cluster repair); the rest reads.
    assert_eq!(
        env.get("vbkt", "a", Some(&a2.version_id)).await.len(),
        3 * CHUNK
    );
    assert_eq!(env.get("vbkt", "b", None).await, pattern(CHUNK, 3));
    // Its first chunk is intact, so the download starts and fails at the lost one.
    let reader = env
        .svc
        .get_object("vbkt", "a", Some(&a1.version_id), None, &Default::default())
        .await
        .unwrap();
    let (sent, err) = read_until_error(reader.body).await;
    assert!(matches!(err, Some(ObjectError::Corrupt(_))), "{err:?}");
    assert!(sent.len() <= CHUNK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_reference_counts_are_rewritten_and_unreferenced_chunks_go_to_gc() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let x = env.put("bkt", "x", &pattern(CHUNK, 1)).await;
    let y = env.put("bkt", "y", &pattern(CHUNK, 2)).await;
    let w = env.put("bkt", "w", &pattern(CHUNK, 3)).await;
    // A chunk file with a count but no reference, as a lost reference would leave.
    let z = env
        .svc
        .cluster()
        .chunk_store()
        .write(x.chunks()[0].id.bucket, b"unreferenced")
        .unwrap();
    let (xid, yid, wid, zid) = (x.chunks()[0].id, y.chunks()[0].id, w.chunks()[0].id, z.id);
    let now = env.clock.now_ms();
    let env = tamper(env, move |kv| {
        kv.put(Table::Chunks, &xid.to_bytes(), &encode(&5u32).unwrap())
            .unwrap();
        kv.delete(Table::Chunks, &yid.to_bytes()).unwrap();
        kv.put(Table::Chunks, &zid.to_bytes(), &encode(&1u32).unwrap())
            .unwrap();
        // A live chunk queued for GC would be deleted under its object.
        let gc_key = [now.to_be_bytes().as_slice(), &wid.to_bytes()].concat();
        kv.put(Table::GcQueue, &gc_key, &encode(&()).unwrap())
            .unwrap();
    })
    .await;

    let (env, report) = fsck(env, false).await;
    assert!(report.damage_remains);
    assert_eq!(report.data_lost(), 0);
    let c = &report.counts;
    assert_eq!((c.refcount_mismatches, c.gc_queue_conflicts), (3, 1));
    assert_eq!(c.orphaned_files, 0, "a counted chunk is not an orphan");
    let mismatch = |chunk: ChunkId, recorded, actual| Problem::RefcountMismatch {
        chunk,
        recorded,
        actual,
        fixed: false,
    };
    assert!(has(&report, &mismatch(xid, Some(5), 1)));
    assert!(has(&report, &mismatch(yid, None, 1)));
    assert!(has(&report, &mismatch(zid, Some(1), 0)));
    assert!(has(
        &report,
        &Problem::QueuedWhileReferenced {
            chunk: wid,
            fixed: false
        }
    ));

    let (env, repaired) = fsck(env, true).await;
    assert!(!repaired.damage_remains, "{repaired:#?}");
    let c = &repaired.counts;
    assert_eq!(
        (c.refcounts_fixed, c.queued_for_gc, c.gc_entries_removed),
        (3, 1, 1)
    );

    let (env, after) = fsck(env, false).await;
    assert!(after.problems.is_empty(), "{after:#?}");
    assert_eq!(after.counts.awaiting_gc, 1);

    // GC now deletes the unreferenced chunk, and only it.
    let z_path = env.svc.cluster().chunk_store().path_of(&zid);
    assert!(z_path.exists());
    assert_eq!(env.svc.run_gc_until_empty().await.unwrap(), 1);
    assert!(!z_path.exists());
    for (key, seed) in [("x", 1), ("y", 2), ("w", 3)] {
        assert_eq!(env.get("bkt", key, None).await, pattern(CHUNK, seed));
    }
    // Counts are right again: deleting the objects frees every chunk.
    for key in ["x", "y", "w"] {
        env.svc.delete_object("bkt", key, None).await.unwrap();
    }
    env.svc.run_gc_until_empty().await.unwrap();
    assert!(env.chunk_files().is_empty(), "{:?}", env.chunk_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_altered_inline_bodies_are_damage_no_repair_hides() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let gone = env.put("bkt", "gone", b"first").await;
    let altered = env.put("bkt", "altered", b"second").await;
    let kept = env.put("bkt", "kept", b"third").await;
    // Only inline bodies: nothing created the chunk directory yet (a server does at start).
    std::fs::create_dir_all(env.data_dir()).unwrap();
    let (gone_key, altered_key) = (
        version_key("bkt", "gone", gone.seq),
        version_key("bkt", "altered", altered.seq),
    );
    let env = tamper(env, move |kv| {
        kv.delete(Table::Inline, &gone_key).unwrap();
        kv.put(Table::Inline, &altered_key, b"SECOND").unwrap();
    })
    .await;

    let (env, checked) = fsck(env, false).await;
    let (env, report) = fsck(env, true).await;
    assert_eq!(
        checked.problems, report.problems,
        "nothing to repair locally"
    );
    assert!(report.damage_remains);
    let c = &report.counts;
    assert_eq!(
        (c.missing_inline, c.corrupt_inline, c.damaged_versions),
        (1, 1, 2)
    );
    assert!(has(
        &report,
        &Problem::DamagedInline {
            bucket: "bkt".into(),
            key: "gone".into(),
            version_id: gone.version_id.clone(),
            missing: true,
        }
    ));
    assert!(has(
        &report,
        &Problem::DamagedInline {
            bucket: "bkt".into(),
            key: "altered".into(),
            version_id: altered.version_id.clone(),
            missing: false,
        }
    ));
    assert_eq!(env.get("bkt", "kept", None).await, b"third");
    assert_eq!(kept.body, bucketdb_store::records::Body::Inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_use_or_absent_is_refused_without_changes() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    env.put("bkt", "x", &pattern(CHUNK, 1)).await;
    let opts = FsckOptions {
        repair: true,
        now_ms: START_MS,
    };
    let dir = env.dir.path();
    let err = check_node(&data_dir(dir), &meta_dir(dir), &opts).unwrap_err();
    assert!(matches!(err, FsckError::ServerRunning(_)), "{err}");
    assert!(
        err.to_string().contains("server seems to be running"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = check_node(&data_dir(empty.path()), &meta_dir(empty.path()), &opts).unwrap_err();
    assert!(matches!(err, FsckError::NoMetadata(_)), "{err}");
    assert!(!meta_dir(empty.path()).exists(), "fsck creates no store");

    let (env, ()) = env
        .offline(|dir| {
            let err = check_node(&dir.join("elsewhere"), &meta_dir(dir), &opts).unwrap_err();
            assert!(matches!(err, FsckError::NoStorage(_)), "{err}");
        })
        .await;
    assert_eq!(env.get("bkt", "x", None).await, pattern(CHUNK, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_problems_of_one_kind_do_not_crowd_out_the_others() {
    let env = Env::new();
    env.create_bucket("bkt").await;
    let lost = env.put("bkt", "lost", &pattern(CHUNK, 1)).await;
    std::fs::remove_file(env.chunk_path(&lost.chunks()[0])).unwrap();
    let mut id = lost.chunks()[0].id;
    let orphans = PROBLEMS_LISTED_PER_KIND_MAX + 5;
    for n in 0..orphans {
        id.id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let path = env.svc.cluster().chunk_store().path_of(&id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"orphan").unwrap();
    }

    let (_env, report) = fsck(env, false).await;
    assert_eq!(report.counts.orphaned_files, orphans as u64);
    let listed_orphans = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::OrphanedFile { .. }))
        .count();
    assert_eq!(listed_orphans, PROBLEMS_LISTED_PER_KIND_MAX);
    assert_eq!(report.problems_not_listed, 5);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::DamagedVersion { key, .. } if key == "lost"))
    );
}
