//! Torn tails, bit rot and garbage on real files: recovery cuts only what
//! was never acknowledged, resyncs past corruption without rolling history
//! back, takes damaged commits from their copies, reports what it lost,
//! and never accepts a record forged inside object data.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tessera_io::format::{
    segment_file_name, EntryHeader, Kind, Pos, RecordHeader, ShardFile, BLOCK, HEADER_BYTES,
    SHARD_FILE,
};
use tessera_io::{Body, IoError, Shard};

const N: u32 = 20;

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Offsets of the valid batch records of a segment file (by walking headers).
fn batches(path: &Path) -> Vec<(u64, RecordHeader)> {
    walk(path).0
}

/// Where a segment file's records end (zeros written ahead may follow).
fn records_end(path: &Path) -> u64 {
    walk(path).1
}

fn walk(path: &Path) -> (Vec<(u64, RecordHeader)>, u64) {
    let bytes = read(path);
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER_BYTES <= bytes.len() {
        let Ok(h) = RecordHeader::decode(&bytes[pos..]) else {
            if pos % BLOCK != 0 {
                // Zero padding after a copy that ends inside a block.
                pos = pos.div_ceil(BLOCK) * BLOCK;
                continue;
            }
            break;
        };
        if h.kind == Kind::Batch {
            out.push((pos as u64, h));
        }
        pos += h.record_len() as usize;
    }
    (out, pos as u64)
}

/// N commits of one inline object each, one batch each (sequential).
fn write_sample(dir: &Path) -> PathBuf {
    run(async {
        let s = open(dir).await;
        for i in 0..N {
            let key = format!("k{i:02}");
            s.commit(vec![put(0, key.as_bytes(), b"", &[i as u8; 100])])
                .await
                .unwrap();
        }
    });
    segment_files(dir)[0].clone()
}

#[test]
fn intact_log_recovers_all() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats().recovery;
        assert_eq!((st.torn_bytes, st.corrupt_regions, st.lost_commits), (0, 0, 0));
        assert_eq!(s.len(0), N as usize);
    });
}

#[test]
fn torn_last_batch_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let last = batches(&seg).last().unwrap().0;
    // A write that never completed: the last batch is half there.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(last + BLOCK as u64 / 2)
        .unwrap();
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats().recovery;
        assert!(st.torn_bytes > 0, "{st:?}");
        assert_eq!(st.corrupt_regions, 0, "a torn tail is not corruption: {st:?}");
        for i in 0..N - 1 {
            let got = s.load(0, format!("k{i:02}").as_bytes()).await.unwrap();
            assert_eq!(got.unwrap().body, Body::Inline(vec![i as u8; 100]));
        }
        assert!(s.get(0, format!("k{:02}", N - 1).as_bytes()).is_none());
        s.commit(vec![put(0, b"after", b"", b"x")]).await.unwrap();
    });
    run(async {
        let s = open(dir.path()).await;
        assert!(s.get(0, b"after").is_some());
        assert_eq!(s.stats().recovery.corrupt_regions, 0);
    });
}

#[test]
fn garbage_after_the_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    // Garbage right after the records, where zeros written ahead were.
    let len = records_end(&seg);
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len).unwrap();
    poke(&seg, len, &pattern(3, 3 * BLOCK));
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats().recovery;
        assert_eq!(st.torn_bytes, 3 * BLOCK as u64, "{st:?}");
        assert_eq!(st.corrupt_regions, 0);
        assert_eq!(s.len(0), N as usize);
    });
    assert_eq!(file_len(&seg), len, "cut back to the valid end");
}

