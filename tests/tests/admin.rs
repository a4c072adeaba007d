//! The admin API beyond `info` (bucket usage, scrub, heal, config) and its
//! command-line client, the metrics of shards' background work and TLS
//! handshakes, the admin listener over TLS, reload on file change, and the
//! admin listener's drain on SIGTERM. The real binary over real sockets.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use tessera_tests::pki::TestCa as Pki;
use tessera_tests::*;

const ENDPOINTS: [&str; 4] = ["/admin/v1/buckets", "/admin/v1/scrub", "/admin/v1/heal", "/admin/v1/config"];

fn admin(server: &Server) -> SocketAddr {
    server.admin_addr().expect("admin listener address on stdout")
}

fn admin_send(server: &Server, req: RawRequest) -> RawResponse {
    let mut c = RawConn::connect(admin(server));
    c.send(&req.to_bytes()).expect("send");
    c.read_response_for(&req.method.clone())
}

fn admin_get(server: &Server, path: &str, creds: Option<(&str, &str)>) -> RawResponse {
    let req = RawRequest::new("GET", path).header("Host", &admin(server).to_string());
    let req = match creds {
        Some((k, s)) => req.sign(k, s, SystemTime::now()),
        None => req,
    };
    admin_send(server, req)
}

fn json_of(r: &RawResponse) -> serde_json::Value {
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.body_text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body_text()))
}

