//! Listings through any node of a cluster. A node holds only the keys whose replica set
//! includes it, so a listing page is gathered from every member not seen down: each
//! reads its own page from the same cursor (`POST /internal/list`), and the pages are
//! merged by key. The members that answered must cover every key range
//! ([`Coverage::check`]: a majority of each range's replicas in quorum mode, each
//! range's coordinator in async mode), or the listing fails with 503 rather than come
//! back short.
//!
//! A merged page holds only what every answering node has scanned past: a node whose
//! page ended early (its own page was full) sets a frontier, and entries beyond it wait
//! for the next page. Where a key's answering replicas disagree (some list it and some
//! do not, or they list different copies), they are asked for their view of it now
//! (`ListRequest::States`) and the newest view decides, as for reads; a version some
//! replica removed is dropped. So a page costs each member one page read and, only for
//! entries in dispute, one batch of questions per 1,000 entries.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::coverage::Coverage;
use bucketdb_cluster::membership::network::PATH_LIST;
use bucketdb_cluster::replication::{decode_message, encode_message};
use bucketdb_store::Table;
use bucketdb_store::keys::{object_key, tombstone_key};
use bucketdb_store::records::{Body, ObjectRecord, decode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ObjectService;
use crate::error::{ObjectError, Result};
use crate::list::{ListPage, ListQuery, MAX_LIST_LIMIT};
use crate::versions::{
    MAX_VERSIONS_LISTED, VersionPage, find_version, latest_change, tombstone_seq,
};

/// Longest wait for a member's page.
pub const LIST_PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest further wait for the other members once the answers in hand cover every key
/// range.
const LIST_STRAGGLER_GRACE: Duration = Duration::from_secs(1);
/// Most entries one state question names (each a key of at most 1,024 bytes and a
/// version id, so a question stays far below the internal body limit).
const STATE_QUESTIONS_MAX: usize = 1000;
/// Most gathering rounds one page takes. A round comes back short only when entries
/// were dropped as removed elsewhere; the page then ends early, with a cursor.
const LIST_MAX_ROUNDS: usize = 3;

/// Which versions a listing page wants (S3 ListObjectVersions).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct VersionsQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    /// The `seq` of the version marker's version, when the asking node knows it: every
    /// member resumes right after it, whether it holds that version or not.
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// A node's question to a peer for a listing made through it.
#[derive(Serialize, Deserialize)]
enum ListRequest {
    /// The peer's page of current objects (answered with a [`ListPage`]).
    Objects { bucket: String, query: ListQuery },
    /// The peer's page of versions (answered with [`NodeVersions`]). A peer that lacks
    /// the version marker lists the marker's key from its start.
    Versions {
        bucket: String,
        query: VersionsQuery,
    },
    /// What the peer knows of each entry, answered with one [`EntryState`] per entry.
    States {
        bucket: String,
        entries: Vec<(String, Option<String>)>,
    },
}

/// A node's page of current objects, and the first object under each of its common
/// prefixes (in the same order).
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct NodeObjects {
    pub page: ListPage,
    pub firsts: Vec<ObjectRecord>,
}

/// A node's page of versions, the `seq` of the version marker if it holds it, and the
/// first version under each of its common prefixes.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct NodeVersions {
    pub page: VersionPage,
    pub marker_seq: Option<u64>,
    pub firsts: Vec<ObjectRecord>,
}

/// Most common prefixes of one page checked by a listing of their own, when every
/// entry its nodes named under it turned out removed elsewhere; past it, such a prefix
/// is listed (it may be empty by then).
const MAX_PREFIX_RECHECKS: usize = 8;

/// What a listing asks a replica about one of its entries: a key (ListObjects) or one
/// version of it.
type Question = (String, Option<String>);

/// What a node knows of an entry when asked (not when it read its page: a copy or a
/// removal may have arrived since).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EntryState {
    /// How far the node has seen the key change (`versions::key_state_seq`); for a
    /// version, the `seq` its removal covers (0: never removed there).
    seq: u64,
    /// Whether that latest change is a removal (a tombstone at or after the newest
    /// version), which wins over a version at the same `seq`.
    removal: bool,
    /// The node's current version of the key, as (`seq`, `tags_seq`); `None` when it has
    /// none (never written there, deleted, or a delete marker is newest).
    current: Option<(u64, u64)>,
}

impl EntryState {
    /// Order of views of a key: the later change; at one `seq` a removal over a version
    /// (a marker removed by id at its own `seq`); then the later tags.
    fn rank(&self) -> (u64, bool, u64) {
        (self.seq, self.removal, self.current.map_or(0, |c| c.1))
    }
}

/// The answers to the state questions: by question, by node.
type StateAnswers = BTreeMap<Question, BTreeMap<String, EntryState>>;

/// Entries whose replicas disagree, and the nodes to ask about each.
#[derive(Default)]
struct Disputes {
    asks: Vec<(Question, Vec<String>)>,
}

