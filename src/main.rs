//! The `bucketdb` command.

use std::io::IsTerminal;

use anyhow::Context;
use bucketdb::{ConfigArgs, LogFormat};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod bench;
mod cluster_cli;
mod fsck;

/// mimalloc returns freed chunk buffers to the OS more readily than glibc's per-thread
/// arenas (chunks are allocated on one thread and freed on another), which keeps peak
/// RSS close to what requests actually hold, and its small allocations are faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "bucketdb",
    version,
    about = "Distributed, self-hosted, S3-compatible object store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (with no flags: a single node on ./data and ./meta).
    Server(ConfigArgs),
    /// S3 load generator: PUT/GET/mixed against any S3 endpoint, printing ops/s,
    /// throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Check this node's data offline (stop the server first): every chunk against its
    /// SHA-256, metadata against chunks; --repair fixes what one node can.
    Fsck(fsck::FsckArgs),
    /// Show the cluster through a node's REST API: `status` or `nodes`.
    Cluster(cluster_cli::ClusterArgs),
}

/// `info`, without s3s's per-request error lines: client errors are already in the
/// request log line with their status, and server errors are logged by BucketDB itself.
/// openraft: errors only, and not its replication errors: while a peer is down it
/// logs one every retry, and the heartbeat view already reports the peer down.
const DEFAULT_LOG_FILTER: &str = "info,s3s::ops=off,openraft=error,openraft::replication=off";
/// Log lines waiting for the writer thread; request threads wait when it is full.
const LOG_QUEUE_LINES: usize = 16 * 1024;
/// The writer thread writes to stderr in batches of up to this many bytes.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Logs go to stderr through a writer thread that batches them, so a request never
/// waits for a write system call. The guard flushes what is queued when dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_env("BUCKETDB_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("bucketdb-log")
        .finish(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn run_server(args: ConfigArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let _log_guard = init_logging(config.log_format);
    let server = bucketdb::server::start(config.clone())
        .await
        .context("starting the server")?;
    if server.generated_credentials {
        println!(
            "Generated root credentials (saved to {}, shown only once):\n  access key: {}\n  secret key: {}",
            config.metadata_path.join("credentials.toml").display(),
            server.credentials.access_key,
            server.credentials.secret_key
        );
    }
    println!(
        "BucketDB node {} listening on http://{} (REST API, health, metrics)",
        server.node_id, server.http_addr
    );
    println!("S3 API listening on http://{}", server.s3_addr);
    shutdown_signal().await?;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Server(args) => run_server(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Fsck(args) => std::process::exit(fsck::run(args)),
        Command::Cluster(args) => cluster_cli::run(args).await,
    }
}
