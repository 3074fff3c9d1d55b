//! A client that never finishes its request head must not hold a shutdown open (this
//! test takes the header-read timeout, 30 s, by design).

mod common;

use std::time::Duration;

use common::TestServer;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_does_not_block_shutdown() {
    let mut s = TestServer::start().await;
    let mut slow_rest = s.connect().await;
    slow_rest
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut slow_s3 = tokio::net::TcpStream::connect(s.s3_addr).await.unwrap();
    slow_s3.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // Such a connection is cut when its header-read timeout runs out, well inside the
    // drain cap, so the stop ends instead of waiting for the client forever.
    let limit = bucketdb_api::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let stopped = tokio::time::timeout(limit, s.take_server().shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "shutdown did not finish: {stopped:?}"
    );
    drop((slow_rest, slow_s3));
}
