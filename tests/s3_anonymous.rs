//! Unsigned S3 requests on a public-read bucket: virtual-host style (with `s3_domain`)
//! and path style address the same object, and conditional reads answer 304 with the
//! validators.

use bucketdb::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_and_path_style_address_the_same_object() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        storage_path: dir.path().join("data"),
        metadata_path: dir.path().join("meta"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        s3_addr: "127.0.0.1:0".parse().unwrap(),
        s3_domain: Some("s3.example.test".into()),
        access_key: Some("AKVHOST".into()),
        secret_key: Some("vhost-secret".into()),
        ..Config::default()
    };
    let server = bucketdb::server::start(config).await.unwrap();
    let rest = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    // Write through REST and open the bucket for anonymous reads, so the S3 requests
    // below need no signature.
    let resp = client
        .post(format!("{rest}/objects/site/index.html"))
        .basic_auth("AKVHOST", Some("vhost-secret"))
        .body("hello from a virtual host")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = client
        .put(format!("{rest}/acl/site"))
        .basic_auth("AKVHOST", Some("vhost-secret"))
        .body(r#"{"publicRead": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let s3 = format!("http://{}", server.s3_addr);
    let vhost = client
        .get(format!("{s3}/index.html"))
        .header("Host", "site.s3.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(vhost.status(), 200);
    assert_eq!(vhost.text().await.unwrap(), "hello from a virtual host");
    let path = client
        .get(format!("{s3}/site/index.html"))
        .header("Host", "s3.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(path.status(), 200);
    let etag = path.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(path.text().await.unwrap(), "hello from a virtual host");
    let not_modified = client
        .get(format!("{s3}/site/index.html"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    assert!(not_modified.headers().contains_key("last-modified"));
    server.shutdown().await.unwrap();
}
