//! The end-of-run report, as text for people and JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::monitor::Point;
use crate::stats::{percentiles, OpKind, OpStats, WorkerStats};

/// Columns of the CSV summary, in order.
pub const CSV_HEADER: &str =
    "workload,op,ok,errors,req_per_s,mb_per_s,p50_us,p90_us,p99_us,p99_9_us,max_us,mean_us,elapsed_s,concurrency,size";

pub struct Report {
    pub workload: &'static str,
    /// The command line, secret redacted.
    pub command: String,
    pub endpoint: String,
    /// Settings of the run, in order: `bucket`, `size_bytes`, `concurrency`, ...
    pub params: Vec<(&'static str, Value)>,
    pub elapsed: Duration,
    pub stats: WorkerStats,
    /// Operation kinds to show, even when they saw no request.
    pub kinds: Vec<OpKind>,
    /// Workload-specific results (list: pages, keys, complete).
    pub results: Vec<(&'static str, Value)>,
    pub error_samples: Vec<String>,
    /// One point per second of the measured phase.
    pub timeline: Vec<Point>,
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Megabytes (10^6 bytes) per second.
fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    rate(bytes, elapsed) / 1e6
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.stats.error_count()
    }

    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "tessera-bench {} against {} in {:.2} s", self.workload, self.endpoint, self.elapsed.as_secs_f64());
        let _ = writeln!(t, "command: {}", self.command);
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect();
        let _ = writeln!(t, "params:  {}", params.join(" "));
        if !self.results.is_empty() {
            let results: Vec<String> = self.results.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect();
            let _ = writeln!(t, "result:  {}", results.join(" "));
        }
        let _ = writeln!(
            t,
            "{:<5} {:>10} {:>8} {:>11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}   latency in µs",
            "op", "ok", "errors", "req/s", "MB/s", "p50", "p90", "p99", "p99.9", "max"
        );
        for kind in &self.kinds {
            let s = &self.stats.ops[kind.index()];
            let p = percentiles(&s.latency_us);
            let _ = writeln!(
                t,
                "{:<5} {:>10} {:>8} {:>11.1} {:>9.2} {:>8} {:>8} {:>8} {:>8} {:>8}",
                kind.name(),
                s.ok,
                s.error_count(),
                rate(s.ok, self.elapsed),
                mb_per_s(s.bytes, self.elapsed),
                p.p50,
                p.p90,
                p.p99,
                p.p99_9,
                p.max
            );
        }
        let misses: Vec<String> = self
            .kinds
            .iter()
            .filter(|k| self.stats.ops[k.index()].misses > 0)
            .map(|k| format!("{} {}", k.name(), self.stats.ops[k.index()].misses))
            .collect();
        if !misses.is_empty() {
            let _ = writeln!(t, "misses:  {} (404 on keys deleted earlier in the run; counted in ok)", misses.join(", "));
        }
        let mut by_kind = Vec::new();
        for kind in &self.kinds {
            for (e, n) in &self.stats.ops[kind.index()].errors {
                by_kind.push(format!("{} {e}: {n}", kind.name()));
            }
        }
        if by_kind.is_empty() {
            let _ = writeln!(t, "errors:  none");
        } else {
            let _ = writeln!(t, "errors:  {} (HTTP status and S3 code, or io/timeout/length-mismatch/bad-body)", by_kind.join(", "));
            for s in &self.error_samples {
                let _ = writeln!(t, "  first: {s}");
            }
        }
        t
    }

    fn param(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// One line naming the run, for plots.
    pub fn title(&self) -> String {
        let mut t = format!("tessera-bench {}", self.workload);
        for name in ["size", "concurrency", "mix", "key_dist"] {
            if let Some(v) = self.param(name) {
                t.push_str(&format!(" {name}={}", value_text(v)));
            }
        }
        t
    }

    /// The summary as CSV: [`CSV_HEADER`], then one row per operation.
    pub fn csv(&self) -> String {
        let mut t = String::from(CSV_HEADER);
        t.push('\n');
        let concurrency = self.param("concurrency").map(value_text).unwrap_or_default();
        let size = self.param("size").map(value_text).unwrap_or_default();
        for kind in &self.kinds {
            let s = &self.stats.ops[kind.index()];
            let p = percentiles(&s.latency_us);
            let _ = writeln!(
                t,
                "{},{},{},{},{:.1},{:.3},{},{},{},{},{},{:.1},{:.3},{},{}",
                self.workload,
                kind.name(),
                s.ok,
                s.error_count(),
                rate(s.ok, self.elapsed),
                mb_per_s(s.bytes, self.elapsed),
                p.p50,
                p.p90,
                p.p99,
                p.p99_9,
                p.max,
                p.mean,
                self.elapsed.as_secs_f64(),
                csv_field(&concurrency),
                csv_field(&size)
            );
        }
        t
    }

    pub fn json(&self) -> Value {
        let mut ops = Map::new();
        for kind in &self.kinds {
            ops.insert(kind.name().to_string(), op_json(&self.stats.ops[kind.index()], self.elapsed));
        }
        let params: Map<String, Value> = self.params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let results: Map<String, Value> = self.results.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        json!({
            "tool": "tessera-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "workload": self.workload,
            "command": self.command,
            "endpoint": self.endpoint,
            "params": params,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops": ops,
            "results": results,
            "errors_total": self.error_count(),
            "error_samples": self.error_samples,
            "timeline": self.timeline.iter().map(Point::json).collect::<Vec<_>>(),
        })
    }
}

