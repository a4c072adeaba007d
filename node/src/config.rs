//! Node configuration as given on the command line.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub address: String,
    pub threads: usize,
    pub users_file: Option<PathBuf>,
    /// The node key file; `None`: `<first data dir>/node.key`.
    pub key_file: Option<PathBuf>,
    pub vhost_domains: Vec<String>,
    pub region: String,
    pub shards_per_disk: u32,
    /// Most buckets one identity may own (S3's default quota is 10,000).
    pub max_buckets_per_user: usize,
    pub data_dirs: Vec<PathBuf>,
    /// Smallest multipart part except the last: S3's 5 MiB, lowered only by
    /// the test-only `TESSERA_TEST_MIN_PART_BYTES`.
    pub min_part_bytes: u64,
    /// Shortest STS session: AWS's 900 seconds, lowered only by the
    /// test-only `TESSERA_TEST_MIN_SESSION_SECS`.
    pub min_session_secs: u32,
}
