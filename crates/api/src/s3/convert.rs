//! Conversions between S3 wire types (s3s DTOs) and object-service types.

use std::time::{Duration, UNIX_EPOCH};

use bucketdb_object::{Conditions, ObjectRecord, RangeSpec, StandardHeaders};
use s3s::dto::{ETag, ETagCondition, Metadata, Range, Timestamp};

pub fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

pub fn unix_secs(t: &Timestamp) -> u64 {
    let t: time::OffsetDateTime = t.clone().into();
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

pub fn etag(r: &ObjectRecord) -> ETag {
    ETag::Strong(r.etag.clone())
}

pub fn condition(c: &ETagCondition) -> String {
    match c {
        ETagCondition::Any => "*".to_string(),
        ETagCondition::ETag(ETag::Strong(s)) => format!("\"{s}\""),
        ETagCondition::ETag(ETag::Weak(s)) => format!("W/\"{s}\""),
    }
}

pub fn conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Conditions {
    Conditions {
        if_match: if_match.map(condition),
        if_none_match: if_none_match.map(condition),
        if_modified_since: if_modified_since.map(unix_secs),
        if_unmodified_since: if_unmodified_since.map(unix_secs),
    }
}

pub fn range(r: &Range) -> RangeSpec {
    match *r {
        Range::Int { first, last } => RangeSpec::From {
            start: first,
            end: last,
        },
        Range::Suffix { length } => RangeSpec::Suffix(length),
    }
}

pub fn metadata_in(m: Option<Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<_> = m.into_iter().flatten().collect();
    v.sort();
    v
}

pub fn metadata_out(r: &ObjectRecord) -> Option<Metadata> {
    (!r.user_meta.is_empty()).then(|| r.user_meta.iter().cloned().collect())
}

/// The version id S3 reports: none for objects written while versioning was never on.
pub fn version_id(r: &ObjectRecord) -> Option<String> {
    (r.version_id != "null").then(|| r.version_id.clone())
}

/// `encoding-type=url`: keys and prefixes percent-encoded, `/` kept.
pub fn encode_key(s: &str, url: bool) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    if url {
        utf8_percent_encode(s, KEEP).to_string()
    } else {
        s.to_string()
    }
}

/// The standard headers of an upload, as stored.
pub fn headers_in(
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
) -> StandardHeaders {
    StandardHeaders {
        cache_control,
        content_disposition,
        content_encoding,
        content_language,
        expires_secs: expires.map(|t| time::OffsetDateTime::from(t).unix_timestamp()),
    }
}

/// The stored `Expires` header.
pub fn expires_out(h: &StandardHeaders) -> Option<Timestamp> {
    let t = time::OffsetDateTime::from_unix_timestamp(h.expires_secs?).ok()?;
    Some(Timestamp::from(t))
}
