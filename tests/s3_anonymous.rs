//! Unsigned S3 requests on a public-read bucket: virtual-host style (with `s3_domain`)
//! and path style address the same object, and conditional reads answer 304 with the
//! validators.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_and_path_style_address_the_same_object() {
    let s = TestServer::start_with(|c| c.s3_domain = Some("s3.example.test".into())).await;
    // Write through REST and open the bucket for anonymous reads, so the S3 requests
    // below need no signature.
    s.put_object("site", "index.html", b"hello from a virtual host")
        .await;
    let resp = s
        .put("/acl/site")
        .json(&json!({"publicRead": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let s3 = format!("http://{}", s.s3_addr);
    let vhost = s
        .client
        .get(format!("{s3}/index.html"))
        .header("Host", "site.s3.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(vhost.status(), 200);
    assert_eq!(vhost.text().await.unwrap(), "hello from a virtual host");
    let path = s
        .client
        .get(format!("{s3}/site/index.html"))
        .header("Host", "s3.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(path.status(), 200);
    let etag = path.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(path.text().await.unwrap(), "hello from a virtual host");
    let not_modified = s
        .client
        .get(format!("{s3}/site/index.html"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    assert!(not_modified.headers().contains_key("last-modified"));
    s.shutdown().await;
}
