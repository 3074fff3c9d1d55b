//! S3 API integration tests: the official Rust SDK (aws-sdk-s3) against a real server on
//! an ephemeral loopback port, one server and temp directory per test. Every supported
//! operation is exercised, including its S3 error cases.

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketCannedAcl, BucketLifecycleConfiguration,
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Delete, EncodingType,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, MetadataDirective,
    NoncurrentVersionExpiration, ObjectIdentifier, Permission, Tag, Tagging,
    VersioningConfiguration,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{ACCESS_KEY, SECRET_KEY, TestServer, md5_hex, random_bytes, sha256_hex};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use s3::{Proxy, assert_fails, body, client_with_keys, enable_versioning, failure, quoted};

const MIB: usize = 1024 * 1024;

async fn create_bucket(c: &Client, bucket: &str) {
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
}

/// PutObject with an in-memory body; returns the ETag.
async fn put(c: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"))
        .e_tag()
        .expect("PutObject returns an ETag")
        .to_string()
}

async fn get(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"));
    body(out).await
}

/// Every key of a ListObjectsV2 listing, following continuation tokens.
async fn all_keys_v2(c: &Client, bucket: &str, prefix: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket(bucket)
            .set_prefix(prefix.map(str::to_string))
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list");
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return keys,
        }
    }
}

fn md5_b64(data: &[u8]) -> String {
    STANDARD.encode(Md5::digest(data))
}

// ---------------------------------------------------------------- buckets

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_create_list_head_delete() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "zeta").await;
    create_bucket(&c, "alpha").await;

    let out = c.list_buckets().send().await.unwrap();
    let names: Vec<_> = out.buckets().iter().map(|b| b.name().unwrap()).collect();
    assert_eq!(names, ["alpha", "zeta"], "buckets listed in name order");
    assert!(out.buckets().iter().all(|b| b.creation_date().is_some()));
    assert!(
        out.owner().and_then(|o| o.id()).is_some(),
        "owner is listed"
    );

    c.head_bucket().bucket("alpha").send().await.unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();

    let f = failure(c.head_bucket().bucket("alpha").send().await);
    assert_eq!(f.status, 404, "HEAD of a deleted bucket: {f:?}");
    let out = c.list_buckets().send().await.unwrap();
    let names: Vec<_> = out.buckets().iter().map(|b| b.name().unwrap()).collect();
    assert_eq!(names, ["zeta"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_errors_already_owned_no_such_bucket_not_empty() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "mine").await;
    assert_fails(
        c.create_bucket().bucket("mine").send().await,
        409,
        "BucketAlreadyOwnedByYou",
    );

    // HEAD carries no body, so only the status tells.
    let f = failure(c.head_bucket().bucket("missing").send().await);
    assert_eq!(f.status, 404, "{f:?}");
    assert_fails(
        c.get_object().bucket("missing").key("k").send().await,
        404,
        "NoSuchBucket",
    );
    assert_fails(
        c.list_objects_v2().bucket("missing").send().await,
        404,
        "NoSuchBucket",
    );
    assert_fails(
        c.put_object()
            .bucket("missing")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    assert_fails(
        c.delete_bucket().bucket("missing").send().await,
        404,
        "NoSuchBucket",
    );

    put(&c, "mine", "k", b"data").await;
    assert_fails(
        c.delete_bucket().bucket("mine").send().await,
        409,
        "BucketNotEmpty",
    );
    c.head_bucket().bucket("mine").send().await.unwrap();
    c.delete_object()
        .bucket("mine")
        .key("k")
        .send()
        .await
        .unwrap();
    c.delete_bucket().bucket("mine").send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_location_and_versioning() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "ver").await;

    let loc = c.get_bucket_location().bucket("ver").send().await.unwrap();
    let constraint = loc.location_constraint().map(|l| l.as_str()).unwrap_or("");
    assert_eq!(constraint, "", "us-east-1 is the empty LocationConstraint");
    assert_fails(
        c.get_bucket_location().bucket("nope").send().await,
        404,
        "NoSuchBucket",
    );

    let v = c
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), None, "a new bucket was never versioned");

    enable_versioning(&c, "ver").await;
    let v = c
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));

    c.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v = c
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Suspended));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_lifecycle_round_trip_and_delete() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "lcy").await;
    assert_fails(
        c.get_bucket_lifecycle_configuration()
            .bucket("lcy")
            .send()
            .await,
        404,
        "NoSuchLifecycleConfiguration",
    );

    let logs = LifecycleRule::builder()
        .id("expire-logs")
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(30).build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(7)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(3)
                .build(),
        )
        .build()
        .unwrap();
    let tmp = LifecycleRule::builder()
        .id("tmp-off")
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .status(ExpirationStatus::Disabled)
        .expiration(LifecycleExpiration::builder().days(1).build())
        .build()
        .unwrap();
    c.put_bucket_lifecycle_configuration()
        .bucket("lcy")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(logs)
                .rules(tmp)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put lifecycle");

    let out = c
        .get_bucket_lifecycle_configuration()
        .bucket("lcy")
        .send()
        .await
        .expect("get lifecycle");
    let rules = out.rules();
    assert_eq!(rules.len(), 2, "{rules:?}");
    let r = &rules[0];
    assert_eq!(r.id(), Some("expire-logs"));
    assert_eq!(r.status(), &ExpirationStatus::Enabled);
    assert_eq!(r.filter().and_then(|f| f.prefix()), Some("logs/"));
    assert_eq!(r.expiration().and_then(|e| e.days()), Some(30));
    assert_eq!(
        r.noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(7)
    );
    assert_eq!(
        r.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(3)
    );
    let r = &rules[1];
    assert_eq!(r.id(), Some("tmp-off"));
    assert_eq!(r.status(), &ExpirationStatus::Disabled);
    assert_eq!(r.filter().and_then(|f| f.prefix()), Some("tmp/"));
    assert_eq!(r.expiration().and_then(|e| e.days()), Some(1));
    assert!(r.noncurrent_version_expiration().is_none());
    assert!(r.abort_incomplete_multipart_upload().is_none());

    c.delete_bucket_lifecycle()
        .bucket("lcy")
        .send()
        .await
        .expect("delete lifecycle");
    assert_fails(
        c.get_bucket_lifecycle_configuration()
            .bucket("lcy")
            .send()
            .await,
        404,
        "NoSuchLifecycleConfiguration",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_lifecycle_rejects_non_positive_days() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "lcy").await;
    let rule = LifecycleRule::builder()
        .id("zero")
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(0).build())
        .build()
        .unwrap();
    assert_fails(
        c.put_bucket_lifecycle_configuration()
            .bucket("lcy")
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(rule)
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    assert_fails(
        c.get_bucket_lifecycle_configuration()
            .bucket("lcy")
            .send()
            .await,
        404,
        "NoSuchLifecycleConfiguration",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_tagging_put_get_delete() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "tagged").await;
    assert_fails(
        c.get_bucket_tagging().bucket("tagged").send().await,
        404,
        "NoSuchTagSet",
    );
    c.put_bucket_tagging()
        .bucket("tagged")
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("cost-center")
                        .value("42")
                        .build()
                        .unwrap(),
                )
                .tag_set(Tag::builder().key("env").value("test").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put bucket tagging");
    let out = c
        .get_bucket_tagging()
        .bucket("tagged")
        .send()
        .await
        .unwrap();
    let mut got: Vec<_> = out
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    got.sort();
    assert_eq!(got, ["cost-center=42", "env=test"]);

    c.delete_bucket_tagging()
        .bucket("tagged")
        .send()
        .await
        .expect("delete bucket tagging");
    assert_fails(
        c.get_bucket_tagging().bucket("tagged").send().await,
        404,
        "NoSuchTagSet",
    );
    assert_fails(
        c.get_bucket_tagging().bucket("absent").send().await,
        404,
        "NoSuchBucket",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_public_read_acl_allows_anonymous_reads_only() {
    let (s, c) = s3::start().await;
    create_bucket(&c, "site").await;
    put(&c, "site", "index.html", b"<h1>hello</h1>").await;
    let anon_get = |path: &str| http().get(format!("http://{}{path}", s.s3_addr)).send();

    assert_eq!(
        anon_get("/site/index.html").await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "private by default"
    );
    let acl = c.get_bucket_acl().bucket("site").send().await.unwrap();
    assert_eq!(acl.grants().len(), 1, "only the owner: {:?}", acl.grants());

    c.put_bucket_acl()
        .bucket("site")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .expect("public-read");
    let acl = c.get_bucket_acl().bucket("site").send().await.unwrap();
    let public = acl.grants().iter().any(|g| {
        g.permission() == Some(&Permission::Read)
            && g.grantee().and_then(|g| g.uri())
                == Some("http://acs.amazonaws.com/groups/global/AllUsers")
    });
    assert!(public, "AllUsers may read: {:?}", acl.grants());

    let resp = anon_get("/site/index.html").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"<h1>hello</h1>");
    let resp = anon_get("/site?list-type=2").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("<Key>index.html</Key>"));
    let resp = http()
        .head(format!("http://{}/site/index.html", s.s3_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Still no anonymous writes, deletes or bucket listing.
    let resp = http()
        .put(format!("http://{}/site/evil.html", s.s3_addr))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http()
        .delete(format!("http://{}/site/index.html", s.s3_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(anon_get("/").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&c, "site", "index.html").await, b"<h1>hello</h1>");
    let f = failure(c.head_object().bucket("site").key("evil.html").send().await);
    assert_eq!(f.status, 404);

    // Back to private.
    c.put_bucket_acl()
        .bucket("site")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    assert_eq!(
        anon_get("/site/index.html").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_fails(
        c.put_bucket_acl()
            .bucket("site")
            .acl(BucketCannedAcl::AuthenticatedRead)
            .send()
            .await,
        501,
        "NotImplemented",
    );
}

// ---------------------------------------------------------------- objects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_put_metadata_content_type_and_tagging_round_trip() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let data = b"{\"hello\": \"s3\"}".to_vec();
    let put = c
        .put_object()
        .bucket("bkt")
        .key("docs/hello.json")
        .body(ByteStream::from(data.clone()))
        .content_type("application/json")
        .metadata("color", "blue")
        .metadata("owner-name", "ada lovelace")
        .tagging("project=apollo&stage=two%20words")
        .send()
        .await
        .unwrap();
    let etag = quoted(&md5_hex(&data));
    assert_eq!(put.e_tag(), Some(etag.as_str()));
    assert_eq!(put.version_id(), None, "unversioned bucket: no version id");

    let want_meta: HashMap<String, String> = [
        ("color".to_string(), "blue".to_string()),
        ("owner-name".to_string(), "ada lovelace".to_string()),
    ]
    .into();

    let out = c
        .get_object()
        .bucket("bkt")
        .key("docs/hello.json")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), Some("application/json"));
    assert_eq!(out.content_length(), Some(data.len() as i64));
    assert_eq!(out.e_tag(), Some(etag.as_str()));
    assert_eq!(out.metadata(), Some(&want_meta));
    assert_eq!(out.tag_count(), Some(2));
    assert_eq!(out.accept_ranges(), Some("bytes"));
    assert!(out.last_modified().is_some());
    assert_eq!(body(out).await, data);

    let head = c
        .head_object()
        .bucket("bkt")
        .key("docs/hello.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(head.metadata(), Some(&want_meta));

    let tags = c
        .get_object_tagging()
        .bucket("bkt")
        .key("docs/hello.json")
        .send()
        .await
        .unwrap();
    let mut got: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("project".to_string(), "apollo".to_string()),
            ("stage".to_string(), "two words".to_string())
        ]
    );
}

