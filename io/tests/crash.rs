//! Torn tails, bitrot and garbage on disk: recovery keeps the valid prefix,
//! reads detect corruption, nothing panics.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tessera_io::format::{segment_file_name, Kind, Pos, RecordHeader, HEADER_BYTES};
use tessera_io::{Body, IoError, Mutation, BLOCK};

const N: u32 = 20;

/// Writes N one-block commits and a last one of five blocks; returns the
/// segment file holding them.
fn write_sample(dir: &Path) -> PathBuf {
    run(async {
        let s = open(dir).await;
        for i in 0..N {
            s.commit(vec![put(
                0,
                format!("k{i:02}").as_bytes(),
                b"",
                &[i as u8; 100],
            )])
            .await
            .unwrap();
        }
        s.commit(vec![put(0, b"last", b"", &pattern(7, 18_000))])
            .await
            .unwrap();
    });
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    files[0].clone()
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Reopens and checks that exactly the first `keep` small commits survive
/// (and "last" iff `last`), then writes again and reopens once more.
fn check_prefix(dir: &Path, keep: u32, last: bool, torn: u32) {
    run(async {
        let s = open(dir).await;
        let st = s.stats();
        assert_eq!(st.recovery.torn_segments, torn, "{st:?}");
        for i in 0..N {
            let k = format!("k{i:02}");
            let got = s.load(0, k.as_bytes()).await.unwrap();
            if i < keep {
                assert_eq!(got.unwrap().body, Body::Inline(vec![i as u8; 100]), "{k}");
            } else {
                assert!(got.is_none(), "{k} should be gone");
            }
        }
        assert_eq!(s.get(0, b"last").is_some(), last);
        s.commit(vec![put(0, b"after", b"", b"x")]).await.unwrap();
    });
    run(async {
        let s = open(dir).await;
        assert!(s.get(0, b"after").is_some());
        assert_eq!(s.len(0) as u32, keep + last as u32 + 1);
    });
}

#[test]
fn intact_log_recovers_all() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    check_prefix(dir.path(), N, true, 0);
}

#[test]
fn truncated_mid_record() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let len = file_len(&seg);
    // The last record is 5 blocks; keep 2 of them.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3 * BLOCK as u64)
        .unwrap();
    check_prefix(dir.path(), N, false, 1);
}

#[test]
fn truncated_unaligned() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let len = file_len(&seg);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    // The partial last block is never scanned, so no record was "invalid".
    check_prefix(dir.path(), N, false, 1);
}

#[test]
fn tail_overwritten_with_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let len = file_len(&seg);
    poke(&seg, len - 5 * BLOCK as u64, &pattern(3, BLOCK));
    check_prefix(dir.path(), N, false, 1);
}

#[test]
fn tail_overwritten_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let len = file_len(&seg);
    poke(&seg, len - 2 * BLOCK as u64, &vec![0; 2 * BLOCK]);
    check_prefix(dir.path(), N, false, 1);
}

#[test]
fn garbage_appended_after_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let len = file_len(&seg);
    // A plausible header for the next record whose payload never landed.
    let mut rec = vec![0u8; BLOCK];
    let h = RecordHeader {
        kind: Kind::Commit,
        shard: 7,
        segment: 1,
        seq: 999,
        payload_len: 100,
        offset: len,
        durable: Pos::default(),
    };
    h.write_and_seal(&mut rec);
    rec[HEADER_BYTES + 5] ^= 0xff;
    poke(&seg, len, &rec);
    poke(&seg, len + BLOCK as u64, &pattern(4, 3 * BLOCK));
    check_prefix(dir.path(), N, true, 1);
}

#[test]
fn lost_write_in_the_middle_drops_what_follows() {
    // Commit 10's block never reached the disk, later ones did: they were
    // never acknowledged, so recovery keeps 0..10 and ignores the rest.
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    poke(&seg, (1 + 10) * BLOCK as u64, &vec![0; BLOCK]);
    check_prefix(dir.path(), 10, false, 1);
}

