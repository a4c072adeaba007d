//! Tiering to another S3 store, with two real nodes on loopback (the second
//! is the first one's tier `COLD`) and a one-second lifecycle day: a
//! Transition rule moves objects to the tier; HEAD answers locally with the
//! tier's storage class and the object's metadata; GET reads through (whole
//! and ranged) and fails cleanly (503) while the tier is down, so the body
//! is not kept locally; RestoreObject brings a copy back that serves GETs
//! with the tier down until it expires; a transition due while the tier is
//! down happens once it is back, nothing lost; deletes remove the tier's
//! copy; noncurrent versions transition too.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use aws_sdk_s3::types::{
    BucketVersioningStatus, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionTransition, RestoreRequest, Transition, TransitionStorageClass,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use tessera_tests::*;

const DEADLINE: Duration = Duration::from_secs(30);
const AK: &str = "AKIATIERINGTEST00001";
const SK: &str = "tiering-test-secret-0123456789abcdefghij";

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A node on `addr` with fixed root credentials and a one-second
/// lifecycle day; with `tier`, the buckets `archive` and `frozen` there are
/// tiers `COLD` and `FROZEN`.
fn node(addr: SocketAddr, tier: Option<SocketAddr>) -> Server {
    node_with(addr, tier, &[])
}

fn node_with(addr: SocketAddr, tier: Option<SocketAddr>, extra: &[String]) -> Server {
    let mut args = vec![format!("--address={addr}"), "--threads=2".to_string(), "--lifecycle-day-secs=1".to_string()];
    args.extend(extra.iter().cloned());
    if let Some(t) = tier {
        args.push(format!("--tier=COLD=http://{t}/archive,{AK},{SK}"));
        args.push(format!("--tier=FROZEN=http://{t}/frozen,{AK},{SK}"));
    }
    let env = vec![("TESSERA_ACCESS_KEY".to_string(), AK.to_string()), ("TESSERA_SECRET_KEY".to_string(), SK.to_string())];
    let mut s = Server::start_with(ServerOpts { args, env, ..Default::default() });
    s.set_credentials(AK, SK);
    s
}

/// A tier node with the buckets `archive` and `frozen`, and a source node
/// (with `extra` flags) whose tiers they are, with bucket `bucket`.
async fn tier_and_source(extra: &[String], bucket: &str) -> (Server, Server) {
    let t_addr = free_addr();
    let tier_node = node(t_addr, None);
    let src = node_with(free_addr(), Some(t_addr), extra);
    let t = tier_node.client();
    ok(t.create_bucket().bucket("archive").send().await, "tier bucket");
    ok(t.create_bucket().bucket("frozen").send().await, "second tier bucket");
    ok(src.client().create_bucket().bucket(bucket).send().await, "source bucket");
    (tier_node, src)
}

fn to_cold(days: i32) -> Transition {
    Transition::builder().days(days).storage_class(TransitionStorageClass::from("COLD")).build()
}

fn rule(id: &str, prefix: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder().id(id).status(ExpirationStatus::Enabled).filter(LifecycleRuleFilter::builder().prefix(prefix).build())
}

async fn class_of(s3: &Client, bucket: &str, key: &str) -> Option<String> {
    let h = ok(s3.head_object().bucket(bucket).key(key).send().await, "head");
    h.storage_class().map(|c| c.as_str().to_string())
}

async fn get(s3: &Client, bucket: &str, key: &str, range: Option<&str>) -> Vec<u8> {
    let mut req = s3.get_object().bucket(bucket).key(key);
    if let Some(r) = range {
        req = req.range(r);
    }
    read_body(ok(req.send().await, "get")).await
}

/// Keys in the tier's bucket.
async fn tier_keys(tier: &Client) -> Vec<(String, i64)> {
    tier_keys_in(tier, "archive").await
}

