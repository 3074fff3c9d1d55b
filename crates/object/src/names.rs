//! Validation of names and small user-supplied values, with S3's limits.

use crate::error::{ObjectError, Result};

pub const BUCKET_NAME_MIN: usize = 3;
pub const BUCKET_NAME_MAX: usize = 63;
pub const KEY_MAX_BYTES: usize = 1024;
pub const TAGS_MAX: usize = 10;
pub const TAG_KEY_MAX_CHARS: usize = 128;
pub const TAG_VALUE_MAX_CHARS: usize = 256;
pub const USER_META_MAX_BYTES: usize = 2048;
pub const CONTENT_TYPE_MAX_BYTES: usize = 1024;

/// S3's bucket naming rules (general purpose buckets).
pub fn validate_bucket_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(ObjectError::InvalidBucketName(format!("{name:?}: {why}")));
    if name.len() < BUCKET_NAME_MIN || name.len() > BUCKET_NAME_MAX {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return bad("dots may not be adjacent to dots or hyphens");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    for p in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(p) {
            return bad("uses a reserved prefix");
        }
    }
    for s in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(s) {
            return bad("uses a reserved suffix");
        }
    }
    Ok(())
}

/// Object keys: 1..=1024 bytes of UTF-8 (guaranteed by `&str`), no NUL or other control
/// characters, no `.`/`..` path segments and no leading `/`.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(ObjectError::InvalidKey("the key is empty".into()));
    }
    if key.len() > KEY_MAX_BYTES {
        return Err(ObjectError::KeyTooLong { max: KEY_MAX_BYTES });
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(ObjectError::InvalidKey(
            "the key contains a control character".into(),
        ));
    }
    if key.starts_with('/') {
        return Err(ObjectError::InvalidKey("the key starts with '/'".into()));
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ObjectError::InvalidKey(
            "the key contains a '.' or '..' segment".into(),
        ));
    }
    Ok(())
}

pub fn validate_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > TAGS_MAX {
        return Err(ObjectError::InvalidTag(format!(
            "at most {TAGS_MAX} tags are allowed"
        )));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > TAG_KEY_MAX_CHARS {
            return Err(ObjectError::InvalidTag(format!(
                "tag keys must be 1 to {TAG_KEY_MAX_CHARS} characters"
            )));
        }
        if v.chars().count() > TAG_VALUE_MAX_CHARS {
            return Err(ObjectError::InvalidTag(format!(
                "tag values must be at most {TAG_VALUE_MAX_CHARS} characters"
            )));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(ObjectError::InvalidTag(format!("duplicate tag key {k:?}")));
        }
    }
    Ok(())
}

pub fn validate_user_meta(meta: &[(String, String)]) -> Result<()> {
    let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > USER_META_MAX_BYTES {
        return Err(ObjectError::MetadataTooLarge {
            max: USER_META_MAX_BYTES,
        });
    }
    Ok(())
}

/// Longest value of a stored standard header (`Cache-Control`, `Content-Disposition`, ...).
pub const STANDARD_HEADER_MAX_BYTES: usize = 2048;

/// Stored standard headers are sent back as HTTP header values: printable ASCII only.
pub fn validate_standard_headers(h: &bucketdb_store::records::StandardHeaders) -> Result<()> {
    let values = [
        &h.cache_control,
        &h.content_disposition,
        &h.content_encoding,
        &h.content_language,
    ];
    for v in values.into_iter().flatten() {
        if v.len() > STANDARD_HEADER_MAX_BYTES
            || v.chars()
                .any(|ch| !ch.is_ascii() || (ch.is_control() && ch != '\t'))
        {
            return Err(ObjectError::InvalidArgument(
                "standard headers must be printable ASCII of at most 2048 bytes".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.logs", "a1b2c3", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Upper",
            "-start",
            "end-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "foo-s3alias",
            "has_underscore",
            "with space",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_that_could_escape_or_confuse_are_refused() {
        for ok in [
            "a",
            "dir/file.txt",
            "a..b",
            ".hidden",
            "ünïcode/ключ",
            &"k".repeat(1024),
        ] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        assert!(matches!(
            validate_key(&"k".repeat(1025)),
            Err(ObjectError::KeyTooLong { .. })
        ));
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "/abs",
            "a/./b",
            "nul\0byte",
            "..",
            "new\nline",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tag_limits() {
        let t = |n: usize| {
            (0..n)
                .map(|i| (format!("k{i}"), "v".to_string()))
                .collect::<Vec<_>>()
        };
        assert!(validate_tags(&t(10)).is_ok());
        assert!(validate_tags(&t(11)).is_err());
        assert!(validate_tags(&[("k".into(), "v".into()), ("k".into(), "w".into())]).is_err());
        assert!(validate_tags(&[("k".repeat(129), "v".into())]).is_err());
        assert!(validate_tags(&[("k".into(), "v".repeat(257))]).is_err());
    }
}
