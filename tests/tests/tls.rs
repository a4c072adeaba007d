//! TLS on the S3 listener, its reload on SIGHUP, and the TOML config file.
//! A test CA and server certificates are made at test time (no key is in
//! the repository); the SDK talks HTTPS trusting that CA, and a raw rustls
//! client checks what the server presents.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use rcgen::KeyPair;
use tessera_tests::pki::TestCa as Pki;
use tessera_tests::*;

/// The test CA (`tessera_tests::pki`) and what these tests do with it.
trait PkiExt {
    fn server_args(&self) -> Vec<String>;
    fn start(&self) -> Server;
    fn client(&self, server: &Server) -> aws_sdk_s3::Client;
    fn raw_config(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<rustls::ClientConfig>;
}

impl PkiExt for Pki {
    fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_path().display().to_string(),
            "--tls-key".into(),
            self.key_path().display().to_string(),
        ]
    }

    fn start(&self) -> Server {
        Server::start_with(ServerOpts { args: self.server_args(), ..Default::default() })
    }

    /// The SDK over HTTPS, trusting only this CA.
    fn client(&self, server: &Server) -> aws_sdk_s3::Client {
        use aws_smithy_http_client::tls;
        let trust = tls::TrustStore::empty().with_pem_certificate(self.ca_pem().into_bytes());
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(tls::TlsContext::builder().with_trust_store(trust).build().expect("tls context"))
            .build_https();
        let conf = server
            .config_builder(&server.access_key, &server.secret_key)
            .endpoint_url(format!("https://localhost:{}", server.addr().port()))
            .force_path_style(true)
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A raw rustls client trusting this CA, limited to `versions`.
    fn raw_config(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<rustls::ClientConfig> {
        self.client_config(versions, true)
    }
}

fn new_pki() -> Pki {
    Pki::new("tessera test CA")
}

/// A finished TLS connection and what was negotiated.
struct Handshake {
    peer_cert: Vec<u8>,
    version: rustls::ProtocolVersion,
    alpn: Option<Vec<u8>>,
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

fn handshake(server: &Server, config: Arc<rustls::ClientConfig>) -> Result<Handshake, std::io::Error> {
    let tcp = TcpStream::connect(server.addr())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    let peer_cert = stream.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let version = stream.conn.protocol_version().expect("version");
    let alpn = stream.conn.alpn_protocol().map(|p| p.to_vec());
    Ok(Handshake { peer_cert, version, alpn, stream })
}

/// An unsigned request over TLS: the status line of the answer.
fn status_over(mut h: Handshake, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    h.stream.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = h.stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or("").to_string()
}

fn body_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_https_put_get_and_multipart() {
    let pki = new_pki();
    pki.issue(1);
    let server = pki.start();
    let s3 = pki.client(&server);
    ok(s3.create_bucket().bucket("tls").send().await, "create bucket");
    for (key, size) in [("empty", 0usize), ("small", 4096), ("big", 8 << 20)] {
        let data = body_of(size, size as u8);
        ok(s3.put_object().bucket("tls").key(key).body(ByteStream::from(data.clone())).send().await, "put");
        let got = ok(s3.get_object().bucket("tls").key(key).send().await, "get");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        assert_eq!(bytes.len(), size, "{key}");
        assert!(bytes[..] == data[..], "{key}: bytes differ");
    }
    let up = ok(s3.create_multipart_upload().bucket("tls").key("mp").send().await, "create upload");
    let id = up.upload_id().expect("upload id").to_string();
    let parts = [body_of(5 << 20, 7), body_of(1 << 20, 9)];
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = ok(
            s3.upload_part().bucket("tls").key("mp").upload_id(&id).part_number(n).body(ByteStream::from(p.clone())).send().await,
            "upload part",
        );
        done.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap_or_default()).build());
    }
    ok(
        s3.complete_multipart_upload()
            .bucket("tls")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        "complete",
    );
    let got = ok(s3.get_object().bucket("tls").key("mp").send().await, "get mp").body.collect().await.expect("body").into_bytes();
    assert_eq!(got.len(), (6 << 20) as usize);
    assert!(got[..5 << 20] == parts[0][..] && got[5 << 20..] == parts[1][..], "multipart bytes differ");
}