async fn tier_keys_in(tier: &Client, bucket: &str) -> Vec<(String, i64)> {
    let out = ok(tier.list_objects_v2().bucket(bucket).send().await, "list the tier");
    out.contents().iter().map(|o| (o.key().unwrap_or_default().to_string(), o.size().unwrap_or(0))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn transition_read_through_restore_tier_down_and_delete() {
    let (mut tier_node, src) = tier_and_source(&[], "src").await;
    let (a, t) = (src.client(), tier_node.client());

    // Validation: an unknown class, and an expiration not after the transition.
    let unknown = Transition::builder().days(1).storage_class(TransitionStorageClass::Glacier).build();
    assert_eq!(put_lifecycle_rules(&a, "src", vec![rule("x", "").transitions(unknown).build().unwrap()]).await, Err("InvalidStorageClass".into()));
    let early = rule("x", "").transitions(to_cold(2)).expiration(LifecycleExpiration::builder().days(2).build()).build().unwrap();
    assert_eq!(put_lifecycle_rules(&a, "src", vec![early]).await, Err("InvalidArgument".into()));

    let live = || metric_total(&src.scrape_metrics(), "tessera_shard_live_bytes");
    let live_before = live();
    let body = random_bytes(300 << 10, 7);
    let small = b"small and inline".to_vec();
    let put = a
        .put_object()
        .bucket("src")
        .key("cold/a")
        .body(bytestream(&body))
        .content_type("application/x-test")
        .metadata("colour", "blue")
        .tagging("t=1")
        .send()
        .await;
    let etag = ok(put, "put").e_tag().unwrap().to_string();
    ok(a.put_object().bucket("src").key("cold/small").body(bytestream(&small)).send().await, "put small");
    ok(a.put_object().bucket("src").key("hot/b").body(bytestream(b"stays")).send().await, "put hot");
    // The shard gauges are published every second.
    wait_until_within(DEADLINE, "the body counted live", || async { live() >= live_before + body.len() as f64 }).await;
    put_lifecycle_rules(&a, "src", vec![rule("cold", "cold/").transitions(to_cold(1)).build().unwrap()]).await.expect("rules");
    let got = ok(a.get_bucket_lifecycle_configuration().bucket("src").send().await, "get rules");
    assert_eq!(got.rules()[0].transitions()[0].storage_class().map(|c| c.as_str()), Some("COLD"));

    wait_until_within(DEADLINE, "cold/a transitioned", || async { class_of(&a, "src", "cold/a").await.as_deref() == Some("COLD") }).await;
    wait_until_within(DEADLINE, "cold/small transitioned", || async { class_of(&a, "src", "cold/small").await.as_deref() == Some("COLD") }).await;
    // HEAD answers from the local record: size, ETag, metadata, tags.
    let h = ok(a.head_object().bucket("src").key("cold/a").send().await, "head");
    assert_eq!((h.content_length(), h.e_tag(), h.content_type()), (Some(body.len() as i64), Some(etag.as_str()), Some("application/x-test")));
    assert_eq!(h.metadata().and_then(|m| m.get("colour")).map(String::as_str), Some("blue"));
    let tags = ok(a.get_object_tagging().bucket("src").key("cold/a").send().await, "tags");
    assert_eq!(tags.tag_set().len(), 1);
    assert_eq!(class_of(&a, "src", "hot/b").await, None, "not selected by the rule");
    // Listings name the class too.
    let listed = ok(a.list_objects_v2().bucket("src").send().await, "list");
    let classes: Vec<(&str, &str)> =
        listed.contents().iter().map(|o| (o.key().unwrap_or_default(), o.storage_class().map_or("", |c| c.as_str()))).collect();
    assert_eq!(classes, vec![("cold/a", "COLD"), ("cold/small", "COLD"), ("hot/b", "STANDARD")]);
    // The body's bytes are no longer live here (compaction reclaims them).
    wait_until_within(DEADLINE, "the body no longer live", || async { live() < live_before + (64 << 10) as f64 }).await;
    // The tier holds one copy per version.
    let keys = tier_keys(&t).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|(k, n)| k.starts_with("src/cold/a/") && *n == body.len() as i64), "{keys:?}");

    // GET reads through, whole and ranged.
    assert!(get(&a, "src", "cold/a", None).await == body, "whole body read through");
    assert_eq!(get(&a, "src", "cold/a", Some("bytes=1000-2999")).await, body[1000..3000].to_vec());
    assert_eq!(get(&a, "src", "cold/a", Some("bytes=-10")).await, body[body.len() - 10..].to_vec());
    assert_eq!(get(&a, "src", "cold/small", None).await, small);

    // The tier down: HEAD still answers, GET is a clean 503 (the body is
    // not here), and a restore cannot happen.
    tier_node.kill9();
    assert_eq!(class_of(&a, "src", "cold/a").await.as_deref(), Some("COLD"));
    assert_s3_error(a.get_object().bucket("src").key("cold/a").send().await, 503, "ServiceUnavailable");
    let restore = || a.restore_object().bucket("src").key("cold/a").restore_request(RestoreRequest::builder().days(4).build());
    assert_s3_error(restore().send().await, 503, "ServiceUnavailable");
    assert_s3_error(
        a.restore_object().bucket("src").key("hot/b").restore_request(RestoreRequest::builder().days(1).build()).send().await,
        403,
        "InvalidObjectState",
    );
    // A copy needs the body: refused until restored.
    let copy = a.copy_object().bucket("src").key("copy").copy_source("src/cold/a").send().await;
    assert_s3_error(copy, 403, "InvalidObjectState");

    // A transition due while the tier is down waits, losing nothing.
    let later = random_bytes(200 << 10, 8);
    ok(a.put_object().bucket("src").key("cold/c").body(bytestream(&later)).send().await, "put while the tier is down");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(class_of(&a, "src", "cold/c").await, None, "not moved while the tier is down");
    assert!(get(&a, "src", "cold/c", None).await == later);

    tier_node.start_again();
    // Restore: 202, then the copy serves GETs with the tier down.
    let r = restore().send().await;
    ok(r, "restore");
    let h = ok(a.head_object().bucket("src").key("cold/a").send().await, "head restored");
    let restore_header = h.restore().unwrap_or_default().to_string();
    assert!(restore_header.starts_with("ongoing-request=\"false\", expiry-date="), "{restore_header}");
    assert_eq!(h.storage_class().map(|c| c.as_str()), Some("COLD"));
    wait_until_within(DEADLINE, "cold/c transitioned once the tier is back", || async { class_of(&a, "src", "cold/c").await.as_deref() == Some("COLD") })
        .await;
    assert!(get(&a, "src", "cold/c", None).await == later, "cold/c read through");
    tier_node.kill9();
    assert!(get(&a, "src", "cold/a", None).await == body, "the restored copy serves the GET");
    assert_eq!(get(&a, "src", "cold/a", Some("bytes=5-9")).await, body[5..10].to_vec());
    // The restore (4 one-second days) expires: the local copy is dropped.
    wait_until_within(DEADLINE, "restore expired", || async {
        let h = ok(a.head_object().bucket("src").key("cold/a").send().await, "head");
        h.restore().is_none()
    })
    .await;
    assert_s3_error(a.get_object().bucket("src").key("cold/a").send().await, 503, "ServiceUnavailable");

    // Deletes remove the tier's copy (queued while the tier is down).
    ok(a.delete_object().bucket("src").key("cold/a").send().await, "delete while the tier is down");
    ok(a.delete_objects().bucket("src").delete(
        aws_sdk_s3::types::Delete::builder()
            .objects(aws_sdk_s3::types::ObjectIdentifier::builder().key("cold/small").build().unwrap())
            .build()
            .unwrap(),
    ).send().await, "multi-delete");
    tier_node.start_again();
    let t = tier_node.client();
    wait_until_within(DEADLINE, "the tier's copies of deleted objects are gone", || async {
        let keys = tier_keys(&t).await;
        keys.len() == 1 && keys[0].0.starts_with("src/cold/c/")
    })
    .await;
    assert!(get(&a, "src", "cold/c", None).await == later);
}

