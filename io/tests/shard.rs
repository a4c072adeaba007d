//! The shard API end to end on real files: puts, deletes, bodies, ranges,
//! reopen, group commit, segment roll, odd keys, both runtime drivers.

mod common;

use std::rc::Rc;

use common::*;
use tessera_io::{Body, Extent, IoError, Mutation, Shard, ShardOptions, CHUNK_BYTES};

#[test]
fn put_get_load_delete() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        assert!(s.get(0, b"a").is_none());
        assert!(s.load(0, b"a").await.unwrap().is_none());

        let seq1 = s
            .commit(vec![put(0, b"a", b"sum-a", b"body-a")])
            .await
            .unwrap();
        let e = s.get(0, b"a").unwrap();
        assert_eq!((e.seq, e.summary.as_ref()), (seq1, &b"sum-a"[..]));
        let st = s.load(0, b"a").await.unwrap().unwrap();
        assert_eq!(st.seq, seq1);
        assert_eq!(st.summary, b"sum-a");
        assert_eq!(st.meta, b"meta:a");
        assert_eq!(st.body, Body::Inline(b"body-a".to_vec()));

        // Replace; the same key in another table is independent.
        let seq2 = s
            .commit(vec![
                put(0, b"a", b"sum-a2", b"body-a2"),
                put(3, b"a", b"bucket", b""),
            ])
            .await
            .unwrap();
        assert!(seq2 > seq1);
        assert_eq!(
            s.load(0, b"a").await.unwrap().unwrap().body,
            Body::Inline(b"body-a2".to_vec())
        );
        assert_eq!(s.get(3, b"a").unwrap().seq, seq2);
        assert_eq!((s.len(0), s.len(3), s.len(1)), (1, 1, 0));

        // Delete, and delete of a missing key.
        s.commit(vec![del(0, b"a"), del(0, b"never")])
            .await
            .unwrap();
        assert!(s.get(0, b"a").is_none());
        assert!(s.load(0, b"a").await.unwrap().is_none());
        assert_eq!(s.len(0), 0);
        assert!(s.get(3, b"a").is_some());

        // Put then delete in one commit: the delete wins; empty commit is fine.
        s.commit(vec![put(1, b"u", b"", b""), del(1, b"u")])
            .await
            .unwrap();
        assert!(s.get(1, b"u").is_none());
        s.commit(vec![]).await.unwrap();

        let st = s.stats();
        assert!(st.io_uring == tessera_io::io_uring_available());
        println!("stats: {st:?}");
    });
}