#[test]
fn corrupt_commit_record_is_detected_on_load() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        s.commit(vec![put(0, b"a", b"", b"hello")]).await.unwrap();
        s.commit(vec![put(0, b"b", b"", b"world")]).await.unwrap();
        let seg = segment_files(dir.path()).pop().unwrap();
        // Record 0 is the segment record, "a" is at block 1, "b" at block 2.
        poke(&seg, BLOCK as u64 + 80, b"X");
        assert!(matches!(
            s.load(0, b"a").await,
            Err(IoError::Corrupt { .. })
        ));
        assert_eq!(
            s.load(0, b"b").await.unwrap().unwrap().body,
            Body::Inline(b"world".to_vec())
        );
    });
}

#[test]
fn corrupt_data_byte_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(11, 300_000);
    let e = run(async {
        let s = open(dir.path()).await;
        let e = s.write_data(data_buf(&body)).await.unwrap();
        s.commit(vec![Mutation::Put {
            table: 0,
            key: b"obj".to_vec(),
            summary: vec![],
            meta: vec![],
            body: Body::Extents(vec![e]),
        }])
        .await
        .unwrap();
        // A later commit's durable mark vouches for "obj"'s data, so recovery
        // trusts it without reading it; the damage shows up on read.
        s.commit(vec![put(0, b"later", b"", b"")]).await.unwrap();
        e
    });
    let seg = segment_files(dir.path()).pop().unwrap();
    // Flip one byte in chunk 1 (data bytes 65536..131072).
    let at = e.offset + BLOCK as u64 + 70_000;
    let mut b = [0u8];
    {
        use std::os::unix::fs::FileExt;
        std::fs::File::open(&seg)
            .unwrap()
            .read_exact_at(&mut b, at)
            .unwrap();
    }
    poke(&seg, at, &[b[0] ^ 0x10]);
    run(async {
        let s = open(dir.path()).await;
        let Body::Extents(ex) = s.load(0, b"obj").await.unwrap().unwrap().body else {
            panic!()
        };
        let e = ex[0];
        // Chunks 0 and 2.. are fine; anything touching chunk 1 is Corrupt.
        assert_eq!(s.read_extent(&e, 0..65_536).await.unwrap(), body[..65_536]);
        assert_eq!(
            s.read_extent(&e, 131_072..300_000).await.unwrap(),
            body[131_072..]
        );
        for r in [65_535..65_537, 70_000..70_001, 0..300_000] {
            match s.read_extent(&e, r.clone()).await {
                Err(IoError::Corrupt { what, offset, .. }) => {
                    assert_eq!(what, "data chunk checksum");
                    assert_eq!(offset, e.offset + BLOCK as u64 + 65_536);
                }
                other => panic!("{r:?}: expected Corrupt, got {other:?}"),
            }
        }
    });
    // The header block's checksum guards the chunk sums themselves.
    run(async {
        let s = open(dir.path()).await;
        poke(&seg, e.offset + HEADER_BYTES as u64, &[0xaa; 8]);
        match s.read_extent(&e, 0..10).await {
            Err(IoError::Corrupt { what, .. }) => assert_eq!(what, "record checksum"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    });
    run(async {
        let s = open(dir.path()).await;
        // Recovery stops at the damaged data record: "obj"'s commit comes after it,
        // and the extent now lies past the segment's valid end.
        assert!(s.get(0, b"obj").is_none());
        assert!(matches!(
            s.read_extent(&e, 0..10).await,
            Err(IoError::InvalidExtent(_))
        ));
    });
}

#[test]
fn garbage_segment_files_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        s.commit(vec![put(0, b"a", b"", b"1")]).await.unwrap();
    });
    // Files the scanner must reject whole: random bytes, zeros, a lone
    // partial block, and a well-formed commit record whose payload is garbage.
    std::fs::write(dir.path().join(segment_file_name(10)), pattern(1, 3 << 20)).unwrap();
    std::fs::write(dir.path().join(segment_file_name(11)), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(dir.path().join(segment_file_name(12)), b"TSRL").unwrap();
    let mut f = vec![0u8; 2 * BLOCK];
    RecordHeader {
        kind: Kind::Segment,
        shard: 7,
        segment: 13,
        seq: 0,
        payload_len: 0,
        offset: 0,
        durable: Pos::default(),
    }
    .write_and_seal(&mut f[..BLOCK]);
    let rec = &mut f[BLOCK..];
    rec[HEADER_BYTES..HEADER_BYTES + 1000].copy_from_slice(&pattern(9, 1000));
    rec[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&3u32.to_le_bytes());
    RecordHeader {
        kind: Kind::Commit,
        shard: 7,
        segment: 13,
        seq: 5,
        payload_len: 1000,
        offset: BLOCK as u64,
        durable: Pos::default(),
    }
    .write_and_seal(rec);
    std::fs::write(dir.path().join(segment_file_name(13)), &f).unwrap();
    // A segment of another shard copied in.
    let mut other = vec![0u8; BLOCK];
    RecordHeader {
        kind: Kind::Segment,
        shard: 8,
        segment: 14,
        seq: 0,
        payload_len: 0,
        offset: 0,
        durable: Pos::default(),
    }
    .write_and_seal(&mut other);
    std::fs::write(dir.path().join(segment_file_name(14)), &other).unwrap();
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats();
        assert_eq!(s.len(0), 1);
        assert_eq!(st.recovery.segments, 6);
        assert_eq!(st.recovery.torn_segments, 5, "{st:?}");
        assert_eq!(st.active_segment, 15);
        s.commit(vec![put(0, b"b", b"", b"2")]).await.unwrap();
    });
    run(async {
        assert_eq!(open(dir.path()).await.len(0), 2);
    });
}