/// The regression of the first defect of issue 6: bit rot in a batch in
/// the middle of an old segment, with later segments holding overwrites
/// and deletes, must not undo anything acknowledged.
#[test]
fn bitrot_in_an_old_batch_rolls_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    // Segment 1: keys a00..a39. Segment 2 (after a reopen): overwrites and deletes.
    run(async {
        let s = open(dir.path()).await;
        for i in 0..40u32 {
            s.commit(vec![put(0, format!("a{i:02}").as_bytes(), b"v1", b"one")])
                .await
                .unwrap();
        }
    });
    run(async {
        let s = open(dir.path()).await;
        for i in (0..40u32).step_by(3) {
            s.commit(vec![put(0, format!("a{i:02}").as_bytes(), b"v2", b"two")])
                .await
                .unwrap();
        }
        for i in (1..40u32).step_by(3) {
            s.commit(vec![del(0, format!("a{i:02}").as_bytes())])
                .await
                .unwrap();
        }
    });
    let seg1 = dir.path().join(segment_file_name(1));
    let mid = batches(&seg1)[20].0;
    poke(&seg1, mid + 20, &[0xFF]); // the batch header's seq field
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats().recovery;
        assert!(st.corrupt_regions >= 1, "corruption reported: {st:?}");
        assert_eq!(st.lost_commits, 0, "{st:?}");
        assert_eq!(st.torn_bytes, 0, "{st:?}");
        for i in 0..40u32 {
            let k = format!("a{i:02}");
            let got = s.get(0, k.as_bytes());
            match i % 3 {
                0 => assert_eq!(got.unwrap().summary.as_ref(), b"v2", "{k} overwrite undone"),
                1 => assert!(got.is_none(), "{k} delete undone"),
                _ => assert_eq!(got.unwrap().summary.as_ref(), b"v1", "{k} lost"),
            }
        }
    });
}

/// Offset of the copy entry of the batch at `at` (its first entry).
fn copy_entry(path: &Path, at: u64, h: &RecordHeader) -> u64 {
    let copy_at = at + h.record_len();
    let bytes = read(path);
    let c = RecordHeader::decode(&bytes[copy_at as usize..]).unwrap();
    assert_eq!(c.kind, Kind::BatchCopy);
    copy_at + HEADER_BYTES as u64 + 16
}

#[test]
fn a_commit_lost_in_both_copies_is_reported_and_later_ones_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        for i in 0..10u32 {
            s.commit(vec![put(0, format!("b{i}").as_bytes(), b"v1", b"x")])
                .await
                .unwrap();
        }
        // Commit 11 (batch 10): writes c and overwrites b2.
        s.commit(vec![put(0, b"c", b"only", b"y"), put(0, b"b2", b"v2", b"z")])
            .await
            .unwrap();
        // Later: overwrite c, delete b3.
        s.commit(vec![put(0, b"c", b"later", b"w")]).await.unwrap();
        s.commit(vec![del(0, b"b3")]).await.unwrap();
    });
    let seg = segment_files(dir.path())[0].clone();
    let (at, h) = batches(&seg)[10];
    // Destroy the entry and its copy.
    poke(&seg, at + HEADER_BYTES as u64 + 30, &[0x5A; 8]);
    poke(&seg, copy_entry(&seg, at, &h) + 30, &[0x5A; 8]);
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats().recovery;
        assert_eq!(st.lost_commits, 1, "{st:?}");
        // Later commits still apply: nothing after the loss is rolled back.
        assert_eq!(s.get(0, b"c").unwrap().summary.as_ref(), b"later");
        assert!(s.get(0, b"b3").is_none());
        // What only the lost commit wrote is the older version: reported above.
        assert_eq!(s.get(0, b"b2").unwrap().summary.as_ref(), b"v1");
    });
}

