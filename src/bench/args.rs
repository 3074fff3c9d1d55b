//! `bucketdb bench` flags and their validation into a [`BenchPlan`].

use std::time::Duration;

use bucketdb::config::parse_size;
use clap::ValueEnum;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_BUCKET: &str = "bucketdb-bench";
/// How long each phase runs when neither `--duration` nor `--count` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// Longest phase `--duration` accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Most requests in flight: one connection (and one task) each.
pub const MAX_CONCURRENCY: usize = 1024;
/// Largest `--size`: the body is one buffer in memory, shared by every request.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;
/// Largest `--keys`: keys are numbered with this many digits at most.
pub const MAX_KEYS: u64 = 100_000_000;
/// Without `--keys`, the key space holds at most this many bytes (so a GET-only run of
/// 100 MiB objects prepares 10 objects, not a thousand) ...
pub const DEFAULT_KEY_SPACE_BYTES: u64 = 1 << 30;
/// ... and at most this many keys.
pub const DEFAULT_KEYS_MAX: u64 = 1000;

/// What one phase of the run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// PutObject of `--size` bytes
    Put,
    /// GetObject of keys written before (by an earlier phase or a prepare step)
    Get,
    /// GETs and PUTs interleaved, `--read-ratio` of them GETs
    Mixed,
}

/// Load-generator flags. Every phase in `--op` runs in order, each for `--duration` or
/// `--count` requests, and prints one table row per operation.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// S3 endpoint (http:// or https://); requests are path-style
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Access key [default: $AWS_ACCESS_KEY_ID, then $BUCKETDB_ACCESS_KEY]
    #[arg(long)]
    pub access_key: Option<String>,
    /// Secret key [default: $AWS_SECRET_ACCESS_KEY, then $BUCKETDB_SECRET_KEY]
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Region the requests are signed for
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
    /// Bucket to use; created if missing
    #[arg(long, default_value = DEFAULT_BUCKET)]
    pub bucket: String,
    /// Phases to run in order, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "put,get")]
    pub op: Vec<Op>,
    /// Share of GETs in the mixed phase, 0.0 to 1.0
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Object size, e.g. 4KiB, 100MiB, 1MB
    #[arg(long, default_value = "4KiB", value_parser = parse_object_size)]
    pub size: u64,
    /// Requests in flight
    #[arg(long, default_value_t = 64, value_parser = parse_concurrency)]
    pub concurrency: usize,
    /// How long each phase runs, e.g. 30s, 2m [default: 30s]
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Requests per phase, instead of a duration
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Number of distinct keys written and read [default: 1000, or fewer so that they
    /// hold at most 1 GiB]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_KEYS))]
    pub keys: Option<u64>,
    /// GET and mixed phases read the keys a previous run wrote instead of writing them first
    #[arg(long)]
    pub no_prepare: bool,
    /// Print the results as JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Exit 0 even when requests failed
    #[arg(long)]
    pub allow_errors: bool,
}

fn parse_object_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n > MAX_OBJECT_SIZE {
        return Err(format!("at most {MAX_OBJECT_SIZE} bytes (1 GiB)"));
    }
    Ok(n)
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {MAX_CONCURRENCY}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > MAX_DURATION {
        return Err("expected a duration from 1ms to 24h, e.g. 30s".into());
    }
    Ok(d)
}

/// When a phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Count(u64),
    Duration(Duration),
}

/// The scheme of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// The validated run: what [`BenchArgs`] asks for, with defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchPlan {
    pub scheme: Scheme,
    /// `host[:port]` exactly as given (the signed `Host` header).
    pub authority: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub bucket: String,
    pub ops: Vec<Op>,
    pub read_ratio: f64,
    pub size: u64,
    pub concurrency: usize,
    pub stop: Stop,
    pub keys: u64,
    pub prepare: bool,
    pub json: bool,
    pub allow_errors: bool,
}

impl BenchPlan {
    /// The endpoint as a URL prefix, without a trailing slash.
    pub fn endpoint(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}", self.authority)
    }
}

/// A flag combination that cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgsError {
    #[error("--endpoint {0:?}: expected http://HOST[:PORT] or https://HOST[:PORT] without a path")]
    Endpoint(String),
    #[error("no {0}: pass --{1} or set {2} (or {3})")]
    MissingCredential(&'static str, &'static str, &'static str, &'static str),
    #[error("--bucket {0:?}: expected an S3 bucket name (3-63 characters: a-z, 0-9, '.' and '-')")]
    Bucket(String),
    #[error("--region {0:?}: expected a region name like us-east-1")]
    Region(String),
    #[error("--read-ratio {0}: expected a number from 0.0 to 1.0")]
    ReadRatio(f64),
    #[error("--op: expected at least one of put, get, mixed")]
    NoOp,
}

