//! Space reclamation across restarts: what a retired segment takes with it
//! must stay accounted for, whichever way the index was rebuilt.

mod common;

use common::*;
use tessera_io::Shard;

/// Two 28 KiB commits (40 KiB batches) and the segment record fit; a third does not.
const SEG: u64 = 96 << 10;

/// Removes the shard's checkpoints: its next open replays the whole log.
fn remove_checkpoints(dir: &std::path::Path) {
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with("ckpt-") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

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
    remove_checkpoints(dir.path());
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

/// A steady overwrite workload cannot outrun compaction: while the sealed
/// segments hold more than 1.4x their live bytes, new data waits for
/// compaction (admission control), so space stays bounded however fast the
/// writer is. Without it this writer, which never pauses, leaves garbage
/// behind faster than the compactor (which runs between its awaits) takes it.
#[test]
fn steady_overwrites_keep_space_amplification_bounded() {
    use tessera_io::compact::CompactionOptions;
    use tessera_io::scrub::ScrubOptions;
    use tessera_io::ShardOptions;
    const SEGMENT: u64 = 256 << 10;
    const KEYS: u64 = 64;
    const BODY: usize = 16 << 10;
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardOptions {
        segment_size_bytes: SEGMENT,
        background: true,
        data_reserve_bytes: 0,
        checkpoint_after_bytes: 1 << 30,
        compaction: CompactionOptions {
            enabled: true,
            min_garbage_ratio: 0.3,
            rate_bytes_per_sec: 1 << 30,
            interval: std::time::Duration::from_millis(20),
            ..CompactionOptions::default()
        },
        scrub: ScrubOptions {
            enabled: false,
            ..ScrubOptions::default()
        },
        ..ShardOptions::default()
    };
    run(async {
        let s = Shard::open(dir.path(), 7, opts).await.unwrap();
        let mut worst = 0.0f64;
        let mut x = 12345u64;
        for i in 0..1200u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = if i < KEYS { i } else { x % KEYS };
            let e = s.write_data(data_buf(&pattern(i, BODY))).await.unwrap();
            s.commit(vec![put_extent(0, &format!("k{k:03}"), e)])
            .await
            .unwrap();
            if i >= KEYS {
                let st = s.stats();
                // The sealed segments' bound, plus the active segment and
                // one being filled while compaction frees another.
                let bound = 1.5 * st.live_bytes as f64 + 2.0 * SEGMENT as f64;
                worst = worst.max(st.segment_bytes as f64 / st.live_bytes as f64);
                assert!(
                    (st.segment_bytes as f64) <= bound,
                    "write {i}: {} bytes in segments for {} live: {:?}",
                    st.segment_bytes,
                    st.live_bytes,
                    st.compaction
                );
            }
        }
        let st = s.stats();
        assert!(st.compaction.stalled_writes > 0, "admission control never engaged: {st:?}");
        assert!(st.compaction.segments_retired > 0, "{st:?}");
        eprintln!("worst ratio {worst:.2}; {:?}", st.compaction);
        // Every key reads back its last body.
        for k in 0..KEYS {
            assert!(s.load(0, format!("k{k:03}").as_bytes()).await.unwrap().is_some());
        }
    });
}

/// A restart's segment holds no commit: its checkpoint row's first seq is
/// where it began, not a seq it holds. Taken as held, the next start
/// skipped that seq, and every later replay from the checkpoint reported
/// one commit lost on a clean log (found by start/stop cycles of a node:
/// "1 commits lost between seqs N and N").
#[test]
fn a_restart_segment_without_commits_claims_no_seq() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        for i in 0..20u32 {
            s.commit(vec![put(0, &i.to_be_bytes(), b"", b"v")]).await.unwrap();
        }
    });
    // Replays the log, starts a segment with no commit, checkpoints there.
    run(async {
        let s = open(dir.path()).await;
        s.checkpoint().await.unwrap();
    });
    let next = run(async {
        let s = open(dir.path()).await;
        assert!(s.stats().recovery.checkpoint_seq.is_some(), "{}", stats_line(&s));
        s.commit(vec![put(0, b"after", b"", b"a")]).await.unwrap()
    });
    assert_eq!(next, 21, "the first commit after the restarts must take the next seq");
    run(async {
        let s = open(dir.path()).await;
        assert_eq!(s.stats().recovery.lost_commits, 0, "{}", stats_line(&s));
        assert!(!s.stats().recovery.found_corruption(), "{}", stats_line(&s));
    });
}

