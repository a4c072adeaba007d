//! Zeros written ahead of the log's head (`shard/prepare.rs`): small
//! commits land on blocks the segment already has, a restart cuts the
//! zeros without calling them torn, a roll cuts them off the sealed
//! segment, and a sealed segment a crash left with zeros (or anything)
//! after its end is read only to the end its successor names.

mod common;

use std::path::Path;

use common::*;
use tessera_io::format::BLOCK;
use tessera_io::{Body, Shard};

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

async fn small_commits(s: &Shard, from: u32, n: u32) {
    for i in from..from + n {
        let key = format!("k{i:04}");
        s.commit(vec![put(0, key.as_bytes(), b"", &pattern(i as u64, 3000))])
            .await
            .unwrap();
    }
}

async fn all_there(s: &Shard, n: u32) {
    for i in 0..n {
        let key = format!("k{i:04}");
        let got = s.load(0, key.as_bytes()).await.unwrap().unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(got.body, Body::Inline(pattern(i as u64, 3000)), "{key}");
    }
}

#[test]
fn small_commits_land_on_zeros_written_ahead_and_a_restart_cuts_the_rest_as_no_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let active = run(async {
        let s = Shard::open(dir.path(), 7, opts()).await.unwrap();
        small_commits(&s, 0, 300).await;
        let st = s.stats();
        assert!(st.direct_io, "O_DIRECT is what this is for");
        assert!(st.prepare.steps >= 1 && st.prepare.failed_steps == 0, "{:?}", st.prepare);
        assert!(st.syncs >= 300, "one sync per sequential commit: {}", st.syncs);
        segment_files(dir.path()).last().unwrap().clone()
    });
    // The active segment holds zeros after its records.
    let len = file_len(&active);
    assert!(len >= 8 << 20, "a step of zeros ahead of the records: {len}");
    run(async {
        let s = Shard::open(dir.path(), 7, opts()).await.unwrap();
        let r = s.stats().recovery;
        assert_eq!((r.torn_bytes, r.corrupt_regions, r.lost_commits), (0, 0, 0), "{r:?}");
        assert!(r.zeros_ahead_bytes > 0 && r.zeros_ahead_bytes < len, "{r:?}");
        all_there(&s, 300).await;
    });
    // Cut back to the records at the restart (which then began a segment).
    assert!(file_len(&active) < len);
    assert_eq!(file_len(&active) % BLOCK as u64, 0);
}

#[test]
fn a_roll_cuts_the_zeros_off_and_a_sealed_segment_is_read_to_the_end_its_successor_names() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB segments: steps of 128 KiB, several rolls.
    let opts = small_segments(1 << 20);
    let sealed = run(async {
        let s = Shard::open(dir.path(), 7, opts.clone()).await.unwrap();
        // Small commits, then a record too big for what the segment has
        // left: the roll leaves zeros after the records to cut.
        for round in 0..4u32 {
            small_commits(&s, round * 300, 300).await;
            let e = s.write_data(data_buf(&pattern(round as u64, 700 << 10))).await.unwrap();
            s.commit(vec![put_extent(0, format!("big{round}"), e)]).await.unwrap();
        }
        let st = s.stats();
        assert!(st.segments >= 3, "{}", st.segments);
        assert!(st.prepare.steps >= 3 && st.prepare.tails_cut >= 1, "{:?}", st.prepare);
        segment_files(dir.path())
    });
    // What a crash between the roll and its cut reaching the disk leaves:
    // a sealed segment longer than its records, zeros and then garbage.
    // (The last files are the active one and the next, created ahead.)
    let victim = &sealed[0];
    let len = file_len(victim);
    std::fs::OpenOptions::new().write(true).open(victim).unwrap().set_len(len + 4 * BLOCK as u64).unwrap();
    poke(victim, len + 2 * BLOCK as u64, &pattern(9, 2 * BLOCK));
    run(async {
        let s = Shard::open(dir.path(), 7, opts.clone()).await.unwrap();
        let r = s.stats().recovery;
        assert_eq!((r.torn_bytes, r.corrupt_regions, r.lost_commits, r.missing_segments), (0, 0, 0, 0), "{r:?}");
        assert!(r.zeros_ahead_bytes >= 4 * BLOCK as u64, "{r:?}");
        all_there(&s, 1200).await;
    });
    assert_eq!(file_len(victim), len, "cut back to its end");
}

#[test]
fn large_commits_do_not_write_ahead() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = Shard::open(dir.path(), 7, opts()).await.unwrap();
        // 2 MiB per commit: the metadata of a sync is small beside it.
        for i in 0..24u32 {
            let e = s.write_data(data_buf(&pattern(i as u64, 2 << 20))).await.unwrap();
            s.commit(vec![put_extent(0, format!("big{i}"), e)]).await.unwrap();
        }
        let st = s.stats();
        // The first step is taken before anything is known.
        assert!(st.prepare.steps <= 2, "{:?}, {} bytes in {} syncs", st.prepare, st.bytes_appended, st.syncs);
    });
}