#[test]
fn tls_versions_alpn_and_refusals() {
    let pki = new_pki();
    let der = pki.issue(1);
    let server = pki.start();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let h = handshake(&server, pki.raw_config(&[v])).expect("handshake");
        assert_eq!(h.version, v.version);
        assert_eq!(h.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(h.peer_cert, der);
        assert!(status_over(h, "/_tessera/health/live").contains(" 200"), "health over TLS");
    }

    // Plain HTTP to the TLS port: a plain 400 saying so, then the close.
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "plain HTTP got {text:?}");
    assert!(text.contains("HTTPS"), "{text:?}");

    // A client offering TLS 1.1 at most: an alert (protocol_version or
    // handshake_failure, as no suite it offers is allowed), no handshake.
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    tcp.write_all(&tls11_client_hello()).expect("write");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    assert!(out.len() >= 7, "no alert: {out:?}");
    assert_eq!(out[0], 0x15, "not an alert record: {out:?}");
    assert!(matches!(out[6], 70 | 40), "not protocol_version or handshake_failure: {out:?}");

    // Garbage after a TLS record header, and a client that says nothing:
    // both closed, and the node still serves.
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    assert!(out.is_empty() || out[0] == 0x15, "garbage got {out:?}");
    let idle = TcpStream::connect(server.addr()).expect("connect");
    let h = handshake(&server, pki.raw_config(&[&rustls::version::TLS13])).expect("handshake after bad clients");
    assert!(status_over(h, "/_tessera/health/ready").contains(" 200"));
    drop(idle);
}