#[test]
fn damaged_entry_is_served_from_its_copy_or_refused_never_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(5, 200_000);
    run(async {
        let s = open(dir.path()).await;
        let mut ex = Vec::new();
        for c in body.chunks(100_000) {
            ex.push(s.write_data(data_buf(c)).await.unwrap());
        }
        s.commit(vec![tessera_io::Mutation::Put {
            table: 0,
            key: b"big".to_vec(),
            summary: b"s".to_vec(),
            meta: b"m".to_vec(),
            body: Body::Extents(ex),
        }])
        .await
        .unwrap();
        s.commit(vec![put(0, b"small", b"s", b"inline bytes")])
            .await
            .unwrap();
        // Vouched for by a later record: damage to them is corruption, not a torn tail.
        s.mark().await.unwrap();
    });
    let seg = segment_files(dir.path())[0].clone();
    let all = batches(&seg);
    let all = &all[..all.len() - 1]; // the last batch is the (empty) mark
    for (at, _) in &all[all.len() - 2..] {
        poke(&seg, at + HEADER_BYTES as u64 + 40, &[0x11]);
    }
    run(async {
        let s = open(dir.path()).await;
        // Recovery took both from the copies.
        assert_eq!(s.stats().recovery.commits_from_copy, 2);
        // The extent body needs only metadata: served in full.
        let st = s.load(0, b"big").await.unwrap().unwrap();
        let Body::Extents(ex) = st.body else { panic!() };
        let mut got = Vec::new();
        for e in &ex {
            got.extend(s.read_extent(e, 0..e.len).await.unwrap());
        }
        assert_eq!(got, body);
        // The inline body went down with its entry: an error, not wrong bytes.
        assert!(matches!(
            s.load(0, b"small").await,
            Err(IoError::Corrupt { .. })
        ));
    });
}

#[test]
fn corrupt_data_byte_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(9, 300_000);
    let ext = run(async {
        let s = open(dir.path()).await;
        let e = s.write_data(data_buf(&body)).await.unwrap();
        s.commit(vec![put_extent(0, b"o", e)])
        .await
        .unwrap();
        // What an idle shard (or one shutting down) writes: a mark that
        // vouches for everything before it, so bit rot found later is
        // corruption, not a torn tail.
        s.mark().await.unwrap();
        e
    });
    let seg = dir.path().join(segment_file_name(ext.segment));
    // A byte in the third 64 KiB chunk.
    poke(&seg, ext.offset + BLOCK as u64 + 2 * 65536 + 7, &[0x42]);
    run(async {
        let s = open(dir.path()).await;
        let st = s.load(0, b"o").await.unwrap().unwrap();
        let Body::Extents(ex) = st.body else { panic!() };
        // Chunks before the damage read fine; any range touching it fails.
        assert_eq!(s.read_extent(&ex[0], 0..65536).await.unwrap(), &body[..65536]);
        assert!(matches!(
            s.read_extent(&ex[0], 131_000..140_000).await,
            Err(IoError::Corrupt { .. })
        ));
        assert_eq!(s.stats().corrupt_reads, 1);
        // The scrubber finds it too.
        s.commit(vec![put(0, b"roll", b"", b"")]).await.unwrap();
    });
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(4 * BLOCK as u64)).await.unwrap();
        // Force a roll so the segment is sealed, then scrub.
        s.commit(vec![put(0, b"x", b"", &[1; 20_000])]).await.unwrap();
        s.commit(vec![put(0, b"y", b"", &[1; 20_000])]).await.unwrap();
        let st = s.scrub_all().await.unwrap();
        assert!(st.errors >= 1, "{st:?}");
    });
}

#[test]
fn garbage_segment_files_do_not_panic() {
    for (i, content) in [
        vec![],
        vec![0u8; 100],
        vec![0xff; 3 * BLOCK],
        pattern(1, 5 * BLOCK),
        {
            let mut v = vec![0u8; 2 * BLOCK];
            v[..4].copy_from_slice(b"TSRL");
            v
        },
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        write_sample(dir.path());
        std::fs::write(dir.path().join(segment_file_name(2 + i as u32)), &content).unwrap();
        run(async {
            let s = open(dir.path()).await;
            assert_eq!(s.len(0), N as usize, "case {i}");
            s.commit(vec![put(0, b"more", b"", b"")]).await.unwrap();
        });
    }
}