#[tokio::test(flavor = "multi_thread")]
async fn noncurrent_versions_transition_from_tier_to_tier_and_version_deletes_forget_them() {
    let (tier_node, src) = tier_and_source(&[], "ver").await;
    let (a, t) = (src.client(), tier_node.client());
    let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(a.put_bucket_versioning().bucket("ver").versioning_configuration(on).send().await, "versioning");
    let old = random_bytes(150 << 10, 1);
    let v1 = ok(a.put_object().bucket("ver").key("k").body(bytestream(&old)).send().await, "v1").version_id().unwrap().to_string();
    let v2 = ok(a.put_object().bucket("ver").key("k").body(bytestream(b"current")).send().await, "v2").version_id().unwrap().to_string();
    let nc = |days: i32, class: &str| NoncurrentVersionTransition::builder().noncurrent_days(days).storage_class(TransitionStorageClass::from(class)).build();
    let r = rule("nc", "").noncurrent_version_transitions(nc(1, "COLD")).noncurrent_version_transitions(nc(6, "FROZEN"));
    put_lifecycle_rules(&a, "ver", vec![r.build().unwrap()]).await.expect("rules");
    wait_until_within(DEADLINE, "the noncurrent version transitioned", || async {
        let h = ok(a.head_object().bucket("ver").key("k").version_id(&v1).send().await, "head v1");
        h.storage_class().map(|c| c.as_str().to_string()).as_deref() == Some("COLD")
    })
    .await;
    assert_eq!(class_of(&a, "ver", "k").await, None, "the current version stays");
    let listed = ok(a.list_object_versions().bucket("ver").send().await, "list versions");
    let classes: Vec<&str> = listed.versions().iter().map(|v| v.storage_class().map_or("", |c| c.as_str())).collect();
    assert_eq!(classes, vec!["STANDARD", "COLD"], "newest first");
    let got = read_body(ok(a.get_object().bucket("ver").key("k").version_id(&v1).send().await, "get v1")).await;
    assert!(got == old, "v1 read through");
    let keys = tier_keys(&t).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].0.starts_with(&format!("ver/k/{v1}.")), "named by its version and attempt: {keys:?}");
    // Later it moves on to FROZEN; the COLD copy goes.
    wait_until_within(DEADLINE, "v1 moved to FROZEN", || async {
        let h = ok(a.head_object().bucket("ver").key("k").version_id(&v1).send().await, "head v1");
        h.storage_class().map(|c| c.as_str().to_string()).as_deref() == Some("FROZEN")
    })
    .await;
    let got = read_body(ok(a.get_object().bucket("ver").key("k").version_id(&v1).send().await, "get v1")).await;
    assert!(got == old, "v1 read through from FROZEN");
    assert_eq!(tier_keys_in(&t, "frozen").await.len(), 1);
    wait_until_within(DEADLINE, "the COLD copy is gone", || async { tier_keys(&t).await.is_empty() }).await;
    ok(a.delete_object().bucket("ver").key("k").version_id(&v1).send().await, "delete v1");
    wait_until_within(DEADLINE, "the tier's copy of v1 is gone", || async { tier_keys_in(&t, "frozen").await.is_empty() }).await;
    assert_eq!(read_body(ok(a.get_object().bucket("ver").key("k").version_id(&v2).send().await, "v2")).await, b"current".to_vec());
}

