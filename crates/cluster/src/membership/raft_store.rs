//! The raft group's persistent state in its own redb file under `metadata_path`: the log,
//! the vote, the state machine (the ring configuration, tiny, rewritten on every apply)
//! and the last snapshot. Entries and records are JSON: the log holds a handful of ring
//! changes, so size does not matter and the format stays readable when debugging.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ring_state::{RingCommand, RingResponse, RingState};

/// Name of the raft database file under `metadata_path`.
pub const RAFT_DB_FILE: &str = "raft.redb";
/// redb page cache for the raft file (it holds a few kilobytes).
const RAFT_DB_CACHE_BYTES: usize = 4 * 1024 * 1024;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_SM: &str = "state_machine";
const KEY_SNAPSHOT: &str = "snapshot";

/// A member of the raft group as raft sees it: the node id and where to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub id: String,
    pub address: String,
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.address)
    }
}

openraft::declare_raft_types!(
    /// The raft group of the ring configuration.
    pub TypeConfig:
        D = RingCommand,
        R = RingResponse,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Errors of the raft database, before openraft wraps them.
#[derive(Debug, thiserror::Error)]
pub enum RaftDbError {
    #[error("raft database: {0}")]
    Db(String),
    #[error("raft record: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("raft storage task failed: {0}")]
    Task(String),
}

impl RaftDbError {
    fn db(e: impl std::fmt::Display) -> Self {
        RaftDbError::Db(e.to_string())
    }
}

fn io_err(e: RaftDbError) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write(AnyError::new(&e)),
    }
}

/// The open raft database, shared by the log store and the state machine.
#[derive(Clone)]
pub struct RaftDb {
    db: Arc<Database>,
}

impl RaftDb {
    pub fn open(dir: &Path) -> Result<Self, RaftDbError> {
        std::fs::create_dir_all(dir).map_err(RaftDbError::db)?;
        let db = Database::builder()
            .set_cache_size(RAFT_DB_CACHE_BYTES)
            .create(dir.join(RAFT_DB_FILE))
            .map_err(RaftDbError::db)?;
        let txn = db.begin_write().map_err(RaftDbError::db)?;
        txn.open_table(LOG).map_err(RaftDbError::db)?;
        txn.open_table(META).map_err(RaftDbError::db)?;
        txn.commit().map_err(RaftDbError::db)?;
        Ok(RaftDb { db: Arc::new(db) })
    }

    /// True when `dir` holds raft state from an earlier start.
    pub fn exists(dir: &Path) -> bool {
        dir.join(RAFT_DB_FILE).is_file()
    }

