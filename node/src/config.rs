//! Node configuration as given on the command line.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub address: String,
    /// Admin listener (health, metrics, admin API); `None`: off.
    pub admin_address: Option<String>,
    pub threads: usize,
    pub users_file: Option<PathBuf>,
    /// The node key file; `None`: `<first data dir>/node.key`.
    pub key_file: Option<PathBuf>,
    /// Master keys of the built-in key service created at start if absent.
    pub kms_keys: Vec<String>,
    pub vhost_domains: Vec<String>,
    pub region: String,
    pub shards_per_disk: u32,
    /// Format fresh data dirs as one erasure-set layout (format 2), with
    /// this parity (None: `default_parity` of the dir count). None: format 1.
    /// Ignored for dirs already formatted: their format decides.
    pub erasure: Option<Option<usize>>,
    /// Format 2: bytes per second a healing disk's rebuild and read-back
    /// may take, over all cores (0: unthrottled).
    pub heal_bytes_per_sec: u64,
    /// Most buckets one identity may own (S3's default quota is 10,000).
    pub max_buckets_per_user: usize,
    pub data_dirs: Vec<PathBuf>,
    /// Smallest multipart part except the last: S3's 5 MiB, lowered only by
    /// the test-only `TESSERA_TEST_MIN_PART_BYTES`.
    pub min_part_bytes: u64,
    /// How often each reactor delivers access-log objects: five minutes,
    /// lowered only by the test-only `TESSERA_TEST_ACCESS_LOG_INTERVAL_MS`.
    pub access_log_interval: std::time::Duration,
    /// Log segment size of every shard.
    pub segment_size_bytes: u64,
    /// Segments open O_DSYNC (`--sync-mode dsync`; `ShardOptions::dsync`).
    pub dsync: bool,
    /// Free space kept per disk (None: 2% of the disk, 64 MiB to 4 GiB).
    pub reserve_bytes: Option<u64>,
    /// Retired segment files kept per shard (`ShardOptions::spare_segments`).
    pub spare_segments: usize,
    /// Shortest STS session: AWS's 900 seconds, lowered only by the
    /// test-only `TESSERA_TEST_MIN_SESSION_SECS`.
    pub min_session_secs: u32,
    /// Length of a lifecycle "day" in seconds: 86,400, shorter only for
    /// tests (`--lifecycle-day-secs`).
    pub lifecycle_day_secs: u64,
    /// Most lifecycle actions (expirations, removals, aborts, transitions)
    /// a pass takes per second on one shard (`--lifecycle-actions-per-sec`).
    pub lifecycle_actions_per_sec: u32,
    /// MEASUREMENT ONLY: every lifecycle pass walks everything, as before
    /// the age index (`--lifecycle-full-walk`, hidden).
    pub lifecycle_full_walk: bool,
    /// Replicated versions up to this size are read whole before they are
    /// sent; larger ones are streamed (`replication::worker`). Lowered only
    /// by tests (`--test-replication-whole-body-max-bytes`, hidden).
    pub replication_whole_body_max_bytes: u64,
    /// Replicated versions larger than this are sent as a multipart upload
    /// (`replication::worker`; a single PUT's 5 GiB, lowered only by tests
    /// through `--test-replication-multipart-threshold-bytes`, hidden).
    pub replication_multipart_threshold_bytes: u64,
    /// Versions larger than this go to a tier as a multipart upload
    /// (`tier::worker`; a single PUT's 5 GiB, lowered only by tests
    /// through `--test-tier-multipart-threshold-bytes`, hidden).
    pub tier_multipart_threshold_bytes: u64,
    /// How long a transition attempt's pending entry waits before the
    /// worker takes its copy for a crash's leftover (`tier::PENDING_GRACE_MS`;
    /// shorter only for tests, `--test-tier-pending-grace-ms`, hidden).
    pub tier_pending_grace_ms: u64,
    /// TEST ONLY (`--test-tier-abort-after-put`, hidden): the process
    /// aborts right after a transition's copy is written, before its stub
    /// is committed (the crash a pending entry exists for).
    pub test_tier_abort_after_put: bool,
    /// First wait before a version the remote refused is sent again
    /// (`replication::retry`; 60 s, shorter only for tests through
    /// `--test-replication-failed-retry-ms`, hidden).
    pub replication_failed_retry_ms: u64,
    /// Hot-object cache bytes for the whole node, split evenly over the
    /// reactors (0: no cache); see `hotcache`.
    pub cache_bytes: u64,
    /// Largest object body the hot-object cache takes.
    pub cache_max_object_bytes: u64,
    /// PEM certificate chain and private key of the S3 listener: HTTPS when
    /// both are given, plain HTTP when neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The admin listener's certificate and key: HTTPS there when both are
    /// given (the same files as the S3 port's may be named).
    pub admin_tls_cert: Option<PathBuf>,
    pub admin_tls_key: Option<PathBuf>,
    /// Bucket notification targets (`--notify-webhook`), see `notify`.
    pub notify_webhooks: Vec<crate::notify::WebhookSpec>,
    /// Cluster membership (`--cluster-address`, `--join`), see `cluster`.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Bucket replication remotes (`--replication-target`), see `replication`.
    pub replication_targets: Vec<crate::replication::TargetSpec>,
    /// Remote storage tiers (`--tier`), see `tier`.
    pub tiers: Vec<crate::tier::TierSpec>,
}

