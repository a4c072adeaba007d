//! Spare segment files (`spare.rs`): a retired segment's file starts a
//! later segment, over its old records, and those records are never read
//! as the new segment's, whether the shard stops cleanly or not.

mod common;

use common::*;
use tessera_io::Shard;

const SEG: u64 = 4 << 20;
const BODY: usize = 512 << 10;

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

async fn body_of(s: &Shard, key: &str) -> Option<Vec<u8>> {
    let got = s.load(0, key.as_bytes()).await.unwrap()?;
    let tessera_io::Body::Extents(es) = got.body else { return Some(match got.body { tessera_io::Body::Inline(b) => b, _ => unreachable!() }) };
    let mut out = Vec::new();
    for e in es {
        out.extend(s.read_extent(&e, 0..e.len).await.unwrap());
    }
    Some(out)
}

async fn put_body(s: &Shard, key: &str, seed: u64) {
    let e = s.write_data(data_buf(&pattern(seed, BODY))).await.unwrap();
    s.commit(vec![put_extent(0, key, e)]).await.unwrap();
}

/// Segment 1 fills with bodies and inline puts, all deleted later; its
/// file is kept as a spare when compaction retires it, and segment 3
/// starts in it. After a few records there the shard is dropped without a
/// stop: the next open finds segment 1's records after segment 3's, counts
/// them stale (not torn, not corrupt), and takes none (no deleted key comes
/// back). A clean stop then cuts them, and the open after finds none.
#[test]
fn a_retired_file_starts_a_new_segment_and_its_old_records_stay_dead() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Vec::new();
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        let mut i = 0u64;
        while s.stats().active_segment == 1 {
            let key = format!("old{i}");
            if i % 2 == 0 {
                put_body(&s, &key, i).await;
            } else {
                s.commit(vec![put(0, key.as_bytes(), b"sum", &pattern(i, 3000))]).await.unwrap();
            }
            old.push(key);
            i += 1;
        }
        // The roll into segment 2 came with the last one: it lives there.
        let last = old.pop().unwrap();
        s.commit(old.iter().map(|k| del(0, k.as_bytes())).collect()).await.unwrap();
        let seg1 = dir.path().join("seg-00000001.log");
        let spare_len = std::fs::metadata(&seg1).unwrap().len();
        for _ in 0..8 {
            if !seg1.exists() {
                break;
            }
            s.compact_once().await.unwrap();
        }
        assert!(!seg1.exists(), "segment 1 was not retired: {:?}", s.stats());
        assert!(dir.path().join("seg-00000001.log.spare").exists(), "{:?}", names(dir.path()));
        assert_eq!((s.stats().spare_segments, s.stats().spare_bytes), (1, spare_len));
        // Into segment 3, which starts in the spare.
        let mut n = 0u64;
        while s.stats().active_segment == 2 {
            put_body(&s, &format!("new{n}"), 1000 + n).await;
            n += 1;
        }
        assert_eq!(s.stats().prepare.reused_segments, 1, "{:?}", s.stats());
        assert_eq!(s.stats().spare_segments, 0);
        let seg3 = dir.path().join("seg-00000003.log");
        assert!(!dir.path().join("seg-00000001.log.spare").exists(), "{:?}", names(dir.path()));
        assert!(std::fs::metadata(&seg3).unwrap().len() >= spare_len, "the spare's blocks stay");
        s.commit(vec![put(0, b"small", b"sum", b"in segment 3")]).await.unwrap();
        for k in old.iter().chain([&last]) {
            let want = k != &last;
            assert_eq!(s.load(0, k.as_bytes()).await.unwrap().is_none(), want, "{k}");
        }
        // Dropped here without a stop: segment 3's file keeps segment 1's
        // records after its own.
        old.push(last);
        n
    });
    let live = old.pop().unwrap();
    let check = |s: &Shard| {
        let (s, old, live) = (s.clone(), old.clone(), live.clone());
        async move {
            for k in &old {
                assert!(s.load(0, k.as_bytes()).await.unwrap().is_none(), "deleted {k} came back: {:?}", s.stats().recovery);
            }
            let seed: u64 = live[3..].parse().unwrap();
            assert!(body_of(&s, &live).await.is_some_and(|b| b.len() == BODY || b == pattern(seed, 3000)));
            assert_eq!(body_of(&s, "small").await.as_deref(), Some(b"in segment 3".as_slice()));
            let mut n = 0u64;
            while let Some(b) = body_of(&s, &format!("new{n}")).await {
                assert_eq!(b, pattern(1000 + n, BODY), "new{n}");
                n += 1;
            }
            assert!(n >= 3, "{n}");
        }
    };
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        let r = s.stats().recovery;
        assert!(!r.found_corruption(), "{r:?} {:?}", s.recovery_problems());
        assert!(r.stale_bytes > SEG / 2, "segment 1's records count as stale: {r:?}");
        assert!(r.torn_bytes < (1 << 20), "{r:?}");
        check(&s).await;
        s.prepare_stop().await.unwrap();
    });
    let report = run(tessera_io::fsck::check_shard(dir.path(), 7, false)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        let r = s.stats().recovery;
        assert!(!r.found_corruption(), "{r:?} {:?}", s.recovery_problems());
        assert_eq!((r.stale_bytes, r.torn_bytes), (0, 0), "a clean stop cut what followed the records: {r:?}");
        check(&s).await;
    });
}

/// Without `spare_segments`, a retired file is removed as before. A spare
/// found at open starts the run's first segment (its garbage never read
/// as records); one named at or above the log's last segment (not this
/// log's) is removed unread, and so is every spare when none are kept.
#[test]
fn spares_are_bounded_and_foreign_ones_removed() {
    let dir = tempfile::tempdir().unwrap();
    let none = tessera_io::ShardOptions { spare_segments: 0, ..small_segments(SEG) };
    run(async {
        let s = Shard::open(dir.path(), 7, none.clone()).await.unwrap();
        for i in 0..12u64 {
            put_body(&s, &format!("k{}", i % 2), i).await;
        }
        assert!(s.stats().active_segment >= 2);
        s.compact_once().await.unwrap();
        assert!(s.stats().compaction.segments_retired >= 1, "{:?}", s.stats());
        assert_eq!(s.stats().spare_segments, 0);
        assert!(!names(dir.path()).iter().any(|n| n.ends_with(".spare")), "{:?}", names(dir.path()));
    });
    std::fs::write(dir.path().join("seg-00000001.log.spare"), pattern(1, 3 << 20)).unwrap();
    std::fs::write(dir.path().join("seg-00099999.log.spare"), pattern(2, 3 << 20)).unwrap();
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        assert!(!s.stats().recovery.found_corruption());
        assert_eq!(s.stats().prepare.reused_segments, 1, "{:?}", names(dir.path()));
        assert_eq!(s.stats().spare_segments, 0);
        assert!(!dir.path().join("seg-00099999.log.spare").exists());
        put_body(&s, "k0", 100).await;
    });
    std::fs::write(dir.path().join("seg-00000002.log.spare"), pattern(3, 3 << 20)).unwrap();
    run(async {
        let s = Shard::open(dir.path(), 7, none).await.unwrap();
        assert!(!s.stats().recovery.found_corruption(), "{:?}", s.recovery_problems());
        assert_eq!((s.stats().spare_segments, s.stats().prepare.reused_segments), (0, 0));
        assert_eq!(body_of(&s, "k0").await, Some(pattern(100, BODY)));
    });
    assert!(!names(dir.path()).iter().any(|n| n.ends_with(".spare")), "{:?}", names(dir.path()));
}