    fn get_meta<T: for<'a> Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, RaftDbError> {
        let txn = self.db.begin_read().map_err(RaftDbError::db)?;
        let table = txn.open_table(META).map_err(RaftDbError::db)?;
        match table.get(key).map_err(RaftDbError::db)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Run a write transaction off the async threads (a commit fsyncs).
    async fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), RaftDbError> + Send + 'static,
    ) -> Result<(), RaftDbError> {
        let db = self.db.clone();
        bucketdb_store::run_blocking(move || {
            let txn = db.begin_write().map_err(RaftDbError::db)?;
            f(&txn)?;
            txn.commit().map_err(RaftDbError::db)
        })
        .await
        .map_err(|e| RaftDbError::Task(e.to_string()))?
    }

    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), RaftDbError> {
        self.put_metas(vec![(key, serde_json::to_vec(value)?)])
            .await
    }

    /// Store several encoded values in one transaction: a crash keeps all or none.
    async fn put_metas(&self, rows: Vec<(&'static str, Vec<u8>)>) -> Result<(), RaftDbError> {
        self.write(move |txn| {
            let mut t = txn.open_table(META).map_err(RaftDbError::db)?;
            for (key, bytes) in &rows {
                t.insert(*key, bytes.as_slice()).map_err(RaftDbError::db)?;
            }
            Ok(())
        })
        .await
    }

    fn read_log(
        &self,
        from: u64,
        to_exclusive: Option<u64>,
    ) -> Result<Vec<Entry<TypeConfig>>, RaftDbError> {
        let txn = self.db.begin_read().map_err(RaftDbError::db)?;
        let table = txn.open_table(LOG).map_err(RaftDbError::db)?;
        let iter = match to_exclusive {
            Some(to) => table.range(from..to),
            None => table.range(from..),
        }
        .map_err(RaftDbError::db)?;
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item.map_err(RaftDbError::db)?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    fn last_log(&self) -> Result<Option<Entry<TypeConfig>>, RaftDbError> {
        let txn = self.db.begin_read().map_err(RaftDbError::db)?;
        let table = txn.open_table(LOG).map_err(RaftDbError::db)?;
        match table.last().map_err(RaftDbError::db)? {
            Some((_, v)) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// The ring configuration as last applied (for reading stored state at startup).
    pub fn stored_ring(&self) -> Result<Option<RingState>, RaftDbError> {
        Ok(self.get_meta::<SmData>(KEY_SM)?.map(|d| d.ring))
    }
}

/// The raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: RaftDb,
}

impl LogStore {
    pub fn new(db: RaftDb) -> Self {
        LogStore { db }
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let from = match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&n) => Some(n.saturating_add(1)),
        Bound::Excluded(&n) => Some(n),
        Bound::Unbounded => None,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let (from, to) = bounds(&range);
        self.db.read_log(from, to).map_err(io_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.db.get_meta(KEY_PURGED).map_err(io_err)?;
        let last = self.db.last_log().map_err(io_err)?.map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.db.put_meta(KEY_VOTE, vote).await.map_err(io_err)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.db.get_meta(KEY_VOTE).map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.db
            .put_meta(KEY_COMMITTED, &committed)
            .await
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .db
            .get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)
            .map_err(io_err)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((
                e.log_id.index,
                serde_json::to_vec(&e).map_err(|e| io_err(e.into()))?,
            ));
        }
        let res = self
            .db
            .write(move |txn| {
                let mut t = txn.open_table(LOG).map_err(RaftDbError::db)?;
                for (i, bytes) in &rows {
                    t.insert(*i, bytes.as_slice()).map_err(RaftDbError::db)?;
                }
                Ok(())
            })
            .await;
        // The commit above is durable (redb fsyncs on commit) before raft is told.
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let from = log_id.index;
        self.db
            .write(move |txn| {
                let mut t = txn.open_table(LOG).map_err(RaftDbError::db)?;
                t.retain_in(from.., |_, _| false).map_err(RaftDbError::db)?;
                Ok(())
            })
            .await
            .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| io_err(e.into()))?;
        let upto = log_id.index;
        self.db
            .write(move |txn| {
                let mut meta = txn.open_table(META).map_err(RaftDbError::db)?;
                meta.insert(KEY_PURGED, bytes.as_slice())
                    .map_err(RaftDbError::db)?;
                let mut t = txn.open_table(LOG).map_err(RaftDbError::db)?;
                t.retain_in(..=upto, |_, _| false)
                    .map_err(RaftDbError::db)?;
                Ok(())
            })
            .await
            .map_err(io_err)
    }
}

/// What the state machine holds: the ring and raft's own bookkeeping.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SmData {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, PeerNode>,
    pub ring: RingState,
}

impl SmData {
    /// Apply one log entry (pure: the caller persists).
    pub fn apply_entry(&mut self, entry: &Entry<TypeConfig>) -> RingResponse {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => RingResponse {
                ring_version: self.ring.ring_version,
                refused: None,
            },
            EntryPayload::Normal(cmd) => self.ring.apply(cmd),
            EntryPayload::Membership(m) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                RingResponse {
                    ring_version: self.ring.ring_version,
                    refused: None,
                }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, PeerNode>,
    data: Vec<u8>,
}

/// The state machine: applies ring commands, persists the result, and publishes the
/// ring to readers through a watch channel.
pub struct StateMachine {
    db: RaftDb,
    data: SmData,
    ring: watch::Sender<RingState>,
}

impl StateMachine {
    /// Load the stored state (empty on a first start).
    pub fn open(db: RaftDb) -> Result<(Self, watch::Receiver<RingState>), RaftDbError> {
        let data: SmData = db.get_meta(KEY_SM)?.unwrap_or_default();
        let (ring, rx) = watch::channel(data.ring.clone());
        Ok((StateMachine { db, data, ring }, rx))
    }

