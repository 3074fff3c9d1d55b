//! `bucketdb fsck` end to end: a real server writes objects and stops, damage is planted
//! on disk, and the real binary finds, reports and repairs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bucketdb::Config;
use bucketdb_store::records::encode;
use bucketdb_store::{ChunkId, KvEngine, RedbEngine, Table};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// What one run of the binary printed and returned.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("fsck --json printed no JSON ({e}):\n{}", self.stdout))
    }
}

/// Run `bucketdb <args>` with no `BUCKETDB_*` variables of the test's environment.
async fn bucketdb(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucketdb"));
        cmd.args(&args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BUCKETDB_") {
                cmd.env_remove(name);
            }
        }
        let out = cmd.output().expect("run bucketdb");
        Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("fsck runner")
}

/// `bucketdb fsck` on the server's directories, with `extra` flags.
async fn fsck(config: &Config, extra: &[&str]) -> Run {
    let mut args = vec![
        "fsck".to_string(),
        "--storage-path".into(),
        config.storage_path.display().to_string(),
        "--metadata-path".into(),
        config.metadata_path.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    bucketdb(args).await
}

/// The chunk id as fsck prints it: `<bucket hash>/<id>`, from `<root>/<hash>/<fan>/<id>`.
fn chunk_name(path: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .expect("a chunk path")
    };
    format!(
        "{}/{}",
        name(path.parent().and_then(Path::parent)),
        name(Some(path))
    )
}

fn chunk_id(path: &Path) -> ChunkId {
    let name = chunk_name(path);
    let (bucket, id) = name.split_once('/').unwrap();
    let bytes = [hex::decode(bucket).unwrap(), hex::decode(id).unwrap()].concat();
    ChunkId::from_bytes(&bytes).unwrap()
}

/// The chunk file holding `data`'s chunk number `index`.
fn chunk_file_of(storage: &Path, data: &[u8], index: usize) -> PathBuf {
    let end = data.len().min((index + 1) * CHUNK_SIZE);
    let want = &data[index * CHUNK_SIZE..end];
    chunk_files(storage)
        .into_iter()
        .find(|p| std::fs::read(p).unwrap() == want)
        .unwrap_or_else(|| panic!("no chunk file holds chunk {index}"))
}