/// Cache-Control, Content-Disposition, Content-Encoding, Content-Language and Expires
/// given on upload come back on GET and HEAD (a `response-*` override wins on GET), and
/// follow the object through copies and multipart uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_standard_headers_are_stored_and_returned() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let expires = DateTime::from_secs(1_900_000_000);
    c.put_object()
        .bucket("bkt")
        .key("site.js.gz")
        .cache_control("public, max-age=300")
        .content_disposition("attachment; filename=\"site.js.gz\"")
        .content_encoding("gzip")
        .content_language("en-GB")
        .expires(expires)
        .body(ByteStream::from_static(b"not really gzip"))
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("bkt")
        .key("site.js.gz")
        .send()
        .await
        .unwrap();
    assert_eq!(head.cache_control(), Some("public, max-age=300"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"site.js.gz\"")
    );
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(head.content_language(), Some("en-GB"));
    #[allow(deprecated)]
    let head_expires = head.expires();
    assert_eq!(head_expires, Some(&expires));

    let get = c
        .get_object()
        .bucket("bkt")
        .key("site.js.gz")
        .response_cache_control("no-store")
        .send()
        .await
        .unwrap();
    assert_eq!(get.cache_control(), Some("no-store"));
    assert_eq!(get.content_encoding(), Some("gzip"));
    assert_eq!(get.content_language(), Some("en-GB"));

    // A COPY-directive copy keeps them; a REPLACE copy takes only what it is given.
    c.copy_object()
        .bucket("bkt")
        .key("kept")
        .copy_source("bkt/site.js.gz")
        .send()
        .await
        .unwrap();
    let kept = c
        .head_object()
        .bucket("bkt")
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.content_encoding(), Some("gzip"));
    assert_eq!(kept.cache_control(), Some("public, max-age=300"));
    c.copy_object()
        .bucket("bkt")
        .key("replaced")
        .copy_source("bkt/site.js.gz")
        .metadata_directive(MetadataDirective::Replace)
        .cache_control("no-cache")
        .send()
        .await
        .unwrap();
    let replaced = c
        .head_object()
        .bucket("bkt")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.cache_control(), Some("no-cache"));
    assert_eq!(replaced.content_encoding(), None);

    // Multipart: given on create, present on the completed object.
    let id = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .content_disposition("inline")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let etag = upload_part(&c, "bkt", "mp", &id, 1, b"part").await;
    c.complete_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &etag)]))
        .send()
        .await
        .unwrap();
    let mp = c
        .head_object()
        .bucket("bkt")
        .key("mp")
        .send()
        .await
        .unwrap();
    assert_eq!(mp.content_disposition(), Some("inline"));

    // A header value that cannot be sent back is refused.
    let f = failure(
        c.put_object()
            .bucket("bkt")
            .key("bad")
            .cache_control("x".repeat(3000))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
    );
    assert_eq!(
        (f.status, f.code.as_deref()),
        (400, Some("InvalidArgument")),
        "{f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_default_content_type_and_empty_object() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let etag = put(&c, "bkt", "empty", b"").await;
    assert_eq!(etag, quoted(&md5_hex(b"")));
    let out = c
        .get_object()
        .bucket("bkt")
        .key("empty")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_length(), Some(0));
    assert_eq!(out.content_type(), Some("application/octet-stream"));
    assert!(out.metadata().is_none_or(|m| m.is_empty()));
    assert!(body(out).await.is_empty());
}

/// The SDK's default checksums: in-memory bodies get an `x-amz-checksum-crc32` header,
/// streamed bodies (a file) go as `aws-chunked` with the CRC32 in a trailer. Both store
/// exactly the bytes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_upload_with_sdk_default_checksums() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;

    let small = random_bytes(200 * 1024, 7);
    let out = c
        .put_object()
        .bucket("bkt")
        .key("in-memory")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("in-memory upload with a checksum");
    assert_eq!(out.e_tag(), Some(quoted(&md5_hex(&small)).as_str()));
    assert_eq!(get(&c, "bkt", "in-memory").await, small);

    // A streamed body of unknown-at-signing-time content: aws-chunked + CRC32 trailer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.bin");
    let data = random_bytes(3 * MIB + 12_345, 8);
    std::fs::write(&path, &data).unwrap();
    let out = c
        .put_object()
        .bucket("bkt")
        .key("streamed")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .expect("streamed upload with a trailing checksum");
    assert_eq!(out.e_tag(), Some(quoted(&md5_hex(&data)).as_str()));
    assert_eq!(
        sha256_hex(&get(&c, "bkt", "streamed").await),
        sha256_hex(&data)
    );

    // Explicitly chosen algorithms work too.
    for (key, algo) in [
        ("sha256", aws_sdk_s3::types::ChecksumAlgorithm::Sha256),
        ("crc32c", aws_sdk_s3::types::ChecksumAlgorithm::Crc32C),
        ("sha1", aws_sdk_s3::types::ChecksumAlgorithm::Sha1),
    ] {
        c.put_object()
            .bucket("bkt")
            .key(key)
            .checksum_algorithm(algo)
            .body(ByteStream::from_path(&path).await.unwrap())
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload with {key} checksum: {e:?}"));
        assert_eq!(sha256_hex(&get(&c, "bkt", key).await), sha256_hex(&data));
    }
}

/// Upload `data` from a file: a streamed body, which the SDK sends as `aws-chunked` with
/// a CRC32 trailer (chunk-signed over `http://`; see [`s3::https_style_client`] for the
/// unsigned form).
async fn put_streamed(
    c: &Client,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::put_object::PutObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body.bin");
    std::fs::write(&path, data).unwrap();
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
}

/// A client through `proxy`: plain (chunk-signed) or HTTPS-style (unsigned chunks).
fn via(proxy: &Proxy, unsigned: bool) -> Client {
    if unsigned {
        s3::https_style_client(proxy.addr)
    } else {
        client_with_keys(proxy.addr, ACCESS_KEY, SECRET_KEY)
    }
}

