//! Running in production: metrics, health, the admin API, stopping on
//! SIGTERM, logs and flag checks. All against the real binary over real
//! sockets (the admin listener is `--admin-address 127.0.0.1:0` here).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use tessera_tests::*;

fn admin(server: &Server) -> SocketAddr {
    server.admin_addr().expect("admin listener address on stdout")
}

/// A plain (unsigned) GET to the admin listener.
fn admin_get(server: &Server, path: &str) -> RawResponse {
    let addr = admin(server);
    let req = RawRequest::new("GET", path).header("Host", &addr.to_string());
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    c.read_response_for("GET")
}

fn admin_get_signed(server: &Server, path: &str, access_key: &str, secret_key: &str) -> RawResponse {
    let addr = admin(server);
    let req = RawRequest::new("GET", path).header("Host", &addr.to_string()).sign(access_key, secret_key, SystemTime::now());
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    c.read_response_for("GET")
}

/// `/metrics` as `name{labels}` → value.
fn scrape(server: &Server) -> HashMap<String, f64> {
    server.scrape_metrics()
}

fn metric(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

fn sum_of(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_requests() {
    let server = Server::start_with(ServerOpts { threads: Some(2), ..Default::default() });
    let s3 = server.client();
    let before = scrape(&server);
    ok(s3.create_bucket().bucket("metered").send().await, "create");
    let body = random_bytes(300 * KIB, 7);
    ok(s3.put_object().bucket("metered").key("k").body(bytestream(&body)).send().await, "put");
    for _ in 0..3 {
        let got = ok(s3.get_object().bucket("metered").key("k").send().await, "get");
        assert_eq!(read_body(got).await.len(), body.len());
    }
    assert!(s3.get_object().bucket("metered").key("missing").send().await.is_err());
    let after = scrape(&server);
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(delta(r#"tessera_requests_total{op="CreateBucket",status="200"}"#), 1.0);
    assert_eq!(delta(r#"tessera_requests_total{op="PutObject",status="200"}"#), 1.0);
    assert_eq!(delta(r#"tessera_requests_total{op="GetObject",status="200"}"#), 3.0);
    assert_eq!(delta(r#"tessera_requests_total{op="GetObject",status="404"}"#), 1.0);
    assert_eq!(delta(r#"tessera_request_duration_seconds_count{op="GetObject"}"#), 4.0);
    assert_eq!(delta(r#"tessera_request_duration_seconds_bucket{op="GetObject",le="+Inf"}"#), 4.0);
    assert!(delta(r#"tessera_request_duration_seconds_sum{op="PutObject"}"#) > 0.0);
    assert!(delta("tessera_received_bytes_total") >= body.len() as f64);
    assert!(delta("tessera_sent_bytes_total") >= 3.0 * body.len() as f64);
    assert!(metric(&after, "tessera_connections_total") >= 1.0);
    assert!(metric(&after, "tessera_process_resident_memory_bytes") > 1e6);
    assert_eq!(metric(&after, "tessera_ready"), 1.0);
    assert_eq!(sum_of(&after, "tessera_shard_offline{"), 0.0);
    // Shard figures are published each second by the shards' owners.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&server);
        let live = sum_of(&m, "tessera_shard_live_bytes{") - sum_of(&before, "tessera_shard_live_bytes{");
        let syncs = sum_of(&m, "tessera_shard_syncs_total{") - sum_of(&before, "tessera_shard_syncs_total{");
        if live >= body.len() as f64 && syncs >= 1.0 && sum_of(&m, "tessera_shard_entries{") >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "shard figures did not move: live {live}, syncs {syncs}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Health on the S3 port is counted under its own label; secrets are never in the text.
    let r = server.send(&server.raw_request("GET", "/_tessera/health/live"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "live\n"));
    let text = admin_get(&server, "/metrics").body_text();
    assert!(text.contains(r#"tessera_requests_total{op="Health",status="200"} 1"#), "{text}");
    assert!(!text.contains(&server.secret_key) && !text.contains(&server.access_key));
}

fn break_shard(dir: &Path, shard: usize) {
    let p = dir.join(format!("shard-{shard:04}"));
    std::fs::remove_dir_all(&p).expect("remove shard dir");
    std::fs::write(&p, b"not a directory").expect("write blocker");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_live_and_ready() {
    // Two reactors: two shards by default, so shard 1 exists to break.
    let mut server = Server::start_with(ServerOpts { threads: Some(2), ..Default::default() });
    for path in ["/health/live", "/health/ready"] {
        let r = admin_get(&server, path);
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
    }
    assert_eq!(admin_get(&server, "/nothing").status, 404);
    let r = server.send(&server.raw_request("GET", "/_tessera/health/ready"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "ready\n"));
    // On a virtual-host request the same path is a key of the bucket, not health.
    let r = server.send(&RawRequest::new("GET", "/_tessera/health/live").header("Host", "nosuchbucket.localhost"));
    assert_ne!(r.status, 200, "{}", r.body_text());
    // A shard that cannot open: the node serves the rest, but is not ready.
    server.stop();
    break_shard(&server.data_dirs()[0].clone(), 1);
    server.start_again();
    assert_eq!(admin_get(&server, "/health/live").status, 200);
    let r = admin_get(&server, "/health/ready");
    assert_eq!((r.status, r.body_text().as_str()), (503, "not ready: shard 1 offline\n"));
    assert_eq!(server.send(&server.raw_request("GET", "/_tessera/health/ready")).status, 503);
    let m = scrape(&server);
    assert_eq!(metric(&m, r#"tessera_shard_offline{shard="1"}"#), 1.0);
    assert_eq!(metric(&m, "tessera_ready"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_info_only_for_admins() {
    let server = Server::start_with(accounts_opts());
    let s3 = server.client();
    ok(s3.create_bucket().bucket("counted").send().await, "create");
    // Unsigned, a tenant account's root, a wrong secret, an IAM user without the permission.
    let r = admin_get(&server, "/admin/v1/info");
    assert_eq!(r.status, 403, "{}", r.body_text());
    let r = admin_get_signed(&server, "/admin/v1/info", ALT.access_key, ALT.secret_key);
    assert_eq!(r.status, 403, "{}", r.body_text());
    let r = admin_get_signed(&server, "/admin/v1/info", &server.access_key, "not-the-secret-key-0123456789abcdefghijk");
    assert_eq!(r.status, 403, "{}", r.body_text());
    let iam = server.iam();
    let (_, plain_key, plain_secret) = new_user(&iam, "plain").await;
    let r = admin_get_signed(&server, "/admin/v1/info", &plain_key, &plain_secret);
    assert_eq!(r.status, 403, "{}", r.body_text());
    // A user allowed admin:* is an admin; the root always is.
    let (_, ops_key, ops_secret) = new_user(&iam, "operator").await;
    ok(
        iam.put_user_policy()
            .user_name("operator")
            .policy_name("admin")
            .policy_document(allow(&["admin:*"], &["*"]))
            .send()
            .await,
        "put user policy",
    );
    let r = admin_get_signed(&server, "/admin/v1/info", &ops_key, &ops_secret);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let r = admin_get_signed(&server, "/admin/v1/info", &server.access_key, &server.secret_key);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let info: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["buckets"], 1);
    assert_eq!(info["ready"], true);
    assert!(info["uptime_seconds"].is_u64());
    let dirs = info["data_dirs"].as_array().expect("data dirs");
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0]["path"], server.data_dirs()[0].display().to_string());
    assert!(dirs[0]["shards"].as_array().is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["state"] == "open")));
    assert!(!r.body_text().contains(&server.secret_key));

    // The command-line client.
    let endpoint = format!("http://{}", admin(&server));
    let run = |key: &str, secret: &str| {
        Command::new(binary_path())
            .args(["admin", "info", "--endpoint", &endpoint])
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .expect("run tessera admin info")
    };
    let out = run(&server.access_key, &server.secret_key);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(info["buckets"], 1);
    let out = run(&plain_key, &plain_secret);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 403"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_an_upload_in_flight_and_exits_0() {
    let mut server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("drain").send().await, "create");
    let body = random_bytes(2 * MIB, 3);
    let (first, rest) = body.split_at(MIB);
    let req = server.sign(server.raw_request("PUT", "/drain/in-flight").body(body.clone()));
    let mut upload = server.connect();
    upload.send(&req.head_bytes()).expect("send head");
    upload.send(first).expect("send first half");
    // An idle keep-alive connection must not hold the stop up.
    let mut idle = server.connect();
    idle.send(&server.sign(server.raw_request("GET", "/drain")).to_bytes()).expect("send");
    assert_eq!(idle.read_response_for("GET").status, 200);
    std::thread::sleep(Duration::from_millis(200));

    let stop_sent = Instant::now();
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Draining: not ready, no new S3 connections; the idle one was closed.
    assert_eq!(admin_get(&server, "/health/ready").status, 503);
    assert!(std::net::TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2)).is_err(), "still accepting");
    assert!(idle.is_closed_within(Duration::from_secs(2)), "idle connection not closed");
    // The upload in flight finishes and is acknowledged.
    upload.send(rest).expect("send the rest");
    let r = upload.read_response_for("PUT");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("connection"), Some("close"));
    let status = server.wait_for_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(stop_sent.elapsed() < Duration::from_secs(10), "stop took {:?}", stop_sent.elapsed());
    let log = server.stderr_since_start();
    assert!(log.contains("draining requests in flight") && log.contains("stopped"), "{log}");

    server.start_again();
    let got = ok(server.client().get_object().bucket("drain").key("in-flight").send().await, "get");
    assert_eq!(read_body(got).await, body);
}

#[test]
fn logs_have_no_ansi_off_a_terminal_and_can_be_json() {
    let mut server = Server::start();
    let log = server.stderr_since_start();
    assert!(!log.contains('\u{1b}'), "ANSI escape in a non-terminal log:\n{log}");
    let start = log.lines().find(|l| l.contains("starting tessera")).expect("start line");
    let dir = server.data_dirs()[0].display().to_string();
    for want in [env!("CARGO_PKG_VERSION"), dir.as_str(), &server.addr().to_string(), "us-east-1"] {
        assert!(start.contains(want), "{want:?} not in {start:?}");
    }
    server.stop();

    let mut server = Server::start_with(ServerOpts { args: vec!["--log-format".into(), "json".into()], ..Default::default() });
    server.stop();
    let log = server.stderr_since_start();
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.starts_with("=====")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        messages.push(v["fields"]["message"].as_str().unwrap_or_default().to_string());
        if v["fields"]["message"] == "starting tessera" {
            assert_eq!(v["fields"]["version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(v["fields"]["region"], "us-east-1");
        }
    }
    assert!(messages.iter().any(|m| m == "starting tessera") && messages.iter().any(|m| m == "stopped"), "{messages:?}");

    let out = Command::new(binary_path()).arg("--version").output().expect("run --version");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("tessera {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_flags_are_refused_before_any_data_dir_is_touched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases: &[&[&str]] = &[
        &["--address", "not an address"],
        &["--address", "127.0.0.1:99999"],
        &["--admin-address", "nowhere:"],
        &["--segment-size", "12XB"],
        &["--segment-size", "100"],
        &["--shards-per-disk", "0"],
        &["--region", "us east"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("data{i}"));
        let mut cmd = Command::new(binary_path());
        cmd.arg("server").args(*args);
        if !args.contains(&"--admin-address") {
            cmd.args(["--admin-address", "off"]);
        }
        let out = cmd
            .arg(&dir)
            .output()
            .expect("run tessera");
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty(), "{args:?}: no error message");
        assert!(!dir.exists(), "{args:?}: the data dir was created");
    }
}

/// `THP_enabled` of /proc/PID/status (Linux 5.0 and later).
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(|v| v.trim().to_string())
}

/// Issue 17: with transparent huge pages, a node whose heap grows (the hot
/// cache filling with 1 MiB GETs) spent most of its time zeroing fresh
/// 2 MiB pages in the fault path. The node turns THP off for itself at
/// start; `TESSERA_THP=1` keeps it.
#[test]
fn the_node_runs_without_transparent_huge_pages_unless_asked() {
    let server = Server::start();
    let Some(off) = thp_enabled(server.pid().expect("pid")) else {
        eprintln!("skipped: this kernel's /proc/PID/status has no THP_enabled");
        return;
    };
    assert_eq!(off, "0", "THP_enabled of the node");
    let kept = Server::start_with(ServerOpts {
        env: vec![("TESSERA_THP".into(), "1".into())],
        ..Default::default()
    });
    assert_eq!(thp_enabled(kept.pid().expect("pid")).as_deref(), Some("1"), "THP_enabled with TESSERA_THP=1");
}
