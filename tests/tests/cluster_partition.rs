//! Network partitions between real `tessera` nodes, each in a network
//! namespace of its own (`tessera_tests::netns`): one node is cut off from
//! the other two by blackhole routes while the test still reaches all three.
//! No acknowledged write is lost, the configuration does not split (a bucket
//! created on the minority never appears), the cut node serves nothing once
//! its lease lapsed, and after the heal every node serves the majority's
//! writes, never an older value.
//!
//! Needs root (namespaces, a bridge); elsewhere each test prints
//! `skipped: ...` and passes, unless `TESSERA_REQUIRE_NETNS=1`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tessera_tests::cluster::{urlenc, wait_for};
use tessera_tests::netns::Net;
use tessera_tests::*;

const SECRET: &str = "the partition test cluster's secret";
const AK: &str = "AKIACLUSTERPARTITION";
const SK: &str = "cluster-partition-test-secret-0123456789";

/// Three nodes in namespaces of one `Net`. Field order matters: the nodes
/// are dropped (killed) before the namespaces are removed.
struct Cluster {
    nodes: Vec<Server>,
    ids: Vec<String>,
    net: Net,
}

/// With `PARTITION_KEEP_LOGS=DIR`, each node's log is copied to
/// `DIR/node<i>.log` when the test ends (passed or failed).
impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os("PARTITION_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            for (i, n) in self.nodes.iter().enumerate() {
                let _ = std::fs::copy(n.temp_dir().join("server.log"), std::path::Path::new(&dir).join(format!("node{i}.log")));
            }
        }
    }
}

/// Three nodes (takeover after 4 s, as the frozen-owner test) joined
/// through the first, once each follows a layout of all three and runs
/// cluster lanes; `None` when namespaces cannot be made (skipped).
fn three_nodes() -> Option<Cluster> {
    let net = Net::create_or_skip(3)?;
    let start = |i: usize| {
        let mut opts = net.node_opts(i, (i > 0).then_some(0), SECRET);
        opts.env.push(("TESSERA_TAKEOVER_AFTER_MS".into(), "4000".into()));
        opts.env.push(("TESSERA_ACCESS_KEY".into(), AK.into()));
        opts.env.push(("TESSERA_SECRET_KEY".into(), SK.into()));
        if let Ok(filter) = std::env::var("PARTITION_NODE_LOG") {
            opts.env.push(("TESSERA_LOG".into(), filter));
        }
        let mut s = Server::start_with(opts);
        s.set_credentials(AK, SK);
        s
    };
    let nodes = vec![start(0), start(1), start(2)];
    let t = wait_for("a layout of three nodes with lanes on every node", Duration::from_secs(40), || {
        nodes.iter().all(|n| {
            let l = layout(n);
            l["nodes"].as_array().is_some_and(|v| v.len() == 3)
                && l["pending"].as_array().is_some_and(|p| p.is_empty())
                && metric_total(&n.scrape_metrics(), "tessera_cluster_lanes") > 0.0
        })
    });
    eprintln!("three nodes in namespaces ready in {t:?}");
    let ids = nodes.iter().map(|n| n.admin_json("/admin/v1/cluster")["node"]["id"].as_str().unwrap().to_string()).collect();
    Some(Cluster { nodes, ids, net })
}

fn layout(n: &Server) -> serde_json::Value {
    n.admin_json("/admin/v1/cluster")["layout"].clone()
}

/// The index of the node that says it leads the configuration.
fn raft_leader(c: &Cluster) -> Option<usize> {
    (0..3).find(|&i| c.nodes[i].admin_json("/admin/v1/cluster")["raft"]["role"] == "leader")
}

/// The lane owner of `key` (the node whose partitions hold it), as node `via` sees it.
fn owner_of(c: &Cluster, via: usize, bucket: &str, key: &str) -> usize {
    let v = c.nodes[via].admin_json(&format!("/admin/v1/cluster/locate?bucket={bucket}&key={}", urlenc(key)));
    let id = v["owner"].as_str().expect("an owner");
    c.ids.iter().position(|i| i == id).unwrap_or_else(|| panic!("owner {id} is no node"))
}