/// A transition, a restore and a restored copy's expiry each send their
/// notification event (`s3:LifecycleTransition`, `s3:ObjectRestore:Post`
/// and `:Completed`, `s3:ObjectRestore:Delete`), committed with the change
/// itself; the bucket's configuration selects them, so a PUT sends none.
#[tokio::test(flavor = "multi_thread")]
async fn transitions_and_restores_send_events() {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    let rx = tessera_tests::webhook::Receiver::start("127.0.0.1:0".parse().unwrap());
    let (_tier_node, src) = tier_and_source(&["--notify-webhook".to_string(), format!("hook={}", rx.url())], "events").await;
    let a = src.client();
    let events = ["s3:LifecycleTransition", "s3:ObjectRestore:*"].map(Event::from).to_vec();
    let q = QueueConfiguration::builder().id("tiering").queue_arn("arn:tessera:sqs::hook:webhook").set_events(Some(events)).build().unwrap();
    let nc = NotificationConfiguration::builder().queue_configurations(q).build();
    ok(a.put_bucket_notification_configuration().bucket("events").notification_configuration(nc).send().await, "notification configuration");
    let body = random_bytes(150 << 10, 3);
    let etag = ok(a.put_object().bucket("events").key("cold/x").body(bytestream(&body)).send().await, "put").e_tag().unwrap().trim_matches('"').to_string();
    put_lifecycle_rules(&a, "events", vec![rule("cold", "cold/").transitions(to_cold(1)).build().unwrap()]).await.expect("rules");
    let got = rx.wait_for(1, "the transition's event");
    assert_eq!(got[0]["eventName"], "LifecycleTransition", "{got:#?}");
    assert_eq!(got[0]["s3"]["object"]["key"], "cold/x");
    assert_eq!(got[0]["s3"]["object"]["size"], body.len());
    assert_eq!(got[0]["s3"]["object"]["eTag"], etag.as_str());
    assert_eq!(got[0]["userIdentity"]["principalId"], "tessera:lifecycle");
    assert_eq!(class_of(&a, "events", "cold/x").await.as_deref(), Some("COLD"), "the event follows the change");
    ok(a.restore_object().bucket("events").key("cold/x").restore_request(RestoreRequest::builder().days(2).build()).send().await, "restore");
    let got = rx.wait_for(3, "the restore's events");
    let names: Vec<&str> = got.iter().map(|r| r["eventName"].as_str().unwrap_or("")).collect();
    assert_eq!(names[1..], ["ObjectRestore:Post", "ObjectRestore:Completed"], "{got:#?}");
    assert_eq!(got[2]["s3"]["object"]["size"], body.len());
    // The restored copy expires after two one-second days.
    let got = rx.wait_for(4, "the restored copy's expiry");
    assert_eq!(got[3]["eventName"], "ObjectRestore:Delete", "{got:#?}");
    assert!(got[3]["s3"]["object"].get("size").is_none(), "a removal names no size");
    assert_eq!(rx.records().len(), 4, "the PUT sent no event (not selected)");
}