/// A clean stop (`prepare_stop`) after much logging writes a checkpoint,
/// so the next start replays nothing; after little, only a mark.
#[test]
fn a_clean_stop_checkpoints_a_long_tail() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        s.commit(vec![put(0, b"small", b"", b"s")]).await.unwrap();
        s.prepare_stop().await.unwrap();
    });
    run(async {
        let s = open(dir.path()).await;
        assert!(s.stats().recovery.checkpoint_seq.is_none(), "a short tail needs no checkpoint: {}", stats_line(&s));
        let big = pattern(3, tessera_io::STOP_CHECKPOINT_MIN_BYTES as usize + 4096);
        for chunk in big.chunks(4 << 20) {
            let e = s.write_data(data_buf(chunk)).await.unwrap();
            s.commit(vec![put_extent(0, &format!("big{}", chunk.len()), e)])
            .await
            .unwrap();
        }
        s.prepare_stop().await.unwrap();
    });
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats().recovery;
        assert!(st.checkpoint_seq.is_some(), "{}", stats_line(&s));
        assert_eq!(st.commits, 0, "nothing to replay after the stop's checkpoint: {}", stats_line(&s));
        assert!(s.get(0, b"small").is_some());
    });
}

/// A transaction reads a record's extents and commits them again under
/// another key (an upload's parts assembled into its object) while
/// compaction moves that record: the segment the move empties is retired
/// only once the transaction's hold ends, so its commit finds its extents;
/// without a hold the commit is refused as `Moved` (the caller reads again),
/// never as an unknown segment. Found by the kill -9 torture in CI: a
/// CompleteMultipartUpload answered 500 "invalid extent: unknown segment"
/// when compaction retired a part's segment during the Complete.
#[test]
fn a_hold_keeps_extents_it_read_committable_while_compaction_moves_them() {
    for held in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(9, 16 << 10);
        run(async {
            let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
            let part = s.write_data(data_buf(&data)).await.unwrap();
            s.commit(vec![put_extent(0, b"part", part)]).await.unwrap();
            // Fillers seal the part's segment, then become its garbage.
            for i in 0..4u64 {
                s.commit(vec![put(0, format!("f{i}").as_bytes(), b"", &pattern(i, 28 << 10))]).await.unwrap();
            }
            assert!(s.stats().active_segment > part.segment, "{:?}", s.stats());
            for i in 0..4u64 {
                s.commit(vec![del(0, format!("f{i}").as_bytes())]).await.unwrap();
            }
            let seg = dir.path().join(format!("seg-{:08}.log", part.segment));
            assert!(seg.exists(), "{:?}", segment_files(dir.path()));

            let hold = held.then(|| s.hold());
            let read = s.load(0, b"part").await.unwrap().unwrap();
            assert_eq!(read.body, tessera_io::Body::Extents(vec![part]));
            for _ in 0..4 {
                s.compact_once().await.unwrap();
            }
            // The part's record and data moved either way.
            let moved = s.load(0, b"part").await.unwrap().unwrap();
            assert_ne!(moved.body, read.body, "compaction did not move the part: {:?}", s.stats().compaction);
            let object = || vec![put_extent(0, b"object", part), del(0, b"part")];
            if !held {
                assert!(!seg.exists(), "no hold, yet the emptied segment stayed: {:?}", s.stats().compaction);
                match s.commit(object()).await {
                    Err(tessera_io::IoError::Moved) => {}
                    other => panic!("a commit of a retired segment's extent: {other:?}"),
                }
                return;
            }
            assert!(seg.exists(), "retired under a hold: {:?}", s.stats().compaction);
            assert!(s.stats().compaction.retires_deferred >= 1, "{:?}", s.stats().compaction);
            s.commit(object()).await.unwrap();
            drop(hold);
            // The object now keeps that segment live: later passes leave it.
            for _ in 0..4 {
                s.compact_once().await.unwrap();
            }
            let got = s.load(0, b"object").await.unwrap().unwrap();
            let tessera_io::Body::Extents(es) = got.body else { panic!("{:?}", got.body) };
            let mut bytes = Vec::new();
            for e in &es {
                bytes.extend(s.read_extent(e, 0..e.len).await.unwrap());
            }
            assert!(bytes == data, "the object's bytes differ after compaction");
        });
        // And after a restart.
        if held {
            run(async {
                let s = Shard::open(dir.path(), 7, small_segments(SEG)).await.unwrap();
                assert!(!s.stats().recovery.found_corruption(), "{:?}", s.recovery_problems());
                assert!(s.load(0, b"object").await.unwrap().is_some());
            });
        }
    }
}

