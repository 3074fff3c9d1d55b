//! The web console's HTTP side against a real server: static assets (unauthenticated,
//! locked down), the session endpoints (cookie flags, expiry, CSRF header, logout), the
//! REST API authenticated by the session cookie, `/stats` and version restore.

mod common;

use bucketdb_api::Credentials;
use bucketdb_api::console::{CONSOLE_HEADER, SESSION_COOKIE, SESSION_TTL_SECS};
use common::{ACCESS_KEY, SECRET_KEY, TestServer, error_code};
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// Log in through `POST /console/session`; the response (status checked by callers).
async fn login(s: &TestServer, access_key: &str, secret_key: &str) -> Response {
    s.anon(Method::POST, "/console/session")
        .header(CONSOLE_HEADER, "1")
        .json(&json!({"accessKey": access_key, "secretKey": secret_key}))
        .send()
        .await
        .expect("login request")
}

fn set_cookie(resp: &Response) -> String {
    resp.headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie header")
        .to_string()
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .expect("a cookie pair")
        .to_string()
}

/// A logged-in session's `Cookie` header value.
async fn session(s: &TestServer) -> String {
    let resp = login(s, ACCESS_KEY, SECRET_KEY).await;
    assert_eq!(resp.status(), StatusCode::OK);
    cookie_pair(&set_cookie(&resp))
}

/// A request carrying only the session cookie (and, when `console`, the console header).
fn with_cookie(
    s: &TestServer,
    method: Method,
    path: &str,
    cookie: &str,
    console: bool,
) -> reqwest::RequestBuilder {
    let req = s.anon(method, path).header(COOKIE, cookie);
    if console {
        req.header(CONSOLE_HEADER, "1")
    } else {
        req
    }
}

/// Send `req`, expecting success; the JSON body.
async fn json_ok(req: RequestBuilder) -> Value {
    let resp = req.send().await.unwrap().error_for_status().unwrap();
    resp.json().await.unwrap()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[tokio::test]
async fn the_page_and_assets_need_no_credentials_and_are_locked_down() {
    let s = TestServer::start().await;
    let page = s.anon(Method::GET, "/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let etag = page.headers()["etag"].clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/assets/js/main.js"));

    // Unchanged assets revalidate with 304.
    let again = s
        .anon(Method::GET, "/")
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let js = s
        .anon(Method::GET, "/console/assets/js/main.js")
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(
        js.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for missing in ["/console/assets/nope.js", "/console/assets/../Cargo.toml"] {
        let r = s.anon(Method::GET, missing).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
    }

    // The data behind the console is not public. The console's own requests get no
    // Basic challenge (the browser would pop up its login dialog over the console's).
    for path in ["/stats", "/cluster", "/buckets"] {
        let r = s.anon(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = s
            .anon(Method::GET, path)
            .header(CONSOLE_HEADER, "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(!r.headers().contains_key("www-authenticate"), "{path}");
        assert_eq!(error_code(r).await, "InvalidSession");
    }
    let r = s
        .anon(Method::GET, "/console/session")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"authenticated": false})
    );
    s.shutdown().await;
}

