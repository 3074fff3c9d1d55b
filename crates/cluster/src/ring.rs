//! Placement: a consistent-hashing ring with virtual nodes. Every member owns
//! [`VNODES_PER_NODE`] tokens on a 64-bit circle; a key's replicas are the first
//! `replication_factor` distinct members met walking clockwise from the key's hash. When
//! a member joins, only keys whose walk now meets it first change owner (about 1/N of
//! them); when one leaves, only its keys move.
//!
//! Hashes are the first 8 bytes of SHA-256, so every node, on every platform and build,
//! computes the same placement.

use sha2::{Digest, Sha256};

/// Tokens per member. More tokens balance load better (the spread of a member's share
/// shrinks like 1/sqrt(tokens)) at the cost of a larger ring to search.
pub const VNODES_PER_NODE: usize = 256;
/// Most members a ring may have.
pub const MAX_RING_MEMBERS: usize = 1024;

/// A position on the circle.
pub type Token = u64;

fn hash64(parts: &[&[u8]]) -> Token {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// The position of an object on the circle.
pub fn key_token(bucket: &str, key: &str) -> Token {
    hash64(&[bucket.as_bytes(), key.as_bytes()])
}

fn vnode_token(node: &str, index: usize) -> Token {
    hash64(&[node.as_bytes(), &(index as u64).to_be_bytes()])
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    #[error("node {0} is already a ring member")]
    DuplicateMember(String),
    #[error("a ring holds at most {MAX_RING_MEMBERS} members")]
    TooManyMembers,
    #[error("the replication factor must be at least 1")]
    ZeroReplication,
}

/// A ring configuration: its members and how many copies of each key are kept.
#[derive(Clone, Debug)]
pub struct Ring {
    members: Vec<String>,
    replication_factor: usize,
    /// (token, index into `members`), sorted by token.
    tokens: Vec<(Token, usize)>,
}

impl Ring {
    pub fn new(members: Vec<String>, replication_factor: usize) -> Result<Ring, RingError> {
        if replication_factor == 0 {
            return Err(RingError::ZeroReplication);
        }
        if members.len() > MAX_RING_MEMBERS {
            return Err(RingError::TooManyMembers);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = members.iter().find(|m| !seen.insert(m.as_str())) {
            return Err(RingError::DuplicateMember(dup.clone()));
        }
        let mut tokens: Vec<(Token, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| (0..VNODES_PER_NODE).map(move |v| (vnode_token(m, v), i)))
            .collect();
        // Equal tokens (astronomically rare) are ordered by member id so every node
        // agrees on the order.
        tokens.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| members[a.1].cmp(&members[b.1])));
        Ok(Ring {
            members,
            replication_factor,
            tokens,
        })
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// How many copies each key has: the configured factor, capped at the member count.
    pub fn effective_replication(&self) -> usize {
        self.replication_factor.min(self.members.len())
    }

    /// The members holding `token`, primary first.
    pub fn replicas_of(&self, token: Token) -> Vec<&str> {
        let want = self.effective_replication();
        let mut out: Vec<&str> = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let start = self.tokens.partition_point(|(t, _)| *t < token);
        let walk = self.tokens[start..].iter().chain(&self.tokens[..start]);
        for (_, i) in walk {
            let m = self.members[*i].as_str();
            if !out.contains(&m) {
                out.push(m);
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// The members holding `bucket/key`, primary first.
    pub fn replicas(&self, bucket: &str, key: &str) -> Vec<&str> {
        self.replicas_of(key_token(bucket, key))
    }

    /// Every distinct replica set of an arc of the circle (each a key range's members,
    /// primary first). A read of a whole bucket covers every key once it has heard from
    /// enough members of each set.
    pub fn replica_sets(&self) -> Vec<Vec<&str>> {
        let mut sets: Vec<Vec<&str>> = self
            .tokens
            .iter()
            .map(|(t, _)| self.replicas_of(*t))
            .collect();
        sets.sort_unstable();
        sets.dedup();
        sets
    }

    /// The fraction of the circle each member is primary for, in member order.
    pub fn primary_shares(&self) -> Vec<(&str, f64)> {
        let mut owned = vec![0u128; self.members.len()];
        let n = self.tokens.len();
        for (k, (t, _)) in self.tokens.iter().enumerate() {
            // A key belongs to the first token at or after it, so token k owns the arc
            // from the previous token (exclusive) up to itself.
            let prev = self.tokens[(k + n - 1) % n].0;
            let arc = if n == 1 {
                1u128 << 64
            } else {
                u128::from(t.wrapping_sub(prev))
            };
            owned[self.tokens[k].1] += arc;
        }
        let circle = (1u128 << 64) as f64;
        self.members
            .iter()
            .zip(owned)
            .map(|(m, o)| (m.as_str(), o as f64 / circle))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replica_sets_hold_the_replicas_of_every_key() {
        let ring = Ring::new(names(5, 7), 3).unwrap();
        let sets = ring.replica_sets();
        assert!(sets.iter().all(|s| s.len() == 3));
        for i in 0..2000 {
            let replicas = ring.replicas("b", &format!("k{i}"));
            assert!(
                sets.contains(&replicas),
                "key k{i} placed on {replicas:?}, not a listed set"
            );
        }
    }

    fn names(n: usize, salt: u32) -> Vec<String> {
        (0..n).map(|i| format!("node-{salt}-{i}")).collect()
    }

    /// Keys spread over many buckets and names, as a workload would.
    fn sample_keys(count: usize) -> Vec<(String, String)> {
        (0..count)
            .map(|i| (format!("bucket-{}", i % 7), format!("photos/{i}.jpg")))
            .collect()
    }

    #[test]
    fn placement_is_stable_and_bad_rings_are_refused() {
        let ring = Ring::new(names(3, 0), 2).unwrap();
        let again = Ring::new(names(3, 0).into_iter().rev().collect(), 2).unwrap();
        for (b, k) in sample_keys(200) {
            assert_eq!(ring.replicas(&b, &k), again.replicas(&b, &k));
        }
        assert_eq!(
            Ring::new(vec!["a".into(), "a".into()], 1).unwrap_err(),
            RingError::DuplicateMember("a".into())
        );
        assert_eq!(
            Ring::new(vec!["a".into()], 0).unwrap_err(),
            RingError::ZeroReplication
        );
        assert!(Ring::new(vec![], 3).unwrap().replicas("b", "k").is_empty());
        // The hash is SHA-256 based, fixed forever: a changed hash would move data.
        assert_eq!(key_token("b", "k"), key_token("b", "k"));
        assert_ne!(key_token("b", "k"), key_token("bk", ""));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Every key has min(RF, N) distinct replicas, primary first, all members.
        #[test]
        fn replicas_are_distinct_members(n in 1usize..8, rf in 1usize..5, salt in any::<u32>()) {
            let ring = Ring::new(names(n, salt), rf).unwrap();
            for (b, k) in sample_keys(300) {
                let r = ring.replicas(&b, &k);
                prop_assert_eq!(r.len(), rf.min(n));
                let mut uniq = r.clone();
                uniq.sort_unstable();
                uniq.dedup();
                prop_assert_eq!(uniq.len(), r.len());
                prop_assert!(r.iter().all(|m| ring.members().iter().any(|x| x == m)));
            }
        }

        /// With 256 tokens per member every member's share of the circle stays within
        /// 0.6x..1.5x of the fair share 1/N.
        #[test]
        fn load_is_balanced(n in 2usize..12, salt in any::<u32>()) {
            let ring = Ring::new(names(n, salt), 3).unwrap();
            let shares = ring.primary_shares();
            let total: f64 = shares.iter().map(|(_, s)| s).sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "shares sum to {}", total);
            let fair = 1.0 / n as f64;
            for (m, s) in shares {
                prop_assert!(s > 0.6 * fair && s < 1.5 * fair, "{} owns {} (fair {})", m, s, fair);
            }
        }

        /// A joining member takes keys only for itself: every key keeps its replicas
        /// except that the newcomer may replace one of them; about 1/(N+1) of primaries
        /// move. A leaving member is the reverse.
        #[test]
        fn joins_and_leaves_move_few_keys(n in 2usize..9, rf in 1usize..4, salt in any::<u32>()) {
            let before = Ring::new(names(n, salt), rf).unwrap();
            let mut grown = names(n, salt);
            grown.push(format!("new-{salt}"));
            let after = Ring::new(grown, rf).unwrap();
            let newcomer = format!("new-{salt}");
            let keys = sample_keys(4000);
            let mut moved = 0;
            for (b, k) in &keys {
                let old = before.replicas(b, k);
                let new = after.replicas(b, k);
                if old[0] != new[0] {
                    moved += 1;
                    prop_assert_eq!(new[0], newcomer.as_str());
                }
                // The new set is the old one with at most one member replaced by the newcomer.
                let kept = new.iter().filter(|m| old.contains(m)).count();
                let gained = new.iter().filter(|m| **m == newcomer).count();
                prop_assert!(kept + gained == new.len() && kept + 1 >= old.len().min(new.len()));
            }
            let fraction = moved as f64 / keys.len() as f64;
            let fair = 1.0 / (n + 1) as f64;
            prop_assert!(fraction < 1.6 * fair + 0.02, "{} of keys moved (fair {})", fraction, fair);

            // The first member leaves: only the keys it was primary for change primary.
            let leaver = before.members()[0].clone();
            let shrunk = Ring::new(names(n, salt)[1..].to_vec(), rf).unwrap();
            for (b, k) in &keys {
                let old = before.replicas(b, k);
                let new = shrunk.replicas(b, k);
                prop_assert!(!new.contains(&leaver.as_str()));
                if old[0] != leaver {
                    prop_assert_eq!(new[0], old[0]);
                }
            }
        }
    }
}
