//! The REST API of PRODUCT.md section 4, exercised over real HTTP against an in-process
//! server: what a client sees for objects, ranges, conditionals, listing, versioning,
//! tags, lifecycle, multipart uploads, buckets, health, metrics and authentication.

mod common;

use std::time::{Duration, SystemTime};

use common::{
    ACCESS_KEY, SECRET_KEY, TestServer, enc, error_code, md5_hex, metric_sum, random_bytes,
    sha256_hex,
};
use md5::{Digest, Md5};
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn json_of(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
}

/// The headers a GET and a HEAD of the same object must both carry.
fn assert_object_headers(resp: &Response, data: &[u8], content_type: &str) {
    let md5 = md5_hex(data);
    assert_eq!(
        header(resp, ETAG.as_str()),
        Some(format!("\"{md5}\"").as_str())
    );
    let lm = header(resp, LAST_MODIFIED.as_str()).expect("Last-Modified");
    let lm = httpdate::parse_http_date(lm).expect("Last-Modified is an HTTP date");
    let age = SystemTime::now()
        .duration_since(lm)
        .unwrap_or(Duration::ZERO);
    assert!(
        age < Duration::from_secs(120),
        "Last-Modified is {age:?} old"
    );
    assert_eq!(header(resp, CONTENT_TYPE.as_str()), Some(content_type));
    assert_eq!(header(resp, ACCEPT_RANGES.as_str()), Some("bytes"));
    assert_eq!(header(resp, "x-bucketdb-version-id"), Some("null"));
    let len = data.len().to_string();
    assert_eq!(header(resp, CONTENT_LENGTH.as_str()), Some(len.as_str()));
    assert!(
        header(resp, "x-request-id").is_some_and(|id| !id.is_empty()),
        "x-request-id missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_upload_get_head_metadata_and_multi_chunk_round_trip() {
    let s = TestServer::start().await;
    let data = b"hello, bucketdb! this object is small and kept inline.\n".to_vec();

    let resp = s
        .post("/objects/tour/dir/k.txt")
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-amz-meta-foo", "bar baz")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let j = json_of(resp).await;
    assert_eq!(j["key"], "dir/k.txt");
    assert_eq!(j["bucket"], "tour");
    assert_eq!(j["size"], data.len() as u64);
    assert_eq!(j["versionId"], "null");
    assert_eq!(j["etag"], md5_hex(&data));

    let resp = s.get("/objects/tour/dir/k.txt").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_object_headers(&resp, &data, "text/plain; charset=utf-8");
    assert_eq!(
        header(&resp, "x-bucketdb-sha256"),
        Some(sha256_hex(&data).as_str())
    );
    assert_eq!(header(&resp, "x-amz-meta-foo"), Some("bar baz"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

    let resp = s.head("/objects/tour/dir/k.txt").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_object_headers(&resp, &data, "text/plain; charset=utf-8");
    assert_eq!(
        header(&resp, "x-bucketdb-sha256"),
        Some(sha256_hex(&data).as_str())
    );
    assert_eq!(header(&resp, "x-amz-meta-foo"), Some("bar baz"));
    assert!(resp.bytes().await.unwrap().is_empty(), "HEAD has no body");

    // A 300 KiB object spans five 64 KiB chunks and must come back byte-identical.
    let big = random_bytes(300 * 1024, 1);
    let j = s.put_object("tour", "big/blob.bin", &big).await;
    assert_eq!(j["size"], big.len() as u64);
    assert_eq!(j["etag"], md5_hex(&big));
    let resp = s.get("/objects/tour/big/blob.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_object_headers(&resp, &big, "application/octet-stream");
    assert!(header(&resp, "x-bucketdb-sha256").is_some_and(|v| !v.is_empty()));
    let got = resp.bytes().await.unwrap();
    assert!(got.as_ref() == big.as_slice(), "multi-chunk object differs");
    assert!(
        s.chunk_files().len() >= 5,
        "a 300 KiB object is stored as chunk files"
    );

    s.shutdown().await;
}

/// Standard headers given on upload come back on GET and HEAD; a bad Expires is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_headers_are_stored_and_returned() {
    let s = TestServer::start().await;
    let resp = s
        .post("/objects/web/app.js")
        .header("Cache-Control", "public, max-age=60")
        .header("Content-Disposition", "inline")
        .header("Content-Language", "de")
        .header("Expires", "Wed, 21 Oct 2037 07:28:00 GMT")
        .body("let x = 1;")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    for resp in [
        s.get("/objects/web/app.js").send().await.unwrap(),
        s.head("/objects/web/app.js").send().await.unwrap(),
    ] {
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "cache-control"), Some("public, max-age=60"));
        assert_eq!(header(&resp, "content-disposition"), Some("inline"));
        assert_eq!(header(&resp, "content-language"), Some("de"));
        assert_eq!(
            header(&resp, "expires"),
            Some("Wed, 21 Oct 2037 07:28:00 GMT")
        );
    }
    let resp = s
        .post("/objects/web/bad.js")
        .header("Expires", "tomorrow")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_return_206_and_unsatisfiable_ranges_416() {
    let s = TestServer::start().await;
    let small = random_bytes(1000, 2);
    s.put_object("ranges", "small", &small).await;
    let big = random_bytes(200 * 1024, 3);
    s.put_object("ranges", "big", &big).await;

    for (key, data) in [("small", &small), ("big", &big)] {
        let size = data.len();
        let path = format!("/objects/ranges/{key}");
        let cases: [(&str, usize, usize); 3] = [
            ("bytes=0-9", 0, 9),
            ("bytes=-5", size - 5, size - 1),
            ("bytes=100-", 100, size - 1),
        ];
        for (range, from, to) in cases {
            let resp = s.get(&path).header(RANGE, range).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{key} {range}");
            let want_cr = format!("bytes {from}-{to}/{size}");
            assert_eq!(
                header(&resp, CONTENT_RANGE.as_str()),
                Some(want_cr.as_str())
            );
            let want_len = (to - from + 1).to_string();
            assert_eq!(
                header(&resp, CONTENT_LENGTH.as_str()),
                Some(want_len.as_str())
            );
            let got = resp.bytes().await.unwrap();
            assert!(
                got.as_ref() == &data[from..=to],
                "{key} {range}: wrong bytes"
            );
        }

        let resp = s
            .get(&path)
            .header(RANGE, format!("bytes={size}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        let want = format!("bytes */{size}");
        assert_eq!(header(&resp, CONTENT_RANGE.as_str()), Some(want.as_str()));
        assert_eq!(error_code(resp).await, "InvalidRange");
    }

    // A range across a chunk boundary of the chunked object.
    let resp = s
        .get("/objects/ranges/big")
        .header(RANGE, "bytes=65530-65545")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &big[65530..=65545]);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_get_answers_304_and_412() {
    let s = TestServer::start().await;
    let data = random_bytes(5000, 4);
    s.put_object("cond", "obj", &data).await;
    let etag = format!("\"{}\"", md5_hex(&data));
    let path = "/objects/cond/obj";

    let resp = s
        .get(path)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&resp, ETAG.as_str()), Some(etag.as_str()));
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = s
        .get(path)
        .header(IF_NONE_MATCH, "\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let resp = s
        .get(path)
        .header(IF_MODIFIED_SINCE, &future)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert!(resp.bytes().await.unwrap().is_empty());

    let past = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800));
    let resp = s
        .get(path)
        .header(IF_MODIFIED_SINCE, &past)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

    let resp = s
        .get(path)
        .header(IF_MATCH, "\"ffffffffffffffffffffffffffffffff\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(resp).await, "PreconditionFailed");

    let resp = s.get(path).header(IF_MATCH, &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

    // HEAD honours the same preconditions.
    let resp = s
        .head(path)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    s.shutdown().await;
}

/// Walk every page of a listing; returns (object keys, prefixes) in the order served.
async fn list_all(
    s: &TestServer,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    limit: usize,
) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    let mut cursor: Option<String> = None;
    for _page in 0..100 {
        let mut path = format!("/objects/{bucket}?prefix={}&limit={limit}", enc(prefix));
        if let Some(d) = delimiter {
            path.push_str(&format!("&delimiter={}", enc(d)));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let resp = s.get(&path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let page = json_of(resp).await;
        let objs = page["objects"].as_array().expect("objects array");
        let pfx = page["prefixes"].as_array().expect("prefixes array");
        assert!(
            objs.len() + pfx.len() <= limit,
            "page larger than the limit: {page}"
        );
        for o in objs {
            assert_eq!(o["bucket"], bucket);
            keys.push(o["key"].as_str().unwrap().to_string());
        }
        prefixes.extend(pfx.iter().map(|p| p.as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (keys, prefixes),
        }
    }
    panic!("listing did not end after 100 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paginates_every_entry_exactly_once_with_prefixes() {
    let s = TestServer::start().await;
    let keys = [
        "a.txt",
        "b.txt",
        "dir1/x",
        "dir1/y",
        "dir2/sub/w",
        "dir2/z",
        "e.txt",
        "f/g",
        "z.txt",
    ];
    for (i, k) in keys.iter().enumerate() {
        s.put_object("listing", k, format!("body {i}").as_bytes())
            .await;
    }

    // Flat listing: every key once, in order, whatever the page size.
    for limit in [1, 2, 3, 1000] {
        let (got, prefixes) = list_all(&s, "listing", "", None, limit).await;
        assert_eq!(got, keys, "limit {limit}");
        assert!(prefixes.is_empty());
    }

    // With a delimiter, directories roll up into prefixes reported once each.
    for limit in [1, 2, 5] {
        let (got, prefixes) = list_all(&s, "listing", "", Some("/"), limit).await;
        assert_eq!(got, ["a.txt", "b.txt", "e.txt", "z.txt"], "limit {limit}");
        assert_eq!(prefixes, ["dir1/", "dir2/", "f/"], "limit {limit}");
    }

    // A prefix narrows the listing; nested directories become prefixes below it.
    let (got, prefixes) = list_all(&s, "listing", "dir2/", Some("/"), 1).await;
    assert_eq!(got, ["dir2/z"]);
    assert_eq!(prefixes, ["dir2/sub/"]);
    let (got, prefixes) = list_all(&s, "listing", "dir1/", None, 1).await;
    assert_eq!(got, ["dir1/x", "dir1/y"]);
    assert!(prefixes.is_empty());

    // The object entries describe the objects.
    let resp = s.get("/objects/listing?prefix=a.txt").send().await.unwrap();
    let page = json_of(resp).await;
    let o = &page["objects"][0];
    assert_eq!(o["key"], "a.txt");
    assert_eq!(o["size"], 6);
    assert_eq!(o["etag"], md5_hex(b"body 0"));
    assert!(page["nextCursor"].is_null());

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_keeps_versions_and_delete_markers_can_be_removed() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/versioned").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get("/versioning/versioned").send().await.unwrap();
    assert_eq!(json_of(resp).await["status"], "Unversioned");

    let resp = s
        .put("/versioning/versioned")
        .json(&json!({"status": "Enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await["status"], "Enabled");
    let resp = s.get("/versioning/versioned").send().await.unwrap();
    assert_eq!(json_of(resp).await["status"], "Enabled");

    let v1 = s.put_object("versioned", "doc.txt", b"version one").await;
    let v2 = s.put_object("versioned", "doc.txt", b"version two!").await;
    let (id1, id2) = (
        v1["versionId"].as_str().unwrap().to_string(),
        v2["versionId"].as_str().unwrap().to_string(),
    );
    assert_ne!(id1, "null");
    assert_ne!(id2, "null");
    assert_ne!(id1, id2);

    let list = json_of(s.get("/versions/versioned/doc.txt").send().await.unwrap()).await;
    let versions = list["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["versionId"], id2.as_str());
    assert_eq!(versions[0]["isLatest"], true);
    assert_eq!(versions[1]["versionId"], id1.as_str());
    assert_eq!(versions[1]["isLatest"], false);

    let (status, body) = s.get_object("versioned", "doc.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"version two!");
    let resp = s
        .get(&format!("/objects/versioned/doc.txt?versionId={id1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-bucketdb-version-id"), Some(id1.as_str()));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"version one");

    // Deleting without a version id adds a delete marker.
    let resp = s.delete("/objects/versioned/doc.txt").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "x-bucketdb-delete-marker"), Some("true"));
    let marker = header(&resp, "x-bucketdb-version-id")
        .expect("marker version id")
        .to_string();
    assert!(marker != id1 && marker != id2);
    let resp = s.get("/objects/versioned/doc.txt").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchKey");

    let list = json_of(s.get("/versions/versioned/doc.txt").send().await.unwrap()).await;
    let versions = list["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["versionId"], marker.as_str());
    assert_eq!(versions[0]["deleteMarker"], true);
    assert_eq!(versions[0]["isLatest"], true);

    // Old versions stay readable behind the marker.
    let resp = s
        .get(&format!("/objects/versioned/doc.txt?versionId={id2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"version two!");

    // Removing the marker restores the previous version.
    let resp = s
        .delete(&format!("/objects/versioned/doc.txt?versionId={marker}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, body) = s.get_object("versioned", "doc.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"version two!");
    let list = json_of(s.get("/versions/versioned/doc.txt").send().await.unwrap()).await;
    assert_eq!(list["versions"].as_array().unwrap().len(), 2);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_round_trip_are_limited_to_ten_and_can_be_cleared() {
    let s = TestServer::start().await;
    s.put_object("tagged", "dir/k", b"tag me").await;

    let resp = s
        .put("/objects/tagged/dir/k/tags")
        .json(&json!({"env": "prod", "team": "storage"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.get("/objects/tagged/dir/k?tags").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        json_of(resp).await,
        json!({"env": "prod", "team": "storage"})
    );

    let eleven: serde_json::Map<String, Value> = (0..11)
        .map(|i| (format!("k{i}"), Value::String(format!("v{i}"))))
        .collect();
    let resp = s
        .put("/objects/tagged/dir/k/tags")
        .json(&eleven)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "InvalidTag");
    let resp = s.get("/objects/tagged/dir/k?tags").send().await.unwrap();
    assert_eq!(
        json_of(resp).await,
        json!({"env": "prod", "team": "storage"}),
        "a rejected tag set changes nothing"
    );

    let resp = s.delete("/objects/tagged/dir/k?tags").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = s.get("/objects/tagged/dir/k?tags").send().await.unwrap();
    assert_eq!(json_of(resp).await, json!({}));
    // Clearing tags does not delete the object.
    let (status, body) = s.get_object("tagged", "dir/k").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"tag me");

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rules_put_get_delete_and_reject_invalid() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/logs-bucket").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let resp = s.get("/lifecycle/logs-bucket").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchLifecycleConfiguration");

    let doc = json!({
        "bucket": "logs-bucket",
        "rules": [{"id": "cleanup", "status": "Enabled", "prefix": "logs/", "expirationDays": 7}]
    });
    let resp = s
        .put("/lifecycle/logs-bucket")
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await, doc);
    let resp = s.get("/lifecycle/logs-bucket").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await, doc);

    let resp = s.delete("/lifecycle/logs-bucket").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = s.get("/lifecycle/logs-bucket").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchLifecycleConfiguration");

    let invalid = json!({
        "bucket": "logs-bucket",
        "rules": [{"id": "cleanup", "status": "Enabled", "prefix": "logs/", "expirationDays": 0}]
    });
    let resp = s
        .put("/lifecycle/logs-bucket")
        .json(&invalid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    error_code(resp).await;
    let resp = s.get("/lifecycle/logs-bucket").send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "invalid rules are not stored"
    );

    s.shutdown().await;
}

async fn create_upload(s: &TestServer, path: &str) -> String {
    let resp = s
        .post(path)
        .header(CONTENT_TYPE, "video/mp4")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let j = json_of(resp).await;
    j["uploadId"].as_str().expect("uploadId").to_string()
}

async fn upload_part(s: &TestServer, path: &str, id: &str, n: u32, data: &[u8]) -> String {
    let resp = s
        .post(&format!("{path}?uploadId={id}&partNumber={n}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "part {n}");
    let j = json_of(resp).await;
    assert_eq!(j["etag"], md5_hex(data), "part {n} ETag is its MD5");
    j["etag"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_completes_lists_parts_and_aborts() {
    let s = TestServer::start_with(|c| c.max_object_size = 16 * 1024 * 1024).await;
    let path = "/multipart/movies/film.mp4";
    let id = create_upload(&s, path).await;

    let p1 = random_bytes(5 * 1024 * 1024 + 17, 10);
    let p2 = random_bytes(100 * 1024, 11);
    let e1 = upload_part(&s, path, &id, 1, &p1).await;
    let e2 = upload_part(&s, path, &id, 2, &p2).await;

    let resp = s
        .get(&format!("{path}?uploadId={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let listed = json_of(resp).await;
    let parts = listed["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["partNumber"], 1);
    assert_eq!(parts[0]["size"], p1.len() as u64);
    assert_eq!(parts[0]["etag"], e1.as_str());
    assert_eq!(parts[1]["partNumber"], 2);
    assert_eq!(parts[1]["size"], p2.len() as u64);

    let resp = s
        .put(&format!("{path}?uploadId={id}"))
        .json(&json!({"parts": [
            {"partNumber": 1, "etag": e1},
            {"partNumber": 2, "etag": format!("\"{e2}\"")},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let obj = json_of(resp).await;
    let mut md5s = Md5::new();
    md5s.update(hex::decode(&e1).unwrap());
    md5s.update(hex::decode(&e2).unwrap());
    let want_etag = format!("{}-2", hex::encode(md5s.finalize()));
    assert_eq!(obj["etag"], want_etag.as_str());
    assert!(want_etag.ends_with("-2"));
    assert_eq!(obj["key"], "film.mp4");
    assert_eq!(obj["size"], (p1.len() + p2.len()) as u64);

    let resp = s.get("/objects/movies/film.mp4").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_TYPE.as_str()), Some("video/mp4"));
    assert_eq!(
        header(&resp, ETAG.as_str()),
        Some(format!("\"{want_etag}\"").as_str())
    );
    let got = resp.bytes().await.unwrap();
    let mut whole = p1.clone();
    whole.extend_from_slice(&p2);
    assert!(got.as_ref() == whole.as_slice(), "assembled object differs");

    // A completed upload is gone.
    let resp = s
        .get(&format!("{path}?uploadId={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchUpload");

    // Abort: the upload and its parts disappear.
    let id2 = create_upload(&s, "/multipart/movies/other.mp4").await;
    upload_part(&s, "/multipart/movies/other.mp4", &id2, 1, &p2).await;
    let resp = s
        .delete(&format!("/multipart/movies/other.mp4?uploadId={id2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = s
        .get(&format!("/multipart/movies/other.mp4?uploadId={id2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchUpload");
    let resp = s.get("/objects/movies/other.mp4").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_complete_rejects_wrong_etag_and_small_parts() {
    let s = TestServer::start().await;
    let path = "/multipart/parts/k.bin";
    let id = create_upload(&s, path).await;
    let p1 = random_bytes(100 * 1024, 20);
    let p2 = random_bytes(10, 21);
    let e1 = upload_part(&s, path, &id, 1, &p1).await;
    let e2 = upload_part(&s, path, &id, 2, &p2).await;

    let resp = s
        .put(&format!("{path}?uploadId={id}"))
        .json(&json!({"parts": [
            {"partNumber": 1, "etag": "0123456789abcdef0123456789abcdef"},
            {"partNumber": 2, "etag": e2},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "InvalidPart");

    let resp = s
        .put(&format!("{path}?uploadId={id}"))
        .json(&json!({"parts": [
            {"partNumber": 1, "etag": e1},
            {"partNumber": 2, "etag": e2},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "EntityTooSmall");

    // Neither failure completed the upload or created the object.
    let resp = s
        .get(&format!("{path}?uploadId={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await["parts"].as_array().unwrap().len(), 2);
    let resp = s.get("/objects/parts/k.bin").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A single small part is fine: the last part has no minimum.
    let resp = s
        .put(&format!("{path}?uploadId={id}"))
        .json(&json!({"parts": [{"partNumber": 2, "etag": e2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (status, body) = s.get_object("parts", "k.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, p2);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_create_list_and_delete_only_when_empty() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/photos").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json_of(resp).await["name"], "photos");

    let resp = s.put("/buckets/photos").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(resp).await, "BucketAlreadyOwnedByYou");

    let names = |v: Value| -> Vec<String> {
        v["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = names(json_of(s.get("/buckets").send().await.unwrap()).await);
    assert_eq!(listed, ["photos"]);

    s.put_object("photos", "cat.jpg", b"meow").await;
    let resp = s.delete("/buckets/photos").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(resp).await, "BucketNotEmpty");
    let (status, _) = s.get_object("photos", "cat.jpg").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a refused bucket delete keeps objects"
    );

    let resp = s.delete("/objects/photos/cat.jpg").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = s.delete("/buckets/photos").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let listed = names(json_of(s.get("/buckets").send().await.unwrap()).await);
    assert!(listed.is_empty(), "{listed:?}");
    let resp = s.get("/objects/photos/cat.jpg").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchBucket");

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_cluster_and_metrics_report_the_node() {
    let s = TestServer::start().await;
    for path in ["/health/live", "/health/ready"] {
        let resp = s.anon(Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }

    let resp = s.anon(Method::GET, "/cluster").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let text = s.metrics().await;
    assert!(text.contains("bucketdb_requests_total"), "{text}");
    let puts_before = metric_sum(
        &text,
        "bucketdb_requests_total",
        &["operation=\"PutObject\""],
    );

    for i in 0..3 {
        s.put_object("metered", &format!("obj-{i}"), b"data").await;
    }

    let resp = s.get("/cluster").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cluster = json_of(resp).await;
    let nodes = cluster["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{cluster}");
    assert_eq!(nodes[0]["objectCount"], 3, "{cluster}");
    assert!(nodes[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        nodes[0]["address"],
        s.addr.to_string(),
        "the bound address, not port 0"
    );

    let resp = s.anon(Method::GET, "/metrics").send().await.unwrap();
    assert!(
        header(&resp, CONTENT_TYPE.as_str()).is_some_and(|c| c.starts_with("text/plain")),
        "Prometheus text"
    );
    let text = resp.text().await.unwrap();
    let puts_after = metric_sum(
        &text,
        "bucketdb_requests_total",
        &["operation=\"PutObject\""],
    );
    assert_eq!(puts_after - puts_before, 3.0, "{text}");
    assert_eq!(
        metric_sum(&text, "bucketdb_stored_bytes", &[]),
        12.0,
        "{text}"
    );
    assert_eq!(metric_sum(&text, "bucketdb_objects", &[]), 3.0, "{text}");
    assert_eq!(
        metric_sum(
            &text,
            "bucketdb_requests_total",
            &["operation=\"PutObject\"", "status=\"201\""]
        ),
        3.0
    );

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_rejects_missing_and_wrong_credentials_with_the_right_codes() {
    let s = TestServer::start().await;

    let resp = s.anon(Method::GET, "/buckets").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&resp, WWW_AUTHENTICATE.as_str()).is_some_and(|v| v.starts_with("Basic")),
        "WWW-Authenticate names Basic"
    );
    assert_eq!(error_code(resp).await, "AccessDenied");

    let resp = s
        .anon(Method::GET, "/buckets")
        .basic_auth(ACCESS_KEY, Some("not-the-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(resp).await, "SignatureDoesNotMatch");

    let resp = s
        .anon(Method::GET, "/buckets")
        .basic_auth("NOSUCHACCESSKEY", Some(SECRET_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(resp).await, "InvalidAccessKeyId");

    let resp = s.get("/buckets").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tokens_are_minted_accepted_and_tamper_evident() {
    let s = TestServer::start().await;

    let resp = s.post("/auth/token").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let j = json_of(resp).await;
    let token = j["token"].as_str().expect("token").to_string();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(j["expiresAt"].as_u64().is_some_and(|e| e > now));

    // The JSON form mints too; wrong credentials mint nothing.
    let resp = s
        .anon(Method::POST, "/auth/token")
        .json(&json!({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s
        .anon(Method::POST, "/auth/token")
        .basic_auth(ACCESS_KEY, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(resp).await, "SignatureDoesNotMatch");

    let resp = s
        .anon(Method::POST, "/objects/tokens/by-token.txt")
        .bearer_auth(&token)
        .body("via bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .anon(Method::GET, "/objects/tokens/by-token.txt")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"via bearer");

    // Flip one character of the signature, then of the payload.
    let (payload, sig) = token.split_once('.').unwrap();
    let flip = |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        chars[1] = if chars[1] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    for bad in [
        format!("{payload}.{}", flip(sig)),
        format!("{}.{sig}", flip(payload)),
        payload.to_string(),
        "garbage".to_string(),
    ] {
        let resp = s
            .anon(Method::GET, "/objects/tokens/by-token.txt")
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "token {bad}");
        let body = resp.bytes().await.unwrap();
        assert!(!body.windows(10).any(|w| w == b"via bearer"));
        assert_eq!(common::error_code_of(&body), "InvalidToken");
    }

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_never_reach_data() {
    let s = TestServer::start().await;
    let resp = s.put("/buckets/private").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Writes without (valid) credentials create nothing.
    let resp = s
        .anon(Method::POST, "/objects/private/planted.txt")
        .body("planted")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .anon(Method::POST, "/objects/private/planted.txt")
        .basic_auth(ACCESS_KEY, Some("guess"))
        .body("planted")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = s
        .anon(Method::POST, "/objects/newbucket/planted.txt")
        .body("planted")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s.get("/objects/private/planted.txt").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchKey");
    let resp = s
        .get("/objects/newbucket/planted.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NoSuchBucket");

    // Reads without credentials return no object bytes or metadata.
    let secret = b"the launch codes are 0000".to_vec();
    s.put_object("private", "secret.txt", &secret).await;
    let leaks = |body: &[u8]| body.windows(secret.len()).any(|w| w == secret.as_slice());
    for range in [None, Some("bytes=0-9")] {
        let mut req = s.anon(Method::GET, "/objects/private/secret.txt");
        if let Some(r) = range {
            req = req.header(RANGE, r);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&resp, "x-bucketdb-sha256").is_none());
        assert!(header(&resp, ETAG.as_str()).is_none());
        let body = resp.bytes().await.unwrap();
        assert!(!leaks(&body));
        assert!(!body.windows(10).any(|w| w == b"the launch"));
    }
    let resp = s
        .anon(Method::HEAD, "/objects/private/secret.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&resp, ETAG.as_str()).is_none());
    let resp = s
        .anon(Method::GET, "/objects/private")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!resp.text().await.unwrap().contains("secret.txt"));
    let resp = s
        .anon(Method::GET, "/versions/private/secret.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Deletes without credentials delete nothing.
    let resp = s
        .anon(Method::DELETE, "/objects/private/secret.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .anon(Method::DELETE, "/buckets/private")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = s.get_object("private", "secret.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, secret);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_mint_another_token() {
    let s = TestServer::start().await;
    let j = json_of(s.post("/auth/token").send().await.unwrap()).await;
    let token = j["token"].as_str().expect("token").to_string();
    let resp = s
        .anon(Method::POST, "/auth/token")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_malformed_bucket_paths_get_json_errors() {
    let s = TestServer::start().await;
    let resp = s
        .req(Method::PATCH, "/objects/somebucket/key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(resp).await, "MethodNotAllowed");
    let resp = s.post("/buckets/somebucket").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(resp).await, "MethodNotAllowed");
    for path in ["/buckets/%C3", "/versioning/%FF%FE", "/lifecycle/%C3"] {
        let resp = s.get(path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(resp).await, "InvalidRequest", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_compares_strongly_and_if_none_match_weakly() {
    let s = TestServer::start().await;
    let etag = s.put_object("etags", "k", b"content").await["etag"]
        .as_str()
        .unwrap()
        .to_string();
    let weak = format!("W/\"{etag}\"");
    let resp = s
        .get("/objects/etags/k")
        .header("If-Match", &weak)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let resp = s
        .get("/objects/etags/k")
        .header("If-None-Match", &weak)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_buckets_serve_anonymous_gets_only() {
    let s = TestServer::start().await;
    s.put_object("public-stuff", "page.html", b"<h1>hi</h1>")
        .await;
    let anon_get = || {
        s.anon(Method::GET, "/objects/public-stuff/page.html")
            .send()
    };
    assert_eq!(anon_get().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let resp = s
        .put("/acl/public-stuff")
        .json(&json!({"publicRead": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = anon_get().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"<h1>hi</h1>");
    // Reading is all: no anonymous writes, deletes or listings of other buckets.
    let resp = s
        .anon(Method::POST, "/objects/public-stuff/new.txt")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .anon(Method::DELETE, "/objects/public-stuff/page.html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s.anon(Method::GET, "/buckets").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    s.put("/acl/public-stuff")
        .json(&json!({"publicRead": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon_get().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let j = json_of(s.get("/acl/public-stuff").send().await.unwrap()).await;
    assert_eq!(j["publicRead"], json!(false));
}
