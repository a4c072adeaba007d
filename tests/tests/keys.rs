//! Object keys are names: any UTF-8 up to 1024 bytes, never file paths.

use std::collections::BTreeSet;
use std::path::Path;

use tessera_tests::*;

const AWKWARD_KEYS: &[&str] = &[
    "日本語/ファイル ✓.txt",
    "with space",
    "two  spaces and trailing space ",
    "a+b",
    "100%",
    "%41%20literal-percent-escapes",
    "a=b&c=d",
    "what?",
    "hash#tag",
    "..",
    "../dotdot",
    "a/../b",
    "a/./b",
    "double//slash",
    "/leading-slash",
    "trailing-slash/",
    "xml<special>&\"quotes'",
    "semi;colon,comma:colon@at!bang$dollar",
    "tilde~star*paren()brackets[]braces{}",
    "emoji 🦀 and é",
    // The same text in NFC and NFD: two different keys.
    "caf\u{e9}",
    "cafe\u{301}",
];

#[tokio::test(flavor = "multi_thread")]
async fn awkward_keys_round_trip_and_list() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("keys").send().await, "create");
    for key in AWKWARD_KEYS {
        let body = format!("content of {key}");
        ok(
            s3.put_object()
                .bucket("keys")
                .key(*key)
                .body(bytestream(body.as_bytes()))
                .send()
                .await,
            &format!("put {key:?}"),
        );
    }
    for key in AWKWARD_KEYS {
        let got = read_body(ok(
            s3.get_object().bucket("keys").key(*key).send().await,
            &format!("get {key:?}"),
        ))
        .await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("content of {key}"),
            "key {key:?}"
        );
        ok(
            s3.head_object().bucket("keys").key(*key).send().await,
            &format!("head {key:?}"),
        );
    }
    let listed = ok(s3.list_objects_v2().bucket("keys").send().await, "list");
    let got: Vec<String> = listed
        .contents()
        .iter()
        .map(|o| o.key().unwrap_or("").to_string())
        .collect();
    let mut want: Vec<String> = AWKWARD_KEYS.iter().map(|k| k.to_string()).collect();
    // S3 lists in UTF-8 byte order, which is what String's Ord is.
    want.sort();
    assert_eq!(got, want, "listing returns every key exactly, in byte order");

    // Keys that differ only by what a path normalizer would fold stay distinct.
    assert_s3_error(s3.get_object().bucket("keys").key("b").send().await, 404, "NoSuchKey");
    assert_s3_error(
        s3.get_object().bucket("keys").key("double/slash").send().await,
        404,
        "NoSuchKey",
    );
    assert_s3_error(
        s3.get_object().bucket("keys").key("leading-slash").send().await,
        404,
        "NoSuchKey",
    );
    assert_s3_error(s3.get_object().bucket("keys").key("a b").send().await, 404, "NoSuchKey");
    for key in AWKWARD_KEYS {
        ok(
            s3.delete_object().bucket("keys").key(*key).send().await,
            &format!("delete {key:?}"),
        );
    }
    let listed = ok(s3.list_objects_v2().bucket("keys").send().await, "list");
    assert!(
        listed.contents().is_empty(),
        "left after deletes: {:?}",
        listed.contents()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_plus_in_path_is_a_literal_plus() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("plus").send().await, "create");
    let req = server.sign(server.raw_request("PUT", "/plus/a+b").body(b"plus".to_vec()));
    let resp = server.send(&req);
    assert_eq!(resp.status, 200, "{resp:?}");
    let got = read_body(ok(s3.get_object().bucket("plus").key("a+b").send().await, "get a+b")).await;
    assert_eq!(got, b"plus");
    assert_s3_error(s3.get_object().bucket("plus").key("a b").send().await, 404, "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_unencoded_equals_sign_in_signed_path() {
    // Some clients leave '=' (and similar) unencoded in the path and sign the
    // path as sent.
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("eqs").send().await, "create");
    let req = server
        .raw_request("PUT", "/eqs/k=v,w")
        .body(b"equals".to_vec())
        .sign_reference(&server.access_key, &server.secret_key, std::time::SystemTime::now());
    let resp = server.send(&req);
    assert_eq!(resp.status, 200, "{resp:?}");
    let got = read_body(ok(s3.get_object().bucket("eqs").key("k=v,w").send().await, "get")).await;
    assert_eq!(got, b"equals");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_of_1024_bytes_ok_1025_too_long() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("long").send().await, "create");
    let k1024 = "k".repeat(1024);
    ok(
        s3.put_object()
            .bucket("long")
            .key(&k1024)
            .body(bytestream(b"max"))
            .send()
            .await,
        "1024-byte key",
    );
    assert_eq!(
        read_body(ok(s3.get_object().bucket("long").key(&k1024).send().await, "get")).await,
        b"max"
    );
    // The limit is in bytes of UTF-8: 341 three-byte characters + 1 = 1024.
    let k1024_utf8 = format!("{}x", "語".repeat(341));
    assert_eq!(k1024_utf8.len(), 1024);
    ok(
        s3.put_object()
            .bucket("long")
            .key(&k1024_utf8)
            .body(bytestream(b"utf8"))
            .send()
            .await,
        "1024-byte UTF-8 key",
    );

    let k1025 = "k".repeat(1025);
    assert_s3_error(
        s3.put_object()
            .bucket("long")
            .key(&k1025)
            .body(bytestream(b"x"))
            .send()
            .await,
        400,
        "KeyTooLongError",
    );
    let k1025_utf8 = format!("{}xy", "語".repeat(341));
    assert_s3_error(
        s3.put_object()
            .bucket("long")
            .key(&k1025_utf8)
            .body(bytestream(b"x"))
            .send()
            .await,
        400,
        "KeyTooLongError",
    );
    let listed = ok(s3.list_objects_v2().bucket("long").send().await, "list");
    let keys: BTreeSet<&str> = listed.contents().iter().map(|o| o.key().unwrap_or("")).collect();
    assert_eq!(keys, BTreeSet::from([k1024.as_str(), k1024_utf8.as_str()]));
}