/// A commit whose data record was torn (past the durable mark: it was never
/// acknowledged) is cut off, and stays cut off at later opens.
#[test]
fn commit_with_torn_data_past_the_mark_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(4, 100_000);
    let ext = run(async {
        let s = open(dir.path()).await;
        s.commit(vec![put(0, b"before", b"", b"b")]).await.unwrap();
        let e = s.write_data(data_buf(&body)).await.unwrap();
        s.commit(vec![put_extent(0, b"torn", e)])
        .await
        .unwrap();
        e
    });
    let seg = dir.path().join(segment_file_name(ext.segment));
    poke(&seg, ext.offset + BLOCK as u64 + 70_000, &[0; 512]);
    for _ in 0..2 {
        run(async {
            let s = open(dir.path()).await;
            assert!(s.get(0, b"before").is_some());
            assert!(s.get(0, b"torn").is_none());
            assert_eq!(s.stats().recovery.corrupt_regions, 0);
        });
    }
}

/// Object bytes are user data. A record forged inside an object body (here
/// found by a resync past a damaged data record header) must be refused:
/// record checksums are keyed with the shard's secret.
#[test]
fn a_record_forged_inside_object_data_is_never_accepted() {
    for with_real_key in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let key = if with_real_key {
            // Only to show the test can fail: someone holding the key can forge.
            let _ = run(async { open(dir.path()).await });
            ShardFile::decode(&read(&dir.path().join(SHARD_FILE))).unwrap().key
        } else {
            [0x42; 16]
        };
        let (seg, rec_at) = run(async {
            let s = open(dir.path()).await;
            s.commit(vec![put(0, b"real", b"", b"r")]).await.unwrap();
            let probe = s.write_data(data_buf(&[1; 4096])).await.unwrap();
            // The next data record lands right after the probe.
            let next_at = probe.offset + 2 * BLOCK as u64;
            let forged_at = next_at + BLOCK as u64;
            let forged = forge_batch(&key, 7, probe.segment, forged_at, b"stolen");
            let mut payload = forged;
            payload.resize(8 * BLOCK, 0);
            let e = s.write_data(data_buf(&payload)).await.unwrap();
            assert_eq!(e.offset, next_at);
            s.commit(vec![put_extent(0, b"carrier", e)])
            .await
            .unwrap();
            s.commit(vec![put(0, b"after", b"", b"a")]).await.unwrap();
            (dir.path().join(segment_file_name(e.segment)), e.offset)
        });
        // Damage the carrier's header so recovery resyncs through its payload.
        poke(&seg, rec_at + 20, &[0xEE]);
        run(async {
            let s = open(dir.path()).await;
            assert!(s.get(0, b"real").is_some());
            assert!(s.get(0, b"after").is_some(), "resynced past the damage");
            assert_eq!(
                s.get(0, b"stolen").is_some(),
                with_real_key,
                "forged record accepted without the key"
            );
        });
    }
}

