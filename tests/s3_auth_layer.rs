//! What the S3 port refuses before s3s sees it: Signature Version 2, presigned URLs
//! that would live longer than seven days, and signatures for a region it does not serve.

mod common;
#[path = "common/s3.rs"]
mod s3;

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

/// With no `--s3-region`, any region name is accepted; one that is not a region name
/// (s3cmd's default `US`) is answered as AWS does, naming the region to use instead, so
/// clients can retry there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_region_is_accepted_and_a_malformed_one_names_the_right_one() {
    let s = TestServer::start().await;
    for region in ["us-east-1", "eu-central-1", "garage", "auto"] {
        s3::client_in_region(s.s3_addr, region)
            .list_buckets()
            .send()
            .await
            .unwrap_or_else(|e| panic!("signed for {region}: {e:?}"));
    }
    let f = s3::failure(
        s3::client_in_region(s.s3_addr, "US")
            .list_buckets()
            .send()
            .await,
    );
    assert_eq!(
        (f.status, f.code.as_deref()),
        (400, Some("AuthorizationHeaderMalformed")),
        "{f:?}"
    );
    let raw = s
        .client
        .get(format!("http://{}/", s.s3_addr))
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261128/US/s3/aws4_request, \
                 SignedHeaders=host, Signature=00"
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body = raw.text().await.unwrap();
    assert!(body.contains("<Region>us-east-1</Region>"), "{body}");
    s.shutdown().await;
}

/// With `--s3-region`, requests signed for any other region are refused with the
/// configured one named, and GetBucketLocation reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_region_is_the_only_one_accepted() {
    let s = TestServer::start_with(|c| c.s3_region = Some("eu-west-3".into())).await;
    let wrong = s3::failure(
        s3::client_in_region(s.s3_addr, "us-east-1")
            .create_bucket()
            .bucket("paris")
            .send()
            .await,
    );
    assert_eq!(
        (wrong.status, wrong.code.as_deref()),
        (400, Some("AuthorizationHeaderMalformed")),
        "{wrong:?}"
    );
    let c = s3::client_in_region(s.s3_addr, "eu-west-3");
    c.create_bucket().bucket("paris").send().await.unwrap();
    let loc = c
        .get_bucket_location()
        .bucket("paris")
        .send()
        .await
        .unwrap();
    assert_eq!(
        loc.location_constraint().map(|l| l.as_str()),
        Some("eu-west-3")
    );
    // A presigned URL for another region is refused the same way.
    let presigned = s3::client_in_region(s.s3_addr, "us-west-2")
        .get_object()
        .bucket("paris")
        .key("k")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                60,
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    let resp = s.client.get(presigned.uri()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Region>eu-west-3</Region>"), "{body}");
    s.shutdown().await;
}