#[test]
fn extent_bodies_and_range_reads() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        // Three records: 1 MiB, 1 MiB, and an odd tail that is not block aligned.
        let parts: Vec<Vec<u8>> =
            vec![pattern(1, 1 << 20), pattern(2, 1 << 20), pattern(3, 70_001)];
        let mut extents = Vec::new();
        for p in &parts {
            extents.push(s.write_data(data_buf(p)).await.unwrap());
        }
        assert_eq!(extents[2].len, 70_001);
        assert!(extents.iter().all(|e| e.offset % 4096 == 0));
        let syncs_before = s.stats().syncs;
        s.commit(vec![Mutation::Put {
            table: 0,
            key: b"big".to_vec(),
            summary: b"3 parts".to_vec(),
            meta: b"m".to_vec(),
            body: Body::Extents(extents.clone()),
        }])
        .await
        .unwrap();
        // One sync covers the data records and the commit record.
        assert_eq!(s.stats().syncs - syncs_before, 1);

        let st = s.load(0, b"big").await.unwrap().unwrap();
        assert_eq!(st.body, Body::Extents(extents.clone()));
        for (e, p) in extents.iter().zip(&parts) {
            assert_eq!(&s.read_extent(e, 0..e.len).await.unwrap(), p);
        }
        let c = CHUNK_BYTES as u64;
        let e = &extents[0];
        let p = &parts[0];
        let ranges = [
            0..1,
            1..4097,
            4095..4097,
            c - 1..c + 1,
            c..2 * c,
            3 * c + 5..7 * c + 9,
            e.len - 1..e.len,
            e.len..e.len,
            100..100,
        ];
        for r in ranges {
            let got = s.read_extent(e, r.clone()).await.unwrap();
            assert_eq!(got, p[r.start as usize..r.end as usize], "range {r:?}");
            // The same bytes, left in the buffer they were read into.
            let (buf, at) = s.read_extent_buf(e, r.clone()).await.unwrap();
            assert_eq!(&buf.as_slice()[at], &p[r.start as usize..r.end as usize], "range {r:?} in its buffer");
        }
        let t = &extents[2];
        assert_eq!(
            s.read_extent(t, c - 3..t.len).await.unwrap(),
            parts[2][(c - 3) as usize..]
        );

        // Bad requests are errors, not panics.
        assert!(matches!(
            s.read_extent(e, 5..e.len + 1).await,
            Err(IoError::InvalidExtent(_))
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 9..5;
        assert!(matches!(
            s.read_extent(e, backwards).await,
            Err(IoError::InvalidExtent(_))
        ));
        let bogus = Extent {
            segment: 999,
            offset: 0,
            len: 10,
        };
        assert!(matches!(
            s.read_extent(&bogus, 0..1).await,
            Err(IoError::InvalidExtent(_))
        ));
        let wrong_len = Extent {
            len: e.len - 1,
            ..*e
        };
        assert!(matches!(
            s.read_extent(&wrong_len, 0..1).await,
            Err(IoError::InvalidExtent(_))
        ));
        let not_data = Extent { offset: 0, ..*e }; // the segment record
        assert!(matches!(
            s.read_extent(&not_data, 0..1).await,
            Err(IoError::Corrupt { .. })
        ));
        let commit_bogus = Mutation::Put {
            table: 0,
            key: b"x".to_vec(),
            summary: vec![],
            meta: vec![],
            body: Body::Extents(vec![bogus]),
        };
        assert!(matches!(
            s.commit(vec![commit_bogus]).await,
            Err(IoError::InvalidExtent(_))
        ));
        assert!(s.get(0, b"x").is_none());
    });
}

#[test]
fn empty_data_record() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        let e = s.write_data(tessera_io::DataBuf::new(0)).await.unwrap();
        assert_eq!(e.len, 0);
        assert_eq!(s.read_extent(&e, 0..0).await.unwrap(), Vec::<u8>::new());
    });
}

#[test]
fn limits() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        let long_key = vec![b'k'; tessera_io::format::MAX_KEY_BYTES + 1];
        assert!(matches!(
            s.commit(vec![put(0, &long_key, b"", b"")]).await,
            Err(IoError::TooLarge)
        ));
        let mut d = tessera_io::DataBuf::new(tessera_io::MAX_DATA_BYTES + 4096);
        d.advance(tessera_io::MAX_DATA_BYTES + 1);
        assert!(matches!(s.write_data(d).await, Err(IoError::TooLarge)));
        // Still healthy.
        s.commit(vec![put(0, b"ok", b"", b"")]).await.unwrap();
        assert!(!s.stats().read_only);
    });
}

async fn fill(s: &Shard) -> Vec<(Vec<u8>, Vec<u8>)> {
    {
        let mut expect = Vec::new();
        for i in 0..50u32 {
            let key = format!("obj/{i:03}").into_bytes();
            let body = pattern(i as u64, (i as usize * 997) % 5000);
            s.commit(vec![put(0, &key, &i.to_le_bytes(), &body)])
                .await
                .unwrap();
            expect.push((key, body));
        }
        // Overwrites and deletes.
        for i in (0..50u32).step_by(5) {
            let key = format!("obj/{i:03}").into_bytes();
            s.commit(vec![del(0, &key)]).await.unwrap();
        }
        expect.retain(|(k, _)| {
            let i: u32 = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
            i % 5 != 0
        });
        let last = expect.last_mut().unwrap();
        last.1 = b"overwritten".to_vec();
        let key = last.0.clone();
        s.commit(vec![put(0, &key, b"new", b"overwritten")])
            .await
            .unwrap();
        expect
    }
}