impl Disputes {
    /// Note an entry (asked about as `question`) listed by `holders`: every answering
    /// replica of its key outside `holders` is asked; with `disagree` (the holders list
    /// different copies, to be ranked) the holders too, and so are they whenever a
    /// replica is asked about a key (`rank`).
    #[allow(clippy::too_many_arguments)]
    fn note<'a, T>(
        &mut self,
        coverage: &Coverage,
        pages: &BTreeMap<String, T>,
        bucket: &str,
        question: Question,
        holders: impl Iterator<Item = &'a String> + Clone,
        rank: bool,
        disagree: bool,
    ) {
        let mut ask = absent(coverage, pages, bucket, &question.0, holders.clone());
        if ask.is_empty() && !disagree {
            return;
        }
        if rank {
            ask.extend(holders.cloned());
        }
        if !self.asks.iter().any(|(q, _)| *q == question) {
            self.asks.push((question, ask));
        }
    }
}

impl Disputes {
    /// Note the first entries found under a common prefix.
    fn note_firsts<T>(
        &mut self,
        coverage: &Coverage,
        pages: &BTreeMap<String, T>,
        bucket: &str,
        firsts: &Firsts,
    ) {
        for (question, (_, holders)) in firsts {
            self.note(
                coverage,
                pages,
                bucket,
                question.clone(),
                holders.iter(),
                false,
                false,
            );
        }
    }
}

/// Whether an entry that was asked about is gone: a version removed on a node asked;
/// a key whose newest view among the nodes asked has no current version.
fn hidden(answers: &StateAnswers, question: &Question, record: &ObjectRecord) -> bool {
    let Some(by_node) = answers.get(question) else {
        return false;
    };
    match question.1 {
        Some(_) => by_node.values().any(|st| st.seq >= record.seq),
        None => newest_view(by_node).is_some_and(|st| st.current.is_none()),
    }
}

/// The newest of the nodes' views of a key.
fn newest_view(by_node: &BTreeMap<String, EntryState>) -> Option<&EntryState> {
    by_node.values().max_by_key(|st| st.rank())
}

/// The candidates of a common prefix: the first entry each node found under it.
type Firsts = BTreeMap<Question, (ObjectRecord, BTreeSet<String>)>;

fn add_first(firsts: &mut Firsts, question: Question, record: &ObjectRecord, node: &str) {
    let e = firsts
        .entry(question)
        .or_insert_with(|| (record.clone(), BTreeSet::new()));
    if newer(record, &e.0) {
        e.0 = record.clone();
    }
    e.1.insert(node.to_string());
}

/// One entry of a merged page: a common prefix, or a key with each node's copy.
enum Entry {
    Prefix(Firsts),
    Object(BTreeMap<String, ObjectRecord>),
}

/// Whether the nodes listing a key list different copies of it.
fn copies_differ(copies: &BTreeMap<String, ObjectRecord>) -> bool {
    let mut seen = copies.values().map(|r| (r.seq, r.tags_seq));
    let first = seen.next();
    seen.any(|c| Some(c) != first)
}

/// The copy of a key to list, if any: where its replicas agree, their copy; otherwise
/// (`answers`, the views of the nodes asked) the copy the newest view shows, or none
/// when the newest view has no current version.
fn resolve_object(
    copies: BTreeMap<String, ObjectRecord>,
    answers: Option<&BTreeMap<String, EntryState>>,
) -> Option<ObjectRecord> {
    let Some(answers) = answers else {
        return copies.into_values().next();
    };
    let (seq, tags_seq) = newest_view(answers)?.current?;
    let mut copies: Vec<ObjectRecord> = copies.into_values().collect();
    copies.sort_by_key(|c| (c.seq, c.tags_seq));
    // The copy it names; one that arrived after the pages were read is not among them,
    // and the newest page copy stands in for it.
    match copies
        .iter()
        .position(|c| (c.seq, c.tags_seq) == (seq, tags_seq))
    {
        Some(i) => Some(copies.swap_remove(i)),
        None => copies.pop(),
    }
}

/// Where an entry sorts in a versions listing: by key, then newest first. A common
/// prefix sorts before the keys it covers (none of them are listed).
type Position = (String, Reverse<u64>);

fn newer(a: &ObjectRecord, b: &ObjectRecord) -> bool {
    (a.seq, a.tags_seq) > (b.seq, b.tags_seq)
}

/// A listing answer carries no chunk lists: they can be long and a listing shows none.
fn for_listing(r: &mut ObjectRecord) {
    r.body = Body::default();
}

/// Merge the members' pages of current objects into the first `limit` entries that
/// every member has scanned past, and the cursor after them (`None`: nothing follows).
fn merge_objects(
    pages: &BTreeMap<String, NodeObjects>,
    limit: usize,
) -> (Vec<(String, Entry)>, Option<String>) {
    let frontier = pages
        .values()
        .filter_map(|p| p.page.next_cursor.as_deref())
        .min()
        .map(str::to_string);
    let within = |k: &str| frontier.as_deref().is_none_or(|f| k <= f);
    let mut merged: BTreeMap<String, Entry> = BTreeMap::new();
    for (node, NodeObjects { page, firsts }) in pages {
        for (p, first) in page.prefixes.iter().zip(firsts) {
            if !within(p) {
                continue;
            }
            let entry = merged
                .entry(p.clone())
                .or_insert_with(|| Entry::Prefix(Firsts::new()));
            if let Entry::Prefix(firsts) = entry {
                add_first(firsts, (first.key.clone(), None), first, node);
            }
        }
        for r in page.objects.iter().filter(|r| within(&r.key)) {
            let entry = merged
                .entry(r.key.clone())
                .or_insert_with(|| Entry::Object(BTreeMap::new()));
            if let Entry::Object(copies) = entry {
                copies.insert(node.clone(), r.clone());
            }
        }
    }
    let more = merged.len() > limit;
    let page: Vec<(String, Entry)> = merged.into_iter().take(limit).collect();
    let cursor = match more {
        true => page.last().map(|(k, _)| k.clone()),
        false => frontier,
    };
    (page, cursor)
}

