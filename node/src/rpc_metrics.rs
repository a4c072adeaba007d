//! Inter-node RPC timings by method (issue 12), for the operator who
//! asks why a cluster PUT takes milliseconds: a call's whole round trip
//! as its caller saw it (`tessera_cluster_rpc_call_duration_seconds`),
//! the serving node's share of it, from the request frame read to the
//! answer handed to the connection's writer
//! (`tessera_cluster_rpc_served_duration_seconds`), and calls that got no
//! answer at all (`tessera_cluster_rpc_call_failures_total`: connection
//! lost or refused, deadline, peer held down). Call minus served is the
//! way there and back: queues, sockets, the reactors' turns.

use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The `method` labels: each RPC method, or its family.
pub const METHODS: &[&str] =
    &["ping", "raft", "shard_write", "shard_commit", "shard_load", "shard_read", "shard_range", "node", "other"];

/// Upper bounds of the buckets, in microseconds (then +Inf): finer than
/// the S3 requests' (a healthy member commit takes well under 1 ms).
const BUCKETS_US: &[u64] =
    &[100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000];
const SLOTS: usize = BUCKETS_US.len() + 1;

/// The label index of an RPC method number.
pub fn method_index(method: u16) -> usize {
    use crate::holder::wire;
    match method {
        crate::cluster_rpc::METHOD_PING => 0,
        16..=31 => 1,
        wire::METHOD_SHARD_WRITE => 2,
        wire::METHOD_SHARD_COMMIT => 3,
        wire::METHOD_SHARD_LOAD => 4,
        wire::METHOD_SHARD_READ => 5,
        wire::METHOD_SHARD_RANGE => 6,
        36..=63 => 7,
        _ => METHODS.len() - 1,
    }
}

/// One histogram per method label.
pub struct Timings {
    counts: Box<[AtomicU64]>,
    sums_us: Box<[AtomicU64]>,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            counts: (0..METHODS.len() * SLOTS).map(|_| AtomicU64::new(0)).collect(),
            sums_us: (0..METHODS.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Timings {
    pub fn record(&self, method: u16, elapsed: Duration) {
        let m = method_index(method);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let b = BUCKETS_US.iter().position(|&x| us <= x).unwrap_or(BUCKETS_US.len());
        self.counts[m * SLOTS + b].fetch_add(1, Relaxed);
        self.sums_us[m].fetch_add(us, Relaxed);
    }

    /// Prometheus lines of histogram `name` (methods never called left out).
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (m, label) in METHODS.iter().enumerate() {
            let counts: Vec<u64> = (0..SLOTS).map(|b| self.counts[m * SLOTS + b].load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (b, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS_US.get(b).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(out, "{name}_bucket{{method=\"{label}\",le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_sum{{method=\"{label}\"}} {}", self.sums_us[m].load(Relaxed) as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{method=\"{label}\"}} {total}");
        }
    }
}

/// A node's RPC timings (held by `ClusterNode`, shared by its reactors).
pub struct RpcMetrics {
    /// Calls this node made that were answered (a result or an error).
    pub calls: Timings,
    /// Calls this node served.
    pub served: Timings,
    /// Calls this node made that got no answer.
    failures: Box<[AtomicU64]>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            calls: Timings::default(),
            served: Timings::default(),
            failures: (0..METHODS.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl RpcMetrics {
    pub fn failed(&self, method: u16) {
        self.failures[method_index(method)].fetch_add(1, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        self.calls.render(
            out,
            "tessera_cluster_rpc_call_duration_seconds",
            "RPC calls this node made, from the send to the answer, by method.",
        );
        self.served.render(
            out,
            "tessera_cluster_rpc_served_duration_seconds",
            "RPC calls this node served, from the request read to the answer queued, by method.",
        );
        let name = "tessera_cluster_rpc_call_failures_total";
        let _ = writeln!(out, "# HELP {name} RPC calls this node made that got no answer (connection lost or refused, deadline, peer held down), by method.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (m, label) in METHODS.iter().enumerate() {
            let _ = writeln!(out, "{name}{{method=\"{label}\"}} {}", self.failures[m].load(Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_method_and_bucket() {
        let m = RpcMetrics::default();
        m.calls.record(crate::holder::wire::METHOD_SHARD_COMMIT, Duration::from_micros(700));
        m.calls.record(crate::holder::wire::METHOD_SHARD_COMMIT, Duration::from_millis(30));
        m.served.record(crate::cluster_raft::METHOD_RAFT_APPEND, Duration::from_micros(50));
        m.failed(crate::cluster_rpc::METHOD_PING);
        m.failed(999);
        let mut out = String::new();
        m.render(&mut out);
        let c = "tessera_cluster_rpc_call_duration_seconds";
        assert!(out.contains(&format!("{c}_bucket{{method=\"shard_commit\",le=\"0.0005\"}} 0\n")), "{out}");
        assert!(out.contains(&format!("{c}_bucket{{method=\"shard_commit\",le=\"0.001\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("{c}_bucket{{method=\"shard_commit\",le=\"0.05\"}} 2\n")), "{out}");
        assert!(out.contains(&format!("{c}_bucket{{method=\"shard_commit\",le=\"+Inf\"}} 2\n")), "{out}");
        assert!(out.contains(&format!("{c}_sum{{method=\"shard_commit\"}} 0.0307\n")), "{out}");
        assert!(!out.contains(&format!("{c}_count{{method=\"ping\"}}")), "a method never called has no series: {out}");
        let s = "tessera_cluster_rpc_served_duration_seconds";
        assert!(out.contains(&format!("{s}_bucket{{method=\"raft\",le=\"0.0001\"}} 1\n")), "{out}");
        let f = "tessera_cluster_rpc_call_failures_total";
        assert!(out.contains(&format!("{f}{{method=\"ping\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("{f}{{method=\"other\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("{f}{{method=\"shard_commit\"}} 0\n")), "{out}");
    }

    #[test]
    fn every_method_has_its_label() {
        use crate::holder::wire::*;
        let label = |m| METHODS[method_index(m)];
        assert_eq!(label(crate::cluster_rpc::METHOD_PING), "ping");
        assert_eq!(label(crate::cluster_raft::METHOD_RAFT_READ_INDEX), "raft");
        assert_eq!(label(METHOD_SHARD_WRITE), "shard_write");
        assert_eq!(label(METHOD_SHARD_LOAD), "shard_load");
        assert_eq!(label(METHOD_SHARD_READ), "shard_read");
        assert_eq!(label(METHOD_SHARD_RANGE), "shard_range");
        for m in [
            crate::fanout::METHOD_NODE_RANGE,
            crate::fanout::METHOD_NODE_DELETE,
            crate::buckets::cluster::METHOD_BUCKET_DRAIN,
            crate::copy_remote::METHOD_COPY_HEAD,
            crate::copy_remote::METHOD_COPY_READ,
            crate::takeover::METHOD_NODE_APPLIED,
            crate::handover::METHOD_MOVE_EXPORT,
            crate::handover::METHOD_MOVE_READ,
            crate::handover::METHOD_MOVE_DROP,
            crate::handover::METHOD_MOVE_LIST,
            crate::handover::METHOD_MOVE_QUEUE,
        ] {
            assert_eq!(label(m), "node", "method {m}");
        }
        assert_eq!(label(2), "other");
    }
}