/// Smallest and largest automatic reserve.
pub const MIN_AUTO_RESERVE_BYTES: u64 = 64 << 20;
pub const MAX_AUTO_RESERVE_BYTES: u64 = 4 << 30;

/// Most shards one data dir may be formatted with: each is a log with its
/// own segment files, index and checkpoints.
pub const MAX_SHARDS_PER_DISK: u32 = 256;
/// Shards per data dir when `--shards-per-disk` is not given: the fewest
/// that give every reactor a shard of its own (a reactor without one
/// hands every write to another core). No more than that: each shard is a
/// log that group-commits on its own, so fewer logs gather more commits
/// per fsync (4 KiB PUTs at 64 connections on 2 reactors and one disk:
/// 0.18 fsyncs per PUT with 4 shards, 0.09 with 2, and 15% more PUTs).
/// Format 2 spreads every lane over a whole set, so there the sets count.
pub fn default_shards_per_disk(threads: usize, dirs: usize, erasure: bool) -> u32 {
    let units = if erasure && dirs >= 2 {
        crate::sets::set_sizes(dirs).map_or(1, |s| s.len())
    } else {
        dirs.max(1)
    };
    u32::try_from(threads.max(1).div_ceil(units)).unwrap_or(MAX_SHARDS_PER_DISK).clamp(1, MAX_SHARDS_PER_DISK)
}

/// Sealed segments a shard's log may hold before admission control makes
/// new data wait for compaction (over 1.4x amplification): 16 per disk
/// shared by its shards, at least `STALL_MIN_SEGMENTS` each. A dir of 4
/// shards (the default until one per reactor) had 4 each; with 2 the
/// disk would otherwise hold half the garbage before writers wait, and a
/// 1 MiB PUT benchmark over 10,000 keys stalled after 11 s instead of
/// 20. (`shards_per_disk` is the count a fresh dir gets; dirs formatted
/// with another keep theirs, and get this for the count asked for.)
fn stall_min_segments(shards_per_disk: u32) -> u64 {
    (16 / u64::from(shards_per_disk.max(1))).max(tessera_io::compact::STALL_MIN_SEGMENTS)
}

/// Most reactor threads (one per core).
pub const MAX_THREADS: usize = 1024;
/// Largest hot-object cache of a node (it is memory, not disk).
pub const MAX_CACHE_BYTES: u64 = 1 << 40;
/// Largest object the hot-object cache may be told to take: a hit is
/// copied whole into the response, so this bounds the copy per request.
pub const MAX_CACHE_OBJECT_BYTES: u64 = 64 << 20;
/// Smallest segment: a segment must hold at least a few records.
pub const MIN_SEGMENT_BYTES: u64 = 4 * tessera_io::BLOCK as u64;