#[test]
fn reopen_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (expect, big, next_seq) = run(async {
        let s = open(dir.path()).await;
        let expect = fill(&s).await;
        let body = pattern(99, 3 << 20);
        let mut ex = Vec::new();
        for c in body.chunks(1 << 20) {
            ex.push(s.write_data(data_buf(c)).await.unwrap());
        }
        s.commit(vec![Mutation::Put {
            table: 2,
            key: b"upload/1/part/1".to_vec(),
            summary: b"etag".to_vec(),
            meta: vec![],
            body: Body::Extents(ex),
        }])
        .await
        .unwrap();
        (expect, body, s.stats().next_seq)
    });
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats();
        assert_eq!(st.next_seq, next_seq, "sequence numbers continue");
        assert_eq!((st.recovery.torn_bytes, st.recovery.corrupt_regions), (0, 0));
        assert_eq!(st.segments, 2, "one recovered + one fresh");
        assert_eq!(s.len(0), expect.len());
        let listed = s.range(0, b"obj/", None, 1000);
        assert_eq!(
            listed.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            expect.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
        );
        for (k, body) in &expect {
            assert_eq!(
                s.load(0, k).await.unwrap().unwrap().body,
                Body::Inline(body.clone())
            );
        }
        let st = s.load(2, b"upload/1/part/1").await.unwrap().unwrap();
        let Body::Extents(ex) = st.body else {
            panic!("extents expected")
        };
        let mut got = Vec::new();
        for e in &ex {
            got.extend(s.read_extent(e, 0..e.len).await.unwrap());
        }
        assert_eq!(got, big);
        // And it keeps working after reopen.
        let seq = s.commit(vec![put(0, b"after", b"", b"x")]).await.unwrap();
        assert_eq!(seq, next_seq);
    });
    // Twice: the fresh segment of the second run is read back too.
    run(async {
        let s = open(dir.path()).await;
        assert_eq!(s.len(0), expect.len() + 1);
        assert_eq!(s.stats().segments, 3);
    });
}

/// The O_DSYNC flag of every open segment file of `dir` (from
/// /proc/self/fdinfo), or None if no segment file is open.
fn segment_fds_dsync(dir: &std::path::Path) -> Vec<bool> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        if target.parent() != Some(dir) || !target.file_name().unwrap().to_string_lossy().starts_with("seg-") {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", e.file_name().to_string_lossy())).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        let flags = i64::from_str_radix(flags, 8).unwrap();
        out.push(flags & libc::O_DSYNC as i64 != 0);
    }
    out
}

