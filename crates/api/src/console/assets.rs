//! The console's static files, embedded in the binary at compile time (no build step:
//! plain HTML, CSS and JavaScript modules from `crates/api/console/`). They need no
//! credentials; everything they show comes from the authenticated API.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// URL prefix of the assets (the page itself is `/`).
pub const ASSETS_PREFIX: &str = "/console/assets/";
/// Hex digits of the SHA-256 kept in an asset's ETag.
const ETAG_HEX_DIGITS: usize = 16;
/// The console runs only its own scripts and styles and talks only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $type:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }),*]
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = assets![
    "index.html" => HTML,
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/main.js" => JS,
    "js/api.js" => JS,
    "js/dom.js" => JS,
    "js/format.js" => JS,
    "js/dialogs.js" => JS,
    "js/login.js" => JS,
    "js/cluster.js" => JS,
    "js/buckets.js" => JS,
    "js/bucket_settings.js" => JS,
    "js/objects.js" => JS,
    "js/upload.js" => JS,
    "js/details.js" => JS,
    "js/metrics.js" => JS,
    "js/chart.js" => JS,
    "js/poll.js" => JS,
    "js/routes.js" => JS,
];

/// The ETag of each asset (same order as [`ASSETS`]), computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hex = hex::encode(Sha256::digest(a.body));
                format!("\"{}\"", &hex[..ETAG_HEX_DIGITS])
            })
            .collect()
    })
}

fn serve(path: &str, request: &HeaderMap) -> ApiResult<Response> {
    let (i, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.path == path)
        .ok_or(ApiError::NotFound)?;
    let etag = etags()
        .get(i)
        .and_then(|e| HeaderValue::from_str(e).ok())
        .ok_or_else(|| ApiError::Internal(format!("no ETag for {path}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidated on every load, so a new binary's console is picked up at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    headers.insert(header::ETAG, etag);
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((headers, asset.body).into_response())
}

/// `GET /`: the console page.
pub async fn index(headers: HeaderMap) -> ApiResult<Response> {
    serve("index.html", &headers)
}

/// `GET /console/assets/<path>`.
pub async fn asset(uri: Uri, headers: HeaderMap) -> ApiResult<Response> {
    let path = uri
        .path()
        .strip_prefix(ASSETS_PREFIX)
        .ok_or(ApiError::NotFound)?;
    serve(path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_listed_once_and_the_page_links_only_listed_assets() {
        let mut paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        let index = String::from_utf8_lossy(
            ASSETS
                .iter()
                .find(|a| a.path == "index.html")
                .map(|a| a.body)
                .unwrap_or_default(),
        )
        .into_owned();
        for link in index.split(ASSETS_PREFIX).skip(1) {
            let path = link.split('"').next().unwrap_or_default();
            assert!(paths.contains(&path), "index.html links missing {path}");
        }
    }

    #[test]
    fn modules_import_only_listed_modules() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = String::from_utf8_lossy(a.body);
            for import in text.split("from \"./").skip(1) {
                let name = import.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|b| b.path == format!("js/{name}")),
                    "{} imports missing {name}",
                    a.path
                );
            }
        }
    }
}
