//! Conditional requests (RFC 7232 as S3 applies them): `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since`.

use bucketdb_store::records::ObjectRecord;

use crate::error::{ObjectError, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// A list of ETags (quoted or not) or `*`.
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    /// Unix seconds.
    pub if_modified_since: Option<u64>,
    pub if_unmodified_since: Option<u64>,
}

/// Whether `list` names `etag`. `If-None-Match` compares weakly (a `W/` tag matches
/// its strong twin); `If-Match` compares strongly (a weak tag never matches).
fn etag_matches(list: &str, etag: &str, weak: bool) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        let (is_weak, t) = match t.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        t == "*" || ((weak || !is_weak) && t.trim_matches('"') == etag)
    })
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// `Err(PreconditionFailed)` or `Err(NotModified)` when the request should not be
    /// served; dates compare at one-second resolution, as HTTP dates have.
    pub fn check(&self, r: &ObjectRecord) -> Result<()> {
        let modified = r.created_ms / 1000;
        match (&self.if_match, self.if_unmodified_since) {
            (Some(m), _) if !etag_matches(m, &r.etag, false) => {
                return Err(ObjectError::PreconditionFailed);
            }
            (None, Some(since)) if modified > since => return Err(ObjectError::PreconditionFailed),
            _ => {}
        }
        let not_modified = match (&self.if_none_match, self.if_modified_since) {
            (Some(m), _) => etag_matches(m, &r.etag, true),
            (None, Some(since)) => modified <= since,
            (None, None) => false,
        };
        if not_modified {
            return Err(ObjectError::NotModified {
                etag: r.etag.clone(),
                last_modified_ms: r.created_ms,
            });
        }
        Ok(())
    }
}
