//! Bucket CORS: the configuration operations (Put/Get/DeleteBucketCors), and the layer
//! that answers browsers' preflight `OPTIONS` requests and adds `Access-Control-*`
//! headers to responses for origins a bucket's rules allow. Preflights carry no
//! credentials, so they are answered here, before s3s authenticates anything.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bucketdb_object::{CorsRule, ObjectService};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::S3Api;
use super::error::IntoS3;

/// Most rules one bucket's CORS configuration may hold (as S3).
pub const MAX_CORS_RULES: usize = 100;
/// Largest CORS configuration, counted as the bytes of its strings (S3 allows 64 KB).
pub const CORS_CONFIG_MAX_BYTES: usize = 64 * 1024;
/// The methods a CORS rule may allow.
const CORS_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// What the layer needs: the buckets' rules, and how requests name their bucket.
#[derive(Clone)]
pub(super) struct CorsState {
    pub svc: Arc<ObjectService>,
    pub host: Option<Arc<s3s::host::SingleDomain>>,
}

fn validate_rules(rules: &[CorsRule]) -> S3Result<()> {
    if rules.is_empty() {
        return Err(s3_error!(MalformedXML, "a CORS configuration needs a rule"));
    }
    if rules.len() > MAX_CORS_RULES {
        return Err(s3_error!(
            InvalidRequest,
            "a CORS configuration holds at most 100 rules"
        ));
    }
    let mut bytes = 0;
    for r in rules {
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "every CORS rule needs an AllowedOrigin and an AllowedMethod"
            ));
        }
        if let Some(m) = r
            .allowed_methods
            .iter()
            .find(|m| !CORS_METHODS.contains(&m.as_str()))
        {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            ));
        }
        let wildcards = |v: &String| v.matches('*').count() > 1;
        if let Some(o) = r.allowed_origins.iter().find(|o| wildcards(o)) {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedOrigin \"{o}\" can not have more than one wildcard."
            ));
        }
        if let Some(h) = r.allowed_headers.iter().find(|h| wildcards(h)) {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedHeader \"{h}\" can not have more than one wildcard."
            ));
        }
        bytes += r.id.as_ref().map_or(0, String::len)
            + [
                &r.allowed_origins,
                &r.allowed_methods,
                &r.allowed_headers,
                &r.expose_headers,
            ]
            .iter()
            .flat_map(|l| l.iter())
            .map(String::len)
            .sum::<usize>();
    }
    if bytes > CORS_CONFIG_MAX_BYTES {
        return Err(s3_error!(
            InvalidRequest,
            "the CORS configuration is larger than 64 KB"
        ));
    }
    Ok(())
}

fn rule_in(r: CORSRule) -> CorsRule {
    CorsRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: r.allowed_headers.unwrap_or_default(),
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_seconds: r.max_age_seconds,
    }
}

fn rule_out(r: CorsRule) -> CORSRule {
    let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    CORSRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: non_empty(r.allowed_headers),
        expose_headers: non_empty(r.expose_headers),
        max_age_seconds: r.max_age_seconds,
    }
}

impl S3Api {
    pub(super) async fn op_put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let i = req.input;
        let rules: Vec<CorsRule> = i
            .cors_configuration
            .cors_rules
            .into_iter()
            .map(rule_in)
            .collect();
        validate_rules(&rules)?;
        self.svc
            .update_bucket_config(&i.bucket, move |c| {
                c.cors = rules;
                Ok(())
            })
            .await
            .s3()?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(super) async fn op_get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let config = self.svc.bucket_config(&req.input.bucket).s3()?;
        if config.cors.is_empty() {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            ));
        }
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(config.cors.into_iter().map(rule_out).collect()),
        }))
    }

    pub(super) async fn op_delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.svc
            .update_bucket_config(&req.input.bucket, |c| {
                c.cors.clear();
                Ok(())
            })
            .await
            .s3()?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }
}

/// Whether `value` matches `pattern`, which may hold one `*` standing for any text.
fn wildcard_match(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match pattern.split_once('*') {
        None => eq(pattern, value),
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len()
                && value.is_char_boundary(pre.len())
                && value.is_char_boundary(value.len() - post.len())
                && eq(pre, &value[..pre.len()])
                && eq(post, &value[value.len() - post.len()..])
        }
    }
}

