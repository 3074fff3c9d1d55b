//! Node-to-node calls: the [`Transport`] seam (HTTP in the server, anything in tests),
//! the signing [`PeerClient`] on top of it, and openraft's network over that client.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::raft_store::{NodeId, PeerNode, TypeConfig};
use super::sign::ClusterSecret;

/// Largest chunk a node sends another (the largest configurable chunk size).
pub const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;
/// Largest `/internal/*` response body: one chunk (a chunk fetch's answer) plus room
/// for framing.
pub const MAX_INTERNAL_BODY_BYTES: usize = MAX_CHUNK_BYTES + 1024 * 1024;
/// Largest `/internal/*` request body, read before its signature is checked: a
/// replication batch (which stops growing past 4 MiB) plus one inline body and records,
/// raft messages and snapshots of the ring configuration all fit well within it.
pub const MAX_INTERNAL_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Snapshots are sent in chunks of at most this many bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

pub const PATH_RAFT_APPEND: &str = "/internal/raft/append";
pub const PATH_RAFT_VOTE: &str = "/internal/raft/vote";
pub const PATH_RAFT_SNAPSHOT: &str = "/internal/raft/snapshot";
pub const PATH_HEARTBEAT: &str = "/internal/heartbeat";
pub const PATH_JOIN: &str = "/internal/join";
pub const PATH_REPLICATE: &str = "/internal/replicate";
pub const PATH_CHUNK: &str = "/internal/chunk";
pub const PATH_DIGESTS: &str = "/internal/digests";
/// Anti-entropy's first question for a page: does one hash cover both nodes' copies?
pub const PATH_RANGE_SUMMARY: &str = "/internal/range-summary";
pub const PATH_LOOKUP: &str = "/internal/lookup";
/// A delete made by a key's coordinator on another node's behalf (DeleteObjects).
pub const PATH_DELETE: &str = "/internal/delete";
/// A node's unfinished uploads of a bucket, for a listing made through another node.
pub const PATH_UPLOADS: &str = "/internal/uploads";
/// A node's page of a bucket listing (objects, versions, or key states), for a listing
/// made through another node.
pub const PATH_LIST: &str = "/internal/list";
pub const PATH_RING: &str = "/internal/ring";
/// A client request handed to its key's coordinator (streamed; see the API crate).
pub const PATH_FORWARD: &str = "/internal/forward";

/// Why a call to a peer failed below HTTP.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not connect (refused, timed out): the peer is probably down.
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// Connected, but the exchange failed (reset, body too large, ...).
    #[error("call to {address} failed: {reason}")]
    Failed { address: String, reason: String },
    /// No answer in time: the call may or may not have reached the peer.
    #[error("no answer from {address}: {reason}")]
    TimedOut { address: String, reason: String },
}

/// A peer's HTTP answer.
pub struct TransportResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A byte stream to a peer: a TCP connection, or a simulated network's pipe.
pub trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerStream for T {}

/// An open connection to a peer, whatever carries it.
pub type PeerConnection = Box<dyn PeerStream>;

