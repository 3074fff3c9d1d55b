//! Runs one phase: `concurrency` workers, each sending one request at a time until the
//! phase's count or duration is reached, recording latencies in HDR histograms (fixed
//! size, so memory does not grow with the length of the run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use super::args::Stop;
use super::client::{REQUEST_TIMEOUT, RequestError, S3Client};

/// Latencies are recorded in microseconds from 1 µs up to the request timeout ...
pub const HISTOGRAM_MAX_MICROS: u64 = REQUEST_TIMEOUT.as_micros() as u64;
/// ... to 3 significant digits (a 0.1% error; about 160 KiB per histogram, two per phase).
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;
/// Distinct error descriptions kept per operation; further kinds are counted together.
pub const ERROR_KINDS_MAX: usize = 5;

/// The operation of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Put,
    Get,
}

/// Which requests a phase sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mix {
    Put,
    Get,
    /// GETs and PUTs interleaved evenly, this share of them GETs.
    Mixed {
        read_ratio: f64,
    },
}

/// One phase: what it sends, on which keys, and when it stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseSpec {
    pub mix: Mix,
    pub stop: Stop,
    /// PUTs write keys `put_first_key .. put_first_key + put_keys`, in turn.
    pub put_first_key: u64,
    pub put_keys: u64,
    /// GETs read keys `0 .. readable_keys`, in turn.
    pub readable_keys: u64,
    pub concurrency: usize,
}

impl PhaseSpec {
    /// The operation and key index of the phase's `i`-th request.
    pub fn request(&self, i: u64) -> (Method, u64) {
        let method = match self.mix {
            Mix::Put => Method::Put,
            Mix::Get => Method::Get,
            Mix::Mixed { read_ratio } => {
                // Request i is a GET when it brings the number of GETs so far up to the
                // next whole multiple of the ratio: exactly `ratio` of any prefix, no RNG.
                let gets_before = (i as f64 * read_ratio).floor();
                let gets_after = ((i + 1) as f64 * read_ratio).floor();
                if gets_after > gets_before {
                    Method::Get
                } else {
                    Method::Put
                }
            }
        };
        let key = match method {
            Method::Put => self.put_first_key + i % self.put_keys.max(1),
            Method::Get => i % self.readable_keys.max(1),
        };
        (method, key)
    }
}

/// The object key of key index `i`.
pub fn key_name(i: u64) -> String {
    format!("bench/{i:08}")
}

/// What one operation of a phase did.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Successful requests.
    pub ops: u64,
    /// Failed requests.
    pub errors: u64,
    /// Body bytes sent (PUT) or received (GET) by successful requests.
    pub bytes: u64,
    /// Latency of successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Failure descriptions and how often each happened, in order of first occurrence.
    pub error_kinds: Vec<(String, u64)>,
    /// Failures beyond the first [`ERROR_KINDS_MAX`] kinds.
    pub other_errors: u64,
}

impl OpStats {
    fn new() -> Result<OpStats, hdrhistogram::CreationError> {
        Ok(OpStats {
            ops: 0,
            errors: 0,
            bytes: 0,
            latency: Histogram::new_with_bounds(
                1,
                HISTOGRAM_MAX_MICROS,
                HISTOGRAM_SIGNIFICANT_DIGITS,
            )?,
            error_kinds: Vec::new(),
            other_errors: 0,
        })
    }

    fn record(&mut self, outcome: Result<u64, RequestError>, took: Duration) {
        match outcome {
            Ok(bytes) => {
                self.ops += 1;
                self.bytes += bytes;
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(micros.max(1));
            }
            Err(e) => {
                self.errors += 1;
                let what = e.to_string();
                if let Some(kind) = self.error_kinds.iter_mut().find(|(k, _)| *k == what) {
                    kind.1 += 1;
                } else if self.error_kinds.len() < ERROR_KINDS_MAX {
                    self.error_kinds.push((what, 1));
                } else {
                    self.other_errors += 1;
                }
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.ops + self.errors
    }
}

/// What a phase did.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// From the first request sent to the last response read.
    pub elapsed: Duration,
    pub put: OpStats,
    pub get: OpStats,
}

struct Shared {
    client: S3Client,
    spec: PhaseSpec,
    /// The PUT body: one buffer for every request.
    body: Bytes,
    next_request: AtomicU64,
    deadline: Option<Instant>,
    put: Mutex<OpStats>,
    get: Mutex<OpStats>,
}

impl Shared {
    /// The index of the next request to send, or `None` when the phase is over.
    fn claim(&self) -> Option<u64> {
        match self.spec.stop {
            Stop::Count(n) => {
                let i = self.next_request.fetch_add(1, Ordering::Relaxed);
                (i < n).then_some(i)
            }
            // Check the clock before claiming, so that every claimed index is sent and
            // PUT phases write exactly keys 0..(requests sent).
            Stop::Duration(_) => match self.deadline {
                Some(end) if Instant::now() < end => {
                    Some(self.next_request.fetch_add(1, Ordering::Relaxed))
                }
                _ => None,
            },
        }
    }

