//! `bucketdb fsck`: parses the command line, runs the offline check of the object
//! service (`bucketdb_object::fsck`) and prints its report.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use bucketdb::ConfigArgs;
use bucketdb_object::fsck::{
    FsckOptions, FsckReport, PROBLEMS_LISTED_PER_KIND_MAX, Problem, check_node,
};
use bucketdb_store::{Clock, SystemClock};
use clap::Args;
use serde::Serialize;

/// Problems printed one per line in the summary; `--json` lists more.
const DETAIL_LINES_MAX: usize = 50;

/// Exit status: nothing wrong, or `--repair` fixed all it could and no data is lost.
const EXIT_CLEAN: i32 = 0;
/// Exit status: damage remains.
const EXIT_DAMAGE: i32 = 1;
/// Exit status: usage, configuration or I/O error, or a server holds the data (clap
/// uses the same code for usage errors).
const EXIT_ERROR: i32 = 2;

const AFTER_HELP: &str = "\
Every chunk file that metadata references is read and checked against its SHA-256; \
missing chunks are traced to the object versions and multipart parts they belong to \
(bucket, key, version id); chunk files nothing references (orphans), reference counts \
that disagree with the references, and missing or altered inline bodies are reported.

--repair removes orphaned files (the server's startup sweep would too), moves corrupt \
chunk files to <storage_path>/.quarantine, rewrites wrong reference counts (chunks left \
without references are queued for GC) and drops GC queue entries of chunks still in \
use. Lost data cannot be restored on a single node: damaged objects are reported and \
their metadata kept, so that a cluster repair can restore them from a replica.

The server must be stopped: fsck refuses a metadata store that a server holds. Only \
--config, --storage-path and --metadata-path (or their BUCKETDB_* variables) matter; \
the other server settings are accepted so that the server's command line works as is.

Exit status: 0 nothing wrong (or --repair fixed everything fixable and no data is \
lost); 1 damage remains; 2 usage, configuration or I/O error, or a server is running.";

/// Arguments of `bucketdb fsck`.
#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct FsckArgs {
    /// Fix what can be fixed locally (see below); without it nothing is changed
    #[arg(long)]
    repair: bool,
    /// Print the report as one JSON document instead of the summary
    #[arg(long)]
    json: bool,
    #[command(
        flatten,
        next_help_heading = "Server configuration (only --config and the paths matter)"
    )]
    config: ConfigArgs,
}

/// Run the check and print its report; returns the exit status.
pub fn run(args: FsckArgs) -> i32 {
    let code = match check_and_print(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bucketdb fsck: {e:#}");
            EXIT_ERROR
        }
    };
    // The caller exits the process at once, without flushing buffered output.
    let _ = std::io::stdout().flush();
    code
}

