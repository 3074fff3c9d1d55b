//! Reading objects: the download half of the streaming engine. Chunks are read and
//! verified one ahead of the one being sent, so verification overlaps the network and a
//! request holds about two chunks whatever the object size. Bytes that fail verification
//! are never yielded.

use std::pin::Pin;
use std::sync::Arc;

use bucketdb_cluster::replication::{LookupReply, LookupRequest, decode_message, encode_message};
use bucketdb_store::ChunkRef;
use bucketdb_store::keys::{object_key, version_key};
use bucketdb_store::records::{Body, ObjectRecord, decode, encode};
use bucketdb_store::{KvRead, Table};
use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{ObjectError, Result};
use crate::names::{validate_bucket_name, validate_key};
use crate::newest::{LocalState, Newest};
use crate::versions::{find_version, key_state_seq, load_bucket, newest_pending};
use crate::{Conditions, ObjectService};

/// Verified chunks waiting to be sent, beyond the one being sent.
const READ_AHEAD_CHUNKS: usize = 1;

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + Sync>>;

/// A byte range as a client asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=start-` or `bytes=start-end` (end inclusive).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// The inclusive byte range this selects in an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        let bad = Err(ObjectError::InvalidRange { size });
        match self {
            RangeSpec::From { start, end } => {
                if start >= size || end.is_some_and(|e| e < start) {
                    return bad;
                }
                Ok((start, end.map_or(size - 1, |e| e.min(size - 1))))
            }
            RangeSpec::Suffix(n) => {
                if n == 0 || size == 0 {
                    return bad;
                }
                Ok((size - n.min(size), size - 1))
            }
        }
    }
}

pub struct ObjectReader {
    pub record: ObjectRecord,
    /// The inclusive range being returned, when one was asked for.
    pub range: Option<(u64, u64)>,
    pub body: BodyStream,
}

impl ObjectReader {
    /// Bytes the body will yield.
    pub fn content_length(&self) -> u64 {
        self.range.map_or(self.record.size, |(s, e)| e - s + 1)
    }
}

/// SHA-256 of a record's stored encoding: two copies of one version with the same
/// `seq` differ only if one has older tags.
pub(crate) fn record_fingerprint(r: &ObjectRecord) -> Result<[u8; 32]> {
    Ok(Sha256::digest(encode(r)?).into())
}

