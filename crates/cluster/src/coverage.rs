//! Reads of a whole bucket (listings). A node holds only the keys whose replica set
//! includes it, so a listing asks every other member and must hear from enough of them
//! to cover every key range: in quorum mode a majority of each range's replicas (so it
//! meets every acknowledged change), in async mode each range's coordinator, the first
//! of its replicas this node does not see down (which holds every change it
//! acknowledged). Without that the listing fails rather than come back short.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::membership::Liveness;
use crate::ring::Ring;
use crate::{Cluster, ClusterError};

/// Who a bucket-wide read asks, and when their answers cover every key.
pub struct Coverage {
    ring: Arc<Ring>,
    me: String,
    quorum: bool,
    /// Members this node sees down: not asked, and not counted on.
    down: BTreeSet<String>,
    /// The members asked, as (node id, address): every member not removed, not this
    /// node and not seen down.
    peers: Vec<(String, String)>,
}

/// A key range whose replicas did not answer enough for a complete listing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{needed} of the replicas {replicas:?} must answer and too few did")]
pub struct Uncovered {
    pub replicas: Vec<String>,
    pub needed: usize,
}

impl Cluster {
    /// Whom a bucket-wide read asks; `None` outside a cluster (this node holds every
    /// key).
    pub fn coverage(&self) -> Option<Coverage> {
        let m = self.membership.get()?;
        let ring = self.placement()?;
        let state = m.ring();
        let down = state
            .members
            .keys()
            .filter(|id| m.liveness_of(id).0 == Liveness::Down)
            .cloned()
            .collect();
        Some(Coverage {
            ring,
            me: self.node.id.clone(),
            quorum: state.quorum_required,
            down,
            peers: self.live_peers(),
        })
    }

    /// Post `body` to `path` on each of `peers` at once; every peer's answer (or why it
    /// has none) once all answered or `timeout` passed.
    pub async fn call_each(
        &self,
        peers: &[(String, String)],
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Vec<(String, Result<Vec<u8>, ClusterError>)> {
        let Some(m) = self.membership.get() else {
            return Vec::new();
        };
        let calls = peers.iter().map(|(id, address)| {
            let body = body.clone();
            async move {
                let answer = m
                    .client()
                    .call_bytes(address, path, body, timeout)
                    .await
                    .map_err(ClusterError::from);
                (id.clone(), answer)
            }
        });
        futures::future::join_all(calls).await
    }
}

impl Coverage {
    /// The members to ask (this node excluded).
    pub fn peers(&self) -> &[(String, String)] {
        &self.peers
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether writes wait for a quorum.
    pub fn quorum(&self) -> bool {
        self.quorum
    }

    /// The replicas of `bucket/key`, primary first.
    pub fn replicas(&self, bucket: &str, key: &str) -> Vec<&str> {
        self.ring.replicas(bucket, key)
    }

    /// `Ok` when the members that answered (this node included) cover every key range.
    pub fn check(&self, answered: &BTreeSet<String>) -> Result<(), Uncovered> {
        for set in self.ring.replica_sets() {
            let needed = if self.quorum { set.len() / 2 + 1 } else { 1 };
            let covered = if self.quorum {
                set.iter().filter(|id| answered.contains(**id)).count() >= needed
            } else {
                set.iter()
                    .find(|id| !self.down.contains(**id))
                    .is_some_and(|coordinator| answered.contains(*coordinator))
            };
            if !covered {
                return Err(Uncovered {
                    replicas: set.iter().map(|s| s.to_string()).collect(),
                    needed,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(quorum: bool, down: &[&str]) -> Coverage {
        let members: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        Coverage {
            ring: Arc::new(Ring::new(members, 3).unwrap()),
            me: "n1".into(),
            quorum,
            down: down.iter().map(|s| s.to_string()).collect(),
            peers: Vec::new(),
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quorum_mode_needs_a_majority_of_every_range() {
        let c = coverage(true, &[]);
        assert!(c.check(&set(&["n1", "n2", "n3", "n4", "n5"])).is_ok());
        // One member missing: every range still has 2 of its 3 replicas.
        assert!(c.check(&set(&["n1", "n2", "n3", "n4"])).is_ok());
        // Two missing: some range holds both of them.
        let err = c.check(&set(&["n1", "n2", "n3"])).unwrap_err();
        assert_eq!(err.needed, 2);
        assert!(
            err.replicas.contains(&"n4".to_string()) && err.replicas.contains(&"n5".to_string())
        );
    }

    #[test]
    fn async_mode_needs_each_range_coordinator() {
        // n5 is seen down, so its ranges are coordinated by their next replica.
        let c = coverage(false, &["n5"]);
        assert!(c.check(&set(&["n1", "n2", "n3", "n4"])).is_ok());
        // n4 did not answer though it is not seen down: the ranges it coordinates are
        // not covered.
        assert!(c.check(&set(&["n1", "n2", "n3"])).is_err());
        // Seen down but answering anyway does not hurt.
        assert!(c.check(&set(&["n1", "n2", "n3", "n4", "n5"])).is_ok());
    }
}
