//! Recovery time and index memory, measured (printed, not asserted beyond
//! sanity). Default 20k commits; for the reported numbers:
//! `TESSERA_RECOVERY_N=1000000 cargo test --release -p tessera-io
//! --test recovery_time -- --nocapture` for bigger runs.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use common::*;

/// Counts live heap bytes so the index's footprint can be measured.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn recovery_time_and_index_bytes_per_entry() {
    let n: u32 = std::env::var("TESSERA_RECOVERY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency = 256u32;
    let dir = tempfile::tempdir().unwrap();
    // Realistic sizes: "bucket/path/object-00012345" keys, a 40-byte summary.
    let key = |i: u32| format!("bucket-{:02}/some/path/object-{i:08}", i % 7).into_bytes();
    let summary = [0x5au8; 40];

    let started = Instant::now();
    let syncs = run(async {
        let s = Rc::new(open(dir.path()).await);
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let s = s.clone();
            tasks.push(monoio::spawn(async move {
                let mut i = w;
                while i < n {
                    s.commit(vec![put(0, &key(i), &summary, &[1u8; 100])])
                        .await
                        .unwrap();
                    i += concurrency;
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        s.stats().syncs
    });
    let write_s = started.elapsed().as_secs_f64();
    let bytes: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "wrote {n} commits ({} MiB) in {write_s:.2} s: {:.0} commits/s, {syncs} syncs ({:.1} commits/sync)",
        bytes >> 20,
        n as f64 / write_s,
        n as f64 / syncs as f64
    );

    println!(
        "on disk: {:.0} bytes per object of 100 bytes (commit metadata twice, batched)",
        bytes as f64 / n as f64
    );
    // Open by scanning the log (no checkpoint yet), then write one.
    for pass in ["log scan", "checkpoint"] {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let started = Instant::now();
        run(async {
            let s = open(dir.path()).await;
            let elapsed = started.elapsed();
            let st = s.stats();
            let live = LIVE_BYTES.load(Ordering::Relaxed) - before;
            let kv = (key(1).len() + summary.len()) as f64;
            println!(
                "reopened {} entries from the {pass} in {:.3} s (read {} MiB, {} commits replayed, scan {:.3} s)",
                s.len(0),
                elapsed.as_secs_f64(),
                st.recovery.bytes_read >> 20,
                st.recovery.commits,
                st.recovery.elapsed.as_secs_f64()
            );
            println!(
                "index + shard heap: {:.1} MiB, {:.0} bytes/entry ({kv:.0} of them key + summary bytes); stats say {} bytes/entry",
                live as f64 / (1 << 20) as f64,
                live as f64 / n as f64,
                st.index_bytes / n as u64
            );
            assert_eq!(s.len(0), n as usize);
            assert!(s.get(0, &key(n - 1)).is_some());
            if pass == "log scan" {
                assert_eq!(st.recovery.commits, n as u64);
                s.checkpoint().await.unwrap();
            } else {
                assert_eq!(st.recovery.checkpoint_entries, n as u64);
                assert!(st.recovery.commits <= 1, "{st:?}");
            }
        });
    }
}