fn problems_of_kind<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["problems"]
        .as_array()
        .expect("a problem list")
        .iter()
        .filter(|p| p["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_reports_and_repairs_planted_damage() {
    let server = TestServer::start().await;
    let a = random_bytes(3 * CHUNK_SIZE + 100, 1);
    let b = random_bytes(2 * CHUNK_SIZE, 2);
    let c = random_bytes(CHUNK_SIZE / 2, 3);
    server.put_object("photos", "2024/a.bin", &a).await;
    server.put_object("photos", "docs/b.bin", &b).await;
    server.put_object("photos", "c.bin", &c).await;
    server
        .put_object("photos", "small.txt", b"kept inline")
        .await;
    let (dir, config) = server.shutdown().await;
    let storage = config.storage_path.clone();

    // A clean data directory.
    let clean = fsck(&config, &[]).await;
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("result: clean"), "{}", clean.stdout);
    let report = fsck(&config, &["--json"]).await.json();
    assert_eq!(report["damageRemains"], false);
    assert_eq!(report["counts"]["chunksChecked"], 4 + 2 + 1);
    assert_eq!(
        report["counts"]["bytesChecked"],
        (a.len() + b.len() + c.len()) as u64
    );
    assert_eq!(report["counts"]["inlineBodiesChecked"], 1);

    // Damage: a flipped byte, a deleted chunk, an orphan and a wrong reference count.
    let corrupt = chunk_file_of(&storage, &a, 1);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&corrupt, bytes).unwrap();
    let missing = chunk_file_of(&storage, &b, 0);
    std::fs::remove_file(&missing).unwrap();
    let c_chunk = chunk_file_of(&storage, &c, 0);
    // Same bucket and fan-out directory, another id: a valid-looking chunk file.
    let fan_dir = c_chunk.parent().unwrap();
    let fan = fan_dir.file_name().unwrap().to_string_lossy();
    let orphan = fan_dir.join(format!("{fan}{}", "0".repeat(30)));
    std::fs::copy(&c_chunk, &orphan).unwrap();
    let engine = RedbEngine::open_existing(&config.metadata_path).unwrap();
    let c_id = chunk_id(&c_chunk);
    engine
        .write(&mut |kv| kv.put(Table::Chunks, &c_id.to_bytes(), &encode(&3u32)?))
        .unwrap();
    drop(engine);

    let check = fsck(&config, &[]).await;
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    let out = &check.stdout;
    for want in [
        format!("corrupt chunk {}", chunk_name(&corrupt)),
        format!("missing chunk {}", chunk_name(&missing)),
        "damaged object photos/2024/a.bin version null: 1 of 4 chunks".to_string(),
        format!(
            "damaged object photos/docs/b.bin version null: 1 of 2 chunks missing or corrupt ({})",
            chunk_name(&missing)
        ),
        format!("orphaned file {}", orphan.display()),
        format!(
            "reference count of chunk {}: recorded 3, actual 1",
            chunk_name(&c_chunk)
        ),
        "Run with --repair".to_string(),
        "result: damage remains".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    let report = fsck(&config, &["--json"]).await.json();
    let counts = &report["counts"];
    assert_eq!(counts["corruptChunks"], 1);
    assert_eq!(counts["missingChunks"], 1);
    assert_eq!(counts["orphanedFiles"], 1);
    assert_eq!(counts["refcountMismatches"], 1);
    assert_eq!(counts["damagedVersions"], 2);
    assert_eq!(report["damageRemains"], true);
    assert_eq!(
        problems_of_kind(&report, "corruptChunk")[0]["chunk"],
        chunk_name(&corrupt)
    );
    // A check changes nothing.
    assert!(orphan.exists() && corrupt.exists());

    let repair = fsck(&config, &["--repair"]).await;
    assert_eq!(repair.code, 1, "lost data remains:\n{}", repair.stdout);
    for want in [
        "moved to quarantine",
        ": removed",
        "cannot be repaired on a single node",
        "restore them from a replica",
    ] {
        assert!(
            repair.stdout.contains(want),
            "missing {want:?} in:\n{}",
            repair.stdout
        );
    }
    assert!(!orphan.exists(), "the orphan is removed");
    assert!(!corrupt.exists(), "the corrupt chunk is quarantined");
    let quarantined = std::fs::read_dir(storage.join(".quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 1);

    // What was repairable is clean; the damaged objects are still reported.
    let after = fsck(&config, &["--json"]).await;
    assert_eq!(after.code, 1);
    let report = after.json();
    let counts = &report["counts"];
    assert_eq!(counts["orphanedFiles"], 0);
    assert_eq!(counts["refcountMismatches"], 0);
    assert_eq!(counts["corruptChunks"], 0);
    assert_eq!(counts["missingChunks"], 2);
    assert_eq!(counts["damagedVersions"], 2);
    let mut damaged: Vec<(String, String)> = problems_of_kind(&report, "damagedVersion")
        .iter()
        .map(|p| {
            assert_eq!(p["versionId"], "null");
            (
                p["bucket"].as_str().unwrap().to_string(),
                p["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    damaged.sort();
    assert_eq!(
        damaged,
        [
            ("photos".to_string(), "2024/a.bin".to_string()),
            ("photos".to_string(), "docs/b.bin".to_string())
        ]
    );
    let in_quarantine = problems_of_kind(&report, "missingChunk")
        .into_iter()
        .find(|p| p["chunk"] == chunk_name(&corrupt))
        .expect("the quarantined chunk is reported missing");
    assert_eq!(in_quarantine["inQuarantine"], true);

    // The server serves what is intact and refuses what is lost.
    let server = TestServer::start_in(dir, config).await;
    assert_eq!(
        server.get_object("photos", "c.bin").await,
        (StatusCode::OK, c)
    );
    assert_eq!(
        server.get_object("photos", "small.txt").await,
        (StatusCode::OK, b"kept inline".to_vec())
    );
    let (status, _) = server.get_object("photos", "docs/b.bin").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_refuses_while_a_server_holds_the_data() {
    let server = TestServer::start().await;
    server
        .put_object("photos", "a.bin", &random_bytes(2 * CHUNK_SIZE, 1))
        .await;
    for extra in [&[][..], &["--repair"][..]] {
        let run = fsck(&server.config, extra).await;
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("a server seems to be running"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
    assert_eq!(
        server.get_object("photos", "a.bin").await,
        (StatusCode::OK, random_bytes(2 * CHUNK_SIZE, 1))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_usage_and_configuration_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let unknown = bucketdb(vec!["fsck".into(), "--no-such-flag".into()]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    let bad = fsck(&config, &["--chunk-size", "lots"]).await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("chunk_size"), "{}", bad.stderr);
    let absent = fsck(&config, &[]).await;
    assert_eq!(absent.code, 2);
    assert!(
        absent.stderr.contains("no metadata store"),
        "{}",
        absent.stderr
    );
    assert!(!config.metadata_path.exists(), "fsck creates no store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_lists_lost_data_first_and_bounds_its_lines() {
    let server = TestServer::start().await;
    let data = random_bytes(CHUNK_SIZE, 1);
    server.put_object("photos", "lost.bin", &data).await;
    let (_dir, config) = server.shutdown().await;
    let chunk = chunk_file_of(&config.storage_path, &data, 0);
    std::fs::remove_file(&chunk).unwrap();
    const ORPHANS: usize = 60;
    for n in 0..ORPHANS {
        let orphan = chunk.with_file_name(format!("{}{n:028}", &chunk_name(&chunk)[17..21]));
        std::fs::write(orphan, b"nobody's").unwrap();
    }

    let run = fsck(&config, &[]).await;
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| *l != "problems:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    // 60 orphans, the missing chunk and the object it belonged to; 50 lines shown.
    assert_eq!(lines.len(), 50 + 1, "{}", run.stdout);
    assert!(
        lines[0].contains("damaged object photos/lost.bin"),
        "{}",
        run.stdout
    );
    assert!(lines[1].contains("missing chunk"), "{}", run.stdout);
    assert_eq!(
        lines[50],
        "  ... and 12 more (--json lists up to 1000 of each kind)"
    );
    let report = fsck(&config, &["--json"]).await.json();
    assert_eq!(problems_of_kind(&report, "orphanedFile").len(), ORPHANS);
}
