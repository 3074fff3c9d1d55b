//! A client that never finishes its request head must not hold a shutdown open (this
//! test takes the header-read timeout, 30 s, by design).

use std::time::Duration;

use bucketdb::Config;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_does_not_block_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        storage_path: dir.path().join("data"),
        metadata_path: dir.path().join("meta"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        s3_addr: "127.0.0.1:0".parse().unwrap(),
        access_key: Some("AKSHUT".into()),
        secret_key: Some("shutdown-secret".into()),
        ..Config::default()
    };
    let server = bucketdb::server::start(config).await.unwrap();
    let mut slow_rest = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    slow_rest
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut slow_s3 = tokio::net::TcpStream::connect(server.s3_addr)
        .await
        .unwrap();
    slow_s3.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // Such a connection is cut when its header-read timeout runs out, well inside the
    // drain cap, so the stop ends instead of waiting for the client forever.
    let limit = bucketdb_api::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let stopped = tokio::time::timeout(limit, server.shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "shutdown did not finish: {stopped:?}"
    );
    drop((slow_rest, slow_s3));
}