fn files_named(dir: &Path, name: &str, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().contains(name)) {
            found.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            files_named(&p, name, found);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_never_reach_outside_the_data_dir() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("jail").send().await, "create");
    let marker = format!("tessera-escape-{}", std::process::id());
    let keys = [
        format!("../{marker}"),
        format!("../../{marker}"),
        format!("{}tmp/{marker}", "../".repeat(20)),
        format!("/{}tmp/{marker}-abs", "../".repeat(20)),
        format!("..\\..\\{marker}-backslash"),
    ];
    for key in &keys {
        ok(
            s3.put_object()
                .bucket("jail")
                .key(key)
                .body(bytestream(b"escape"))
                .send()
                .await,
            &format!("put {key:?}"),
        );
        let got = read_body(ok(s3.get_object().bucket("jail").key(key).send().await, "get")).await;
        assert_eq!(got, b"escape");
    }
    // Raw, unencoded dot segments in the request path.
    let resp = server.send(
        &server.sign(
            server
                .raw_request("PUT", &format!("/jail/../../{marker}-raw"))
                .body(b"raw".to_vec()),
        ),
    );
    assert!(
        resp.status == 200 || resp.status == 400 || resp.status == 403 || resp.status == 404,
        "{resp:?}"
    );

    let data_dir = std::fs::canonicalize(&server.data_dirs()[0]).unwrap();
    let mut found = Vec::new();
    files_named(server.temp_dir(), &marker, &mut found);
    let outside: Vec<_> = found
        .into_iter()
        .filter(|p| !std::fs::canonicalize(p).unwrap_or(p.clone()).starts_with(&data_dir))
        .collect();
    assert!(outside.is_empty(), "files created outside the data dir: {outside:?}");
    for p in [
        format!("/tmp/{marker}"),
        format!("/tmp/{marker}-abs"),
        format!("/{marker}"),
        format!("/{marker}-raw"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} was created by a key");
    }
    let parent = server.temp_dir().parent().unwrap();
    for name in [marker.clone(), format!("{marker}-raw"), format!("{marker}-backslash")] {
        assert!(!parent.join(&name).exists(), "{name} created next to the temp dir");
    }
}
