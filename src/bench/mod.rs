//! `bucketdb bench`: an S3 load generator for any S3 endpoint. It runs phases (PUT, GET,
//! mixed) one after the other with a fixed number of requests in flight and prints the
//! spec's benchmark table (ops/s, MB/s, p50, p99, errors) or the same as JSON.
//!
//! A client of the S3 API like any other: it uses none of the server's layers.

mod args;
mod client;
mod report;
mod runner;

use anyhow::Context;
use bytes::Bytes;
use rand::RngCore;

pub use args::BenchArgs;
use args::{BenchPlan, Op, Stop};
use client::{BucketState, S3Client};
use report::{Report, format_size, phase_rows};
use runner::{Mix, PhaseSpec, run_phase};

/// Run the benchmark `args` describe. Fails (so the process exits non-zero) when the
/// run cannot start or, unless `--allow-errors`, when any request failed.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = args.plan(|name| std::env::var(name).ok())?;
    let client = S3Client::new(&plan)?;
    let endpoint = plan.endpoint();
    let bucket_state = client
        .ensure_bucket()
        .await
        .with_context(|| format!("checking bucket {:?} at {endpoint}", plan.bucket))?;
    if bucket_state == BucketState::Created {
        eprintln!("created bucket {}", plan.bucket);
    }
    let body = random_body(plan.size)?;
    // Keys 0..written exist with this run's size; --no-prepare trusts an earlier run.
    let mut written = if plan.prepare { 0 } else { plan.keys };
    let mut rows = Vec::new();
    for &op in &plan.ops {
        let needed = match op {
            Op::Put => 0,
            // GETs read what an earlier PUT phase wrote, if it wrote anything.
            Op::Get if written > 0 => 0,
            Op::Get | Op::Mixed => plan.keys - written,
        };
        if needed > 0 {
            prepare(&client, &plan, written, needed, body.clone()).await?;
            written = plan.keys;
        }
        let spec = PhaseSpec {
            mix: match op {
                Op::Put => Mix::Put,
                Op::Get => Mix::Get,
                Op::Mixed => Mix::Mixed {
                    read_ratio: plan.read_ratio,
                },
            },
            stop: plan.stop,
            put_first_key: 0,
            put_keys: plan.keys,
            readable_keys: written,
            concurrency: plan.concurrency,
        };
        let phase = match op {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::Mixed => "mixed",
        };
        eprintln!(
            "{phase}: {} objects, {} in flight, {}",
            format_size(plan.size),
            plan.concurrency,
            match plan.stop {
                Stop::Count(n) => format!("{n} requests"),
                Stop::Duration(d) => humantime::format_duration(d).to_string(),
            }
        );
        let result = run_phase(&client, spec, body.clone()).await?;
        if op == Op::Put {
            written = written.max(result.put.requests().min(plan.keys));
        }
        rows.extend(phase_rows(
            op,
            &result,
            plan.read_ratio,
            plan.size,
            plan.concurrency,
        ));
    }
    let report = Report {
        endpoint,
        bucket: plan.bucket.clone(),
        rows,
    };
    if plan.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::table(&report));
    }
    let errors = report.errors();
    if errors > 0 && !plan.allow_errors {
        anyhow::bail!("{errors} requests failed (--allow-errors exits 0 anyway)");
    }
    Ok(())
}

/// Write keys `first .. first + count` (unmeasured) so that GETs have objects to read.
async fn prepare(
    client: &S3Client,
    plan: &BenchPlan,
    first: u64,
    count: u64,
    body: Bytes,
) -> anyhow::Result<()> {
    eprintln!(
        "preparing {count} objects of {} to read",
        format_size(plan.size)
    );
    let spec = PhaseSpec {
        mix: Mix::Put,
        stop: Stop::Count(count),
        put_first_key: first,
        put_keys: count,
        readable_keys: 0,
        concurrency: plan.concurrency,
    };
    let result = run_phase(client, spec, body).await?;
    if result.put.errors > 0 {
        let rows = phase_rows(Op::Put, &result, 0.0, plan.size, plan.concurrency);
        let summary = rows.first().map(report::error_summary).unwrap_or_default();
        anyhow::bail!(
            "preparing objects to read: {} of {count} PUTs failed: {summary}",
            result.put.errors
        );
    }
    Ok(())
}

/// One buffer of random bytes (so no layer can compress or deduplicate it) that every
/// PUT sends.
fn random_body(size: u64) -> anyhow::Result<Bytes> {
    let len = usize::try_from(size).context("--size does not fit in memory")?;
    let mut buffer = vec![0u8; len];
    rand::rng().fill_bytes(&mut buffer);
    Ok(Bytes::from(buffer))
}
