//! What the S3 port refuses before s3s sees it: Signature Version 2 and presigned URLs
//! that would live longer than seven days.

mod common;

use common::{ACCESS_KEY, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_v2_is_refused_with_an_s3_error() {
    let s = TestServer::start().await;
    let base = format!("http://{}", s.s3_addr);
    let resp = s
        .client
        .get(format!("{base}/"))
        .header("Authorization", format!("AWS {ACCESS_KEY}:c2lnbmF0dXJl"))
        .header("Date", "Sat, 28 Nov 2026 05:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().contains_key("x-amz-request-id"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(body.contains("Signature Version 2"), "{body}");

    let resp = s
        .client
        .get(format!(
            "{base}/bucket/key?AWSAccessKeyId={ACCESS_KEY}&Expires=1999999999&Signature=abc"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_longer_than_seven_days_are_refused() {
    let s = TestServer::start().await;
    let url = format!(
        "http://{}/bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ACCESS_KEY}%2F20261128%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261128T050000Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
        s.s3_addr
    );
    let resp = s.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("<Code>AuthorizationQueryParametersError</Code>"),
        "{body}"
    );
    s.shutdown().await;
}