/// The head of the last PUT request sent through `proxy` and the last bytes it sent,
/// lower-cased.
fn wire(proxy: &Proxy) -> (String, String) {
    let raw = proxy.sent.lock().unwrap().clone();
    let start = raw
        .windows(5)
        .rposition(|w| w == b"PUT /")
        .expect("a PUT request");
    let end = start
        + raw[start..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a request head");
    let head = String::from_utf8_lossy(&raw[start..end]).to_ascii_lowercase();
    let tail = String::from_utf8_lossy(&raw[raw.len().saturating_sub(300)..]).to_ascii_lowercase();
    (head, tail)
}

/// What the SDK puts on the wire for a streamed body: `aws-chunked` with the CRC32 in a
/// trailer, chunk-signed by default and unsigned on request; the server takes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_streamed_upload_sends_aws_chunked_crc32_trailer() {
    let (s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    for unsigned in [false, true] {
        let proxy = Proxy::start(s.s3_addr, None).await;
        let data = random_bytes(300 * 1024, 31);
        let key = format!("chunked-{unsigned}");
        put_streamed(&via(&proxy, unsigned), "bkt", &key, &data)
            .await
            .unwrap_or_else(|e| panic!("aws-chunked upload (unsigned: {unsigned}): {e:?}"));
        let (head, tail) = wire(&proxy);
        assert!(head.contains("content-encoding: aws-chunked"), "{head}");
        assert!(
            head.contains("x-amz-trailer: x-amz-checksum-crc32"),
            "{head}"
        );
        let mode = if unsigned {
            "x-amz-content-sha256: streaming-unsigned-payload-trailer"
        } else {
            "x-amz-content-sha256: streaming-aws4-hmac-sha256-payload-trailer"
        };
        assert!(head.contains(mode), "{head}");
        assert!(
            tail.contains("\r\nx-amz-checksum-crc32:"),
            "trailer: {tail:?}"
        );
        assert_eq!(sha256_hex(&get(&c, "bkt", &key).await), sha256_hex(&data));
    }
}

/// A body changed after the SDK signed and checksummed it (here: on the wire, between the
/// client and the server) is refused and nothing is stored: with chunk signatures as
/// SignatureDoesNotMatch, without them by its CRC32 trailer as BadDigest, and an
/// in-memory body by its checksum header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_corrupted_body_is_refused() {
    let (s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let proxy = Proxy::start(
        s.s3_addr,
        Some((b"CORRUPT-ME-PLEASE", b"CORRUPTED-ON-WIRE")),
    )
    .await;
    let mut data = random_bytes(100 * 1024, 32);
    data.extend_from_slice(b"CORRUPT-ME-PLEASE");
    data.extend_from_slice(&random_bytes(1000, 33));

    assert_fails(
        put_streamed(&via(&proxy, false), "bkt", "signed", &data).await,
        403,
        "SignatureDoesNotMatch",
    );
    assert_fails(
        put_streamed(&via(&proxy, true), "bkt", "unsigned", &data).await,
        400,
        "BadDigest",
    );
    // An in-memory body is signed by its SHA-256 (and sent with a CRC32 header).
    assert_fails(
        via(&proxy, false)
            .put_object()
            .bucket("bkt")
            .key("in-memory")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        400,
        "XAmzContentSHA256Mismatch",
    );
    // Unsigned (UNSIGNED-PAYLOAD), it is caught by its CRC32 header.
    assert_fails(
        via(&proxy, true)
            .put_object()
            .bucket("bkt")
            .key("in-memory")
            .body(ByteStream::from(data.clone()))
            .customize()
            .disable_payload_signing()
            .send()
            .await,
        400,
        "BadDigest",
    );
    let (head, _) = wire(&proxy);
    assert!(
        head.contains("x-amz-content-sha256: unsigned-payload"),
        "{head}"
    );
    for key in ["signed", "unsigned", "in-memory"] {
        let f = failure(c.head_object().bucket("bkt").key(key).send().await);
        assert_eq!(f.status, 404, "{key}: nothing stored: {f:?}");
    }
    // The proxy did corrupt what it passed on.
    assert!(proxy.sent_text().contains("CORRUPT-ME-PLEASE"));
}

/// A checksum header that does not match the body is refused and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_wrong_checksum_header_is_bad_digest() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    // CRC32 of "abc" is 0x352441c2; "AAAAAA==" (0) is wrong for it.
    let f = failure(
        c.put_object()
            .bucket("bkt")
            .key("k")
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from_static(b"abc"))
            .send()
            .await,
    );
    assert_eq!(
        (f.status, f.code.as_deref()),
        (400, Some("BadDigest")),
        "{f:?}"
    );
    let f = failure(c.head_object().bucket("bkt").key("k").send().await);
    assert_eq!(f.status, 404, "nothing stored: {f:?}");
    // The right value is accepted.
    c.put_object()
        .bucket("bkt")
        .key("k")
        .checksum_crc32("NSRBwg==")
        .body(ByteStream::from_static(b"abc"))
        .send()
        .await
        .expect("matching CRC32");
    assert_eq!(get(&c, "bkt", "k").await, b"abc");
}