fn op_json(s: &OpStats, elapsed: Duration) -> Value {
    let p = percentiles(&s.latency_us);
    let errors: Map<String, Value> = s.errors.iter().map(|(k, n)| (k.to_string(), json!(n))).collect();
    json!({
        "ok": s.ok,
        "misses": s.misses,
        "errors": errors,
        "errors_total": s.error_count(),
        "bytes": s.bytes,
        "req_per_s": rate(s.ok, elapsed),
        "mb_per_s": mb_per_s(s.bytes, elapsed),
        "latency_us": {
            "p50": p.p50, "p90": p.p90, "p99": p.p99, "p99_9": p.p99_9, "max": p.max, "mean": p.mean,
        },
    })
}

/// The command line as typed, quoted for a shell, with the secret key replaced.
pub fn command_line(args: &[String]) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut redact_next = false;
    for a in args {
        let shown = if redact_next {
            redact_next = false;
            "REDACTED".to_string()
        } else if a == "--secret-key" {
            redact_next = true;
            a.clone()
        } else if a.starts_with("--secret-key=") {
            "--secret-key=REDACTED".to_string()
        } else {
            a.clone()
        };
        out.push(shell_quote(&shown));
    }
    out.join(" ")
}

/// RFC 4180: quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorKind;

    #[test]
    fn command_line_hides_the_secret() {
        let args: Vec<String> = ["tessera-bench", "--secret-key", "s3cr3t", "--secret-key=x", "put", "--prefix", "a b", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&args),
            "tessera-bench --secret-key REDACTED --secret-key=REDACTED put --prefix 'a b' 'it'\\''s'"
        );
    }

    #[test]
    fn reports_rates_and_errors() {
        let mut stats = WorkerStats::default();
        for _ in 0..100 {
            stats.op(OpKind::Put).record_ok(250, 1_000_000);
        }
        stats.op(OpKind::Put).record_error(ErrorKind::Status(503), Some("SlowDown"));
        let r = Report {
            workload: "put",
            command: "tessera-bench put".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            params: vec![("bucket", json!("b")), ("size_bytes", json!(1_000_000)), ("size", json!("4KiB:9,1MiB:1"))],
            elapsed: Duration::from_secs(10),
            stats,
            kinds: vec![OpKind::Put],
            results: vec![],
            error_samples: vec!["put k: HTTP 503: SlowDown".into()],
            timeline: vec![Point { t_s: 1.0, ops_per_s: 10.0, mb_per_s: 10.0, errors: 1, p50_us: 250, p99_us: 250, max_us: 250 }],
        };
        let j = r.json();
        assert_eq!(j["ops"]["put"]["ok"], 100);
        assert_eq!(j["ops"]["put"]["errors"]["503 SlowDown"], 1);
        assert_eq!(j["timeline"][0]["p99_us"], 250);
        let csv = r.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "put,put,100,1,10.0,10.000,250,250,250,250,250,250.0,10.000,,\"4KiB:9,1MiB:1\"");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].matches(',').count() - 1, CSV_HEADER.matches(',').count());
        assert_eq!(j["ops"]["put"]["req_per_s"], 10.0);
        assert_eq!(j["ops"]["put"]["mb_per_s"], 10.0);
        assert_eq!(j["ops"]["put"]["latency_us"]["p99"], 250);
        assert_eq!(j["errors_total"], 1);
        let text = r.text();
        assert!(text.contains("put 503 SlowDown: 1"), "{text}");
        assert!(text.contains("first: put k: HTTP 503: SlowDown"), "{text}");
        assert!(text.contains("bucket=b size_bytes=1000000"), "{text}");
    }
}
