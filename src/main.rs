//! The `bucketdb` command.

use anyhow::Context;
use bucketdb::{ConfigArgs, LogFormat};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("BUCKETDB_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
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
    init_logging(config.log_format);
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
    }
}
