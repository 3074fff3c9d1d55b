//! Cluster membership: an openraft group whose state machine is the ring configuration
//! (members, replication factor, quorum mode, ring version), joined with `--bootstrap` /
//! `--join`, plus each node's local view of its peers' liveness from heartbeats.

pub mod network;
pub mod raft_store;
pub mod ring_state;
pub mod sign;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{ChangeMembers, Raft, ServerState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use network::{
    MAX_INTERNAL_BODY_BYTES, NetworkFactory, PATH_HEARTBEAT, PATH_JOIN, PATH_RING, PeerClient,
    PeerError, SNAPSHOT_CHUNK_BYTES, Transport,
};
use raft_store::{LogStore, NodeId, PeerNode, RaftDb, RaftDbError, StateMachine, TypeConfig};
use ring_state::{MemberState, RingCommand, RingState};
use sign::{ClusterSecret, SignError};

/// At most this many voters; further members stay raft learners (they still receive
/// and apply the ring configuration), so elections stay cheap.
pub const MAX_VOTERS: usize = 5;
/// A peer is `suspect` after this many heartbeat intervals without an answer.
pub const SUSPECT_AFTER_MISSED: u32 = 3;
/// Raft's own heartbeat (leader to followers), milliseconds.
const RAFT_HEARTBEAT_MS: u64 = 250;
/// Raft election timeout range, milliseconds: a few raft heartbeats, so a busy 2-core
/// machine does not trigger needless elections (see [`ElectionTimeout`]).
const RAFT_ELECTION_MIN_MS: u64 = 1000;
const RAFT_ELECTION_MAX_MS: u64 = 2000;
/// Join attempts before `--join` gives up, and the backoff between them.
pub const JOIN_ATTEMPTS_MAX: u32 = 30;
const JOIN_BACKOFF_MIN: Duration = Duration::from_millis(200);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest a join request may take (learner catch-up, promotion, two ring commands).
pub const JOIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Callers (the joining node, a forwarding follower) wait a little longer than the
/// leader works on a join, so they receive its answer rather than their own timeout.
const JOIN_CALL_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest wait for this node to become leader after `--bootstrap`, or to see itself in
/// the ring after a join was accepted.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for a forwarded ring command.
const RING_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A ring command sent to the leader (`/internal/ring`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RingRequest {
    pub command: RingCommand,
    /// Set by a follower that forwards the request (it is not forwarded twice).
    #[serde(default)]
    pub forwarded: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RingReply {
    pub ring_version: u64,
}

/// Errors of cluster membership.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Db(#[from] RaftDbError),
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// This node is not the leader and could not forward the request.
    #[error("no raft leader is known yet; retry")]
    NoLeader,
    #[error("the ring refused the change: {0}")]
    Refused(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("could not join through {seed} after {attempts} attempts: {last}")]
    JoinFailed {
        seed: String,
        attempts: u32,
        last: String,
    },
}

impl MembershipError {
    fn raft(e: impl std::fmt::Display) -> Self {
        MembershipError::Raft(e.to_string())
    }

    /// True when retrying cannot help (a wrong cluster secret, a malformed request, a
    /// join the leader refused, e.g. for a node id already in use).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MembershipError::Peer(PeerError::Unauthorized { .. })
                | MembershipError::Peer(PeerError::Status {
                    status: PEER_STATUS_BAD_REQUEST | PEER_STATUS_REFUSED,
                    ..
                })
                | MembershipError::BadRequest(_)
                | MembershipError::Refused(_)
        )
    }
}

/// What a peer answers for a malformed request and for a refused command (see
/// `crates/api/src/internal.rs`): retrying the same request cannot succeed.
const PEER_STATUS_BAD_REQUEST: u16 = 400;
const PEER_STATUS_REFUSED: u16 = 409;

/// How a node picks its raft election timeout within the election range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionTimeout {
    /// A fresh random point before every election: raft's own way of breaking split
    /// votes.
    Drawn,
    /// One point fixed by a hash of the node's id ([`election_timeout_ms`]). Nodes still
    /// differ, which breaks split votes, and no unseeded draw is made, so a seeded
    /// simulation replays elections exactly.
    PinnedById,
}