/// A merged version and the nodes that listed it.
struct MergedVersion {
    record: ObjectRecord,
    holders: BTreeSet<String>,
}

enum VersionEntry {
    Prefix(String, Firsts),
    Version(Box<MergedVersion>),
}

impl VersionEntry {
    fn position(&self) -> Position {
        match self {
            VersionEntry::Prefix(p, _) => (p.clone(), Reverse(u64::MAX)),
            VersionEntry::Version(v) => (v.record.key.clone(), Reverse(v.record.seq)),
        }
    }
}

/// The position of a node's last entry, if its page was cut short.
fn version_frontier(page: &VersionPage) -> Option<Position> {
    let key = page.next_key_marker.as_ref()?;
    Some(match &page.next_version_id_marker {
        Some(id) => page
            .versions
            .iter()
            .find(|(r, _)| &r.key == key && &r.version_id == id)
            .map_or((key.clone(), Reverse(0)), |(r, _)| {
                (key.clone(), Reverse(r.seq))
            }),
        None => (key.clone(), Reverse(u64::MAX)),
    })
}

/// Merge the members' pages of versions as [`merge_objects`] does; `marker` is the key
/// the page resumes inside and the `seq` of the version it resumes after (`None`: no
/// member holds that version, so the key is skipped, as on one node).
fn merge_versions(
    pages: &BTreeMap<String, NodeVersions>,
    marker: Option<(&str, Option<u64>)>,
    limit: usize,
) -> (Vec<VersionEntry>, Option<Position>) {
    let frontier = pages
        .values()
        .filter_map(|p| version_frontier(&p.page))
        .min();
    let within = |p: &Position| frontier.as_ref().is_none_or(|f| p <= f);
    let skipped = |r: &ObjectRecord| match marker {
        Some((key, seq)) => r.key == key && seq.is_none_or(|s| r.seq >= s),
        None => false,
    };
    let mut versions: BTreeMap<(String, String), MergedVersion> = BTreeMap::new();
    let mut prefixes: BTreeMap<String, Firsts> = BTreeMap::new();
    for (node, p) in pages {
        for (cp, first) in p.page.prefixes.iter().zip(&p.firsts) {
            if within(&(cp.clone(), Reverse(u64::MAX))) {
                let question = (first.key.clone(), Some(first.version_id.clone()));
                add_first(
                    prefixes.entry(cp.clone()).or_default(),
                    question,
                    first,
                    node,
                );
            }
        }
        for (r, _) in &p.page.versions {
            if !within(&(r.key.clone(), Reverse(r.seq))) || skipped(r) {
                continue;
            }
            // One entry per version id: a `null` version overwritten since a stale copy
            // was made keeps only its newest copy.
            let v = versions
                .entry((r.key.clone(), r.version_id.clone()))
                .or_insert_with(|| MergedVersion {
                    record: r.clone(),
                    holders: BTreeSet::new(),
                });
            if newer(r, &v.record) {
                v.record = r.clone();
                v.holders.clear();
            }
            if r.seq == v.record.seq {
                v.holders.insert(node.clone());
            }
        }
    }
    let mut all: Vec<VersionEntry> = prefixes
        .into_iter()
        .map(|(p, firsts)| VersionEntry::Prefix(p, firsts))
        .chain(
            versions
                .into_values()
                .map(|v| VersionEntry::Version(Box::new(v))),
        )
        .collect();
    all.sort_by_key(VersionEntry::position);
    let more = all.len() > limit;
    all.truncate(limit);
    let cursor = match more {
        true => all.last().map(VersionEntry::position),
        false => frontier,
    };
    (all, cursor)
}

