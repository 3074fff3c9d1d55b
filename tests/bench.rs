//! `bucketdb bench` as users run it: the real binary against a real server's S3 port.
//! Nothing here asserts on speed: only that every request is accounted for, that the
//! figures are consistent and that failures are reported and fail the run.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ACCESS_KEY, SECRET_KEY, TestServer};
use serde_json::Value;

/// Longest a bench run of these tests may take before it counts as hung and is killed.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Environment variables the bench reads credentials from: cleared so that the
/// developer's own settings cannot change a test.
const CREDENTIAL_VARIABLES: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "BUCKETDB_ACCESS_KEY",
    "BUCKETDB_SECRET_KEY",
];

/// Run `bucketdb bench` with `args` and `env`, off the test's runtime threads (the
/// server under test runs on them), killing it if it outlives [`RUN_DEADLINE`].
async fn bench(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bucketdb"));
    command
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in CREDENTIAL_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let child = command.spawn().expect("bucketdb bench starts");
    let pid = child.id() as libc::pid_t;
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(RUN_DEADLINE, waiting).await {
        Ok(output) => output.expect("join").expect("bench output"),
        Err(_) => {
            // SAFETY: `pid` is our own child, not yet reaped (its wait is still running).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("bucketdb bench {args:?} still running after {RUN_DEADLINE:?}");
        }
    }
}

fn endpoint(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// `bench` with the test keys against `s`'s S3 port, plus `args`.
async fn bench_against(s: &TestServer, args: &[&str]) -> Output {
    let endpoint = endpoint(s.s3_addr);
    let mut all = vec![
        "--endpoint",
        &endpoint,
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
    ];
    all.extend_from_slice(args);
    bench(&all, &[]).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON report on stdout.
fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

/// The row of `operation` in `phase`.
fn row<'a>(report: &'a Value, phase: &str, operation: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["phase"] == phase && r["operation"] == operation)
        .unwrap_or_else(|| panic!("no {phase} {operation} row in {report}"))
}

