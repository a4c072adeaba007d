//! Measurements behind the numbers of the security fixes (issue 15), not
//! run by default:
//!
//! ```sh
//! cargo test -p tessera-tests --test measure -- --ignored --nocapture --test-threads 1
//! TESSERA_BIN=/path/to/other/tessera cargo test ...   # the same against another build
//! ```
//!
//! `rss_under_slow_uploads`: the server's RSS before and 3 s after 500
//! uploads that each send 900 KB of a declared 5 MB body and stall.
//! `cpu_per_rejected_request`: server CPU time (utime + stime from
//! /proc/PID/stat) per request for anonymous requests, bad SigV2 and bad
//! SigV4 signatures, each request carrying 59 KB of `x-amz-meta-*` headers.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use tessera_tests::sign::Payload;
use tessera_tests::*;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

fn connect_from(source: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(10)).ok()?;
    let s: TcpStream = s.into();
    s.set_write_timeout(Some(Duration::from_secs(20))).ok()?;
    Some(s)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn rss_under_slow_uploads() {
    let (server, _s3) = with_bucket("mem").await;
    let pid = server.pid().expect("pid");
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_mib(pid);
    let head = server
        .raw_request("PUT", "/mem/slow")
        .header("Content-Length", "5000000")
        .sign_payload(&server.access_key, &server.secret_key, SystemTime::now(), Payload::Unsigned)
        .head_bytes();
    let addr = server.addr();
    let n = 500;
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let head = head.clone();
            // Spread over 16 loopback addresses so that the per-client cap is
            // not what is measured.
            std::thread::spawn(move || {
                let mut s = connect_from([127, 0, 1, 1 + (i % 16) as u8], addr)?;
                s.write_all(&head).ok()?;
                let _ = s.write_all(&vec![b'z'; 900_000]);
                Some(s)
            })
        })
        .collect();
    let conns: Vec<TcpStream> = threads.into_iter().filter_map(|t| t.join().ok().flatten()).collect();
    std::thread::sleep(Duration::from_secs(3));
    let during = rss_mib(pid);
    println!(
        "RSS with {} of {n} stalled uploads (900 KB of 5 MB each): before {before:.0} MiB, during {during:.0} MiB (+{:.0} MiB)",
        conns.len(),
        during - before
    );
    drop(conns);
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// 59 KB of `x-amz-meta-*` headers on a bucket-level path-style target whose
/// raw and canonical paths differ, with an empty `acl=` and Date: the shape
/// that made the old SigV2 verifier try the most strings to sign.
fn padded(server: &Server) -> RawRequest {
    let date = tessera_proto::time::format_http_date(tessera_tests::sign::unix_secs(SystemTime::now()));
    let mut req = server.raw_request("GET", "/cp%75?acl=").header("Date", &date);
    for i in 0..60 {
        req = req.header(&format!("x-amz-meta-pad{i:02}"), &"p".repeat(980));
    }
    req
}

/// Microseconds of server CPU per request, over `n` requests on one connection.
fn cpu_us_per_request(server: &Server, req: &RawRequest, n: usize) -> (f64, u16) {
    let pid = server.pid().expect("pid");
    let mut conn = server.connect();
    let bytes = req.to_bytes();
    let mut status = 0;
    let start = cpu_secs(pid);
    for _ in 0..n {
        conn.send(&bytes).expect("send");
        status = conn.read_response_for(&req.method).status;
    }
    ((cpu_secs(pid) - start) * 1e6 / n as f64, status)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn cpu_per_rejected_request() {
    let (server, _s3) = with_bucket("cpu").await;
    let n = 3000;
    let anonymous = padded(&server);
    let date = tessera_proto::time::format_http_date(tessera_tests::sign::unix_secs(SystemTime::now()));
    let bad_v2 = padded(&server)
        .header("x-amz-date", &date)
        .header("Authorization", &format!("AWS {}:AAAAAAAAAAAAAAAAAAAAAAAAAAA=", server.access_key));
    let bad_v4 = padded(&server).sign(&server.access_key, "not-the-secret-key", SystemTime::now());
    println!("head bytes: {}", anonymous.head_bytes().len());
    cpu_us_per_request(&server, &anonymous, 200);
    for (what, req) in [("anonymous", &anonymous), ("bad SigV2", &bad_v2), ("bad SigV4", &bad_v4)] {
        let (us, status) = cpu_us_per_request(&server, req, n);
        println!("{what:>10}: {us:8.1} us of server CPU per request (status {status}, {n} requests)");
    }
}
