//! Helpers for tests that start several nodes in one cluster on loopback
//! (`--cluster-address`, `--join`, a shared secret).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::server::{Server, ServerOpts};

/// `tessera admin decommission --node NODE`, the operator's command,
/// through `via`'s admin listener with its root credentials.
pub fn decommission(via: &Server, node: &str) -> std::process::Output {
    let (ak, sk) = via.credentials();
    std::process::Command::new(crate::server::binary_path())
        .args(["admin", "decommission", "--node", node, "--endpoint", &format!("http://{}", via.admin_addr().expect("admin address"))])
        .env("AWS_ACCESS_KEY_ID", ak)
        .env("AWS_SECRET_ACCESS_KEY", sk)
        .output()
        .expect("tessera admin")
}

/// A loopback port free for both UDP (gossip) and TCP (RPC), taken below
/// the kernel's ephemeral range. A port from `bind(0)` is an ephemeral
/// one, and an outgoing connection of any test running beside may take it
/// between this check and the node's listen (or while a killed node is
/// started again on it): the node then failed with "Address already in
/// use". Outgoing connections never take a port below that range.
pub fn free_udp_port() -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768)
        .max(20_000);
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 10_000 + (h.finish() % u64::from(low - 10_000)) as u16;
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        let (udp, tcp) = (UdpSocket::bind(a), std::net::TcpListener::bind(a));
        if udp.is_ok() && tcp.is_ok() {
            return a;
        }
    }
}

/// The options of a node on `cluster` joining through `join` (the first
/// node joins none), two reactors.
pub fn node_opts(cluster: SocketAddr, join: Option<SocketAddr>, secret: &str) -> ServerOpts {
    let mut args = vec!["--cluster-address".to_string(), cluster.to_string()];
    if let Some(j) = join {
        args.extend(["--join".to_string(), j.to_string()]);
    }
    ServerOpts {
        args,
        // The bucket registry's lookups logged, for a rare NoSuchBucket
        // right after a CreateBucket through another node (not reproduced).
        env: vec![("TESSERA_CLUSTER_SECRET".into(), secret.into()), ("TESSERA_LOG".into(), "info,tessera_node::buckets=debug".into())],
        threads: Some(2),
        ..ServerOpts::default()
    }
}

pub fn start_node(cluster: SocketAddr, join: Option<SocketAddr>, secret: &str) -> Server {
    Server::start_with(node_opts(cluster, join, secret))
}

/// Whether `server` follows a layout of `n` nodes with none pending and
/// every reactor's lanes follow it: until then a node answers object
/// requests 503 ("joining its storage"), seconds after the voters form
/// when the machine is busy.
pub fn serves_layout_of(server: &Server, n: usize) -> bool {
    let c = server.admin_json("/admin/v1/cluster");
    let l = &c["layout"];
    l["nodes"].as_array().is_some_and(|v| v.len() == n)
        && l["pending"].as_array().is_some_and(|p| p.is_empty())
        && c["lanes"]["ready"] == true
}

/// Polls `ok` every 100 ms; fails the test after `limit`. The time it took.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// `wait_for` in async code: polls `ok` every 100 ms; fails the test after
/// `limit`. The time it took.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut ok: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !ok().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

/// A bucket or key percent-encoded for an admin URL's query (`/` kept).
pub fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