fn metric(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

fn cli(server: &Server, args: &[&str], key: &str, secret: &str) -> std::process::Output {
    let endpoint = format!("http://{}", admin(server));
    Command::new(binary_path())
        .arg("admin")
        .args(args)
        .args(["--endpoint", &endpoint])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .expect("run tessera admin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_refuse_non_admins_and_answer_json() {
    let server = Server::start_with(ServerOpts { threads: Some(2), ..accounts_opts() });
    let s3 = server.client();
    ok(s3.create_bucket().bucket("usage").send().await, "create");
    for (k, n) in [("a", 10usize), ("b/c", 20), ("d", 30)] {
        ok(s3.put_object().bucket("usage").key(k).body(bytestream(&vec![7u8; n])).send().await, "put");
    }
    ok(s3.create_bucket().bucket("hist").send().await, "create");
    let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("hist").versioning_configuration(on).send().await, "versioning");
    for n in [5usize, 7] {
        ok(s3.put_object().bucket("hist").key("k").body(bytestream(&vec![1u8; n])).send().await, "put version");
    }
    ok(s3.delete_object().bucket("hist").key("k").send().await, "delete marker");

    // Unsigned, a tenant account's root, a wrong secret, an IAM user without
    // rights, one allowed only admin:ServerInfo: all refused, on every endpoint.
    let iam = server.iam();
    let (_, plain_key, plain_secret) = new_user(&iam, "plain").await;
    let (_, info_key, info_secret) = new_user(&iam, "info-only").await;
    ok(
        iam.put_user_policy()
            .user_name("info-only")
            .policy_name("info")
            .policy_document(allow(&["admin:ServerInfo"], &["*"]))
            .send()
            .await,
        "policy",
    );
    let (_, ops_key, ops_secret) = new_user(&iam, "operator").await;
    let actions = ["admin:DataUsageInfo", "admin:ScrubStatus", "admin:HealStatus", "admin:GetConfig"];
    ok(
        iam.put_user_policy().user_name("operator").policy_name("ops").policy_document(allow(&actions, &["*"])).send().await,
        "policy",
    );
    let wrong = "not-the-secret-key-0123456789abcdefghijk";
    for path in ENDPOINTS {
        for creds in [None, Some((ALT.access_key, ALT.secret_key)), Some((server.access_key.as_str(), wrong)), Some((plain_key.as_str(), plain_secret.as_str())), Some((info_key.as_str(), info_secret.as_str()))] {
            let r = admin_get(&server, path, creds);
            assert_eq!(r.status, 403, "{path} {:?}: {}", creds.map(|c| c.0), r.body_text());
            // A wrong secret is told apart (as S3 does); the rest are denied.
            let want = if creds.map(|c| c.1) == Some(wrong) { "SignatureDoesNotMatch" } else { "AccessDenied" };
            assert_eq!(json_of(&r)["error"], want, "{path} {:?}", creds.map(|c| c.0));
        }
        assert_eq!(admin_get(&server, path, Some((&ops_key, &ops_secret))).status, 200, "{path} for the operator");
        // Other methods are not part of the API.
        let put = RawRequest::new("PUT", path).header("Host", &admin(&server).to_string()).sign(&server.access_key, &server.secret_key, SystemTime::now());
        assert_eq!(admin_send(&server, put).status, 405, "{path}");
    }
    let root = Some((server.access_key.as_str(), server.secret_key.as_str()));

    // Bucket usage: current objects, noncurrent versions and delete markers.
    let v = json_of(&admin_get(&server, "/admin/v1/buckets", root));
    assert_eq!(v["complete"], true, "{v}");
    let buckets = v["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 2, "{v}");
    let usage = buckets.iter().find(|b| b["name"] == "usage").expect("usage bucket");
    assert_eq!((usage["objects"].as_u64(), usage["bytes"].as_u64()), (Some(3), Some(60)), "{usage}");
    let hist = buckets.iter().find(|b| b["name"] == "hist").expect("hist bucket");
    assert_eq!(hist["objects"], 0, "{hist}");
    assert_eq!(hist["delete_markers"], 1, "{hist}");
    assert_eq!((hist["noncurrent_versions"].as_u64(), hist["noncurrent_bytes"].as_u64()), (Some(2), Some(12)), "{hist}");
    let v = json_of(&admin_get(&server, "/admin/v1/buckets?bucket=usage", root));
    assert_eq!(v["buckets"].as_array().map(Vec::len), Some(1), "{v}");
    let r = admin_get(&server, "/admin/v1/buckets?bucket=nosuchbucket", root);
    assert_eq!((r.status, json_of(&r)["error"].as_str()), (404, Some("NoSuchBucket")));

    // Scrub and compaction per shard; heal; config.
    let v = json_of(&admin_get(&server, "/admin/v1/scrub", root));
    let shards = v["shards"].as_array().expect("shards");
    // Without --shards-per-disk a dir gets one shard per reactor (2 here).
    assert_eq!(shard_dirs(&server.data_dirs()[0]), 2);
    assert_eq!(shards.len(), 2, "{v}");
    for s in shards {
        assert_eq!(s["state"], "open");
        assert!(s["scrub"]["passes"].is_u64() && s["compaction"]["bytes_freed"].is_u64(), "{s}");
        assert_eq!(s["disk"], server.data_dirs()[0].display().to_string());
    }
    let v = json_of(&admin_get(&server, "/admin/v1/heal", root));
    assert_eq!(v["erasure_coding"], false);
    let disks = v["disks"].as_array().expect("disks");
    assert_eq!(disks.len(), 1);
    assert_eq!((disks[0]["state"].as_str(), disks[0]["shards"].as_u64()), (Some("online"), Some(2)));
    assert_eq!(disks[0]["lanes"], serde_json::json!([]));
    let r = admin_get(&server, "/admin/v1/config", root);
    let v = json_of(&r);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["shards_per_disk"], 2);
    assert_eq!(v["data_dirs"][0], server.data_dirs()[0].display().to_string());
    assert_eq!(v["tls_cert"], serde_json::Value::Null);
    assert!(v["users_file"].is_string());
    let text = r.body_text();
    for secret in [server.secret_key.as_str(), server.access_key.as_str(), ALT.secret_key] {
        assert!(!text.contains(secret), "a secret in /admin/v1/config");
    }

    // The command-line client: every subcommand, and a refusal.
    for args in [&["buckets"][..], &["buckets", "--bucket", "usage"], &["scrub"], &["heal"], &["config"]] {
        let out = cli(&server, args, &server.access_key, &server.secret_key);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
        assert!(v.is_object(), "{args:?}");
    }
    let out = cli(&server, &["buckets", "--bucket", "usage"], &server.access_key, &server.secret_key);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["buckets"][0]["bytes"], 60);
    let out = cli(&server, &["heal"], &plain_key, &plain_secret);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 403"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_histogram_and_background_work_metrics() {
    let server = Server::start_with(ServerOpts { threads: Some(2), ..Default::default() });
    let s3 = server.client();
    let count = |m: &HashMap<String, f64>| metric_total(m, "tessera_shard_sync_duration_seconds_count");
    let before = count(&server.scrape_metrics());
    ok(s3.create_bucket().bucket("synced").send().await, "create");
    for i in 0..8 {
        ok(s3.put_object().bucket("synced").key(format!("k{i}")).body(bytestream(b"x")).send().await, "put");
    }
    // Published each second by the shards' owners.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = server.scrape_metrics();
        if count(&m) >= before + 8.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "sync count did not grow: {} -> {}", before, count(&m));
        std::thread::sleep(Duration::from_millis(200));
    };
    // The histogram is consistent: +Inf bucket = count, sum > 0.
    let inf = metric_total(&m, "tessera_shard_sync_duration_seconds_bucket")
        - m.iter().filter(|(k, _)| k.starts_with("tessera_shard_sync_duration_seconds_bucket") && !k.contains("+Inf")).map(|(_, v)| v).sum::<f64>();
    assert_eq!(inf, count(&m));
    assert!(metric_total(&m, "tessera_shard_sync_duration_seconds_sum") > 0.0);
    let dir = server.data_dirs()[0].display().to_string();
    for kind in ["io", "checksum", "scrub"] {
        assert_eq!(m.get(&format!("tessera_disk_errors_total{{disk=\"{dir}\",kind=\"{kind}\"}}")), Some(&0.0), "{kind}");
    }
    assert_eq!(m.get(&format!("tessera_disk_offline_shards{{disk=\"{dir}\"}}")), Some(&0.0));
    // One info series per shard the dir was formatted with (one per
    // reactor by default: 2 here), numbered from 0.
    let shard_dirs = shard_dirs(&server.data_dirs()[0]);
    assert_eq!(shard_dirs, 2);
    for shard in 0..shard_dirs {
        assert_eq!(m.get(&format!("tessera_shard_info{{shard=\"{shard}\",disk=\"{dir}\"}}")), Some(&1.0), "shard {shard}");
    }
    assert_eq!(m.keys().filter(|k| k.starts_with("tessera_shard_info{")).count(), shard_dirs);
    for core in 0..2 {
        assert!(m.contains_key(&format!("tessera_cross_core_queue_depth{{core=\"{core}\"}}")), "queue depth of core {core}");
    }
    for name in [
        "tessera_shard_compaction_passes_total",
        "tessera_shard_compaction_freed_bytes_total",
        "tessera_shard_compaction_stalled_writes_total",
        "tessera_shard_compaction_stalls_timed_out_total",
        "tessera_shard_compaction_retires_deferred_total",
        "tessera_shard_compaction_last_pass_timestamp_seconds",
        "tessera_shard_scrub_passes_total",
        "tessera_shard_scrub_read_bytes_total",
        "tessera_shard_scrub_last_pass_timestamp_seconds",
        "tessera_shard_log_resets_total",
    ] {
        assert!(m.contains_key(&format!("{name}{{shard=\"0\"}}")), "{name}");
    }
    assert_eq!(metric_total(&m, "tessera_tls_handshake_failures_total"), 0.0);
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> (TlsStream, Vec<u8>) {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    let cert = s.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    (s, cert)
}

