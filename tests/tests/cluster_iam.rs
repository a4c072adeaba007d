//! IAM across a cluster (issue 12) with real `tessera` processes on
//! loopback: users, access keys, policies and roles live in the Raft
//! configuration and secrets and session tokens are sealed with keys
//! derived from the cluster secret, so an access key created through one
//! node signs requests on every node (which are forwarded to the key's
//! owner, which checks the signature), its policy allows and denies the
//! same everywhere, a key deleted through one node is refused on the
//! others, and an STS session from one node works on another. A node that
//! had IAM users before it joined brings them into the cluster.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use tessera_tests::cluster::{eventually, free_udp_port, node_opts, wait_for};
use tessera_tests::*;

const SECRET: &str = "the iam test cluster's secret";
/// Root credentials must be the same on every node (the account).
const ROOT_AK: &str = "CLUSTERIAMROOT000001";
const ROOT_SK: &str = "cluster-iam-root-secret-key-for-tests-01";

fn opts(cluster: SocketAddr, join: Option<SocketAddr>) -> ServerOpts {
    let mut o = node_opts(cluster, join, SECRET);
    o.env.push(("TESSERA_ACCESS_KEY".into(), ROOT_AK.into()));
    o.env.push(("TESSERA_SECRET_KEY".into(), ROOT_SK.into()));
    o
}

fn start(cluster: SocketAddr, join: Option<SocketAddr>) -> Server {
    let mut s = Server::start_with(opts(cluster, join));
    s.set_credentials(ROOT_AK, ROOT_SK);
    s
}

fn three_voters(nodes: &[Server]) {
    let t = wait_for("three voters, one leader, a layout of three nodes", Duration::from_secs(40), || {
        nodes.iter().all(|n| {
            let c = n.admin_json("/admin/v1/cluster");
            let (r, l) = (&c["raft"], &c["layout"]);
            r["voters"].as_array().is_some_and(|v| v.len() == 3)
                && r["leader"].is_string()
                && l["nodes"].as_array().is_some_and(|v| v.len() == 3)
                && l["pending"].as_array().is_some_and(|p| p.is_empty())
        })
    });
    eprintln!("three voters and the layout in {t:?}");
}

/// An S3 client that never retries (a refusal must be seen, not retried away).
fn s3(server: &Server, ak: &str, sk: &str, token: Option<&str>) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(ak, sk, token.map(str::to_string), None, "tessera-tests");
    let conf = server
        .config_builder(ak, sk)
        .credentials_provider(creds)
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The error code of a failed S3 call (`None`: it succeeded).
async fn get_code(c: &aws_sdk_s3::Client, key: &str) -> Option<String> {
    match c.get_object().bucket("iamc").key(key).send().await {
        Ok(_) => None,
        Err(e) => Some(failure_of(&e).code.unwrap_or_else(|| format!("{e:?}"))),
    }
}

async fn put_code(c: &aws_sdk_s3::Client, key: &str) -> Option<String> {
    match c.put_object().bucket("iamc").key(key).body(ByteStream::from_static(b"by alice")).send().await {
        Ok(_) => None,
        Err(e) => Some(failure_of(&e).code.unwrap_or_else(|| format!("{e:?}"))),
    }
}

