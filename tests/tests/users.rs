//! Several users from a users file: ownership, isolation, name clashes.

use tessera_tests::*;

const ALICE_KEY: &str = "AKIAALICE00000000001";
const ALICE_SECRET: &str = "alice/secret+key/0123456789abcdefghijkl";
const BOB_KEY: &str = "AKIABOB0000000000002";
const BOB_SECRET: &str = "bob-secret-key-0123456789abcdefghijklmno";

fn users_file() -> String {
    format!(
        "# test users\n\
         \n\
         {ALICE_KEY} {ALICE_SECRET} alice-id Alice Liddell\n\
         \t# an indented comment\n\
         {BOB_KEY} {BOB_SECRET} bob-id Bob\n"
    )
}

fn start() -> Server {
    Server::start_with(ServerOpts {
        users: Some(users_file()),
        ..Default::default()
    })
}

fn names(out: &aws_sdk_s3::operation::list_buckets::ListBucketsOutput) -> Vec<&str> {
    out.buckets().iter().map(|b| b.name().unwrap_or("")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_sees_only_its_own_buckets() {
    let server = start();
    let alice = server.client_for(ALICE_KEY, ALICE_SECRET);
    let bob = server.client_for(BOB_KEY, BOB_SECRET);
    for b in ["alice-1", "alice-2"] {
        ok(alice.create_bucket().bucket(b).send().await, "alice creates");
    }
    ok(bob.create_bucket().bucket("bob-1").send().await, "bob creates");

    let a = ok(alice.list_buckets().send().await, "alice lists");
    assert_eq!(names(&a), vec!["alice-1", "alice-2"]);
    let owner = a.owner().expect("owner");
    assert_eq!(owner.id(), Some("alice-id"));
    assert_eq!(
        owner.display_name(),
        Some("Alice Liddell"),
        "display name is the rest of the line"
    );
    let b = ok(bob.list_buckets().send().await, "bob lists");
    assert_eq!(names(&b), vec!["bob-1"]);
    assert_eq!(b.owner().and_then(|o| o.id()), Some("bob-id"));

    ok(
        alice
            .put_object()
            .bucket("alice-1")
            .key("k")
            .body(bytestream(b"alice's"))
            .send()
            .await,
        "put",
    );
    let listed = ok(
        alice.list_objects_v2().bucket("alice-1").fetch_owner(true).send().await,
        "list",
    );
    assert_eq!(listed.contents()[0].owner().and_then(|o| o.id()), Some("alice-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_user_access_is_access_denied() {
    let server = start();
    let alice = server.client_for(ALICE_KEY, ALICE_SECRET);
    let bob = server.client_for(BOB_KEY, BOB_SECRET);
    ok(alice.create_bucket().bucket("alices").send().await, "create");
    ok(
        alice
            .put_object()
            .bucket("alices")
            .key("diary")
            .body(bytestream(b"dear diary"))
            .send()
            .await,
        "put",
    );

    assert_s3_error(
        bob.get_object().bucket("alices").key("diary").send().await,
        403,
        "AccessDenied",
    );
    assert_status(bob.head_object().bucket("alices").key("diary").send().await, 403);
    assert_status(bob.head_bucket().bucket("alices").send().await, 403);
    assert_s3_error(bob.list_objects_v2().bucket("alices").send().await, 403, "AccessDenied");
    assert_s3_error(
        bob.put_object()
            .bucket("alices")
            .key("graffiti")
            .body(bytestream(b"bob was here"))
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        bob.put_object()
            .bucket("alices")
            .key("diary")
            .body(bytestream(b"x"))
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        bob.delete_object().bucket("alices").key("diary").send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        bob.create_multipart_upload().bucket("alices").key("mp").send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(bob.delete_bucket().bucket("alices").send().await, 403, "AccessDenied");
    assert_s3_error(
        bob.get_bucket_location().bucket("alices").send().await,
        403,
        "AccessDenied",
    );

    // Nothing changed.
    let body = read_body(ok(alice.get_object().bucket("alices").key("diary").send().await, "get")).await;
    assert_eq!(body, b"dear diary");
    let listed = ok(alice.list_objects_v2().bucket("alices").send().await, "list");
    let keys: Vec<&str> = listed.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, vec!["diary"]);

    // A user's signature made with another user's secret fails.
    let mixed = server.client_for(BOB_KEY, ALICE_SECRET);
    assert_s3_error(mixed.list_buckets().send().await, 403, "SignatureDoesNotMatch");
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_names_are_global_across_users() {
    let server = start();
    let alice = server.client_for(ALICE_KEY, ALICE_SECRET);
    let bob = server.client_for(BOB_KEY, BOB_SECRET);
    ok(alice.create_bucket().bucket("contested").send().await, "alice creates");
    assert_s3_error(
        bob.create_bucket().bucket("contested").send().await,
        409,
        "BucketAlreadyExists",
    );
    // Her own bucket again: 200 in us-east-1, as AWS answers there.
    ok(alice.create_bucket().bucket("contested").send().await, "alice re-creates");
    let b = ok(bob.list_buckets().send().await, "bob lists");
    assert!(names(&b).is_empty(), "bob got a bucket: {:?}", names(&b));
    // After alice deletes it, bob can take the name.
    ok(alice.delete_bucket().bucket("contested").send().await, "alice deletes");
    ok(bob.create_bucket().bucket("contested").send().await, "bob creates");
    assert_s3_error(
        alice.list_objects_v2().bucket("contested").send().await,
        403,
        "AccessDenied",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_users_file_is_refused_at_start() {
    // A line without a user id must not start a server with a broken user.
    let bin = tessera_tests::server::binary_path();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, format!("{ALICE_KEY} {ALICE_SECRET}\n")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut child = std::process::Command::new(bin)
        .args(["server", "--address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--users"])
        .arg(&users)
        .arg(&data)
        .env("TESSERA_ACCESS_KEY", "AKIAROOTROOTROOT0000")
        .env("TESSERA_SECRET_KEY", "root-secret-root-secret-root-secret-0000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let status = status.expect("server with a malformed users file kept running");
    assert!(!status.success(), "exit status {status}");
}