impl BenchArgs {
    /// Validate and fill in defaults; credentials missing from the flags come from
    /// `env` (the process environment in production).
    pub fn plan(&self, env: impl Fn(&str) -> Option<String>) -> Result<BenchPlan, ArgsError> {
        let (scheme, authority) = parse_endpoint(&self.endpoint)?;
        let credential = |flag: &Option<String>, aws: &'static str, ours: &'static str| {
            flag.clone()
                .or_else(|| env(aws))
                .or_else(|| env(ours))
                .filter(|v| !v.is_empty())
        };
        let access_key = credential(&self.access_key, "AWS_ACCESS_KEY_ID", "BUCKETDB_ACCESS_KEY")
            .ok_or(ArgsError::MissingCredential(
            "access key",
            "access-key",
            "AWS_ACCESS_KEY_ID",
            "BUCKETDB_ACCESS_KEY",
        ))?;
        let secret_key = credential(
            &self.secret_key,
            "AWS_SECRET_ACCESS_KEY",
            "BUCKETDB_SECRET_KEY",
        )
        .ok_or(ArgsError::MissingCredential(
            "secret key",
            "secret-key",
            "AWS_SECRET_ACCESS_KEY",
            "BUCKETDB_SECRET_KEY",
        ))?;
        if !valid_bucket(&self.bucket) {
            return Err(ArgsError::Bucket(self.bucket.clone()));
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(ArgsError::Region(self.region.clone()));
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(ArgsError::ReadRatio(self.read_ratio));
        }
        if self.op.is_empty() {
            return Err(ArgsError::NoOp);
        }
        let stop = match (self.count, self.duration) {
            (Some(n), _) => Stop::Count(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Duration(DEFAULT_DURATION),
        };
        Ok(BenchPlan {
            scheme,
            authority,
            access_key,
            secret_key,
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            ops: self.op.clone(),
            read_ratio: self.read_ratio,
            size: self.size,
            concurrency: self.concurrency,
            stop,
            keys: self.keys.unwrap_or_else(|| default_keys(self.size)),
            prepare: !self.no_prepare,
            json: self.json,
            allow_errors: self.allow_errors,
        })
    }
}

/// [`DEFAULT_KEYS_MAX`] keys, or fewer so that they hold at most
/// [`DEFAULT_KEY_SPACE_BYTES`].
pub fn default_keys(size: u64) -> u64 {
    (DEFAULT_KEY_SPACE_BYTES / size.max(1)).clamp(1, DEFAULT_KEYS_MAX)
}

fn parse_endpoint(s: &str) -> Result<(Scheme, String), ArgsError> {
    let bad = || ArgsError::Endpoint(s.to_string());
    let uri: http::Uri = s.trim().parse().map_err(|_| bad())?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(bad()),
    };
    let authority = uri.authority().ok_or_else(bad)?;
    // Credentials in the URL would be sent nowhere and signed nowhere: refuse them.
    let has_userinfo = authority.as_str().contains('@');
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if has_userinfo || !path_ok || authority.host().is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority.as_str().to_string()))
}