/// Sends one `POST` to a peer. The cluster layer owns this seam so a simulated network
/// can replace HTTP; the server implements it with an HTTP client.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// POST `body` to `path` on `address` (`HOST:PORT` or `http://HOST:PORT`) with
    /// `headers`, giving up after `timeout`. Response bodies over
    /// [`MAX_INTERNAL_BODY_BYTES`] fail.
    async fn post(
        &self,
        address: &str,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<TransportResponse, TransportError>;

    /// Open a connection to `address` for a request whose body streams (a client's
    /// request handed to its key's coordinator), giving up after `timeout`. Plain TCP;
    /// a simulated network refuses what it has cut.
    async fn dial(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<PeerConnection, TransportError> {
        let host = address
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let unreachable = |reason: String| TransportError::Unreachable {
            address: host.clone(),
            reason,
        };
        match tokio::time::timeout(timeout, TcpStream::connect(&host)).await {
            Ok(Ok(stream)) => {
                // Forwarded requests are small writes answered at once.
                let _ = stream.set_nodelay(true);
                detect_vanished_peer(&stream);
                Ok(Box::new(stream))
            }
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no connection within {timeout:?}"))),
        }
    }
}

/// An idle connection whose peer answers no keepalive probe for this long is closed.
const PEER_KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const PEER_KEEPALIVE_PROBES: u32 = 3;
/// A connection whose sent data stays unacknowledged for this long is closed.
const PEER_UNACKED_TIMEOUT: Duration = Duration::from_secs(60);

/// Make a streaming connection to a peer fail, rather than hang until TCP's own
/// retransmission limit (about 15 minutes), when the peer vanishes without closing it
/// (powered off, or a partition that drops packets): keepalive probes while it is idle,
/// and a limit on unacknowledged data while a body is being sent. Best effort.
fn detect_vanished_peer(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(PEER_KEEPALIVE_IDLE)
        .with_interval(PEER_KEEPALIVE_INTERVAL)
        .with_retries(PEER_KEEPALIVE_PROBES);
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_user_timeout(Some(PEER_UNACKED_TIMEOUT));
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer refused our signature: the cluster secrets differ.
    #[error(
        "{address} refused this node's signature (is the cluster secret the same on every node?): {message}"
    )]
    Unauthorized { address: String, message: String },
    #[error("{address} answered {status}: {message}")]
    Status {
        address: String,
        status: u16,
        message: String,
    },
    #[error("bad message from {address}: {reason}")]
    Codec { address: String, reason: String },
}

/// Signs and sends JSON calls to peers.
#[derive(Clone)]
pub struct PeerClient {
    node_id: String,
    secret: ClusterSecret,
    transport: Arc<dyn Transport>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PeerClient {
    pub fn new(node_id: String, secret: ClusterSecret, transport: Arc<dyn Transport>) -> Self {
        PeerClient {
            node_id,
            secret,
            transport,
        }
    }

    /// The network this client sends through.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// POST `req` as JSON to `path` on `address` and decode the JSON answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let codec = |e: serde_json::Error| PeerError::Codec {
            address: address.to_string(),
            reason: e.to_string(),
        };
        let body = serde_json::to_vec(req).map_err(codec)?;
        let answer = self.call_bytes(address, path, body, timeout).await?;
        serde_json::from_slice(&answer).map_err(codec)
    }

    /// POST a signed body to `path` on `address`; the answer's body when it is a
    /// success (2xx).
    pub async fn call_bytes(
        &self,
        address: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let headers = self
            .secret
            .sign(&self.node_id, "POST", path, unix_now(), &body);
        let resp = self
            .transport
            .post(address, path, headers, body, timeout)
            .await?;
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&resp.body)
                .ok()
                .and_then(|v| {
                    // REST errors are `{"error": {"code", "message"}}`.
                    v.pointer("/error/message")
                        .and_then(|m| m.as_str())
                        .map(String::from)
                })
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&resp.body)
                        .chars()
                        .take(200)
                        .collect()
                })
        };
        match resp.status {
            200..=299 => Ok(resp.body),
            // 401 is a signature the peer refused (the secrets differ). A 403 is a peer
            // not in a cluster yet (still starting or joining itself): worth retrying.
            401 => Err(PeerError::Unauthorized {
                address: address.to_string(),
                message: message(),
            }),
            status => Err(PeerError::Status {
                address: address.to_string(),
                status,
                message: message(),
            }),
        }
    }
}

/// Builds openraft's per-peer clients.
pub struct NetworkFactory {
    pub client: PeerClient,
}

pub struct Network {
    client: PeerClient,
    target: NodeId,
    address: String,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Network {
        Network {
            client: self.client.clone(),
            target,
            address: node.address.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>;

impl Network {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .client
            .call(&self.address, path, req, option.hard_ttl())
            .await
            .map_err(|e| match &e {
                PeerError::Transport(
                    TransportError::Unreachable { .. } | TransportError::TimedOut { .. },
                ) => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.rpc(PATH_RAFT_APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(PATH_RAFT_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.rpc(PATH_RAFT_VOTE, &rpc, &option).await
    }
}