#[tokio::test]
async fn login_sets_an_http_only_strict_expiring_cookie() {
    let s = TestServer::start().await;
    let before = now_unix();
    let resp = login(&s, ACCESS_KEY, SECRET_KEY).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let header = set_cookie(&resp);
    let attrs: Vec<&str> = header.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with(&format!("{SESSION_COOKIE}=")));
    for want in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        &format!("Max-Age={SESSION_TTL_SECS}"),
    ] {
        assert!(attrs.contains(&want), "{want} missing from {header}");
    }
    assert!(!attrs.contains(&"Secure"), "plain HTTP: no Secure flag");
    assert!(!header.contains(SECRET_KEY));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accessKey"], ACCESS_KEY);
    let expires = body["expiresAt"].as_u64().unwrap();
    assert!(expires >= before + SESSION_TTL_SECS && expires <= now_unix() + SESSION_TTL_SECS);

    // The cookie authenticates reads of the REST API and the session status.
    let cookie = cookie_pair(&header);
    let r = with_cookie(&s, Method::GET, "/buckets", &cookie, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = with_cookie(&s, Method::GET, "/console/session", &cookie, false)
        .send()
        .await
        .unwrap();
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["accessKey"], ACCESS_KEY);

    // Behind a TLS-terminating proxy the cookie is Secure.
    let proxied = s
        .anon(Method::POST, "/console/session")
        .header(CONSOLE_HEADER, "1")
        .header("x-forwarded-proto", "https")
        .json(&json!({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}))
        .send()
        .await
        .unwrap();
    assert!(
        set_cookie(&proxied)
            .split(';')
            .any(|a| a.trim() == "Secure")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn wrong_keys_and_missing_console_header_are_refused_without_a_cookie() {
    let s = TestServer::start().await;
    for (ak, sk, code) in [
        (ACCESS_KEY, "wrong", "SignatureDoesNotMatch"),
        ("nobody", SECRET_KEY, "InvalidAccessKeyId"),
    ] {
        let r = login(&s, ak, sk).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(SET_COOKIE).is_none());
        assert_eq!(error_code(r).await, code);
    }
    // A cross-site form cannot add the header: login needs it.
    let r = s
        .anon(Method::POST, "/console/session")
        .json(&json!({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert_eq!(error_code(r).await, "AccessDenied");
    s.shutdown().await;
}

#[tokio::test]
async fn cookie_authenticated_changes_need_the_console_header() {
    let s = TestServer::start().await;
    let cookie = session(&s).await;
    let r = with_cookie(&s, Method::PUT, "/buckets/csrf", &cookie, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "AccessDenied");
    let r = with_cookie(&s, Method::POST, "/objects/csrf/k", &cookie, false)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let listed: Value = json_ok(s.get("/buckets")).await;
    assert_eq!(listed["buckets"], json!([]), "nothing was created");

    let r = with_cookie(&s, Method::PUT, "/buckets/csrf", &cookie, true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = with_cookie(&s, Method::POST, "/objects/csrf/k", &cookie, true)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Basic and bearer credentials are not cookies: no header needed.
    s.put("/buckets/basic")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn expired_forged_and_bearer_tokens_are_no_sessions() {
    let s = TestServer::start().await;
    let creds = Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
    };
    let now = now_unix();
    let expired = creds.mint_session(now - 1, "expired").unwrap();
    let live = creds.mint_session(now + 60, "live").unwrap();
    let forged = Credentials {
        secret_key: "not-the-secret".into(),
        ..creds.clone()
    }
    .mint_session(now + 60, "forged")
    .unwrap();
    let bearer = creds.mint_token(now + 60).unwrap();
    let cookie = |t: &str| format!("{SESSION_COOKIE}={t}");
    let r = with_cookie(&s, Method::GET, "/buckets", &cookie(&live), false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a live session works");
    for (what, token) in [
        ("expired", expired),
        ("forged", forged),
        ("bearer", bearer),
        ("garbage", "x.y".into()),
    ] {
        let r = with_cookie(&s, Method::GET, "/buckets", &cookie(&token), false)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(error_code(r).await, "InvalidSession", "{what}");
        let r = with_cookie(&s, Method::GET, "/console/session", &cookie(&token), false)
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["authenticated"], false);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn logout_clears_the_cookie_and_revokes_the_session() {
    let s = TestServer::start().await;
    let cookie = session(&s).await;
    let other = session(&s).await;

    let r = with_cookie(&s, Method::DELETE, "/console/session", &cookie, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "logout needs the header");

    let r = with_cookie(&s, Method::DELETE, "/console/session", &cookie, true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookie(&r);
    assert!(
        cleared.starts_with(&format!("{SESSION_COOKIE}=;")),
        "{cleared}"
    );
    assert!(cleared.contains("Max-Age=0") && cleared.contains("HttpOnly"));

    // The old cookie no longer works, even if a client kept it; other sessions do.
    let r = with_cookie(&s, Method::GET, "/buckets", &cookie, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = with_cookie(&s, Method::GET, "/buckets", &other, false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test]
async fn stats_report_the_node_and_count_requests() {
    let s = TestServer::start().await;
    s.put_object("bkt", "k", b"hello").await;
    let stats: Value = s.get("/stats").send().await.unwrap().json().await.unwrap();
    let rest = &stats["requests"]["rest"];
    assert!(rest["requests"].as_u64().unwrap() >= 1);
    assert!(rest["bytesIn"].as_u64().unwrap() >= 5);
    let counts = rest["latencyCounts"].as_array().unwrap();
    let bounds = stats["latencyBoundsSecs"].as_array().unwrap();
    assert_eq!(counts.len(), bounds.len() + 1);
    assert_eq!(
        counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(),
        rest["requests"].as_u64().unwrap()
    );
    assert_eq!(stats["objects"], 1);
    assert!(stats["disk"]["totalBytes"].as_u64().unwrap() > 0);
    assert!(stats["gc"]["runs"].is_u64() && stats["lifecycle"]["expired"].is_u64());
    assert_eq!(stats["chunks"]["verifyFailures"], 0);

    let later: Value = s.get("/stats").send().await.unwrap().json().await.unwrap();
    assert!(
        later["requests"]["rest"]["requests"].as_u64() > rest["requests"].as_u64(),
        "the counters move with traffic"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_version_is_restored_by_copying_it_to_be_current() {
    let s = TestServer::start().await;
    s.put("/buckets/ver").send().await.unwrap();
    json_ok(s.put("/versioning/ver").json(&json!({"status": "Enabled"}))).await;
    let first = s
        .post("/objects/ver/doc.txt")
        .header(CONTENT_TYPE, "text/plain")
        .header("x-amz-meta-author", "ada")
        .body("one")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    s.put_object("ver", "doc.txt", b"two").await;
    let v1 = first["versionId"].as_str().unwrap();

    let r = s
        .post(&format!("/versions/ver/doc.txt?versionId={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let restored: Value = r.json().await.unwrap();
    assert_eq!(restored["restoredFrom"], v1);
    assert_ne!(restored["versionId"], v1);
    assert_eq!(restored["etag"], first["etag"]);

    let current = s.get("/objects/ver/doc.txt").send().await.unwrap();
    assert_eq!(current.headers()[CONTENT_TYPE], "text/plain");
    assert_eq!(current.headers()["x-amz-meta-author"], "ada");
    assert_eq!(current.headers()[CONTENT_SECURITY_POLICY], "sandbox");
    assert_eq!(current.text().await.unwrap(), "one");
    let versions: Value = json_ok(s.get("/versions/ver/doc.txt")).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 3);

    // Restoring needs a version that exists.
    let r = s.post("/versions/ver/doc.txt").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .post("/versions/ver/doc.txt?versionId=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NoSuchVersion");
    s.shutdown().await;
}

#[tokio::test]
async fn bucket_info_summarises_its_settings() {
    let s = TestServer::start().await;
    s.put("/buckets/cfg").send().await.unwrap();
    let info: Value = json_ok(s.get("/buckets/cfg")).await;
    assert_eq!(info["publicRead"], false);
    assert_eq!(info["lifecycleRules"], 0);
    json_ok(
        s.put("/lifecycle/cfg")
            .json(&json!({"rules": [{"id": "r", "status": "Enabled", "expirationDays": 1}]})),
    )
    .await;
    json_ok(s.put("/acl/cfg").json(&json!({"publicRead": true}))).await;
    let info: Value = json_ok(s.get("/buckets/cfg")).await;
    assert_eq!(info["publicRead"], true);
    assert_eq!(info["lifecycleRules"], 1);
    s.shutdown().await;
}
