//! The REST API under hostile or broken conditions: malicious keys and names, oversized
//! and truncated bodies, clients that disappear, damaged chunk files and a shutdown in the
//! middle of an upload. Requests `reqwest` would normalise or refuse go over raw TCP.

mod common;

use std::io::ErrorKind;

use common::{DEADLINE, MAX_OBJECT_SIZE, TestServer, error_code, metric_sum, paths_named};
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A name no file would have by accident.
fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bdb-{tag}-{}-{nanos:x}", std::process::id())
}

/// Assert that no file or directory named like `needle` exists where a path traversal
/// from the data directories could have put it.
fn assert_nothing_named(s: &TestServer, needle: &str) {
    let root = s.dir.path();
    let mut places = vec![root.to_path_buf()];
    if let Some(parent) = root.parent() {
        places.push(parent.to_path_buf());
    }
    if let Ok(cwd) = std::env::current_dir() {
        places.push(cwd);
    }
    for place in &places {
        // Walk the whole test directory; only look at the top level of shared places.
        let found: Vec<_> = if place == root {
            paths_named(place, needle)
        } else {
            std::fs::read_dir(place)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().contains(needle))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(found.is_empty(), "a request wrote {found:?}");
    }
}

async fn assert_bucket_empty(s: &TestServer, bucket: &str) {
    let resp = s.get(&format!("/objects/{bucket}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let page: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(page["objects"], serde_json::json!([]), "{page}");
    assert_eq!(page["prefixes"], serde_json::json!([]), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_traversal_absolute_nul_or_bad_utf8_are_rejected_and_write_nothing() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/safe").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let target = unique_name("escape");
    let targets = [
        format!("/objects/safe/a/%2E%2E/%2E%2E/{target}"),
        format!("/objects/safe/a/%2e%2e/%2e%2e/%2e%2e/{target}"),
        format!("/objects/safe/..%2F{target}"),
        format!("/objects/safe/%2E%2E%2F%2E%2E%2F{target}"),
        format!("/objects/safe/a/../../{target}"),
        format!("/objects/safe/./{target}"),
        format!("/objects/safe//{target}"),
        format!("/objects/safe/%2F{target}"),
        format!("/objects/safe/nul%00{target}"),
        format!("/objects/safe/{target}%0A"),
        format!("/objects/safe/bad%FF%FE{target}"),
        "/objects/safe/%2E%2E".to_string(),
    ];
    for path in &targets {
        let resp = s.raw("POST", path, &[], b"pwned").await;
        assert_eq!(resp.status, 400, "POST {path}: {resp:?}");
        let code = resp.error_code();
        assert!(
            code == "InvalidArgument" || code == "InvalidRequest",
            "POST {path}: {code}"
        );
        for method in ["GET", "DELETE"] {
            let resp = s.raw(method, path, &[], b"").await;
            assert_eq!(resp.status, 400, "{method} {path}: {resp:?}");
            resp.error_code();
        }
        let resp = s.raw("HEAD", path, &[], b"").await;
        assert_eq!(resp.status, 400, "HEAD {path}: {resp:?}");
        // Multipart and tags paths share the key rules.
        let mp = path.replacen("/objects/", "/multipart/", 1);
        let resp = s.raw("POST", &mp, &[], b"").await;
        assert_eq!(resp.status, 400, "POST {mp}: {resp:?}");
    }

    assert_bucket_empty(&s, "safe").await;
    assert!(s.chunk_files().is_empty(), "{:?}", s.chunk_files());
    assert_nothing_named(&s, &target);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_keys_and_invalid_bucket_names_are_rejected() {
    let s = TestServer::start().await;

    let long = "k".repeat(1025);
    let resp = s
        .post(&format!("/objects/names/{long}"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "KeyTooLongError");
    // Multi-byte characters count in bytes: 342 × 3 bytes = 1026 bytes.
    let long_utf8 = "%E2%82%AC".repeat(342);
    let resp = s
        .raw("POST", &format!("/objects/names/{long_utf8}"), &[], b"x")
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error_code(), "KeyTooLongError");
    // Exactly 1024 bytes is fine.
    let max = "k".repeat(1024);
    s.put_object("names", &max, b"x").await;
    let (status, body) = s.get_object("names", &max).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"x");

    for bad in ["Bad_Bucket", "ab", "UPPER", "-dash", "a..b", "192.168.1.1"] {
        let resp = s.raw("POST", &format!("/objects/{bad}/k"), &[], b"x").await;
        assert_eq!(resp.status, 400, "POST /objects/{bad}/k");
        assert_eq!(resp.error_code(), "InvalidBucketName", "{bad}");
        let resp = s.raw("PUT", &format!("/buckets/{bad}"), &[], b"").await;
        assert_eq!(resp.status, 400, "PUT /buckets/{bad}");
        assert_eq!(resp.error_code(), "InvalidBucketName", "{bad}");
    }
    let resp = s.get("/buckets").send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    let names: Vec<_> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["names"], "no invalid bucket was created");

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/limits").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Headers only: the body is never sent, so a response proves the server decided
    // from the declared length alone.
    let mut stream = s.connect().await;
    let head = format!(
        "POST /objects/limits/huge.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        s.basic_auth_header(),
        MAX_OBJECT_SIZE + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, common::read_response(&mut stream, false))
        .await
        .expect("the server answers without waiting for the body")
        .expect("a complete response");
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(resp.error_code(), "EntityTooLarge");
    drop(stream);

    let resp = s.get("/objects/limits/huge.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(s.chunk_files().is_empty());

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_refused_and_leaves_no_chunks() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/limits").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let stream = s.connect().await;
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST /objects/limits/chunked.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.addr,
        s.basic_auth_header()
    );
    // 9 MiB in 64 KiB chunks against an 8 MiB limit; the writer stops at the first error
    // (the server may close the connection once it has refused the body).
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let piece = common::random_bytes(64 * 1024, 99);
        for _ in 0..(9 * 16) {
            wr.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .await?;
            wr.write_all(&piece).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let resp = tokio::time::timeout(DEADLINE, common::read_response(&mut rd, false))
        .await
        .expect("the server answers in time");
    match resp {
        Ok(resp) => {
            assert_eq!(resp.status, 413, "{resp:?}");
            assert_eq!(resp.error_code(), "EntityTooLarge");
        }
        // The server may reset the connection while refusing the rest of the body.
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
            ),
            "unexpected failure: {e}"
        ),
    }
    let _ = tokio::time::timeout(DEADLINE, writer).await;
    drop(rd);

    let resp = s.get("/objects/limits/chunked.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchKey");
    assert_bucket_empty(&s, "limits").await;
    // Up to 8 MiB of chunks were written before the limit was hit; none may stay.
    s.wait_for_no_chunk_files().await;

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_shorter_than_content_length_is_incomplete_and_not_stored() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/short").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    for (key, declared, sent) in [
        ("tiny", 1000usize, 10usize),
        ("chunky", 300 * 1024, 150 * 1024),
    ] {
        let mut stream = s.connect().await;
        let head = format!(
            "POST /objects/short/{key} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {declared}\r\n\r\n",
            s.addr,
            s.basic_auth_header()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&common::random_bytes(sent, 5))
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let resp = tokio::time::timeout(DEADLINE, common::read_response(&mut stream, false))
            .await
            .expect("the server answers or closes in time");
        match resp {
            Ok(resp) => {
                assert_eq!(resp.status, 400, "{key}: {resp:?}");
                assert_eq!(resp.error_code(), "IncompleteBody");
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ),
                "{key}: unexpected failure: {e}"
            ),
        }

        let resp = s
            .get(&format!("/objects/short/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{key}");
        assert_eq!(error_code(resp).await, "NoSuchKey");
    }
    assert_bucket_empty(&s, "short").await;
    s.wait_for_no_chunk_files().await;

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_upload_leaves_no_object_and_no_chunks() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/dropped").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let mut stream = s.connect().await;
    let head = format!(
        "POST /objects/dropped/partial.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        s.basic_auth_header(),
        500 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&common::random_bytes(200 * 1024, 6))
        .await
        .unwrap();
    // Chunks of the partial body reach the disk while the request is in flight.
    let storage = s.storage_path().to_path_buf();
    common::wait_until("chunks of the partial upload are written", || {
        let storage = storage.clone();
        async move { common::chunk_files(&storage).len() >= 2 }
    })
    .await;
    drop(stream);

    s.wait_for_no_chunk_files().await;
    let resp = s.get("/objects/dropped/partial.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchKey");
    assert_bucket_empty(&s, "dropped").await;

    // The server is still healthy and serves new uploads.
    let data = common::random_bytes(200 * 1024, 7);
    s.put_object("dropped", "complete.bin", &data).await;
    let (status, body) = s.get_object("dropped", "complete.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == data);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_single_chunk_object_is_a_500_and_the_chunk_is_quarantined() {
    let s = TestServer::start().await;
    let data = common::random_bytes(10 * 1024, 8);
    s.put_object("corrupt", "one-chunk.bin", &data).await;
    let files = s.chunk_files();
    assert_eq!(
        files.len(),
        1,
        "a 10 KiB object above the inline threshold is one chunk"
    );
    let chunk = files[0].clone();
    let mut bytes = std::fs::read(&chunk).unwrap();
    assert_eq!(bytes, data);
    bytes[5000] ^= 0x40;
    std::fs::write(&chunk, &bytes).unwrap();

    let resp = s
        .get("/objects/corrupt/one-chunk.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.bytes().await.unwrap();
    assert_eq!(common::error_code_of(&body), "InternalError");
    assert!(
        !body.windows(64).any(|w| data.windows(64).any(|d| d == w)),
        "no object bytes in the error"
    );

    assert!(!chunk.exists(), "the damaged chunk left its place");
    let quarantined = s.quarantined_files();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(
        std::fs::read(&quarantined[0]).unwrap(),
        bytes,
        "kept for inspection"
    );
    assert!(s.chunk_files().is_empty());

    // Still an error (never wrong bytes) on the next read.
    let resp = s
        .get("/objects/corrupt/one-chunk.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(resp).await, "InternalError");

    let text = s.metrics().await;
    assert!(
        metric_sum(&text, "bucketdb_chunk_verify_failures_total", &[]) >= 1.0,
        "{text}"
    );

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_later_chunk_cuts_the_body_short_without_wrong_bytes() {
    let s = TestServer::start().await;
    let data = common::random_bytes(300 * 1024, 9);
    s.put_object("corrupt", "many-chunks.bin", &data).await;
    let chunk_size = common::CHUNK_SIZE;
    // The third chunk is the one holding bytes [128 KiB, 192 KiB).
    let third = &data[2 * chunk_size..3 * chunk_size];
    let files = s.chunk_files();
    assert_eq!(files.len(), 5);
    let victim = files
        .iter()
        .find(|f| std::fs::read(f).unwrap() == third)
        .expect("the third chunk's file")
        .clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let resp = s
        .get("/objects/corrupt/many-chunks.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the first chunk is fine");
    let mut received = Vec::new();
    let mut failed = false;
    let mut body = resp.bytes_stream();
    while let Some(item) = tokio::time::timeout(DEADLINE, body.next())
        .await
        .expect("the body ends or fails in time")
    {
        match item {
            Ok(b) => received.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "reading the body must fail, got {} bytes",
        received.len()
    );
    assert!(
        received.len() <= 2 * chunk_size,
        "bytes past the damaged chunk were sent: {}",
        received.len()
    );
    assert!(
        received == data[..received.len()],
        "the bytes received are a prefix of the object"
    );

    assert!(!victim.exists());
    assert_eq!(s.quarantined_files().len(), 1);
    let text = s.metrics().await;
    assert!(
        metric_sum(&text, "bucketdb_chunk_verify_failures_total", &[]) >= 1.0,
        "{text}"
    );

    // Ranges that avoid the damaged chunk still work.
    let resp = s
        .get("/objects/corrupt/many-chunks.bin")
        .header(reqwest::header::RANGE, "bytes=0-1000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..=1000]);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_upload_finish_and_a_restart_serves_it() {
    let mut s = TestServer::start().await;
    let data = common::random_bytes(300 * 1024, 12);
    let half = 150 * 1024;

    let mut stream = s.connect().await;
    let head = format!(
        "POST /objects/graceful/slow.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        s.basic_auth_header(),
        data.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..half]).await.unwrap();
    // The handler is running once chunks of the first half are on disk.
    let storage = s.storage_path().to_path_buf();
    common::wait_until("the first half of the upload is being stored", || {
        let storage = storage.clone();
        async move { common::chunk_files(&storage).len() >= 2 }
    })
    .await;

    let server = s.take_server();
    let shutdown = tokio::spawn(server.shutdown());
    // Shutdown has begun once the listener stops accepting connections.
    let addr = s.addr;
    common::wait_until("the server stops accepting connections", || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight upload"
    );

    stream.write_all(&data[half..]).await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, common::read_response(&mut stream, false))
        .await
        .expect("the upload finishes in time")
        .expect("a complete response");
    assert_eq!(resp.status, 201, "{resp:?}");
    let j: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(j["size"], data.len() as u64);
    assert_eq!(j["etag"], common::md5_hex(&data));
    drop(stream);

    tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown returns in time")
        .expect("shutdown task")
        .expect("shutdown succeeds");

    let (dir, config) = s.shutdown().await;
    let s = TestServer::start_in(dir, config).await;
    let (status, body) = s.get_object("graceful", "slow.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body == data,
        "the restarted node serves the object byte-identical"
    );

    s.shutdown().await;
}