impl Config {
    /// What can be checked without touching a data dir; run before anything
    /// is created, so a typo in a flag leaves the disks as they were.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_SHARDS_PER_DISK).contains(&self.shards_per_disk) {
            return Err(format!("--shards-per-disk must be 1 to {MAX_SHARDS_PER_DISK}, not {}", self.shards_per_disk));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!("--threads must be 1 to {MAX_THREADS}, not {}", self.threads));
        }
        if !(MIN_SEGMENT_BYTES..=tessera_io::MAX_SEGMENT_BYTES).contains(&self.segment_size_bytes) {
            return Err(format!(
                "--segment-size must be {MIN_SEGMENT_BYTES} to {} bytes, not {}",
                tessera_io::MAX_SEGMENT_BYTES,
                self.segment_size_bytes
            ));
        }
        if self.cache_bytes > MAX_CACHE_BYTES {
            return Err(format!("--cache-size must be at most {MAX_CACHE_BYTES} bytes, not {}", self.cache_bytes));
        }
        if self.cache_max_object_bytes > MAX_CACHE_OBJECT_BYTES {
            return Err(format!(
                "--cache-max-object must be at most {MAX_CACHE_OBJECT_BYTES} bytes, not {}",
                self.cache_max_object_bytes
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("give both --tls-cert and --tls-key, or neither".into());
        }
        if self.admin_tls_cert.is_some() != self.admin_tls_key.is_some() {
            return Err("give both --admin-tls-cert and --admin-tls-key, or neither".into());
        }
        if self.admin_tls_cert.is_some() && self.admin_address.is_none() {
            return Err("--admin-tls-cert needs the admin listener (--admin-address is off)".into());
        }
        if self.data_dirs.is_empty() {
            return Err("no data dir given (as arguments, or `data-dirs` in --config)".into());
        }
        for (i, d) in self.data_dirs.iter().enumerate() {
            if self.data_dirs[..i].contains(d) {
                return Err(format!("data dir {} given twice", d.display()));
            }
        }
        if self.region.is_empty() || !self.region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("--region {:?} is not a region name", self.region));
        }
        crate::notify::check_targets(&self.notify_webhooks)?;
        crate::replication::check_targets(&self.replication_targets)?;
        crate::tier::check_tiers(&self.tiers)?;
        Ok(())
    }

    /// Each reactor's share of the hot-object cache.
    pub fn cache_bytes_per_core(&self) -> u64 {
        self.cache_bytes / self.threads.max(1) as u64
    }

    /// The storage engine's options for this node's shards.
    pub fn shard_options(&self) -> tessera_io::ShardOptions {
        let reserve = self.reserve_bytes.unwrap_or_else(|| {
            let total = self.data_dirs.first().and_then(|d| disk_bytes(d)).unwrap_or(0);
            (total / 50).clamp(MIN_AUTO_RESERVE_BYTES, MAX_AUTO_RESERVE_BYTES)
        });
        tessera_io::ShardOptions {
            segment_size_bytes: self.segment_size_bytes,
            data_reserve_bytes: reserve,
            dsync: self.dsync,
            spare_segments: self.spare_segments,
            // A checkpoint once a quarter segment (at least 64 MiB) of log
            // follows the last one: restarts replay at most that.
            checkpoint_after_bytes: (self.segment_size_bytes / 4).max(64 << 20),
            compaction: tessera_io::compact::CompactionOptions {
                stall_min_segments: stall_min_segments(self.shards_per_disk),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Size of the filesystem holding `dir`.
fn disk_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: c is a valid NUL-terminated path; st is plain data written by the call.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_blocks.saturating_mul(st.f_frsize))
    }
}

/// Parses a size: a number of bytes with an optional unit (KiB, MiB, GiB,
/// TiB, or K, M, G, T: powers of 1024; kB, MB, GB: powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB or TiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size too large: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn disks_keep_sixteen_sealed_segments_before_writers_wait() {
        assert_eq!(stall_min_segments(1), 16);
        assert_eq!(stall_min_segments(2), 8);
        assert_eq!(stall_min_segments(4), 4);
        assert_eq!(stall_min_segments(16), 4);
        assert_eq!(stall_min_segments(0), 16);
    }

    #[test]
    fn default_shards_give_every_reactor_one() {
        // One dir: one shard per reactor.
        assert_eq!(default_shards_per_disk(1, 1, false), 1);
        assert_eq!(default_shards_per_disk(2, 1, false), 2);
        assert_eq!(default_shards_per_disk(16, 1, false), 16);
        // Dirs share the reactors out: rounded up, never 0.
        assert_eq!(default_shards_per_disk(2, 4, false), 1);
        assert_eq!(default_shards_per_disk(6, 4, false), 2);
        assert_eq!(default_shards_per_disk(0, 0, false), 1);
        // Format 2: a lane spans its set, so 4 dirs in one set are one unit.
        assert_eq!(default_shards_per_disk(2, 4, true), 2);
        assert_eq!(default_shards_per_disk(8, 32, true), 4); // 2 sets of 16
        // A split the sets cannot make is refused later; the default is 1 unit.
        assert_eq!(default_shards_per_disk(3, 1, true), 3);
        assert_eq!(default_shards_per_disk(100_000, 1, false), MAX_SHARDS_PER_DISK);
    }
}
