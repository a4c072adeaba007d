//! Cluster membership with real `tessera` processes on loopback: nodes
//! join through a seed, see each other, detect a kill -9, take a restarted
//! node back, see a clean stop, and never admit a node without the secret.
//! (Membership only: data is not placed across nodes yet, issue 12.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tessera_tests::cluster::{free_udp_port, start_node, wait_for};
use tessera_tests::*;

const SECRET: &str = "the test cluster's shared secret";

fn cluster_status(server: &Server) -> serde_json::Value {
    server.admin_json("/admin/v1/cluster")
}

/// Address -> state, as `server` sees its cluster.
fn states(server: &Server) -> HashMap<String, String> {
    let s = cluster_status(server);
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["address"].as_str().unwrap().to_string(), m["state"].as_str().unwrap().to_string()))
        .collect()
}

fn sees(server: &Server, addr: SocketAddr, state: &str) -> bool {
    states(server).get(&addr.to_string()).is_some_and(|s| s == state)
}

#[test]
fn nodes_join_detect_a_crash_take_a_restart_back_and_see_a_clean_stop() {
    let (ca, cb, cc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let a = start_node(ca, None, SECRET);
    let mut b = start_node(cb, Some(ca), SECRET);
    let mut c = start_node(cc, Some(ca), SECRET);
    let all = [ca, cb, cc];
    let t = wait_for("every node sees three alive", Duration::from_secs(30), || {
        [&a, &b, &c].iter().all(|n| all.iter().all(|&m| sees(n, m, "alive")))
    });
    eprintln!("joined in {t:?}");
    // The node ids are distinct and stable.
    let ids: std::collections::HashSet<String> =
        [&a, &b, &c].iter().map(|n| cluster_status(n)["node"]["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3);
    let m = a.scrape_metrics();
    assert_eq!(m.get("tessera_cluster_members{state=\"alive\"}").copied(), Some(3.0), "{m:?}");
    // RPC between every pair: each node's PING of each peer succeeded
    // (authenticated handshake, session frames, the answer checked).
    let t = wait_for("RPC PING ok between every pair", Duration::from_secs(20), || {
        [&a, &b, &c].iter().all(|n| {
            let s = cluster_status(n);
            s["members"].as_array().unwrap().iter().filter(|m| m["local"] == false).count() == 2
                && s["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["local"] == false)
                    .all(|m| m["rpc"]["ok"] == true && m["rpc"]["rtt_us"].as_u64().is_some())
        })
    });
    eprintln!("rpc ok in {t:?}: {}", cluster_status(&a)["members"]);
    assert!(a.scrape_metrics().get("tessera_cluster_rpc_served_total").copied().unwrap_or(0.0) >= 2.0);

    // kill -9: the others see it down.
    let c_id = cluster_status(&c)["node"]["id"].as_str().unwrap().to_string();
    let bump_before = cluster_status(&a)["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == cc.to_string())
        .unwrap()["bump"]
        .as_u64()
        .unwrap();
    c.kill9();
    let t = wait_for("the killed node seen down", Duration::from_secs(30), || sees(&a, cc, "down") && sees(&b, cc, "down"));
    eprintln!("kill -9 detected in {t:?}");

    // Restarted (same data dir, same id) and joining through b: alive again.
    std::thread::sleep(Duration::from_millis(1100)); // a later second: a higher bump
    c.start_again();
    assert_eq!(cluster_status(&c)["node"]["id"].as_str().unwrap(), c_id, "the node id survives a restart");
    wait_for("the restarted node alive again", Duration::from_secs(30), || {
        [&a, &b, &c].iter().all(|n| all.iter().all(|&m| sees(n, m, "alive")))
    });
    let bump_after = cluster_status(&a)["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["address"] == cc.to_string() && m["state"] == "alive")
        .map(|m| m["bump"].as_u64().unwrap())
        .next()
        .unwrap();
    assert_ne!(bump_after, bump_before, "a restarted node comes back as a new incarnation");
    // The pooled RPC connections to the killed process broke; calls to the
    // restarted one go over new connections.
    let restarted_at = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    wait_for("RPC to the restarted node ok again", Duration::from_secs(20), || {
        [&a, &b].iter().all(|n| {
            cluster_status(n)["members"].as_array().unwrap().iter().any(|m| {
                m["address"] == cc.to_string() && m["rpc"]["ok"] == true && m["rpc"]["at_ms"].as_u64().unwrap_or(0) > restarted_at
            })
        })
    });

    // A clean stop leaves the cluster: seen down without waiting for suspicion.
    b.stop();
    let t = wait_for("the stopped node seen down", Duration::from_secs(30), || sees(&a, cb, "down") && sees(&c, cb, "down"));
    eprintln!("clean stop seen in {t:?}");
}

#[test]
fn a_node_without_the_secret_is_never_admitted() {
    let (ca, cx) = (free_udp_port(), free_udp_port());
    let a = start_node(ca, None, SECRET);
    let x = start_node(cx, Some(ca), "another secret, also long enough");
    // x announces to a every probe period; a refuses every frame.
    wait_for("a refuses the intruder's frames", Duration::from_secs(30), || {
        cluster_status(&a)["refused"].as_u64().unwrap() >= 3
    });
    assert_eq!(states(&a).len(), 1, "a admitted someone: {:?}", states(&a));
    assert_eq!(states(&x).len(), 1, "the intruder learned members: {:?}", states(&x));
    let m = a.scrape_metrics();
    assert!(m.get("tessera_cluster_datagrams_refused_total").copied().unwrap_or(0.0) >= 3.0, "{m:?}");
}

/// The RPC port answers nothing to a hello without the secret, to one
/// meant for another node, or to garbage: it closes, and counts.
#[test]
fn rpc_refuses_strangers_before_any_answer() {
    use std::io::{Read, Write};
    use tessera_cluster::rpc::{Hello, Role};
    use tessera_cluster::seal::ClusterKey;
    let ca = free_udp_port();
    let a = start_node(ca, None, SECRET);
    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let hello = |secret: &str, to: [u8; 16]| {
        Hello { role: Role::Client, sent_ms: now, from: [7; 16], to, nonce: [5; 32], features: 0 }.encode(&ClusterKey::new(secret.as_bytes()).unwrap(), None)
    };
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        ("another secret", hello("not the cluster's secret at all", [0; 16]).to_vec()),
        ("meant for another node", hello(SECRET, [9; 16]).to_vec()),
        ("garbage", vec![0x5a; 112]),
    ];
    for (what, bytes) in &attempts {
        let mut s = std::net::TcpStream::connect(ca).expect("connect to the RPC port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut buf = [0u8; 1];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{what}: the node answered instead of closing");
    }
    // The right secret gets the node's hello back (112 bytes).
    let mut s = std::net::TcpStream::connect(ca).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&hello(SECRET, [0; 16])).unwrap();
    let mut buf = [0u8; 112];
    s.read_exact(&mut buf).expect("the node's hello");
    assert_eq!(&buf[..4], b"TSCR");
    let refused = cluster_status(&a)["rpc_refused"].as_u64().unwrap();
    assert_eq!(refused, 3, "each stranger counted once");
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], secret: Option<&str>| {
        let mut cmd = std::process::Command::new(binary_path());
        cmd.arg("server").args(["--address", "127.0.0.1:0", "--admin-address", "off"]).args(args).arg(dir.path());
        cmd.env_remove("TESSERA_CLUSTER_SECRET");
        if let Some(s) = secret {
            cmd.env("TESSERA_CLUSTER_SECRET", s);
        }
        let out = cmd.output().expect("run tessera");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let port = free_udp_port().to_string();
    let (code, err) = run(&["--cluster-address", &port], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TESSERA_CLUSTER_SECRET"), "{err}");
    let (code, err) = run(&["--cluster-address", &port], Some("short"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("at least 16 bytes"), "{err}");
    let (code, err) = run(&["--cluster-address", "0.0.0.0:7000"], Some(SECRET));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("other nodes reach"), "{err}");
    let (code, err) = run(&["--join", &port], Some(SECRET));
    assert_eq!(code, Some(2), "{err}");
    // Nothing was written into the data dir by a refused start.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
