//! Encryption at rest as the disk sees it: the bytes on disk are ciphertext,
//! a flipped byte is refused on read (never served), keys survive a restart,
//! and a malformed or wrong master key stops the start with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::types::ServerSideEncryption;
use tessera_tests::*;

fn opts() -> ServerOpts {
    ServerOpts { args: vec!["--kms-key".into(), "testkey-1".into()], ..Default::default() }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seg-")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn on_disk(dir: &Path, needle: &[u8]) -> bool {
    segments(dir).iter().any(|s| std::fs::read(s).unwrap().windows(needle.len()).any(|w| w == needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_on_disk_are_ciphertext_and_survive_restart() {
    let mut server = Server::start_with(opts());
    let s3 = server.client();
    ok(s3.create_bucket().bucket("disk").send().await, "bucket");
    // Recognizable plaintext, small (inline in its commit) and large (data records).
    let small = b"TESSERA-PLAINTEXT-MARKER-small-object-0123456789".repeat(20);
    let large = b"TESSERA-PLAINTEXT-MARKER-large-object-0123456789".repeat(20_000);
    let c = [9u8; 32];
    let (ck, cm) = (b64(&c), b64(&md5_bytes(&c)));
    for (key, body) in [("s3-small", &small), ("s3-large", &large)] {
        ok(s3.put_object().bucket("disk").key(key).server_side_encryption(ServerSideEncryption::Aes256).body(bytestream(body)).send().await, "put s3");
    }
    ok(s3.put_object().bucket("disk").key("kms").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("testkey-1").body(bytestream(&large)).send().await, "put kms");
    ok(s3.put_object().bucket("disk").key("c").sse_customer_algorithm("AES256").sse_customer_key(&ck).sse_customer_key_md5(&cm).body(bytestream(&large)).send().await, "put c");
    let dir = server.data_dirs()[0].clone();
    server.stop();
    assert!(!on_disk(&dir, b"TESSERA-PLAINTEXT-MARKER"), "plaintext found on disk");
    // The key file holds no customer key and the master key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("sse-master.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "master key file readable by others");
    assert!(!on_disk(&dir, &c), "the customer key is on disk");

    server.start_again();
    let s3 = server.client();
    for (key, body) in [("s3-small", &small), ("s3-large", &large), ("kms", &large)] {
        let got = ok(s3.get_object().bucket("disk").key(key).send().await, key);
        assert_eq!(&read_body(got).await, body, "{key} after restart");
    }
    let got = ok(s3.get_object().bucket("disk").key("c").sse_customer_algorithm("AES256").sse_customer_key(&ck).sse_customer_key_md5(&cm).send().await, "get c");
    assert_eq!(read_body(got).await, large);
    assert!(!server.stderr_since_start().contains(&ck), "a customer key in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_ciphertext_byte_is_refused_not_served() {
    let mut server = Server::start_with(opts());
    let s3 = server.client();
    ok(s3.create_bucket().bucket("tamper").send().await, "bucket");
    let dir = server.data_dirs()[0].clone();
    // Let the node write what it writes at start, then see which bytes the PUT adds.
    server.stop();
    let before: Vec<(PathBuf, Vec<u8>)> = segments(&dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    server.start_again();
    let s3 = server.client();
    let data = random_bytes(3 * MIB, 77);
    ok(s3.put_object().bucket("tamper").key("k").server_side_encryption(ServerSideEncryption::Aes256).body(bytestream(&data)).send().await, "put");
    // Later writes, so the damaged record is not the log's tail (which a
    // restart would take for a torn write).
    for i in 0..4 {
        ok(s3.put_object().bucket("tamper").key(format!("after-{i}")).body(bytestream(b"x")).send().await, "put after");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.stop();
    // The PUT's data records come first in what it appended: 1.5 MiB in
    // is inside its sealed body. What was appended is found by content,
    // not by the file's old length: a segment may end in zeros written
    // ahead of its head (`prepare.rs`), and the records land on them.
    let (seg, start, end) = segments(&dir)
        .into_iter()
        .map(|p| {
            let now = std::fs::read(&p).unwrap();
            let old: &[u8] = before.iter().find(|(q, _)| *q == p).map_or(&[], |(_, d)| d.as_slice());
            let changed = |i: &usize| now[*i] != old.get(*i).copied().unwrap_or(0);
            let first = (0..now.len()).find(changed).unwrap_or(now.len());
            let last = (first..now.len()).rev().find(changed).map_or(first, |i| i + 1);
            (p, first, last)
        })
        .max_by_key(|(_, a, b)| b - a)
        .unwrap();
    assert!(end - start > 2 * MIB, "the object's records were not found");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[start + 3 * MIB / 2] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();

    server.start_again();
    let s3 = server.client();
    let result = s3.get_object().bucket("tamper").key("k").send().await;
    let served = match result {
        Err(_) => None,
        Ok(out) => out.body.collect().await.ok().map(|b| b.into_bytes().to_vec()),
    };
    assert!(served.is_none(), "a damaged object was served ({} bytes)", served.map_or(0, |b| b.len()));
    let log = server.stderr_since_start();
    let sse_layer = log.contains("failed authentication");
    assert!(sse_layer || log.contains("corrupt"), "no detection logged:\n{log}");
    // The engine's record checksum usually sees the flip before the GCM tag.
    eprintln!("damage detected by the {} layer", if sse_layer { "encryption (GCM tag)" } else { "storage engine (record checksum)" });
    // A range away from the damage still reads.
    let r = ok(s3.get_object().bucket("tamper").key("k").range("bytes=0-99").send().await, "range");
    assert_eq!(read_body(r).await, data[..100]);
}

#[test]
fn a_malformed_or_wrong_master_key_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let start = |env: Option<&str>| {
        let mut cmd = Command::new(binary_path());
        cmd.args(["server", "--address", "127.0.0.1:0", "--admin-address", "off", "--kms-key", "k1"]).arg(&data);
        cmd.env("TESSERA_ACCESS_KEY", "AKIAEXAMPLEEXAMPLE00").env("TESSERA_SECRET_KEY", "secretsecretsecretsecretsecretsecret0000");
        cmd.env_remove("TESSERA_MASTER_KEY");
        if let Some(v) = env {
            cmd.env("TESSERA_MASTER_KEY", v);
        }
        cmd
    };
    // A good start creates the files; stop it at once.
    let mut child = start(None).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !data.join("kms-keys").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(data.join("kms-keys").exists());

    // Another master key given by the environment does not open the keys.
    let out = start(Some(&b64(&[5u8; 32]))).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not open with the node master key"), "{err}");
    let out = start(Some("not base64!")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TESSERA_MASTER_KEY"));

    // A damaged master key file.
    let path = data.join("sse-master.key");
    std::fs::write(&path, "tessera-sse-master-key 1\n!!!\n").unwrap();
    let out = start(None).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("malformed master key file"), "{err}");
    assert!(!err.contains("!!!"));
}

fn admin_call(server: &Server, method: &str, path: &str, signed: bool) -> RawResponse {
    let addr = server.admin_addr().expect("admin listener");
    let mut req = RawRequest::new(method, path).header("Host", &addr.to_string());
    if signed {
        req = req.sign(&server.access_key, &server.secret_key, std::time::SystemTime::now());
    }
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    c.read_response_for(method)
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_keys_are_created_through_the_admin_api() {
    let mut server = Server::start_with(ServerOpts {
        args: vec!["--admin-address".into(), "127.0.0.1:0".into(), "--kms-key".into(), "at-start".into()],
        ..Default::default()
    });
    let s3 = server.client();
    ok(s3.create_bucket().bucket("adm").send().await, "bucket");
    let put = |key: &'static str| {
        s3.put_object().bucket("adm").key("o").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(key).body(bytestream(b"data")).send()
    };
    assert_s3_error(put("made-later").await, 400, "InvalidArgument");
    assert_eq!(admin_call(&server, "PUT", "/admin/v1/kms/keys/made-later", false).status, 403, "unsigned");
    assert_eq!(admin_call(&server, "PUT", "/admin/v1/kms/keys/made-later", true).status, 201);
    assert_eq!(admin_call(&server, "PUT", "/admin/v1/kms/keys/made-later", true).status, 200, "exists");
    assert_eq!(admin_call(&server, "PUT", "/admin/v1/kms/keys/tessera/reserved", true).status, 400);
    assert_eq!(admin_call(&server, "PUT", "/admin/v1/kms/keys/bad%20name", true).status, 400);
    let list = admin_call(&server, "GET", "/admin/v1/kms/keys", true);
    assert_eq!(list.status, 200);
    assert!(list.body_text().contains("made-later") && list.body_text().contains("at-start"), "{}", list.body_text());
    assert!(!list.body_text().contains("tessera/"), "reserved keys are not listed");
    ok(put("made-later").await, "put with the new key");
    server.restart();
    let s3 = server.client();
    let got = ok(s3.get_object().bucket("adm").key("o").send().await, "get after restart");
    assert_eq!(got.ssekms_key_id(), Some("made-later"));
    assert_eq!(read_body(got).await, b"data");
}
