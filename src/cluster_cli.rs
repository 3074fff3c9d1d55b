//! `bucketdb cluster status|nodes|decommission|remove|quorum`: ask a node's REST API
//! with the root credentials, for `/cluster` (printed as a table, or the JSON as is) or
//! to change the ring (agreed through raft, so any node will do).

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
    /// Move a member's data to the others, then take it out of the ring.
    Decommission(NodeTarget),
    /// Drop a dead member from the ring; its copies are re-created on the others.
    Remove(NodeTarget),
    /// Switch quorum writes on or off for the whole cluster.
    Quorum(QuorumTarget),
}

#[derive(Args)]
struct NodeTarget {
    /// The member's node id (see `bucketdb cluster nodes`)
    node: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
struct QuorumTarget {
    /// `on` or `off`
    #[arg(value_parser = ["on", "off"])]
    mode: String,
    #[command(flatten)]
    target: Target,
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

/// Call the node's REST API with the root credentials; the JSON answer of a success.
async fn call(
    t: &Target,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let base = t.endpoint.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    };
    let url = format!("{base}{path}");
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", t.access_key, t.secret_key));
    let mut headers = vec![("authorization", format!("Basic {basic}"))];
    let body = match body {
        Some(v) => {
            headers.push(("content-type", "application/json".to_string()));
            serde_json::to_vec(&v)?
        }
        None => Vec::new(),
    };
    let resp = HttpTransport::new()
        .request(
            method,
            &url,
            headers,
            body,
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
    if !(200..300).contains(&resp.status) {
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
        ClusterCommand::Decommission(n) | ClusterCommand::Remove(n) => {
            let action = match args.command {
                ClusterCommand::Decommission(_) => "decommission",
                _ => "remove",
            };
            let path = format!("/cluster/nodes/{}/{action}", n.node);
            let answer = call(&n.target, http::Method::POST, &path, None).await?;
            return print_change(&n.target, &answer);
        }
        ClusterCommand::Quorum(q) => {
            let body = serde_json::json!({"quorumRequired": q.mode == "on"});
            let answer = call(&q.target, http::Method::PUT, "/cluster/quorum", Some(body)).await?;
            return print_change(&q.target, &answer);
        }
    };
    let status = call(target, http::Method::GET, "/cluster", None).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else if nodes {
        print_nodes(&status);
    } else {
        print_status(&status);
    }
    Ok(())
}

fn print_change(target: &Target, answer: &Value) -> anyhow::Result<()> {
    if target.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else if let Some(id) = answer["id"].as_str() {
        println!(
            "{id} is now {} (ring version {})",
            text(answer, "state"),
            answer["ringVersion"]
        );
    } else {
        println!("Quorum required: {}", answer["quorumRequired"]);
    }
    Ok(())
}