/// A batch record holding one commit that puts `key`, sealed with `key`.
fn forge_batch(shard_key: &[u8; 16], shard: u32, segment: u32, at: u64, key: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    // One put: op 1, table 0, key, summary, meta, inline body.
    payload.extend_from_slice(&[1, 0]);
    payload.extend_from_slice(&(key.len() as u16).to_le_bytes());
    payload.extend_from_slice(key);
    payload.extend_from_slice(&0u16.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.push(0);
    payload.extend_from_slice(&4u32.to_le_bytes());
    payload.extend_from_slice(b"evil");
    let eh = EntryHeader {
        len: payload.len() as u32,
        flags: 0,
        count: 1,
        seq: 1_000_000,
    };
    let mut entry = vec![0u8; 24];
    entry.extend_from_slice(&payload);
    let entry_at = Pos {
        segment,
        offset: at + HEADER_BYTES as u64,
    };
    eh.seal(shard_key, &mut entry, shard, entry_at);
    let mut rec = vec![0u8; BLOCK];
    rec[HEADER_BYTES..HEADER_BYTES + entry.len()].copy_from_slice(&entry);
    let h = RecordHeader {
        version: 2,
        copy_len: 0,
        kind: Kind::Batch,
        shard,
        segment,
        seq: 1_000_000,
        payload_len: entry.len() as u64,
        offset: at,
        count: 1,
        // Claims everything up to here is durable.
        durable: Pos {
            segment,
            offset: at,
        },
    };
    h.write_and_seal(shard_key, &mut rec);
    rec
}

/// A sealed segment whose last blocks are gone (a lost or misdirected
/// write found only after it was synced and acknowledged): the log's next
/// segment vouches for the length it had, so the object whose data lay
/// there is reported corrupt on read — never an index pointing outside its
/// log, and nothing else is lost (seed 98871 of the simulation).
#[test]
fn lost_tail_of_a_sealed_segment_reads_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let seg_bytes = 8 * BLOCK as u64;
    // Segment record (1 block) + data record (1 header block + 6 payload
    // blocks) fill the first segment; the commit goes to the next.
    let body = pattern(5, 6 * BLOCK);
    let ext = run(async {
        let s = Shard::open(dir.path(), 7, small_segments(seg_bytes)).await.unwrap();
        let e = s.write_data(data_buf(&body)).await.unwrap();
        s.commit(vec![put_extent(0, b"o", e)])
        .await
        .unwrap();
        s.commit(vec![put(0, b"after", b"", b"a")]).await.unwrap();
        s.mark().await.unwrap();
        e
    });
    let seg = dir.path().join(segment_file_name(ext.segment));
    let end = ext.offset + BLOCK as u64 + body.len() as u64;
    assert_eq!(file_len(&seg), end, "the data record must end its segment");
    assert!(
        segment_files(dir.path()).len() >= 2,
        "the commit must be in a later segment"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(end - BLOCK as u64)
        .unwrap();
    for _ in 0..2 {
        run(async {
            let s = Shard::open(dir.path(), 7, small_segments(seg_bytes)).await.unwrap();
            assert!(s.stats().recovery.found_corruption(), "{:?}", s.recovery_problems());
            assert_eq!(s.load(0, b"after").await.unwrap().unwrap().body, Body::Inline(b"a".to_vec()));
            let st = s.load(0, b"o").await.unwrap().unwrap();
            let Body::Extents(ex) = st.body else { panic!("extents expected") };
            // (Checksums cover 64 KiB chunks: this body is one chunk.)
            let r = s.read_extent(&ex[0], 0..ex[0].len).await;
            assert!(matches!(r, Err(IoError::Corrupt { .. })), "{r:?}");
        });
    }
}

/// A torn rewrite: a packed batch's write rewrites the last block of the
/// copy before it, and power lost mid-write may leave that block's old
/// bytes damaged. Only that copy suffers (its batch lies wholly in earlier
/// blocks): nothing is lost, nothing is reported as corruption of
/// acknowledged data, and the damaged copy is counted.
#[test]
fn torn_rewrite_damages_only_the_copy_before() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_sample(dir.path());
    let all = batches(&seg);
    // A batch packed after a copy (starting inside the copy's last block).
    let (at, _) = *all
        .iter()
        .skip(5)
        .find(|(at, _)| at % BLOCK as u64 != 0)
        .expect("sequential small commits are packed");
    let block = at / BLOCK as u64 * BLOCK as u64;
    let mut bytes = read(&seg);
    for b in &mut bytes[block as usize..at as usize] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, &bytes).unwrap();
    for _ in 0..2 {
        run(async {
            let s = open(dir.path()).await;
            let r = s.stats().recovery;
            assert!(!r.found_corruption(), "{r:?} {:?}", s.recovery_problems());
            assert_eq!(r.damaged_copies, 1, "{:?}", s.recovery_problems());
            for i in 0..N {
                let key = format!("k{i:02}");
                let st = s.load(0, key.as_bytes()).await.unwrap().unwrap();
                assert_eq!(st.body, Body::Inline(vec![i as u8; 100]), "{key}");
            }
        });
    }
}