/// Timing of the liveness view.
#[derive(Clone, Copy, Debug)]
pub struct LivenessConfig {
    pub heartbeat_interval: Duration,
    pub node_down_timeout: Duration,
}

/// `POST /internal/join`: add this node to the ring.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: String,
    pub address: String,
    /// Set when a follower forwards the request to the leader, so it is forwarded once.
    #[serde(default)]
    pub forwarded: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinResponse {
    pub ring_version: u64,
}

/// `POST /internal/heartbeat`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub from: String,
    pub ring_version: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub id: String,
    pub ring_version: u64,
    /// The answering node's disk and object figures (absent from older nodes).
    #[serde(default)]
    pub figures: Option<NodeFigures>,
}

/// A node's own storage figures, shared with its peers in heartbeat replies so every
/// node's `/cluster` shows them for all members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFigures {
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub object_count: u64,
}

/// Where a node's own figures come from (the cluster layer, which knows the stores).
pub type FiguresSource = Box<dyn Fn() -> NodeFigures + Send + Sync>;

/// A peer's liveness in this node's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Suspect,
    Down,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }

    /// Liveness after `since_last_ok` without an answer.
    pub fn after(since_last_ok: Duration, config: &LivenessConfig) -> Liveness {
        let interval = config.heartbeat_interval.max(Duration::from_millis(1));
        if since_last_ok >= config.node_down_timeout {
            Liveness::Down
        } else if since_last_ok >= interval * SUSPECT_AFTER_MISSED {
            Liveness::Suspect
        } else {
            Liveness::Alive
        }
    }
}

#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    at_ms: u64,
    figures: Option<NodeFigures>,
}