/// A ClientHello whose highest version is TLS 1.1 (no supported_versions
/// extension), with TLS 1.1 cipher suites.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, RSA-AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_it_when_broken() {
    let pki = new_pki();
    let first = pki.issue(1);
    let server = pki.start();
    let tls13 = pki.raw_config(&[&rustls::version::TLS13]);
    assert_eq!(handshake(&server, tls13.clone()).expect("handshake").peer_cert, first);

    let open = handshake(&server, tls13.clone()).expect("handshake");
    let second = pki.issue(2);
    assert_ne!(first, second);
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = handshake(&server, tls13.clone()).expect("handshake").peer_cert;
        if got == second {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A connection open before the reload goes on with its certificate.
    assert_eq!(open.peer_cert, first);
    assert!(status_over(open, "/_tessera/health/live").contains(" 200"));

    // A broken file: logged, and the second certificate is still served.
    std::fs::write(pki.cert_path(), "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_since_start().contains("TLS certificate not reloaded") {
        assert!(Instant::now() < deadline, "no error logged for the broken certificate");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(handshake(&server, tls13.clone()).expect("handshake").peer_cert, second);
    // A key that does not match the certificate is refused the same way.
    // (Key first, then a certificate of another key: the node also
    // reloads on file changes, and no moment may show a matching pair.)
    let third_key = KeyPair::generate().expect("key");
    std::fs::write(pki.key_path(), third_key.serialize_pem()).expect("write key");
    pki.issue_with(3, false);
    server.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(handshake(&server, tls13).expect("handshake").peer_cert, second);
    let log = server.stderr_since_start();
    assert!(!log.contains("PRIVATE KEY"), "key material in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_users_file() {
    let mut opts = ServerOpts { users: Some("AKIDUSERONE0001 secret-one-0001 user1 One\n".into()), ..Default::default() };
    opts.threads = Some(1);
    let server = Server::start_with(opts);
    let one = server.client_for("AKIDUSERONE0001", "secret-one-0001");
    ok(one.list_buckets().send().await, "user one");
    let two = server.client_for("AKIDUSERTWO0002", "secret-two-0002");
    assert!(two.list_buckets().send().await.is_err(), "user two before the reload");
    let users = server.temp_dir().join("users.txt");
    std::fs::write(&users, "AKIDUSERTWO0002 secret-two-0002 user2 Two\n").expect("write users");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while two.list_buckets().send().await.is_err() {
        assert!(Instant::now() < deadline, "user two not loaded by SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(one.list_buckets().send().await.is_err(), "user one still accepted after its removal");
    // A broken users file keeps the users in effect.
    std::fs::write(&users, "only-one-field\n").expect("write users");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_since_start().contains("users not reloaded") {
        assert!(Instant::now() < deadline, "no error logged for the broken users file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok(two.list_buckets().send().await, "user two after a broken reload");
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tessera.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn config_file_values_are_used_and_flags_override_them() {
    let pki = new_pki();
    pki.issue(1);
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let config = write_config(
        tmp.path(),
        &format!(
            "# a node's settings\naddress = \"127.0.0.1:1\"\nregion = \"eu-file-1\"\nsegment-size = \"64MiB\"\ncache-size = 0\n\
             tls-cert = {:?}\ntls-key = {:?}\ndata-dirs = [{:?}]\n",
            pki.cert_path().display().to_string(),
            pki.key_path().display().to_string(),
            data.display().to_string()
        ),
    );
    // The harness passes --address 127.0.0.1:0 (overriding the file's port
    // 1, which could not be bound) and no data dir (the file's is used).
    let server = Server::start_with(ServerOpts {
        data_dirs: Some(Vec::new()),
        args: vec!["--config".into(), config.display().to_string(), "--region".into(), "eu-flag-1".into()],
        ..Default::default()
    });
    let log = server.stderr_since_start();
    assert!(log.contains("eu-flag-1") && !log.contains("eu-file-1"), "the flag did not win: {log}");
    assert!(data.join("format.json").exists() || std::fs::read_dir(&data).map(|d| d.count() > 0).unwrap_or(false), "the file's data dir is not used");
    let h = handshake(&server, pki.raw_config(&[&rustls::version::TLS13])).expect("TLS from the file's tls-cert");
    assert!(status_over(h, "/_tessera/health/live").contains(" 200"));
}

#[test]
fn config_file_errors_are_refused_before_any_data_dir_is_touched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases: &[(&str, &str)] = &[
        ("adress = \"127.0.0.1:0\"\n", "unknown key \"adress\""),
        ("region = \"us east\"\n", "region"),
        ("segment-size = \"12XB\"\n", "segment-size"),
        ("address = [\n", "tessera.toml"),
        ("region = { a = 1 }\n", "region"),
        ("tls-cert = \"/nonexistent/cert.pem\"\n", "give both"),
        ("tls-cert = \"/nonexistent/cert.pem\"\ntls-key = \"/nonexistent/key.pem\"\n", "/nonexistent/cert.pem"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("data{i}"));
        let config = write_config(tmp.path(), text);
        let out = Command::new(binary_path())
            .args(["server", "--admin-address", "off", "--config"])
            .arg(&config)
            .arg(&dir)
            .output()
            .expect("run tessera");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(err.contains(want), "{text:?}: error {err:?} does not name {want:?}");
        assert!(!dir.exists(), "{text:?}: the data dir was created");
    }
    // Without a config file, the TLS flags are checked the same way.
    let dir = tmp.path().join("data-tls");
    let out = Command::new(binary_path())
        .args(["server", "--admin-address", "off", "--tls-key", "/nonexistent/key.pem"])
        .arg(&dir)
        .output()
        .expect("run tessera");
    assert!(!out.status.success());
    assert!(!dir.exists());
}

#[test]
fn help_lists_the_environment() {
    let out = Command::new(binary_path()).args(["server", "--help"]).output().expect("run --help");
    let text = String::from_utf8_lossy(&out.stdout);
    for var in ["TESSERA_ACCESS_KEY", "TESSERA_SECRET_KEY", "TESSERA_LOG", "TESSERA_TLS_CERT", "TESSERA_CONFIG", "SIGHUP"] {
        assert!(text.contains(var), "--help does not mention {var}");
    }
}

#[test]
fn the_example_config_file_has_only_known_keys() {
    // Its TLS files do not exist here: the node stops there, after every
    // key was accepted and before any data dir is touched.
    let example = tessera_tests::server::workspace_root().join("deploy/tessera.toml");
    let out = Command::new(binary_path())
        .args(["server", "--address", "127.0.0.1:0", "--admin-address", "off", "--config"])
        .arg(&example)
        .output()
        .expect("run tessera");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("unknown key"), "{err}");
    assert!(err.contains("/etc/tessera/tls/fullchain.pem"), "{err}");
}
