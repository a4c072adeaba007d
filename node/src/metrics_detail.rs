//! The rarer figures of `/metrics`: shards' background work (compaction,
//! scrub), sync latency, per-disk errors and state, failed TLS handshakes
//! and the cross-core queues. Split from `metrics` by meaning; the same
//! rule holds: nothing here is touched by a request.

use std::fmt::Write as _;

use crate::metrics::{NodeMetrics, ShardDetail, ShardState, LISTENERS, TLS_FAILURE_REASONS};

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends every metric of this module.
pub fn render(m: &NodeMetrics, out: &mut String, queues: &[usize]) {
    let details: Vec<ShardDetail> = m.shards.iter().map(|g| g.detail()).collect();
    render_shard_work(out, &details);
    render_sync_latency(out, &details);
    render_disks(m, out, &details);
    header(out, "tessera_tls_handshake_failures_total", "counter", "TLS handshakes that failed, by listener and reason.");
    for (l, listener) in LISTENERS.iter().enumerate() {
        for (r, reason) in TLS_FAILURE_REASONS.iter().enumerate() {
            let n = m.tls_failures(l, r);
            let _ = writeln!(out, "tessera_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}");
        }
    }
    header(
        out,
        "tessera_cross_core_queue_depth",
        "gauge",
        "Shard requests from other cores waiting in this core's inbound queue at the scrape.",
    );
    for (core, depth) in queues.iter().enumerate() {
        let _ = writeln!(out, "tessera_cross_core_queue_depth{{core=\"{core}\"}} {depth}");
    }
}

fn render_shard_work(out: &mut String, details: &[ShardDetail]) {
    type Field = fn(&ShardDetail) -> u64;
    let fields: [(&str, &str, Field); 17] = [
        ("tessera_shard_compaction_passes_total", "Compaction passes (one victim segment each).", |d| d.compaction.passes),
        ("tessera_shard_compaction_segments_retired_total", "Segments compaction emptied and removed.", |d| d.compaction.segments_retired),
        ("tessera_shard_compaction_moved_bytes_total", "Live data bytes compaction copied forward.", |d| d.compaction.data_bytes_moved),
        ("tessera_shard_compaction_freed_bytes_total", "Segment bytes compaction gave back to the disk.", |d| d.compaction.bytes_freed),
        ("tessera_shard_compaction_retired_pending_bytes", "Bytes retired segment files still hold while they are removed a step at a time.", |d| d.compaction.retired_bytes_pending),
        ("tessera_shard_compaction_skipped_total", "Victims left alone because a record could not be read.", |d| d.compaction.victims_skipped),
        ("tessera_shard_compaction_listed_scans_total", "Victims of this run whose tombstones and retires were found by reading only the batches listed as holding them, not every record.", |d| d.compaction.listed_scans),
        ("tessera_shard_compaction_stalled_writes_total", "Foreground writes that waited for compaction (log over the amplification mark).", |d| d.compaction.stalled_writes),
        ("tessera_shard_compaction_stalls_timed_out_total", "Writes that stopped waiting for compaction after the longest stall (2 s).", |d| d.compaction.stalls_timed_out),
        ("tessera_shard_compaction_retires_deferred_total", "Segments compaction emptied whose retirement waited for older read-modify-write transactions to end.", |d| d.compaction.retires_deferred),
        ("tessera_shard_compaction_last_pass_timestamp_seconds", "Unix time a compaction pass was last seen (0: none since start).", |d| d.compaction_last_pass_unix.max(0) as u64),
        ("tessera_shard_scrub_passes_total", "Complete scrub passes over the sealed segments.", |d| d.scrub.passes),
        ("tessera_shard_scrub_read_bytes_total", "Bytes read and verified by the scrubber.", |d| d.scrub.bytes_read),
        ("tessera_shard_scrub_records_total", "Records verified by the scrubber.", |d| d.scrub.records_checked),
        ("tessera_shard_scrub_segment", "Segment being scrubbed now (0: between passes).", |d| u64::from(d.scrub.segment)),
        ("tessera_shard_scrub_last_pass_timestamp_seconds", "Unix time a scrub pass was last seen ending (0: none since start).", |d| d.scrub_last_pass_unix.max(0) as u64),
        ("tessera_shard_log_resets_total", "Log resets after a failed write or sync (an I/O error).", |d| d.resets),
    ];
    for (name, help, f) in fields {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        header(out, name, kind, help);
        for (i, d) in details.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(d));
        }
    }
}

fn render_sync_latency(out: &mut String, details: &[ShardDetail]) {
    let name = "tessera_shard_sync_duration_seconds";
    header(out, name, "histogram", "Time the shard's log syncs (fdatasync) took.");
    for (i, d) in details.iter().enumerate() {
        let h = &d.sync_latency;
        let mut cumulative = 0u64;
        for (b, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = tessera_io::SYNC_LATENCY_BUCKETS_US
                .get(b)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{shard=\"{i}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{shard=\"{i}\"}} {}", h.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{shard=\"{i}\"}} {}", h.count);
    }
}

/// Per data dir: errors of its shards by kind, and how many are offline.
fn render_disks(m: &NodeMetrics, out: &mut String, details: &[ShardDetail]) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut disks: Vec<&str> = (0..m.shards.len()).map(|i| m.disk_of(i)).collect();
    disks.dedup();
    disks.sort_unstable();
    disks.dedup();
    fn shards_of<'a>(m: &'a NodeMetrics, disk: &'a str) -> impl Iterator<Item = usize> + 'a {
        (0..m.shards.len()).filter(move |&i| m.disk_of(i) == disk)
    }
    header(out, "tessera_disk_errors_total", "counter", "Errors of the disk's shards: io (log resets after a failed write or sync), checksum (reads that failed verification), scrub (records the scrubber found bad).");
    for disk in &disks {
        let label = escape(disk);
        let io: u64 = shards_of(m, disk).map(|i| details[i].resets).sum();
        let checksum: u64 = shards_of(m, disk).map(|i| m.shards[i].corrupt_reads.load(Relaxed)).sum();
        let scrub: u64 = shards_of(m, disk).map(|i| details[i].scrub.errors).sum();
        for (kind, n) in [("io", io), ("checksum", checksum), ("scrub", scrub)] {
            let _ = writeln!(out, "tessera_disk_errors_total{{disk=\"{label}\",kind=\"{kind}\"}} {n}");
        }
    }
    header(out, "tessera_disk_offline_shards", "gauge", "Shards of the disk that could not be opened.");
    for disk in &disks {
        let n = shards_of(m, disk).filter(|&i| m.shards[i].state() == ShardState::Offline).count();
        let _ = writeln!(out, "tessera_disk_offline_shards{{disk=\"{}\"}} {n}", escape(disk));
    }
    header(out, "tessera_disk_read_only_shards", "gauge", "Shards of the disk refusing writes (I/O error or full disk).");
    for disk in &disks {
        let n = shards_of(m, disk).filter(|&i| m.shards[i].read_only.load(Relaxed)).count();
        let _ = writeln!(out, "tessera_disk_read_only_shards{{disk=\"{}\"}} {n}", escape(disk));
    }
    header(out, "tessera_shard_info", "gauge", "Always 1: which data dir (disk) holds the shard.");
    for i in 0..m.shards.len() {
        let _ = writeln!(out, "tessera_shard_info{{shard=\"{i}\",disk=\"{}\"}} 1", escape(m.disk_of(i)));
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