    async fn work(&self) {
        while let Some(i) = self.claim() {
            let (method, key) = self.spec.request(i);
            let key = key_name(key);
            let started = Instant::now();
            let (outcome, stats) = match method {
                Method::Put => (
                    self.client.put_object(&key, self.body.clone()).await,
                    &self.put,
                ),
                Method::Get => (
                    self.client.get_object(&key, self.body.len() as u64).await,
                    &self.get,
                ),
            };
            let took = started.elapsed();
            // Stats hold no invariant a panicking holder could break: use them anyway.
            let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.record(outcome, took);
        }
    }
}

/// Why a phase could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("a load worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// Run one phase with `spec.concurrency` requests in flight; PUTs send `body`, GETs
/// expect bodies of its length.
pub async fn run_phase(
    client: &S3Client,
    spec: PhaseSpec,
    body: Bytes,
) -> Result<PhaseResult, RunError> {
    let started = Instant::now();
    let deadline = match spec.stop {
        Stop::Duration(d) => started.checked_add(d),
        Stop::Count(_) => None,
    };
    let shared = Arc::new(Shared {
        client: client.clone(),
        spec,
        body,
        next_request: AtomicU64::new(0),
        deadline,
        put: Mutex::new(OpStats::new()?),
        get: Mutex::new(OpStats::new()?),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency {
        let shared = shared.clone();
        workers.spawn(async move { shared.work().await });
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let elapsed = started.elapsed();
    let take = |m: &Mutex<OpStats>| m.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Ok(PhaseResult {
        elapsed,
        put: take(&shared.put),
        get: take(&shared.get),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mix: Mix) -> PhaseSpec {
        PhaseSpec {
            mix,
            stop: Stop::Count(100),
            put_first_key: 0,
            put_keys: 10,
            readable_keys: 4,
            concurrency: 1,
        }
    }

    #[test]
    fn puts_cycle_through_their_keys_and_gets_through_the_readable_ones() {
        let puts: Vec<_> = (0..12).map(|i| spec(Mix::Put).request(i)).collect();
        assert!(puts.iter().all(|(m, _)| *m == Method::Put));
        let keys: Vec<u64> = puts.iter().map(|(_, k)| *k).collect();
        assert_eq!(keys, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        let prepare = PhaseSpec {
            put_first_key: 6,
            put_keys: 4,
            ..spec(Mix::Put)
        };
        let keys: Vec<u64> = (0..4).map(|i| prepare.request(i).1).collect();
        assert_eq!(keys, [6, 7, 8, 9]);
        let keys: Vec<u64> = (0..6).map(|i| spec(Mix::Get).request(i).1).collect();
        assert_eq!(keys, [0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn the_mixed_phase_has_exactly_its_read_ratio() {
        for (ratio, gets) in [(0.0, 0), (0.25, 25), (0.9, 90), (1.0, 100)] {
            let s = spec(Mix::Mixed { read_ratio: ratio });
            let n = (0..100).filter(|&i| s.request(i).0 == Method::Get).count();
            assert_eq!(n, gets, "ratio {ratio}");
        }
        // Evenly spread: every 10 requests hold 9 GETs.
        let s = spec(Mix::Mixed { read_ratio: 0.9 });
        for window in 0..10 {
            let n = (window * 10..window * 10 + 10)
                .filter(|&i| s.request(i).0 == Method::Get)
                .count();
            assert_eq!(n, 9);
        }
    }

    #[test]
    fn stats_count_outcomes_and_keep_a_bounded_list_of_error_kinds() {
        let mut stats = OpStats::new().unwrap();
        stats.record(Ok(4096), Duration::from_millis(2));
        stats.record(Ok(4096), Duration::from_millis(4));
        stats.record(Ok(4096), Duration::from_secs(3600));
        for status in 400..410u16 {
            for _ in 0..2 {
                stats.record(
                    Err(RequestError::Status {
                        status: http::StatusCode::from_u16(status).unwrap(),
                        code: None,
                    }),
                    Duration::ZERO,
                );
            }
        }
        assert_eq!((stats.ops, stats.errors, stats.bytes), (3, 20, 3 * 4096));
        assert_eq!(stats.requests(), 23);
        assert_eq!(stats.error_kinds.len(), ERROR_KINDS_MAX);
        assert_eq!(stats.error_kinds[0], ("400 Bad Request".to_string(), 2));
        assert_eq!(stats.other_errors, 20 - 2 * ERROR_KINDS_MAX as u64);
        // A latency beyond the histogram's range is clamped, not lost.
        assert_eq!(stats.latency.len(), 3);
        assert!(stats.latency.max() >= HISTOGRAM_MAX_MICROS * 999 / 1000);
    }

    #[test]
    fn keys_sort_in_index_order() {
        assert_eq!(key_name(7), "bench/00000007");
        assert!(key_name(99) < key_name(100));
    }
}
