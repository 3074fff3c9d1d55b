//! Configuration: defaults, then a TOML file, then `BUCKETDB_*` environment variables,
//! then command-line flags (later wins). Every bad value is an error naming its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bucketdb_object::{
    CHUNK_SIZE_MAX, CHUNK_SIZE_MIN, DEFAULT_CHUNK_SIZE, DEFAULT_INLINE_THRESHOLD,
    DEFAULT_MAX_OBJECT_SIZE, INLINE_THRESHOLD_MAX,
};
use clap::Args;

/// Largest configuration file read.
const CONFIG_FILE_MAX_BYTES: u64 = 1024 * 1024;
pub use bucketdb_cluster::membership::sign::CLUSTER_SECRET_MIN_BYTES;

/// Largest replication factor accepted.
pub const REPLICATION_FACTOR_MAX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for `{key}`: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown configuration key `{0}` in the config file")]
    UnknownKey(String),
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A node's resolved configuration. `Debug` hides the secret key.
#[derive(Clone)]
pub struct Config {
    pub storage_path: PathBuf,
    pub metadata_path: PathBuf,
    pub chunk_size: usize,
    pub max_object_size: u64,
    pub inline_threshold: usize,
    pub replication_factor: usize,
    pub quorum_required: bool,
    pub replication_timeout: Duration,
    pub http_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    pub s3_domain: Option<String>,
    pub s3_region: Option<String>,
    pub advertise_addr: Option<String>,
    pub node_id: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub log_format: LogFormat,
    pub lifecycle_interval: Duration,
    pub gc_interval: Duration,
    pub gc_grace: Duration,
    /// Shared secret that signs node-to-node requests (never logged).
    pub cluster_secret: Option<String>,
    /// Start a new one-member cluster (`--bootstrap`).
    pub bootstrap: bool,
    /// Join the cluster through this member's HTTP address (`--join URL`).
    pub join: Option<String>,
    pub heartbeat_interval: Duration,
    pub node_down_timeout: Duration,
    /// How often anti-entropy compares every stored version with its replicas (it also
    /// runs whenever the ring changes).
    pub anti_entropy_interval: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("storage_path", &self.storage_path)
            .field("metadata_path", &self.metadata_path)
            .field("chunk_size", &self.chunk_size)
            .field("max_object_size", &self.max_object_size)
            .field("inline_threshold", &self.inline_threshold)
            .field("replication_factor", &self.replication_factor)
            .field("quorum_required", &self.quorum_required)
            .field("http_addr", &self.http_addr)
            .field("s3_addr", &self.s3_addr)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "cluster_secret",
                &self.cluster_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("bootstrap", &self.bootstrap)
            .field("join", &self.join)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            storage_path: PathBuf::from("./data"),
            metadata_path: PathBuf::from("./meta"),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            replication_factor: 3,
            quorum_required: false,
            replication_timeout: Duration::from_secs(10),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 9080)),
            s3_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            s3_domain: None,
            s3_region: None,
            advertise_addr: None,
            node_id: None,
            access_key: None,
            secret_key: None,
            log_format: LogFormat::Text,
            lifecycle_interval: Duration::from_secs(3600),
            gc_interval: Duration::from_secs(30),
            gc_grace: Duration::from_millis(bucketdb_object::DEFAULT_GC_GRACE_MS),
            cluster_secret: None,
            bootstrap: false,
            join: None,
            heartbeat_interval: Duration::from_secs(1),
            anti_entropy_interval: Duration::from_secs(600),
            node_down_timeout: Duration::from_secs(10),
        }
    }
}

