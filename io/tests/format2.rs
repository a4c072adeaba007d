//! FORMAT BOUNDARY: a shard written by format 2 (the code before packed
//! batches; `fixtures/format2-shard`, made by this file's writer at that
//! commit) opens, reads back exactly, takes new (packed, format 3) writes,
//! and reopens with everything — with and without its checkpoint.
//!
//! The fixture was made with
//! `TESSERA_WRITE_FORMAT2_FIXTURE=<dir> cargo test -p tessera-io --test format2`
//! at commit d58ff75 (format 2); the writer below is that workload.

mod common;

use std::path::Path;

use common::*;
use tessera_io::{Body, Shard, ShardOptions};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format2-shard");

fn fixture_opts() -> ShardOptions {
    small_segments(64 << 10)
}

/// The fixture's workload: inline puts over a few segment rolls, data
/// records, overwrites, deletes, a checkpoint part way, a multi-key commit.
async fn write_fixture(s: &Shard) {
    for i in 0..40u64 {
        let k = format!("k{i:03}");
        s.commit(vec![put(0, k.as_bytes(), format!("s{i}").as_bytes(), &pattern(i, (i * 97 % 3000) as usize))])
            .await
            .unwrap();
    }
    for i in 0..4u64 {
        let e = s.write_data(data_buf(&pattern(100 + i, 20_000 + i as usize))).await.unwrap();
        s.commit(vec![put_extent(1, format!("d{i}"), e)]).await.unwrap();
    }
    s.checkpoint().await.unwrap();
    for i in (0..40u64).step_by(3) {
        s.commit(vec![del(0, format!("k{i:03}").as_bytes())]).await.unwrap();
    }
    for i in (1..40u64).step_by(5) {
        let k = format!("k{i:03}");
        s.commit(vec![put(0, k.as_bytes(), b"over", &pattern(1000 + i, 500))]).await.unwrap();
    }
    s.commit(vec![put(2, b"a", b"", b"x"), put(2, b"b", b"", b"y"), del(1, b"d0")]).await.unwrap();
}

/// What the fixture holds: (table, key) -> (summary, body bytes).
fn expected() -> Vec<(u8, String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..40u64 {
        let k = format!("k{i:03}");
        if i % 5 == 1 {
            out.push((0, k, b"over".to_vec(), pattern(1000 + i, 500)));
        } else if i % 3 != 0 {
            out.push((0, k, format!("s{i}").into_bytes(), pattern(i, (i * 97 % 3000) as usize)));
        }
    }
    for i in 1..4u64 {
        out.push((1, format!("d{i}"), vec![], pattern(100 + i, 20_000 + i as usize)));
    }
    out.push((2, "a".into(), vec![], b"x".to_vec()));
    out.push((2, "b".into(), vec![], b"y".to_vec()));
    out
}

async fn body_of(s: &Shard, table: u8, key: &[u8]) -> Vec<u8> {
    let st = s.load(table, key).await.unwrap().unwrap_or_else(|| panic!("{key:?} missing"));
    match st.body {
        Body::Inline(b) => b,
        Body::Extents(es) => {
            let mut out = Vec::new();
            for e in es {
                out.extend(s.read_extent(&e, 0..e.len).await.unwrap());
            }
            out
        }
    }
}

async fn check(s: &Shard, extra: &[(String, Vec<u8>)]) {
    let want = expected();
    for (t, k, summary, body) in &want {
        let e = s.get(*t, k.as_bytes()).unwrap_or_else(|| panic!("{t}/{k} missing"));
        assert_eq!(&e.summary[..], &summary[..], "{t}/{k} summary");
        assert_eq!(&body_of(s, *t, k.as_bytes()).await, body, "{t}/{k} body");
    }
    assert_eq!(s.len(0), want.iter().filter(|w| w.0 == 0).count() + extra.len());
    assert!(s.get(1, b"d0").is_none() && s.get(0, b"k000").is_none());
    for (k, body) in extra {
        assert_eq!(&body_of(s, 0, k.as_bytes()).await, body, "new {k}");
    }
}

fn copy_dir(from: &Path, to: &Path, with_checkpoints: bool) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if !with_checkpoints && name.starts_with("ckpt-") {
            continue;
        }
        std::fs::copy(e.path(), to.join(&name)).unwrap();
    }
}

#[test]
fn format2_shard_reads_writes_and_reopens() {
    if let Ok(dir) = std::env::var("TESSERA_WRITE_FORMAT2_FIXTURE") {
        run(async {
            let s = Shard::open(Path::new(&dir), 7, fixture_opts()).await.unwrap();
            write_fixture(&s).await;
        });
        return;
    }
    for with_checkpoints in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shard");
        copy_dir(Path::new(FIXTURE), &dir, with_checkpoints);
        let version = |d: &Path| u16::from_le_bytes(std::fs::read(d.join("SHARD")).unwrap()[8..10].try_into().unwrap());
        assert_eq!(version(&dir), 2, "the fixture is a format-2 shard");
        let mut extra = Vec::new();
        run(async {
            let s = Shard::open(&dir, 7, fixture_opts()).await.unwrap();
            assert!(!s.stats().recovery.found_corruption(), "{:?}", s.recovery_problems());
            check(&s, &extra).await;
            // New writes (packed batches in new segments), over a roll.
            for i in 0..60u64 {
                let k = format!("n{i:03}");
                let body = pattern(5000 + i, (i * 31 % 700) as usize);
                s.commit(vec![put(0, k.as_bytes(), b"", &body)]).await.unwrap();
                extra.push((k, body));
            }
            check(&s, &extra).await;
        });
        assert_eq!(version(&dir), 3, "opening for writes upgrades the shard file");
        run(async {
            let s = Shard::open(&dir, 7, fixture_opts()).await.unwrap();
            assert!(!s.stats().recovery.found_corruption(), "{:?}", s.recovery_problems());
            check(&s, &extra).await;
            s.checkpoint().await.unwrap();
        });
        run(async {
            let s = Shard::open(&dir, 7, fixture_opts()).await.unwrap();
            assert!(!s.stats().recovery.found_corruption(), "{:?}", s.recovery_problems());
            check(&s, &extra).await;
            let scrub = s.scrub_all().await.unwrap();
            assert_eq!(scrub.errors, 0, "{scrub:?}");
        });
    }
}
