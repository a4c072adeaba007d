//! Space reclamation across restarts: what a retired segment takes with it
//! must stay accounted for, whichever way the index was rebuilt.

mod common;

use common::*;
use tessera_io::Shard;

/// Two 28 KiB commits (40 KiB batches) and the segment record fit; a third does not.
const SEG: u64 = 96 << 10;

fn stats_line(s: &Shard) -> String {
    format!("{:?} {:?}", s.stats().recovery, s.recovery_problems())
}

/// A segment whose commits all lie before the checkpoint's position is
/// rebuilt from the checkpoint, not scanned: its seq range must come from
/// the checkpoint's row. Found by the kill -9 torture as "2 commits lost
/// between seqs N and N+1" in fsck after such a segment was retired: the
/// retire op had claimed no seqs (the segment's first seq read as 0).
#[test]
fn a_segment_retired_after_a_checkpoint_restart_takes_its_seqs_along() {
    let dir = tempfile::tempdir().unwrap();
    let body = |i: u64| pattern(i, 28 << 10);
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        // Segment 1: a, b (kept live). Segment 2: c, d. Checkpoint after d.
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            s.commit(vec![put(0, *k, b"", &body(i as u64))]).await.unwrap();
        }
        assert_eq!(s.stats().active_segment, 2, "{:?}", s.stats());
        s.checkpoint().await.unwrap();
        // Segment 3 onwards: e, then later writes.
        s.commit(vec![put(0, b"e", b"", &body(4))]).await.unwrap();
        assert_eq!(s.stats().active_segment, 3, "{:?}", s.stats());
    });
    run(async {
        // Rebuilt from the checkpoint: segment 2 lies wholly before its
        // position.
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        assert!(s.stats().recovery.checkpoint_seq.is_some(), "{}", stats_line(&s));
        // c and d go: segment 2 is all garbage, and is retired.
        s.commit(vec![del(0, b"c"), del(0, b"d")]).await.unwrap();
        let seg2 = dir.path().join("seg-00000002.log");
        assert!(seg2.exists(), "{:?}", segment_files(dir.path()));
        for _ in 0..8 {
            if !seg2.exists() {
                break;
            }
            s.compact_once().await.unwrap();
        }
        let retired = !seg2.exists();
        assert!(retired, "segment 2 was not retired: {:?}", s.stats());
    });
    // A full log scan (no checkpoint) must account for every seq.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with("ckpt-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
        let st = s.stats().recovery;
        assert_eq!(st.checkpoint_seq, None);
        assert!(!st.found_corruption(), "{}", stats_line(&s));
        for (k, i) in [(b"a", 0), (b"b", 1), (b"e", 4)] {
            let got = s.load(0, k).await.unwrap().unwrap();
            assert_eq!(got.body, tessera_io::Body::Inline(body(i)));
        }
        assert!(s.load(0, b"c").await.unwrap().is_none());
        assert!(s.load(0, b"d").await.unwrap().is_none());
    });
}