/// (lane owner, acting node) of each takeover record a node's status shows.
fn takeovers(n: &Server) -> Vec<(String, String)> {
    layout(n)["takeovers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["owner"].as_str().unwrap_or("").to_string(), t["acting"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// Whether node `n` shows `owner`'s partitions handed back (a record naming
/// the owner itself, so `n` applied the handback, not only a view from
/// before the takeover), no other node acting for anyone, and no stale record.
fn handed_back(n: &Server, owner: &str) -> bool {
    let t = takeovers(n);
    t.iter().any(|(o, a)| o == owner && a == owner)
        && t.iter().all(|(o, a)| o == a)
        && layout(n)["stale"].as_array().is_some_and(|s| s.is_empty())
}

/// A client that fails fast: no retries (each attempt is one answer the
/// test records), 2 s to connect, 8 s a request.
fn client(n: &Server) -> Client {
    client_within(n, Duration::from_secs(8))
}

fn client_within(n: &Server, limit: Duration) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(limit)
        .operation_timeout(limit)
        .build();
    Client::from_conf(n.config_builder(AK, SK).timeout_config(timeouts).retry_config(RetryConfig::disabled()).build())
}

/// How a request ended: `Ok`, or the HTTP status and code (status 0: no
/// answer, a timeout or a refused connection).
#[derive(Debug, Clone, PartialEq)]
enum Answer<T> {
    Ok(T),
    Err(u16, String),
}

fn answer<T, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, aws_sdk_s3::error::SdkError<E, HttpResponse>>) -> Answer<T> {
    match r {
        Ok(v) => Answer::Ok(v),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = match &e {
                aws_sdk_s3::error::SdkError::ServiceError(s) => s.err().code().unwrap_or("").to_string(),
                other => format!("{other:?}").chars().take(80).collect(),
            };
            Answer::Err(status, code)
        }
    }
}

async fn get(c: &Client, bucket: &str, key: &str) -> Answer<Vec<u8>> {
    match answer(c.get_object().bucket(bucket).key(key).send().await) {
        Answer::Ok(o) => match o.body.collect().await {
            Ok(b) => Answer::Ok(b.into_bytes().to_vec()),
            Err(e) => Answer::Err(0, format!("body: {e}")),
        },
        Answer::Err(s, c) => Answer::Err(s, c),
    }
}

async fn put(c: &Client, bucket: &str, key: &str, body: Vec<u8>) -> Answer<()> {
    match answer(c.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await) {
        Answer::Ok(_) => Answer::Ok(()),
        Answer::Err(s, c) => Answer::Err(s, c),
    }
}

/// A request retried while it answers 503 or nothing (a node taking over,
/// handing back, an election), for up to `limit`: its first other answer.
async fn settled<T, F, Fut>(limit: Duration, mut f: F) -> Answer<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer<T>>,
{
    let started = Instant::now();
    loop {
        match f().await {
            Answer::Err(503 | 0, _) if started.elapsed() < limit => tokio::time::sleep(Duration::from_millis(200)).await,
            r => return r,
        }
    }
}

async fn create_bucket(c: &Client, name: &str) -> Answer<()> {
    match answer(c.create_bucket().bucket(name).send().await) {
        Answer::Ok(_) => Answer::Ok(()),
        Answer::Err(s, c) => Answer::Err(s, c),
    }
}

/// Every key of `bucket` through `c`, 500 a page.
async fn list_all(c: &Client, bucket: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = match answer(c.list_objects_v2().bucket(bucket).max_keys(500).set_continuation_token(token.clone()).send().await) {
            Answer::Ok(r) => r,
            Answer::Err(s, code) => return Err(format!("{s} {code}")),
        };
        out.extend(r.contents().iter().map(|o| o.key().unwrap().to_string()));
        if r.is_truncated() != Some(true) {
            return Ok(out);
        }
        token = r.next_continuation_token().map(str::to_string);
    }
}

/// Whether bucket `name` exists through `c`: `Some(true)` listed,
/// `Some(false)` NoSuchBucket, `None` anything else (503 while settling).
async fn bucket_exists(c: &Client, name: &str) -> Option<bool> {
    match answer(c.list_objects_v2().bucket(name).max_keys(1).send().await) {
        Answer::Ok(_) => Some(true),
        Answer::Err(404, code) if code == "NoSuchBucket" => Some(false),
        Answer::Err(..) => None,
    }
}

/// An object the writer PUT and got 200 for.
#[derive(Clone, Debug)]
struct Acked {
    key: String,
    /// The node the PUT went through.
    via: usize,
    len: usize,
    md5: String,
    /// When the PUT was sent and when its 200 came, since the test's start.
    sent: Duration,
    done: Duration,
}

/// The body of the writer's key number `seq`: mostly small (their records
/// carry the body), every 8th 300 KB (striped over the nodes).
fn writer_body(seq: u64) -> Vec<u8> {
    let len = if seq % 8 == 7 { 300_000 } else { 1 + (seq as usize * 7919) % 6000 };
    random_bytes(len, 0x5eed_0000 + seq)
}

