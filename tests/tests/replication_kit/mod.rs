//! What the replication tests share (`replication.rs`,
//! `replication_transfer.rs`): two nodes on loopback with fixed root
//! credentials, one replicating to the other, and ways to look at both.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, ExistingObjectReplication,
    ExistingObjectReplicationStatus, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use tessera_tests::*;

pub const DEADLINE: Duration = Duration::from_secs(60);
pub const AK: &str = "AKIAREPLICATIONTEST1";
pub const SK: &str = "replication-test-secret-0123456789abcdef";

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A node on `addr` with fixed root credentials, replicating to `remote`
/// (as target `site`) when given.
pub fn node(addr: SocketAddr, remote: Option<SocketAddr>) -> Server {
    node_with(addr, remote, &[])
}

/// A destination node with a versioned bucket `dst`, and a source node
/// replicating to it with a versioned bucket `src`; each started with its
/// flags besides: (source, destination).
pub async fn versioned_pair(src_flags: &[&str], dst_flags: &[&str]) -> (Server, Server) {
    let b_addr = free_addr();
    let dst = node_with(b_addr, None, dst_flags);
    let src = node_with(free_addr(), Some(b_addr), src_flags);
    versioned_bucket(&dst.client(), "dst").await;
    versioned_bucket(&src.client(), "src").await;
    (src, dst)
}

/// `node` with more flags.
pub fn node_with(addr: SocketAddr, remote: Option<SocketAddr>, extra: &[&str]) -> Server {
    let mut args = vec![format!("--address={addr}"), "--threads=2".to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    if let Some(r) = remote {
        args.push(format!("--replication-target=site=http://{r},{AK},{SK}"));
    }
    let env = vec![("TESSERA_ACCESS_KEY".to_string(), AK.to_string()), ("TESSERA_SECRET_KEY".to_string(), SK.to_string())];
    let mut s = Server::start_with(ServerOpts { args, env, ..Default::default() });
    s.set_credentials(AK, SK);
    s
}

pub async fn versioned_bucket(s3: &Client, name: &str) {
    ok(s3.create_bucket().bucket(name).send().await, "create bucket");
    let v = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket(name).versioning_configuration(v).send().await, "versioning");
}

pub fn config(dest: &str, prefix: &str) -> ReplicationConfiguration {
    config_existing(dest, prefix, false)
}

/// `config`, with ExistingObjectReplication Enabled when `existing`.
pub fn config_existing(dest: &str, prefix: &str, existing: bool) -> ReplicationConfiguration {
    let mut rule = ReplicationRule::builder()
        .id("all")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix(prefix).build())
        .delete_marker_replication(DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Enabled).build())
        .destination(Destination::builder().bucket(dest).build().unwrap());
    if existing {
        let on = ExistingObjectReplication::builder().status(ExistingObjectReplicationStatus::Enabled).build().unwrap();
        rule = rule.existing_object_replication(on);
    }
    let rule = rule.build().unwrap();
    ReplicationConfiguration::builder().role("arn:aws:iam::1:role/replication").rules(rule).build().unwrap()
}

pub async fn replicate(s3: &Client, bucket: &str, dest: &str) {
    ok(s3.put_bucket_replication().bucket(bucket).replication_configuration(config(dest, "")).send().await, "put replication");
}

/// Waits until metric `name` (summed over labels) is `want`.
pub fn wait_metric(srv: &Server, name: &str, want: f64) {
    wait_metric_total(srv, name, want, DEADLINE);
}

/// Waits until `n` entries were settled (sent, or failed for good) and
/// nothing is pending: the pending gauge alone may still be 0 from before
/// the worker saw the last writes.
pub fn wait_drained(srv: &Server, n: f64) {
    let start = Instant::now();
    loop {
        let m = srv.scrape_metrics();
        let settled = metric_total(&m, "tessera_replication_sent_total") + metric_total(&m, "tessera_replication_failed_total");
        if settled >= n && metric_total(&m, "tessera_replication_pending_entries") == 0.0 {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{settled} of {n} entries settled: {}", admin_json(srv, "/admin/v1/replication"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every version of a bucket: (key, version id, ETag or "marker", latest).
pub async fn versions(s3: &Client, bucket: &str) -> Vec<(String, String, String, bool)> {
    let out = ok(s3.list_object_versions().bucket(bucket).send().await, "list versions");
    let mut v: Vec<_> = out
        .versions()
        .iter()
        .map(|v| {
            let (k, id, e) = (v.key().unwrap_or_default(), v.version_id().unwrap_or_default(), v.e_tag().unwrap_or_default());
            (k.to_string(), id.to_string(), e.to_string(), v.is_latest().unwrap_or(false))
        })
        .chain(out.delete_markers().iter().map(|m| {
            let (k, id) = (m.key().unwrap_or_default(), m.version_id().unwrap_or_default());
            (k.to_string(), id.to_string(), "marker".to_string(), m.is_latest().unwrap_or(false))
        }))
        .collect();
    v.sort();
    v
}

pub async fn status_of(s3: &Client, bucket: &str, key: &str, version: &str) -> Option<String> {
    let h = ok(s3.head_object().bucket(bucket).key(key).version_id(version).send().await, "head");
    h.replication_status().map(|s| s.as_str().to_string())
}

/// Waits until version `v` of `key` in the source's bucket `src` has
/// replication status `want`.
pub async fn wait_status(src: &Server, key: &str, v: &str, want: &str) {
    let a = src.client();
    let start = Instant::now();
    while status_of(&a, "src", key, v).await.as_deref() != Some(want) {
        assert!(start.elapsed() < DEADLINE, "{key} not {want}: {}", admin_json(src, "/admin/v1/replication"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` on the admin listener, signed by the root: its JSON.
pub fn admin_json(srv: &Server, path: &str) -> serde_json::Value {
    admin_call(srv, "GET", path)
}

/// `method path` on the admin listener, signed by the root: its JSON.
pub fn admin_call(srv: &Server, method: &str, path: &str) -> serde_json::Value {
    let addr = srv.admin_addr().expect("admin address");
    let req = RawRequest::new(method, path).header("Host", &addr.to_string()).sign(AK, SK, std::time::SystemTime::now());
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    let r = c.read_response_for(method);
    assert_eq!(r.status, 200, "{}", r.body_text());
    serde_json::from_slice(&r.body).expect("JSON")
}

pub async fn put(s3: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = ok(s3.put_object().bucket(bucket).key(key).body(bytestream(body)).send().await, "put");
    out.version_id().unwrap_or_default().to_string()
}


/// The source's versions of `src` are the destination's of `dst`, and every
/// `step`-th of `ids` is COMPLETED there and a REPLICA here.
pub async fn all_replicated(src: &Server, dst: &Server, ids: &[(String, String)], step: usize) {
    let (a, b) = (src.client(), dst.client());
    assert_eq!(versions(&a, "src").await, versions(&b, "dst").await);
    for (k, v) in ids.iter().step_by(step) {
        assert_eq!(status_of(&a, "src", k, v).await.as_deref(), Some("COMPLETED"), "{k}");
        assert_eq!(status_of(&b, "dst", k, v).await.as_deref(), Some("REPLICA"), "{k}");
    }
}

/// The versions of keys under `prefix`.
pub async fn versions_under(s3: &Client, bucket: &str, prefix: &str) -> Vec<(String, String, String, bool)> {
    versions(s3, bucket).await.into_iter().filter(|v| v.0.starts_with(prefix)).collect()
}
