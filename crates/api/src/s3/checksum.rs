//! `x-amz-checksum-*` verification: values given as request headers, or as `aws-chunked`
//! trailers named by `x-amz-trailer`, are checked against the body as it streams into
//! the object service. A mismatch ends the body with an error, so nothing is stored, and
//! the operation answers `BadDigest`; verified values are stored with the object and
//! returned on GET/HEAD with `x-amz-checksum-mode: ENABLED`. A wrong `aws-chunked` chunk signature or a body that
//! does not match its signed `x-amz-content-sha256`, which s3s reports only as body
//! errors, answer `SignatureDoesNotMatch` and `XAmzContentSHA256Mismatch` as S3 does.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bucketdb_object::{BodyChecksums, ObjectRecord};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders, s3_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

const ALGOS: [Algo; 5] = [
    Algo::Crc32,
    Algo::Crc32c,
    Algo::Crc64Nvme,
    Algo::Sha1,
    Algo::Sha256,
];

impl Algo {
    fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algo::Sha1 => "x-amz-checksum-sha1",
            Algo::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Crc64Nvme => "CRC64NVME",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
        }
    }

    fn from_header(name: &str) -> Option<Algo> {
        ALGOS
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    fn from_name(name: &str) -> Option<Algo> {
        ALGOS.into_iter().find(|a| a.name() == name)
    }

    fn enable(self, h: &mut ChecksumHasher) {
        match self {
            Algo::Crc32 => h.crc32 = Some(Default::default()),
            Algo::Crc32c => h.crc32c = Some(Default::default()),
            Algo::Crc64Nvme => h.crc64nvme = Some(Default::default()),
            Algo::Sha1 => h.sha1 = Some(Default::default()),
            Algo::Sha256 => h.sha256 = Some(Default::default()),
        }
    }

    fn computed(self, c: &s3s::dto::Checksum) -> Option<&str> {
        match self {
            Algo::Crc32 => c.checksum_crc32.as_deref(),
            Algo::Crc32c => c.checksum_crc32c.as_deref(),
            Algo::Crc64Nvme => c.checksum_crc64nvme.as_deref(),
            Algo::Sha1 => c.checksum_sha1.as_deref(),
            Algo::Sha256 => c.checksum_sha256.as_deref(),
        }
    }
}

/// Why a verified body failed, once it has.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// The body does not match its declared checksum.
    Checksum(Algo),
    /// An `aws-chunked` chunk or trailer signature is wrong (s3s reports it only as a
    /// body error, which would otherwise become `IncompleteBody`).
    ChunkSignature,
    /// The body does not match its signed `x-amz-content-sha256` (likewise).
    PayloadSha256,
}

/// Set once a verified body failed its checksum or a chunk signature.
#[derive(Clone, Default)]
pub struct Mismatch(Arc<Mutex<Option<Failure>>>);

impl Mismatch {
    /// The S3 error to answer with, if the body failed a check.
    pub fn error(&self) -> Option<S3Error> {
        let failure = (*self.0.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(match failure {
            Failure::Checksum(algo) => s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                algo.name()
            ),
            Failure::ChunkSignature => s3_error!(
                SignatureDoesNotMatch,
                "The chunk signature we calculated does not match the signature you provided."
            ),
            Failure::PayloadSha256 => {
                let mut e = S3Error::with_message(
                    S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                );
                e.set_status_code(http::StatusCode::BAD_REQUEST);
                e
            }
        })
    }

    fn set(&self, failure: Failure) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
    }
}

/// The failure behind a body error from s3s: its `aws-chunked` decoder and payload hash
/// check report a wrong signature or hash only as a body error, whose types are private,
/// so they are recognised by their text.
fn signing_failure(e: &io::Error) -> Option<Failure> {
    let text = e.get_ref()?.to_string();
    if text.contains("AwsChunkedStreamError: SignatureMismatch") {
        Some(Failure::ChunkSignature)
    } else if text.contains("UploadStreamError: Sha256Mismatch") {
        Some(Failure::PayloadSha256)
    } else {
        None
    }
}