/// Writes "before", then "obj" (data + commit that also deletes "before")
/// as the very last records, with no later open vouching for them.
fn write_unvouched(dir: &Path, body: &[u8]) -> tessera_io::Extent {
    run(async {
        let s = open(dir).await;
        s.commit(vec![put(0, b"before", b"", b"x")]).await.unwrap();
        let e = s.write_data(data_buf(body)).await.unwrap();
        let obj = Mutation::Put {
            table: 0,
            key: b"obj".to_vec(),
            summary: vec![],
            meta: vec![],
            body: Body::Extents(vec![e]),
        };
        s.commit(vec![obj, del(0, b"before")]).await.unwrap();
        e
    })
}

#[test]
fn unvouched_commit_with_intact_data_is_verified_once() {
    let dir = tempfile::tempdir().unwrap();
    write_unvouched(dir.path(), &pattern(12, 200_000));
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats();
        assert_eq!(st.recovery.verified_commits, 1, "{st:?}");
        assert!(s.get(0, b"obj").is_some() && s.get(0, b"before").is_none());
    });
    // The segment record written by that open vouches for it from now on.
    run(async {
        let s = open(dir.path()).await;
        assert_eq!(s.stats().recovery.verified_commits, 0);
        assert!(s.get(0, b"obj").is_some());
    });
}

#[test]
fn unvouched_commit_with_torn_data_is_cut_off_for_good() {
    // The last commit's data is damaged and no later mark proves it was ever
    // durable: like a power cut between the data write and the sync, the
    // commit was never acknowledged. Recovery verifies, drops it, and
    // truncates so later opens (with new, higher marks) cannot revive it.
    let dir = tempfile::tempdir().unwrap();
    let e = write_unvouched(dir.path(), &pattern(12, 200_000));
    let seg = segment_files(dir.path())[0].clone();
    poke(&seg, e.offset + BLOCK as u64 + 150_000, &[0xee; 16]);
    let cut = run(async {
        let s = open(dir.path()).await;
        let st = s.stats();
        assert_eq!(st.recovery.dropped_commits, 1, "{st:?}");
        assert!(s.get(0, b"obj").is_none());
        assert!(
            s.get(0, b"before").is_some(),
            "the dropped commit's delete is undone too"
        );
        s.commit(vec![put(0, b"new", b"", b"")]).await.unwrap();
        std::fs::metadata(&seg).unwrap().len()
    });
    // Later runs carry higher marks; the dropped commit stays gone.
    for _ in 0..2 {
        run(async {
            let s = open(dir.path()).await;
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), cut);
            assert!(s.get(0, b"obj").is_none());
            assert!(s.get(0, b"before").is_some() && s.get(0, b"new").is_some());
            assert_eq!(s.stats().recovery.dropped_commits, 0);
        });
    }
}