/// A retired segment is removed gently (`Backend::trash_retired`, `cut_trash`):
/// renamed out of the segments' names, cut down 8 MiB a step, unlinked (at
/// once after an explicit `compact_once`). This one
/// spans several steps, on both drivers. A leftover of such a removal cut
/// short by a crash (`seg-N.log.trash`, of any length and content) is never
/// read as a segment: fsck without repair leaves it and finds nothing wrong,
/// and the next open deletes it; other files are left alone.
#[test]
fn a_retired_segment_is_cut_down_and_removed_and_a_leftover_is_deleted_unread() {
    const BIG: u64 = 72 << 20;
    const BODY: usize = 14 << 20;
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    for legacy in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let body = |i: u64| pattern(i, BODY);
        let work = async {
            let s = Shard::open(dir.path(), 7, small_segments(BIG)).await.unwrap();
            // Segment 1: k0..k4 (70 MiB of extents). Segment 2: k5.
            for i in 0..6u64 {
                let e = s.write_data(data_buf(&body(i))).await.unwrap();
                s.commit(vec![put_extent(0, format!("k{i}"), e)]).await.unwrap();
            }
            assert_eq!(s.stats().active_segment, 2, "{:?}", s.stats());
            let seg1 = dir.path().join("seg-00000001.log");
            assert!(std::fs::metadata(&seg1).unwrap().len() > 2 * RETIRE_STEP, "several steps to cut");
            s.commit((0..5).map(|i| del(0, format!("k{i}").as_bytes())).collect()).await.unwrap();
            for _ in 0..8 {
                if !seg1.exists() {
                    break;
                }
                s.compact_once().await.unwrap();
            }
            assert!(!seg1.exists(), "segment 1 was not retired: {:?}", s.stats());
            assert!(names(dir.path()).iter().all(|n| !n.ends_with(".trash")), "{:?}", names(dir.path()));
            assert_eq!(s.stats().compaction.segments_retired, 1, "{:?}", s.stats());
            assert_eq!(read_body(&s, b"k5").await, body(5));
        };
        if legacy {
            run_legacy(work);
        } else {
            run(work);
        }
        // A crash's leftovers: segment 1 renamed and cut to an odd length,
        // and one with garbage where records would be; beside a file that is
        // not ours to delete.
        let mut junk = pattern(9, 3 << 20);
        junk.truncate((3 << 20) - 1234);
        std::fs::write(dir.path().join("seg-00000001.log.trash"), &junk).unwrap();
        std::fs::write(dir.path().join("seg-00000007.log.trash"), b"TSRL not a record").unwrap();
        std::fs::write(dir.path().join("notes.trash"), b"keep me").unwrap();
        let report = run(tessera_io::fsck::check_shard(dir.path(), 7, false)).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(dir.path().join("seg-00000001.log.trash").exists(), "fsck without repair changes nothing");
        run(async {
            let s = Shard::open(dir.path(), 7, small_segments(BIG)).await.unwrap();
            assert!(!s.stats().recovery.found_corruption(), "{}", stats_line(&s));
            assert_eq!(read_body(&s, b"k5").await, body(5));
            assert!(s.load(0, b"k0").await.unwrap().is_none());
        });
        let left = names(dir.path());
        assert!(!left.iter().any(|n| n.starts_with("seg-") && n.ends_with(".trash")), "{left:?}");
        assert!(left.contains(&"notes.trash".to_string()), "{left:?}");
    }
}

/// The whole body of `key`, stored as extents.
async fn read_body(s: &Shard, key: &[u8]) -> Vec<u8> {
    let got = s.load(0, key).await.unwrap().unwrap();
    let tessera_io::Body::Extents(es) = got.body else { panic!("not extents: {:?}", got.body) };
    let mut out = Vec::new();
    for e in es {
        out.extend(s.read_extent(&e, 0..e.len).await.unwrap());
    }
    out
}

/// `storage::RETIRE_TRUNCATE_STEP`, restated (the constant is crate-private).
const RETIRE_STEP: u64 = 8 << 20;