fn check_and_print(args: &FsckArgs) -> anyhow::Result<i32> {
    let config = args.config.resolve()?;
    let opts = FsckOptions {
        repair: args.repair,
        now_ms: SystemClock.now_ms(),
    };
    let report = check_node(&config.storage_path, &config.metadata_path, &opts)?;
    let out = if args.json {
        let doc = JsonReport {
            storage_path: &config.storage_path,
            metadata_path: &config.metadata_path,
            report: &report,
        };
        serde_json::to_string_pretty(&doc)?
    } else {
        summary(&config.storage_path, &config.metadata_path, &report)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    std::io::stdout().write_all(b"\n")?;
    Ok(if report.damage_remains {
        EXIT_DAMAGE
    } else {
        EXIT_CLEAN
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    storage_path: &'a Path,
    metadata_path: &'a Path,
    #[serde(flatten)]
    report: &'a FsckReport,
}

/// ` (what was done)` after a count, when a repair acted on it.
fn done(repair: bool, count: u64, what: &str) -> String {
    if repair && count > 0 && !what.is_empty() {
        format!(" ({what})")
    } else {
        String::new()
    }
}

fn summary(storage: &Path, meta: &Path, report: &FsckReport) -> String {
    let c = &report.counts;
    let r = report.repair;
    let mut s = String::new();
    let mode = if r { "check and repair" } else { "check only" };
    let _ = writeln!(
        s,
        "bucketdb fsck ({mode}) of {} and {}",
        storage.display(),
        meta.display()
    );
    let _ = writeln!(
        s,
        "checked: {} object versions, {} multipart parts, {} inline bodies",
        c.versions_checked, c.parts_checked, c.inline_bodies_checked
    );
    let _ = writeln!(
        s,
        "chunks checked: {} ({} bytes) of {} chunk files; {} awaiting GC, {} other files left alone",
        c.chunks_checked, c.bytes_checked, c.chunk_files, c.awaiting_gc, c.foreign_files
    );
    // Each count, and what a repair did about it (nothing: lost data stays lost).
    let found = [
        ("corrupt chunks", c.corrupt_chunks, "moved to quarantine"),
        ("missing chunks", c.missing_chunks, ""),
        ("orphaned files", c.orphaned_files, "removed"),
        ("wrong reference counts", c.refcount_mismatches, "rewritten"),
        (
            "live chunks queued for GC",
            c.gc_queue_conflicts,
            "taken off the queue",
        ),
    ];
    for (what, count, repaired) in found {
        let _ = writeln!(s, "{what}: {count}{}", done(r, count, repaired));
    }
    let _ = writeln!(
        s,
        "damaged inline bodies: {} missing, {} altered",
        c.missing_inline, c.corrupt_inline
    );
    let _ = writeln!(
        s,
        "damaged objects: {} versions, {} multipart parts",
        c.damaged_versions, c.damaged_parts
    );
    let total = report.problems.len() as u64 + report.problems_not_listed;
    if total > 0 {
        let _ = writeln!(s, "\nproblems:");
        // Lost data first: it is what the operator has to act on.
        let mut by_severity: Vec<&Problem> = report.problems.iter().collect();
        by_severity.sort_by_key(|p| severity(p));
        for p in by_severity.into_iter().take(DETAIL_LINES_MAX) {
            let _ = writeln!(s, "  {}", describe(p));
        }
        let shown = report.problems.len().min(DETAIL_LINES_MAX) as u64;
        if total > shown {
            let _ = writeln!(
                s,
                "  ... and {} more (--json lists up to {PROBLEMS_LISTED_PER_KIND_MAX} of each kind)",
                total - shown
            );
        }
    }
    s.push('\n');
    if report.data_lost() > 0 {
        let _ = writeln!(
            s,
            "Data is lost: damaged objects cannot be repaired on a single node. Their \
             metadata is kept so that a cluster repair can restore them from a replica."
        );
    }
    if !r && report.fixable() > 0 {
        let _ = writeln!(
            s,
            "Run with --repair to fix orphans, reference counts and the GC queue, and to \
             quarantine corrupt chunks."
        );
    }
    let _ = write!(
        s,
        "result: {}",
        if report.damage_remains {
            "damage remains"
        } else if total > 0 {
            "repaired"
        } else {
            "clean"
        }
    );
    s
}

/// Display order: damaged objects, then lost chunks, then what a repair fixes.
fn severity(p: &Problem) -> u8 {
    match p {
        Problem::DamagedVersion { .. }
        | Problem::DamagedPart { .. }
        | Problem::DamagedInline { .. } => 0,
        Problem::CorruptChunk { .. } | Problem::MissingChunk { .. } => 1,
        Problem::QueuedWhileReferenced { .. } => 2,
        Problem::RefcountMismatch { .. } => 3,
        Problem::OrphanedFile { .. } => 4,
    }
}

/// One problem as one line.
fn describe(p: &Problem) -> String {
    let flag = |on: bool, what: &str| {
        if on {
            format!(": {what}")
        } else {
            String::new()
        }
    };
    match p {
        Problem::CorruptChunk { chunk, quarantined } => format!(
            "corrupt chunk {chunk} (wrong SHA-256 or length){}",
            flag(*quarantined, "moved to quarantine")
        ),
        Problem::MissingChunk {
            chunk,
            in_quarantine,
        } => format!(
            "missing chunk {chunk}{}",
            flag(*in_quarantine, "in quarantine, it failed its check earlier")
        ),
        Problem::OrphanedFile { path, removed } => format!(
            "orphaned file {} (no metadata refers to it){}",
            path.display(),
            flag(*removed, "removed")
        ),
        Problem::RefcountMismatch {
            chunk,
            recorded,
            actual,
            fixed,
        } => {
            let recorded = recorded.map_or_else(|| "none".to_string(), |n| n.to_string());
            let fix = if *actual == 0 {
                "removed and the chunk queued for GC"
            } else {
                "rewritten"
            };
            format!(
                "reference count of chunk {chunk}: recorded {recorded}, actual {actual}{}",
                flag(*fixed, fix)
            )
        }
        Problem::QueuedWhileReferenced { chunk, fixed } => format!(
            "chunk {chunk} is queued for GC but still referenced{}",
            flag(*fixed, "taken off the queue")
        ),
        Problem::DamagedInline {
            bucket,
            key,
            version_id,
            missing,
        } => format!(
            "damaged object {bucket}/{key} version {version_id}: inline body {}",
            if *missing {
                "missing"
            } else {
                "does not match its SHA-256"
            }
        ),
        Problem::DamagedVersion {
            bucket,
            key,
            version_id,
            chunks_total,
            damaged_chunks,
            chunks,
        } => format!(
            "damaged object {bucket}/{key} version {version_id}: {}",
            lost_chunks(*damaged_chunks, *chunks_total, chunks)
        ),
        Problem::DamagedPart {
            bucket,
            key,
            upload_id,
            part_number,
            chunks_total,
            damaged_chunks,
            chunks,
        } => {
            let object = match (bucket, key) {
                (Some(b), Some(k)) => format!("{b}/{k}"),
                _ => "upload record missing".to_string(),
            };
            format!(
                "damaged part {part_number} of multipart upload {upload_id} ({object}): {}",
                lost_chunks(*damaged_chunks, *chunks_total, chunks)
            )
        }
    }
}

fn lost_chunks(damaged: u64, total: u64, named: &[bucketdb_store::ChunkId]) -> String {
    let mut names: Vec<String> = named.iter().map(ToString::to_string).collect();
    if damaged > named.len() as u64 {
        names.push("...".into());
    }
    format!(
        "{damaged} of {total} chunks missing or corrupt ({})",
        names.join(", ")
    )
}
