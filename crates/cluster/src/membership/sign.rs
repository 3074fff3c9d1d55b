//! Node-to-node request signing: the one place that knows how `/internal/*` requests are
//! authenticated. The sender signs `method \n path \n date \n sha256(body)` with
//! HMAC-SHA256 under the cluster secret; the receiver recomputes it and compares in
//! constant time. The secret itself never travels and is never printed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Header naming the sending node.
pub const HEADER_NODE: &str = "x-bucketdb-node";
/// Header with the signing time, Unix seconds.
pub const HEADER_DATE: &str = "x-bucketdb-date";
/// Header with the hex HMAC-SHA256 signature.
pub const HEADER_SIGNATURE: &str = "x-bucketdb-signature";
/// A signature dated further than this from the receiver's clock is refused, so a
/// captured request cannot be replayed later.
pub const MAX_CLOCK_SKEW_SECS: u64 = 5 * 60;
/// Shortest cluster secret accepted: shorter ones are guessable offline from one
/// captured signature.
pub const CLUSTER_SECRET_MIN_BYTES: usize = 16;

/// Why a signed request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("request date is more than {MAX_CLOCK_SKEW_SECS} s from this node's clock")]
    Skew,
    #[error("signature does not match (wrong cluster secret?)")]
    BadSignature,
}

/// The shared cluster secret. `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    pub fn new(secret: &str) -> Self {
        ClusterSecret(secret.as_bytes().to_vec())
    }

    /// The MAC over a request's canonical form. HMAC takes keys of any length, so
    /// `None` never happens in practice; callers treat it as "cannot sign/verify".
    fn mac(&self, method: &str, path: &str, date: u64, body_sha256: &str) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(method.to_ascii_uppercase().as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(date.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(body_sha256.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// The hex signature of a request.
    pub fn signature(&self, method: &str, path: &str, date: u64, body: &[u8]) -> String {
        self.mac(method, path, date, &body_sha256(body))
            .map(hex::encode)
            .unwrap_or_default()
    }

    /// The headers that authenticate a request from `node` at `now` (Unix seconds).
    pub fn sign(
        &self,
        node: &str,
        method: &str,
        path: &str,
        now: u64,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        vec![
            (HEADER_NODE, node.to_string()),
            (HEADER_DATE, now.to_string()),
            (HEADER_SIGNATURE, self.signature(method, path, now, body)),
        ]
    }

    /// Check a request's `date` and `signature` header values against its method, path
    /// and body, at `now` (Unix seconds).
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        date: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), SignError> {
        let date = date.ok_or(SignError::MissingHeader(HEADER_DATE))?;
        let signature = signature.ok_or(SignError::MissingHeader(HEADER_SIGNATURE))?;
        let date: u64 = date
            .trim()
            .parse()
            .map_err(|_| SignError::Malformed(HEADER_DATE))?;
        if date.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
            return Err(SignError::Skew);
        }
        let given =
            hex::decode(signature.trim()).map_err(|_| SignError::Malformed(HEADER_SIGNATURE))?;
        let expected = self
            .mac(method, path, date, &body_sha256(body))
            .ok_or(SignError::BadSignature)?;
        if bool::from(expected.as_slice().ct_eq(&given)) {
            Ok(())
        } else {
            Err(SignError::BadSignature)
        }
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// Hex SHA-256 of a body.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_signed_request_verifies() {
        let s = ClusterSecret::new("correct horse battery staple");
        let h = s.sign("node-a", "POST", "/internal/heartbeat", NOW, b"{}");
        assert_eq!(header(&h, HEADER_NODE), Some("node-a"));
        let date = header(&h, HEADER_DATE);
        let sig = header(&h, HEADER_SIGNATURE);
        assert_eq!(
            s.verify("POST", "/internal/heartbeat", date, sig, b"{}", NOW),
            Ok(())
        );
        // Within the allowed skew either way.
        let later = NOW + MAX_CLOCK_SKEW_SECS;
        assert_eq!(
            s.verify("POST", "/internal/heartbeat", date, sig, b"{}", later),
            Ok(())
        );
    }

    #[test]
    fn wrong_secret_tampering_and_skew_are_refused() {
        let s = ClusterSecret::new("correct horse battery staple");
        let h = s.sign("node-a", "POST", "/internal/raft/vote", NOW, b"body");
        let date = header(&h, HEADER_DATE);
        let sig = header(&h, HEADER_SIGNATURE);
        let other = ClusterSecret::new("another secret entirely");
        assert_eq!(
            other.verify("POST", "/internal/raft/vote", date, sig, b"body", NOW),
            Err(SignError::BadSignature)
        );
        assert_eq!(
            s.verify("POST", "/internal/raft/append", date, sig, b"body", NOW),
            Err(SignError::BadSignature),
            "tampered path"
        );
        assert_eq!(
            s.verify("GET", "/internal/raft/vote", date, sig, b"body", NOW),
            Err(SignError::BadSignature),
            "tampered method"
        );
        assert_eq!(
            s.verify("POST", "/internal/raft/vote", date, sig, b"bodx", NOW),
            Err(SignError::BadSignature),
            "tampered body"
        );
        assert_eq!(
            s.verify(
                "POST",
                "/internal/raft/vote",
                date,
                sig,
                b"body",
                NOW + MAX_CLOCK_SKEW_SECS + 1
            ),
            Err(SignError::Skew)
        );
        assert_eq!(
            s.verify(
                "POST",
                "/internal/raft/vote",
                date,
                sig,
                b"body",
                NOW - MAX_CLOCK_SKEW_SECS - 1
            ),
            Err(SignError::Skew)
        );
        // A re-dated request needs a new signature.
        let redated = (NOW + 10).to_string();
        assert_eq!(
            s.verify(
                "POST",
                "/internal/raft/vote",
                Some(&redated),
                sig,
                b"body",
                NOW
            ),
            Err(SignError::BadSignature)
        );
        assert_eq!(
            s.verify("POST", "/internal/raft/vote", None, sig, b"body", NOW),
            Err(SignError::MissingHeader(HEADER_DATE))
        );
        assert_eq!(
            s.verify(
                "POST",
                "/internal/raft/vote",
                date,
                Some("zz"),
                b"body",
                NOW
            ),
            Err(SignError::Malformed(HEADER_SIGNATURE))
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = ClusterSecret::new("do-not-print-me-0123");
        assert!(!format!("{s:?}").contains("do-not-print"));
    }
}