/// Compaction of this run's segments reads only the batches listed as
/// holding deletes or retires (`scan_listed`), not every record: the
/// tombstones and retires it must carry over are still found. Puts and
/// deletes of 48 keys with compaction passes between them, each key first
/// written beside one never touched again (so those segments stay and a
/// delete's tombstone must be kept), then a full replay (checkpoints
/// removed): no deleted key comes back, every other reads its last body.
#[test]
fn tombstones_survive_listed_scans_and_a_full_replay() {
    use std::collections::BTreeMap;
    use tessera_io::compact::CompactionOptions;
    use tessera_io::scrub::ScrubOptions;
    use tessera_io::ShardOptions;
    const KEYS: u64 = 48;
    const BODY: usize = 16 << 10;
    let dir = tempfile::tempdir().unwrap();
    let opts = || ShardOptions {
        segment_size_bytes: 256 << 10,
        // Passes run here, between the writes (deterministic).
        background: false,
        data_reserve_bytes: 0,
        checkpoint_after_bytes: 1 << 30,
        compaction: CompactionOptions {
            enabled: true,
            // Segments half stable (below) are never victims: a delete
            // of a key first written there must keep its tombstone.
            min_garbage_ratio: 0.6,
            rate_bytes_per_sec: 1 << 30,
            interval: std::time::Duration::from_millis(5),
            ..CompactionOptions::default()
        },
        scrub: ScrubOptions {
            enabled: false,
            ..ScrubOptions::default()
        },
        ..ShardOptions::default()
    };
    // Key -> the seed of its body, None once deleted.
    let mut model: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    run(async {
        let s = Shard::open(dir.path(), 7, opts()).await.unwrap();
        // Each key's first body beside one never touched again.
        for k in 0..KEYS {
            let e = s.write_data(data_buf(&pattern(10_000 + k, BODY))).await.unwrap();
            s.commit(vec![put_extent(0, format!("k{k:03}"), e)]).await.unwrap();
            model.insert(k, Some(10_000 + k));
            let e = s.write_data(data_buf(&pattern(20_000 + k, BODY))).await.unwrap();
            s.commit(vec![put_extent(0, format!("stable{k:03}"), e)]).await.unwrap();
        }
        let mut x = 0x5eed_u64;
        for i in 0..1500u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % KEYS;
            let name = format!("k{k:03}");
            if x % 10 < 3 && model.get(&k).is_some_and(|v| v.is_some()) {
                s.commit(vec![del(0, name.as_bytes())]).await.unwrap();
                model.insert(k, None);
            } else {
                let e = s.write_data(data_buf(&pattern(i, BODY))).await.unwrap();
                s.commit(vec![put_extent(0, &name, e)]).await.unwrap();
                model.insert(k, Some(i));
            }
            if i % 16 == 15 {
                s.compact_once().await.unwrap();
            }
        }
        let st = s.stats().compaction;
        assert!(st.segments_retired >= 10 && st.listed_scans >= 10, "{st:?}");
        assert!(st.tombstones_kept + st.tombstones_dropped > 0, "no victim held a tombstone: {st:?}");
        for (k, v) in &model {
            let got = s.load(0, format!("k{k:03}").as_bytes()).await.unwrap();
            assert_eq!(got.is_some(), v.is_some(), "k{k:03} before the restart");
        }
    });
    remove_checkpoints(dir.path());
    run(async {
        let s = Shard::open(dir.path(), 7, opts()).await.unwrap();
        assert_eq!(s.stats().recovery.checkpoint_seq, None);
        assert!(!s.stats().recovery.found_corruption(), "{}", stats_line(&s));
        for k in 0..KEYS {
            assert_eq!(read_body(&s, format!("stable{k:03}").as_bytes()).await, pattern(20_000 + k, BODY));
        }
        for (k, v) in &model {
            let name = format!("k{k:03}");
            match v {
                None => assert!(s.load(0, name.as_bytes()).await.unwrap().is_none(), "{name} came back after its delete"),
                Some(i) => assert_eq!(read_body(&s, name.as_bytes()).await, pattern(*i, BODY), "{name}"),
            }
        }
    });
}

