//! kill -9 under load, restart, check: every acknowledged write is there,
//! nothing is torn, the listing agrees with GET.
//!
//! Each writer task owns its keys, so operations on one key are sequential
//! and "the last acknowledged operation" is well defined. An operation that
//! had not been acknowledged when the server died may or may not have
//! happened: both outcomes are allowed, nothing else.
//!
//! The server runs with 1 MiB log segments, so segments roll, get
//! checkpointed and compacted between kills. Before each restart the killed
//! image is checked offline with `tessera fsck`, which must find it clean.
//!
//! The seed is printed; `TESSERA_CRASH_SEED=N` replays a run.
//! `TESSERA_CRASH_CYCLES=N` sets the number of kills (default 20, what CI
//! runs); the long form is documented in the README (1000 cycles).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_tests::*;

const DEFAULT_CYCLES: usize = 20;
const WRITERS: usize = 6;
const KEYS_PER_WRITER: usize = 8;
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 50..=1500;
const BUCKET: &str = "crash";

/// MD5 of the content; `None` means the key does not exist.
type Value = Option<[u8; 16]>;

#[derive(Debug, Clone, Default)]
struct KeyState {
    /// Value after the last acknowledged operation.
    acked: Value,
    /// Value of an operation sent but not acknowledged when the server died.
    in_flight: Option<Value>,
}

impl KeyState {
    fn candidates(&self) -> Vec<Value> {
        let mut c = vec![self.acked];
        if let Some(v) = self.in_flight {
            c.push(v);
        }
        c
    }
}

fn client(server: &Server) -> aws_sdk_s3::Client {
    // No retries: an acknowledgement is one request's answer, and an error
    // before the kill is a real error, not something to paper over.
    let conf = server
        .config_builder(&server.access_key, &server.secret_key)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn object_size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..=9 => 0,
        10..=39 => rng.random_range(1..=1024),
        40..=79 => rng.random_range(1024..=64 * KIB),
        80..=94 => rng.random_range(64 * KIB..=512 * KIB),
        _ => rng.random_range(512 * KIB..=3 * MIB),
    }
}

struct WriterReport {
    states: BTreeMap<String, KeyState>,
    acked_ops: usize,
    /// An error seen before the kill: a server failure under load.
    error_before_kill: Option<String>,
}

async fn writer(
    s3: aws_sdk_s3::Client,
    mut states: BTreeMap<String, KeyState>,
    seed: u64,
    killed: Arc<AtomicBool>,
) -> WriterReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys: Vec<String> = states.keys().cloned().collect();
    let mut acked_ops = 0;
    let mut error_before_kill = None;
    while !killed.load(Ordering::SeqCst) {
        let key = &keys[rng.random_range(0..keys.len())];
        let dice = rng.random_range(0..100);
        // CopyObject from another of this writer's keys that exists (its
        // value is known: this writer's operations are sequential).
        let source = keys
            .iter()
            .filter(|k| *k != key)
            .nth(rng.random_range(0..keys.len() - 1))
            .filter(|k| states[*k].acked.is_some())
            .cloned();
        let (value, result) = if dice < 4 {
            let parts = [
                random_bytes(MIN_PART_SIZE, rng.random()),
                random_bytes(rng.random_range(0..256 * KIB), rng.random()),
            ];
            let value = Some(md5_bytes(&parts.concat()));
            states.get_mut(key).unwrap().in_flight = Some(value);
            (value, multipart_put(&s3, key, &parts).await)
        } else if let (true, Some(src)) = (dice >= 75 && dice < 85, source) {
            let value = states[&src].acked;
            states.get_mut(key).unwrap().in_flight = Some(value);
            let r = s3
                .copy_object()
                .bucket(BUCKET)
                .key(key)
                .copy_source(format!("{BUCKET}/{src}"))
                .send()
                .await;
            (value, r.map(|_| ()).map_err(|e| format!("COPY {src} -> {key}: {:?}", failure_of(&e))))
        } else if dice < 75 {
            let data = random_bytes(object_size(&mut rng), rng.random());
            let value = Some(md5_bytes(&data));
            states.get_mut(key).unwrap().in_flight = Some(value);
            let r = s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(bytestream(&data))
                .send()
                .await;
            (
                value,
                r.map(|_| ())
                    .map_err(|e| format!("PUT {key} ({} bytes): {:?}", data.len(), failure_of(&e))),
            )
        } else {
            states.get_mut(key).unwrap().in_flight = Some(None);
            let r = s3.delete_object().bucket(BUCKET).key(key).send().await;
            (
                None,
                r.map(|_| ()).map_err(|e| format!("DELETE {key}: {:?}", failure_of(&e))),
            )
        };
        match result {
            Ok(()) => {
                let st = states.get_mut(key).unwrap();
                st.acked = value;
                st.in_flight = None;
                acked_ops += 1;
            }
            Err(e) => {
                // Checked after the error: the kill flag is set before the
                // signal, so an error with the flag clear is the server's.
                if !killed.load(Ordering::SeqCst) {
                    error_before_kill = Some(e);
                }
                break;
            }
        }
    }
    WriterReport {
        states,
        acked_ops,
        error_before_kill,
    }
}

