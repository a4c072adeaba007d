//! Buckets across a cluster (issue 12) with three real `tessera` processes
//! on loopback: the registry lives in the Raft configuration, so a bucket
//! created on one node is served by every node, with the same settings; two
//! concurrent creates of a name on two nodes give one 200 and one 409;
//! DeleteBucket asks every node whether it holds objects of the bucket; a
//! follower killed with -9 sees, once restarted, what was created while it
//! was down; a write with no leader answers 503.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
use tessera_tests::cluster::{eventually, free_udp_port, node_opts, serves_layout_of, wait_for};
use tessera_tests::*;

const SECRET: &str = "the bucket test cluster's secret";
/// Root credentials must be the same on every node (the bucket owner id).
const ROOT_AK: &str = "CLUSTERROOTKEY000001";
const ROOT_SK: &str = "cluster-root-secret-key-for-the-tests-01";
const USER2_AK: &str = "CLUSTERUSERTWO000001";
const USER2_SK: &str = "cluster-user-two-secret-01";

fn start(cluster: SocketAddr, join: Option<SocketAddr>) -> Server {
    let mut o = node_opts(cluster, join, SECRET);
    o.env.push(("TESSERA_ACCESS_KEY".into(), ROOT_AK.into()));
    o.env.push(("TESSERA_SECRET_KEY".into(), ROOT_SK.into()));
    o.users = Some(format!("{USER2_AK} {USER2_SK} user2 Two\n"));
    let mut s = Server::start_with(o);
    s.set_credentials(ROOT_AK, ROOT_SK);
    s
}

fn raft(server: &Server) -> serde_json::Value {
    server.admin_json("/admin/v1/cluster")["raft"].clone()
}

