//! The results: the spec's benchmark table (a Markdown table, aligned for terminals) or
//! the same figures as JSON.

use serde::Serialize;

use super::args::Op;
use super::runner::{OpStats, PhaseResult};

/// Figures are MB (10^6 bytes) per second, as in the spec's table.
const BYTES_PER_MB: f64 = 1_000_000.0;
const MICROS_PER_MS: f64 = 1_000.0;

/// Latency percentiles of successful requests, in milliseconds (`None` without any).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// One failure description and how often it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorKind {
    pub error: String,
    pub count: u64,
}

/// One line of the table: one operation of one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The `--op` phase the row belongs to.
    pub phase: Op,
    /// `PUT` or `GET`.
    pub operation: &'static str,
    pub object_size: u64,
    pub concurrency: usize,
    /// Successful requests.
    pub ops: u64,
    /// Failed requests (non-2xx answers, transport failures, timeouts, short bodies).
    pub errors: u64,
    /// Length of the phase.
    pub seconds: f64,
    /// Successful requests per second of the phase.
    pub ops_per_sec: f64,
    /// Object bytes moved by successful requests.
    pub bytes: u64,
    pub throughput_mb_per_sec: f64,
    pub latency_ms: Latency,
    /// The first few kinds of failure; `other` counts the rest.
    pub error_kinds: Vec<ErrorKind>,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub endpoint: String,
    pub bucket: String,
    pub rows: Vec<Row>,
}

impl Report {
    /// Failed requests over every row.
    pub fn errors(&self) -> u64 {
        self.rows.iter().map(|r| r.errors).sum()
    }
}

/// The rows of a phase: the operations it sends (both for a mixed phase, even when one
/// of them got no request, so that the table always has the same shape).
pub fn phase_rows(
    phase: Op,
    result: &PhaseResult,
    read_ratio: f64,
    object_size: u64,
    concurrency: usize,
) -> Vec<Row> {
    let seconds = result.elapsed.as_secs_f64();
    let row = |operation, stats: &OpStats| {
        row(phase, operation, stats, seconds, object_size, concurrency)
    };
    match phase {
        Op::Put => vec![row("PUT", &result.put)],
        Op::Get => vec![row("GET", &result.get)],
        Op::Mixed => {
            let mut rows = Vec::new();
            if read_ratio > 0.0 {
                rows.push(row("GET", &result.get));
            }
            if read_ratio < 1.0 {
                rows.push(row("PUT", &result.put));
            }
            rows
        }
    }
}

fn row(
    phase: Op,
    operation: &'static str,
    stats: &OpStats,
    seconds: f64,
    object_size: u64,
    concurrency: usize,
) -> Row {
    let per_second = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
    let h = &stats.latency;
    let ms = |micros: u64| (stats.ops > 0).then(|| micros as f64 / MICROS_PER_MS);
    let mut error_kinds: Vec<ErrorKind> = stats
        .error_kinds
        .iter()
        .map(|(error, count)| ErrorKind {
            error: error.clone(),
            count: *count,
        })
        .collect();
    if stats.other_errors > 0 {
        error_kinds.push(ErrorKind {
            error: "other".into(),
            count: stats.other_errors,
        });
    }
    Row {
        phase,
        operation,
        object_size,
        concurrency,
        ops: stats.ops,
        errors: stats.errors,
        seconds,
        ops_per_sec: per_second(stats.ops as f64),
        bytes: stats.bytes,
        throughput_mb_per_sec: per_second(stats.bytes as f64) / BYTES_PER_MB,
        latency_ms: Latency {
            mean: (stats.ops > 0).then(|| h.mean() / MICROS_PER_MS),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        },
        error_kinds,
    }
}

const HEADER: [&str; 8] = [
    "operation",
    "object size",
    "concurrency",
    "ops/s",
    "throughput",
    "p50",
    "p99",
    "errors",
];