/// `ShardOptions::dsync`: every segment file (the recovered ones, the
/// ones a roll creates) is open O_DSYNC, or none is; commits of both
/// inline and extent bodies come back after a reopen; and a sync in that
/// mode is only the new segments' directory, never the files. Both
/// drivers (io_uring, and the epoll one whose file I/O goes to a thread).
#[test]
fn dsync_segments_are_opened_o_dsync() {
    for legacy in [false, true] {
        for dsync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().canonicalize().unwrap();
            let o = ShardOptions {
                dsync,
                ..small_segments(256 << 10)
            };
            let body = pattern(5, 600 << 10);
            let work = |o: ShardOptions, first: bool| {
                let path = path.clone();
                let body = body.clone();
                async move {
                    let s = Shard::open(&path, 7, o).await.unwrap();
                    if first {
                        for i in 0..20u64 {
                            let key = format!("k{i:02}");
                            s.commit(vec![put(0, key.as_bytes(), b"", &pattern(i, 3000))]).await.unwrap();
                        }
                        let mut ex = Vec::new();
                        for c in body.chunks(200 << 10) {
                            ex.push(s.write_data(data_buf(c)).await.unwrap());
                        }
                        s.commit(vec![Mutation::Put { table: 1, key: b"big".to_vec(), summary: vec![], meta: vec![], body: Body::Extents(ex) }])
                            .await
                            .unwrap();
                        assert!(s.stats().segments >= 3, "the big body rolled segments");
                    }
                    let fds = segment_fds_dsync(&path);
                    assert!(!fds.is_empty(), "segment files are open");
                    assert!(fds.iter().all(|&d| d == dsync), "O_DSYNC on segment fds {fds:?}, want {dsync}");
                    for i in 0..20u64 {
                        let key = format!("k{i:02}");
                        assert_eq!(s.load(0, key.as_bytes()).await.unwrap().unwrap().body, Body::Inline(pattern(i, 3000)));
                    }
                    let Body::Extents(ex) = s.load(1, b"big").await.unwrap().unwrap().body else { panic!("extents") };
                    let mut got = Vec::new();
                    for e in &ex {
                        got.extend(s.read_extent(e, 0..e.len).await.unwrap());
                    }
                    assert_eq!(got, body);
                }
            };
            if legacy {
                run_legacy(work(o.clone(), true));
                run_legacy(work(o, false));
            } else {
                run(work(o.clone(), true));
                run(work(o, false));
            }
        }
    }
}

#[test]
fn concurrent_commits_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = Rc::new(open(dir.path()).await);
        let before = s.stats().syncs;
        let n = 400u32;
        let mut tasks = Vec::new();
        for i in 0..n {
            let s = s.clone();
            tasks.push(monoio::spawn(async move {
                let key = format!("k{i:05}");
                s.commit(vec![put(0, key.as_bytes(), b"", &pattern(i as u64, 3000))])
                    .await
                    .unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await);
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), n as usize, "every commit has its own seq");
        let syncs = s.stats().syncs - before;
        println!("{n} concurrent commits took {syncs} syncs");
        assert!(
            syncs < n as u64 / 4,
            "group commit: {syncs} syncs for {n} commits"
        );
        assert_eq!(s.len(0), n as usize);
    });
}

#[test]
fn same_key_concurrently_last_seq_wins() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = Rc::new(open(dir.path()).await);
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let s = s.clone();
            tasks.push(monoio::spawn(async move {
                let seq = s
                    .commit(vec![put(0, b"hot", &i.to_le_bytes(), b"")])
                    .await
                    .unwrap();
                (seq, i)
            }));
        }
        // Staged, not yet written: nothing may be visible yet. (That
        // nothing becomes visible before its sync is checked against power
        // cuts by the simulator, tests/sim.rs.)
        assert!(s.get(0, b"hot").is_none(), "visible before durable");
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await);
        }
        let (max_seq, winner) = *results.iter().max().unwrap();
        let e = s.get(0, b"hot").unwrap();
        assert_eq!(e.seq, max_seq);
        assert_eq!(e.summary.as_ref(), winner.to_le_bytes());
    });
}

#[test]
fn odd_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0, 0, 1],
        b"/".to_vec(),
        b"..".to_vec(),
        b"../../etc/passwd".to_vec(),
        b"a/\x00/b".to_vec(),
        vec![0xff; 1024],
        (0..1024).map(|i| (i % 251) as u8).collect(),
        Vec::new(),
        "ключ/🙂".as_bytes().to_vec(),
    ];
    run(async {
        let s = open(dir.path()).await;
        for (i, k) in keys.iter().enumerate() {
            s.commit(vec![put(0, k, &[i as u8], k)]).await.unwrap();
        }
    });
    run(async {
        let s = open(dir.path()).await;
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(s.get(0, k).unwrap().summary.as_ref(), [i as u8]);
            assert_eq!(
                s.load(0, k).await.unwrap().unwrap().body,
                Body::Inline(k.clone())
            );
        }
        let mut sorted = keys.clone();
        sorted.sort();
        let listed: Vec<Vec<u8>> = s
            .range(0, b"", None, 100)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, sorted);
        let zero_prefixed: Vec<Vec<u8>> = s
            .range(0, &[0], None, 100)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let expect: Vec<Vec<u8>> = sorted
            .iter()
            .filter(|k| k.first() == Some(&0))
            .cloned()
            .collect();
        assert_eq!(zero_prefixed.len(), 3);
        assert_eq!(zero_prefixed, expect);
        let after: Vec<Vec<u8>> = s
            .range(0, b"", Some(b".."), 2)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(after, vec![b"../../etc/passwd".to_vec(), b"/".to_vec()]);
    });
}