impl ObjectService {
    /// A page of the bucket's current objects, from every node holding part of it.
    pub async fn list_objects(self: &Arc<Self>, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let Some(coverage) = self.cluster.coverage() else {
            return self.list_objects_here(bucket, q);
        };
        let limit = match q.limit {
            0 => MAX_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let mut out = ListPage::default();
        let mut cursor = q.start_after.clone();
        let mut rechecks = 0;
        for _ in 0..LIST_MAX_ROUNDS {
            let want = limit - out.objects.len() - out.prefixes.len();
            let query = ListQuery {
                start_after: cursor.clone(),
                limit: want,
                ..q.clone()
            };
            let mine = self.objects_here(bucket, &query)?;
            let request = ListRequest::Objects {
                bucket: bucket.to_string(),
                query,
            };
            let pages = self.gather(&coverage, &request, mine).await?;
            let (entries, next) = merge_objects(&pages, want);
            let mut disputes = Disputes::default();
            for (key, e) in &entries {
                match e {
                    Entry::Object(copies) => disputes.note(
                        &coverage,
                        &pages,
                        bucket,
                        (key.clone(), None),
                        copies.keys(),
                        true,
                        copies_differ(copies),
                    ),
                    Entry::Prefix(firsts) => {
                        disputes.note_firsts(&coverage, &pages, bucket, firsts)
                    }
                }
            }
            let answers = self.ask_states(&coverage, bucket, disputes).await?;
            for (key, e) in entries {
                match e {
                    Entry::Prefix(firsts) => {
                        let recheck = || ListQuery {
                            prefix: key.clone(),
                            delimiter: None,
                            start_after: None,
                            limit: 1,
                        };
                        if self
                            .prefix_holds_entries(&answers, &firsts, &mut rechecks, async || {
                                let page = Box::pin(self.list_objects(bucket, &recheck())).await?;
                                Ok(!page.objects.is_empty() || page.next_cursor.is_some())
                            })
                            .await?
                        {
                            out.prefixes.push(key);
                        }
                    }
                    Entry::Object(copies) => {
                        let asked = answers.get(&(key, None));
                        out.objects.extend(resolve_object(copies, asked));
                    }
                }
            }
            cursor = next;
            if cursor.is_none() || out.objects.len() + out.prefixes.len() >= limit {
                break;
            }
        }
        out.next_cursor = cursor;
        Ok(out)
    }

    /// Whether a common prefix of a merged page still has an entry under it: one of
    /// the first entries its nodes found there is not removed elsewhere, or else a
    /// listing of the prefix alone (`recheck`, at most `MAX_PREFIX_RECHECKS` a page)
    /// finds one.
    async fn prefix_holds_entries(
        &self,
        answers: &StateAnswers,
        firsts: &Firsts,
        rechecks: &mut usize,
        recheck: impl AsyncFnOnce() -> Result<bool>,
    ) -> Result<bool> {
        if firsts
            .iter()
            .any(|(question, (record, _))| !hidden(answers, question, record))
        {
            return Ok(true);
        }
        *rechecks += 1;
        if *rechecks > MAX_PREFIX_RECHECKS {
            return Ok(true);
        }
        recheck().await
    }

    /// A page of every version in a bucket (S3 ListObjectVersions), from every node
    /// holding part of it. See [`ObjectService::list_bucket_versions_here`] for the
    /// arguments.
    pub async fn list_bucket_versions(
        self: &Arc<Self>,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        limit: usize,
    ) -> Result<VersionPage> {
        let Some(coverage) = self.cluster.coverage() else {
            return self.list_bucket_versions_here(
                bucket,
                prefix,
                delimiter,
                key_marker,
                version_id_marker,
                limit,
            );
        };
        let limit = limit.clamp(1, MAX_VERSIONS_LISTED);
        let mut out = VersionPage::default();
        // Where the page resumes: a key, a version id, and that version's `seq` once known.
        let mut marker: Option<(String, Option<String>, Option<u64>)> =
            key_marker.filter(|k| !k.is_empty()).map(|k| {
                let id = version_id_marker.filter(|v| !v.is_empty());
                (k.to_string(), id.map(str::to_string), None)
            });
        if let Some((key, Some(id), seq)) = &mut marker {
            let kv = self.cluster.meta().read()?;
            *seq = find_version(kv.as_ref(), bucket, key, id)?.map(|(_, r)| r.seq);
        }
        // The key whose versions the page resumes inside (its newest was listed before).
        let mut prev_key: Option<String> = None;
        let mut rechecks = 0;
        for _ in 0..LIST_MAX_ROUNDS {
            let query = VersionsQuery {
                prefix: prefix.to_string(),
                delimiter: delimiter.map(str::to_string),
                key_marker: marker.as_ref().map(|m| m.0.clone()),
                version_id_marker: marker.as_ref().and_then(|m| m.1.clone()),
                after_seq: marker.as_ref().and_then(|m| m.2),
                limit: limit - out.versions.len() - out.prefixes.len(),
            };
            let mine = self.versions_here(bucket, &query, true)?;
            let request = ListRequest::Versions {
                bucket: bucket.to_string(),
                query: query.clone(),
            };
            let pages = self.gather(&coverage, &request, mine).await?;
            // Members that lack the marker version listed its key from the start, and
            // members holding different copies of its id resumed at different points:
            // go again from the `seq` the others reported, so all resume alike.
            if let (Some(seq), Some(m)) = (marker_seq_to_agree(&query, &pages), marker.as_mut()) {
                m.2 = Some(seq);
                continue;
            }
            let resume = resume_point(&query, &pages);
            if let Some((key, Some(_))) = resume {
                prev_key = Some(key.to_string());
            }
            let (entries, next) = merge_versions(&pages, resume, query.limit);
            let mut disputes = Disputes::default();
            for e in &entries {
                match e {
                    VersionEntry::Version(v) => {
                        let question = (v.record.key.clone(), Some(v.record.version_id.clone()));
                        let holders = v.holders.iter();
                        disputes.note(&coverage, &pages, bucket, question, holders, false, false);
                    }
                    VersionEntry::Prefix(_, firsts) => {
                        disputes.note_firsts(&coverage, &pages, bucket, firsts)
                    }
                }
            }
            let answers = self.ask_states(&coverage, bucket, disputes).await?;
            for e in entries {
                match e {
                    VersionEntry::Prefix(p, firsts) => {
                        if self
                            .prefix_holds_entries(&answers, &firsts, &mut rechecks, async || {
                                let page = Box::pin(
                                    self.list_bucket_versions(bucket, &p, None, None, None, 1),
                                )
                                .await?;
                                Ok(!page.versions.is_empty() || page.next_key_marker.is_some())
                            })
                            .await?
                        {
                            out.prefixes.push(p);
                        }
                    }
                    VersionEntry::Version(v) => {
                        let record = v.record;
                        let question = (record.key.clone(), Some(record.version_id.clone()));
                        if hidden(&answers, &question, &record) {
                            continue;
                        }
                        let latest = prev_key.as_deref() != Some(record.key.as_str());
                        prev_key = Some(record.key.clone());
                        out.versions.push((record, latest));
                    }
                }
            }
            marker = next.map(|(key, Reverse(seq))| {
                let seq = (seq != u64::MAX).then_some(seq);
                let id = seq.and_then(|seq| version_id_at(&pages, &key, seq));
                (key, id, seq)
            });
            if marker.is_none() || out.versions.len() + out.prefixes.len() >= limit {
                break;
            }
        }
        (out.next_key_marker, out.next_version_id_marker) = match marker {
            Some((k, v, _)) => (Some(k), v),
            None => (None, None),
        };
        Ok(out)
    }

    /// Ask every member in `coverage` the same listing question; their answers and this
    /// node's own (`mine`), by node id. Fails when those who answered do not cover every
    /// key range.
    async fn gather<T: DeserializeOwned>(
        &self,
        coverage: &Coverage,
        request: &ListRequest,
        mine: T,
    ) -> Result<BTreeMap<String, T>> {
        use futures::StreamExt;
        let body = encode_message(request)?;
        let mut calls: futures::stream::FuturesUnordered<_> = coverage
            .peers()
            .iter()
            .map(|peer| {
                let body = body.clone();
                async move {
                    let peer = std::slice::from_ref(peer);
                    let answers = self
                        .cluster
                        .call_each(peer, PATH_LIST, body, LIST_PEER_TIMEOUT);
                    answers.await.into_iter().next()
                }
            })
            .collect();
        let mut pages = BTreeMap::new();
        pages.insert(coverage.me().to_string(), mine);
        let mut answered: BTreeSet<String> = pages.keys().cloned().collect();
        // Once the answers cover every key range, stragglers get a short grace only: a
        // member that hangs must not hold every listing for the whole timeout.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, calls.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => calls.next().await,
            };
            let Some(answer) = next else { break };
            let Some((id, answer)) = answer else { continue };
            match answer.and_then(|b| decode_message::<T>(&b)) {
                Ok(page) => {
                    pages.insert(id.clone(), page);
                    answered.insert(id);
                }
                Err(e) => tracing::warn!(peer = %id, error = %e, "a peer's listing page failed"),
            }
            if deadline.is_none() && coverage.check(&answered).is_ok() {
                deadline = Some(tokio::time::Instant::now() + LIST_STRAGGLER_GRACE);
            }
        }
        coverage
            .check(&answered)
            .map_err(|e| ObjectError::Unavailable(format!("listing incomplete: {e}")))?;
        Ok(pages)
    }

    /// Ask the nodes each disputed entry names what they know of it ([`EntryState`]).
    /// One call per node and `STATE_QUESTIONS_MAX` questions, all at once.
    async fn ask_states(
        &self,
        coverage: &Coverage,
        bucket: &str,
        disputes: Disputes,
    ) -> Result<StateAnswers> {
        let mut asks: BTreeMap<&str, Vec<&Question>> = BTreeMap::new();
        for (question, nodes) in &disputes.asks {
            for n in nodes {
                asks.entry(n.as_str()).or_default().push(question);
            }
        }
        // Every member's batches at once; this node answers its own.
        let mut calls = Vec::new();
        for (node, questions) in &asks {
            for batch in questions.chunks(STATE_QUESTIONS_MAX) {
                let entries: Vec<Question> = batch.iter().map(|q| (*q).clone()).collect();
                let peer = coverage.peers().iter().find(|(id, _)| id == node);
                calls.push(async move {
                    let states = match peer {
                        _ if *node == coverage.me() => self.states_here(bucket, &entries)?,
                        Some(peer) => self.states_on(peer, bucket, entries).await?,
                        None => Vec::new(),
                    };
                    Ok::<_, ObjectError>((*node, batch.iter().zip(states)))
                });
            }
        }
        let mut answers = StateAnswers::new();
        for (node, states) in futures::future::try_join_all(calls).await? {
            for (question, state) in states {
                let by_node = answers.entry((*question).clone()).or_default();
                by_node.insert(node.to_string(), state);
            }
        }
        Ok(answers)
    }

    /// [`ObjectService::states_here`] on `peer`.
    async fn states_on(
        &self,
        peer: &(String, String),
        bucket: &str,
        entries: Vec<Question>,
    ) -> Result<Vec<EntryState>> {
        let asked = entries.len();
        let request = encode_message(&ListRequest::States {
            bucket: bucket.to_string(),
            entries,
        })?;
        let answer = self
            .cluster
            .call_each(
                std::slice::from_ref(peer),
                PATH_LIST,
                request,
                LIST_PEER_TIMEOUT,
            )
            .await
            .into_iter()
            .next()
            .map(|(_, a)| a.and_then(|b| decode_message::<Vec<EntryState>>(&b)));
        match answer {
            Some(Ok(states)) if states.len() == asked => Ok(states),
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "no answer".into(),
                };
                Err(ObjectError::Unavailable(format!(
                    "listing incomplete: node {} did not say what it holds of disputed entries: {why}",
                    peer.0
                )))
            }
        }
    }

    /// What this node knows of each entry now ([`EntryState`]).
    fn states_here(&self, bucket: &str, entries: &[Question]) -> Result<Vec<EntryState>> {
        let kv = self.cluster.meta().read()?;
        let kv = kv.as_ref();
        entries
            .iter()
            .map(|(key, version)| match version {
                None => key_view(kv, bucket, key),
                Some(id) => Ok(EntryState {
                    seq: tombstone_seq(kv, &tombstone_key(bucket, key, id))?.unwrap_or(0),
                    removal: true,
                    current: None,
                }),
            })
            .collect()
    }

    /// `POST /internal/list`: this node's part of a listing made through a peer. A
    /// bucket not known here yet has nothing here.
    pub fn answer_list(&self, body: &[u8]) -> Result<Vec<u8>> {
        let missing_bucket = |e: &ObjectError| matches!(e, ObjectError::NoSuchBucket(_));
        match decode_message::<ListRequest>(body)? {
            ListRequest::Objects { bucket, query } => {
                let mut answer = match self.objects_here(&bucket, &query) {
                    Err(e) if missing_bucket(&e) => NodeObjects::default(),
                    other => other?,
                };
                for r in answer.page.objects.iter_mut().chain(&mut answer.firsts) {
                    for_listing(r);
                }
                Ok(encode_message(&answer)?)
            }
            ListRequest::Versions { bucket, query } => {
                let mut answer = match self.versions_here(&bucket, &query, true) {
                    Err(e) if missing_bucket(&e) => NodeVersions::default(),
                    other => other?,
                };
                let versions = answer.page.versions.iter_mut().map(|(r, _)| r);
                for r in versions.chain(&mut answer.firsts) {
                    for_listing(r);
                }
                Ok(encode_message(&answer)?)
            }
            ListRequest::States { bucket, entries } => {
                if entries.len() > STATE_QUESTIONS_MAX {
                    return Err(ObjectError::InvalidArgument(format!(
                        "at most {STATE_QUESTIONS_MAX} entries a question"
                    )));
                }
                Ok(encode_message(&self.states_here(&bucket, &entries)?)?)
            }
        }
    }
}