/// GetObject requests a node answered (any status).
fn get_requests(s: &Server) -> f64 {
    s.scrape_metrics().iter().filter(|(k, _)| k.starts_with("tessera_requests_total{op=\"GetObject\"")).map(|(_, v)| v).sum()
}

/// A transitioned object larger than a tier read piece (8 MiB) is read
/// from the tier a piece at a time (memory per GET stays bounded): whole
/// and ranged GETs give its bytes, one tier request per piece, and so does
/// its RestoreObject. Both it and a multipart object (whose ETag is not its
/// MD5: sent without Content-MD5, checked against the MD5 of what was
/// sent) go to the tier streamed from the disk; one over the multipart
/// threshold (lowered to 16 MiB here; 5 GiB by default) goes as a multipart
/// upload. A version moving from one tier to another is read from the
/// first a piece at a time and sent to the second the same way.
#[tokio::test(flavor = "multi_thread")]
async fn large_objects_go_to_the_tier_and_back_a_piece_at_a_time() {
    let (tier_node, src) = tier_and_source(&["--test-tier-multipart-threshold-bytes=16777216".to_string()], "src").await;
    let (a, t) = (src.client(), tier_node.client());
    let body = random_bytes((20 << 20) + 5, 11);
    ok(a.put_object().bucket("src").key("big").body(bytestream(&body)).send().await, "put");
    let parts = [random_bytes(5 << 20, 12), random_bytes((1 << 20) + 3, 13)];
    put_multipart(&a, "src", "multi", &parts, |c| c).await;
    let to_frozen = Transition::builder().days(8).storage_class(TransitionStorageClass::from("FROZEN")).build();
    let rules = vec![
        rule("big", "big").transitions(to_cold(1)).build().unwrap(),
        rule("multi", "multi").transitions(to_cold(1)).build().unwrap(),
        rule("move", "move").transitions(to_cold(1)).transitions(to_frozen).build().unwrap(),
    ];
    put_lifecycle_rules(&a, "src", rules).await.expect("rules");
    wait_until_within(DEADLINE, "big transitioned", || async { class_of(&a, "src", "big").await.as_deref() == Some("COLD") }).await;
    let copies = tier_keys(&t).await;
    let big_copy = copies.iter().find(|(k, _)| k.starts_with("src/big/")).unwrap_or_else(|| panic!("{copies:?}")).0.clone();
    let at_tier = ok(t.head_object().bucket("archive").key(&big_copy).send().await, "head the tier's copy");
    assert!(at_tier.e_tag().unwrap_or("").ends_with("-2\""), "over the threshold: 16 + 4 MiB parts, {:?}", at_tier.e_tag());
    let before = get_requests(&tier_node);
    assert!(get(&a, "src", "big", None).await == body, "the whole body read through");
    wait_until_within(DEADLINE, "three GETs at the tier", || async { get_requests(&tier_node) - before >= 3.0 }).await;
    assert_eq!(get_requests(&tier_node) - before, 3.0, "8 + 8 + 4 MiB");
    let (s, e) = ((8 << 20) - 100, (16 << 20) + 100);
    let got = get(&a, "src", "big", Some(&format!("bytes={s}-{e}"))).await;
    assert!(got == body[s..=e], "a range over two piece boundaries: {} bytes", got.len());
    wait_until_within(DEADLINE, "multi transitioned", || async { class_of(&a, "src", "multi").await.as_deref() == Some("COLD") }).await;
    let h = ok(a.head_object().bucket("src").key("multi").send().await, "head multi");
    assert_eq!(h.e_tag(), Some(multipart_etag(&parts).as_str()), "the multipart ETag is kept");
    assert!(get(&a, "src", "multi", None).await == [parts[0].clone(), parts[1].clone()].concat(), "the multipart object read through");

    // RestoreObject reads it back a piece at a time; GETs are then local.
    let before = get_requests(&tier_node);
    let restore = a.restore_object().bucket("src").key("big").restore_request(RestoreRequest::builder().days(60).build());
    ok(restore.send().await, "restore big");
    wait_until_within(DEADLINE, "three GETs at the tier", || async { get_requests(&tier_node) - before >= 3.0 }).await;
    assert_eq!(get_requests(&tier_node) - before, 3.0, "the restore read 8 + 8 + 4 MiB");
    let h = ok(a.head_object().bucket("src").key("big").send().await, "head big");
    assert!(h.restore().unwrap_or("").contains("ongoing-request=\"false\""), "{:?}", h.restore());
    assert!(get(&a, "src", "big", None).await == body, "the restored copy");
    assert_eq!(get_requests(&tier_node) - before, 3.0, "a restored copy is read here");

    // From COLD to FROZEN: read from COLD a piece at a time, sent to FROZEN
    // as a multipart upload (over the threshold), COLD's copy then deleted.
    let moving = random_bytes((20 << 20) + 7, 14);
    let before = get_requests(&tier_node);
    ok(a.put_object().bucket("src").key("move").body(bytestream(&moving)).send().await, "put move");
    wait_until_within(DEADLINE, "move transitioned to COLD", || async { class_of(&a, "src", "move").await.as_deref() == Some("COLD") }).await;
    wait_until_within(DEADLINE, "move went on to FROZEN", || async { class_of(&a, "src", "move").await.as_deref() == Some("FROZEN") }).await;
    assert_eq!(get_requests(&tier_node) - before, 3.0, "the move read 8 + 8 + 4 MiB from COLD");
    let frozen = tier_keys_in(&t, "frozen").await;
    assert!(frozen.len() == 1 && frozen[0].0.starts_with("src/move/") && frozen[0].1 == moving.len() as i64, "{frozen:?}");
    let at_tier = ok(t.head_object().bucket("frozen").key(&frozen[0].0).send().await, "head the FROZEN copy");
    assert!(at_tier.e_tag().unwrap_or("").ends_with("-2\""), "{:?}", at_tier.e_tag());
    assert!(get(&a, "src", "move", None).await == moving, "read through from FROZEN");
    wait_until_within(DEADLINE, "COLD's copy of move is gone", || async {
        tier_keys(&t).await.iter().all(|(k, _)| !k.starts_with("src/move/"))
    })
    .await;
}