/// Compaction reads each commit entry once for all the live operations it
/// moves out of it, and commits its moves in entries of at most 32 KiB (a
/// read of one moved object reads its whole entry). Before, it read the
/// entry once per operation, and wrote up to 256 moves in one entry: a
/// victim of moved 4 KiB objects cost the disk about 250 times its size in
/// reads (1.5 GB/s in the ceiling script's order, foreground PUTs at a
/// third of their rate meanwhile).
#[test]
fn compaction_reads_a_commit_entry_once_and_writes_its_moves_in_small_entries() {
    const KEYS: usize = 100;
    let body = |i: usize| pattern(i as u64, 1 << 10);
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(256 << 10)).await.unwrap();
        // Commits of one filler key, overwritten, until the log rolls: the
        // segment it leaves behind holds no live filler.
        let roll = |from: u32| {
            let s = &s;
            async move {
                let mut i = 0u64;
                while s.stats().active_segment == from {
                    s.commit(vec![put(0, b"filler", b"", &pattern(i, 16 << 10))]).await.unwrap();
                    i += 1;
                }
            }
        };
        // One entry of 100 objects, in segment 1.
        let first = s.stats().active_segment;
        s.commit((0..KEYS).map(|i| put(0, format!("k{i:03}").as_bytes(), b"", &body(i))).collect()).await.unwrap();
        s.commit(vec![del(0, b"k000")]).await.unwrap();
        roll(first).await;
        let moves_at = s.stats().active_segment;
        let seg = |n: u32| dir.path().join(format!("seg-{n:08}.log"));
        while seg(first).exists() {
            assert!(s.compact_once().await.unwrap(), "segment {first} was not retired: {:?}", s.stats());
        }
        let st = s.stats().compaction;
        assert_eq!(st.entries_moved, KEYS as u64 - 1, "{st:?}");
        assert_eq!(st.entries_read, 1, "the entry of 99 live objects is read once: {st:?}");
        // The moves lie in `moves_at`: seal it, make garbage in it, compact it.
        roll(moves_at).await;
        s.commit(vec![del(0, b"k001")]).await.unwrap();
        let before = s.stats().compaction;
        while seg(moves_at).exists() {
            assert!(s.compact_once().await.unwrap(), "segment {moves_at} was not retired: {:?}", s.stats());
        }
        let st = s.stats().compaction;
        assert_eq!(st.entries_moved - before.entries_moved, KEYS as u64 - 2, "{st:?}");
        // 98 moved objects of 1 KiB and more, in entries of at most 32 KiB:
        // four or five entries (and no filler: its live copy is elsewhere).
        let read = st.entries_read - before.entries_read;
        assert!((4..=5).contains(&read), "{read} entries read for 98 moved objects: {st:?}");
        for i in 2..KEYS {
            let got = s.load(0, format!("k{i:03}").as_bytes()).await.unwrap().unwrap();
            assert_eq!(got.body, tessera_io::Body::Inline(body(i)), "k{i:03}");
        }
    });
}

/// Background compaction removes a retired segment file a step at a time
/// with pauses (`compact::reap`): the file goes, and nothing is left
/// pending, without an explicit compaction to hurry it.
#[test]
fn background_compaction_removes_a_retired_file_step_by_step() {
    const SEG: u64 = 3 * RETIRE_STEP;
    const BODY: usize = 4 << 20;
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let opts = tessera_io::ShardOptions {
            background: true,
            compaction: tessera_io::compact::CompactionOptions {
                interval: std::time::Duration::from_millis(20),
                ..Default::default()
            },
            ..small_segments(SEG)
        };
        let s = Shard::open(dir.path(), 7, opts).await.unwrap();
        // Overwrites of a few keys: segments of garbage.
        for i in 0..16u64 {
            let e = s.write_data(data_buf(&pattern(i, BODY))).await.unwrap();
            s.commit(vec![put_extent(0, format!("k{}", i % 3), e)]).await.unwrap();
        }
        let gone = |s: &Shard| {
            let st = s.stats().compaction;
            st.segments_retired >= 1
                && st.retired_bytes_pending == 0
                && std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".trash"))
        };
        let mut waited = 0;
        while !gone(&s) {
            assert!(waited < 20_000, "retired files not removed: {:?} {:?}", s.stats().compaction, segment_files(dir.path()));
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            waited += 10;
        }
        for i in 13..16u64 {
            assert_eq!(read_body(&s, format!("k{}", i % 3).as_bytes()).await, pattern(i, BODY));
        }
    });
}
