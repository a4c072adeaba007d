//! The node's own files (root credentials, the node key sealing IAM
//! secrets, the SSE master key, the KMS keys) are kept in every data dir
//! of an erasure-coded node, so the first dir is as replaceable as any
//! other: replaced by an empty dir it heals, and the node comes back with
//! the same root credentials, IAM users and encrypted objects; then the
//! parity count of other dirs can go too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::ServerSideEncryption;
use tessera_tests::*;

const FILES: [&str; 4] = ["credentials", "node.key", "sse-master.key", "kms-keys"];

fn admin_call(server: &Server, method: &str, path: &str) -> RawResponse {
    let addr = server.admin_addr().expect("admin listener");
    let req = RawRequest::new(method, path)
        .header("Host", &addr.to_string())
        .sign(&server.access_key, &server.secret_key, std::time::SystemTime::now());
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    c.read_response_for(method)
}

/// Every node file present and byte-equal in every dir of `dirs`.
fn assert_everywhere(dirs: &[PathBuf]) {
    for f in FILES {
        let first = std::fs::read(dirs[0].join(f)).unwrap_or_else(|e| panic!("{}: {e}", dirs[0].join(f).display()));
        for d in &dirs[1..] {
            let copy = std::fs::read(d.join(f)).unwrap_or_else(|e| panic!("{}: {e}", d.join(f).display()));
            assert!(copy == first, "{} differs from the first dir's copy", d.join(f).display());
        }
    }
}

fn wait_healed(server: &Server) {
    let start = Instant::now();
    loop {
        let v = server.admin_json("/admin/v1/heal");
        if v["healed"] == true {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not healed in time: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn replace_with_empty(dir: &Path) {
    std::fs::remove_dir_all(dir).expect("lose the dir");
    std::fs::create_dir_all(dir).expect("empty dir in its place");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_dir_is_replaceable_node_files_live_in_every_dir() {
    let mut server = Server::start_with(ServerOpts {
        data_dir_count: 4,
        threads: Some(2),
        root_credentials_from_env: false,
        args: vec!["--erasure".into(), "--admin-address".into(), "127.0.0.1:0".into(), "--kms-key".into(), "at-start".into()],
        ..Default::default()
    });
    let dirs = server.data_dirs().to_vec();
    // Generated root credentials: the file's two lines.
    let text = std::fs::read_to_string(dirs[0].join("credentials")).expect("credentials file");
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (ak, sk) = (lines.next().expect("access key").to_string(), lines.next().expect("secret").to_string());
    server.set_credentials(&ak, &sk);
    assert_everywhere(&dirs);

    // A key made at run time reaches every dir before it is acknowledged.
    assert_eq!(admin_call(&server, "PUT", "/admin/v1/kms/keys/made-later").status, 201);
    for d in &dirs {
        let keys = std::fs::read_to_string(d.join("kms-keys")).expect("kms keys");
        assert!(keys.contains("made-later"), "{}: {keys}", d.display());
    }
    assert_everywhere(&dirs);

    // An IAM user (its secret sealed by node.key) and encrypted objects
    // (their data keys sealed by the KMS keys, sealed by the master key).
    let iam = server.iam();
    ok(iam.create_user().user_name("kept").send().await, "user");
    let key = ok(iam.create_access_key().user_name("kept").send().await, "access key");
    let key = key.access_key().expect("key");
    let (user_ak, user_sk) = (key.access_key_id().to_string(), key.secret_access_key().to_string());
    let s3 = server.client();
    ok(s3.create_bucket().bucket("files").send().await, "bucket");
    let bodies = [random_bytes(2 * MIB + 5, 1), random_bytes(300 * KIB, 2), random_bytes(5 * KIB, 3)];
    ok(s3.put_object().bucket("files").key("sse-s3").server_side_encryption(ServerSideEncryption::Aes256).body(bytestream(&bodies[0])).send().await, "sse-s3");
    ok(s3.put_object().bucket("files").key("sse-kms").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("made-later").body(bytestream(&bodies[1])).send().await, "sse-kms");
    ok(s3.put_object().bucket("files").key("plain").body(bytestream(&bodies[2])).send().await, "plain");
    let check = |server: &Server| {
        let s3 = server.client();
        let user = server.client_for(&user_ak, &user_sk);
        let bodies = bodies.clone();
        async move {
            for (k, want) in ["sse-s3", "sse-kms", "plain"].into_iter().zip(&bodies) {
                let got = read_body(ok(s3.get_object().bucket("files").key(k).send().await, "get")).await;
                assert!(got == *want, "{k}: {} bytes back, {} written", got.len(), want.len());
            }
            // The user's secret still opens: the signature is good, the
            // user has no permission (AccessDenied, not InvalidAccessKeyId
            // or SignatureDoesNotMatch).
            assert_s3_error(user.list_objects_v2().bucket("files").send().await, 403, "AccessDenied");
        }
    };
    check(&server).await;

    // The first dir is lost and replaced by an empty one.
    server.stop();
    replace_with_empty(&dirs[0]);
    server.start_again();
    assert!(dirs[0].join("tessera.format").exists(), "the empty dir is adopted");
    assert_everywhere(&dirs);
    check(&server).await;
    let list = admin_call(&server, "GET", "/admin/v1/kms/keys");
    assert!(list.body_text().contains("made-later"), "{}", list.body_text());
    wait_healed(&server);

    // Healed: two other dirs can go, the new first dir serves the files.
    server.stop();
    take_away(&dirs[1]);
    take_away(&dirs[2]);
    server.start_again();
    check(&server).await;
}