    async fn persist(&self) -> Result<(), RaftDbError> {
        self.db.put_meta(KEY_SM, &self.data).await
    }
}

/// Builds snapshots from a copy of the state machine's data.
pub struct SnapshotBuilder {
    db: RaftDb,
    data: SmData,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data = serde_json::to_vec(&self.data).map_err(|e| io_err(e.into()))?;
        let snapshot_id = match &self.data.last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.data.last_applied,
            last_membership: self.data.last_membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| io_err(e.into()))?;
        let built_at = meta.last_log_id;
        // openraft builds snapshots in a task of their own: one installed from the leader
        // meanwhile may be newer, and stays.
        self.db
            .write(move |txn| {
                let mut t = txn.open_table(META).map_err(RaftDbError::db)?;
                let kept: Option<StoredSnapshot> =
                    match t.get(KEY_SNAPSHOT).map_err(RaftDbError::db)? {
                        Some(v) => Some(serde_json::from_slice(v.value())?),
                        None => None,
                    };
                if kept.is_none_or(|k| k.meta.last_log_id <= built_at) {
                    t.insert(KEY_SNAPSHOT, bytes.as_slice())
                        .map_err(RaftDbError::db)?;
                }
                Ok(())
            })
            .await
            .map_err(io_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, PeerNode>)> {
        Ok((self.data.last_applied, self.data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<RingResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let out: Vec<RingResponse> = entries
            .into_iter()
            .map(|e| self.data.apply_entry(&e))
            .collect();
        // Persist before answering, so a restarted node never re-applies out of order.
        self.persist().await.map_err(io_err)?;
        self.ring.send_replace(self.data.ring.clone());
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            data: self.data.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let received: SmData = serde_json::from_slice(&bytes).map_err(|e| io_err(e.into()))?;
        let data = SmData {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            ring: received.ring,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        let rows = vec![
            (
                KEY_SNAPSHOT,
                serde_json::to_vec(&stored).map_err(|e| io_err(e.into()))?,
            ),
            (
                KEY_SM,
                serde_json::to_vec(&data).map_err(|e| io_err(e.into()))?,
            ),
        ];
        // The snapshot and the state it sets are stored together, so a crash cannot
        // leave one without the other; memory changes only once both are durable.
        self.db.put_metas(rows).await.map_err(io_err)?;
        self.data = data;
        self.ring.send_replace(self.data.ring.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = self.db.get_meta(KEY_SNAPSHOT).map_err(io_err)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Raft members of a stored membership, by raft id (for tests and status).
pub fn membership_nodes(m: &StoredMembership<NodeId, PeerNode>) -> BTreeMap<NodeId, PeerNode> {
    m.membership()
        .nodes()
        .map(|(id, n)| (*id, n.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::ring_state::MemberState;
    use openraft::{CommittedLeaderId, Membership};

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 7), index),
            payload,
        }
    }

    /// The log of a one-node group: a blank entry, raft member 7, then ring member `a`.
    fn member_a_joins() -> Vec<Entry<TypeConfig>> {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            7u64,
            PeerNode {
                id: "a".into(),
                address: "127.0.0.1:1".into(),
            },
        );
        let membership = Membership::new(vec![[7u64].into_iter().collect()], nodes);
        vec![
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Membership(membership)),
            entry(
                3,
                EntryPayload::Normal(RingCommand::AddMember {
                    id: "a".into(),
                    address: "127.0.0.1:1".into(),
                    state: MemberState::Active,
                }),
            ),
        ]
    }

    #[tokio::test]
    async fn applied_ring_commands_persist_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = RaftDb::open(dir.path()).expect("open");
        let (mut sm, rx) = StateMachine::open(db.clone()).expect("sm");
        let out = sm.apply(member_a_joins()).await.expect("apply");
        assert_eq!(out.last().map(|r| r.ring_version), Some(1));
        assert!(rx.borrow().is_member("a"));
        drop((sm, db, rx));

        // A restarted node resumes from what was applied.
        let db = RaftDb::open(dir.path()).expect("reopen");
        let ring = db.stored_ring().expect("read").expect("stored");
        assert_eq!(ring.ring_version, 1);
        let (mut sm, _rx) = StateMachine::open(db).expect("sm");
        let (applied, membership) = sm.applied_state().await.expect("applied");
        assert_eq!(applied.map(|l| l.index), Some(3));
        assert_eq!(membership_nodes(&membership).len(), 1);
    }

    /// Opens a fresh raft database in its own temporary folder for each suite case.
    struct FreshRaftDb;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
        for FreshRaftDb
    {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().map_err(|e| io_err(RaftDbError::db(e)))?;
            let db = RaftDb::open(dir.path()).map_err(io_err)?;
            let (sm, _ring) = StateMachine::open(db.clone()).map_err(io_err)?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance cases for log stores and state machines: vote, log
    /// reads, purge and truncation, membership recovery, applying, and building a
    /// snapshot on one store and installing it on another.
    #[test]
    fn the_raft_store_passes_openraft_storage_suite() -> Result<(), String> {
        openraft::testing::Suite::test_all(FreshRaftDb).map_err(|e| e.to_string())
    }

    /// A snapshot of a one-node group's state after [`member_a_joins`].
    async fn leaders_snapshot() -> Snapshot<TypeConfig> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, _rx) =
            StateMachine::open(RaftDb::open(dir.path()).expect("open")).expect("sm");
        leader.apply(member_a_joins()).await.expect("apply");
        leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build")
    }