/// Encrypted versions go to the tier sealed: the tier's copy is the
/// sealed body (longer than the plaintext by its tags, not the plaintext),
/// GETs (whole, and ranges across tier pieces and parts) open it as they
/// read it through, an SSE-C version still needs its key, and a restore
/// brings the sealed body back, served here.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_versions_go_to_the_tier_sealed() {
    use aws_sdk_s3::types::ServerSideEncryption;
    let (tier_node, src) = tier_and_source(&[], "enc").await;
    let (a, t) = (src.client(), tier_node.client());
    let s3data = random_bytes((9 << 20) + 11, 21);
    let put = a.put_object().bucket("enc").key("s3").server_side_encryption(ServerSideEncryption::Aes256);
    ok(put.body(bytestream(&s3data)).send().await, "put SSE-S3");
    let parts = [random_bytes(5 << 20, 22), random_bytes(300_001, 23)];
    put_multipart(&a, "enc", "mp", &parts, |c| c.server_side_encryption(ServerSideEncryption::Aes256)).await;
    let mp = parts.concat();
    let raw = [7u8; 32];
    let (ck, cmd5) = (b64(&raw), b64(&md5_bytes(&raw)));
    let cdata = random_bytes(200_003, 24);
    let put = a.put_object().bucket("enc").key("c").sse_customer_algorithm("AES256").sse_customer_key(&ck).sse_customer_key_md5(&cmd5);
    ok(put.body(bytestream(&cdata)).send().await, "put SSE-C");
    put_lifecycle_rules(&a, "enc", vec![rule("cold", "").transitions(to_cold(1)).build().unwrap()]).await.expect("rules");
    for k in ["s3", "mp"] {
        wait_until_within(DEADLINE, k, || async { class_of(&a, "enc", k).await.as_deref() == Some("COLD") }).await;
    }
    let head_c = || a.head_object().bucket("enc").key("c").sse_customer_algorithm("AES256").sse_customer_key(&ck).sse_customer_key_md5(&cmd5);
    wait_until_within(DEADLINE, "c", || async {
        ok(head_c().send().await, "head c").storage_class().map(|c| c.as_str().to_string()).as_deref() == Some("COLD")
    })
    .await;

    let copies = tier_keys(&t).await;
    assert_eq!(copies.len(), 3, "{copies:?}");
    for (k, plain) in [("s3", &s3data), ("mp", &mp), ("c", &cdata)] {
        let (name, size) = copies.iter().find(|(n, _)| n.starts_with(&format!("enc/{k}/"))).unwrap_or_else(|| panic!("{copies:?}"));
        assert!(*size as usize > plain.len(), "{k}: the sealed body is longer than the plaintext: {size}");
        let at_tier = read_body(ok(t.get_object().bucket("archive").key(name).send().await, "the tier's copy")).await;
        assert_eq!(at_tier.len() as i64, *size);
        assert!(at_tier[..4096] != plain[..4096], "{k}: plaintext at the tier");
    }

    let before = get_requests(&tier_node);
    assert!(get(&a, "enc", "s3", None).await == s3data, "SSE-S3 read through and opened");
    assert_eq!(get_requests(&tier_node) - before, 2.0, "9 MiB sealed: two tier reads");
    let (s, e) = ((8 << 20) - 70_000, (8 << 20) + 70_000);
    assert!(get(&a, "enc", "s3", Some(&format!("bytes={s}-{e}"))).await == s3data[s..=e], "a range across tier pieces");
    assert!(get(&a, "enc", "mp", None).await == mp, "multipart SSE-S3");
    let (s, e) = ((5 << 20) - 10, (5 << 20) + 10);
    assert!(get(&a, "enc", "mp", Some(&format!("bytes={s}-{e}"))).await == mp[s..=e], "a range across the parts");
    assert_s3_error(a.get_object().bucket("enc").key("c").send().await, 400, "InvalidRequest");
    let get_c = || a.get_object().bucket("enc").key("c").sse_customer_algorithm("AES256").sse_customer_key(&ck).sse_customer_key_md5(&cmd5);
    assert!(read_body(ok(get_c().send().await, "get c")).await == cdata, "SSE-C with its key");
    assert!(read_body(ok(get_c().range("bytes=1000-150000").send().await, "range of c")).await == cdata[1000..=150000]);

    // Restored: the sealed body comes back and is served here.
    let restore = a.restore_object().bucket("enc").key("s3").restore_request(RestoreRequest::builder().days(60).build());
    ok(restore.send().await, "restore");
    let before = get_requests(&tier_node);
    assert!(get(&a, "enc", "s3", None).await == s3data, "the restored copy, opened");
    let h = ok(a.head_object().bucket("enc").key("s3").send().await, "head");
    assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert_eq!(get_requests(&tier_node) - before, 0.0, "a restored copy is read here");
}

