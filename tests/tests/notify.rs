//! Bucket notifications: the configuration API with S3's validation, events
//! of PUT, POST-free copies, multipart completions and deletes with filters
//! applied, delivered as AWS's JSON to a webhook (an HTTP receiver in this
//! test process), while the receiver is down for a while (then all arrive,
//! in order per key), and across a kill -9 of the node with events pending.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Event, FilterRule, FilterRuleName,
    NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use serde_json::Value;
use tessera_tests::webhook::Receiver;
use tessera_tests::*;

const HOOK: &str = "hook";
const ARN: &str = "arn:tessera:sqs::hook:webhook";
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until metric `name` (summed over labels) is `want`.
fn wait_metric(srv: &Server, name: &str, want: f64) {
    wait_metric_total(srv, name, want, DEADLINE);
}

/// A loopback address nothing listens on now (for a receiver started later).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn server(url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--notify-webhook".to_string(), format!("{HOOK}={url}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_with(ServerOpts { args, ..Default::default() })
}

fn queue(id: &str, events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> QueueConfiguration {
    let mut rules = Vec::new();
    if let Some(p) = prefix {
        rules.push(FilterRule::builder().name(FilterRuleName::Prefix).value(p).build());
    }
    if let Some(s) = suffix {
        rules.push(FilterRule::builder().name(FilterRuleName::Suffix).value(s).build());
    }
    let mut q = QueueConfiguration::builder().id(id).queue_arn(ARN);
    for e in events {
        q = q.events(Event::from(*e));
    }
    if !rules.is_empty() {
        q = q.filter(
            NotificationConfigurationFilter::builder().key(S3KeyFilter::builder().set_filter_rules(Some(rules)).build()).build(),
        );
    }
    q.build().unwrap()
}

async fn configure(s3: &Client, bucket: &str, queues: Vec<QueueConfiguration>) -> Result<(), String> {
    let cfg = NotificationConfiguration::builder().set_queue_configurations(Some(queues)).build();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(cfg)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| failure_of(&e).code.unwrap_or_default())
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &[u8]) {
    ok(s3.put_object().bucket(bucket).key(key).body(bytestream(body)).send().await, "put");
}

