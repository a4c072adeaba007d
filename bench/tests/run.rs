//! tessera-bench against the real node: short runs of each workload, checking
//! the JSON, CSV and SVG outputs, presigned GETs, compare, and that cleanup
//! leaves the bucket empty. About 6 s of load in all.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tessera_tests::Server;

fn bench(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
        .args(["--endpoint", &server.endpoint(), "--progress", "1s"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .output()
        .expect("run tessera-bench")
}

/// Runs a workload that must succeed; its JSON result.
fn run_ok(server: &Server, dir: &Path, name: &str, args: &[&str]) -> Value {
    let json = dir.join(format!("{name}.json"));
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().expect("utf-8 temp path")]);
    let out = bench(server, &all);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name}: {:?}\n{stdout}\n{stderr}", out.status);
    assert!(!stdout.contains(&server.secret_key) && !stderr.contains(&server.secret_key), "the secret leaked");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("read JSON")).expect("parse JSON");
    assert_eq!(v["errors_total"], 0, "{name}: {v}");
    v
}

#[test]
fn workloads_against_a_real_node() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |f: &str| dir.path().join(f).to_str().expect("utf-8 temp path").to_string();

    let (csv, svg) = (path("put.csv"), path("put.svg"));
    let put = run_ok(&server, dir.path(), "put", &[
        "--csv", &csv, "--svg", &svg,
        "put", "--bucket", "bench", "--size", "1KiB-8KiB", "--objects", "50", "--concurrency", "4", "--duration", "1s",
    ]);
    assert!(put["ops"]["put"]["ok"].as_u64().unwrap_or(0) > 10, "{put}");
    let timeline = put["timeline"].as_array().expect("timeline");
    assert!(!timeline.is_empty() && timeline[0]["ops_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{put}");
    let csv = std::fs::read_to_string(&csv).expect("CSV");
    assert!(csv.starts_with("workload,op,ok,errors,") && csv.lines().count() == 2, "{csv}");
    let svg = std::fs::read_to_string(&svg).expect("SVG");
    assert!(svg.starts_with("<svg ") && svg.contains("<polyline"), "{svg}");

    // Sizes are a function of the key: GET checks each body's length against it.
    let get = run_ok(&server, dir.path(), "get", &[
        "get", "--bucket", "bench", "--size", "1KiB-8KiB", "--objects", "50", "--concurrency", "4", "--duration", "1s",
        "--key-dist", "zipf:1.1", "--presigned",
    ]);
    assert!(get["ops"]["get"]["ok"].as_u64().unwrap_or(0) > 10, "{get}");
    assert_eq!(get["params"]["presigned"], true);

    let mixed = run_ok(&server, dir.path(), "mixed", &[
        "mixed", "--bucket", "bench", "--size", "4KiB", "--objects", "30", "--concurrency", "4", "--duration", "1s",
        "--mix", "get=50,put=20,stat=20,delete=10", "--cleanup",
    ]);
    for op in ["get", "put", "stat", "delete"] {
        assert!(mixed["ops"][op]["ok"].as_u64().unwrap_or(0) > 0, "{op}: {mixed}");
    }

    let multipart = run_ok(&server, dir.path(), "multipart", &[
        "multipart", "--bucket", "bench", "--size", "11MiB", "--part-size", "5MiB", "--objects", "2", "--concurrency", "2",
        "--count", "2", "--prefix", "mp/",
    ]);
    assert_eq!(multipart["ops"]["multipart"]["ok"], 2, "{multipart}");
    assert_eq!(multipart["ops"]["multipart"]["bytes"], 2 * 11 * 1024 * 1024);

    // Exactly the key space, once each: then nothing is left to list.
    let delete = run_ok(&server, dir.path(), "delete", &[
        "delete", "--bucket", "bench", "--objects", "50", "--key-dist", "sequential", "--count", "50", "--concurrency", "4",
    ]);
    assert_eq!(delete["ops"]["delete"]["ok"], 50);
    run_ok(&server, dir.path(), "stat", &[
        "stat", "--bucket", "bench", "--objects", "20", "--concurrency", "2", "--count", "40", "--cleanup",
    ]);
    let list = run_ok(&server, dir.path(), "list", &["list", "--bucket", "bench", "--prefix", "tessera-bench/"]);
    assert_eq!((list["results"]["keys"].as_u64(), list["results"]["complete"].as_bool()), (Some(0), Some(true)), "{list}");

    // A missing key is an error counted by its S3 code, and the exit status says so.
    let out = bench(&server, &["get", "--bucket", "bench", "--objects", "5", "--skip-prefill", "--count", "3", "--concurrency", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("get 404 NoSuchKey: 3"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_tessera-bench")).args(["compare", &path("put.json"), &path("get.json")]).output().expect("compare");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("put req/s") && table.contains("get req/s"), "{table}");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-bench")).args(["plot", &path("get.json"), "-o", &path("get.svg")]).output().expect("plot");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