/// A verified checksum is stored with the object: HEAD and GET return it when asked with
/// `x-amz-checksum-mode: ENABLED` (the SDK then also checks the body against it), never
/// for a range, and a copy keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_checksums_are_stored_and_returned_when_asked() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.bin");
    let data = random_bytes(2 * MIB + 77, 31);
    std::fs::write(&path, &data).unwrap();
    let want = STANDARD.encode(sha2::Sha256::digest(&data));

    // SHA-256 sent as an aws-chunked trailer.
    let put = c
        .put_object()
        .bucket("bkt")
        .key("trailed")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .expect("upload with a SHA-256 trailer");
    assert_eq!(put.checksum_sha256(), Some(want.as_str()));

    let head = c.head_object().bucket("bkt").key("trailed");
    let plain = head.clone().send().await.unwrap();
    assert_eq!(plain.checksum_sha256(), None, "only returned when asked");
    let asked = head
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.checksum_sha256(), Some(want.as_str()));
    assert_eq!(asked.checksum_crc32(), None);

    let got = c
        .get_object()
        .bucket("bkt")
        .key("trailed")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_sha256(), Some(want.as_str()));
    assert_eq!(sha256_hex(&body(got).await), sha256_hex(&data));

    let ranged = c
        .get_object()
        .bucket("bkt")
        .key("trailed")
        .range("bytes=10-99")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.checksum_sha256(),
        None,
        "a range has no stored checksum"
    );
    assert_eq!(body(ranged).await, &data[10..100]);

    // A checksum given as a header is stored the same way.
    c.put_object()
        .bucket("bkt")
        .key("abc")
        .checksum_crc32("NSRBwg==")
        .body(ByteStream::from_static(b"abc"))
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("bkt")
        .key("abc")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some("NSRBwg=="));

    // A copy has the same bytes, so it keeps the source's checksum.
    c.copy_object()
        .bucket("bkt")
        .key("copy")
        .copy_source("bkt/trailed")
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("bkt")
        .key("copy")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(want.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_wrong_content_md5_is_bad_digest_and_stores_nothing() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key("k")
            .content_md5(md5_b64(b"other data"))
            .body(ByteStream::from_static(b"actual data"))
            .send()
            .await,
        400,
        "BadDigest",
    );
    let f = failure(c.head_object().bucket("bkt").key("k").send().await);
    assert_eq!(f.status, 404, "nothing stored: {f:?}");

    // An existing object is left as it was.
    put(&c, "bkt", "k", b"original").await;
    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key("k")
            .content_md5(md5_b64(b"something else"))
            .body(ByteStream::from_static(b"replacement"))
            .send()
            .await,
        400,
        "BadDigest",
    );
    assert_eq!(get(&c, "bkt", "k").await, b"original");

    // The right Content-MD5 is accepted.
    let data = b"checked body";
    c.put_object()
        .bucket("bkt")
        .key("k")
        .content_md5(md5_b64(data))
        .body(ByteStream::from_static(data))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&c, "bkt", "k").await, data);

    // Not base64 of 16 bytes at all.
    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key("k2")
            .content_md5("not-an-md5")
            .body(ByteStream::from_static(data))
            .send()
            .await,
        400,
        "InvalidDigest",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_range_get_and_invalid_range() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let data: Vec<u8> = (0..100u8).collect();
    put(&c, "bkt", "r", &data).await;

    for (range, from, to) in [
        ("bytes=0-9", 0usize, 9usize),
        ("bytes=-5", 95, 99),
        ("bytes=10-", 10, 99),
        ("bytes=50-50", 50, 50),
        ("bytes=90-1000", 90, 99),
    ] {
        let out = c
            .get_object()
            .bucket("bkt")
            .key("r")
            .range(range)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{range}: {e:?}"));
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {from}-{to}/100").as_str()),
            "{range}"
        );
        assert_eq!(
            out.content_length(),
            Some((to - from + 1) as i64),
            "{range}"
        );
        assert_eq!(body(out).await, &data[from..=to], "{range}");
    }

    assert_fails(
        c.get_object()
            .bucket("bkt")
            .key("r")
            .range("bytes=100-")
            .send()
            .await,
        416,
        "InvalidRange",
    );
    assert_fails(
        c.get_object()
            .bucket("bkt")
            .key("r")
            .range("bytes=200-300")
            .send()
            .await,
        416,
        "InvalidRange",
    );

    // The 416 carries `Content-Range: bytes */size` (checked on the raw response).
    let presigned = c
        .get_object()
        .bucket("bkt")
        .key("r")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(presigned.uri())
        .header("range", "bytes=500-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        resp.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes */100")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_conditional_get_and_head() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let etag = put(&c, "bkt", "k", b"conditional").await;

    // If-None-Match with the current ETag: 304, which the SDK reports as an error.
    let f = failure(
        c.get_object()
            .bucket("bkt")
            .key("k")
            .if_none_match(&etag)
            .send()
            .await,
    );
    assert_eq!(f.status, 304, "{f:?}");
    let f = failure(
        c.head_object()
            .bucket("bkt")
            .key("k")
            .if_none_match(&etag)
            .send()
            .await,
    );
    assert_eq!(f.status, 304, "{f:?}");

    // If-Match with another ETag: 412 PreconditionFailed.
    assert_fails(
        c.get_object()
            .bucket("bkt")
            .key("k")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    let f = failure(
        c.head_object()
            .bucket("bkt")
            .key("k")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await,
    );
    assert_eq!(f.status, 412, "{f:?}");

    // Matching conditions pass.
    let out = c
        .get_object()
        .bucket("bkt")
        .key("k")
        .if_match(&etag)
        .if_none_match("\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(body(out).await, b"conditional");

    // Dates: modified since an hour ago, not modified since an hour from now.
    let now = SystemTime::now();
    let hour_ago = DateTime::from(now - Duration::from_secs(3600));
    let in_an_hour = DateTime::from(now + Duration::from_secs(3600));
    let out = c
        .get_object()
        .bucket("bkt")
        .key("k")
        .if_modified_since(hour_ago)
        .send()
        .await
        .unwrap();
    assert_eq!(body(out).await, b"conditional");
    let f = failure(
        c.get_object()
            .bucket("bkt")
            .key("k")
            .if_modified_since(in_an_hour)
            .send()
            .await,
    );
    assert_eq!(f.status, 304, "{f:?}");
    assert_fails(
        c.get_object()
            .bucket("bkt")
            .key("k")
            .if_unmodified_since(hour_ago)
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_conditional_put_if_none_match_and_if_match() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;

    // Create-only on an absent key succeeds.
    let first = c
        .put_object()
        .bucket("bkt")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"v1"))
        .send()
        .await
        .expect("If-None-Match: * on an absent key");
    let etag1 = first.e_tag().unwrap().to_string();

    // ... and fails once the key exists, leaving it unchanged.
    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key("k")
            .if_none_match("*")
            .body(ByteStream::from_static(b"v2"))
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    assert_eq!(get(&c, "bkt", "k").await, b"v1");

    // Compare-and-swap: the current ETag wins, a stale or wrong one fails.
    let swapped = c
        .put_object()
        .bucket("bkt")
        .key("k")
        .if_match(&etag1)
        .body(ByteStream::from_static(b"v3"))
        .send()
        .await
        .expect("If-Match with the current ETag");
    assert_eq!(swapped.e_tag(), Some(quoted(&md5_hex(b"v3")).as_str()));
    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key("k")
            .if_match(&etag1)
            .body(ByteStream::from_static(b"v4"))
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    assert_eq!(get(&c, "bkt", "k").await, b"v3");

    // If-Match on a key that does not exist cannot match.
    let f = failure(
        c.put_object()
            .bucket("bkt")
            .key("absent")
            .if_match(&etag1)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
    );
    assert!(
        f.status == 412 || f.status == 404,
        "If-Match on an absent key: {f:?}"
    );
    let f = failure(c.head_object().bucket("bkt").key("absent").send().await);
    assert_eq!(f.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_delete_and_no_such_key() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    put(&c, "bkt", "k", b"bye").await;
    let out = c
        .delete_object()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(out.delete_marker(), None, "unversioned: no delete marker");

    let f = failure(c.get_object().bucket("bkt").key("k").send().await);
    assert_eq!((f.status, f.code.as_deref()), (404, Some("NoSuchKey")));
    let e = c
        .get_object()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error().is_some_and(|e| e.is_no_such_key()),
        "the SDK models it as NoSuchKey"
    );
    let f = failure(c.head_object().bucket("bkt").key("k").send().await);
    assert_eq!(f.status, 404);
    assert_fails(
        c.get_object_tagging().bucket("bkt").key("k").send().await,
        404,
        "NoSuchKey",
    );

    // Deleting what does not exist succeeds, as in S3.
    c.delete_object()
        .bucket("bkt")
        .key("never-was")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_delete_objects_several_keys_including_missing() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    for k in ["one", "two", "three", "keep"] {
        put(&c, "bkt", k, k.as_bytes()).await;
    }
    let ids = ["one", "two", "three", "missing"]
        .iter()
        .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
        .collect::<Vec<_>>();
    let out = c
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .expect("DeleteObjects");
    let mut deleted: Vec<_> = out.deleted().iter().map(|d| d.key().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["missing", "one", "three", "two"]);
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    assert_eq!(all_keys_v2(&c, "bkt", None).await, ["keep"]);

    // Quiet mode reports only errors.
    put(&c, "bkt", "q", b"q").await;
    let out = c
        .delete_objects()
        .bucket("bkt")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("q").build().unwrap())
                .quiet(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    assert!(out.errors().is_empty());
    assert_eq!(all_keys_v2(&c, "bkt", None).await, ["keep"]);

    assert_fails(
        c.delete_objects()
            .bucket("nobucket")
            .delete(
                Delete::builder()
                    .objects(ObjectIdentifier::builder().key("x").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_copy_keeps_or_replaces_metadata() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "src").await;
    create_bucket(&c, "dst").await;
    let data = random_bytes(150 * 1024, 3);
    c.put_object()
        .bucket("src")
        .key("orig")
        .content_type("image/png")
        .metadata("kind", "original")
        .tagging("t=1")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let etag = quoted(&md5_hex(&data));

    // COPY (the default) keeps content type, metadata and tags.
    let out = c
        .copy_object()
        .copy_source("src/orig")
        .bucket("dst")
        .key("copied")
        .send()
        .await
        .expect("copy");
    let result = out.copy_object_result().expect("CopyObjectResult");
    assert_eq!(result.e_tag(), Some(etag.as_str()));
    assert!(result.last_modified().is_some());
    let head = c
        .head_object()
        .bucket("dst")
        .key("copied")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("kind"))
            .map(String::as_str),
        Some("original")
    );
    assert_eq!(get(&c, "dst", "copied").await, data);
    let tags = c
        .get_object_tagging()
        .bucket("dst")
        .key("copied")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1);

    // REPLACE takes the request's metadata and content type instead.
    c.copy_object()
        .copy_source("src/orig")
        .bucket("dst")
        .key("replaced")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/plain")
        .metadata("kind", "replaced")
        .send()
        .await
        .expect("copy with REPLACE");
    let head = c
        .head_object()
        .bucket("dst")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/plain"));
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(
        meta,
        HashMap::from([("kind".to_string(), "replaced".to_string())])
    );
    assert_eq!(head.e_tag(), Some(etag.as_str()));

    // Copying onto itself needs REPLACE; with it, metadata changes in place.
    assert_fails(
        c.copy_object()
            .copy_source("src/orig")
            .bucket("src")
            .key("orig")
            .send()
            .await,
        400,
        "InvalidRequest",
    );
    c.copy_object()
        .copy_source("src/orig")
        .bucket("src")
        .key("orig")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("kind", "updated")
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("src")
        .key("orig")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("kind"))
            .map(String::as_str),
        Some("updated")
    );
    assert_eq!(get(&c, "src", "orig").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_copy_source_conditions_and_missing_source() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let etag = put(&c, "bkt", "src", b"source").await;

    assert_fails(
        c.copy_object()
            .copy_source("bkt/src")
            .bucket("bkt")
            .key("dst")
            .copy_source_if_match("\"ffffffffffffffffffffffffffffffff\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    // A copy-source If-None-Match that matches is a 412 too, never a 304.
    assert_fails(
        c.copy_object()
            .copy_source("bkt/src")
            .bucket("bkt")
            .key("dst")
            .copy_source_if_none_match(&etag)
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    let f = failure(c.head_object().bucket("bkt").key("dst").send().await);
    assert_eq!(f.status, 404, "no copy was made: {f:?}");

    c.copy_object()
        .copy_source("bkt/src")
        .bucket("bkt")
        .key("dst")
        .copy_source_if_match(&etag)
        .send()
        .await
        .expect("copy-source-if-match with the right ETag");
    assert_eq!(get(&c, "bkt", "dst").await, b"source");

    assert_fails(
        c.copy_object()
            .copy_source("bkt/absent")
            .bucket("bkt")
            .key("dst2")
            .send()
            .await,
        404,
        "NoSuchKey",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_tagging_put_get_delete() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    put(&c, "bkt", "k", b"tagged").await;

    let tags = c
        .get_object_tagging()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(tags.tag_set().is_empty());

    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("env").value("prod").build().unwrap())
        .tag_set(Tag::builder().key("team").value("storage").build().unwrap())
        .build()
        .unwrap();
    c.put_object_tagging()
        .bucket("bkt")
        .key("k")
        .tagging(tagging)
        .send()
        .await
        .expect("put tagging");
    let tags = c
        .get_object_tagging()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    let mut got: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    got.sort();
    assert_eq!(got, ["env=prod", "team=storage"]);
    // The data is untouched by tagging.
    assert_eq!(get(&c, "bkt", "k").await, b"tagged");

    c.delete_object_tagging()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .expect("delete tagging");
    let tags = c
        .get_object_tagging()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(tags.tag_set().is_empty());

    // More than 10 tags is InvalidTag.
    let mut many = Tagging::builder();
    for i in 0..11 {
        many = many.tag_set(
            Tag::builder()
                .key(format!("k{i}"))
                .value("v")
                .build()
                .unwrap(),
        );
    }
    assert_fails(
        c.put_object_tagging()
            .bucket("bkt")
            .key("k")
            .tagging(many.build().unwrap())
            .send()
            .await,
        400,
        "InvalidTag",
    );
    assert_fails(
        c.put_object_tagging()
            .bucket("bkt")
            .key("absent")
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("a").value("bkt").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        404,
        "NoSuchKey",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_multi_mib_round_trip_sha256() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let data = random_bytes(7 * MIB + 333, 42);
    let etag = put(&c, "bkt", "big.bin", &data).await;
    assert_eq!(etag, quoted(&md5_hex(&data)));
    let out = c
        .get_object()
        .bucket("bkt")
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_length(), Some(data.len() as i64));
    let got = body(out).await;
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_key_and_metadata_limits() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let long_key = "k".repeat(1025);
    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key(&long_key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        400,
        "KeyTooLongError",
    );
    let max_key = "k".repeat(1024);
    put(&c, "bkt", &max_key, b"x").await;
    assert_eq!(get(&c, "bkt", &max_key).await, b"x");

    assert_fails(
        c.put_object()
            .bucket("bkt")
            .key("meta")
            .metadata("big", "vers".repeat(2100))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        400,
        "MetadataTooLarge",
    );
}

// ---------------------------------------------------------------- listing

async fn put_keys(c: &Client, bucket: &str, keys: &[&str]) {
    for k in keys {
        put(c, bucket, k, k.as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_prefix_and_delimiter() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    put_keys(
        &c,
        "bkt",
        &["a/1", "a/2", "a/b/3", "b/4", "c", "d/e/f/5", "top.txt"],
    )
    .await;

    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .prefix("a/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["a/1", "a/2", "a/b/3"]);
    assert_eq!(out.key_count(), Some(3));
    assert_eq!(out.prefix(), Some("a/"));
    assert_eq!(out.is_truncated(), Some(false));
    let first = &out.contents()[0];
    assert_eq!(first.size(), Some(3));
    assert_eq!(first.e_tag(), Some(quoted(&md5_hex(b"a/1")).as_str()));
    assert!(first.last_modified().is_some());

    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(keys, ["c", "top.txt"]);
    assert_eq!(prefixes, ["a/", "b/", "d/"]);
    assert_eq!(out.key_count(), Some(5));
    assert_eq!(out.delimiter(), Some("/"));

    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert_eq!(prefixes, ["a/b/"]);

    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .prefix("zzz")
        .send()
        .await
        .unwrap();
    assert!(out.contents().is_empty());
    assert_eq!(out.key_count(), Some(0));

    // fetch-owner adds the owner.
    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .prefix("c")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    assert!(out.contents()[0].owner().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_max_keys_pagination_visits_every_key_once() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let keys: Vec<String> = (0..23).map(|i| format!("k{i:03}")).collect();
    for k in &keys {
        put(&c, "bkt", k, b"x").await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = c
            .list_objects_v2()
            .bucket("bkt")
            .max_keys(5)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(out.contents().len() <= 5);
        assert_eq!(out.max_keys(), Some(5));
        assert_eq!(out.continuation_token(), token.as_deref());
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() == Some(true) {
            token = Some(
                out.next_continuation_token()
                    .expect("a truncated page has a token")
                    .to_string(),
            );
        } else {
            assert!(out.next_continuation_token().is_none());
            break;
        }
        assert!(pages < 20, "pagination does not end");
    }
    assert_eq!(seen, keys, "every key exactly once, in order");
    assert_eq!(pages, 5);

    // start-after skips up to and including the given key.
    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .start_after("k019")
        .send()
        .await
        .unwrap();
    let got: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(got, ["k020", "k021", "k022"]);
    assert_eq!(out.start_after(), Some("k019"));

    // The paginator of the SDK agrees.
    let mut pages = c
        .list_objects_v2()
        .bucket("bkt")
        .max_keys(7)
        .into_paginator()
        .send();
    let mut via_paginator = Vec::new();
    while let Some(page) = pages.next().await {
        via_paginator.extend(
            page.unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_string()),
        );
    }
    assert_eq!(via_paginator, keys);

    assert_fails(
        c.list_objects_v2()
            .bucket("bkt")
            .continuation_token("!!not a token!!")
            .send()
            .await,
        400,
        "InvalidArgument",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_encoding_type_url() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let odd = "dir with space/ünïcödé & more+.txt";
    put_keys(&c, "bkt", &[odd, "plain"]).await;

    // Without encoding the key comes back verbatim.
    let keys = all_keys_v2(&c, "bkt", None).await;
    assert_eq!(keys, ["dir with space/ünïcödé & more+.txt", "plain"]);

    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.encoding_type(), Some(&EncodingType::Url));
    let raw = out.contents()[0].key().unwrap();
    assert!(
        raw.is_ascii() && !raw.contains(' ') && !raw.contains('&'),
        "encoded key {raw:?}"
    );
    assert_eq!(s3::percent_decode(raw), odd);
    assert_eq!(out.contents()[1].key(), Some("plain"));

    // Common prefixes are encoded too.
    let out = c
        .list_objects_v2()
        .bucket("bkt")
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let p = out.common_prefixes()[0].prefix().unwrap();
    assert_eq!(p, "dir%20with%20space/");
    // And the object is reachable under its real key.
    assert_eq!(get(&c, "bkt", odd).await, odd.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v1_marker_and_pagination() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let keys: Vec<String> = (0..10).map(|i| format!("obj-{i:02}")).collect();
    for k in &keys {
        put(&c, "bkt", k, b"v1").await;
    }

    let out = c
        .list_objects()
        .bucket("bkt")
        .marker("obj-06")
        .send()
        .await
        .unwrap();
    let got: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(got, ["obj-07", "obj-08", "obj-09"]);
    assert_eq!(out.marker(), Some("obj-06"));
    assert_eq!(out.is_truncated(), Some(false));

    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = c
            .list_objects()
            .bucket("bkt")
            .max_keys(3)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        let page: Vec<String> = out
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_string())
            .collect();
        assert!(page.len() <= 3);
        seen.extend(page.iter().cloned());
        if out.is_truncated() != Some(true) {
            break;
        }
        // NextMarker when given, else the last key (as S3 clients do).
        marker = Some(
            out.next_marker()
                .map(str::to_string)
                .unwrap_or_else(|| page.last().unwrap().clone()),
        );
    }
    assert_eq!(seen, keys);

    let out = c
        .list_objects()
        .bucket("bkt")
        .prefix("obj-0")
        .delimiter("-")
        .send()
        .await
        .unwrap();
    assert_eq!(out.contents().len(), 10);
    assert!(out.common_prefixes().is_empty());
    assert!(out.contents().iter().all(|o| o.owner().is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_after_overwrites() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "vers").await;
    enable_versioning(&c, "vers").await;

    let mut doc_versions = Vec::new();
    for i in 1..=3 {
        let out = c
            .put_object()
            .bucket("vers")
            .key("doc")
            .body(ByteStream::from(format!("doc v{i}").into_bytes()))
            .send()
            .await
            .unwrap();
        doc_versions.push(
            out.version_id()
                .expect("versioned put has an id")
                .to_string(),
        );
    }
    let other = c
        .put_object()
        .bucket("vers")
        .key("other")
        .body(ByteStream::from_static(b"other"))
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    let del = c
        .delete_object()
        .bucket("vers")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let marker_id = del.version_id().expect("delete marker id").to_string();

    // The latest version is the delete marker: GET says NoSuchKey, old versions remain.
    assert_fails(
        c.get_object().bucket("vers").key("doc").send().await,
        404,
        "NoSuchKey",
    );
    let old = c
        .get_object()
        .bucket("vers")
        .key("doc")
        .version_id(&doc_versions[0])
        .send()
        .await
        .unwrap();
    assert_eq!(old.version_id(), Some(doc_versions[0].as_str()));
    assert_eq!(body(old).await, b"doc v1");

    let out = c
        .list_object_versions()
        .bucket("vers")
        .send()
        .await
        .unwrap();
    let doc: Vec<_> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some("doc"))
        .collect();
    let ids: Vec<_> = doc.iter().map(|v| v.version_id().unwrap()).collect();
    let newest_first: Vec<_> = doc_versions.iter().rev().map(String::as_str).collect();
    assert_eq!(ids, newest_first, "versions newest first");
    assert!(doc.iter().all(|v| v.is_latest() == Some(false)));
    assert_eq!(doc[0].size(), Some(6));
    assert_eq!(doc[2].e_tag(), Some(quoted(&md5_hex(b"doc v1")).as_str()));

    let markers = out.delete_markers();
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert_eq!(markers[0].key(), Some("doc"));
    assert_eq!(markers[0].version_id(), Some(marker_id.as_str()));
    assert_eq!(markers[0].is_latest(), Some(true));

    let others: Vec<_> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some("other"))
        .collect();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].version_id(), Some(other.as_str()));
    assert_eq!(others[0].is_latest(), Some(true));

    // Exactly one latest entry per key.
    for key in ["doc", "other"] {
        let latest = out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key) && v.is_latest() == Some(true))
            .count()
            + markers
                .iter()
                .filter(|m| m.key() == Some(key) && m.is_latest() == Some(true))
                .count();
        assert_eq!(latest, 1, "{key}");
    }

    // Removing the delete marker by id brings the newest version back.
    c.delete_object()
        .bucket("vers")
        .key("doc")
        .version_id(&marker_id)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&c, "vers", "doc").await, b"doc v3");

    // Prefix filter.
    let out = c
        .list_object_versions()
        .bucket("vers")
        .prefix("oth")
        .send()
        .await
        .unwrap();
    assert_eq!(out.versions().len(), 1);
    assert!(out.delete_markers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_pagination_with_markers() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "vers").await;
    enable_versioning(&c, "vers").await;
    for key in ["a", "b", "c"] {
        for i in 0..3 {
            put(&c, "vers", key, format!("{key}{i}").as_bytes()).await;
        }
    }
    c.delete_object()
        .bucket("vers")
        .key("b")
        .send()
        .await
        .unwrap();

    let full = c
        .list_object_versions()
        .bucket("vers")
        .send()
        .await
        .unwrap();
    assert_eq!(full.is_truncated(), Some(false));
    let everything: BTreeSet<(String, String)> = full
        .versions()
        .iter()
        .map(|v| (v.key().unwrap().into(), v.version_id().unwrap().into()))
        .chain(
            full.delete_markers()
                .iter()
                .map(|m| (m.key().unwrap().into(), m.version_id().unwrap().into())),
        )
        .collect();
    assert_eq!(everything.len(), 10, "9 versions and 1 delete marker");

    let mut seen = Vec::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    for _ in 0..20 {
        let out = c
            .list_object_versions()
            .bucket("vers")
            .max_keys(3)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        let n = out.versions().len() + out.delete_markers().len();
        assert!((1..=3).contains(&n), "page of {n}");
        seen.extend(out.versions().iter().map(|v| {
            (
                v.key().unwrap().to_string(),
                v.version_id().unwrap().to_string(),
            )
        }));
        seen.extend(out.delete_markers().iter().map(|m| {
            (
                m.key().unwrap().to_string(),
                m.version_id().unwrap().to_string(),
            )
        }));
        if out.is_truncated() != Some(true) {
            key_marker = None;
            break;
        }
        key_marker = Some(out.next_key_marker().expect("next key marker").into());
        version_marker = out.next_version_id_marker().map(str::to_string);
    }
    assert!(key_marker.is_none(), "pagination ended");
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "no entry listed twice: {seen:?}");
    assert_eq!(unique, everything, "every version listed");
}

