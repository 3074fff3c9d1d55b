//! What the S3 port refuses before s3s sees it: Signature Version 2 and presigned URLs
//! that would live longer than seven days.

use bucketdb::Config;

async fn start() -> (tempfile::TempDir, bucketdb::server::RunningServer) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        storage_path: dir.path().join("data"),
        metadata_path: dir.path().join("meta"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        s3_addr: "127.0.0.1:0".parse().unwrap(),
        access_key: Some("AKLAYER".into()),
        secret_key: Some("layer-secret".into()),
        ..Config::default()
    };
    let server = bucketdb::server::start(config).await.unwrap();
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_v2_is_refused_with_an_s3_error() {
    let (_dir, server) = start().await;
    let base = format!("http://{}", server.s3_addr);
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{base}/"))
        .header("Authorization", "AWS AKLAYER:c2lnbmF0dXJl")
        .header("Date", "Sat, 28 Nov 2026 05:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().contains_key("x-amz-request-id"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(body.contains("Signature Version 2"), "{body}");

    let resp = client
        .get(format!(
            "{base}/bucket/key?AWSAccessKeyId=AKLAYER&Expires=1999999999&Signature=abc"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_longer_than_seven_days_are_refused() {
    let (_dir, server) = start().await;
    let base = format!("http://{}", server.s3_addr);
    let url = format!(
        "{base}/bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKLAYER%2F20261128%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261128T050000Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=00"
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("<Code>AuthorizationQueryParametersError</Code>"),
        "{body}"
    );
    server.shutdown().await.unwrap();
}