/// The table, then one line per row that had failures naming them.
pub fn table(report: &Report) -> String {
    let cells: Vec<[String; 8]> = report
        .rows
        .iter()
        .map(|r| {
            [
                label(r),
                format_size(r.object_size),
                r.concurrency.to_string(),
                format_rate(r.ops_per_sec),
                format_throughput(r.throughput_mb_per_sec),
                format_latency(r.latency_ms.p50),
                format_latency(r.latency_ms.p99),
                r.errors.to_string(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            // The operation is text (left-aligned), the rest are figures.
            .map(|(i, (cell, w))| {
                if i == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&HEADER.map(String::from));
    // Cells have a space on either side; figures are right-aligned (`-:`).
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                "-".repeat(w + 2)
            } else {
                format!("{}:", "-".repeat(w + 1))
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in &cells {
        out.push_str(&line(row));
    }
    for r in report.rows.iter().filter(|r| r.errors > 0) {
        out.push_str(&format!("\n{} errors: {}", label(r), error_summary(r)));
    }
    if report.errors() > 0 {
        out.push('\n');
    }
    out
}

/// The row's failures: `5 × 403 Forbidden SignatureDoesNotMatch, 2 × other`.
pub fn error_summary(row: &Row) -> String {
    let kinds: Vec<String> = row
        .error_kinds
        .iter()
        .map(|k| format!("{} × {}", k.count, k.error))
        .collect();
    kinds.join(", ")
}

/// The operation as the table names it: `PUT`, or `PUT (mixed)` in a mixed phase.
fn label(row: &Row) -> String {
    match row.phase {
        Op::Mixed => format!("{} (mixed)", row.operation),
        Op::Put | Op::Get => row.operation.to_string(),
    }
}

/// `4 KiB`, `100 MiB`, `1 GiB`; sizes that are not a whole number of a binary unit in bytes.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map(|(unit, name)| format!("{} {name}", bytes / unit))
        .unwrap_or_else(|| format!("{bytes} B"))
}

/// `7,254` for large rates, `8.4` for small ones.
fn format_rate(per_second: f64) -> String {
    if per_second >= 100.0 {
        with_thousands(per_second.round() as u64)
    } else if per_second >= 1.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.2}")
    }
}

fn format_throughput(mb_per_second: f64) -> String {
    if mb_per_second >= 1000.0 {
        format!("{:.2} GB/s", mb_per_second / 1000.0)
    } else if mb_per_second >= 100.0 {
        format!("{mb_per_second:.0} MB/s")
    } else if mb_per_second >= 10.0 {
        format!("{mb_per_second:.1} MB/s")
    } else {
        format!("{mb_per_second:.2} MB/s")
    }
}

/// Three significant figures in ms up to 10 s, then seconds; `-` without a measurement.
fn format_latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
        Some(ms) if ms < 100.0 => format!("{ms:.1} ms"),
        Some(ms) if ms < 10_000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

fn with_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_row(phase: Op, operation: &'static str) -> Row {
        Row {
            phase,
            operation,
            object_size: 4096,
            concurrency: 64,
            ops: 217_620,
            errors: 0,
            seconds: 30.0,
            ops_per_sec: 7254.0,
            bytes: 217_620 * 4096,
            throughput_mb_per_sec: 29.71,
            latency_ms: Latency {
                mean: Some(8.1),
                p50: Some(7.8),
                p90: Some(12.0),
                p99: Some(21.4),
                max: Some(250.0),
            },
            error_kinds: Vec::new(),
        }
    }

    #[test]
    fn the_table_has_the_specs_columns_aligned() {
        let mut get = sample_row(Op::Get, "GET");
        get.ops_per_sec = 20_572.4;
        get.throughput_mb_per_sec = 84.26;
        get.latency_ms.p50 = Some(2.8);
        get.latency_ms.p99 = Some(0.8734);
        let report = Report {
            endpoint: "http://127.0.0.1:8080".into(),
            bucket: "b".into(),
            rows: vec![sample_row(Op::Put, "PUT"), get],
        };
        let expected = "\
| operation | object size | concurrency |  ops/s | throughput |     p50 |     p99 | errors |
|-----------|------------:|------------:|-------:|-----------:|--------:|--------:|-------:|
| PUT       |       4 KiB |          64 |  7,254 |  29.7 MB/s | 7.80 ms | 21.4 ms |      0 |
| GET       |       4 KiB |          64 | 20,572 |  84.3 MB/s | 2.80 ms | 0.87 ms |      0 |
";
        assert_eq!(table(&report), expected);
    }

    #[test]
    fn failures_are_counted_and_named_under_the_table() {
        let mut put = sample_row(Op::Mixed, "PUT");
        put.ops = 0;
        put.errors = 7;
        put.ops_per_sec = 0.0;
        put.throughput_mb_per_sec = 0.0;
        put.latency_ms = Latency {
            mean: None,
            p50: None,
            p90: None,
            p99: None,
            max: None,
        };
        put.error_kinds = vec![
            ErrorKind {
                error: "403 Forbidden SignatureDoesNotMatch".into(),
                count: 5,
            },
            ErrorKind {
                error: "other".into(),
                count: 2,
            },
        ];
        let report = Report {
            endpoint: "e".into(),
            bucket: "b".into(),
            rows: vec![put],
        };
        let text = table(&report);
        assert!(text.contains("| PUT (mixed) |"), "{text}");
        assert!(text.contains("|   - |   - |"), "{text}");
        assert!(
            text.contains("PUT (mixed) errors: 5 × 403 Forbidden SignatureDoesNotMatch, 2 × other"),
            "{text}"
        );
        assert_eq!(report.errors(), 7);
    }

    #[test]
    fn json_has_every_figure() {
        let report = Report {
            endpoint: "http://h:1".into(),
            bucket: "b".into(),
            rows: vec![sample_row(Op::Put, "PUT")],
        };
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        let row = &v["rows"][0];
        assert_eq!(row["phase"], "put");
        assert_eq!(row["operation"], "PUT");
        assert_eq!(row["ops"], 217_620);
        assert_eq!(row["errors"], 0);
        assert_eq!(row["ops_per_sec"], 7254.0);
        assert_eq!(row["latency_ms"]["p99"], 21.4);
        assert_eq!(v["endpoint"], "http://h:1");
    }

    #[test]
    fn figures_are_formatted_for_reading() {
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(100 << 20), "100 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536), "1536 B");
        assert_eq!(format_size(1_000_000), "1000000 B");
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_rate(8.43), "8.4");
        assert_eq!(format_rate(0.5), "0.50");
        assert_eq!(format_rate(1_234_567.0), "1,234,567");
        assert_eq!(format_throughput(1234.0), "1.23 GB/s");
        assert_eq!(format_throughput(211.4), "211 MB/s");
        assert_eq!(format_throughput(0.5), "0.50 MB/s");
        assert_eq!(format_latency(Some(0.84)), "0.84 ms");
        assert_eq!(format_latency(Some(250.0)), "250 ms");
        assert_eq!(format_latency(Some(12_345.0)), "12.3 s");
        assert_eq!(with_thousands(999), "999");
        assert_eq!(with_thousands(1000), "1,000");
    }
}