/// What the policy allows (GET and PUT under `allowed/`) and denies
/// (anything under `denied/`), through `c`.
async fn check_rights(c: &aws_sdk_s3::Client, tag: &str, may_put: bool) {
    // Several keys: they have different owners, so most requests are
    // forwarded and the signature is checked by another node.
    for i in 0..6 {
        assert_eq!(get_code(c, &format!("allowed/{i}")).await, None, "{tag}: GET allowed/{i}");
        assert_eq!(get_code(c, &format!("denied/{i}")).await.as_deref(), Some("AccessDenied"), "{tag}: GET denied/{i}");
        let put = put_code(c, &format!("allowed/{tag}-{i}")).await;
        if may_put {
            assert_eq!(put, None, "{tag}: PUT allowed/{tag}-{i}");
        } else {
            assert_eq!(put.as_deref(), Some("AccessDenied"), "{tag}: PUT allowed/{tag}-{i}");
        }
        assert_eq!(put_code(c, &format!("denied/{tag}-{i}")).await.as_deref(), Some("AccessDenied"), "{tag}: PUT denied/{i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_users_keys_policies_and_sessions_work_on_every_node() {
    let ca = free_udp_port();
    let a = start(ca, None);
    let b = start(free_udp_port(), Some(ca));
    let c = start(free_udp_port(), Some(ca));
    let nodes = [a, b, c];
    three_voters(&nodes);

    let root = s3(&nodes[0], ROOT_AK, ROOT_SK, None);
    ok(root.create_bucket().bucket("iamc").send().await, "create bucket");
    // The first writes wait for every node's lease (503 until then).
    for i in 0..6 {
        for dir in ["allowed", "denied"] {
            let root = &root;
            eventually("a seed object is written", Duration::from_secs(20), || async move {
                let body = ByteStream::from(format!("{dir} {i}").into_bytes());
                root.put_object().bucket("iamc").key(format!("{dir}/{i}")).body(body).send().await.is_ok()
            })
            .await;
        }
    }

    // A user, an access key and a managed policy, all through node 1.
    let iam = nodes[0].iam();
    let user = ok(iam.create_user().user_name("alice").send().await, "create user");
    let alice_arn = user.user().map(|u| u.arn().to_string()).expect("user arn");
    let key = ok(iam.create_access_key().user_name("alice").send().await, "create key");
    let key = key.access_key().expect("access key");
    let (ak, sk) = (key.access_key_id().to_string(), key.secret_access_key().to_string());
    let policy = allow(&["s3:GetObject", "s3:PutObject"], &["arn:aws:s3:::iamc/allowed/*"]);
    let p = ok(iam.create_policy().policy_name("alice-rw").policy_document(policy).send().await, "create policy");
    let policy_arn = p.policy().and_then(|p| p.arn()).expect("policy arn").to_string();
    ok(iam.attach_user_policy().user_name("alice").policy_arn(&policy_arn).send().await, "attach policy");

    // Node 1 answers at once (read-your-writes).
    check_rights(&s3(&nodes[0], &ak, &sk, None), "node1", true).await;
    // Nodes 2 and 3 see the same user, key and policy: at once or within
    // moments (a key a node does not know yet is looked up again at the
    // leader's read index).
    for n in [1, 2] {
        let c = s3(&nodes[n], &ak, &sk, None);
        let t = eventually("the key and its policy on another node", Duration::from_secs(10), || async {
            get_code(&c, "allowed/0").await.is_none()
        })
        .await;
        eprintln!("node {}: alice's key worked after {t:?}", n + 1);
        check_rights(&c, &format!("node{}", n + 1), true).await;
        // The IAM API of another node lists the same entities.
        let users = ok(nodes[n].iam().list_users().send().await, "list users");
        assert!(users.users().iter().any(|u| u.user_name() == "alice"), "node {}: {users:?}", n + 1);
    }

    // A policy detached through node 2 stops allowing on every node.
    ok(nodes[1].iam().detach_user_policy().user_name("alice").policy_arn(&policy_arn).send().await, "detach on node 2");
    for n in [0, 1, 2] {
        let c = s3(&nodes[n], &ak, &sk, None);
        eventually("the detach applies on every node", Duration::from_secs(10), || async {
            get_code(&c, "allowed/0").await.as_deref() == Some("AccessDenied")
        })
        .await;
    }
    ok(nodes[2].iam().attach_user_policy().user_name("alice").policy_arn(&policy_arn).send().await, "attach on node 3");

    // STS: a role alice may assume, with a read-only policy, made through
    // node 1; its session (and a GetSessionToken one) issued by node 1 work
    // on nodes 2 and 3.
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    let role = ok(iam.create_role().role_name("reader").assume_role_policy_document(trust).send().await, "create role");
    let role_arn = role.role().map(|r| r.arn().to_string()).expect("role arn");
    let read = allow(&["s3:GetObject"], &["arn:aws:s3:::iamc/allowed/*"]);
    ok(iam.put_role_policy().role_name("reader").policy_name("read").policy_document(read).send().await, "role policy");
    let sts = nodes[0].sts_for(&ak, &sk, None);
    let assumed = eventually("alice's policy is back on node 1", Duration::from_secs(10), || async {
        get_code(&s3(&nodes[0], &ak, &sk, None), "allowed/0").await.is_none()
    })
    .await;
    eprintln!("re-attached after {assumed:?}");
    let out = ok(sts.assume_role().role_arn(&role_arn).role_session_name("s1").send().await, "assume role on node 1");
    let cr = out.credentials().expect("credentials");
    let (tak, tsk, token) = (cr.access_key_id().to_string(), cr.secret_access_key().to_string(), cr.session_token().to_string());
    for n in [1, 2] {
        let c = s3(&nodes[n], &tak, &tsk, Some(&token));
        eventually("the role's session on another node", Duration::from_secs(10), || async {
            get_code(&c, "allowed/1").await.is_none()
        })
        .await;
        check_rights(&c, &format!("role-node{}", n + 1), false).await;
        // A tampered token is refused there.
        let bad = format!("{token}A");
        let f = get_code(&s3(&nodes[n], &tak, &tsk, Some(&bad)), "allowed/1").await;
        assert!(matches!(f.as_deref(), Some("InvalidToken" | "AccessDenied" | "InvalidAccessKeyId")), "{f:?}");
    }
    let out = ok(sts.get_session_token().send().await, "session token on node 1");
    let cr = out.credentials().expect("credentials");
    let c = s3(&nodes[1], cr.access_key_id(), cr.secret_access_key(), Some(cr.session_token()));
    check_rights(&c, "session-node2", true).await;

    // The key deleted through node 3 is refused on node 1 (and everywhere).
    ok(nodes[2].iam().delete_access_key().user_name("alice").access_key_id(&ak).send().await, "delete key on node 3");
    for n in [0, 1, 2] {
        let c = s3(&nodes[n], &ak, &sk, None);
        let t = eventually("the deleted key is refused", Duration::from_secs(10), || async {
            get_code(&c, "allowed/0").await.as_deref() == Some("InvalidAccessKeyId")
        })
        .await;
        eprintln!("node {}: the deleted key refused after {t:?}", n + 1);
    }
    let f = get_code(&s3(&nodes[0], &ak, &sk, None), "allowed/3").await;
    assert_eq!(f.as_deref(), Some("InvalidAccessKeyId"));

    // A change through one node builds on one made through another a
    // moment before: a user made on node 1 gets a key on node 2 and a
    // policy on node 3 at once, ten times over.
    for i in 0..10 {
        let name = format!("quick-{i}");
        ok(nodes[0].iam().create_user().user_name(&name).send().await, "create on node 1");
        ok(nodes[1].iam().create_access_key().user_name(&name).send().await, "key on node 2");
        ok(nodes[2].iam().attach_user_policy().user_name(&name).policy_arn(&policy_arn).send().await, "attach on node 3");
    }

    // Two nodes create the same user at once: one wins, the other is told
    // it exists; every node agrees.
    for i in 0..3 {
        let name = format!("race-{i}");
        let (r0, r1) = tokio::join!(
            nodes[0].iam().create_user().user_name(&name).send(),
            nodes[1].iam().create_user().user_name(&name).send(),
        );
        assert!(r0.is_ok() != r1.is_ok(), "{name}: exactly one create wins: {r0:?} {r1:?}");
        let loser = if r0.is_ok() { sdk_failure(r1) } else { sdk_failure(r0) };
        assert_eq!((loser.status, loser.code.as_deref()), (Some(409), Some("EntityAlreadyExists")), "{loser:?}");
    }
    eprintln!("cluster: {:?} per CreateUser (20 in a row through node 1)", create_users(&nodes[0], "timed").await);
    let ids: Vec<Vec<String>> = futures_ids(&nodes).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "every node lists the same users: {ids:?}");

    // The secret key is not in the Raft log or its snapshot in plain (nor
    // as the JSON array of bytes a command's value is written as).
    let key2 = ok(iam.create_access_key().user_name("alice").send().await, "another key");
    let key2 = key2.access_key().expect("key");
    let (id2, secret2) = (key2.access_key_id().to_string(), key2.secret_access_key().to_string());
    let as_json: String = secret2.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
    for n in &nodes {
        let mut seen_id = false;
        for f in files_under(&n.data_dirs()[0].join("cluster")) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            seen_id |= has(format!("iam/k/{id2}").as_bytes());
            assert!(!has(secret2.as_bytes()) && !has(as_json.as_bytes()), "{}: a plain secret", f.display());
        }
        assert!(seen_id, "the key's record is in the Raft files");
    }

    // Two nodes down: no quorum, so an IAM change answers 503, never 500.
    let [mut a, mut b, c] = nodes;
    a.stop();
    b.stop();
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(ROOT_AK, ROOT_SK, None, None, "tessera-tests"))
        .endpoint_url(c.endpoint())
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled())
        .build();
    let f = sdk_failure(aws_sdk_iam::Client::from_conf(conf).create_user().user_name("no-quorum").send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(503), Some("ServiceUnavailable")), "{f:?}");
}