/// One ListObjectVersions page as `v:key:id` (`*` when latest; delete markers too) and
/// `p:prefix` entries in key order, with the page's NextKeyMarker and
/// NextVersionIdMarker (`None` for both on the last page).
fn version_page_entries(
    out: &aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput,
) -> (Vec<String>, Option<(String, Option<String>)>) {
    let star = |latest: Option<bool>| if latest == Some(true) { "*" } else { "" };
    let mut entries: Vec<(String, String)> = out
        .versions()
        .iter()
        .map(|v| (v.key().unwrap(), v.version_id().unwrap(), v.is_latest()))
        .chain(
            out.delete_markers()
                .iter()
                .map(|m| (m.key().unwrap(), m.version_id().unwrap(), m.is_latest())),
        )
        .map(|(k, id, latest)| (k.to_string(), format!("v:{k}:{id}{}", star(latest))))
        .chain(out.common_prefixes().iter().map(|p| {
            let p = p.prefix().unwrap();
            (p.to_string(), format!("p:{p}"))
        }))
        .collect();
    // Stable: versions and delete markers of a key are interleaved by age below.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let next = (out.is_truncated() == Some(true)).then(|| {
        (
            out.next_key_marker().expect("next key marker").to_string(),
            out.next_version_id_marker().map(str::to_string),
        )
    });
    (entries.into_iter().map(|(_, e)| e).collect(), next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_delimiter_pages_across_common_prefixes() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "vers").await;
    enable_versioning(&c, "vers").await;
    let mut ids: HashMap<&str, Vec<String>> = HashMap::new();
    for key in ["a", "a", "dir/x", "dir/x", "dir/y", "e", "z dir/q", "zz"] {
        let id = c
            .put_object()
            .bucket("vers")
            .key(key)
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .send()
            .await
            .unwrap()
            .version_id()
            .unwrap()
            .to_string();
        ids.entry(key).or_default().push(id);
    }
    let del = c
        .delete_object()
        .bucket("vers")
        .key("dir/y")
        .send()
        .await
        .unwrap();
    ids.get_mut("dir/y")
        .unwrap()
        .push(del.version_id().unwrap().to_string());
    let id = |k: &str, i: usize| ids[k][i].clone();

    let list = |max_keys: Option<i32>, key_marker: Option<String>, version: Option<String>| {
        c.list_object_versions()
            .bucket("vers")
            .delimiter("/")
            .set_max_keys(max_keys)
            .set_key_marker(key_marker)
            .set_version_id_marker(version)
            .send()
    };

    // Everything under dir/ and "z dir/" is one common prefix each, counted once.
    let full = list(None, None, None).await.unwrap();
    assert_eq!(full.delimiter(), Some("/"));
    let (all, next) = version_page_entries(&full);
    assert_eq!(next, None);
    assert_eq!(
        all,
        vec![
            format!("v:a:{}*", id("a", 1)),
            format!("v:a:{}", id("a", 0)),
            "p:dir/".to_string(),
            format!("v:e:{}*", id("e", 0)),
            "p:z dir/".to_string(),
            format!("v:zz:{}*", id("zz", 0)),
        ]
    );

    // Three entries a page: the first page ends on the common prefix dir/, so the next
    // key marker is that prefix with no version marker, and the second page starts past
    // every key under it.
    let first = list(Some(3), None, None).await.unwrap();
    assert_eq!(first.max_keys(), Some(3));
    let (entries, next) = version_page_entries(&first);
    assert_eq!(entries, all[..3]);
    assert_eq!(next, Some(("dir/".to_string(), None)));
    let second = list(Some(3), Some("dir/".into()), None).await.unwrap();
    let (entries, next) = version_page_entries(&second);
    assert_eq!(entries, all[3..]);
    assert_eq!(next, None);
    assert_eq!(second.key_marker(), Some("dir/"));

    // Any page size: following the markers visits every entry exactly once.
    for max_keys in 1..=7 {
        let mut seen = Vec::new();
        let mut markers: Option<(String, Option<String>)> = None;
        for _ in 0..20 {
            let (km, vm) = markers.clone().unzip();
            let out = list(Some(max_keys), km, vm.flatten()).await.unwrap();
            let (entries, next) = version_page_entries(&out);
            assert!(entries.len() <= max_keys as usize);
            seen.extend(entries);
            markers = next;
            if markers.is_none() {
                break;
            }
        }
        assert!(markers.is_none(), "pagination ended");
        assert_eq!(seen, all, "max-keys {max_keys}");
    }

    // A version-id marker needs a key marker.
    assert_fails(
        list(Some(3), None, Some(id("a", 0))).await,
        400,
        "InvalidArgument",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_delimiter_encoding_type_url() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "vers").await;
    enable_versioning(&c, "vers").await;
    put_keys(&c, "vers", &["e", "z dir/ü q", "zz"]).await;

    // The page ends on the common prefix "z dir/": both it and the next key marker come
    // back percent-encoded; decoded, the marker resumes past the prefix.
    let out = c
        .list_object_versions()
        .bucket("vers")
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .key_marker("e")
        .max_keys(1)
        .send()
        .await
        .unwrap();
    assert_eq!(out.encoding_type(), Some(&EncodingType::Url));
    assert!(out.versions().is_empty());
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["z%20dir/"]);
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.next_key_marker(), Some("z%20dir/"));
    assert_eq!(out.next_version_id_marker(), None);
    let out = c
        .list_object_versions()
        .bucket("vers")
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .key_marker(s3::percent_decode("z%20dir/"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_marker(), Some("z%20dir/"));
    let keys: Vec<_> = out.versions().iter().map(|v| v.key().unwrap()).collect();
    assert_eq!(keys, ["zz"]);
    assert!(out.common_prefixes().is_empty());
    assert_eq!(out.is_truncated(), Some(false));

    // Without a delimiter the key itself is encoded.
    let out = c
        .list_object_versions()
        .bucket("vers")
        .prefix("z ")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.versions().iter().map(|v| v.key().unwrap()).collect();
    assert_eq!(keys, ["z%20dir/%C3%BC%20q"]);
    assert_eq!(out.prefix(), Some("z%20"));
}

