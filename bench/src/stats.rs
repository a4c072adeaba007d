//! What a run counts: per operation, successes, bytes, errors by kind and a
//! latency histogram; shared counters for progress lines; the first error bodies.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Error bodies printed and kept for the report; the rest are only counted.
pub const MAX_ERROR_SAMPLES: usize = 5;
/// Bytes of an error body kept for a sample.
pub const ERROR_BODY_SAMPLE_BYTES: usize = 1024;
/// Highest latency the histograms track (1 hour); longer ones saturate there.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a request did not count as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The server answered with this non-success status.
    Status(u16),
    /// Connect, send, receive or framing failed.
    Io,
    /// No whole response within the request timeout.
    Timeout,
    /// A GET body whose length was not the object's size.
    LengthMismatch,
    /// A success status with a body we could not use (list pages).
    BadBody,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(s) => write!(f, "{s}"),
            ErrorKind::Io => f.write_str("io"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::LengthMismatch => f.write_str("length-mismatch"),
            ErrorKind::BadBody => f.write_str("bad-body"),
        }
    }
}

/// Which operation a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Put,
    Get,
    List,
    Delete,
    /// HeadObject.
    Stat,
    /// A whole multipart upload: create, parts, complete.
    Multipart,
}

/// Number of `OpKind`s (the length of `WorkerStats::ops`).
pub const OP_KINDS: usize = 6;

impl OpKind {
    pub const ALL: [OpKind; OP_KINDS] =
        [OpKind::Put, OpKind::Get, OpKind::List, OpKind::Delete, OpKind::Stat, OpKind::Multipart];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::List => "list",
            OpKind::Delete => "delete",
            OpKind::Stat => "stat",
            OpKind::Multipart => "multipart",
        }
    }

    pub fn parse(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counts of one operation kind, owned by one worker and merged at the end.
#[derive(Clone)]
pub struct OpStats {
    pub ok: u64,
    /// Of `ok`: GETs and HEADs answered 404 in a mix that deletes (a key
    /// deleted earlier in the run is an expected answer there, not an error).
    pub misses: u64,
    /// Payload bytes moved by successful requests (sent for PUT, received for GET
    /// and list).
    pub bytes: u64,
    /// Failures by what went wrong: `503 SlowDown` (status and S3 code), `404`,
    /// `io`, `timeout`, ...
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful requests, microseconds.
    pub latency_us: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

impl OpStats {
    pub fn new() -> Self {
        // Three significant digits over 1 µs .. 1 h; the bounds are constants, valid.
        let latency_us = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds");
        OpStats { ok: 0, misses: 0, bytes: 0, errors: BTreeMap::new(), latency_us }
    }

    pub fn record_ok(&mut self, latency_us: u64, bytes: u64) {
        self.ok += 1;
        self.bytes += bytes;
        self.latency_us.saturating_record(latency_us.max(1));
    }

    /// Counts a failure under its kind and, for an S3 error response, its code.
    pub fn record_error(&mut self, kind: ErrorKind, s3_code: Option<&str>) {
        let key = match s3_code {
            Some(code) => format!("{kind} {code}"),
            None => kind.to_string(),
        };
        *self.errors.entry(key).or_insert(0) += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.ok += other.ok;
        self.misses += other.misses;
        self.bytes += other.bytes;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += n;
        }
        // Same bounds on both sides: adding cannot fail.
        self.latency_us.add(&other.latency_us).expect("histograms share bounds");
    }
}

/// One `OpStats` per operation kind.
#[derive(Clone, Default)]
pub struct WorkerStats {
    pub ops: [OpStats; OP_KINDS],
}

impl WorkerStats {
    pub fn op(&mut self, kind: OpKind) -> &mut OpStats {
        &mut self.ops[kind.index()]
    }

    pub fn merge(&mut self, other: &WorkerStats) {
        for (a, b) in self.ops.iter_mut().zip(other.ops.iter()) {
            a.merge(b);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.ops.iter().map(OpStats::error_count).sum()
    }
}

/// The first few failures, in full, so a run that errors says why.
#[derive(Default)]
pub struct ErrorLog {
    samples: Mutex<Vec<String>>,
}

impl ErrorLog {
    /// Keeps and prints `detail` if fewer than `MAX_ERROR_SAMPLES` are kept.
    pub fn note(&self, op: &str, target: &str, kind: ErrorKind, detail: &str) {
        let Ok(mut samples) = self.samples.lock() else { return };
        if samples.len() >= MAX_ERROR_SAMPLES {
            return;
        }
        let what = match kind {
            ErrorKind::Status(s) => format!("HTTP {s}"),
            other => other.to_string(),
        };
        let line = format!("{op} {target}: {what}: {}", detail.trim());
        eprintln!("error: {line}");
        samples.push(line);
        if samples.len() == MAX_ERROR_SAMPLES {
            eprintln!("error: (further errors are counted, not printed)");
        }
    }

    pub fn samples(&self) -> Vec<String> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Latency percentiles of a histogram, microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = WorkerStats::default();
        let mut b = WorkerStats::default();
        a.op(OpKind::Put).record_ok(100, 4096);
        b.op(OpKind::Put).record_ok(300, 4096);
        b.op(OpKind::Put).record_error(ErrorKind::Status(503), Some("SlowDown"));
        b.op(OpKind::Get).record_error(ErrorKind::Status(503), None);
        b.op(OpKind::Get).record_error(ErrorKind::Timeout, None);
        a.merge(&b);
        let put = &a.ops[OpKind::Put.index()];
        assert_eq!((put.ok, put.bytes, put.error_count()), (2, 8192, 1));
        assert_eq!(put.latency_us.max(), 300);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.ops[OpKind::Get.index()].errors.get("timeout"), Some(&1));
        assert_eq!(put.errors.get("503 SlowDown"), Some(&1));
        assert_eq!(OpKind::ALL.map(|k| OpKind::parse(k.name())), OpKind::ALL.map(Some));
    }

    #[test]
    fn latencies_saturate_and_floor() {
        let mut s = OpStats::new();
        s.record_ok(0, 0);
        s.record_ok(u64::MAX, 0);
        let p = percentiles(&s.latency_us);
        assert_eq!(p.p50, 1);
        assert!(p.max >= MAX_LATENCY_US && p.max < MAX_LATENCY_US + MAX_LATENCY_US / 500, "{}", p.max);
    }

    #[test]
    fn error_log_is_bounded() {
        let log = ErrorLog::default();
        for i in 0..20 {
            log.note("put", &format!("k{i}"), ErrorKind::Status(500), "<Error/>");
        }
        let samples = log.samples();
        assert_eq!(samples.len(), MAX_ERROR_SAMPLES);
        assert_eq!(samples[0], "put k0: HTTP 500: <Error/>");
    }
}
