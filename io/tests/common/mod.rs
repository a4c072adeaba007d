//! Helpers shared by the integration tests: runtimes, shards in temp dirs,
//! and small constructors. Real files, real O_DIRECT, no mocks.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use tessera_io::{Body, DataBuf, Mutation, Shard, ShardOptions};

/// Runs `f` on the runtime a node would use: io_uring if available, else epoll.
pub fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Runs `f` on monoio's legacy (epoll) driver, as in a seccomp-restricted container.
pub fn run_legacy<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("legacy runtime")
        .block_on(f)
}

/// Defaults without background work (compaction, scrub, checkpoints, idle
/// marks), so a test sees only what it does; tests of those call them.
pub fn opts() -> ShardOptions {
    ShardOptions {
        background: false,
        data_reserve_bytes: 0,
        ..ShardOptions::default()
    }
}

pub fn small_segments(bytes: u64) -> ShardOptions {
    ShardOptions {
        segment_size_bytes: bytes,
        ..opts()
    }
}

pub async fn open(dir: &Path) -> Shard {
    Shard::open(dir, 7, opts()).await.expect("open shard")
}

pub fn put(table: u8, key: &[u8], summary: &[u8], body: &[u8]) -> Mutation {
    Mutation::Put {
        table,
        key: key.to_vec(),
        summary: summary.to_vec(),
        meta: [b"meta:", key].concat(),
        body: Body::Inline(body.to_vec()),
    }
}

/// A put whose body is one data record (no summary or meta).
pub fn put_extent(table: u8, key: impl AsRef<[u8]>, e: tessera_io::Extent) -> Mutation {
    Mutation::Put {
        table,
        key: key.as_ref().to_vec(),
        summary: vec![],
        meta: vec![],
        body: Body::Extents(vec![e]),
    }
}

pub fn del(table: u8, key: &[u8]) -> Mutation {
    Mutation::Delete {
        table,
        key: key.to_vec(),
    }
}

/// Deterministic test bytes: byte i of stream `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn data_buf(bytes: &[u8]) -> DataBuf {
    let mut d = DataBuf::new(bytes.len().max(1));
    d.extend_from_slice(bytes);
    d
}

/// Segment files of a shard dir, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .collect();
    v.sort();
    v
}

/// Overwrites bytes of a file in place (simulates bitrot or a torn write).
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}
