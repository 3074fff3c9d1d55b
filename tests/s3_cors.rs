//! Bucket CORS against a real server: the configuration round-trips through aws-sdk-s3,
//! browsers' unauthenticated preflight requests are answered from the bucket's rules,
//! and actual requests from an allowed origin carry the `Access-Control-*` headers.

mod common;
#[path = "common/s3.rs"]
mod s3;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use reqwest::{Method, StatusCode};
use s3::{assert_fails, failure};

fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
    let mut b = CorsRule::builder()
        .max_age_seconds(600)
        .expose_headers("ETag");
    for o in origins {
        b = b.allowed_origins(*o);
    }
    for m in methods {
        b = b.allowed_methods(*m);
    }
    for h in headers {
        b = b.allowed_headers(*h);
    }
    b.build().expect("a complete CORS rule")
}

async fn put_cors(c: &Client, bucket: &str, rules: Vec<CorsRule>) {
    c.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .set_cors_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put bucket CORS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_configuration_round_trip_and_errors() {
    let (_s, c) = s3::start().await;
    c.create_bucket().bucket("web").send().await.unwrap();
    assert_fails(
        c.get_bucket_cors().bucket("web").send().await,
        404,
        "NoSuchCORSConfiguration",
    );
    put_cors(
        &c,
        "web",
        vec![
            rule(&["https://app.example"], &["GET", "HEAD"], &[]),
            rule(
                &["https://*.example"],
                &["PUT"],
                &["content-type", "x-amz-*"],
            ),
        ],
    )
    .await;
    let got = c.get_bucket_cors().bucket("web").send().await.unwrap();
    let rules = got.cors_rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].allowed_origins(), ["https://app.example"]);
    assert_eq!(rules[0].allowed_methods(), ["GET", "HEAD"]);
    assert_eq!(rules[1].allowed_headers(), ["content-type", "x-amz-*"]);
    assert_eq!(rules[1].expose_headers(), ["ETag"]);
    assert_eq!(rules[1].max_age_seconds(), Some(600));

    // An unsupported method or a doubled wildcard is refused, and the old rules stay.
    let f = failure(
        c.put_bucket_cors()
            .bucket("web")
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(rule(&["*"], &["PATCH"], &[]))
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    assert_eq!((f.status, f.code.as_deref()), (400, Some("InvalidRequest")));
    let f = failure(
        c.put_bucket_cors()
            .bucket("web")
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(rule(&["https://*.*"], &["GET"], &[]))
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    assert_eq!((f.status, f.code.as_deref()), (400, Some("InvalidRequest")));
    assert_eq!(
        c.get_bucket_cors()
            .bucket("web")
            .send()
            .await
            .unwrap()
            .cors_rules()
            .len(),
        2
    );
    assert_fails(
        c.put_bucket_cors()
            .bucket("missing")
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(rule(&["*"], &["GET"], &[]))
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        404,
        "NoSuchBucket",
    );

    c.delete_bucket_cors().bucket("web").send().await.unwrap();
    assert_fails(
        c.get_bucket_cors().bucket("web").send().await,
        404,
        "NoSuchCORSConfiguration",
    );
}

/// An unauthenticated preflight request to the S3 port.
fn preflight(
    s: &common::TestServer,
    path: &str,
    origin: Option<&str>,
    method: Option<&str>,
    headers: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = s
        .client
        .request(Method::OPTIONS, format!("http://{}{path}", s.s3_addr));
    if let Some(o) = origin {
        r = r.header("Origin", o);
    }
    if let Some(m) = method {
        r = r.header("Access-Control-Request-Method", m);
    }
    if let Some(h) = headers {
        r = r.header("Access-Control-Request-Headers", h);
    }
    r
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

async fn error_code(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap();
    let start = text.find("<Code>").expect("an S3 XML error") + "<Code>".len();
    let end = text[start..].find("</Code>").unwrap();
    text[start..start + end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_requests_follow_the_bucket_rules() {
    let (s, c) = s3::start().await;
    c.create_bucket().bucket("web").send().await.unwrap();

    // No configuration yet: browsers are refused.
    let r = preflight(
        &s,
        "/web/a.txt",
        Some("https://app.example"),
        Some("GET"),
        None,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "AccessForbidden");

    put_cors(
        &c,
        "web",
        vec![
            rule(&["https://app.example"], &["GET", "HEAD"], &[]),
            rule(
                &["https://*.example"],
                &["PUT"],
                &["content-type", "x-amz-*"],
            ),
        ],
    )
    .await;

    let r = preflight(
        &s,
        "/web/a.txt",
        Some("https://app.example"),
        Some("GET"),
        None,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header(&r, "access-control-allow-methods").as_deref(),
        Some("GET, HEAD")
    );
    assert_eq!(header(&r, "access-control-max-age").as_deref(), Some("600"));
    assert_eq!(
        header(&r, "access-control-expose-headers").as_deref(),
        Some("ETag")
    );

    // A wildcard origin rule with requested headers matching its header patterns.
    let r = preflight(
        &s,
        "/web/upload.bin",
        Some("https://uploads.example"),
        Some("PUT"),
        Some("Content-Type, X-Amz-Date"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("content-type, x-amz-date")
    );

    // A header no rule allows, a method no rule allows, an origin no rule allows.
    for (origin, method, headers) in [
        (
            "https://uploads.example",
            "PUT",
            Some("authorization, x-custom"),
        ),
        ("https://app.example", "DELETE", None),
        ("https://evil.test", "GET", None),
    ] {
        let r = preflight(&s, "/web/a.txt", Some(origin), Some(method), headers)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin} {method}");
        assert!(header(&r, "access-control-allow-origin").is_none());
        assert_eq!(error_code(r).await, "AccessForbidden");
    }

    // Without Origin or the requested method it is not a preflight S3 can answer.
    let r = preflight(&s, "/web/a.txt", None, Some("GET"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = preflight(&s, "/web/a.txt", Some("https://app.example"), None, None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A bucket that does not exist.
    let r = preflight(
        &s,
        "/nope/a.txt",
        Some("https://app.example"),
        Some("GET"),
        None,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NoSuchBucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_to_allowed_origins_carry_cors_headers() {
    let (s, c) = s3::start().await;
    c.create_bucket().bucket("site").send().await.unwrap();
    c.put_object()
        .bucket("site")
        .key("index.html")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"<p>hi</p>",
        ))
        .send()
        .await
        .unwrap();
    c.put_bucket_acl()
        .bucket("site")
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    put_cors(&c, "site", vec![rule(&["*"], &["GET"], &[])]).await;

    let url = format!("http://{}/site/index.html", s.s3_addr);
    let r = s
        .client
        .get(&url)
        .header("Origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        header(&r, "access-control-expose-headers").as_deref(),
        Some("ETag")
    );
    assert!(header(&r, "vary").is_some_and(|v| v.contains("Origin")));
    assert_eq!(r.text().await.unwrap(), "<p>hi</p>");

    // HEAD is not in the rule: the response itself is unchanged but carries no grant.
    let r = s
        .client
        .head(&url)
        .header("Origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "access-control-allow-origin").is_none());

    // Requests without Origin are not touched.
    let r = s.client.get(&url).send().await.unwrap();
    assert!(header(&r, "access-control-allow-origin").is_none());
    assert!(header(&r, "vary").is_none());
}