/// The version a request names and its inline body, from one snapshot.
fn read_in(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<(ObjectRecord, Option<Vec<u8>>)> {
    let record = lookup(kv, bucket, key, version_id)?;
    let inline = match record.body {
        Body::Inline => Some(
            kv.get(Table::Inline, &version_key(bucket, key, record.seq))?
                .ok_or_else(|| ObjectError::Corrupt(format!("inline body of {key}")))?,
        ),
        Body::Chunks(_) => None,
    };
    Ok((record, inline))
}

/// The live version a request names, from one snapshot. The bucket is only consulted
/// when the key is missing, to tell `NoSuchBucket` from `NoSuchKey`.
fn lookup(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<ObjectRecord> {
    let found = match version_id {
        Some(v) => find_version(kv, bucket, key, v)?.map(|(_, rec)| rec),
        None => kv
            .get(Table::Current, &object_key(bucket, key))?
            .map(|v| decode::<ObjectRecord>(&v))
            .transpose()?,
    };
    let Some(rec) = found else {
        load_bucket(kv, bucket)?;
        return Err(match version_id {
            Some(v) => ObjectError::NoSuchVersion(v.to_string()),
            None => ObjectError::NoSuchKey(key.to_string()),
        });
    };
    if rec.delete_marker {
        return Err(ObjectError::MethodNotAllowed);
    }
    Ok(rec)
}

impl ObjectService {
    /// The record of the current version, or of `version_id`.
    pub fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        lookup(
            self.cluster.meta().read()?.as_ref(),
            bucket,
            key,
            version_id,
        )
    }

    /// Open an object for reading, if `conditions` allow. The first chunk is read and
    /// verified before this returns, so a damaged small object fails here rather than
    /// mid-response.
    pub async fn get_object(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        range: Option<RangeSpec>,
        conditions: &Conditions,
    ) -> Result<ObjectReader> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        let (record, inline, remote) = self.resolve(bucket, key, version_id).await?;
        conditions.check(&record)?;
        let range = range.map(|r| r.resolve(record.size)).transpose()?;
        let (start, end_excl) = range.map_or((0, record.size), |(s, e)| (s, e + 1));
        let body = match (inline, &record.body) {
            (Some(data), _) => {
                if hex::encode(Sha256::digest(&data)) != record.sha256 {
                    return Err(ObjectError::Corrupt(format!("inline body of {key}")));
                }
                let data = Bytes::from(data).slice(start as usize..end_excl as usize);
                Box::pin(futures::stream::once(async move { Ok(data) })) as BodyStream
            }
            (None, Body::Chunks(chunks)) => {
                self.stream_chunks(chunks, start, end_excl, remote).await?
            }
            (None, Body::Inline) => {
                return Err(ObjectError::Internal("inline body not read".into()));
            }
        };
        Ok(ObjectReader {
            record,
            range,
            body,
        })
    }

    /// The version a request names and its inline body, from one snapshot of this
    /// node's store.
    pub(crate) fn read_local(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectRecord, Option<Vec<u8>>)> {
        read_in(
            self.cluster.meta().read()?.as_ref(),
            bucket,
            key,
            version_id,
        )
    }

    /// The version a read serves, its inline body, and whether it came from a peer. In a
    /// cluster the current version is checked against the key's coordinator (or, in
    /// quorum mode, a majority of its replicas) first, so a read never serves an older
    /// version than they hold; a version this node lacks is looked up on the peers.
    async fn resolve(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectRecord, Option<Vec<u8>>, bool)> {
        // Versions named by id never change: only the current one needs checking.
        let plan = match version_id {
            None => self.read_plan(bucket, key),
            Some(_) => None,
        };
        let (local, local_seq, pending) = {
            let kv = self.cluster.meta().read()?;
            let local = read_in(kv.as_ref(), bucket, key, version_id);
            let seq = match (&plan, &local) {
                (Some(_), _) => key_state_seq(kv.as_ref(), bucket, key)?,
                (None, Err(e)) if version_id.is_none() && is_missing(e) => {
                    key_state_seq(kv.as_ref(), bucket, key)?
                }
                _ => 0,
            };
            let pending = match &plan {
                Some(p) if p.quorum => newest_pending(kv.as_ref(), bucket, key, seq)?,
                _ => None,
            };
            (local, seq, pending)
        };
        if let Some(plan) = plan {
            let state = LocalState {
                seq: local_seq,
                record: match &local {
                    Ok((r, _)) => Some(record_fingerprint(r)?),
                    Err(_) => None,
                },
                current: local.as_ref().ok().map(|(r, _)| r.clone()),
                pending,
            };
            match self.newest_state(plan, bucket, key, state).await? {
                Newest::Here => {}
                Newest::Elsewhere { record, inline, .. } => return Ok((*record, inline, true)),
                Newest::Removed => return Err(ObjectError::NoSuchKey(key.to_string())),
            }
        }
        match local {
            Ok((record, inline)) => Ok((record, inline, false)),
            // A key this node saw deleted is not looked for elsewhere: a peer still
            // holding it has not heard of the delete yet.
            Err(e) if is_missing(&e) && local_seq > 0 => Err(e),
            Err(e) if is_missing(&e) => match self.read_remote(bucket, key, version_id).await? {
                Some((record, inline)) => Ok((record, inline, true)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The version from a peer, when this node lacks it (in a cluster, while data moves
    /// after a topology change, or before replication reached this node).
    pub(crate) async fn read_remote(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<(ObjectRecord, Option<Vec<u8>>)>> {
        let request = LookupRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
            known_seq: None,
            known_record: None,
        };
        let Some(reply) = self.cluster.lookup_on_peers(&request).await? else {
            return Ok(None);
        };
        let Some(record) = reply.record else {
            return Ok(None);
        };
        let record: ObjectRecord = decode(&record)?;
        if record.key != key || record.delete_marker {
            return Ok(None);
        }
        Ok(Some((record, reply.inline)))
    }

    /// The record of the current version, or of `version_id`, as a read would serve it
    /// (HEAD requests).
    pub async fn stat_object(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectRecord> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        Ok(self.resolve(bucket, key, version_id).await?.0)
    }

    /// Answer a peer's lookup (`/internal/lookup`) from this node's store only.
    pub fn answer_lookup(&self, body: &[u8]) -> Result<Vec<u8>> {
        let request: LookupRequest = decode_message(body)?;
        validate_bucket_name(&request.bucket)?;
        validate_key(&request.key)?;
        let kv = self.cluster.meta().read()?;
        let state_seq = match request.version_id {
            None => key_state_seq(kv.as_ref(), &request.bucket, &request.key)?,
            Some(_) => 0,
        };
        let found = read_in(
            kv.as_ref(),
            &request.bucket,
            &request.key,
            request.version_id.as_deref(),
        );
        let pending = match request.version_id {
            None => newest_pending(kv.as_ref(), &request.bucket, &request.key, state_seq)?,
            Some(_) => None,
        };
        let state_only = LookupReply {
            state_seq,
            pending: pending.clone(),
            ..LookupReply::default()
        };
        if let Some(known) = request.known_seq {
            // Nothing newer than (or different from) what the asker holds: the state
            // alone answers.
            let current = found.as_ref().ok().map(|(r, _)| record_fingerprint(r));
            let same = current.transpose()?.as_ref() == request.known_record.as_ref();
            if state_seq < known || (state_seq == known && same) {
                let reply = LookupReply {
                    unchanged: state_seq == known,
                    ..state_only
                };
                return Ok(encode_message(&reply)?);
            }
        }
        // The current version is sent even when a newer one was removed since (deleted
        // by version id): it is current again.
        let reply = match found {
            Ok((record, inline)) => LookupReply {
                record: Some(encode(&record)?),
                inline,
                state_seq,
                pending,
                unchanged: false,
            },
            Err(e) if is_missing(&e) || matches!(e, ObjectError::MethodNotAllowed) => state_only,
            Err(e) => return Err(e),
        };
        Ok(encode_message(&reply)?)
    }

    async fn stream_chunks(
        self: &Arc<Self>,
        chunks: &[ChunkRef],
        start: u64,
        end: u64,
        remote: bool,
    ) -> Result<BodyStream> {
        // Which part of which chunk covers [start, end).
        let mut plan = Vec::new();
        let mut offset = 0u64;
        for c in chunks {
            let (cs, ce) = (offset, offset + c.len);
            offset = ce;
            if ce <= start || cs >= end {
                continue;
            }
            let from = start.max(cs) - cs;
            let to = end.min(ce) - cs;
            plan.push((c.clone(), from as usize, to as usize));
        }
        let mut plan = plan.into_iter();
        let Some((first, f_from, f_to)) = plan.next() else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let first = self.read_chunk(first, remote).await?.slice(f_from..f_to);
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(READ_AHEAD_CHUNKS);
        let svc = self.clone();
        tokio::spawn(async move {
            for (c, from, to) in plan {
                let item = svc.read_chunk(c, remote).await.map(|b| b.slice(from..to));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        let rest = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(futures::StreamExt::chain(
            futures::stream::once(async move { Ok(first) }),
            rest,
        )))
    }
}

impl ObjectService {
    /// A chunk of a version stored here, or (`remote`) of a version read from a peer:
    /// fetched from the peers without being stored here.
    async fn read_chunk(&self, chunk: ChunkRef, remote: bool) -> Result<Bytes> {
        if remote {
            Ok(self.cluster.read_chunk_from_peers(&chunk).await?.0)
        } else {
            Ok(self.cluster.read_chunk(chunk).await?)
        }
    }
}

/// Errors meaning "this node does not have it" (another node may).
fn is_missing(e: &ObjectError) -> bool {
    matches!(
        e,
        ObjectError::NoSuchKey(_) | ObjectError::NoSuchVersion(_) | ObjectError::NoSuchBucket(_)
    )
}

#[cfg(test)]
mod tests {
    use super::RangeSpec;

    #[test]
    fn ranges_resolve_like_s3() {
        let from = |start, end| RangeSpec::From { start, end };
        assert_eq!(from(0, Some(9)).resolve(100).unwrap(), (0, 9));
        assert_eq!(from(90, None).resolve(100).unwrap(), (90, 99));
        assert_eq!(from(90, Some(500)).resolve(100).unwrap(), (90, 99));
        assert_eq!(RangeSpec::Suffix(10).resolve(100).unwrap(), (90, 99));
        assert_eq!(RangeSpec::Suffix(500).resolve(100).unwrap(), (0, 99));
        assert!(from(100, None).resolve(100).is_err());
        assert!(from(5, Some(4)).resolve(100).is_err());
        assert!(RangeSpec::Suffix(0).resolve(100).is_err());
        assert!(from(0, None).resolve(0).is_err());
    }
}
