//! Format 2 with 4 data dirs (k = 2, m = 2): bodies above the inline size
//! are striped, one block stream per dir. Bits flipped in the blocks on
//! disk read back as the right bytes (decoded from parity) and are
//! repaired; fewer than k good blocks never give wrong bytes.

use std::path::Path;

use tessera_tests::*;

const DIRS: usize = 4;

fn erasure_opts() -> ServerOpts {
    ServerOpts { data_dir_count: DIRS, threads: Some(2), args: vec!["--erasure".into()], ..Default::default() }
}

/// Flips a payload byte of every erasure block in `dir` (framed blocks
/// start with `TSEB`, version 1, k = 2, m = 2) whose block index is in
/// `indexes`. Returns how many were flipped.
fn flip_blocks(dir: &Path, indexes: std::ops::Range<u8>) -> usize {
    scan_blocks(dir, indexes, true)
}

/// How many erasure blocks `dir` holds whose block index is in `indexes`.
fn count_blocks(dir: &Path, indexes: std::ops::Range<u8>) -> usize {
    scan_blocks(dir, indexes, false)
}

fn scan_blocks(dir: &Path, indexes: std::ops::Range<u8>, flip: bool) -> usize {
    let mut flipped = 0;
    for f in files_under(dir) {
        let Ok(mut data) = std::fs::read(&f) else { continue };
        let mut changed = false;
        let mut at = 0;
        while let Some(i) = data[at..].windows(4).position(|w| w == b"TSEB") {
            let h = at + i;
            at = h + 4;
            if data.len() < h + 48 + 64 || data[h + 4] != 1 || data[h + 5] != 2 || data[h + 6] != 2 {
                continue;
            }
            if !indexes.contains(&data[h + 7]) {
                continue;
            }
            if flip {
                data[h + 48 + 17] ^= 0x24;
                changed = true;
            }
            flipped += 1;
        }
        if changed {
            std::fs::write(&f, &data).expect("write the flipped segment");
        }
    }
    flipped
}

async fn put_inline_everywhere(s3: &aws_sdk_s3::Client) {
    for i in 0..40 {
        ok(s3.put_object().bucket("stripes").key(format!("later-{i}")).body(bytestream(b"x")).send().await, "put");
    }
}

async fn get_all(s3: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    read_body(ok(s3.get_object().bucket("stripes").key(key).send().await, "get")).await
}

async fn check_ranges(s3: &aws_sdk_s3::Client, key: &str, body: &[u8]) {
    let n = body.len();
    for (a, b) in [(0, 0), (MIB - 10, MIB + 10), (2 * MIB - 1, 3 * MIB), (n - 100, n - 1), (123, 4 * MIB + 7)] {
        let out =
            ok(s3.get_object().bucket("stripes").key(key).range(format!("bytes={a}-{b}")).send().await, "range get");
        assert!(read_body(out).await == body[a..=b], "bytes {a}-{b}");
    }
}

/// A body is striped, not copied: each dir holds about (k+m)/k / N of
/// it, i.e. half of it with 2 + 2, never all of it.
#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_striped_over_the_dirs() {
    let server = Server::start_with(erasure_opts());
    let s3 = server.client();
    ok(s3.create_bucket().bucket("stripes").send().await, "bucket");
    let body = random_bytes(5 * MIB + 123, 1);
    ok(s3.put_object().bucket("stripes").key("big").body(bytestream(&body)).send().await, "put");
    assert!(get_all(&s3, "big").await == body);
    check_ranges(&s3, "big", &body).await;
    // No dir holds a copy of the body's bytes: a 4 KiB run from the middle
    // of each 1 MiB record is found in at most one dir (the one holding
    // that data block).
    let needle = &body[MIB + 200_000..MIB + 204_096];
    let holders = server
        .data_dirs()
        .iter()
        .filter(|d| files_under(d).iter().any(|f| std::fs::read(f).is_ok_and(|x| x.windows(needle.len()).any(|w| w == needle))))
        .count();
    assert!(holders <= 1, "{holders} dirs hold a copy of the bytes");
}

/// Bits flipped in every data block of one dir: reads give the right
/// bytes (parity), the blocks are rewritten, and then that dir serves
/// with the two other dirs but dir 0 gone (k = 2).
#[tokio::test(flavor = "multi_thread")]
async fn flipped_bits_read_back_right_and_are_repaired() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("stripes").send().await, "bucket");
    let body = random_bytes(5 * MIB + 123, 2);
    let small = random_bytes(300 * KIB, 3);
    ok(s3.put_object().bucket("stripes").key("big").body(bytestream(&body)).send().await, "put");
    ok(s3.put_object().bucket("stripes").key("small").body(bytestream(&small)).send().await, "put");
    // Later commits on every lane put the blocks below each log's durable
    // mark: a bad data record past it is a torn tail to the io recovery,
    // which cuts it with the commits after it (that member then lacks the
    // record, a loss for healing, not for read repair).
    put_inline_everywhere(&s3).await;
    server.stop();
    // The dir to damage: the one (dir 0 aside) with the most data blocks;
    // which position a dir takes in a lane depends on the disks' random
    // ids, so a fixed dir may hold only parity of the big object.
    let counts: Vec<usize> = dirs.iter().map(|dir| count_blocks(dir, 0..2)).collect();
    eprintln!("data blocks per dir: {counts:?}");
    let d = (1..dirs.len()).max_by_key(|&i| counts[i]).unwrap();
    let flipped = flip_blocks(&dirs[d], 0..2);
    assert!(flipped >= 2, "only {flipped} data blocks found in dir {d}, the dir with the most");
    let gone: Vec<usize> = (1..dirs.len()).filter(|&i| i != d).collect();

    server.start_again();
    let s3 = server.client();
    assert!(get_all(&s3, "big").await == body, "big, decoded around the flipped blocks");
    assert!(get_all(&s3, "small").await == small, "small, decoded around the flipped blocks");
    check_ranges(&s3, "big", &body).await;
    let metrics = server.scrape_metrics();
    let degraded = metric_total(&metrics, "tessera_ec_degraded_stripes_total") as u64;
    let repaired = metric_total(&metrics, "tessera_ec_repaired_blocks_total") as u64;
    assert!(degraded >= flipped as u64, "{degraded} stripes decoded with parity, {flipped} blocks flipped");
    assert!(repaired >= 1, "no block repaired");
    // Repairs run in the background: give them a moment, then read again
    // with the repaired dir and one other only (k = 2 of 4).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.stop();
    for &i in &gone {
        take_away(&dirs[i]);
    }
    server.start_again();
    let s3 = server.client();
    assert!(get_all(&s3, "big").await == body, "big after the repair, two dirs gone");
    assert!(get_all(&s3, "small").await == small, "small after the repair, two dirs gone");
    check_ranges(&s3, "big", &body).await;
    server.stop();
    for &i in &gone {
        bring_back(&dirs[i]);
    }
}