/// The first rule allowing `origin` to use `method` with `headers` (lowercase).
fn find_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins
            .iter()
            .any(|o| wildcard_match(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|a| wildcard_match(a, h, true)))
    })
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// The `Access-Control-*` headers granted by `rule` to `origin`.
fn grant(h: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    if rule.allowed_origins.iter().any(|o| o == "*") {
        set(h, "access-control-allow-origin", "*");
    } else {
        set(h, "access-control-allow-origin", origin);
        set(h, "access-control-allow-credentials", "true");
    }
    if !rule.expose_headers.is_empty() {
        set(
            h,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
}

const VARY: &str = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

fn forbidden(message: &str) -> Response {
    super::xml_error(StatusCode::FORBIDDEN, "AccessForbidden", message)
}

/// Answer a preflight request for `bucket`.
fn preflight(rules: &[CorsRule], headers: &HeaderMap) -> Response {
    let origin = header_str(headers, "origin");
    let method = header_str(headers, "access-control-request-method");
    let (Some(origin), Some(method)) = (origin, method) else {
        return super::xml_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        );
    };
    if rules.is_empty() {
        return forbidden("CORSResponse: CORS is not enabled for this bucket.");
    }
    let asked: Vec<String> = header_str(headers, "access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let Some(rule) = find_rule(rules, origin, method, &asked) else {
        return forbidden(
            "CORSResponse: This CORS request is not allowed. The Origin, the method or the \
             request headers are not allowed by the bucket's CORS rules.",
        );
    };
    let mut resp = Response::new(axum::body::Body::empty());
    let h = resp.headers_mut();
    grant(h, rule, origin);
    set(
        h,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !asked.is_empty() {
        set(h, "access-control-allow-headers", &asked.join(", "));
    }
    if let Some(age) = rule.max_age_seconds {
        set(h, "access-control-max-age", &age.to_string());
    }
    set(h, "vary", VARY);
    resp
}

/// The CORS layer of the S3 endpoint.
pub(super) async fn cors(State(state): State<CorsState>, req: Request, next: Next) -> Response {
    let preflight_request = req.method() == Method::OPTIONS;
    let origin = header_str(req.headers(), "origin").map(str::to_string);
    if !preflight_request && origin.is_none() {
        return next.run(req).await;
    }
    let Some(bucket) = super::request_path(state.host.as_deref(), &req).and_then(|p| match p {
        S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(String::from(bucket)),
        S3Path::Root => None,
    }) else {
        return if preflight_request {
            forbidden("CORSResponse: CORS is only configured on buckets.")
        } else {
            next.run(req).await
        };
    };
    let rules = match state.svc.bucket_config(&bucket) {
        Ok(c) => c.cors,
        Err(e) if preflight_request => {
            return match e {
                bucketdb_object::ObjectError::NoSuchBucket(_) => super::xml_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchBucket",
                    "The specified bucket does not exist",
                ),
                _ => forbidden("CORSResponse: CORS is not enabled for this bucket."),
            };
        }
        Err(_) => Vec::new(),
    };
    if preflight_request {
        return preflight(&rules, req.headers());
    }
    let method = req.method().as_str().to_string();
    let mut resp = next.run(req).await;
    if let Some(origin) = origin
        && !rules.is_empty()
    {
        let h = resp.headers_mut();
        set(h, "vary", VARY);
        if let Some(rule) = find_rule(&rules, &origin, &method, &[]) {
            grant(h, rule, &origin);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        CorsRule {
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: v(headers),
            ..CorsRule::default()
        }
    }

    #[test]
    fn wildcards_match_one_run_of_text() {
        assert!(wildcard_match("*", "https://a.example", false));
        assert!(wildcard_match(
            "https://*.example",
            "https://a.example",
            false
        ));
        assert!(!wildcard_match(
            "https://*.example",
            "http://a.example",
            false
        ));
        assert!(!wildcard_match(
            "https://*.example",
            "https://.exampl",
            false
        ));
        assert!(wildcard_match("X-Amz-*", "x-amz-date", true));
        assert!(!wildcard_match("x-amz-*", "X-AMZ-DATE", false));
        assert!(!wildcard_match("ab*ba", "aba", false));
        assert!(!wildcard_match("é*", "e", false));
    }

    #[test]
    fn a_rule_must_allow_origin_method_and_every_header() {
        let rules = vec![
            rule(&["https://app.example"], &["GET"], &[]),
            rule(
                &["https://*.example"],
                &["PUT"],
                &["content-type", "x-amz-*"],
            ),
        ];
        let h = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(find_rule(&rules, "https://app.example", "GET", &[]).is_some());
        assert!(find_rule(&rules, "https://app.example", "DELETE", &[]).is_none());
        assert!(find_rule(&rules, "https://b.example", "PUT", &h(&["x-amz-date"])).is_some());
        assert!(find_rule(&rules, "https://b.example", "PUT", &h(&["authorization"])).is_none());
        assert!(find_rule(&rules, "https://evil.test", "GET", &[]).is_none());
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(validate_rules(&[]).is_err());
        assert!(validate_rules(&[rule(&["*"], &["PATCH"], &[])]).is_err());
        assert!(validate_rules(&[rule(&["*.*"], &["GET"], &[])]).is_err());
        assert!(validate_rules(&[rule(&[], &["GET"], &[])]).is_err());
        assert!(validate_rules(&vec![rule(&["*"], &["GET"], &[]); MAX_CORS_RULES + 1]).is_err());
        assert!(validate_rules(&[rule(&["*"], &["GET", "HEAD"], &["*"])]).is_ok());
    }
}