#[test]
fn segment_roll() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 64 << 10;
    let bodies: Vec<Vec<u8>> = (0..12).map(|i| pattern(i, 50_000)).collect();
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(seg))
            .await
            .unwrap();
        let s = Rc::new(s);
        let mut tasks = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            let s = s.clone();
            let b = b.clone();
            tasks.push(monoio::spawn(async move {
                let e = s.write_data(data_buf(&b)).await.unwrap();
                let m = put_extent(0, &format!("k{i:02}"), e);
                s.commit(vec![
                    m,
                    put(1, format!("inline{i}").as_bytes(), b"", &b[..9000]),
                ])
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await;
        }
        let st = s.stats();
        println!("after roll test: {st:?}");
        assert!(
            st.segments > 5,
            "expected many segments, got {}",
            st.segments
        );
    });
    run(async {
        let s = Shard::open(dir.path(), 7, small_segments(seg))
            .await
            .unwrap();
        assert_eq!(s.stats().recovery.corrupt_regions, 0);
        for (i, b) in bodies.iter().enumerate() {
            let st = s
                .load(0, format!("k{i:02}").as_bytes())
                .await
                .unwrap()
                .unwrap();
            let Body::Extents(ex) = st.body else { panic!() };
            assert_eq!(&s.read_extent(&ex[0], 0..ex[0].len).await.unwrap(), b);
            let st = s
                .load(1, format!("inline{i}").as_bytes())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(st.body, Body::Inline(b[..9000].to_vec()));
        }
    });
    let files = segment_files(dir.path());
    for f in &files[..files.len() - 1] {
        let len = std::fs::metadata(f).unwrap().len();
        // A segment passes the size only when a single record (a data
        // record, or a batch of commits with inline bodies) is larger.
        assert!(
            len <= seg + 256 * 1024,
            "{} is {len} bytes",
            f.display()
        );
    }
}

#[test]
fn legacy_driver_uses_io_thread() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(5, 300_000);
    run_legacy(async {
        let s = Rc::new(open(dir.path()).await);
        assert!(!s.stats().io_uring);
        let e = s.write_data(data_buf(&body)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let s = s.clone();
            tasks.push(monoio::spawn(async move {
                s.commit(vec![put(0, format!("k{i}").as_bytes(), b"", b"v")])
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await;
        }
        s.commit(vec![put_extent(0, b"big", e)])
        .await
        .unwrap();
        assert_eq!(
            s.read_extent(&e, 1000..200_000).await.unwrap(),
            body[1000..200_000]
        );
        println!("legacy stats: {:?}", s.stats());
        assert!(s.stats().syncs < 100);
    });
    // Recovery under the legacy driver, and the uring driver reads it too.
    run_legacy(async {
        let s = open(dir.path()).await;
        assert_eq!(s.len(0), 101);
    });
    run(async {
        let s = open(dir.path()).await;
        let Body::Extents(ex) = s.load(0, b"big").await.unwrap().unwrap().body else {
            panic!()
        };
        assert_eq!(s.read_extent(&ex[0], 0..ex[0].len).await.unwrap(), body);
    });
}

#[test]
fn buffered_io_when_direct_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let o = ShardOptions {
        direct_io: false,
        ..ShardOptions::default()
    };
    run(async {
        let s = Shard::open(dir.path(), 1, o.clone()).await.unwrap();
        assert!(!s.stats().direct_io);
        let e = s.write_data(data_buf(&pattern(1, 10_000))).await.unwrap();
        s.commit(vec![put(0, b"a", b"", b"x")]).await.unwrap();
        assert_eq!(
            s.read_extent(&e, 0..10_000).await.unwrap(),
            pattern(1, 10_000)
        );
    });
    run(async {
        let s = Shard::open(dir.path(), 1, ShardOptions::default())
            .await
            .unwrap();
        assert!(s.stats().direct_io, "this filesystem takes O_DIRECT");
        assert!(s.get(0, b"a").is_some());
    });
}

#[test]
fn wrong_shard_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        Shard::open(dir.path(), 1, opts()).await.unwrap();
        assert!(matches!(
            Shard::open(dir.path(), 2, opts()).await,
            Err(IoError::Format(_))
        ));
        std::fs::remove_file(dir.path().join("SHARD")).unwrap();
        assert!(matches!(
            Shard::open(dir.path(), 1, opts()).await,
            Err(IoError::Format(_))
        ));
    });
}

