//! Readers racing writers on the same keys never see a torn object.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tessera_tests::*;

const VERSIONS: usize = 12;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_overwrites_and_reads_are_never_torn() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("race").send().await, "create");
    // Versions of different sizes, so a mix of two would also show in the length.
    let versions: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..VERSIONS)
            .map(|i| random_bytes(64 * KIB + i * 97 * KIB, 500 + i as u64))
            .collect(),
    );
    let digests: Arc<HashSet<String>> = Arc::new(versions.iter().map(|v| md5_hex(v)).collect());
    for key in ["hot-0", "hot-1"] {
        ok(
            s3.put_object()
                .bucket("race")
                .key(key)
                .body(bytestream(&versions[0]))
                .send()
                .await,
            "seed put",
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (s3, versions, stop) = (s3.clone(), versions.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("hot-{}", n % 2);
                let v = &versions[(n * 7 + w) % VERSIONS];
                ok(
                    s3.put_object()
                        .bucket("race")
                        .key(&key)
                        .body(bytestream(v))
                        .send()
                        .await,
                    "overwrite",
                );
                n += 1;
            }
            n
        }));
    }
    let mut readers = Vec::new();
    for r in 0..3 {
        let (s3, digests, stop) = (s3.clone(), digests.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("hot-{}", (n + r) % 2);
                let out = ok(s3.get_object().bucket("race").key(&key).send().await, "racing get");
                let tag = out.e_tag().map(str::to_string);
                let declared = out.content_length();
                let body = read_body(out).await;
                let digest = md5_hex(&body);
                assert!(
                    digests.contains(&digest),
                    "GET {key} returned a body that was never written ({} bytes)",
                    body.len()
                );
                assert_eq!(tag, Some(format!("\"{digest}\"")), "ETag and body of one GET disagree");
                assert_eq!(declared, Some(body.len() as i64));
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut writes = 0;
    for w in writers {
        writes += w.await.expect("writer");
    }
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader");
    }
    assert!(
        writes > 10 && reads > 10,
        "too little happened: {writes} writes, {reads} reads"
    );
    let listed = ok(s3.list_objects_v2().bucket("race").send().await, "list");
    assert_eq!(listed.contents().len(), 2);
}
