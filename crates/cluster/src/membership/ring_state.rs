//! The ring configuration: the state machine the raft group agrees on. Applying a
//! command is pure (no I/O), so every node that applies the same log gets the same
//! state, and tests can drive it directly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ring::{MAX_RING_MEMBERS, Ring};

/// A member's place in the ring's life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Joining,
    Active,
    Draining,
    Removed,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Active => "active",
            MemberState::Draining => "draining",
            MemberState::Removed => "removed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node id (`node_id` in the node's configuration).
    pub id: String,
    /// Where peers reach its HTTP API (`HOST:PORT`).
    pub address: String,
    pub state: MemberState,
}

/// The agreed ring configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Members by node id (removed ones stay, marked, so the history is visible).
    pub members: BTreeMap<String, Member>,
    pub replication_factor: usize,
    pub quorum_required: bool,
    /// Incremented by every command that changes the configuration.
    pub ring_version: u64,
}

impl Default for RingState {
    fn default() -> Self {
        RingState {
            members: BTreeMap::new(),
            replication_factor: 1,
            quorum_required: false,
            ring_version: 0,
        }
    }
}

/// A change to the ring configuration (a raft log entry's payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RingCommand {
    /// Add a member (or update the address and state of one that is not active yet).
    AddMember {
        id: String,
        address: String,
        state: MemberState,
    },
    SetMemberState {
        id: String,
        state: MemberState,
    },
    SetReplication {
        replication_factor: usize,
        quorum_required: bool,
    },
}

/// The result of applying a command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingResponse {
    /// The ring version after the command.
    pub ring_version: u64,
    /// Why the command changed nothing, if it was refused.
    pub refused: Option<String>,
}

impl RingState {
    /// Apply one command. Commands that would break an invariant are refused (the state
    /// is unchanged and the response says why) rather than failing the log: every node
    /// refuses them identically.
    pub fn apply(&mut self, cmd: &RingCommand) -> RingResponse {
        let refused = match cmd {
            RingCommand::AddMember { id, address, state } => {
                if id.is_empty() || address.is_empty() {
                    Some("a member needs an id and an address".to_string())
                } else if !self.members.contains_key(id) && self.members.len() >= MAX_RING_MEMBERS {
                    Some(format!("the ring holds at most {MAX_RING_MEMBERS} members"))
                } else {
                    let member = Member {
                        id: id.clone(),
                        address: address.clone(),
                        state: *state,
                    };
                    match self.members.get(id) {
                        // Re-adding an identical member (a retried join) is not a change.
                        Some(m) if *m == member => return self.unchanged(),
                        Some(m) if m.state == MemberState::Active => {
                            Some(format!("{id} is already an active member at {}", m.address))
                        }
                        _ => {
                            self.members.insert(id.clone(), member);
                            None
                        }
                    }
                }
            }
            RingCommand::SetMemberState { id, state } => match self.members.get_mut(id) {
                None => Some(format!("no member {id}")),
                Some(m) if m.state == *state => return self.unchanged(),
                Some(m) => {
                    m.state = *state;
                    None
                }
            },
            RingCommand::SetReplication {
                replication_factor,
                quorum_required,
            } => {
                if *replication_factor == 0 {
                    Some("replication factor must be at least 1".to_string())
                } else if self.replication_factor == *replication_factor
                    && self.quorum_required == *quorum_required
                {
                    return self.unchanged();
                } else {
                    self.replication_factor = *replication_factor;
                    self.quorum_required = *quorum_required;
                    None
                }
            }
        };
        if refused.is_none() {
            self.ring_version += 1;
        }
        RingResponse {
            ring_version: self.ring_version,
            refused,
        }
    }

    fn unchanged(&self) -> RingResponse {
        RingResponse {
            ring_version: self.ring_version,
            refused: None,
        }
    }

