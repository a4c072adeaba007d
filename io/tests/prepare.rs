//! Zeros written ahead of the log's head (`shard/prepare.rs`): small
//! commits land on blocks the segment already has, a restart cuts the
//! zeros without calling them torn, a roll cuts them off the sealed
//! segment, and a sealed segment a crash left with zeros (or anything)
//! after its end is read only to the end its successor names. Large
//! commits get space allocated ahead instead (fallocate), cut the same
//! ways.

mod common;

use std::path::Path;

use common::*;
use tessera_io::format::BLOCK;
use tessera_io::{Body, Shard};

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Bytes of disk the file has (allocated, written or not).
fn file_blocks_bytes(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks() * 512
}

async fn large_commits(s: &Shard, from: u32, n: u32, len: usize) {
    for i in from..from + n {
        let e = s.write_data(data_buf(&pattern(i as u64, len))).await.unwrap();
        s.commit(vec![put_extent(0, format!("big{i:04}"), e)]).await.unwrap();
    }
}

async fn large_there(s: &Shard, n: u32, len: usize) {
    for i in 0..n {
        let key = format!("big{i:04}");
        let got = s.load(0, key.as_bytes()).await.unwrap().unwrap_or_else(|| panic!("{key} lost"));
        let Body::Extents(es) = got.body else { panic!("{key}: not extents: {:?}", got.body) };
        let mut bytes = Vec::new();
        for e in &es {
            bytes.extend(s.read_extent(e, 0..e.len).await.unwrap());
        }
        assert!(bytes == pattern(i as u64, len), "{key}: wrong bytes");
    }
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

/// 2 MiB commits, one at a time: the active segment's file is allocated
/// ahead of its records (its size and its blocks run past them: appends
/// there do not extend the file); a restart finds the rest zeros, not a
/// torn tail, cuts it, and every body reads back.
async fn large_commits_allocate_ahead(dir: &Path) -> (u64, u64) {
    let s = Shard::open(dir, 7, opts()).await.unwrap();
    large_commits(&s, 0, 24, 2 << 20).await;
    let st = s.stats();
    assert!(st.direct_io, "O_DIRECT is what this is for");
    assert!(st.prepare.allocations >= 1 && st.prepare.failed_allocations == 0, "{:?}", st.prepare);
    assert!(st.prepare.allocated_bytes >= 64 << 20, "{:?}", st.prepare);
    assert!(st.prepare.steps <= 2, "no zeros written for large commits: {:?}", st.prepare);
    (st.bytes_appended, st.prepare.allocated_bytes)
}

fn allocation_ahead_then_restart(legacy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (appended, _) = if legacy {
        run_legacy(large_commits_allocate_ahead(dir.path()))
    } else {
        run(large_commits_allocate_ahead(dir.path()))
    };
    let active = segment_files(dir.path()).last().unwrap().clone();
    let len = file_len(&active);
    assert!(len >= appended + (32 << 20), "allocated ahead of {appended} appended bytes: {len}");
    assert!(file_blocks_bytes(&active) >= len, "allocated, not sparse: {} of {len}", file_blocks_bytes(&active));
    let reopen = async {
        let s = Shard::open(dir.path(), 7, opts()).await.unwrap();
        let r = s.stats().recovery;
        assert_eq!((r.torn_bytes, r.corrupt_regions, r.lost_commits), (0, 0, 0), "{r:?}");
        assert!(r.zeros_ahead_bytes >= 32 << 20 && r.zeros_ahead_bytes < len, "{r:?}");
        large_there(&s, 24, 2 << 20).await;
    };
    if legacy {
        run_legacy(reopen)
    } else {
        run(reopen)
    }
    let cut = file_len(&active);
    assert!(cut < len && cut <= appended + (4 << 10), "cut back to the records: {cut} of {len}");
    assert_eq!(cut % BLOCK as u64, 0);
}

#[test]
fn large_commits_allocate_ahead_and_a_restart_cuts_the_allocation_as_no_torn_tail() {
    allocation_ahead_then_restart(false);
}

#[test]
fn large_commits_allocate_ahead_under_the_epoll_driver_too() {
    allocation_ahead_then_restart(true);
}

#[test]
fn a_roll_cuts_the_allocation_off_the_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB segments: allocation steps of 128 KiB, up to 256 KiB ahead;
    // 300 KiB commits fill a segment in three, and the roll leaves
    // allocated space after the last record.
    let opts = small_segments(1 << 20);
    run(async {
        let s = Shard::open(dir.path(), 7, opts.clone()).await.unwrap();
        large_commits(&s, 0, 30, 300 << 10).await;
        let st = s.stats();
        assert!(st.segments >= 4, "{}", st.segments);
        assert!(st.prepare.allocations >= 4 && st.prepare.tails_cut >= 3, "{:?}", st.prepare);
        large_there(&s, 30, 300 << 10).await;
    });
    // Every sealed segment ends in its last record: its last block is not
    // allocated zeros. (The last two files are the active segment and the
    // one created ahead for the next roll.)
    let files = segment_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    for f in &files[..files.len() - 2] {
        let bytes = std::fs::read(f).unwrap();
        assert!(bytes.len() % BLOCK == 0 && !bytes.is_empty(), "{f:?}: {}", bytes.len());
        let last = &bytes[bytes.len() - BLOCK..];
        assert!(last.iter().any(|&b| b != 0), "{f:?} ends in {} bytes of zeros after its records", BLOCK);
    }
    run(async {
        let s = Shard::open(dir.path(), 7, opts.clone()).await.unwrap();
        let r = s.stats().recovery;
        assert_eq!((r.torn_bytes, r.corrupt_regions, r.lost_commits, r.missing_segments), (0, 0, 0, 0), "{r:?}");
        large_there(&s, 30, 300 << 10).await;
    });
}