/// The mean time of 20 CreateUser calls in a row (a figure, not a check).
async fn create_users(server: &Server, prefix: &str) -> Duration {
    let iam = server.iam();
    let started = Instant::now();
    for i in 0..20 {
        ok(iam.create_user().user_name(format!("{prefix}-{i}")).send().await, "create user");
    }
    started.elapsed() / 20
}

/// The user names and ids each node lists, once they agree or after 10 s.
async fn futures_ids(nodes: &[Server]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let started = Instant::now();
    loop {
        out.clear();
        for n in nodes {
            let l = ok(n.iam().list_users().send().await, "list users");
            out.push(l.users().iter().map(|u| format!("{} {}", u.user_name(), u.user_id())).collect::<Vec<_>>());
        }
        if out.windows(2).all(|w| w[0] == w[1]) || started.elapsed() > Duration::from_secs(10) {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_had_iam_users_alone_brings_them_into_the_cluster() {
    // Node D runs alone first: a user with a key, and a user named like
    // one the cluster will have.
    let mut alone = ServerOpts::default();
    alone.env.push(("TESSERA_ACCESS_KEY".into(), ROOT_AK.into()));
    alone.env.push(("TESSERA_SECRET_KEY".into(), ROOT_SK.into()));
    alone.threads = Some(2);
    let mut d = Server::start_with(alone);
    d.set_credentials(ROOT_AK, ROOT_SK);
    let (dave_arn, dak, dsk) = new_user(&d.iam(), "dave").await;
    let d_alice = ok(d.iam().create_user().user_name("alice").send().await, "alice on D");
    let d_alice_id = d_alice.user().map(|u| u.user_id().to_string()).expect("id");
    eprintln!("single node: {:?} per CreateUser (20 in a row)", create_users(&d, "timed").await);
    d.stop();

    // A cluster whose alice is another user.
    let ca = free_udp_port();
    let a = start(ca, None);
    let c_alice = ok(a.iam().create_user().user_name("alice").send().await, "alice on the cluster");
    let c_alice_id = c_alice.user().map(|u| u.user_id().to_string()).expect("id");
    assert_ne!(c_alice_id, d_alice_id);

    // D joins, on its own data dir.
    let mut o = opts(free_udp_port(), Some(ca));
    o.data_dirs = Some(d.data_dirs().to_vec());
    let mut joined = Server::start_with(o);
    joined.set_credentials(ROOT_AK, ROOT_SK);

    // dave and his key now work through the cluster's first node.
    let sts = a.sts_for(&dak, &dsk, None);
    let t = eventually("dave's key works on node A", Duration::from_secs(30), || async {
        sts.get_caller_identity().send().await.is_ok_and(|o| o.arn() == Some(dave_arn.as_str()))
    })
    .await;
    eprintln!("dave imported after {t:?}");
    // The cluster's alice stays the cluster's, on both nodes; D says why.
    for n in [&a, &joined] {
        let u = ok(n.iam().get_user().user_name("alice").send().await, "get alice");
        assert_eq!(u.user().map(|u| u.user_id()), Some(c_alice_id.as_str()));
    }
    let log = joined.stderr_since_start();
    assert!(log.contains("IAM import: the cluster holds another entity of this name"), "{log}");
    // dave's key works on D too (sealed with the cluster's key now), and
    // after D restarts (imported once: its local record is gone).
    ok(joined.sts_for(&dak, &dsk, None).get_caller_identity().send().await, "dave on D");
    joined.restart();
    eventually("dave's key on D after a restart", Duration::from_secs(30), || async {
        joined.sts_for(&dak, &dsk, None).get_caller_identity().send().await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_another_cluster_secret_a_node_serves_no_iam_identity() {
    // A one-node cluster with a user and a key.
    let mut a = start(free_udp_port(), None);
    let (_, ak, sk) = new_user(&a.iam(), "erin").await;
    eventually("erin's key works", Duration::from_secs(10), || async {
        a.sts_for(&ak, &sk, None).get_caller_identity().send().await.is_ok()
    })
    .await;
    // The secret changed (a rotation without re-creating the keys): the
    // sealed secret no longer opens, so the node fails closed.
    a.set_env("TESSERA_CLUSTER_SECRET", "another secret, rotated in place");
    a.restart();
    eventually("the node has applied its configuration again", Duration::from_secs(30), || async {
        a.admin_json("/admin/v1/cluster")["raft"]["applied_index"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let f = sdk_failure(a.sts_for(&ak, &sk, None).get_caller_identity().send().await);
    assert_eq!(f.status, Some(403), "{f:?}");
    assert!(matches!(f.code.as_deref(), Some("InvalidAccessKeyId" | "InvalidClientTokenId")), "{f:?}");
    assert!(a.stderr_since_start().contains("IAM record unreadable"), "the node says why");
    // No IAM change is taken on the empty state it serves (it would
    // overwrite records it cannot read).
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(ROOT_AK, ROOT_SK, None, None, "tessera-tests"))
        .endpoint_url(a.endpoint())
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled())
        .build();
    let f = sdk_failure(aws_sdk_iam::Client::from_conf(conf).create_user().user_name("erin").send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(503), Some("ServiceUnavailable")), "{f:?}");
    // The account itself still works.
    ok(s3(&a, ROOT_AK, ROOT_SK, None).list_buckets().send().await, "the root account");
}