// ---------------------------------------------------------------- multipart

async fn upload_part(c: &Client, bucket: &str, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    c.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload part {n}: {e:?}"))
        .e_tag()
        .expect("part ETag")
        .to_string()
}

async fn create_upload(c: &Client, bucket: &str, key: &str) -> String {
    c.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("create multipart upload")
        .upload_id()
        .expect("upload id")
        .to_string()
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

/// S3's multipart ETag: MD5 of the concatenated part MD5s, then `-N`.
fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&Md5::digest(p));
    }
    format!("\"{}-{}\"", md5_hex(&all), parts.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_complete_list_parts_and_part_number_get() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "mpu").await;
    let p1 = random_bytes(5 * MIB, 11);
    let p2 = random_bytes(MIB + 17, 12);

    let created = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("big/object.bin")
        .content_type("application/x-test")
        .metadata("origin", "multipart")
        .send()
        .await
        .unwrap();
    assert_eq!(created.bucket(), Some("mpu"));
    assert_eq!(created.key(), Some("big/object.bin"));
    let id = created.upload_id().unwrap().to_string();

    let e1 = upload_part(&c, "mpu", "big/object.bin", &id, 1, &p1).await;
    let e2 = upload_part(&c, "mpu", "big/object.bin", &id, 2, &p2).await;
    assert_eq!(e1, quoted(&md5_hex(&p1)));
    assert_eq!(e2, quoted(&md5_hex(&p2)));

    let parts = c
        .list_parts()
        .bucket("mpu")
        .key("big/object.bin")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let listed: Vec<_> = parts
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, p1.len() as i64, e1.as_str()),
            (2, p2.len() as i64, e2.as_str())
        ]
    );
    assert_eq!(parts.is_truncated(), Some(false));
    // Paged by one part.
    let page = c
        .list_parts()
        .bucket("mpu")
        .key("big/object.bin")
        .upload_id(&id)
        .max_parts(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.parts().len(), 1);
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("1"));
    let page = c
        .list_parts()
        .bucket("mpu")
        .key("big/object.bin")
        .upload_id(&id)
        .part_number_marker("1")
        .send()
        .await
        .unwrap();
    assert_eq!(page.parts().len(), 1);
    assert_eq!(page.parts()[0].part_number(), Some(2));

    let done = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big/object.bin")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .expect("complete");
    let etag = done.e_tag().unwrap().to_string();
    assert!(etag.ends_with("-2\""), "multipart ETag {etag}");
    assert_eq!(etag, multipart_etag(&[&p1, &p2]));

    let mut whole = p1.clone();
    whole.extend_from_slice(&p2);
    let out = c
        .get_object()
        .bucket("mpu")
        .key("big/object.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.e_tag(), Some(etag.as_str()));
    assert_eq!(out.content_type(), Some("application/x-test"));
    assert_eq!(
        out.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("multipart")
    );
    assert_eq!(sha256_hex(&body(out).await), sha256_hex(&whole));

    // partNumber=1 returns exactly the first part; 2 the second.
    let out = c
        .get_object()
        .bucket("mpu")
        .key("big/object.bin")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(out.parts_count(), Some(2));
    assert_eq!(out.content_length(), Some(p1.len() as i64));
    assert_eq!(
        out.content_range(),
        Some(format!("bytes 0-{}/{}", p1.len() - 1, whole.len()).as_str())
    );
    assert_eq!(sha256_hex(&body(out).await), sha256_hex(&p1));
    let out = c
        .get_object()
        .bucket("mpu")
        .key("big/object.bin")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(body(out).await, p2);
    let head = c
        .head_object()
        .bucket("mpu")
        .key("big/object.bin")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(p1.len() as i64));
    assert_eq!(head.parts_count(), Some(2));

    // The upload is gone once completed.
    assert_fails(
        c.list_parts()
            .bucket("mpu")
            .key("big/object.bin")
            .upload_id(&id)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
}