#[test]
fn tmpfs_works_with_or_without_o_direct() {
    // tmpfs refused O_DIRECT (EINVAL) before Linux 6.6; the shard then falls
    // back to buffered I/O + fdatasync. Either way it must work.
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        println!("no /dev/shm here; skipped");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    run(async {
        let s = Shard::open(dir.path(), 3, ShardOptions::default())
            .await
            .unwrap();
        println!("tmpfs: direct_io = {}", s.stats().direct_io);
        let e = s.write_data(data_buf(&pattern(1, 100_000))).await.unwrap();
        s.commit(vec![put(0, b"a", b"", b"x")]).await.unwrap();
        assert_eq!(
            s.read_extent(&e, 10..99_000).await.unwrap(),
            pattern(1, 100_000)[10..99_000]
        );
    });
    run_legacy(async {
        let s = Shard::open(dir.path(), 3, ShardOptions::default())
            .await
            .unwrap();
        assert!(!s.stats().io_uring);
        assert!(s.get(0, b"a").is_some());
    });
}

/// Format 3 packs batches: a batch starts where the copy before it ended
/// (inside that copy's last block), so a small commit committed alone costs
/// about one block, not two (a 4 KiB-padded batch and a 4 KiB-padded copy).
/// Concurrent small commits share batches and cost a fraction of a block.
#[test]
fn small_commits_are_packed() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        let before = s.stats().bytes_appended;
        for i in 0..200u32 {
            s.commit(vec![put(0, format!("k{i}").as_bytes(), b"", b"")]).await.unwrap();
        }
        let per = (s.stats().bytes_appended - before) / 200;
        println!("{per} bytes appended per lone small commit");
        assert!(per <= 4096 + 512, "{per} bytes per lone small commit");
        // Concurrent ones share batches.
        let before = s.stats().bytes_appended;
        let s2 = Rc::new(s);
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let s = s2.clone();
            tasks.push(monoio::spawn(async move {
                s.commit(vec![put(0, format!("c{i}").as_bytes(), b"", b"")]).await.unwrap();
            }));
        }
        for t in tasks {
            t.await;
        }
        let per = (s2.stats().bytes_appended - before) / 400;
        println!("{per} bytes appended per small commit, 400 at once");
        assert!(per < 1024, "{per} bytes per concurrent small commit");
        assert_eq!(s2.len(0), 600);
    });
    // Everything reads back after a restart (the scan finds every packed batch).
    run(async {
        let s = open(dir.path()).await;
        assert_eq!(s.len(0), 600);
        let r = s.stats().recovery;
        assert!(!r.found_corruption() && r.damaged_copies == 0, "{:?}", s.recovery_problems());
        assert!(s.load(0, b"k199").await.unwrap().is_some());
        assert!(s.load(0, b"c399").await.unwrap().is_some());
    });
}
