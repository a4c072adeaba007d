//! What the cluster data tests share (`cluster_data.rs`,
//! `cluster_failover.rs`): three nodes joined on loopback with the same
//! secret and root credentials, and ways to ask them about keys.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use aws_sdk_s3::Client;
use tessera_tests::cluster::{node_opts, serves_layout_of, wait_for, free_udp_port};
use tessera_tests::*;

pub const SECRET: &str = "the data test cluster's secret";
pub const AK: &str = "AKIACLUSTERDATATEST1";
pub const SK: &str = "cluster-data-test-secret-0123456789abcd";

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A node with fixed S3 and cluster addresses (so a restart comes back on
/// them) and the root credentials every node shares.
pub fn start_node_with(cluster: SocketAddr, join: Option<SocketAddr>, env: &[(&str, &str)]) -> Server {
    let mut opts = node_opts(cluster, join, SECRET);
    opts.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    opts.args.push(format!("--address={}", free_addr()));
    opts.env.push(("TESSERA_ACCESS_KEY".to_string(), AK.to_string()));
    opts.env.push(("TESSERA_SECRET_KEY".to_string(), SK.to_string()));
    let mut s = Server::start_with(opts);
    s.set_credentials(AK, SK);
    s
}

/// Three nodes joined through the first, once every one of them follows a
/// layout of all three with none pending; and how long that took.
pub fn three_nodes() -> (Vec<Server>, Duration) {
    // Takeovers of a dead node's keys wait long enough not to happen in
    // the tests that do not look for them.
    three_nodes_with(&[("TESSERA_TAKEOVER_AFTER_MS", "600000")])
}

pub fn three_nodes_with(env: &[(&str, &str)]) -> (Vec<Server>, Duration) {
    let (ca, cb, cc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let nodes = vec![start_node_with(ca, None, env), start_node_with(cb, Some(ca), env), start_node_with(cc, Some(ca), env)];
    let t = wait_for("a layout of three nodes on every node", Duration::from_secs(40), || {
        nodes.iter().all(|n| {
            let l = layout(n);
            l["nodes"].as_array().is_some_and(|v| v.len() == 3) && l["pending"].as_array().is_some_and(|p| p.is_empty())
        })
    });
    // Until every reactor's lanes follow that layout a node answers 503
    // ("joining its storage"), longer than the SDK's retries when the
    // machine is busy.
    wait_for("every node's lanes follow the layout", Duration::from_secs(40), || {
        nodes.iter().all(|n| serves_layout_of(n, 3))
    });
    (nodes, t)
}

/// `three_nodes`, their ids, a runtime, and `bucket` made through node 0.
pub fn three_nodes_and_bucket(bucket: &str) -> (Vec<Server>, Vec<String>, tokio::runtime::Runtime) {
    let (nodes, _) = three_nodes();
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { ok(nodes[0].client().create_bucket().bucket(bucket).send().await, "create bucket") });
    (nodes, ids, rt)
}

/// A client of `server` that never retries (each answer is seen as sent).
pub fn client_without_retries(server: &Server) -> Client {
    let conf = server
        .config_builder(&server.access_key, &server.secret_key)
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

pub fn layout(server: &Server) -> serde_json::Value {
    server.admin_json("/admin/v1/cluster")["layout"].clone()
}

/// The id of the node that owns `key` of `bucket`.
pub fn owner_of(server: &Server, bucket: &str, key: &str) -> String {
    let v = server.admin_json(&format!("/admin/v1/cluster/locate?bucket={bucket}&key={key}"));
    v["owner"].as_str().expect("an owner").to_string()
}

pub fn node_id(server: &Server) -> String {
    server.admin_json("/admin/v1/cluster")["node"]["id"].as_str().unwrap().to_string()
}

pub async fn body(c: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(o.body.collect().await.map_err(|e| e.to_string())?.into_bytes().to_vec()),
        Err(e) => Err(e.into_service_error().meta().code().unwrap_or("?").to_string()),
    }
}

/// A GET that waits out 503s (a node taking over or handing back, lanes
/// being made, members out of service) for up to `limit`; the first
/// other answer.
pub async fn body_settled(c: &Client, bucket: &str, key: &str, limit: Duration) -> Result<Vec<u8>, String> {
    let started = std::time::Instant::now();
    loop {
        match body(c, bucket, key).await {
            Err(e) if (e == "ServiceUnavailable" || e == "SlowDown" || e == "?") && started.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            r => return r,
        }
    }
}

pub async fn list_all(c: &Client, bucket: &str, page: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = c
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(page)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list");
        out.extend(r.contents().iter().map(|o| o.key().unwrap().to_string()));
        if r.is_truncated() != Some(true) {
            return out;
        }
        token = r.next_continuation_token().map(str::to_string);
    }
}
