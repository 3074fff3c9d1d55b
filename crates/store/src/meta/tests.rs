use std::sync::Arc;

use super::*;

fn open(dir: &std::path::Path) -> Arc<Meta> {
    Arc::new(Meta::new(Arc::new(RedbEngine::open(dir).unwrap())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_all_commit_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let meta = open(dir.path());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let m = meta.clone();
            tasks.push(tokio::spawn(async move {
                m.write(move |kv| kv.put(Table::Buckets, &i.to_be_bytes(), b"v").map(|_| i))
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), i as u32);
        }
    }
    let meta = open(dir.path());
    assert_eq!(meta.read().unwrap().count(Table::Buckets).unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mutation_does_not_stop_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open(dir.path());
    let bad = meta.write(|_kv| Err::<(), StoreError>(StoreError::Decode("refused".into())));
    let good = meta.write(|kv| kv.put(Table::Buckets, b"k", b"v"));
    let (bad, good) = tokio::join!(bad, good);
    assert!(bad.is_err());
    good.unwrap();
    assert_eq!(
        meta.read().unwrap().get(Table::Buckets, b"k").unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn scan_is_ordered_bounded_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open(dir.path());
    meta.write_blocking(|kv| {
        for k in ["a", "b", "c", "d"] {
            kv.put(Table::Current, k.as_bytes(), b"")?;
        }
        Ok::<_, StoreError>(())
    })
    .unwrap();
    let r = meta.read().unwrap();
    let keys = |v: Vec<Entry>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(r.scan(Table::Current, b"b", Some(b"d"), 10).unwrap()),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(
        keys(r.scan(Table::Current, b"a", None, 3).unwrap()).len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_that_fails_after_writing_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open(dir.path());
    meta.write(|kv| kv.put(Table::Buckets, b"keep", b"1"))
        .await
        .unwrap();
    let failed = meta.write(|kv| {
        kv.put(Table::Buckets, b"half", b"written")?;
        kv.delete(Table::Buckets, b"keep")?;
        Err::<(), StoreError>(StoreError::Decode("fails after writing".into()))
    });
    let good = meta.write(|kv| kv.put(Table::Buckets, b"other", b"2"));
    let (failed, good) = tokio::join!(failed, good);
    assert!(failed.is_err());
    good.unwrap();
    let r = meta.read().unwrap();
    assert_eq!(r.get(Table::Buckets, b"half").unwrap(), None);
    assert_eq!(r.get(Table::Buckets, b"keep").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        r.get(Table::Buckets, b"other").unwrap(),
        Some(b"2".to_vec())
    );
}

#[test]
fn a_mutation_reads_its_own_writes_in_gets_scans_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open(dir.path());
    meta.write_blocking(|kv| {
        for k in ["a", "b", "c", "d"] {
            kv.put(Table::Current, k.as_bytes(), b"old")?;
        }
        Ok::<_, StoreError>(())
    })
    .unwrap();
    let seen = meta
        .write_blocking(|kv| {
            kv.delete(Table::Current, b"a")?;
            kv.delete(Table::Current, b"b")?;
            kv.put(Table::Current, b"bb", b"new")?;
            kv.put(Table::Current, b"c", b"new")?;
            let scan = kv.scan(Table::Current, b"", None, 2)?;
            let count = kv.count(Table::Current)?;
            let got = kv.get(Table::Current, b"bb")?;
            Ok::<_, StoreError>((scan, count, got))
        })
        .unwrap();
    assert_eq!(
        seen.0,
        vec![
            (b"bb".to_vec(), b"new".to_vec()),
            (b"c".to_vec(), b"new".to_vec())
        ]
    );
    assert_eq!(seen.1, 3);
    assert_eq!(seen.2, Some(b"new".to_vec()));
    let r = meta.read().unwrap();
    assert_eq!(r.count(Table::Current).unwrap(), 3);
}

#[test]
fn a_store_open_elsewhere_is_refused_and_a_missing_one_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        RedbEngine::open_existing(dir.path()),
        Err(StoreError::MetadataMissing(_))
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let held = RedbEngine::open(dir.path()).unwrap();
    assert!(matches!(
        RedbEngine::open_existing(dir.path()),
        Err(StoreError::MetadataInUse(_))
    ));
    drop(held);
    RedbEngine::open_existing(dir.path()).unwrap();
}