/// S3's bucket naming rules, as far as they matter for building a path-style URL:
/// 3 to 63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit.
fn valid_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    let edge_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.iter().all(|&c| edge_ok(c) || c == b'.' || c == b'-')
        && edge_ok(b[0])
        && edge_ok(b[b.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(flags: &[&str]) -> Result<BenchArgs, clap::Error> {
        let argv = std::iter::once("bench").chain(flags.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn plan(flags: &[&str]) -> Result<BenchPlan, ArgsError> {
        let with_keys = [&["--access-key", "AK", "--secret-key", "SK"], flags].concat();
        parse(&with_keys).expect("flags parse").plan(no_env)
    }

    #[test]
    fn defaults_make_the_specs_put_then_get_table() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.endpoint(), DEFAULT_ENDPOINT);
        assert_eq!(p.authority, "127.0.0.1:8080");
        assert_eq!(p.ops, vec![Op::Put, Op::Get]);
        assert_eq!(p.size, 4096);
        assert_eq!(p.concurrency, 64);
        assert_eq!(p.stop, Stop::Duration(DEFAULT_DURATION));
        assert_eq!(p.keys, DEFAULT_KEYS_MAX);
        assert_eq!(p.region, "us-east-1");
        assert_eq!(p.bucket, DEFAULT_BUCKET);
        assert!(p.prepare && !p.json && !p.allow_errors);
    }

    #[test]
    fn flags_are_parsed() {
        let p = plan(&[
            "--endpoint",
            "https://s3.example.com:9000/",
            "--op",
            "get,mixed",
            "--read-ratio",
            "0.5",
            "--size",
            "100MiB",
            "--concurrency",
            "8",
            "--count",
            "200",
            "--keys",
            "16",
            "--no-prepare",
            "--json",
            "--allow-errors",
            "--region",
            "eu-west-3",
            "--bucket",
            "my.bench-bucket",
        ])
        .unwrap();
        assert_eq!(p.scheme, Scheme::Https);
        assert_eq!(p.endpoint(), "https://s3.example.com:9000");
        assert_eq!(p.ops, vec![Op::Get, Op::Mixed]);
        assert_eq!(p.read_ratio, 0.5);
        assert_eq!(p.size, 100 << 20);
        assert_eq!(p.concurrency, 8);
        assert_eq!(p.stop, Stop::Count(200));
        assert_eq!(p.keys, 16);
        assert!(!p.prepare && p.json && p.allow_errors);
        assert_eq!(p.region, "eu-west-3");
        assert_eq!(p.bucket, "my.bench-bucket");
        assert_eq!(
            plan(&["--duration", "90s"]).unwrap().stop,
            Stop::Duration(Duration::from_secs(90))
        );
    }

    #[test]
    fn the_default_key_space_holds_at_most_a_gib() {
        assert_eq!(default_keys(4096), DEFAULT_KEYS_MAX);
        assert_eq!(default_keys(100 << 20), 10);
        assert_eq!(default_keys(MAX_OBJECT_SIZE), 1);
        assert_eq!(default_keys(0), DEFAULT_KEYS_MAX);
        assert_eq!(plan(&["--size", "100MiB"]).unwrap().keys, 10);
    }

    #[test]
    fn credentials_come_from_flags_then_aws_then_bucketdb_variables() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("aws-ak".to_string()),
            "BUCKETDB_ACCESS_KEY" => Some("bdb-ak".to_string()),
            "BUCKETDB_SECRET_KEY" => Some("bdb-sk".to_string()),
            _ => None,
        };
        let p = parse(&[]).unwrap().plan(env).unwrap();
        assert_eq!(
            (p.access_key.as_str(), p.secret_key.as_str()),
            ("aws-ak", "bdb-sk")
        );
        let p = parse(&["--access-key", "flag-ak"])
            .unwrap()
            .plan(env)
            .unwrap();
        assert_eq!(p.access_key, "flag-ak");
        let err = parse(&[]).unwrap().plan(no_env).unwrap_err();
        assert!(err.to_string().contains("--access-key"), "{err}");
        let err = parse(&["--access-key", "a"])
            .unwrap()
            .plan(no_env)
            .unwrap_err();
        assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        for flags in [
            &["--size", "2GiB"][..],
            &["--size", "4XB"],
            &["--concurrency", "0"],
            &["--concurrency", "5000"],
            &["--count", "0"],
            &["--count", "10", "--duration", "5s"],
            &["--duration", "0s"],
            &["--duration", "2days"],
            &["--keys", "0"],
            &["--op", "delete"],
        ] {
            assert!(parse(flags).is_err(), "{flags:?} was accepted");
        }
        for (flags, want) in [
            (&["--endpoint", "127.0.0.1:8080"][..], "--endpoint"),
            (&["--endpoint", "ftp://host"], "--endpoint"),
            (&["--endpoint", "http://host/prefix"], "--endpoint"),
            (&["--endpoint", "http://user:pw@host"], "--endpoint"),
            (&["--bucket", "Bad_Bucket"], "--bucket"),
            (&["--bucket", "ab"], "--bucket"),
            (&["--bucket=-abc"], "--bucket"),
            (&["--region", "US"], "--region"),
            (&["--read-ratio", "1.5"], "--read-ratio"),
        ] {
            let err = plan(flags).unwrap_err().to_string();
            assert!(err.contains(want), "{flags:?}: {err}");
        }
    }
}