async fn multipart_put(s3: &aws_sdk_s3::Client, key: &str, parts: &[Vec<u8>]) -> Result<(), String> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let id = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("CreateMultipartUpload {key}: {:?}", failure_of(&e)))?
        .upload_id()
        .unwrap_or_default()
        .to_string();
    let mut done = CompletedMultipartUpload::builder();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(bytestream(p))
            .send()
            .await
            .map_err(|e| format!("UploadPart {key} #{n}: {:?}", failure_of(&e)))?;
        done = done.parts(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap_or_default())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(done.build())
        .send()
        .await
        .map_err(|e| format!("CompleteMultipartUpload {key}: {:?}", failure_of(&e)))?;
    Ok(())
}

/// Reads every key and the listing; checks them against the candidates and
/// returns the observed values (which become the new acknowledged state).
async fn verify(
    server: &Server,
    states: &BTreeMap<String, KeyState>,
    cycle: usize,
    seed: u64,
) -> BTreeMap<String, KeyState> {
    let s3 = client(server);
    let mut observed = BTreeMap::new();
    let mut failures = Vec::new();
    let mut sizes = BTreeMap::new();
    for (key, st) in states {
        let value: Value = match s3.get_object().bucket(BUCKET).key(key).send().await {
            Ok(out) => {
                let declared = out.content_length();
                let body = match out.body.collect().await {
                    Ok(b) => b.into_bytes().to_vec(),
                    Err(e) => {
                        failures.push(format!("{key}: reading the body failed: {e}"));
                        continue;
                    }
                };
                if declared != Some(body.len() as i64) {
                    failures.push(format!("{key}: Content-Length {declared:?} but {} bytes", body.len()));
                }
                sizes.insert(key.clone(), body.len() as i64);
                Some(md5_bytes(&body))
            }
            Err(e) => {
                let f = failure_of(&e);
                if f.status != Some(404) {
                    failures.push(format!("{key}: GET failed: {f:?}"));
                    continue;
                }
                None
            }
        };
        if !st.candidates().contains(&value) {
            let show = |v: &Value| v.map(hex::encode).unwrap_or_else(|| "absent".into());
            failures.push(format!(
                "{key}: got {} but the acknowledged value is {} (in flight: {})",
                show(&value),
                show(&st.acked),
                st.in_flight.map(|v| show(&v)).unwrap_or_else(|| "nothing".into()),
            ));
        }
        observed.insert(
            key.clone(),
            KeyState {
                acked: value,
                in_flight: None,
            },
        );
    }

    let mut listed = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(BUCKET).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => {
                for o in p.contents() {
                    listed.insert(o.key().unwrap_or("").to_string(), o.size().unwrap_or(-1));
                }
            }
            Err(e) => {
                failures.push(format!("listing failed: {:?}", failure_of(&e)));
                break;
            }
        }
    }
    let present: BTreeSet<&String> = observed
        .iter()
        .filter(|(_, s)| s.acked.is_some())
        .map(|(k, _)| k)
        .collect();
    let listed_keys: BTreeSet<&String> = listed.keys().collect();
    for k in listed_keys.difference(&present) {
        failures.push(format!("{k}: listed but GET says absent (or unknown key)"));
    }
    for k in present.difference(&listed_keys) {
        failures.push(format!("{k}: GET finds it but the listing does not"));
    }
    for (k, size) in &listed {
        if let Some(s) = sizes.get(k) {
            if s != size {
                failures.push(format!("{k}: listed size {size} but GET returned {s} bytes"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "crash test (seed {seed}), after cycle {cycle}:\n  {}\n{}",
        failures.join("\n  "),
        server.diagnostics()
    );
    observed
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_no_acknowledged_write() {
    let started = Instant::now();
    let seed: u64 = match std::env::var("TESSERA_CRASH_SEED") {
        Ok(s) => s.parse().expect("TESSERA_CRASH_SEED is a number"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("crash test seed: {seed} (replay with TESSERA_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let cycles: usize = std::env::var("TESSERA_CRASH_CYCLES")
        .map(|s| s.parse().expect("TESSERA_CRASH_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES);
    // Small segments: rolls, checkpoints and compaction happen between kills.
    let mut server = Server::start_with(ServerOpts {
        env: vec![("TESSERA_SEGMENT_SIZE".into(), "1MiB".into())],
        ..Default::default()
    });
    ok(
        client(&server).create_bucket().bucket(BUCKET).send().await,
        "create bucket",
    );
    let mut states: BTreeMap<String, KeyState> = (0..WRITERS)
        .flat_map(|w| (0..KEYS_PER_WRITER).map(move |k| (format!("w{w}/key-{k}"), KeyState::default())))
        .collect();

    let mut total_acked = 0;
    for cycle in 0..cycles {
        let killed = Arc::new(AtomicBool::new(false));
        let s3 = client(&server);
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let prefix = format!("w{w}/");
            let mine: BTreeMap<String, KeyState> = states
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            tasks.push(tokio::spawn(writer(s3.clone(), mine, rng.random(), killed.clone())));
        }
        let kill_after = Duration::from_millis(rng.random_range(KILL_AFTER_MS));
        tokio::time::sleep(kill_after).await;
        killed.store(true, Ordering::SeqCst);
        server.kill9();

        let mut acked = 0;
        for t in tasks {
            let report = t.await.expect("writer task");
            if let Some(e) = report.error_before_kill {
                panic!(
                    "crash test (seed {seed}), cycle {cycle}: request failed before the kill: {e}\n{}",
                    server.diagnostics()
                );
            }
            acked += report.acked_ops;
            states.extend(report.states);
        }
        total_acked += acked;
        let in_flight = states.values().filter(|s| s.in_flight.is_some()).count();
        eprintln!("cycle {cycle}: killed after {kill_after:?}, {acked} operations acknowledged, {in_flight} in flight");

        // The killed image, checked offline before the restart touches it.
        let out = std::process::Command::new(binary_path())
            .arg("fsck")
            .args(server.data_dirs())
            .output()
            .expect("run tessera fsck");
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "crash test (seed {seed}), cycle {cycle}: fsck of the killed image failed ({}):\n{}{}",
            out.status,
            report,
            String::from_utf8_lossy(&out.stderr)
        );

        server.start_again();
        states = verify(&server, &states, cycle, seed).await;
    }
    assert!(total_acked > 0, "no operation was acknowledged in {cycles} cycles");
    eprintln!(
        "crash test: {total_acked} acknowledged operations in {:?}, none lost; every killed image checked clean",
        started.elapsed()
    );
}