/// The body stream, checked against the checksums the request declares.
pub struct Verified<S> {
    inner: S,
    hasher: Option<ChecksumHasher>,
    /// Values given as headers.
    expected: Vec<(Algo, String)>,
    /// Algorithms whose values arrive as trailers.
    trailed: Vec<Algo>,
    trailers: Option<TrailingHeaders>,
    mismatch: Mismatch,
    /// Where the verified values go once the whole body matched.
    verified: BodyChecksums,
    done: bool,
}

/// Wrap `body` so that it fails at its end unless it matches every `x-amz-checksum-*`
/// header and every checksum trailer announced in `x-amz-trailer`; the values it matched
/// are then set in `verified`.
pub fn verify<S>(
    headers: &HeaderMap,
    trailers: Option<TrailingHeaders>,
    body: S,
    verified: BodyChecksums,
) -> (Verified<S>, Mismatch) {
    let expected: Vec<(Algo, String)> = ALGOS
        .into_iter()
        .filter_map(|a| {
            let v = headers.get(a.header())?.to_str().ok()?;
            Some((a, v.trim().to_string()))
        })
        .collect();
    let trailed: Vec<Algo> = headers
        .get_all("x-amz-trailer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(Algo::from_header)
        .collect();
    let hasher = (!expected.is_empty() || !trailed.is_empty()).then(|| {
        let mut h = ChecksumHasher::default();
        for a in expected
            .iter()
            .map(|(a, _)| *a)
            .chain(trailed.iter().copied())
        {
            a.enable(&mut h);
        }
        h
    });
    let mismatch = Mismatch::default();
    (
        Verified {
            inner: body,
            hasher,
            expected,
            trailed,
            trailers,
            mismatch: mismatch.clone(),
            verified,
            done: false,
        },
        mismatch,
    )
}

impl<S> Verified<S> {
    /// Whether the request declares a checksum of `algorithm` (`CRC32`, ...), as a
    /// header or an announced trailer.
    pub fn declares(&self, algorithm: &str) -> bool {
        self.expected
            .iter()
            .map(|(a, _)| a)
            .chain(&self.trailed)
            .any(|a| a.name() == algorithm)
    }

    /// The first declared checksum the body does not match.
    fn first_mismatch(&mut self, sums: &s3s::dto::Checksum) -> Option<Algo> {
        for (a, want) in &self.expected {
            if a.computed(sums) != Some(want.as_str()) {
                return Some(*a);
            }
        }
        for a in &self.trailed {
            let got = self.trailers.as_ref().and_then(|t| {
                t.read(|h| {
                    h.get(a.header())
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().to_string())
                })
                .flatten()
            });
            // A trailer that was announced but never came cannot be verified.
            if got.is_none() || a.computed(sums) != got.as_deref() {
                return Some(*a);
            }
        }
        None
    }
}

impl<S> Stream for Verified<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match futures::ready!(self.inner.poll_next_unpin(cx)) {
            Some(Ok(bytes)) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Some(Err(e)) => {
                if let Some(f) = signing_failure(&e) {
                    self.mismatch.set(f);
                }
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.done = true;
                let Some(h) = self.hasher.take() else {
                    return Poll::Ready(None);
                };
                let sums = h.finalize();
                match self.first_mismatch(&sums) {
                    None => {
                        let algos = self.expected.iter().map(|(a, _)| *a);
                        let mut values: Vec<(String, String)> = algos
                            .chain(self.trailed.iter().copied())
                            .filter_map(|a| {
                                Some((a.name().to_string(), a.computed(&sums)?.to_string()))
                            })
                            .collect();
                        values.dedup();
                        self.verified.set(values);
                        Poll::Ready(None)
                    }
                    Some(a) => {
                        self.mismatch.set(Failure::Checksum(a));
                        Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the body does not match its {}", a.name()),
                        ))))
                    }
                }
            }
        }
    }
}