/// A client that never retries (a 503 must be seen, not retried away).
fn client(server: &Server, ak: &str, sk: &str) -> aws_sdk_s3::Client {
    let conf = server
        .config_builder(ak, sk)
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn root(server: &Server) -> aws_sdk_s3::Client {
    client(server, ROOT_AK, ROOT_SK)
}

async fn exists(server: &Server, name: &str) -> bool {
    root(server).head_bucket().bucket(name).send().await.is_ok()
}

async fn listed(server: &Server, name: &str) -> bool {
    let l = ok(root(server).list_buckets().send().await, "list buckets");
    l.buckets().iter().any(|b| b.name() == Some(name))
}

async fn versioning(server: &Server, name: &str) -> Option<BucketVersioningStatus> {
    ok(root(server).get_bucket_versioning().bucket(name).send().await, "get versioning").status().cloned()
}

async fn tags(server: &Server, name: &str) -> Vec<(String, String)> {
    match root(server).get_bucket_tagging().bucket(name).send().await {
        Ok(t) => t.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
        Err(_) => Vec::new(),
    }
}

async fn put(server: &Server, bucket: &str, key: &str) {
    ok(root(server).put_object().bucket(bucket).key(key).body(ByteStream::from_static(b"data")).send().await, "put object");
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_are_one_registry_across_three_nodes() {
    // Each cluster port is picked right before its node starts (an earlier
    // node's ephemeral S3 or admin port could take it otherwise).
    let ca = free_udp_port();
    let a = start(ca, None);
    let b = start(free_udp_port(), Some(ca));
    let c = start(free_udp_port(), Some(ca));
    let mut nodes = [a, b, c];
    let t = wait_for("three voters, one leader", Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            let r = raft(n);
            r["voters"].as_array().is_some_and(|v| v.len() == 3) && r["leader"].is_string()
        })
    });
    eprintln!("three voters in {t:?}");
    // Object writes need more than a leader: until every reactor's lanes
    // follow the layout of all three, a node answers a PUT with 503 (the
    // suite caught one on a loaded machine, seconds after the voters).
    let t = wait_for("every node's lanes follow a layout of three", Duration::from_secs(40), || {
        nodes.iter().all(|n| serves_layout_of(n, 3))
    });
    eprintln!("lanes ready {t:?} later");

    // Created on A: A answers at once (read-your-writes), B and C follow.
    ok(root(&nodes[0]).create_bucket().bucket("shared-1").send().await, "create on A");
    assert!(exists(&nodes[0], "shared-1").await, "A does not see its own create at once");
    let t = eventually("B and C see the bucket", Duration::from_secs(10), || async {
        exists(&nodes[1], "shared-1").await && exists(&nodes[2], "shared-1").await
    })
    .await;
    eprintln!("followers saw the create after {t:?}");
    assert!(listed(&nodes[1], "shared-1").await && listed(&nodes[2], "shared-1").await);

    // Settings changed on B or C are everyone's.
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(
        root(&nodes[1]).put_bucket_versioning().bucket("shared-1").versioning_configuration(enabled).send().await,
        "versioning on B",
    );
    assert_eq!(versioning(&nodes[1], "shared-1").await, Some(BucketVersioningStatus::Enabled));
    let tagging = Tagging::builder().tag_set(Tag::builder().key("team").value("blue").build().unwrap()).build().unwrap();
    ok(root(&nodes[2]).put_bucket_tagging().bucket("shared-1").tagging(tagging).send().await, "tagging on C");
    let want = vec![("team".to_string(), "blue".to_string())];
    eventually("versioning and tags on every node", Duration::from_secs(10), || async {
        let mut all = true;
        for n in &nodes {
            all &= versioning(n, "shared-1").await == Some(BucketVersioningStatus::Enabled) && tags(n, "shared-1").await == want;
        }
        all
    })
    .await;

    // Two creates of one name at once on two nodes (two owners): one 200, one 409.
    for i in 0..4 {
        let name = format!("race-{i}");
        let (ra, rb) = tokio::join!(
            root(&nodes[0]).create_bucket().bucket(&name).send(),
            client(&nodes[1], USER2_AK, USER2_SK).create_bucket().bucket(&name).send(),
        );
        let root_won = ra.is_ok();
        let loser = if root_won { sdk_failure(rb) } else { sdk_failure(ra) };
        assert_eq!((loser.status, loser.code.as_deref()), (Some(409), Some("BucketAlreadyExists")), "{name}: {loser:?}");
        eventually("every node agrees on the owner", Duration::from_secs(10), || async {
            let mut agree = true;
            for n in &nodes {
                // HeadBucket as the winner: root gets 403 on user2's bucket.
                let winner = if root_won { root(n) } else { client(n, USER2_AK, USER2_SK) };
                let there = winner.head_bucket().bucket(&name).send().await.is_ok();
                agree &= there && listed(n, &name).await == root_won;
            }
            agree
        })
        .await;
    }

    // An empty bucket deleted from C is gone everywhere.
    ok(root(&nodes[0]).create_bucket().bucket("gone-1").send().await, "create gone-1");
    eventually("C sees gone-1", Duration::from_secs(10), || exists(&nodes[2], "gone-1")).await;
    ok(root(&nodes[2]).delete_bucket().bucket("gone-1").send().await, "delete from C");
    assert!(!exists(&nodes[2], "gone-1").await, "C still serves the bucket it deleted");
    eventually("gone-1 gone on A and B", Duration::from_secs(10), || async {
        !exists(&nodes[0], "gone-1").await && !exists(&nodes[1], "gone-1").await
    })
    .await;

    // An object on A only: DeleteBucket from C finds it (BucketNotEmpty),
    // and the bucket takes writes again on every node afterwards.
    ok(root(&nodes[0]).create_bucket().bucket("full-1").send().await, "create full-1");
    put(&nodes[0], "full-1", "on-a").await;
    eventually("C sees full-1", Duration::from_secs(10), || exists(&nodes[2], "full-1")).await;
    let f = sdk_failure(root(&nodes[2]).delete_bucket().bucket("full-1").send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(409), Some("BucketNotEmpty")), "{f:?}");
    eventually("B sees full-1 writable", Duration::from_secs(10), || async {
        root(&nodes[1]).put_object().bucket("full-1").key("on-b").body(ByteStream::from_static(b"x")).send().await.is_ok()
    })
    .await;
    put(&nodes[0], "full-1", "on-a-again").await;
    for (n, key) in [(0, "on-a"), (0, "on-a-again"), (1, "on-b")] {
        ok(root(&nodes[n]).delete_object().bucket("full-1").key(key).send().await, "delete object");
    }
    ok(root(&nodes[2]).delete_bucket().bucket("full-1").send().await, "delete full-1 once empty");

    // kill -9 of a follower; a bucket created meanwhile is there once it restarts.
    let fi = nodes.iter().position(|n| raft(n)["role"] == "follower").expect("a follower");
    nodes[fi].kill9();
    let live = (fi + 1) % 3;
    ok(root(&nodes[live]).create_bucket().bucket("while-down").send().await, "create while a follower is down");
    nodes[fi].start_again();
    let t = eventually("the restarted follower sees while-down", Duration::from_secs(30), || async {
        exists(&nodes[fi], "while-down").await && exists(&nodes[fi], "shared-1").await
    })
    .await;
    eprintln!("restarted follower caught up in {t:?}");
    assert!(!exists(&nodes[fi], "gone-1").await);

    // Two nodes down: no quorum, so a create answers 503, never 500.
    let survivor = (fi + 2) % 3;
    for i in (0..3).filter(|&i| i != survivor) {
        nodes[i].kill9();
    }
    let started = Instant::now();
    let f = sdk_failure(root(&nodes[survivor]).create_bucket().bucket("no-quorum").send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(503), Some("ServiceUnavailable")), "{f:?}");
    eprintln!("create without quorum answered 503 after {:?}", started.elapsed());
    assert!(exists(&nodes[survivor], "shared-1").await, "reads go on without a leader");
}