/// The replicas of `key` that answered the listing without listing it.
fn absent<'a, T>(
    coverage: &Coverage,
    pages: &BTreeMap<String, T>,
    bucket: &str,
    key: &str,
    holders: impl Iterator<Item = &'a String> + Clone,
) -> Vec<String> {
    coverage
        .replicas(bucket, key)
        .into_iter()
        .filter(|r| pages.contains_key(*r) && !holders.clone().any(|h| h == r))
        .map(str::to_string)
        .collect()
}

/// A node's view of a key: its latest change and its current version.
fn key_view(kv: &dyn bucketdb_store::KvRead, bucket: &str, key: &str) -> Result<EntryState> {
    let (seq, removal) = latest_change(kv, bucket, key)?;
    let current = match kv.get(Table::Current, &object_key(bucket, key))? {
        Some(v) => {
            let r: ObjectRecord = decode(&v)?;
            Some((r.seq, r.tags_seq))
        }
        None => None,
    };
    Ok(EntryState {
        seq,
        removal,
        current,
    })
}

/// The `seq` every member should resume after when they resumed a versions page at
/// different points (some lack the marker version, or hold another copy of its id);
/// `None` when they agree or nobody knows it.
fn marker_seq_to_agree(
    query: &VersionsQuery,
    pages: &BTreeMap<String, NodeVersions>,
) -> Option<u64> {
    if query.after_seq.is_some() || query.version_id_marker.is_none() {
        return None;
    }
    let reported: BTreeSet<Option<u64>> = pages.values().map(|p| p.marker_seq).collect();
    match reported.last() {
        Some(Some(seq)) if reported.len() > 1 => Some(*seq),
        _ => None,
    }
}