/// One PUT of the writers.
struct Outcome {
    via: usize,
    sent: Duration,
    took: Duration,
    key: String,
    what: String,
}

/// Writers PUTting distinct keys through every node, one writer per node,
/// until stopped; every PUT answered 200 is recorded.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    tried: Arc<Mutex<BTreeSet<String>>>,
    /// Every PUT.
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(rt: &tokio::runtime::Runtime, clients: &[Client], bucket: &str, t0: Instant) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let tried: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let tasks = clients
            .iter()
            .enumerate()
            .map(|(via, c)| {
                let (c, stop, acked, tried, bucket) = (c.clone(), stop.clone(), acked.clone(), tried.clone(), bucket.to_string());
                let outcomes = outcomes.clone();
                rt.spawn(async move {
                    let mut seq = via as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("w{via}/{seq:06}");
                        let body = writer_body(seq);
                        let (len, md5) = (body.len(), md5_hex(&body));
                        tried.lock().unwrap().insert(key.clone());
                        let sent = t0.elapsed();
                        let r = put(&c, &bucket, &key, body).await;
                        outcomes.lock().unwrap().push(Outcome {
                            via,
                            sent,
                            took: t0.elapsed() - sent,
                            key: key.clone(),
                            what: match &r {
                                Answer::Ok(()) => "200".to_string(),
                                Answer::Err(0, _) => "no answer".to_string(),
                                Answer::Err(s, code) => format!("{s} {code}"),
                            },
                        });
                        if r == Answer::Ok(()) {
                            acked.lock().unwrap().push(Acked { key, via, len, md5, sent, done: t0.elapsed() });
                        } else {
                            // A node that answers at once (503) is not hammered.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        seq += 3;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            })
            .collect();
        Writers { stop, acked, tried, outcomes, tasks }
    }

    /// Stops the writers; prints what each node answered them in each
    /// period between `marks` (named instants since the test's start).
    fn finish(self, rt: &tokio::runtime::Runtime, marks: &[(&str, Duration)]) -> (Vec<Acked>, BTreeSet<String>, Vec<Outcome>) {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for t in self.tasks {
                t.await.unwrap();
            }
        });
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        let tried = std::mem::take(&mut *self.tried.lock().unwrap());
        let outcomes = std::mem::take(&mut *self.outcomes.lock().unwrap());
        for (i, (name, from)) in marks.iter().enumerate() {
            let to = marks.get(i + 1).map(|m| m.1).unwrap_or(Duration::MAX);
            let mut per: std::collections::BTreeMap<(usize, &str), usize> = Default::default();
            for o in outcomes.iter().filter(|o| o.sent >= *from && o.sent < to) {
                *per.entry((o.via, o.what.as_str())).or_default() += 1;
            }
            eprintln!("PUTs sent {name} ({from:?}..): {per:?}");
        }
        (acked, tried, outcomes)
    }
}

/// Every acknowledged object reads back whole, with its MD5, through every
/// node (503s waited out), and every node's listing holds every
/// acknowledged key and nothing never tried.
fn check_acked(rt: &tokio::runtime::Runtime, clients: &[Client], bucket: &str, acked: &[Acked], tried: &BTreeSet<String>) {
    let started = Instant::now();
    rt.block_on(async {
        let checks = clients.iter().enumerate().map(|(n, c)| {
            let (c, acked, bucket) = (c.clone(), acked.to_vec(), bucket.to_string());
            tokio::spawn(async move {
                for a in &acked {
                    match settled(Duration::from_secs(20), || get(&c, &bucket, &a.key)).await {
                        Answer::Ok(b) => assert!(
                            b.len() == a.len && md5_hex(&b) == a.md5,
                            "{} (acknowledged through node {} at {:?}) read through node {n}: {} bytes, md5 {}, want {} bytes, md5 {}",
                            a.key, a.via, a.sent, b.len(), md5_hex(&b), a.len, a.md5
                        ),
                        Answer::Err(s, code) => panic!("{} (acknowledged through node {} at {:?}) read through node {n}: {s} {code}", a.key, a.via, a.sent),
                    }
                }
            })
        });
        for t in checks.collect::<Vec<_>>() {
            t.await.unwrap();
        }
        for (n, c) in clients.iter().enumerate() {
            let listed = settled(Duration::from_secs(20), || async {
                match list_all(c, bucket).await {
                    Ok(l) => Answer::Ok(l),
                    Err(e) => Answer::Err(if e.starts_with("503") { 503 } else { 1 }, e),
                }
            })
            .await;
            let Answer::Ok(listed) = listed else { panic!("list through node {n}: {listed:?}") };
            let listed: BTreeSet<String> = listed.into_iter().collect();
            let missing: Vec<&String> = acked.iter().map(|a| &a.key).filter(|k| !listed.contains(*k)).collect();
            assert!(missing.is_empty(), "the listing through node {n} misses {} acknowledged keys: {:?}", missing.len(), &missing[..missing.len().min(10)]);
            let invented: Vec<&String> = listed.iter().filter(|k| !tried.contains(*k)).collect();
            assert!(invented.is_empty(), "the listing through node {n} shows keys never written: {invented:?}");
        }
    });
    eprintln!("{} acknowledged objects read back through {} nodes and listed, in {:?}", acked.len(), clients.len(), started.elapsed());
}

/// The node configuration leader is cut off from the other two while
/// writers PUT distinct keys through all three nodes. The cut node
/// answers 503 for objects within a few seconds and refuses a bucket; the
/// majority takes over its partitions, takes writes of every key, and
/// creates a bucket. After the heal, the partitions are handed back, the
/// majority's bucket is everywhere, the minority's nowhere, and every
/// acknowledged PUT reads back exactly and is listed through every node.
#[test]
fn a_cut_off_leader_serves_nothing_and_no_acknowledged_write_is_lost() {
    let Some(cluster) = three_nodes() else { return };
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clients: Vec<Client> = cluster.nodes.iter().map(client).collect();
    let bucket = "partition";
    rt.block_on(async {
        let r = settled(Duration::from_secs(20), || create_bucket(&clients[0], bucket)).await;
        assert_eq!(r, Answer::Ok(()), "create bucket");
    });
    // The node to cut: the configuration leader (it owns a third of the
    // partitions, as every node does).
    let cut = raft_leader(&cluster).expect("a configuration leader");
    let cut_id = cluster.ids[cut].clone();
    let majority: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    // Keys of the cut node written before the cut, small and striped.
    let early: Vec<String> = (0..).map(|i| format!("early-{i}")).filter(|k| owner_of(&cluster, majority[0], bucket, k) == cut).take(4).collect();
    let early_bodies: Vec<Vec<u8>> = (0..4).map(|j| random_bytes([3000, 300_000, 10, 3 * MIB][j], 900 + j as u64)).collect();
    rt.block_on(async {
        for (j, k) in early.iter().enumerate() {
            let r = settled(Duration::from_secs(20), || put(&clients[j % 3], bucket, k, early_bodies[j].clone())).await;
            assert_eq!(r, Answer::Ok(()), "put {k}");
        }
    });

    // The writers wait up to 15 s for an answer (longer than a lane's
    // member call may take): a PUT held up by a member on the cut node is
    // answered, not given up on.
    let patient: Vec<Client> = cluster.nodes.iter().map(|n| client_within(n, Duration::from_secs(15))).collect();
    let writers = Writers::start(&rt, &patient, bucket, t0);
    std::thread::sleep(Duration::from_secs(2));

    // The cut.
    cluster.net.isolate(cut);
    let cut_at = t0.elapsed();
    eprintln!("node {cut} (the configuration leader) cut off at {cut_at:?}");

    // The cut node stops serving objects once its lease lapses (at most
    // 4 s after its last renewal), and refuses a configuration write.
    let to_503 = rt.block_on(async {
        loop {
            match get(&clients[cut], bucket, &early[0]).await {
                Answer::Err(503, _) => break t0.elapsed() - cut_at,
                Answer::Ok(b) => assert_eq!(b, early_bodies[0], "the cut node's answer before its lease lapsed"),
                Answer::Err(0, _) => {}
                Answer::Err(s, code) => panic!("the cut node answered {s} {code} for its own key"),
            }
            assert!(t0.elapsed() - cut_at < Duration::from_secs(8), "the cut node still serves its keys 8 s after the cut");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    eprintln!("the cut node answers 503 for its own keys {to_503:?} after the cut");
    // (A configuration write waits up to 10 s for its commit: in the
    // background, while the takeover is timed.)
    let minority_create = {
        let c = client_within(&cluster.nodes[cut], Duration::from_secs(20));
        rt.spawn(async move { create_bucket(&c, "made-on-the-minority").await })
    };

    // The majority takes over the cut node's partitions...
    wait_for("a majority node acts for the cut node", Duration::from_secs(30), || {
        takeovers(&cluster.nodes[majority[0]]).iter().any(|(o, a)| o == &cut_id && a != &cut_id)
    });
    let takeover_at = t0.elapsed();
    eprintln!("takeover record seen {:?} after the cut", takeover_at - cut_at);
    // ...and takes writes of its keys again, through both majority nodes.
    let later: Vec<String> = (0..).map(|i| format!("later-{i}")).filter(|k| owner_of(&cluster, majority[0], bucket, k) == cut).take(2).collect();
    let served_at = rt.block_on(async {
        for (j, k) in later.iter().enumerate() {
            let r = settled(Duration::from_secs(20), || put(&clients[majority[j]], bucket, k, k.as_bytes().to_vec())).await;
            assert_eq!(r, Answer::Ok(()), "put {k}, a key of the cut node, through the majority");
        }
        t0.elapsed()
    });
    eprintln!("the cut node's keys take writes through the majority {:?} after the cut", served_at - cut_at);
    rt.block_on(async {
        let r = minority_create.await.unwrap();
        assert!(matches!(r, Answer::Err(503, _)), "a bucket created on the cut node: {r:?}");
        let r = settled(Duration::from_secs(20), || create_bucket(&clients[majority[1]], "made-on-the-majority")).await;
        assert_eq!(r, Answer::Ok(()), "a bucket created on the majority during the cut");
        // The cut node still serves nothing, and its old keys are still there.
        for (j, k) in early.iter().enumerate() {
            let r = get(&clients[cut], bucket, k).await;
            assert!(matches!(r, Answer::Err(503 | 0, _)), "{k} through the cut node during the cut: {:?}", r_summary(&r));
            assert_eq!(get(&clients[majority[j % 2]], bucket, k).await, Answer::Ok(early_bodies[j].clone()), "{k} through the majority during the cut");
        }
    });
    // Every lane owner the majority wrote to during the cut keeps the cut
    // node recorded stale (it missed those commits) until it is healed:
    // one more write of each majority node's keys, then the records. The
    // writers go on meanwhile (a PUT in flight to the cut node when it was
    // cut waits until the gossip holds that node down).
    let extra: Vec<String> = majority
        .iter()
        .map(|&m| (0..).map(|i| format!("owned-by-{m}-{i}")).find(|k| owner_of(&cluster, majority[0], bucket, k) == m).unwrap())
        .collect();
    let extra_puts: Vec<_> = majority
        .iter()
        .zip(&extra)
        .map(|(&m, k)| {
            let (c, k) = (clients[m].clone(), k.clone());
            rt.spawn(async move { (settled(Duration::from_secs(30), || put(&c, "partition", &k, k.as_bytes().to_vec())).await, k) })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6).saturating_sub(t0.elapsed() - served_at));
    rt.block_on(async {
        for p in extra_puts {
            let (r, k) = p.await.unwrap();
            assert_eq!(r, Answer::Ok(()), "put {k} during the cut");
        }
    });
    let stale = layout(&cluster.nodes[majority[0]])["stale"].clone();
    for o in majority.iter().chain([&cut]) {
        assert!(
            stale.as_array().is_some_and(|s| s.iter().any(|r| r["owner"] == cluster.ids[*o].as_str() && r["member"] == cut_id.as_str())),
            "the cut node is not recorded stale for node {o}'s lanes, though it missed their commits: {stale}"
        );
    }

    // The heal (timed from before the first route goes).
    let heal_at = t0.elapsed();
    cluster.net.heal_all();
    eprintln!("healed at {heal_at:?} (cut for {:?})", heal_at - cut_at);
    let no_stale = wait_for("no stale record on the majority", Duration::from_secs(40), || {
        cluster.nodes[majority[0]].admin_json("/admin/v1/cluster")["layout"]["stale"].as_array().is_some_and(|s| s.is_empty())
    });
    wait_for("the partitions handed back and no stale record, on every node", Duration::from_secs(40), || {
        cluster.nodes.iter().all(|n| handed_back(n, &cut_id))
    });
    let back_at = t0.elapsed();
    eprintln!("stale records gone {no_stale:?} after the heal; handed back {:?} after the heal", back_at - heal_at);
    std::thread::sleep(Duration::from_secs(2));
    let (acked, tried, outcomes) = writers.finish(
        &rt,
        &[("before the cut", Duration::ZERO), ("cut, before the takeover", cut_at), ("cut, after the takeover", takeover_at), ("healed", heal_at), ("handed back", back_at)],
    );
    // What PUTs sent through the majority during the cut got, by whether
    // the key is the cut node's.
    let mut cut_window: std::collections::BTreeMap<(bool, &str, &str), usize> = Default::default();
    for o in outcomes.iter().filter(|o| o.sent >= cut_at && o.sent < heal_at && o.via != cut) {
        let owner = owner_of(&cluster, majority[0], bucket, &o.key);
        let when = if o.sent < takeover_at { "before the takeover" } else { "after" };
        *cut_window.entry((owner == cut, when, o.what.as_str())).or_default() += 1;
        if o.took > Duration::from_secs(1) {
            eprintln!("slow: {} through node {} (owner {owner}) sent {:?} after the cut, answered {} in {:?}", o.key, o.via, o.sent - cut_at, o.what, o.took);
        }
    }
    eprintln!("PUTs through the majority during the cut, (key of the cut node, sent, answer): {cut_window:?}");
    // Once the majority's gossip holds the cut node down (it has by the
    // takeover), no PUT through the majority waits for a call to it: its
    // lane members are out of service, and the key's owner is the acting
    // node (a forward to the cut node takes a new connection, whose
    // connect fails within 3 s).
    let stalled: Vec<String> = outcomes
        .iter()
        .filter(|o| o.via != cut && o.sent >= takeover_at + Duration::from_secs(1) && o.sent < heal_at && o.took > Duration::from_secs(5))
        .map(|o| format!("{} via {} sent {:?} after the cut: {} in {:?}", o.key, o.via, o.sent - cut_at, o.what, o.took))
        .collect();
    assert!(stalled.is_empty(), "PUTs through the majority held up after the takeover: {stalled:?}");
    // Nor does one in flight at the cut wait for a deadline: a lane's call
    // to a member on the cut node and a forward to it are given up when
    // the gossip holds that node down (about 6 s); before, they waited
    // 10 s and the client's whole timeout.
    let stalled: Vec<String> = outcomes
        .iter()
        .filter(|o| o.via != cut && o.sent >= cut_at && o.sent < heal_at && o.took > Duration::from_secs(9))
        .map(|o| format!("{} via {} sent {:?} after the cut: {} in {:?}", o.key, o.via, o.sent - cut_at, o.what, o.took))
        .collect();
    assert!(stalled.is_empty(), "PUTs through the majority held up during the cut: {stalled:?}");

    // One configuration: the majority's bucket everywhere, the minority's nowhere.
    rt.block_on(async {
        for (n, c) in clients.iter().enumerate() {
            let started = Instant::now();
            let exists = loop {
                match bucket_exists(c, "made-on-the-majority").await {
                    Some(e) => break e,
                    None if started.elapsed() < Duration::from_secs(20) => tokio::time::sleep(Duration::from_millis(200)).await,
                    None => panic!("node {n} does not settle on the majority's bucket"),
                }
            };
            assert!(exists, "the bucket created on the majority during the cut, through node {n}");
            let r = answer(c.list_objects_v2().bucket("made-on-the-minority").max_keys(1).send().await);
            assert!(
                matches!(&r, Answer::Err(404, code) if code == "NoSuchBucket"),
                "the bucket tried on the cut node, through node {n}: {:?}",
                r.map_ok()
            );
        }
    });
    // Acknowledged: through the majority during the cut, for the cut node's
    // keys too; never through the cut node once it was cut.
    let during: Vec<&Acked> = acked.iter().filter(|a| a.sent > cut_at && a.sent < heal_at).collect();
    // (One sent during the cut may be answered after the heal.)
    let through_cut: Vec<&Acked> = during.iter().copied().filter(|a| a.via == cut && a.sent > cut_at + Duration::from_secs(1) && a.done < heal_at).collect();
    assert!(through_cut.is_empty(), "PUTs acknowledged through the cut node during the cut: {through_cut:?}");
    // (The writers' own PUTs of the cut node's keys are counted, not
    // required: they answer 503 until the takeover is served; the
    // majority's writes of every owner's keys are the test's own PUTs
    // above, `later` and `extra`.)
    let of_cut_after_takeover = during.iter().filter(|a| a.sent > served_at && owner_of(&cluster, majority[0], bucket, &a.key) == cut).count();
    let after_heal = acked.iter().filter(|a| a.sent > back_at && a.via == cut).count();
    assert!(after_heal > 0, "no PUT acknowledged through the healed node after the handback");
    eprintln!(
        "{} PUTs acknowledged of {} tried; {} during the cut ({} of the cut node's keys after the takeover), {} through the healed node after the handback",
        acked.len(), tried.len(), during.len(), of_cut_after_takeover, after_heal
    );

    let mut acked = acked;
    for (j, k) in early.iter().enumerate() {
        acked.push(Acked { key: k.clone(), via: j % 3, len: early_bodies[j].len(), md5: md5_hex(&early_bodies[j]), sent: Duration::ZERO, done: Duration::ZERO });
    }
    for k in later.iter().chain(&extra) {
        acked.push(Acked { key: k.clone(), via: 9, len: k.len(), md5: md5_hex(k.as_bytes()), sent: served_at, done: served_at });
    }
    let mut tried = tried;
    tried.extend(early.iter().cloned());
    tried.extend(later.iter().chain(&extra).cloned());
    check_acked(&rt, &clients, bucket, &acked, &tried);
    eprintln!(
        "summary: 503 on the cut node after {to_503:?}; takeover after {:?}; its keys written again after {:?}; handback {:?} after the heal; test {:?}",
        takeover_at - cut_at,
        served_at - cut_at,
        back_at - heal_at,
        t0.elapsed()
    );
}

fn r_summary(r: &Answer<Vec<u8>>) -> String {
    match r {
        Answer::Ok(b) => format!("200, {} bytes", b.len()),
        Answer::Err(s, c) => format!("{s} {c}"),
    }
}

/// A node that is not the configuration leader is cut off; its keys are
/// overwritten (and one deleted) through the majority once another node
/// acts for it. Neither during the cut nor after the heal, before or after
/// the handback, does any node (the cut one first) answer an old value or
/// the deleted key; in the end every node reads the new values.
#[test]
fn keys_overwritten_during_a_cut_never_read_old_after_the_heal() {
    let Some(cluster) = three_nodes() else { return };
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clients: Vec<Client> = cluster.nodes.iter().map(client).collect();
    let bucket = "overwrites";
    rt.block_on(async {
        let r = settled(Duration::from_secs(20), || create_bucket(&clients[0], bucket)).await;
        assert_eq!(r, Answer::Ok(()), "create bucket");
    });
    let leader = raft_leader(&cluster).expect("a configuration leader");
    let cut = (0..3).rev().find(|&i| i != leader).unwrap();
    let cut_id = cluster.ids[cut].clone();
    let majority: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    // The cut node's keys: small (the record carries the body), striped,
    // empty, and one to delete.
    let keys: Vec<String> = (0..).map(|i| format!("key-{i}")).filter(|k| owner_of(&cluster, majority[0], bucket, k) == cut).take(4).collect();
    let sizes = [4000, 3 * MIB + 5, 0, 2000];
    let old: Vec<Vec<u8>> = (0..4).map(|j| random_bytes(sizes[j], 100 + j as u64)).collect();
    let new: Vec<Option<Vec<u8>>> = (0..4).map(|j| (j != 3).then(|| random_bytes([6000, 2 * MIB + 3, 1, 0][j], 200 + j as u64))).collect();
    rt.block_on(async {
        for (j, k) in keys.iter().enumerate() {
            let r = settled(Duration::from_secs(20), || put(&clients[j % 3], bucket, k, old[j].clone())).await;
            assert_eq!(r, Answer::Ok(()), "put {k}");
        }
    });

    cluster.net.isolate(cut);
    let cut_at = Instant::now();
    eprintln!("node {cut} (a follower; node {leader} leads) cut off at {:?}", t0.elapsed());
    let to_503 = rt.block_on(async {
        loop {
            match get(&clients[cut], bucket, &keys[0]).await {
                Answer::Err(503, _) => break cut_at.elapsed(),
                Answer::Ok(b) => assert_eq!(b, old[0], "the cut node's answer before its lease lapsed"),
                Answer::Err(0, _) => {}
                Answer::Err(s, code) => panic!("the cut node answered {s} {code} for its own key"),
            }
            assert!(cut_at.elapsed() < Duration::from_secs(8), "the cut node still serves its keys 8 s after the cut");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    eprintln!("the cut node answers 503 for its own keys {to_503:?} after the cut");
    wait_for("a majority node acts for the cut node", Duration::from_secs(30), || {
        takeovers(&cluster.nodes[majority[0]]).iter().any(|(o, a)| o == &cut_id && a != &cut_id)
    });
    let takeover = cut_at.elapsed();
    eprintln!("takeover record seen {takeover:?} after the cut");

    // A GET through any node must never give an old value (nor the deleted
    // key) once its overwrite was acknowledged: `overwritten[j]`.
    let overwritten: Arc<Mutex<[bool; 4]>> = Arc::default();
    let stale_reads: Arc<Mutex<Vec<String>>> = Arc::default();
    let probes_done = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let (c, keys, old, overwritten, stale_reads, done) = (c.clone(), keys.clone(), old.clone(), overwritten.clone(), stale_reads.clone(), probes_done.clone());
            rt.spawn(async move {
                let mut answers: HashMap<String, usize> = HashMap::new();
                while !done.load(Ordering::Relaxed) {
                    for (j, k) in keys.iter().enumerate() {
                        let was = overwritten.lock().unwrap()[j];
                        let r = get(&c, "overwrites", k).await;
                        let label = match &r {
                            Answer::Ok(b) if *b == old[j] => "old".to_string(),
                            Answer::Ok(_) => "new".to_string(),
                            Answer::Err(0, _) => "no answer".to_string(),
                            Answer::Err(s, code) => format!("{s} {code}"),
                        };
                        *answers.entry(label.clone()).or_default() += 1;
                        if was && (label == "old" || (j == 3 && matches!(r, Answer::Ok(_)))) {
                            stale_reads.lock().unwrap().push(format!("{k} through node {n}: the value before its overwrite/delete"));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answers
            })
        })
        .collect();

    let written = rt.block_on(async {
        for (j, k) in keys.iter().enumerate() {
            let c = &clients[majority[j % 2]];
            match &new[j] {
                Some(v) => {
                    let r = settled(Duration::from_secs(20), || put(c, bucket, k, v.clone())).await;
                    assert_eq!(r, Answer::Ok(()), "overwrite {k} during the cut");
                }
                None => {
                    let r = settled(Duration::from_secs(20), || async { answer(c.delete_object().bucket(bucket).key(k).send().await).map_ok() }).await;
                    assert_eq!(r, Answer::Ok(()), "delete {k} during the cut");
                }
            }
            overwritten.lock().unwrap()[j] = true;
        }
        cut_at.elapsed()
    });
    eprintln!("overwrites acknowledged {written:?} after the cut");
    rt.block_on(async {
        for (j, k) in keys.iter().enumerate() {
            for &m in &majority {
                let r = get(&clients[m], bucket, k).await;
                match &new[j] {
                    Some(v) => assert!(r == Answer::Ok(v.clone()), "{k} through node {m} during the cut: {}", r_summary(&r)),
                    None => assert_eq!(r, Answer::Err(404, "NoSuchKey".into()), "{k}, deleted, through node {m} during the cut"),
                }
            }
        }
    });
    std::thread::sleep(Duration::from_secs(1));

    let heal_at = Instant::now();
    cluster.net.heal_all();
    wait_for("the partitions handed back and no stale record, on every node", Duration::from_secs(40), || {
        cluster.nodes.iter().all(|n| handed_back(n, &cut_id))
    });
    let back = heal_at.elapsed();
    eprintln!("handed back {back:?} after the heal");
    std::thread::sleep(Duration::from_secs(1));
    probes_done.store(true, Ordering::Relaxed);
    let answers: Vec<HashMap<String, usize>> = rt.block_on(async {
        let mut out = Vec::new();
        for p in probes {
            out.push(p.await.unwrap());
        }
        out
    });
    eprintln!("probe answers per node: {answers:?}");
    let stale = stale_reads.lock().unwrap().clone();
    assert!(stale.is_empty(), "{} reads answered a value older than an acknowledged overwrite: {:?}", stale.len(), &stale[..stale.len().min(10)]);

    rt.block_on(async {
        for (n, c) in clients.iter().enumerate() {
            for (j, k) in keys.iter().enumerate() {
                let r = settled(Duration::from_secs(20), || get(c, bucket, k)).await;
                match &new[j] {
                    Some(v) => assert!(r == Answer::Ok(v.clone()), "{k} through node {n} after the handback: {}", r_summary(&r)),
                    None => assert_eq!(r, Answer::Err(404, "NoSuchKey".into()), "{k}, deleted, through node {n} after the handback"),
                }
            }
            let mut want: Vec<String> = keys.iter().zip(&new).filter(|(_, v)| v.is_some()).map(|(k, _)| k.clone()).collect();
            want.sort();
            let listed = list_all(c, bucket).await.unwrap_or_else(|e| panic!("list through node {n}: {e}"));
            assert_eq!(listed, want, "the listing through node {n} after the handback");
        }
    });
    eprintln!(
        "summary: 503 on the cut node after {to_503:?}; takeover after {takeover:?}; overwrites acknowledged after {written:?}; handback {back:?} after the heal; test {:?}",
        t0.elapsed()
    );
}

impl<T> Answer<T> {
    fn map_ok(self) -> Answer<()> {
        match self {
            Answer::Ok(_) => Answer::Ok(()),
            Answer::Err(s, c) => Answer::Err(s, c),
        }
    }
}
