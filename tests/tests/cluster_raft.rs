//! The cluster configuration in Raft with real `tessera` processes on
//! loopback: three nodes form one Raft group (the first initialises it,
//! the joiners are added as learners and promoted to voters), a write on any
//! node is readable on all, kill -9 of the leader gives a new leader within
//! seconds and writes go on, and the killed node restarted from its files
//! catches up.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tessera_tests::cluster::{free_udp_port, start_node, wait_for};
use tessera_tests::*;

const SECRET: &str = "the raft test cluster's secret";

fn start(cluster: SocketAddr, join: Option<SocketAddr>) -> Server {
    start_node(cluster, join, SECRET)
}

fn admin(server: &Server, method: &str, target: &str) -> (u16, serde_json::Value) {
    let addr = server.admin_addr().expect("admin address");
    let req = RawRequest::new(method, target).header("Host", &addr.to_string()).sign(
        &server.access_key,
        &server.secret_key,
        SystemTime::now(),
    );
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    let r = c.read_response_for(method);
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

fn raft(server: &Server) -> serde_json::Value {
    server.admin_json("/admin/v1/cluster")["raft"].clone()
}

fn read(server: &Server, key: &str) -> Option<String> {
    let (status, v) = admin(server, "GET", &format!("/admin/v1/cluster/config/{key}"));
    (status == 200).then(|| v["value"].as_str().unwrap().to_string())
}

/// A write through `server` (forwarded to the leader if need be); retried
/// while no leader is known (an election under way).
fn write(server: &Server, key: &str, value: &str) -> u64 {
    let mut last = None;
    for _ in 0..50 {
        let (status, v) = admin(server, "PUT", &format!("/admin/v1/cluster/config/{key}?value={value}"));
        if status == 200 {
            assert_eq!(v["ok"], true, "{v}");
            return v["index"].as_u64().unwrap();
        }
        last = Some((status, v));
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("write {key} through a node: {last:?}");
}

#[test]
fn three_nodes_share_one_configuration_and_survive_the_leader_s_kill() {
    let (ca, cb, cc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let a = start(ca, None);
    let b = start(cb, Some(ca));
    let c = start(cc, Some(ca));
    let mut nodes = [a, b, c];
    let t = wait_for("three voters, one leader", Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            let r = raft(n);
            r["voters"].as_array().is_some_and(|v| v.len() == 3) && r["leader"].is_string()
        })
    });
    eprintln!("three voters in {t:?}: {}", raft(&nodes[0]));
    let leader_id = raft(&nodes[0])["leader"].as_str().unwrap().to_string();
    let roles: Vec<String> = nodes.iter().map(|n| raft(n)["role"].as_str().unwrap().to_string()).collect();
    assert_eq!(roles.iter().filter(|r| *r == "leader").count(), 1, "{roles:?}");

    // A write on each node (two of them followers) is readable on all.
    for (i, n) in nodes.iter().enumerate() {
        write(n, &format!("bucket-{i}"), &format!("settings-{i}"));
    }
    wait_for("every write readable on every node", Duration::from_secs(10), || {
        nodes.iter().all(|n| (0..3).all(|i| read(n, &format!("bucket-{i}")).as_deref() == Some(&format!("settings-{i}"))))
    });
    // Compare-and-set: creating an existing key is refused with its version.
    let (status, v) = admin(&nodes[1], "PUT", "/admin/v1/cluster/config/bucket-0?value=other&expect=0");
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["ok"], false);

    // kill -9 of the leader: a new leader within seconds, and writes go on.
    let li = nodes.iter().position(|n| raft(n)["id"] == leader_id.as_str()).unwrap();
    nodes[li].kill9();
    let killed_at = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    wait_for("a new leader", Duration::from_secs(15), || {
        others.iter().all(|&i| {
            let r = raft(&nodes[i]);
            r["leader"].is_string() && r["leader"] != leader_id.as_str()
        })
    });
    eprintln!("new leader {:?} after {:?}", raft(&nodes[others[0]])["leader"], killed_at.elapsed());
    for k in 0..5 {
        write(&nodes[others[k % 2]], &format!("after-{k}"), "v");
    }
    eprintln!("writes going on {:?} after the kill", killed_at.elapsed());
    wait_for("the writes after the kill readable on both", Duration::from_secs(10), || {
        others.iter().all(|&i| (0..5).all(|k| read(&nodes[i], &format!("after-{k}")).is_some()))
    });

    // The killed node restarts from its files and catches up.
    nodes[li].start_again();
    let t = wait_for("the restarted node caught up", Duration::from_secs(20), || {
        (0..5).all(|k| read(&nodes[li], &format!("after-{k}")).is_some())
            && (0..3).all(|i| read(&nodes[li], &format!("bucket-{i}")).is_some())
    });
    eprintln!("restarted node caught up in {t:?}");
    let histories: Vec<(u64, String)> = {
        wait_for("one applied history on all", Duration::from_secs(10), || {
            let h: Vec<_> = nodes.iter().map(|n| raft(n)).collect();
            h.iter().all(|r| r["applied_index"] == h[0]["applied_index"] && r["history"] == h[0]["history"])
        });
        nodes.iter().map(|n| raft(n)).map(|r| (r["applied_index"].as_u64().unwrap(), r["history"].to_string())).collect()
    };
    eprintln!("applied on all: {histories:?}");
}