/// `x-amz-tagging` and metadata given when the upload is created end up on the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_keeps_tags_and_metadata_of_create() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let id = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("big")
        .tagging("team=storage&tier=cold")
        .metadata("owner", "ops")
        .content_type("application/x-big")
        .send()
        .await
        .expect("create multipart upload")
        .upload_id()
        .expect("upload id")
        .to_string();
    let etag = upload_part(&c, "bkt", "big", &id, 1, b"only part").await;
    c.complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &etag)]))
        .send()
        .await
        .expect("complete");
    let tags = c
        .get_object_tagging()
        .bucket("bkt")
        .key("big")
        .send()
        .await
        .unwrap();
    let mut got: Vec<(String, String)> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("team".to_string(), "storage".to_string()),
            ("tier".to_string(), "cold".to_string())
        ]
    );
    let head = c
        .head_object()
        .bucket("bkt")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-big"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("ops")
    );
}

/// An upload created with a checksum algorithm stores each part's verified checksum and
/// gives the object S3's composite checksum: the checksum of the part checksums, `-N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_composite_checksum_is_stored_and_returned() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType};
    let (_s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let id = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("big")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("create")
        .upload_id()
        .unwrap()
        .to_string();
    let parts = [random_bytes(5 * MIB, 41), random_bytes(1234, 42)];
    let mut completed_parts = Vec::new();
    let mut raw_sums = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .upload_part()
            .bucket("bkt")
            .key("big")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("upload part");
        let digest = sha2::Sha256::digest(data);
        assert_eq!(
            out.checksum_sha256(),
            Some(STANDARD.encode(digest).as_str())
        );
        raw_sums.extend_from_slice(&digest);
        completed_parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .checksum_sha256(out.checksum_sha256().unwrap())
                .build(),
        );
    }
    let listed = c
        .list_parts()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.parts()[1].checksum_sha256(),
        Some(STANDARD.encode(sha2::Sha256::digest(&parts[1])).as_str())
    );
    // On this upload a part without its SHA-256 is refused, as S3 does.
    let f = failure(
        c.upload_part()
            .bucket("bkt")
            .key("big")
            .upload_id(&id)
            .part_number(3)
            .body(ByteStream::from_static(b"no checksum"))
            .send()
            .await,
    );
    assert_eq!(
        (f.status, f.code.as_deref()),
        (400, Some("InvalidRequest")),
        "{f:?}"
    );
    // Listing a part with another checksum than the one uploaded is InvalidPart.
    let mut wrong = completed_parts.clone();
    wrong[1] = CompletedPart::builder()
        .part_number(2)
        .e_tag(wrong[1].e_tag().unwrap())
        .checksum_sha256(STANDARD.encode(sha2::Sha256::digest(b"other bytes")))
        .build();
    assert_fails(
        c.complete_multipart_upload()
            .bucket("bkt")
            .key("big")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(wrong))
                    .build(),
            )
            .send()
            .await,
        400,
        "InvalidPart",
    );
    let want = format!("{}-2", STANDARD.encode(sha2::Sha256::digest(&raw_sums)));
    let done = c
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed_parts))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    assert_eq!(done.checksum_sha256(), Some(want.as_str()));
    let head = c
        .head_object()
        .bucket("bkt")
        .key("big")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(want.as_str()));
    assert_eq!(head.checksum_type(), Some(&ChecksumType::Composite));
    // The SDK skips validating composite values and still returns the right bytes.
    let got = c
        .get_object()
        .bucket("bkt")
        .key("big")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_sha256(), Some(want.as_str()));
    let all: Vec<u8> = parts.concat();
    assert_eq!(sha256_hex(&body(got).await), sha256_hex(&all));
    // A copy is a single part: the composite value does not follow it.
    c.copy_object()
        .bucket("bkt")
        .key("copy")
        .copy_source("bkt/big")
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("bkt")
        .key("copy")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_list_uploads_and_abort() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "mpu").await;
    let a = create_upload(&c, "mpu", "logs/a").await;
    let b = create_upload(&c, "mpu", "logs/b").await;
    let other = create_upload(&c, "mpu", "other").await;
    upload_part(&c, "mpu", "logs/a", &a, 1, b"some bytes").await;

    let out = c
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    let mut listed: Vec<_> = out
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("logs/a", a.as_str()),
            ("logs/b", b.as_str()),
            ("other", other.as_str())
        ]
    );
    assert!(out.uploads().iter().all(|u| u.initiated().is_some()));

    let out = c
        .list_multipart_uploads()
        .bucket("mpu")
        .prefix("logs/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["logs/a", "logs/b"]);

    c.abort_multipart_upload()
        .bucket("mpu")
        .key("logs/a")
        .upload_id(&a)
        .send()
        .await
        .expect("abort");
    assert_fails(
        c.list_parts()
            .bucket("mpu")
            .key("logs/a")
            .upload_id(&a)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_fails(
        c.upload_part()
            .bucket("mpu")
            .key("logs/a")
            .upload_id(&a)
            .part_number(2)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    let out = c
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["logs/b", "other"]);
    // Markers: uploads of later keys, and with an upload id marker, the marker key's own
    // uploads after that id (by id).
    let mut z = [
        create_upload(&c, "mpu", "z").await,
        create_upload(&c, "mpu", "z").await,
    ];
    z.sort();
    let page = |key_marker: &'static str, id_marker: Option<&str>, max: i32| {
        c.list_multipart_uploads()
            .bucket("mpu")
            .key_marker(key_marker)
            .set_upload_id_marker(id_marker.map(str::to_string))
            .max_uploads(max)
            .send()
    };
    let listed = |out: &aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput| -> Vec<(String, String)> {
        out.uploads()
            .iter()
            .map(|u| (u.key().unwrap().into(), u.upload_id().unwrap().into()))
            .collect()
    };
    let out = page("logs/b", None, 10).await.unwrap();
    let keys: Vec<_> = out.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["other", "z", "z"]);
    let out = page("z", Some(&z[0]), 10).await.unwrap();
    assert_eq!(listed(&out), [("z".to_string(), z[1].clone())]);
    assert!(page("zz", None, 10).await.unwrap().uploads().is_empty());
    let out = page("other", None, 1).await.unwrap();
    assert_eq!(listed(&out), [("z".to_string(), z[0].clone())]);
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.next_key_marker(), Some("z"));
    assert_eq!(out.next_upload_id_marker(), Some(z[0].as_str()));
    // The aborted upload left no object behind.
    let f = failure(c.head_object().bucket("mpu").key("logs/a").send().await);
    assert_eq!(f.status, 404);
    assert_fails(
        c.abort_multipart_upload()
            .bucket("mpu")
            .key("logs/a")
            .upload_id("no-such-upload")
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_invalid_part_and_invalid_part_order() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "mpu").await;
    let p1 = random_bytes(5 * MIB, 21);
    let p2 = b"tail part".to_vec();
    let id = create_upload(&c, "mpu", "k").await;
    let e1 = upload_part(&c, "mpu", "k", &id, 1, &p1).await;
    let e2 = upload_part(&c, "mpu", "k", &id, 2, &p2).await;

    let wrong = quoted(&md5_hex(b"not the part"));
    assert_fails(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (2, &wrong)]))
            .send()
            .await,
        400,
        "InvalidPart",
    );
    // A part number that was never uploaded.
    assert_fails(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (3, &e2)]))
            .send()
            .await,
        400,
        "InvalidPart",
    );
    assert_fails(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(2, &e2), (1, &e1)]))
            .send()
            .await,
        400,
        "InvalidPartOrder",
    );
    // Failed completions leave the upload intact: the right list completes.
    c.complete_multipart_upload()
        .bucket("mpu")
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .expect("complete after failed attempts");
    let mut whole = p1;
    whole.extend_from_slice(&p2);
    assert_eq!(sha256_hex(&get(&c, "mpu", "k").await), sha256_hex(&whole));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_entity_too_small_and_bad_part_numbers() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "mpu").await;
    let id = create_upload(&c, "mpu", "small").await;
    let e1 = upload_part(&c, "mpu", "small", &id, 1, &random_bytes(64 * 1024, 1)).await;
    let e2 = upload_part(&c, "mpu", "small", &id, 2, b"last").await;
    assert_fails(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("small")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
            .send()
            .await,
        400,
        "EntityTooSmall",
    );
    let f = failure(c.head_object().bucket("mpu").key("small").send().await);
    assert_eq!(f.status, 404, "nothing completed: {f:?}");

    // A single small part is fine: the last part is exempt.
    let id2 = create_upload(&c, "mpu", "single").await;
    let e = upload_part(&c, "mpu", "single", &id2, 1, b"only part").await;
    let done = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("single")
        .upload_id(&id2)
        .multipart_upload(completed(&[(1, &e)]))
        .send()
        .await
        .unwrap();
    assert_eq!(done.e_tag(), Some(multipart_etag(&[b"only part"]).as_str()));
    assert_eq!(get(&c, "mpu", "single").await, b"only part");

    // A part that does not match its checksum header is refused and not recorded.
    assert_fails(
        c.upload_part()
            .bucket("mpu")
            .key("small")
            .upload_id(&id)
            .part_number(3)
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from_static(b"abc"))
            .send()
            .await,
        400,
        "BadDigest",
    );
    let parts = c
        .list_parts()
        .bucket("mpu")
        .key("small")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let numbers: Vec<_> = parts
        .parts()
        .iter()
        .map(|p| p.part_number().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);

    for n in [0, 10_001] {
        assert_fails(
            c.upload_part()
                .bucket("mpu")
                .key("small")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await,
            400,
            "InvalidArgument",
        );
    }
    assert_fails(
        c.upload_part()
            .bucket("mpu")
            .key("small")
            .upload_id("bogus-upload-id")
            .part_number(1)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_part_copy_with_ranges() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "src").await;
    create_bucket(&c, "mpu").await;
    let big = random_bytes(6 * MIB, 51);
    let small = b"a small tail object".to_vec();
    let big_etag = put(&c, "src", "big", &big).await;
    put(&c, "src", "small", &small).await;

    let id = create_upload(&c, "mpu", "assembled").await;
    let first = 5 * MIB;
    let out = c
        .upload_part_copy()
        .bucket("mpu")
        .key("assembled")
        .upload_id(&id)
        .part_number(1)
        .copy_source("src/big")
        .copy_source_range(format!("bytes=0-{}", first - 1))
        .copy_source_if_match(&big_etag)
        .send()
        .await
        .expect("UploadPartCopy with a range");
    let e1 = out
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .expect("part ETag")
        .to_string();
    assert_eq!(e1, quoted(&md5_hex(&big[..first])));
    let out = c
        .upload_part_copy()
        .bucket("mpu")
        .key("assembled")
        .upload_id(&id)
        .part_number(2)
        .copy_source("src/small")
        .send()
        .await
        .expect("UploadPartCopy of a whole object");
    let e2 = out
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .unwrap()
        .to_string();
    assert_eq!(e2, quoted(&md5_hex(&small)));

    // Error cases: an open range, a missing source, a failed source condition.
    assert_fails(
        c.upload_part_copy()
            .bucket("mpu")
            .key("assembled")
            .upload_id(&id)
            .part_number(3)
            .copy_source("src/big")
            .copy_source_range("bytes=5-")
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    assert_fails(
        c.upload_part_copy()
            .bucket("mpu")
            .key("assembled")
            .upload_id(&id)
            .part_number(3)
            .copy_source("src/absent")
            .send()
            .await,
        404,
        "NoSuchKey",
    );
    assert_fails(
        c.upload_part_copy()
            .bucket("mpu")
            .key("assembled")
            .upload_id(&id)
            .part_number(3)
            .copy_source("src/small")
            .copy_source_if_match("\"00000000000000000000000000000000\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
    );

    c.complete_multipart_upload()
        .bucket("mpu")
        .key("assembled")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .expect("complete");
    let mut want = big[..first].to_vec();
    want.extend_from_slice(&small);
    assert_eq!(
        sha256_hex(&get(&c, "mpu", "assembled").await),
        sha256_hex(&want)
    );
}

// ---------------------------------------------------------------- presigned URLs

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_get_and_put_urls() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "pre").await;
    let data = random_bytes(100 * 1024, 5);
    put(&c, "pre", "shared.bin", &data).await;

    let get_url = c
        .get_object()
        .bucket("pre")
        .key("shared.bin")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    assert_eq!(get_url.method(), "GET");
    assert!(get_url.uri().contains("X-Amz-Signature="));
    let resp = http().get(get_url.uri()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

    let upload = b"uploaded through a presigned URL".to_vec();
    let put_url = c
        .put_object()
        .bucket("pre")
        .key("dropbox/file.txt")
        .content_type("text/plain")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    assert_eq!(put_url.method(), "PUT");
    let mut req = http().put(put_url.uri()).body(upload.clone());
    for (name, value) in put_url.headers() {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "presigned PUT: {text}");
    let out = c
        .get_object()
        .bucket("pre")
        .key("dropbox/file.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), Some("text/plain"));
    assert_eq!(body(out).await, upload);

    // A tampered signature (same length, one hex digit changed) is rejected.
    let uri = get_url.uri();
    let at = uri.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &uri[at..at + 1] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &uri[..at], &uri[at + 1..]);
    let resp = http().get(tampered).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{text}"
    );
    // The URL is bound to its key.
    let other_key = get_url.uri().replace("shared.bin", "other.bin");
    let resp = http().get(other_key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_expires() {
    let (_s, c) = s3::start().await;
    create_bucket(&c, "pre").await;
    put(&c, "pre", "k", b"short-lived").await;

    // Signed for one second from a whole second (X-Amz-Date has second precision), taken
    // early in that second so the URL is still valid for the first request.
    let start = loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now.subsec_millis() < 500 {
            break UNIX_EPOCH + Duration::from_secs(now.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let presigned = c
        .get_object()
        .bucket("pre")
        .key("k")
        .presigned(
            PresigningConfig::builder()
                .start_time(start)
                .expires_in(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let resp = http().get(presigned.uri()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "valid right after signing");

    // Wait (polling the clock) until the expiry is past; then it is refused.
    let expired_at = start + Duration::from_secs(1) + Duration::from_millis(100);
    while SystemTime::now() < expired_at {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let resp = http().get(presigned.uri()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let text = resp.text().await.unwrap();
    assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");

    // One signed long ago is refused straight away.
    let presigned = c
        .get_object()
        .bucket("pre")
        .key("k")
        .presigned(
            PresigningConfig::builder()
                .start_time(SystemTime::now() - Duration::from_secs(3600))
                .expires_in(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let resp = http().get(presigned.uri()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------- auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_wrong_secret_is_signature_does_not_match() {
    let (s, c) = s3::start().await;
    create_bucket(&c, "bkt").await;
    let bad = client_with_keys(s.s3_addr, ACCESS_KEY, "not-the-secret-key-at-all");
    assert_fails(
        bad.list_buckets().send().await,
        403,
        "SignatureDoesNotMatch",
    );
    assert_fails(
        bad.put_object()
            .bucket("bkt")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        403,
        "SignatureDoesNotMatch",
    );
    let f = failure(c.head_object().bucket("bkt").key("k").send().await);
    assert_eq!(f.status, 404, "the rejected write stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_unknown_access_key_is_invalid_access_key_id() {
    let (s, _c) = s3::start().await;
    let bad = client_with_keys(s.s3_addr, "AKNOSUCHKEY000000000", SECRET_KEY);
    assert_fails(bad.list_buckets().send().await, 403, "InvalidAccessKeyId");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_anonymous_request_is_access_denied_xml() {
    let (s, c) = s3::start().await;
    create_bucket(&c, "private").await;
    put(&c, "private", "k", b"secret").await;
    for path in ["/", "/private", "/private/k"] {
        let resp = http()
            .get(format!("http://{}{path}", s.s3_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.contains("xml"), "{path}: content-type {ct:?}");
        let text = resp.text().await.unwrap();
        assert!(text.starts_with("<?xml"), "{path}: {text}");
        assert!(text.contains("<Code>AccessDenied</Code>"), "{path}: {text}");
        assert!(!text.contains("secret"), "{path}: no data leaked");
    }
    // An anonymous write is refused and stores nothing.
    let resp = http()
        .put(format!("http://{}/private/anon", s.s3_addr))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let f = failure(c.head_object().bucket("private").key("anon").send().await);
    assert_eq!(f.status, 404);
}

// ---------------------------------------------------------------- REST / S3 interop

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_rest_written_object_is_readable_via_s3() {
    let (s, c) = s3::start().await;
    let data = random_bytes(300 * 1024, 9);
    let j = s.put_object("shared", "from/rest.bin", &data).await;
    let rest_etag = j["etag"].as_str().unwrap().to_string();
    assert_eq!(rest_etag, md5_hex(&data));

    c.head_bucket().bucket("shared").send().await.unwrap();
    let out = c
        .get_object()
        .bucket("shared")
        .key("from/rest.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.e_tag(), Some(quoted(&rest_etag).as_str()));
    assert_eq!(out.content_length(), Some(data.len() as i64));
    assert_eq!(sha256_hex(&body(out).await), sha256_hex(&data));
    let keys = all_keys_v2(&c, "shared", None).await;
    assert_eq!(keys, ["from/rest.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_s3_written_object_is_readable_via_rest() {
    let (s, c) = s3::start().await;
    create_bucket(&c, "shared").await;
    let data = random_bytes(200 * 1024 + 5, 10);
    let etag = put(&c, "shared", "from/s3.bin", &data).await;

    let resp = s.get("/objects/shared/from/s3.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let rest_etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let got = resp.bytes().await.unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    assert_eq!(rest_etag.as_deref(), Some(etag.as_str()));

    // Interleaved: overwrite through REST, read through S3, delete through S3, REST sees 404.
    let newer = b"rewritten by REST".to_vec();
    s.put_object("shared", "from/s3.bin", &newer).await;
    assert_eq!(get(&c, "shared", "from/s3.bin").await, newer);
    c.delete_object()
        .bucket("shared")
        .key("from/s3.bin")
        .send()
        .await
        .unwrap();
    let (status, _) = s.get_object("shared", "from/s3.bin").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_use_ephemeral_loopback_ports() {
    let s = TestServer::start().await;
    assert!(s.s3_addr.ip().is_loopback());
    assert_ne!(s.s3_addr.port(), 0);
    assert_ne!(s.s3_addr, s.addr);
}