/// Where a versions page resumes inside a key: after a version marker (not a common
/// prefix), the marker's key and the `seq` of its version where a member knows it.
fn resume_point<'q>(
    query: &'q VersionsQuery,
    pages: &BTreeMap<String, NodeVersions>,
) -> Option<(&'q str, Option<u64>)> {
    let key = query.key_marker.as_deref()?;
    query.version_id_marker.as_ref()?;
    if rolls_up(key, &query.prefix, query.delimiter.as_deref()) {
        return None;
    }
    Some((key, pages.values().filter_map(|p| p.marker_seq).max()))
}

/// Whether `key` rolls up into a common prefix under `prefix` at `delimiter`.
fn rolls_up(key: &str, prefix: &str, delimiter: Option<&str>) -> bool {
    match (
        delimiter.filter(|d| !d.is_empty()),
        key.strip_prefix(prefix),
    ) {
        (Some(d), Some(rest)) => rest.contains(d),
        _ => false,
    }
}

/// The version id of `key`'s version at `seq` in the members' pages.
fn version_id_at(pages: &BTreeMap<String, NodeVersions>, key: &str, seq: u64) -> Option<String> {
    pages
        .values()
        .flat_map(|p| &p.page.versions)
        .find(|(r, _)| r.key == key && r.seq == seq)
        .map(|(r, _)| r.version_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, seq: u64) -> ObjectRecord {
        ObjectRecord {
            key: key.into(),
            version_id: "null".into(),
            seq,
            ..Default::default()
        }
    }

    fn page(keys: &[(&str, u64)], cursor: Option<&str>) -> NodeObjects {
        NodeObjects {
            page: ListPage {
                objects: keys.iter().map(|(k, s)| obj(k, *s)).collect(),
                prefixes: Vec::new(),
                next_cursor: cursor.map(str::to_string),
            },
            firsts: Vec::new(),
        }
    }

    #[test]
    fn a_merged_page_stops_where_a_cut_short_member_stopped() {
        let pages = BTreeMap::from([
            ("n1".to_string(), page(&[("a", 1), ("b", 1)], Some("b"))),
            (
                "n2".to_string(),
                page(&[("a", 2), ("c", 1), ("d", 1)], None),
            ),
        ]);
        let (entries, cursor) = merge_objects(&pages, 10);
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        // n1 may hold keys between b and c it has not sent yet.
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(cursor.as_deref(), Some("b"));
        match &entries[0].1 {
            Entry::Object(copies) => {
                assert_eq!(copies.len(), 2, "both copies kept, to be ranked");
                assert!(copies_differ(copies));
            }
            Entry::Prefix(_) => panic!("an object"),
        }
    }

    #[test]
    fn a_full_merged_page_ends_at_its_last_entry() {
        let pages = BTreeMap::from([
            ("n1".to_string(), page(&[("a", 1), ("c", 1)], None)),
            ("n2".to_string(), page(&[("b", 1), ("d", 1)], None)),
        ]);
        let (entries, cursor) = merge_objects(&pages, 3);
        assert_eq!(entries.len(), 3);
        assert_eq!(cursor.as_deref(), Some("c"));
    }

    fn view(seq: u64, removal: bool, current: Option<u64>) -> EntryState {
        EntryState {
            seq,
            removal,
            current: current.map(|c| (c, 0)),
        }
    }

    fn resolved(copies: &[(&str, u64)], views: &[(&str, EntryState)]) -> Option<u64> {
        let copies = copies
            .iter()
            .map(|(n, seq)| (n.to_string(), obj("k", *seq)))
            .collect();
        let views: BTreeMap<String, EntryState> =
            views.iter().map(|(n, st)| (n.to_string(), *st)).collect();
        resolve_object(copies, Some(&views)).map(|r| r.seq)
    }

    #[test]
    fn disputed_keys_resolve_to_the_newest_view() {
        // Agreed copies need no views.
        let agreed = [("a", obj("k", 5)), ("b", obj("k", 5))];
        let agreed = agreed
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect();
        assert_eq!(resolve_object(agreed, None).map(|r| r.seq), Some(5));
        // v5 was removed by id on a (it shows v3, after a removal at 5); b still has v5.
        let got = resolved(
            &[("a", 3), ("b", 5)],
            &[
                ("a", view(5, true, Some(3))),
                ("b", view(5, false, Some(5))),
            ],
        );
        assert_eq!(got, Some(3));
        // The delete marker dm9 was removed by id on a; c still shows dm9 (a version at
        // 9, no current version): the removal is the later change, v5 stays listed.
        let got = resolved(
            &[("a", 5)],
            &[("a", view(9, true, Some(5))), ("c", view(9, false, None))],
        );
        assert_eq!(got, Some(5));
        // c deleted the key after a's copy: not listed.
        let got = resolved(
            &[("a", 5)],
            &[("a", view(5, false, Some(5))), ("c", view(10, true, None))],
        );
        assert_eq!(got, None);
        // a applied that delete after reading its page: still not listed.
        let got = resolved(
            &[("a", 5)],
            &[("a", view(10, true, None)), ("c", view(10, true, None))],
        );
        assert_eq!(got, None);
        // c received the write after reading its page: listed.
        let got = resolved(
            &[("a", 5)],
            &[
                ("a", view(5, false, Some(5))),
                ("c", view(5, false, Some(5))),
            ],
        );
        assert_eq!(got, Some(5));
        // A newer version elsewhere wins over a stale copy.
        let got = resolved(
            &[("a", 12), ("b", 10)],
            &[
                ("a", view(12, false, Some(12))),
                ("b", view(10, false, Some(10))),
            ],
        );
        assert_eq!(got, Some(12));
    }

    fn versions_page(marker_seq: Option<u64>) -> NodeVersions {
        NodeVersions {
            marker_seq,
            ..NodeVersions::default()
        }
    }

    #[test]
    fn members_that_resumed_at_different_versions_go_again_from_the_known_seq() {
        let query = VersionsQuery {
            key_marker: Some("k".into()),
            version_id_marker: Some("v".into()),
            limit: 1,
            ..VersionsQuery::default()
        };
        let pages = |seqs: &[Option<u64>]| -> BTreeMap<String, NodeVersions> {
            seqs.iter()
                .enumerate()
                .map(|(i, s)| (format!("n{i}"), versions_page(*s)))
                .collect()
        };
        // One member lacks the marker version: it listed the key from its start.
        assert_eq!(
            marker_seq_to_agree(&query, &pages(&[Some(9), None])),
            Some(9)
        );
        // Two copies of one id (a stale `null` version): the newest decides.
        assert_eq!(
            marker_seq_to_agree(&query, &pages(&[Some(5), Some(9)])),
            Some(9)
        );
        assert_eq!(
            marker_seq_to_agree(&query, &pages(&[Some(9), Some(9)])),
            None
        );
        assert_eq!(marker_seq_to_agree(&query, &pages(&[None, None])), None);
        // Once the seq was given, every member resumed after it.
        let given = VersionsQuery {
            after_seq: Some(9),
            ..query.clone()
        };
        assert_eq!(marker_seq_to_agree(&given, &pages(&[Some(9), None])), None);
    }

    /// The common prefix `key` rolls up into under `prefix` at `delimiter`, if any.
    fn roll_up(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
        let d = delimiter?;
        let rest = key.strip_prefix(prefix)?;
        rest.find(d)
            .map(|i| key[..prefix.len() + i + d.len()].to_string())
    }

    /// What one node's page holds, by S3's rules (the model of tests/list_model.rs):
    /// its keys under `prefix` after `after` (past every key under it when it names a
    /// common prefix), rolled up at `delimiter`, at most `limit` entries.
    fn node_page(
        keys: &BTreeSet<String>,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> NodeObjects {
        let mut items: Vec<(String, Option<String>)> = Vec::new();
        for k in keys.iter().filter(|k| k.starts_with(prefix)) {
            let cp = roll_up(k, prefix, delimiter);
            let item = cp.clone().unwrap_or_else(|| k.clone());
            let skipped = after.is_some_and(|a| {
                item.as_str() <= a
                    || (roll_up(a, prefix, delimiter).as_deref() == Some(a) && k.starts_with(a))
            });
            if skipped || items.last().is_some_and(|(last, _)| *last == item) {
                continue;
            }
            items.push((item, cp.map(|_| k.clone())));
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let mut out = NodeObjects::default();
        for (item, first) in &items {
            match first {
                Some(first) => {
                    out.page.prefixes.push(item.clone());
                    out.firsts.push(obj(first, 1));
                }
                None => out.page.objects.push(obj(item, 1)),
            }
        }
        out.page.next_cursor = more.then(|| items.last().map(|(i, _)| i.clone())).flatten();
        out
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Paging through pages merged from nodes that each hold part of the keys (each
        /// key on 3 of 5, all copies alike) yields exactly a single node's listing of
        /// them all: every entry once, in order, pages no larger than asked.
        #[test]
        fn merged_paging_matches_the_model(
            keys in proptest::collection::btree_map(
                proptest::collection::vec(prop_oneof!["a", "b", "/", "-", "ab/"], 1..6)
                    .prop_map(|parts| parts.concat()),
                0usize..5,
                0..40,
            ),
            prefix in prop_oneof!["", "a", "a/", "b"],
            delimiter in prop_oneof![Just(None), Just(Some("/")), Just(Some("b"))],
            limit in 1usize..6,
        ) {
            // Key k lives on nodes placed, placed+1, placed+2 (of 5).
            let nodes: Vec<BTreeSet<String>> = (0..5)
                .map(|n| keys.iter().filter(|(_, p)| (n + 5 - **p) % 5 < 3).map(|(k, _)| k.clone()).collect())
                .collect();
            let all: BTreeSet<String> = keys.keys().cloned().collect();
            let want = node_page(&all, &prefix, delimiter, None, usize::MAX);
            let want: Vec<String> = {
                let mut w: Vec<String> = want.page.objects.iter().map(|o| o.key.clone())
                    .chain(want.page.prefixes.iter().cloned()).collect();
                w.sort();
                w
            };
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..=all.len() + 1 {
                let pages: BTreeMap<String, NodeObjects> = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, held)| (format!("n{i}"), node_page(held, &prefix, delimiter, cursor.as_deref(), limit)))
                    .collect();
                let (entries, next) = merge_objects(&pages, limit);
                prop_assert!(entries.len() <= limit);
                got.extend(entries.into_iter().map(|(k, _)| k));
                match next {
                    Some(c) => {
                        prop_assert!(cursor.as_ref().is_none_or(|old| c > *old), "the cursor moves on");
                        cursor = Some(c);
                    }
                    None => break,
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn rolls_up_only_past_the_prefix() {
        assert!(rolls_up("a/b", "", Some("/")));
        assert!(!rolls_up("a/b", "a/", Some("/")));
        assert!(!rolls_up("a/b", "", None));
    }
}