/// A transition whose copy was written but whose stub was never committed
/// (the node died in between) leaves no copy behind for good: the attempt
/// named its copy in a pending entry before writing it, and once that
/// entry's deadline passed the worker deletes the copy. The node aborts
/// right after the PUT (`--test-tier-abort-after-put`), comes back
/// without the hook, and the version, still local, is deleted; the copy
/// goes after the (shortened) grace. A second attempt after the restart
/// writes a copy of its own, which a stub keeps.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_whose_transition_died_before_its_stub_is_deleted() {
    let (tier_node, mut src) = tier_and_source(&["--test-tier-pending-grace-ms=3000".to_string()], "src").await;
    let t = tier_node.client();
    src.set_env("TESSERA_TEST_TIER_ABORT_AFTER_PUT", "true");
    src.restart();
    let a = src.client();
    let body = random_bytes(300_000, 31);
    ok(a.put_object().bucket("src").key("gone").body(bytestream(&body)).send().await, "put gone");
    ok(a.put_object().bucket("src").key("kept").body(bytestream(&body)).send().await, "put kept");
    put_lifecycle_rules(&a, "src", vec![rule("cold", "gone").transitions(to_cold(1)).build().unwrap()]).await.expect("rules");
    let started = std::time::Instant::now();
    while src.is_running() {
        assert!(started.elapsed() < DEADLINE, "the node did not die after writing a copy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = src.wait_for_exit();
    assert!(!status.success(), "{status:?}");
    let orphan = tier_keys(&t).await;
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    // Back without the hook; the version was never a stub.
    src.set_env("TESSERA_TEST_TIER_ABORT_AFTER_PUT", "false");
    src.start_again();
    let a = src.client();
    ok(a.delete_object().bucket("src").key("gone").send().await, "delete gone");
    wait_until_within(DEADLINE, "the dead attempt's copy is deleted", || async { tier_keys(&t).await.is_empty() }).await;
    // A rule for `kept` now: its attempt after the restart stays.
    put_lifecycle_rules(&a, "src", vec![rule("cold", "kept").transitions(to_cold(1)).build().unwrap()]).await.expect("rules");
    wait_until_within(DEADLINE, "kept transitioned", || async { class_of(&a, "src", "kept").await.as_deref() == Some("COLD") }).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let copies = tier_keys(&t).await;
    assert!(copies.len() == 1 && copies[0].0.starts_with("src/kept/"), "{copies:?}");
    assert!(get(&a, "src", "kept", None).await == body, "read through after the grace");
}
