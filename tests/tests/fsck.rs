//! `tessera fsck` on real data dirs: clean after a clean stop and after a
//! kill, refuses dirs in use or unformatted, finds a flipped byte in an
//! object's data (and changes nothing unless asked to repair), and checks
//! that the registry copies of several data dirs agree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tessera_tests::*;

fn fsck(dirs: &[PathBuf], repair: bool) -> (i32, String) {
    let mut cmd = Command::new(binary_path());
    cmd.arg("fsck");
    if repair {
        cmd.arg("--repair");
    }
    cmd.args(dirs);
    let Output { status, stdout, stderr } = cmd.output().expect("run tessera fsck");
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    (status.code().expect("fsck exited by signal"), text)
}

/// Every file under `dir` with its contents' hash (to see that a check
/// changed nothing).
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "LOCK") {
                let data = std::fs::read(&p).expect("read file");
                out.push((p, data.len() as u64, md5_hex(&data)));
            }
        }
    }
    out.sort();
    out
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
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn fsck_checks_a_stopped_node() {
    let mut server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("checked").send().await, "create");
    let marker = random_bytes(256 * KIB, 77);
    ok(s3.put_object().bucket("checked").key("marked").body(bytestream(&marker)).send().await, "put");
    for i in 0..50 {
        let body = random_bytes(i * 100, i as u64);
        ok(s3.put_object().bucket("checked").key(format!("k{i}")).body(bytestream(&body)).send().await, "put");
    }
    ok(s3.delete_object().bucket("checked").key("k3").send().await, "delete");
    let dirs = server.data_dirs().to_vec();

    // A running node's dirs are locked: fsck refuses them.
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("in use"), "{text}");

    // Killed, not stopped: whatever was acknowledged is there and consistent.
    server.kill9();
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 buckets, 50 objects: clean"), "{text}");

    // A flipped byte in the middle of an object's data is found, with its
    // place, and a check without --repair changes nothing.
    let needle = &marker[100_000..100_032];
    let mut flipped = false;
    for seg in segments(&dirs[0]) {
        let mut data = std::fs::read(&seg).unwrap();
        if let Some(at) = data.windows(needle.len()).position(|w| w == needle) {
            data[at + 7] ^= 0x10;
            std::fs::write(&seg, &data).unwrap();
            flipped = true;
            break;
        }
    }
    assert!(flipped, "the object's bytes were not found in any segment");
    let before = snapshot(&dirs[0]);
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("PROBLEMS") && text.contains("segment"), "{text}");
    assert_eq!(snapshot(&dirs[0]), before, "fsck without --repair changed the data dir");

    // The node still serves: the damaged object is refused, not served wrong,
    // and the others are intact.
    server.start_again();
    let s3 = server.client();
    match s3.get_object().bucket("checked").key("marked").send().await {
        Ok(out) => {
            let got = out.body.collect().await.map(|b| b.into_bytes().to_vec());
            assert!(got.as_deref().ok() != Some(&marker[..]), "damaged bytes served as the object");
            assert!(got.is_err(), "a damaged object must end in an error, not wrong bytes");
        }
        Err(_) => {}
    }
    let out = ok(s3.get_object().bucket("checked").key("k49").send().await, "get k49");
    assert_eq!(read_body(out).await, random_bytes(4900, 49));
    server.stop();
}

#[test]
fn fsck_refuses_what_is_not_a_data_dir() {
    let tmp = std::env::temp_dir().join(format!("tessera-fsck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let (code, text) = fsck(&[tmp.clone()], false);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a formatted tessera data dir"), "{text}");
    // Nothing was created in it (no lock, no format file, no shards).
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    let (code, text) = fsck(&[tmp.join("missing")], false);
    assert_eq!(code, 2, "{text}");
    assert!(!tmp.join("missing").exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Two data dirs, so two registry copies that must agree; a deleted bucket
/// (a tombstone in each copy) leaves no orphans behind.
#[tokio::test(flavor = "multi_thread")]
async fn fsck_checks_registry_copies_across_data_dirs() {
    let mut server = Server::start_with(ServerOpts { data_dir_count: 2, ..ServerOpts::default() });
    let s3 = server.client();
    for b in ["one", "two"] {
        ok(s3.create_bucket().bucket(b).send().await, "create");
        ok(s3.put_object().bucket(b).key("x").body(bytestream(b"x")).send().await, "put");
    }
    server.stop();
    let dirs = server.data_dirs().to_vec();
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("2 buckets, 2 objects: clean"), "{text}");
    server.start_again();
    let s3 = server.client();
    ok(s3.delete_object().bucket("two").key("x").send().await, "delete");
    ok(s3.delete_bucket().bucket("two").send().await, "delete bucket");
    server.stop();
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 buckets, 1 objects: clean"), "{text}");
}

/// A format 2 node (erasure sets, 4 dirs): clean with every dir, objects
/// counted once per lane (not once per member); a dir not given is noted
/// offline; a dir that missed writes (stale) is noted, not a problem; a
/// flipped byte in a block is a problem.
#[tokio::test(flavor = "multi_thread")]
async fn fsck_checks_an_erasure_coded_node() {
    let mut server = Server::start_with(ServerOpts {
        data_dir_count: 4,
        threads: Some(2),
        args: vec!["--erasure".into()],
        ..Default::default()
    });
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("ecb").send().await, "bucket");
    for (i, n) in [300 * KIB, 300 * KIB, 2 * MIB + 3, 10, 0, 4 * KIB].into_iter().enumerate() {
        ok(s3.put_object().bucket("ecb").key(format!("o{i}")).body(bytestream(&random_bytes(n, i as u64))).send().await, "put");
    }
    server.stop();
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("8 shards, 1 buckets, 6 objects: clean"), "{text}");

    let (code, text) = fsck(&dirs[..3], false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("was not given: offline"), "{text}");

    // Dir 3 away while an object is written: it is stale, and lacks it.
    take_away(&dirs[3]);
    server.start_again();
    let s3 = server.client();
    ok(s3.put_object().bucket("ecb").key("later").body(bytestream(b"later")).send().await, "put");
    server.stop();
    bring_back(&dirs[3]);
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("recorded stale"), "{text}");
    assert!(text.contains("7 objects: clean"), "{text}");

    // A flipped byte in an erasure block of dir 1.
    let mut flipped = false;
    for f in segments(&dirs[1]) {
        let mut data = std::fs::read(&f).expect("read segment");
        if let Some(h) = data.windows(4).position(|w| w == b"TSEB") {
            data[h + 48 + 100] ^= 0x5a;
            std::fs::write(&f, &data).expect("write segment");
            flipped = true;
            break;
        }
    }
    assert!(flipped, "no erasure block found in dir 1");
    let (code, text) = fsck(&dirs, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("PROBLEMS"), "{text}");
}