/// One request over TLS with `Connection: close`: status and body.
fn over_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>, req: &RawRequest) -> (u16, String) {
    let (mut s, _) = tls_connect(addr, config);
    let mut bytes = req.to_bytes();
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("head end");
    bytes.splice(head_end..head_end, b"\r\nConnection: close".iter().copied());
    s.write_all(&bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn tls_metrics(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> HashMap<String, f64> {
    let (status, body) = over_tls(addr, config, &RawRequest::new("GET", "/metrics").header("Host", "localhost"));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

fn wait_for_cert(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, want: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls_connect(addr, config.clone()).1 != want {
        assert!(Instant::now() < deadline, "{what}: the new certificate was not picked up without a signal");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn admin_tls_handshake_failures_and_reload_on_file_change() {
    let pki = Pki::new("tessera admin test CA");
    let first = pki.issue(1);
    let (cert, key) = (pki.path("cert.pem").display().to_string(), pki.path("key.pem").display().to_string());
    let args = ["--tls-cert", &cert, "--tls-key", &key, "--admin-tls-cert", &cert, "--admin-tls-key", &key];
    let server = Server::start_with(ServerOpts { args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() });
    assert!(server.stdout_lines().iter().any(|l| l.starts_with("tessera: admin on https://")), "{:?}", server.stdout_lines());
    let admin_addr = admin(&server);
    let tls = pki.client_config(rustls::DEFAULT_VERSIONS, false);

    // Health, the console and the admin API over HTTPS.
    let host = format!("localhost:{}", admin_addr.port());
    let (status, body) = over_tls(admin_addr, tls.clone(), &RawRequest::new("GET", "/health/ready").header("Host", &host));
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, body) = over_tls(admin_addr, tls.clone(), &RawRequest::new("GET", "/console/").header("Host", &host));
    assert_eq!(status, 200);
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"), "{body}");
    // A console request forwarded to S3 (signed for the S3 path, sent under the prefix).
    let mut req = RawRequest::new("GET", "/").header("Host", &host).sign(&server.access_key, &server.secret_key, SystemTime::now());
    req.target = "/console/s3/".into();
    let (status, body) = over_tls(admin_addr, tls.clone(), &req);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ListAllMyBucketsResult"), "{body}");
    // `tessera admin` over HTTPS, trusting the test CA.
    std::fs::write(pki.path("ca.pem"), pki.ca_pem()).expect("write ca");
    let out = Command::new(binary_path())
        .args(["admin", "info", "--endpoint", &format!("https://localhost:{}", admin_addr.port())])
        .arg("--ca-cert")
        .arg(pki.path("ca.pem"))
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .output()
        .expect("run tessera admin info");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(info["ready"], true);
    // Without the CA the client refuses the certificate.
    let out = Command::new(binary_path())
        .args(["admin", "info", "--endpoint", &format!("https://localhost:{}", admin_addr.port())])
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .output()
        .expect("run tessera admin info");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // Failed handshakes are counted by listener and reason. The refused
    // handshake of `admin info` above may be counted a moment after the
    // client exits: start from figures that have stopped moving.
    let mut before = tls_metrics(admin_addr, tls.clone());
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let again = tls_metrics(admin_addr, tls.clone());
        let moved = ["s3", "admin"].iter().any(|l| {
            ["protocol", "plain_http"].iter().any(|r| {
                let name = format!("tessera_tls_handshake_failures_total{{listener=\"{l}\",reason=\"{r}\"}}");
                metric(&again, &name) != metric(&before, &name)
            })
        });
        before = again;
        if !moved {
            break;
        }
    }
    for addr in [server.addr(), admin_addr] {
        let mut t = TcpStream::connect(addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        // A handshake record holding a ClientHello of 4 bytes of garbage.
        t.write_all(&[0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]).expect("write");
        let mut sink = Vec::new();
        let _ = t.read_to_end(&mut sink);
        let mut t = TcpStream::connect(addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        t.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let _ = t.read_to_end(&mut sink);
    }
    let after = tls_metrics(admin_addr, tls.clone());
    for listener in ["s3", "admin"] {
        for reason in ["protocol", "plain_http"] {
            let name = format!("tessera_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}}");
            assert_eq!(metric(&after, &name) - metric(&before, &name), 1.0, "{name}");
        }
    }

    // New files, no signal: both listeners pick them up within the poll.
    let (_, got) = tls_connect(admin_addr, tls.clone());
    assert_eq!(got, first);
    let second = pki.issue(2);
    wait_for_cert(admin_addr, &tls, &second, "admin listener");
    wait_for_cert(server.addr(), &tls, &second, "S3 listener");
    // A broken file is logged and the last good certificate stays.
    std::fs::write(pki.path("cert.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_since_start().contains("TLS certificate not reloaded") {
        assert!(Instant::now() < deadline, "no error logged for the broken certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tls_connect(admin_addr, tls.clone()).1, second);
    assert_eq!(tls_connect(server.addr(), tls).1, second);
    assert!(server.stderr_since_start().contains("files changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_file_change_is_reloaded_without_a_signal() {
    let server = Server::start_with(ServerOpts { users: Some("AKIDUSERONE0001 secret-one-0001 user1 One\n".into()), ..Default::default() });
    let two = server.client_for("AKIDUSERTWO0002", "secret-two-0002");
    assert!(two.list_buckets().send().await.is_err(), "user two before the change");
    let users = server.temp_dir().join("users.txt");
    std::fs::write(&users, "AKIDUSERTWO0002 secret-two-0002 user2 Two\n").expect("write users");
    let deadline = Instant::now() + Duration::from_secs(10);
    while two.list_buckets().send().await.is_err() {
        assert!(Instant::now() < deadline, "user two not loaded after the file changed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_console_upload_on_the_admin_port() {
    let mut server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("drain").send().await, "create");
    let addr = admin(&server);
    let body = random_bytes(2 * MIB, 5);
    let (first, rest) = body.split_at(MIB);
    let mut req = RawRequest::new("PUT", "/drain/console-upload")
        .header("Host", &addr.to_string())
        .body(body.clone())
        .sign(&server.access_key, &server.secret_key, SystemTime::now());
    req.target = "/console/s3/drain/console-upload".into();
    let mut upload = RawConn::connect(addr);
    upload.send(&req.head_bytes()).expect("send head");
    upload.send(first).expect("send first half");
    std::thread::sleep(Duration::from_millis(200));

    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    // Draining: the admin port still answers probes, with 503.
    let r = admin_get(&server, "/health/ready", None);
    assert_eq!(r.status, 503, "{}", r.body_text());
    upload.send(rest).expect("send the rest");
    let r = upload.read_response_for("PUT");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("connection"), Some("close"));
    let status = server.wait_for_exit();
    assert!(status.success(), "exit status {status:?}");

    server.start_again();
    let got = ok(server.client().get_object().bucket("drain").key("console-upload").send().await, "get");
    assert_eq!(read_body(got).await, body);
}