/// Fewer than k good blocks: a GET never returns wrong bytes. An object
/// read whole before its head (up to the cache size) answers 500; a
/// larger one ends short, and the stripes are counted.
#[tokio::test(flavor = "multi_thread")]
async fn below_k_good_blocks_never_gives_wrong_bytes() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("stripes").send().await, "bucket");
    let body = random_bytes(3 * MIB, 4);
    let small = random_bytes(300 * KIB, 5);
    ok(s3.put_object().bucket("stripes").key("big").body(bytestream(&body)).send().await, "put");
    ok(s3.put_object().bucket("stripes").key("small").body(bytestream(&small)).send().await, "put");
    put_inline_everywhere(&s3).await;
    server.stop();
    for d in &dirs[..3] {
        flip_blocks(d, 0..4);
    }
    server.start_again();
    let s3 = server.client();
    assert_s3_error(s3.get_object().bucket("stripes").key("small").send().await, 500, "InternalError");
    match s3.get_object().bucket("stripes").key("big").send().await {
        Err(_) => {}
        Ok(out) => {
            let r = out.body.collect().await;
            assert!(r.is_err(), "a body came back whole from fewer than k good blocks");
        }
    }
    let metrics = server.scrape_metrics();
    assert!(metric_total(&metrics, "tessera_ec_unreadable_stripes_total") as u64 >= 1, "not counted");
    // The object's metadata is intact.
    let head = ok(s3.head_object().bucket("stripes").key("big").send().await, "head");
    assert_eq!(head.content_length(), Some(body.len() as i64));
}

/// Parity blocks no read touches, damaged on every dir: the io scrubber
/// finds them (a restart seals the segments they are in), the lanes'
/// scrub repair rebuilds them, and then any two dirs serve every object,
/// the first dir taken away included.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_parity_is_found_by_the_scrub_and_rebuilt() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("stripes").send().await, "bucket");
    let bodies: Vec<Vec<u8>> = (0..6).map(|i| random_bytes(if i == 0 { 3 * MIB + 9 } else { 200 * KIB + i }, 40 + i as u64)).collect();
    for (i, b) in bodies.iter().enumerate() {
        ok(s3.put_object().bucket("stripes").key(format!("o{i}")).body(bytestream(b)).send().await, "put");
    }
    put_inline_everywhere(&s3).await;
    server.stop();
    let flipped: usize = dirs.iter().map(|d| flip_blocks(d, 2..4)).sum();
    // Two parity streams per object: 4 stripes' worth for the big one.
    assert!(flipped >= 2 * bodies.len(), "only {flipped} parity blocks found");

    server.start_again();
    // Done when every shard's scrubber finished a pass, the repairs
    // rebuilt at least the damaged streams, none runs, and two polls
    // later still none runs and nothing more was rebuilt.
    let start = std::time::Instant::now();
    let settled = |m: &std::collections::HashMap<String, f64>| {
        let passes: Vec<f64> = m.iter().filter(|(k, _)| k.starts_with("tessera_shard_scrub_passes_total{")).map(|(_, v)| *v).collect();
        let scrubbed = !passes.is_empty() && passes.iter().all(|v| *v >= 1.0);
        assert_eq!(metric_total(m, "tessera_ec_scrub_failures_total"), 0.0, "scrub repair failures");
        let rebuilt = metric_total(m, "tessera_ec_scrub_rebuilt_records_total") as usize;
        (scrubbed && rebuilt >= 2 * bodies.len() && metric_total(m, "tessera_ec_scrub_running_passes") == 0.0).then_some(rebuilt)
    };
    loop {
        let m = server.scrape_metrics();
        if let Some(rebuilt) = settled(&m) {
            std::thread::sleep(std::time::Duration::from_millis(4500));
            let again = server.scrape_metrics();
            if settled(&again) == Some(rebuilt) {
                // No read ran: this was the scrub, not read repair.
                assert_eq!(metric_total(&again, "tessera_ec_repaired_blocks_total"), 0.0);
                assert!(metric_total(&again, "tessera_ec_scrub_passes_total") >= 1.0);
                break;
            }
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(90), "scrub repair did not settle: {m:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Only dirs 2 and 3 left (k = 2): every object needs the blocks they
    // hold, parity ones included.
    server.stop();
    take_away(&dirs[0]);
    take_away(&dirs[1]);
    server.start_again();
    let s3 = server.client();
    for (i, b) in bodies.iter().enumerate() {
        assert!(get_all(&s3, &format!("o{i}")).await == *b, "o{i} with two dirs gone");
    }
    let m = server.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_ec_unreadable_stripes_total"), 0.0);
}
