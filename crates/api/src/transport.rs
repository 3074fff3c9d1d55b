//! The HTTP client side of node-to-node traffic: the cluster layer's [`Transport`] over
//! hyper-util's pooled HTTP/1.1 client. Signing happens in the cluster layer; this only
//! moves bytes, with a deadline and a bounded response size.

use std::time::Duration;

use bucketdb_cluster::membership::network::{
    MAX_INTERNAL_BODY_BYTES, Transport, TransportError, TransportResponse,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest wait for a TCP connection to a peer: a down peer must fail fast so heartbeats
/// and raft can move on.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle pooled connections kept per peer.
const POOL_IDLE_PER_HOST: usize = 4;

/// HTTP client for calls to peers (and the `bucketdb cluster` commands).
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpTransport {
    fn default() -> Self {
        Self::new()
    }
}

fn base_url(address: &str) -> String {
    let a = address.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

impl HttpTransport {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .build(connector);
        HttpTransport { client }
    }

    /// Send one request and read the answer (at most `max_body` bytes).
    pub async fn request(
        &self,
        method: http::Method,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<TransportResponse, TransportError> {
        let failed = |reason: String| TransportError::Failed {
            address: url.to_string(),
            reason,
        };
        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failed(e.to_string()))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    TransportError::Unreachable {
                        address: url.to_string(),
                        reason: e.to_string(),
                    }
                } else {
                    failed(e.to_string())
                }
            })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok(TransportResponse {
                status,
                body: body.to_vec(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::TimedOut {
                address: url.to_string(),
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn post(
        &self,
        address: &str,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<TransportResponse, TransportError> {
        let url = format!("{}{path}", base_url(address));
        self.request(
            http::Method::POST,
            &url,
            headers,
            body,
            timeout,
            MAX_INTERNAL_BODY_BYTES,
        )
        .await
    }
}