/// A row whose every request succeeded, with consistent figures.
fn assert_clean_row(row: &Value, ops: u64, object_size: u64, concurrency: u64) {
    assert_eq!(row["ops"], ops, "{row}");
    assert_eq!(row["errors"], 0, "{row}");
    assert_eq!(row["object_size"], object_size, "{row}");
    assert_eq!(row["concurrency"], concurrency, "{row}");
    assert_eq!(row["bytes"], ops * object_size, "{row}");
    assert!(row["ops_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    assert!(
        row["throughput_mb_per_sec"].as_f64().unwrap() > 0.0,
        "{row}"
    );
    let latency = &row["latency_ms"];
    let p50 = latency["p50"].as_f64().expect("p50");
    let p99 = latency["p99"].as_f64().expect("p99");
    let max = latency["max"].as_f64().expect("max");
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{row}");
    assert_eq!(
        row["error_kinds"].as_array().map(Vec::len),
        Some(0),
        "{row}"
    );
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "bench failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_accounts_for_every_request_and_writes_the_objects() {
    let s = TestServer::start().await;
    let output = bench_against(
        &s,
        &[
            "--bucket",
            "bench-test",
            "--count",
            "200",
            "--concurrency",
            "8",
            "--size",
            "4KiB",
            "--json",
        ],
    )
    .await;
    assert_success(&output);
    let report = report(&output);
    assert_eq!(report["bucket"], "bench-test");
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(2), "{report}");
    assert_clean_row(row(&report, "put", "PUT"), 200, 4096, 8);
    assert_clean_row(row(&report, "get", "GET"), 200, 4096, 8);

    // The PUT phase wrote keys 0..200 (the key space is larger), each of 4 KiB.
    let resp = s
        .get("/objects/bench-test?limit=1000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listing: Value = resp.json().await.unwrap();
    let objects = listing["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 200, "{listing}");
    for (i, o) in objects.iter().enumerate() {
        assert_eq!(o["key"], format!("bench/{i:08}"));
        assert_eq!(o["size"], 4096);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_output_is_the_benchmark_table() {
    let s = TestServer::start().await;
    let output = bench_against(&s, &["--count", "20", "--concurrency", "4"]).await;
    assert_success(&output);
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for column in [
        "operation",
        "object size",
        "concurrency",
        "ops/s",
        "throughput",
        "p50",
        "p99",
        "errors",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[2].starts_with("| PUT ") && lines[2].contains(" 4 KiB |"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("| GET ") && lines[3].ends_with(" 0 |"),
        "{table}"
    );
    // Created under its default name, since it did not exist.
    assert!(text(&output.stderr).contains("created bucket bucketdb-bench"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_phase_prepares_its_keys_and_splits_by_the_read_ratio() {
    let s = TestServer::start().await;
    // 300 KiB objects span several chunks, so GET bodies arrive in many frames.
    let output = bench_against(
        &s,
        &[
            "--op",
            "mixed",
            "--read-ratio",
            "0.5",
            "--count",
            "40",
            "--keys",
            "10",
            "--size",
            "300KiB",
            "--concurrency",
            "4",
            "--json",
        ],
    )
    .await;
    assert_success(&output);
    let report = report(&output);
    assert_clean_row(row(&report, "mixed", "GET"), 20, 300 * 1024, 4);
    assert_clean_row(row(&report, "mixed", "PUT"), 20, 300 * 1024, 4);
    assert!(text(&output.stderr).contains("preparing 10 objects"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_counted_named_and_fail_the_run_unless_allowed() {
    let s = TestServer::start().await;
    // --no-prepare reads keys an earlier run would have written: there are none.
    let args = [
        "--op",
        "get",
        "--no-prepare",
        "--keys",
        "3",
        "--count",
        "6",
        "--concurrency",
        "2",
    ];
    let output = bench_against(&s, &[&args[..], &["--json"]].concat()).await;
    assert!(!output.status.success(), "{}", text(&output.stdout));
    let report = report(&output);
    let get = row(&report, "get", "GET");
    assert_eq!(
        (get["ops"].as_u64(), get["errors"].as_u64()),
        (Some(0), Some(6))
    );
    assert_eq!(get["latency_ms"]["p50"], Value::Null);
    assert_eq!(get["error_kinds"][0]["error"], "404 Not Found NoSuchKey");
    assert_eq!(get["error_kinds"][0]["count"], 6);
    assert!(text(&output.stderr).contains("6 requests failed"));

    let output = bench_against(&s, &args).await;
    assert!(!output.status.success());
    let table = text(&output.stdout);
    assert!(
        table.contains("GET errors: 6 × 404 Not Found NoSuchKey"),
        "{table}"
    );

    let output = bench_against(&s, &[&args[..], &["--allow-errors"]].concat()).await;
    assert_success(&output);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_stops_the_run_with_the_s3_error() {
    let s = TestServer::start().await;
    // Keys from the AWS variables, as the AWS CLI reads them.
    let output = bench(
        &["--endpoint", &endpoint(s.s3_addr), "--count", "10"],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    )
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("403 Forbidden SignatureDoesNotMatch"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));

    // The same keys through BucketDB's own variables work.
    let output = bench(
        &["--endpoint", &endpoint(s.s3_addr), "--count", "10"],
        &[
            ("BUCKETDB_ACCESS_KEY", ACCESS_KEY),
            ("BUCKETDB_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await;
    assert_success(&output);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_clear_error_not_a_hang() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = bench(
        &[
            "--endpoint",
            &endpoint(addr),
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
            "--count",
            "10",
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&endpoint(addr)), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_and_bad_flags_are_refused_before_any_request() {
    let output = bench(&["--count", "1"], &[]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--access-key"), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");

    let output = bench(&["--size", "2GiB"], &[]).await;
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--size"));
}