fn summary(r: &Value) -> (String, String) {
    (r["eventName"].as_str().unwrap_or("").to_string(), r["s3"]["object"]["key"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_is_validated_stored_and_returned() {
    let srv = server("http://127.0.0.1:9/", &[]);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("notif").send().await, "create");
    let got = ok(s3.get_bucket_notification_configuration().bucket("notif").send().await, "get empty");
    assert!(got.queue_configurations().is_empty() && got.topic_configurations().is_empty());

    let bad: Vec<(&str, Vec<QueueConfiguration>)> = vec![
        ("unknown event", vec![queue("a", &["s3:ObjectCreated:Nope"], None, None)]),
        ("unknown target", vec![QueueConfiguration::builder().queue_arn("arn:tessera:sqs::other:webhook").events(Event::S3ObjectCreated).build().unwrap()]),
        (
            "overlapping prefixes, same event",
            vec![queue("a", &["s3:ObjectCreated:*"], Some("a/"), None), queue("b", &["s3:ObjectCreated:Put"], Some("a/b/"), None)],
        ),
        ("same id twice", vec![queue("a", &["s3:ObjectCreated:*"], None, None), queue("a", &["s3:ObjectRemoved:*"], None, None)]),
    ];
    for (what, qs) in bad {
        assert_eq!(configure(&s3, "notif", qs).await, Err("InvalidArgument".to_string()), "{what}");
    }
    let raw = srv.sign(
        srv.raw_request("PUT", "/notif?notification")
            .body("<NotificationConfiguration><QueueConfiguration><Queue>arn:tessera:sqs::hook:webhook</Queue><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>a</Value></FilterRule><FilterRule><Name>prefix</Name><Value>b</Value></FilterRule></S3Key></Filter></QueueConfiguration></NotificationConfiguration>"),
    );
    srv.send(&raw).assert_error(400, "InvalidArgument");
    let raw = srv.sign(srv.raw_request("PUT", "/notif?notification").body("<NotificationConfiguration><QueueConfiguration><Queue>arn:tessera:sqs::hook:webhook</Queue></QueueConfiguration></NotificationConfiguration>"));
    srv.send(&raw).assert_error(400, "MalformedXML");

    // Disjoint filters for the same events, and other events: accepted.
    let good = vec![
        queue("images", &["s3:ObjectCreated:*"], Some("img/"), Some(".jpg")),
        queue("docs", &["s3:ObjectCreated:*"], Some("doc/"), None),
        queue("gone", &["s3:ObjectRemoved:*"], None, None),
    ];
    configure(&s3, "notif", good).await.unwrap();
    let got = ok(s3.get_bucket_notification_configuration().bucket("notif").send().await, "get");
    let qs = got.queue_configurations();
    assert_eq!(qs.len(), 3);
    assert_eq!(qs[0].id(), Some("images"));
    assert_eq!(qs[0].queue_arn(), ARN);
    assert_eq!(qs[0].events(), [Event::S3ObjectCreated]);
    let rules = qs[0].filter().and_then(|f| f.key()).map(|k| k.filter_rules().to_vec()).unwrap_or_default();
    assert_eq!(rules.len(), 2);
    assert_eq!((rules[0].name(), rules[0].value()), (Some(&FilterRuleName::Prefix), Some("img/")));
    assert_eq!((rules[1].name(), rules[1].value()), (Some(&FilterRuleName::Suffix), Some(".jpg")));

    // An object-level ?notification is not an operation.
    let raw = srv.sign(srv.raw_request("GET", "/notif/k?notification"));
    srv.send(&raw).assert_error(501, "NotImplemented");

    // Kept across a restart (a bucket record section), cleared by an empty document.
    let mut srv = srv;
    srv.restart();
    let s3 = srv.client();
    let got = ok(s3.get_bucket_notification_configuration().bucket("notif").send().await, "get after restart");
    assert_eq!(got.queue_configurations().len(), 3);
    configure(&s3, "notif", vec![]).await.unwrap();
    let got = ok(s3.get_bucket_notification_configuration().bucket("notif").send().await, "get cleared");
    assert!(got.queue_configurations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_deletes_send_aws_events_through_filters() {
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap());
    let srv = server(&rx.url(), &[]);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("events").send().await, "create");
    configure(
        &s3,
        "events",
        vec![queue("created", &["s3:ObjectCreated:*"], Some("in/"), None), queue("removed", &["s3:ObjectRemoved:*"], None, Some(".txt"))],
    )
    .await
    .unwrap();

    put(&s3, "events", "in/a b.txt", b"hello").await;
    put(&s3, "events", "out/skipped", b"x").await; // no prefix: no event
    ok(s3.copy_object().bucket("events").key("in/copy.txt").copy_source("events/in/a%20b.txt").send().await, "copy");
    let up = ok(s3.create_multipart_upload().bucket("events").key("in/multi").send().await, "create upload");
    let id = up.upload_id().unwrap();
    let part = ok(s3.upload_part().bucket("events").key("in/multi").upload_id(id).part_number(1).body(bytestream(b"part one")).send().await, "part");
    let done = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap()).build())
        .build();
    let completed = ok(
        s3.complete_multipart_upload().bucket("events").key("in/multi").upload_id(id).multipart_upload(done).send().await,
        "complete",
    );
    ok(s3.delete_object().bucket("events").key("in/a b.txt").send().await, "delete");
    ok(s3.delete_object().bucket("events").key("in/multi").send().await, "delete (no suffix: no event)");
    ok(s3.delete_object().bucket("events").key("never/there.txt").send().await, "delete of nothing: no event");
    let del = aws_sdk_s3::types::Delete::builder()
        .objects(aws_sdk_s3::types::ObjectIdentifier::builder().key("in/copy.txt").build().unwrap())
        .build()
        .unwrap();
    ok(s3.delete_objects().bucket("events").delete(del).send().await, "delete objects");

    let got = rx.wait_for(5, "events");
    std::thread::sleep(Duration::from_millis(500));
    let got_all = rx.records();
    assert_eq!(got_all.len(), 5, "no other event: {got_all:#?}");
    let mut names: Vec<(String, String)> = got.iter().map(summary).collect();
    names.sort();
    let mut want = vec![
        ("ObjectCreated:Put".to_string(), "in/a+b.txt".to_string()),
        ("ObjectCreated:Copy".to_string(), "in/copy.txt".to_string()),
        ("ObjectCreated:CompleteMultipartUpload".to_string(), "in/multi".to_string()),
        ("ObjectRemoved:Delete".to_string(), "in/a+b.txt".to_string()),
        ("ObjectRemoved:Delete".to_string(), "in/copy.txt".to_string()),
    ];
    want.sort();
    assert_eq!(names, want);
    let by = |name: &str, key: &str| got.iter().find(|r| summary(r) == (name.to_string(), key.to_string())).unwrap().clone();
    let p = by("ObjectCreated:Put", "in/a+b.txt");
    assert_eq!(p["eventSource"], "aws:s3");
    assert_eq!(p["eventVersion"], "2.1");
    assert_eq!(p["awsRegion"], "us-east-1");
    assert_eq!(p["s3"]["bucket"]["name"], "events");
    assert_eq!(p["s3"]["bucket"]["arn"], "arn:aws:s3:::events");
    assert_eq!(p["s3"]["configurationId"], "created");
    assert_eq!(p["s3"]["object"]["size"], 5);
    assert_eq!(p["s3"]["object"]["eTag"], md5_hex(b"hello"));
    assert!(p["eventTime"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{p}");
    assert!(p["s3"]["object"].get("versionId").is_none(), "unversioned: no versionId");
    let m = by("ObjectCreated:CompleteMultipartUpload", "in/multi");
    assert_eq!(m["s3"]["object"]["eTag"].as_str().unwrap(), completed.e_tag().unwrap().trim_matches('"'));
    assert_eq!(m["s3"]["object"]["size"], 8);
    let d = by("ObjectRemoved:Delete", "in/a+b.txt");
    assert_eq!(d["s3"]["configurationId"], "removed");
    assert!(d["s3"]["object"].get("size").is_none());
    // A key's events carry increasing sequencers.
    assert!(p["s3"]["object"]["sequencer"].as_str().unwrap() < d["s3"]["object"]["sequencer"].as_str().unwrap());

    // Versioned: a delete without a version id places a delete marker.
    ok(
        s3.put_bucket_versioning()
            .bucket("events")
            .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
            .send()
            .await,
        "versioning",
    );
    put(&s3, "events", "in/v.txt", b"v1").await;
    let marker = ok(s3.delete_object().bucket("events").key("in/v.txt").send().await, "marker");
    let got = rx.wait_for(7, "versioned events");
    let put_v = &got[5];
    let mark = &got[6];
    assert_eq!(summary(put_v), ("ObjectCreated:Put".to_string(), "in/v.txt".to_string()));
    assert!(put_v["s3"]["object"]["versionId"].as_str().is_some_and(|v| !v.is_empty() && v != "null"));
    assert_eq!(summary(mark), ("ObjectRemoved:DeleteMarkerCreated".to_string(), "in/v.txt".to_string()));
    assert_eq!(mark["s3"]["object"]["versionId"].as_str(), marker.version_id());

    wait_metric(&srv, "tessera_notify_delivered_total", 7.0);
    wait_metric(&srv, "tessera_notify_pending_events", 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_down_for_a_while_then_everything_arrives_in_key_order() {
    let addr = free_addr();
    let srv = server(&format!("http://{addr}/events"), &[]);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("down").send().await, "create");
    configure(&s3, "down", vec![queue("all", &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], None, None)]).await.unwrap();
    // Per key: put, overwrite, delete, put again, while nothing listens.
    const KEYS: usize = 40;
    for round in 0..2 {
        for i in 0..KEYS {
            let key = format!("k{i:03}");
            put(&s3, "down", &key, format!("{round}").as_bytes()).await;
            if round == 0 {
                ok(s3.delete_object().bucket("down").key(&key).send().await, "delete");
            }
        }
    }
    let total = KEYS * 3;
    // Retries happen (with backoff) and fail; nothing is lost.
    wait_metric(&srv, "tessera_notify_pending_events", total as f64);
    let start = Instant::now();
    while metric_total(&srv.scrape_metrics(), "tessera_notify_failed_attempts_total") < 2.0 {
        assert!(start.elapsed() < DEADLINE, "no failed attempts counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric_total(&srv.scrape_metrics(), "tessera_notify_delivered_total"), 0.0);
    // Up, but answering 500 a few times first.
    let rx = Receiver::start(addr);
    rx.fail.store(3, Ordering::SeqCst);
    let got = rx.wait_for(total, "after the receiver came back");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.records().len(), total, "each event once (no crash, so no duplicates)");
    let mut per_key: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in &got {
        let (name, key) = summary(r);
        per_key.entry(key).or_default().push((name, r["s3"]["object"]["sequencer"].as_str().unwrap().to_string()));
    }
    assert_eq!(per_key.len(), KEYS);
    for (key, evs) in per_key {
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ObjectCreated:Put", "ObjectRemoved:Delete", "ObjectCreated:Put"], "order of {key}");
        assert!(evs.windows(2).all(|w| w[0].1 < w[1].1), "sequencers of {key} increase: {evs:?}");
    }
    wait_metric(&srv, "tessera_notify_delivered_total", total as f64);
    wait_metric(&srv, "tessera_notify_pending_events", 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_pending_at_a_kill_9_are_delivered_after_restart() {
    let addr = free_addr();
    let mut srv = server(&format!("http://{addr}/events"), &[]);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("crash").send().await, "create");
    configure(&s3, "crash", vec![queue("all", &["s3:ObjectCreated:*"], None, None)]).await.unwrap();
    const N: usize = 100;
    let writes = (0..N).map(|i| {
        let s3 = s3.clone();
        async move { put(&s3, "crash", &format!("obj-{i}"), b"data").await }
    });
    futures_join_all(writes).await;
    // Every PUT was acknowledged while the receiver was down; kill -9 now.
    srv.kill9();
    let rx = Receiver::start(addr);
    srv.start_again();
    let got = rx.wait_for(N, "after restart");
    let mut keys: Vec<String> = got.iter().map(|r| summary(r).1).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), N, "every acknowledged PUT's event arrived");
    wait_metric(&srv, "tessera_notify_pending_events", 0.0);
}

/// `join_all` over tokio tasks (the tests crate has no futures dependency).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(fs: impl Iterator<Item = F>) {
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}