/// The settings as flags (each also read from `BUCKETDB_<NAME>`).
#[derive(Args, Default, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "BUCKETDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory where chunks are stored [default: ./data]
    #[arg(long, env = "BUCKETDB_STORAGE_PATH")]
    pub storage_path: Option<String>,
    /// Directory for the metadata store [default: ./meta]
    #[arg(long, env = "BUCKETDB_METADATA_PATH")]
    pub metadata_path: Option<String>,
    /// Size of stored chunks, e.g. 4MiB [default: 4MiB]
    #[arg(long, env = "BUCKETDB_CHUNK_SIZE")]
    pub chunk_size: Option<String>,
    /// Largest object accepted, e.g. 5GiB [default: 5GiB]
    #[arg(long, env = "BUCKETDB_MAX_OBJECT_SIZE")]
    pub max_object_size: Option<String>,
    /// Objects up to this size live inline in metadata [default: 64KiB]
    #[arg(long, env = "BUCKETDB_INLINE_THRESHOLD")]
    pub inline_threshold: Option<String>,
    /// Copies of each object (capped at the node count) [default: 3]
    #[arg(long, env = "BUCKETDB_REPLICATION_FACTOR")]
    pub replication_factor: Option<String>,
    /// Wait for N/2+1 replicas before acknowledging writes [default: false]
    #[arg(long, env = "BUCKETDB_QUORUM_REQUIRED")]
    pub quorum_required: Option<String>,
    /// Longest wait for a write quorum, e.g. 10s [default: 10s]
    #[arg(long, env = "BUCKETDB_REPLICATION_TIMEOUT")]
    pub replication_timeout: Option<String>,
    /// Address of the REST API, dashboard, health and metrics [default: 0.0.0.0:9080]
    #[arg(long, env = "BUCKETDB_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Address of the S3 API [default: 0.0.0.0:8080]
    #[arg(long, env = "BUCKETDB_S3_ADDR")]
    pub s3_addr: Option<String>,
    /// Base domain for virtual-host-style S3 requests (bucket.DOMAIN) [default: path style only]
    #[arg(long, env = "BUCKETDB_S3_DOMAIN")]
    pub s3_domain: Option<String>,
    /// The only region S3 requests may be signed for [default: any region]
    #[arg(long, env = "BUCKETDB_S3_REGION")]
    pub s3_region: Option<String>,
    /// Address peers use to reach this node [default: derived from http_addr]
    #[arg(long, env = "BUCKETDB_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Stable node id [default: generated on first start]
    #[arg(long, env = "BUCKETDB_NODE_ID")]
    pub node_id: Option<String>,
    /// Root access key [default: generated on first start]
    #[arg(long, env = "BUCKETDB_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// Root secret key [default: generated on first start]
    #[arg(long, env = "BUCKETDB_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "BUCKETDB_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How often lifecycle rules are applied, e.g. 1h [default: 1h]
    #[arg(long, env = "BUCKETDB_LIFECYCLE_INTERVAL")]
    pub lifecycle_interval: Option<String>,
    /// Longest pause between garbage-collection passes, e.g. 30s [default: 30s]
    #[arg(long, env = "BUCKETDB_GC_INTERVAL")]
    pub gc_interval: Option<String>,
    /// How long deleted or overwritten data stays readable by downloads already in
    /// progress before GC removes it, e.g. 15m (0s: at once) [default: 15m]
    #[arg(long, env = "BUCKETDB_GC_GRACE")]
    pub gc_grace: Option<String>,
    /// Shared secret of the cluster; signs node-to-node requests (at least 16 bytes)
    #[arg(long, env = "BUCKETDB_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Start a new cluster with this node as its only member (needs cluster_secret)
    #[arg(
        long,
        env = "BUCKETDB_BOOTSTRAP",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub bootstrap: Option<String>,
    /// Join a cluster through any member's HTTP API, e.g. http://10.0.0.1:9080
    #[arg(long, env = "BUCKETDB_JOIN")]
    pub join: Option<String>,
    /// How often each node heartbeats every other member, e.g. 1s [default: 1s]
    #[arg(long, env = "BUCKETDB_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// A member unanswered this long is reported down, e.g. 10s [default: 10s]
    #[arg(long, env = "BUCKETDB_NODE_DOWN_TIMEOUT")]
    pub node_down_timeout: Option<String>,
    /// How often anti-entropy compares stored versions with their replicas (also run
    /// whenever the ring changes), e.g. 10m [default: 10m]
    #[arg(long, env = "BUCKETDB_ANTI_ENTROPY_INTERVAL")]
    pub anti_entropy_interval: Option<String>,
}

/// Parse `4MiB`, `64 KiB`, `5GB`, `1048576`: binary units (KiB, MiB, GiB, TiB and the
/// bare K, M, G, T), decimal units (KB, MB, GB, TB) or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a number with an optional unit such as 4MiB".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "the size is too large".to_string())
}

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|e| format!("expected HOST:PORT with an IP address ({e})"))
}