/// The raft node id of a BucketDB node id: a stable 64-bit hash, so ids stay strings in
/// configuration and output.
pub fn raft_id_of(node_id: &str) -> NodeId {
    let d = Sha256::digest(node_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A point of the election range fixed by a hash of `node_id`
/// ([`ElectionTimeout::PinnedById`]).
fn election_timeout_ms(node_id: &str) -> u64 {
    let d = Sha256::digest(node_id.as_bytes());
    let spread = RAFT_ELECTION_MAX_MS - RAFT_ELECTION_MIN_MS;
    RAFT_ELECTION_MIN_MS + u64::from(u16::from_be_bytes([d[8], d[9]])) % spread
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// This node's membership: its raft node, the agreed ring and its liveness view.
pub struct Membership {
    id: String,
    address: String,
    raft_id: NodeId,
    raft: Raft<TypeConfig>,
    ring: watch::Receiver<RingState>,
    client: PeerClient,
    secret: ClusterSecret,
    liveness: LivenessConfig,
    seen: Mutex<HashMap<String, Seen>>,
    started: Instant,
    /// Joins are handled one at a time on the leader: raft allows one membership change
    /// in flight.
    join_lock: tokio::sync::Mutex<()>,
    figures_source: std::sync::OnceLock<FiguresSource>,
}

impl Membership {
    /// True when `dir` holds raft state from an earlier start (the node then resumes
    /// its cluster membership even without `--bootstrap`/`--join`).
    pub fn has_stored_state(dir: &Path) -> bool {
        RaftDb::exists(dir)
    }

    /// Open the raft state in `dir` and start the raft node (it takes part in elections
    /// and replication at once; a fresh node waits to be added by a leader).
    pub async fn open(
        dir: &Path,
        id: String,
        address: String,
        secret: ClusterSecret,
        transport: Arc<dyn Transport>,
        liveness: LivenessConfig,
        election: ElectionTimeout,
    ) -> Result<Arc<Self>, MembershipError> {
        let db = RaftDb::open(dir)?;
        let (sm, ring) = StateMachine::open(db.clone())?;
        let log = LogStore::new(db);
        let client = PeerClient::new(id.clone(), secret.clone(), transport);
        let config = openraft::Config {
            cluster_name: "bucketdb".into(),
            heartbeat_interval: RAFT_HEARTBEAT_MS,
            election_timeout_min: match election {
                ElectionTimeout::Drawn => RAFT_ELECTION_MIN_MS,
                ElectionTimeout::PinnedById => election_timeout_ms(&id),
            },
            election_timeout_max: match election {
                ElectionTimeout::Drawn => RAFT_ELECTION_MAX_MS,
                ElectionTimeout::PinnedById => election_timeout_ms(&id) + 1,
            },
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
            ..Default::default()
        }
        .validate()
        .map_err(MembershipError::raft)?;
        let raft_id = raft_id_of(&id);
        let raft = Raft::new(
            raft_id,
            Arc::new(config),
            NetworkFactory {
                client: client.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(MembershipError::raft)?;
        Ok(Arc::new(Membership {
            id,
            address,
            raft_id,
            raft,
            ring,
            client,
            secret,
            liveness,
            seen: Mutex::new(HashMap::new()),
            started: Instant::now(),
            join_lock: tokio::sync::Mutex::new(()),
            figures_source: std::sync::OnceLock::new(),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.id
    }

    /// The signing client for calls to peers.
    pub fn client(&self) -> &PeerClient {
        &self.client
    }

    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// The agreed ring configuration as this node last applied it.
    pub fn ring(&self) -> RingState {
        self.ring.borrow().clone()
    }

    /// Where member `id` is reached, without copying the whole ring.
    pub fn address_of(&self, id: &str) -> Option<String> {
        self.ring
            .borrow()
            .members
            .get(id)
            .map(|m| m.address.clone())
    }

    /// True once this node is in the agreed ring.
    pub fn is_member(&self) -> bool {
        self.ring.borrow().is_member(&self.id)
    }

    fn me(&self) -> PeerNode {
        PeerNode {
            id: self.id.clone(),
            address: self.address.clone(),
        }
    }

    /// `--bootstrap`: make this node a one-member cluster. On a node that already has
    /// raft state this does nothing: it resumes where it was.
    pub async fn bootstrap(
        &self,
        replication_factor: usize,
        quorum_required: bool,
    ) -> Result<(), MembershipError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(MembershipError::raft)?;
        if initialized && self.is_member() {
            return Ok(());
        }
        if initialized {
            // Raft was initialised but the founder never made it into the ring (a crash
            // or timeout between the steps below): finish the job once it leads again.
            // A single-voter group elects itself; in a larger one another member leads
            // and this node is already in its ring.
            let mut members = self.raft.metrics();
            let leads = tokio::time::timeout(SETTLE_TIMEOUT, async {
                loop {
                    if members.borrow().current_leader == Some(self.raft_id) {
                        return true;
                    }
                    if members.changed().await.is_err() {
                        return false;
                    }
                }
            })
            .await
            .unwrap_or(false);
            if !leads || !self.ring().members.is_empty() {
                return Ok(());
            }
        } else {
            let mut members = BTreeMap::new();
            members.insert(self.raft_id, self.me());
            match self.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(MembershipError::raft(e)),
            }
            self.raft
                .wait(Some(SETTLE_TIMEOUT))
                .state(ServerState::Leader, "bootstrap: become leader")
                .await
                .map_err(|e| MembershipError::Timeout(e.to_string()))?;
        }
        // Both commands are idempotent, so a resumed bootstrap may repeat them.
        self.write(RingCommand::SetReplication {
            replication_factor,
            quorum_required,
        })
        .await?;
        self.write(RingCommand::AddMember {
            id: self.id.clone(),
            address: self.address.clone(),
            state: MemberState::Active,
        })
        .await?;
        Ok(())
    }

    /// `--join SEED`: ask `seed` (any member) to add this node, retrying with bounded
    /// backoff; then wait until this node has applied its own membership. A node that
    /// is already a member (restarted with its raft state) returns at once.
    pub async fn join(&self, seed: &str) -> Result<(), MembershipError> {
        if self.is_member() {
            return Ok(());
        }
        let req = JoinRequest {
            id: self.id.clone(),
            address: self.address.clone(),
            forwarded: false,
        };
        let mut backoff = JOIN_BACKOFF_MIN;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res: Result<JoinResponse, MembershipError> = self
                .client
                .call(seed, PATH_JOIN, &req, JOIN_CALL_TIMEOUT)
                .await
                .map_err(MembershipError::from);
            match res {
                Ok(r) => {
                    tracing::info!(seed, ring_version = r.ring_version, "joined the cluster");
                    break;
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) if attempt >= JOIN_ATTEMPTS_MAX => {
                    return Err(MembershipError::JoinFailed {
                        seed: seed.to_string(),
                        attempts: attempt,
                        last: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::warn!(seed, attempt, error = %e, "join failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                }
            }
        }
        let mut ring = self.ring.clone();
        let id = self.id.clone();
        tokio::time::timeout(SETTLE_TIMEOUT, ring.wait_for(|r| r.is_member(&id)))
            .await
            .map_err(|_| MembershipError::Timeout("applying this node's membership".into()))?
            .map_err(MembershipError::raft)?;
        Ok(())
    }

    /// Resolves once this node is in the agreed ring (at once if it already is).
    pub async fn wait_member(&self) {
        let mut ring = self.ring.clone();
        let id = self.id.clone();
        let _ = ring.wait_for(|r| r.is_member(&id)).await;
    }

    /// Commit a ring command (this node must be the leader).
    async fn write(&self, cmd: RingCommand) -> Result<u64, MembershipError> {
        let resp = self
            .raft
            .client_write(cmd)
            .await
            .map_err(MembershipError::raft)?;
        match resp.data.refused {
            Some(why) => Err(MembershipError::Refused(why)),
            None => Ok(resp.data.ring_version),
        }
    }

    /// Handle `POST /internal/join`: on the leader add the node (learner, voter while
    /// there are fewer than [`MAX_VOTERS`], then the ring command); elsewhere forward
    /// it to the leader once.
    pub async fn handle_join(&self, req: JoinRequest) -> Result<JoinResponse, MembershipError> {
        if req.id.trim().is_empty() || req.address.trim().is_empty() {
            return Err(MembershipError::BadRequest(
                "a joining node needs an id and an address".into(),
            ));
        }
        if let Some(address) = self.leader_elsewhere(req.forwarded).await? {
            let forwarded = JoinRequest {
                forwarded: true,
                ..req
            };
            return Ok(self
                .client
                .call(&address, PATH_JOIN, &forwarded, JOIN_CALL_TIMEOUT)
                .await?);
        }
        // Bounded: a joiner whose address the leader cannot reach would otherwise hold
        // the join lock forever (raft waits for a learner to catch up).
        tokio::time::timeout(JOIN_REQUEST_TIMEOUT, self.add_member(req))
            .await
            .map_err(|_| MembershipError::Timeout("adding the member".into()))?
    }

    /// `None` when this node is the raft leader, else the leader's address (to forward
    /// a request to once: a request already forwarded is not forwarded again).
    async fn leader_elsewhere(&self, forwarded: bool) -> Result<Option<String>, MembershipError> {
        let leader = self.raft.current_leader().await;
        if leader == Some(self.raft_id) {
            return Ok(None);
        }
        let Some(leader) = leader else {
            return Err(MembershipError::NoLeader);
        };
        if forwarded {
            return Err(MembershipError::NoLeader);
        }
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| Some(n.address.clone()))
            .ok_or(MembershipError::NoLeader)
    }

    /// Change the ring configuration from any node (forwarded to the leader); returns
    /// the ring version after the change.
    pub async fn propose(&self, command: RingCommand) -> Result<u64, MembershipError> {
        let reply = self
            .handle_ring_request(RingRequest {
                command,
                forwarded: false,
            })
            .await?;
        Ok(reply.ring_version)
    }

    /// Handle `POST /internal/ring`: apply a ring command on the leader, or forward it.
    pub async fn handle_ring_request(
        &self,
        req: RingRequest,
    ) -> Result<RingReply, MembershipError> {
        if let Some(address) = self.leader_elsewhere(req.forwarded).await? {
            let forwarded = RingRequest {
                forwarded: true,
                ..req
            };
            return Ok(self
                .client
                .call(&address, PATH_RING, &forwarded, RING_CALL_TIMEOUT)
                .await?);
        }
        let ring_version = self.write(req.command).await?;
        Ok(RingReply { ring_version })
    }

    /// The leader's part of a join, one at a time.
    async fn add_member(&self, req: JoinRequest) -> Result<JoinResponse, MembershipError> {
        let _one_at_a_time = self.join_lock.lock().await;
        let rid = raft_id_of(&req.id);
        let ring = self.ring();
        if let Some(m) = ring.members.get(&req.id) {
            if m.address == req.address && m.state == MemberState::Active {
                // A retried or repeated join of a member: nothing to do.
                return Ok(JoinResponse {
                    ring_version: ring.ring_version,
                });
            }
            if m.state == MemberState::Active {
                return Err(MembershipError::Refused(format!(
                    "node id {} is already a member at {}; every node needs its own id",
                    req.id, m.address
                )));
            }
        }
        // Raft keeps the first address it learns for a node id: one added under another
        // address (another node with the same id, or a moved node) is refused rather
        // than silently pointed at the old address.
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&rid)
            .map(|n| n.address.clone());
        if let Some(address) = known.filter(|a| *a != req.address) {
            return Err(MembershipError::Refused(format!(
                "node id {} is known to the cluster at {address}, not {}",
                req.id, req.address
            )));
        }
        let node = PeerNode {
            id: req.id.clone(),
            address: req.address.clone(),
        };
        // Blocking: returns once the learner has caught up with the log.
        self.raft
            .add_learner(rid, node, true)
            .await
            .map_err(join_raft_error)?;
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if !voters.contains(&rid) && voters.len() < MAX_VOTERS {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds([rid].into()), false)
                .await
                .map_err(join_raft_error)?;
        }
        self.write(RingCommand::AddMember {
            id: req.id.clone(),
            address: req.address.clone(),
            state: MemberState::Joining,
        })
        .await?;
        // Nothing moves between nodes in this build, so a joined member is active at
        // once; rebalancing will hold it in `joining` until its ranges have arrived.
        let ring_version = self
            .write(RingCommand::SetMemberState {
                id: req.id.clone(),
                state: MemberState::Active,
            })
            .await?;
        tracing::info!(node = %req.id, address = %req.address, ring_version, "member added");
        Ok(JoinResponse { ring_version })
    }

    /// Check an `/internal/*` request's signature.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        date: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.secret.verify(method, path, date, signature, body, now)
    }

    /// `POST /internal/raft/append` (JSON in, JSON `Result` out).
    pub async fn raft_append(&self, body: &[u8]) -> Result<Vec<u8>, MembershipError> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(body)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    /// `POST /internal/raft/vote`.
    pub async fn raft_vote(&self, body: &[u8]) -> Result<Vec<u8>, MembershipError> {
        let rpc: VoteRequest<NodeId> = decode(body)?;
        encode(&self.raft.vote(rpc).await)
    }

    /// `POST /internal/raft/snapshot`.
    pub async fn raft_snapshot(&self, body: &[u8]) -> Result<Vec<u8>, MembershipError> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(body)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }

    /// `POST /internal/heartbeat`: a peer is alive; answer with our ring version.
    pub fn handle_heartbeat(&self, hb: &Heartbeat) -> HeartbeatReply {
        self.saw(&hb.from, None);
        HeartbeatReply {
            id: self.id.clone(),
            ring_version: self.ring.borrow().ring_version,
            figures: self.figures_source.get().map(|f| f()),
        }
    }

    /// Tell heartbeat replies where this node's figures come from (once, at startup).
    pub fn set_figures_source(&self, source: FiguresSource) {
        let _ = self.figures_source.set(source);
    }

    /// A peer's figures from its last heartbeat reply, if any.
    pub fn figures_of(&self, id: &str) -> Option<NodeFigures> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.get(id).and_then(|x| x.figures))
    }

    fn saw(&self, id: &str, figures: Option<NodeFigures>) {
        // Only ring members are tracked, so the map is bounded by the ring's size.
        if !self.ring.borrow().members.contains_key(id) {
            return;
        }
        if let Ok(mut seen) = self.seen.lock() {
            // A heartbeat received (not answered) carries no figures: keep the last.
            let figures = figures.or_else(|| seen.get(id).and_then(|x| x.figures));
            seen.insert(
                id.to_string(),
                Seen {
                    at: Instant::now(),
                    at_ms: unix_ms(),
                    figures,
                },
            );
        }
    }

    /// A member's liveness in this node's view and when it was last heard from (Unix
    /// ms, 0 if never).
    pub fn liveness_of(&self, id: &str) -> (Liveness, u64) {
        if id == self.id {
            return (Liveness::Alive, unix_ms());
        }
        let seen = self.seen.lock().ok().and_then(|s| s.get(id).copied());
        let since = seen.map_or_else(|| self.started.elapsed(), |s| s.at.elapsed());
        (
            Liveness::after(since, &self.liveness),
            seen.map_or(0, |s| s.at_ms),
        )
    }

    /// Heartbeat every other member each `heartbeat_interval` until `stop`. One round at
    /// a time, each call bounded by the interval, so nothing queues up behind a dead
    /// peer.
    pub fn spawn_heartbeats(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.liveness.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut stop_fut = std::pin::pin!(stopped(stop));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = &mut stop_fut => break,
                }
                me.heartbeat_round().await;
            }
        })
    }

    async fn heartbeat_round(self: &Arc<Self>) {
        let ring = self.ring();
        let hb = Heartbeat {
            from: self.id.clone(),
            ring_version: ring.ring_version,
        };
        let mut calls = tokio::task::JoinSet::new();
        for m in ring.members.values() {
            if m.id == self.id || m.state == MemberState::Removed {
                continue;
            }
            let (me, hb, m) = (self.clone(), hb.clone(), m.clone());
            calls.spawn(async move {
                let answer: Result<HeartbeatReply, PeerError> = me
                    .client
                    .call(&m.address, PATH_HEARTBEAT, &hb, me.liveness.heartbeat_interval)
                    .await;
                match answer {
                    Ok(r) if r.id == m.id => me.saw(&m.id, r.figures),
                    Ok(r) => tracing::warn!(expected = %m.id, answered = %r.id, "heartbeat answered by another node"),
                    Err(e) => tracing::debug!(peer = %m.id, error = %e, "heartbeat failed"),
                }
            });
        }
        while calls.join_next().await.is_some() {}
    }

    /// Stop the raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown failed");
        }
    }

    /// The current raft leader's node id, if known.
    pub fn leader(&self) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.id.clone())
    }
}

fn join_raft_error(e: RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::NoLeader,
        other => MembershipError::raft(other),
    }
}

fn decode<T: for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T, MembershipError> {
    if body.len() > MAX_INTERNAL_BODY_BYTES {
        return Err(MembershipError::BadRequest("body too large".into()));
    }
    serde_json::from_slice(body).map_err(|e| MembershipError::BadRequest(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, MembershipError> {
    serde_json::to_vec(v).map_err(|e| MembershipError::Raft(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_thresholds() {
        let c = LivenessConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_down_timeout: Duration::from_secs(10),
        };
        assert_eq!(
            Liveness::after(Duration::from_millis(2900), &c),
            Liveness::Alive
        );
        assert_eq!(
            Liveness::after(Duration::from_secs(3), &c),
            Liveness::Suspect
        );
        assert_eq!(Liveness::after(Duration::from_secs(10), &c), Liveness::Down);
    }

    #[test]
    fn raft_ids_are_stable() {
        assert_eq!(raft_id_of("node-a"), raft_id_of("node-a"));
        assert_ne!(raft_id_of("node-a"), raft_id_of("node-b"));
    }
}