/// An object-service result of a verified upload: `BadDigest` when the body failed its
/// checksum (the service saw only a broken body), else the service's own error.
pub fn checked<T>(r: Result<T, bucketdb_object::ObjectError>, m: &Mismatch) -> S3Result<T> {
    r.map_err(|e| m.error().unwrap_or_else(|| super::error::s3_error(e)))
}

/// Copy `StoredChecksums` into the same-named fields of an S3 output (`x-amz-checksum-*`),
/// and with `type` also `x-amz-checksum-type`.
macro_rules! set_checksums {
    ($out:expr, $sums:expr) => {{
        let sums: $crate::s3::checksum::StoredChecksums = $sums;
        $out.checksum_crc32 = sums.crc32;
        $out.checksum_crc32c = sums.crc32c;
        $out.checksum_crc64nvme = sums.crc64nvme;
        $out.checksum_sha1 = sums.sha1;
        $out.checksum_sha256 = sums.sha256;
        sums.checksum_type
    }};
    ($out:expr, $sums:expr, type) => {{
        $out.checksum_type = set_checksums!($out, $sums);
    }};
}
pub(super) use set_checksums;

/// The checksums stored with an object, in the fields S3 responses carry them in.
#[derive(Default)]
pub struct StoredChecksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub checksum_type: Option<s3s::dto::ChecksumType>,
}

impl StoredChecksums {
    /// What to return for `rec`: nothing unless `x-amz-checksum-mode: ENABLED` asked for
    /// it and the whole object is returned (a range has no stored checksum).
    pub fn of(rec: &ObjectRecord, mode: Option<&s3s::dto::ChecksumMode>, whole: bool) -> Self {
        let enabled = mode.is_some_and(|m| m.as_str() == s3s::dto::ChecksumMode::ENABLED);
        if !enabled || !whole {
            return Self::default();
        }
        Self::all(rec)
    }

    /// Every checksum stored with `rec`.
    pub fn all(rec: &ObjectRecord) -> Self {
        Self::from_pairs(&rec.checksums)
    }

    /// The given (algorithm, value) pairs. A multipart object's composite value ends in
    /// `-N`; every other value covers the whole body.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut out = Self::default();
        for (name, value) in pairs {
            let slot = match Algo::from_name(name) {
                Some(Algo::Crc32) => &mut out.crc32,
                Some(Algo::Crc32c) => &mut out.crc32c,
                Some(Algo::Crc64Nvme) => &mut out.crc64nvme,
                Some(Algo::Sha1) => &mut out.sha1,
                Some(Algo::Sha256) => &mut out.sha256,
                None => continue,
            };
            *slot = Some(value.clone());
            out.checksum_type = Some(s3s::dto::ChecksumType::from_static(
                if value.contains('-') {
                    s3s::dto::ChecksumType::COMPOSITE
                } else {
                    s3s::dto::ChecksumType::FULL_OBJECT
                },
            ));
        }
        out
    }
}

/// The algorithm name S3 uses (`CRC32`, ...) for a `x-amz-checksum-algorithm` value, if
/// BucketDB knows it.
pub fn algorithm_name(value: &str) -> Option<&'static str> {
    ALGOS
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(value.trim()))
        .map(Algo::name)
}

/// A multipart object's composite checksum: the checksum, by the same algorithm, of the
/// concatenated binary part checksums (base64 values in `parts`), as S3 computes it.
pub fn combine_part_checksums(algorithm: &str, parts: &[&str]) -> Option<String> {
    use base64::Engine;
    let algo = Algo::from_name(algorithm)?;
    let mut h = ChecksumHasher::default();
    algo.enable(&mut h);
    for p in parts {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p.trim())
            .ok()?;
        h.update(&raw);
    }
    algo.computed(&h.finalize()).map(str::to_string)
}