    /// A node that catches up from a snapshot (its log was purged on the leader) keeps
    /// the ring it received across a restart, and can hand the snapshot on in turn.
    #[tokio::test]
    async fn an_installed_snapshot_survives_a_restart() {
        let built = leaders_snapshot().await;

        let follower_dir = tempfile::tempdir().expect("tempdir");
        let (mut follower, rx) =
            StateMachine::open(RaftDb::open(follower_dir.path()).expect("open")).expect("sm");
        let mut incoming = follower.begin_receiving_snapshot().await.expect("begin");
        *incoming = *built.snapshot;
        follower
            .install_snapshot(&built.meta, incoming)
            .await
            .expect("install");
        assert!(rx.borrow().is_member("a"), "the installed ring is live");
        drop((follower, rx));

        let db = RaftDb::open(follower_dir.path()).expect("reopen");
        let ring = db.stored_ring().expect("read").expect("stored");
        assert!(ring.is_member("a"));
        assert_eq!(ring.ring_version, 1);
        let (mut follower, _rx) = StateMachine::open(db).expect("sm");
        let (applied, membership) = follower.applied_state().await.expect("applied");
        assert_eq!(applied.map(|l| l.index), Some(3));
        assert_eq!(membership_nodes(&membership).len(), 1);
        let kept = follower
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("the snapshot is kept");
        assert_eq!(kept.meta, built.meta);
    }

    /// A snapshot build that started before a newer snapshot was installed (openraft
    /// runs builds in a task of their own) does not replace the installed one.
    #[tokio::test]
    async fn a_late_snapshot_build_keeps_a_newer_installed_snapshot() {
        let newer = leaders_snapshot().await;

        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sm, _rx) =
            StateMachine::open(RaftDb::open(dir.path()).expect("open")).expect("sm");
        let mut late_build = sm.get_snapshot_builder().await;
        let mut incoming = sm.begin_receiving_snapshot().await.expect("begin");
        *incoming = *newer.snapshot;
        sm.install_snapshot(&newer.meta, incoming)
            .await
            .expect("install");
        late_build.build_snapshot().await.expect("late build");
        let kept = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(kept.meta, newer.meta);
    }

    #[tokio::test]
    async fn log_store_round_trips_and_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = RaftDb::open(dir.path()).expect("open");
        let mut log = LogStore::new(db.clone());
        let rows: Vec<(u64, Vec<u8>)> = (1..=5)
            .map(|i| {
                (
                    i,
                    serde_json::to_vec(&entry(i, EntryPayload::Blank)).expect("json"),
                )
            })
            .collect();
        db.write(move |txn| {
            let mut t = txn.open_table(LOG).map_err(RaftDbError::db)?;
            for (i, b) in &rows {
                t.insert(*i, b.as_slice()).map_err(RaftDbError::db)?;
            }
            Ok(())
        })
        .await
        .expect("write");
        assert_eq!(log.try_get_log_entries(2..4).await.expect("read").len(), 2);
        log.truncate(LogId::new(CommittedLeaderId::new(1, 7), 4))
            .await
            .expect("truncate");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
        log.purge(LogId::new(CommittedLeaderId::new(1, 7), 2))
            .await
            .expect("purge");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(log.try_get_log_entries(0..).await.expect("read").len(), 1);
    }
}
