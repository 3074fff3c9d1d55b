//! `bucketdb cluster status|nodes`: ask a node's REST API for `/cluster` with the root
//! credentials and print it as a table (or the JSON as is).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use bucketdb_api::transport::HttpTransport;
use clap::{Args, Subcommand};
use serde_json::Value;

/// Longest wait for the node's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `/cluster` answer read (a ring of 1024 members is well under this).
const RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;

#[derive(Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Ring version, replication settings and a count of members by liveness.
    Status(Target),
    /// One line per member: address, state, liveness, last heartbeat, ring share.
    Nodes(Target),
}

#[derive(Args)]
struct Target {
    /// The node's REST API
    #[arg(
        long,
        env = "BUCKETDB_ENDPOINT",
        default_value = "http://127.0.0.1:9080"
    )]
    endpoint: String,
    /// Root access key
    #[arg(long, env = "BUCKETDB_ACCESS_KEY")]
    access_key: String,
    /// Root secret key
    #[arg(long, env = "BUCKETDB_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Print the node's JSON answer instead of a table
    #[arg(long)]
    json: bool,
}

async fn fetch(t: &Target) -> anyhow::Result<Value> {
    let base = t.endpoint.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    };
    let url = format!("{base}/cluster");
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", t.access_key, t.secret_key));
    let resp = HttpTransport::new()
        .request(
            http::Method::GET,
            &url,
            vec![("authorization", format!("Basic {basic}"))],
            Vec::new(),
            REQUEST_TIMEOUT,
            RESPONSE_MAX_BYTES,
        )
        .await
        .with_context(|| format!("asking {url}"))?;
    let body: Value = serde_json::from_slice(&resp.body).with_context(|| {
        format!(
            "{url} answered {} with a body that is not JSON",
            resp.status
        )
    })?;
    if resp.status != 200 {
        let msg = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        bail!("{url} answered {}: {msg}", resp.status);
    }
    Ok(body)
}

fn ago(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("{:.1}s ago", now.saturating_sub(ms) as f64 / 1000.0)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("?")
}

fn print_status(s: &Value) {
    let nodes = s["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let count = |l: &str| nodes.iter().filter(|n| n["liveness"] == l).count();
    println!("Ring version:        {}", s["ringVersion"]);
    println!(
        "Replication factor:  {} (configured {})",
        s["replicationFactor"], s["configuredReplicationFactor"]
    );
    println!("Quorum required:     {}", s["quorumRequired"]);
    println!(
        "Members:             {} ({} alive, {} suspect, {} down)",
        nodes.len(),
        count("alive"),
        count("suspect"),
        count("down")
    );
}

fn print_nodes(s: &Value) {
    let nodes = s["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let rows: Vec<[String; 6]> = nodes
        .iter()
        .map(|n| {
            [
                text(n, "id").to_string(),
                text(n, "address").to_string(),
                text(n, "state").to_string(),
                text(n, "liveness").to_string(),
                ago(n["lastHeartbeatMs"].as_u64().unwrap_or(0)),
                format!("{:.1}%", n["ringShare"].as_f64().unwrap_or(0.0) * 100.0),
            ]
        })
        .collect();
    let header = [
        "ID",
        "ADDRESS",
        "STATE",
        "LIVENESS",
        "LAST HEARTBEAT",
        "RING SHARE",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]].map(String::as_str));
    }
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let (target, nodes) = match &args.command {
        ClusterCommand::Status(t) => (t, false),
        ClusterCommand::Nodes(t) => (t, true),
    };
    let status = fetch(target).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else if nodes {
        print_nodes(&status);
    } else {
        print_status(&status);
    }
    Ok(())
}