/// An S3 region name: lower-case letters, digits and dashes, as AWS names them.
fn region(s: &str) -> Result<String, String> {
    let s = s.trim();
    let valid = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(s.to_string())
    } else {
        Err("expected a region name like us-east-1 (a-z, 0-9 and -)".into())
    }
}

/// A member's HTTP address for `--join`: `http://HOST:PORT` or `HOST:PORT`.
fn join_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s.starts_with("https://") {
        return Err("node-to-node traffic is plain HTTP; use http://HOST:PORT".into());
    }
    let hostport = s.strip_prefix("http://").unwrap_or(s);
    let valid = hostport
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        && !hostport.contains('/');
    if valid {
        Ok(format!("http://{hostport}"))
    } else {
        Err("expected http://HOST:PORT of a cluster member".into())
    }
}

/// Rules that span several cluster keys.
fn cluster_checks(cfg: &Config) -> Result<(), ConfigError> {
    if (cfg.bootstrap || cfg.join.is_some()) && cfg.cluster_secret.is_none() {
        return Err(ConfigError::Invalid {
            key: "cluster_secret",
            value: String::new(),
            reason: "--bootstrap and --join need a cluster secret (BUCKETDB_CLUSTER_SECRET)".into(),
        });
    }
    if cfg.bootstrap && cfg.join.is_some() {
        return Err(ConfigError::Invalid {
            key: "join",
            value: cfg.join.clone().unwrap_or_default(),
            reason: "a node either bootstraps a cluster or joins one, not both".into(),
        });
    }
    if cfg.node_down_timeout <= cfg.heartbeat_interval {
        return Err(ConfigError::Invalid {
            key: "node_down_timeout",
            value: humantime::format_duration(cfg.node_down_timeout).to_string(),
            reason: "must be longer than heartbeat_interval".into(),
        });
    }
    Ok(())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

const KEYS: &[&str] = &[
    "storage_path",
    "metadata_path",
    "chunk_size",
    "max_object_size",
    "inline_threshold",
    "replication_factor",
    "quorum_required",
    "replication_timeout",
    "http_addr",
    "s3_addr",
    "s3_domain",
    "s3_region",
    "advertise_addr",
    "node_id",
    "access_key",
    "secret_key",
    "log_format",
    "lifecycle_interval",
    "gc_interval",
    "gc_grace",
    "cluster_secret",
    "bootstrap",
    "join",
    "heartbeat_interval",
    "node_down_timeout",
    "anti_entropy_interval",
];

/// A TOML file's values, as strings, by key.
fn read_file(path: &std::path::Path) -> Result<toml::Table, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > CONFIG_FILE_MAX_BYTES {
        return Err(err("the file is larger than 1 MiB".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    if let Some(k) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ConfigError::UnknownKey(k.clone()));
    }
    Ok(table)
}

fn toml_string(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl ConfigArgs {
    /// Resolve defaults < file < environment < flags (clap already merged the last two).
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => toml::Table::new(),
        };
        let pick = |key: &'static str, arg: &Option<String>| -> Option<String> {
            arg.clone().or_else(|| file.get(key).map(toml_string))
        };
        fn parsed<T>(
            key: &'static str,
            v: Option<String>,
            f: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<T>, ConfigError> {
            v.map(|v| {
                f(&v).map_err(|reason| ConfigError::Invalid {
                    key,
                    value: v.clone(),
                    reason,
                })
            })
            .transpose()
        }
        let size_in = |lo: u64, hi: u64| {
            move |s: &str| {
                let n = parse_size(s)?;
                if n < lo || n > hi {
                    return Err(format!("must be between {lo} and {hi} bytes"));
                }
                Ok(n)
            }
        };
        let duration = |s: &str| {
            let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
            if d.is_zero() {
                return Err("must be longer than zero".into());
            }
            Ok(d)
        };
        let nonempty = |s: &str| {
            if s.trim().is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(s.to_string())
            }
        };
        let d = Config::default();
        let cfg = Config {
            storage_path: parsed(
                "storage_path",
                pick("storage_path", &self.storage_path),
                |s| nonempty(s).map(PathBuf::from),
            )?
            .unwrap_or(d.storage_path),
            metadata_path: parsed(
                "metadata_path",
                pick("metadata_path", &self.metadata_path),
                |s| nonempty(s).map(PathBuf::from),
            )?
            .unwrap_or(d.metadata_path),
            chunk_size: parsed(
                "chunk_size",
                pick("chunk_size", &self.chunk_size),
                size_in(CHUNK_SIZE_MIN as u64, CHUNK_SIZE_MAX as u64),
            )?
            .map_or(d.chunk_size, |n| n as usize),
            max_object_size: parsed(
                "max_object_size",
                pick("max_object_size", &self.max_object_size),
                size_in(1, u64::MAX),
            )?
            .unwrap_or(d.max_object_size),
            inline_threshold: parsed(
                "inline_threshold",
                pick("inline_threshold", &self.inline_threshold),
                size_in(0, INLINE_THRESHOLD_MAX as u64),
            )?
            .map_or(d.inline_threshold, |n| n as usize),
            replication_factor: parsed(
                "replication_factor",
                pick("replication_factor", &self.replication_factor),
                |s| match s.trim().parse::<usize>() {
                    Ok(n) if (1..=REPLICATION_FACTOR_MAX).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "must be a whole number from 1 to {REPLICATION_FACTOR_MAX}"
                    )),
                },
            )?
            .unwrap_or(d.replication_factor),
            quorum_required: parsed(
                "quorum_required",
                pick("quorum_required", &self.quorum_required),
                parse_bool,
            )?
            .unwrap_or(d.quorum_required),
            replication_timeout: parsed(
                "replication_timeout",
                pick("replication_timeout", &self.replication_timeout),
                duration,
            )?
            .unwrap_or(d.replication_timeout),
            http_addr: parsed("http_addr", pick("http_addr", &self.http_addr), socket_addr)?
                .unwrap_or(d.http_addr),
            s3_addr: parsed("s3_addr", pick("s3_addr", &self.s3_addr), socket_addr)?
                .unwrap_or(d.s3_addr),
            s3_domain: parsed("s3_domain", pick("s3_domain", &self.s3_domain), nonempty)?,
            s3_region: parsed("s3_region", pick("s3_region", &self.s3_region), region)?,
            advertise_addr: parsed(
                "advertise_addr",
                pick("advertise_addr", &self.advertise_addr),
                nonempty,
            )?,
            node_id: parsed("node_id", pick("node_id", &self.node_id), nonempty)?,
            access_key: parsed("access_key", pick("access_key", &self.access_key), nonempty)?,
            secret_key: parsed("secret_key", pick("secret_key", &self.secret_key), nonempty)?,
            log_format: parsed(
                "log_format",
                pick("log_format", &self.log_format),
                |s| match s.trim() {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected text or json".into()),
                },
            )?
            .unwrap_or(d.log_format),
            lifecycle_interval: parsed(
                "lifecycle_interval",
                pick("lifecycle_interval", &self.lifecycle_interval),
                duration,
            )?
            .unwrap_or(d.lifecycle_interval),
            gc_interval: parsed(
                "gc_interval",
                pick("gc_interval", &self.gc_interval),
                duration,
            )?
            .unwrap_or(d.gc_interval),
            gc_grace: parsed("gc_grace", pick("gc_grace", &self.gc_grace), |s| {
                humantime::parse_duration(s).map_err(|e| e.to_string())
            })?
            .unwrap_or(d.gc_grace),
            cluster_secret: parsed(
                "cluster_secret",
                pick("cluster_secret", &self.cluster_secret),
                |s| {
                    if s.len() < CLUSTER_SECRET_MIN_BYTES {
                        Err(format!(
                            "must be at least {CLUSTER_SECRET_MIN_BYTES} bytes long"
                        ))
                    } else {
                        Ok(s.to_string())
                    }
                },
            )?,
            // `--bootstrap` alone means true (clap's default_missing_value).
            bootstrap: parsed("bootstrap", pick("bootstrap", &self.bootstrap), parse_bool)?
                .unwrap_or(d.bootstrap),
            join: parsed("join", pick("join", &self.join), join_url)?,
            heartbeat_interval: parsed(
                "heartbeat_interval",
                pick("heartbeat_interval", &self.heartbeat_interval),
                duration,
            )?
            .unwrap_or(d.heartbeat_interval),
            node_down_timeout: parsed(
                "node_down_timeout",
                pick("node_down_timeout", &self.node_down_timeout),
                duration,
            )?
            .unwrap_or(d.node_down_timeout),
            anti_entropy_interval: parsed(
                "anti_entropy_interval",
                pick("anti_entropy_interval", &self.anti_entropy_interval),
                duration,
            )?
            .unwrap_or(d.anti_entropy_interval),
        };
        cluster_checks(&cfg)?;
        if cfg.inline_threshold > cfg.chunk_size {
            return Err(ConfigError::Invalid {
                key: "inline_threshold",
                value: cfg.inline_threshold.to_string(),
                reason: "must not exceed chunk_size".into(),
            });
        }
        if let Some(ak) = &cfg.access_key
            && (ak.contains(':') || ak.chars().any(char::is_whitespace))
        {
            return Err(ConfigError::Invalid {
                key: "access_key",
                value: ak.clone(),
                reason: "must not contain ':' or whitespace".into(),
            });
        }
        if cfg.access_key.is_some() != cfg.secret_key.is_some() {
            return Err(ConfigError::Invalid {
                key: if cfg.access_key.is_some() {
                    "secret_key"
                } else {
                    "access_key"
                },
                value: String::new(),
                reason: "access_key and secret_key must be set together".into(),
            });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("5G"), Ok(5 << 30));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("18446744073709551615TiB").is_err());
    }

    #[test]
    fn flags_override_file_and_bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bucketdb.toml");
        std::fs::write(
            &file,
            "chunk_size = \"8MiB\"\nstorage_path = \"/srv/data\"\nquorum_required = true\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(file.clone()),
            storage_path: Some("/flag/data".into()),
            ..Default::default()
        };
        let cfg = args.resolve().unwrap();
        assert_eq!(cfg.chunk_size, 8 << 20);
        assert_eq!(cfg.storage_path, PathBuf::from("/flag/data"));
        assert!(cfg.quorum_required);

        let bad = ConfigArgs {
            chunk_size: Some("lots".into()),
            ..Default::default()
        };
        let err = bad.resolve().unwrap_err().to_string();
        assert!(err.contains("chunk_size"), "{err}");

        std::fs::write(&file, "chunk_sise = 5\n").unwrap();
        let err = ConfigArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey(k) if k == "chunk_sise"));
    }

    #[test]
    fn cluster_keys_are_checked_and_name_their_key() {
        let err = |args: ConfigArgs| args.resolve().unwrap_err().to_string();
        let join = ConfigArgs {
            join: Some("10.0.0.1:9080".into()),
            ..Default::default()
        };
        assert!(err(join.clone()).contains("cluster_secret"));
        let cfg = ConfigArgs {
            cluster_secret: Some("0123456789abcdef".into()),
            heartbeat_interval: Some("250ms".into()),
            node_down_timeout: Some("2s".into()),
            ..join
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.join.as_deref(), Some("http://10.0.0.1:9080"));
        assert_eq!(cfg.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(cfg.node_down_timeout, Duration::from_secs(2));
        assert!(!cfg.bootstrap);
        assert!(!format!("{cfg:?}").contains("0123456789abcdef"));

        let short = ConfigArgs {
            cluster_secret: Some("short".into()),
            ..Default::default()
        };
        assert!(err(short).contains("cluster_secret"));
        let bad_join = ConfigArgs {
            cluster_secret: Some("0123456789abcdef".into()),
            join: Some("http://host/path".into()),
            ..Default::default()
        };
        assert!(err(bad_join).contains("`join`"));
        let both = ConfigArgs {
            cluster_secret: Some("0123456789abcdef".into()),
            bootstrap: Some("true".into()),
            join: Some("http://127.0.0.1:9080".into()),
            ..Default::default()
        };
        assert!(err(both).contains("`join`"));
        let timeouts = ConfigArgs {
            heartbeat_interval: Some("5s".into()),
            node_down_timeout: Some("5s".into()),
            ..Default::default()
        };
        assert!(err(timeouts).contains("node_down_timeout"));
    }
}