    /// Members that own part of the ring (joining and active ones), in id order.
    pub fn ring_members(&self) -> Vec<String> {
        self.members
            .values()
            .filter(|m| matches!(m.state, MemberState::Joining | MemberState::Active))
            .map(|m| m.id.clone())
            .collect()
    }

    /// Each ring member's share of the key space (primary ownership).
    pub fn ring_shares(&self) -> BTreeMap<String, f64> {
        let members = self.ring_members();
        if members.is_empty() {
            return BTreeMap::new();
        }
        match Ring::new(members, self.replication_factor.max(1)) {
            Ok(ring) => ring
                .primary_shares()
                .into_iter()
                .map(|(id, share)| (id.to_string(), share))
                .collect(),
            Err(_) => BTreeMap::new(),
        }
    }

    /// True when `id` is a member that has not been removed.
    pub fn is_member(&self, id: &str) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| m.state != MemberState::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: &str, state: MemberState) -> RingCommand {
        RingCommand::AddMember {
            id: id.into(),
            address: format!("127.0.0.1:{}", 9000 + id.len()),
            state,
        }
    }

    #[test]
    fn each_change_bumps_the_ring_version_and_replays_identically() {
        let log = vec![
            RingCommand::SetReplication {
                replication_factor: 3,
                quorum_required: false,
            },
            add("a", MemberState::Active),
            add("bb", MemberState::Joining),
            RingCommand::SetMemberState {
                id: "bb".into(),
                state: MemberState::Active,
            },
            add("ccc", MemberState::Joining),
        ];
        let mut s = RingState::default();
        let versions: Vec<u64> = log.iter().map(|c| s.apply(c).ring_version).collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5]);
        assert_eq!(s.ring_members(), vec!["a", "bb", "ccc"]);
        assert_eq!(s.members["bb"].state, MemberState::Active);
        assert!(s.is_member("ccc"));

        // Every node applying the same log ends in the same state.
        let mut t = RingState::default();
        for c in &log {
            t.apply(c);
        }
        assert_eq!(s, t);

        let shares = s.ring_shares();
        assert_eq!(shares.len(), 3);
        let total: f64 = shares.values().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn no_ops_and_refusals_keep_the_version() {
        let mut s = RingState::default();
        assert_eq!(s.apply(&add("a", MemberState::Active)).ring_version, 1);
        // A retried identical join changes nothing.
        let r = s.apply(&add("a", MemberState::Active));
        assert_eq!((r.ring_version, r.refused), (1, None));
        let r = s.apply(&RingCommand::SetMemberState {
            id: "zz".into(),
            state: MemberState::Draining,
        });
        assert_eq!(r.ring_version, 1);
        assert!(r.refused.is_some());
        let r = s.apply(&RingCommand::SetReplication {
            replication_factor: 0,
            quorum_required: true,
        });
        assert!(r.refused.is_some());
        assert_eq!(s.replication_factor, 1);
        // Setting the replication it already has (a resumed bootstrap) changes nothing.
        let r = s.apply(&RingCommand::SetReplication {
            replication_factor: s.replication_factor,
            quorum_required: s.quorum_required,
        });
        assert_eq!((r.ring_version, r.refused), (1, None));
        // An active member cannot be re-added elsewhere (a second node with its id).
        let r = s.apply(&RingCommand::AddMember {
            id: "a".into(),
            address: "10.0.0.9:9080".into(),
            state: MemberState::Joining,
        });
        assert_eq!(r.ring_version, 1);
        assert!(
            r.refused
                .is_some_and(|w| w.contains("already an active member"))
        );
        assert_ne!(s.members["a"].address, "10.0.0.9:9080");
        // Removed members leave the ring but stay listed.
        s.apply(&RingCommand::SetMemberState {
            id: "a".into(),
            state: MemberState::Removed,
        });
        assert!(!s.is_member("a"));
        assert!(s.ring_members().is_empty());
        assert!(s.ring_shares().is_empty());
        assert_eq!(s.members.len(), 1);
    }
}
