//! Bucket lifecycle: the configuration API with S3's validation, the
//! `x-amz-expiration` header, and the worker applying the rules (with a
//! one-second lifecycle "day", `--lifecycle-day-secs 1`).

use std::time::Duration;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketVersioningStatus, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration, Tag, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use tessera_tests::*;

/// How long the worker gets to act on a rule due after one (1 s) day.
const WORKER_DEADLINE: Duration = Duration::from_secs(20);

fn server(day_secs: u64) -> Server {
    Server::start_with(ServerOpts { args: vec!["--lifecycle-day-secs".into(), day_secs.to_string()], ..Default::default() })
}

fn rule(id: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder().id(id).status(ExpirationStatus::Enabled)
}

fn days(d: i32) -> LifecycleExpiration {
    LifecycleExpiration::builder().days(d).build()
}

fn prefix(p: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(p).build()
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_is_validated_stored_and_returned() {
    let mut srv = server(86_400);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("lcb").send().await, "create");
    assert_s3_error(s3.get_bucket_lifecycle_configuration().bucket("lcb").send().await, 404, "NoSuchLifecycleConfiguration");
    ok(s3.delete_bucket_lifecycle().bucket("lcb").send().await, "delete without a configuration is 204");

    let bad: Vec<(&str, Vec<LifecycleRule>, &str)> = vec![
        ("days 0", vec![rule("a").filter(prefix("p/")).expiration(days(0)).build().unwrap()], "InvalidArgument"),
        ("id too long", vec![rule(&"a".repeat(256)).filter(prefix("")).expiration(days(1)).build().unwrap()], "InvalidArgument"),
        (
            "same id",
            vec![rule("a").filter(prefix("x")).expiration(days(1)).build().unwrap(), rule("a").filter(prefix("y")).expiration(days(2)).build().unwrap()],
            "InvalidArgument",
        ),
        ("bad status", vec![LifecycleRule::builder().id("a").status(ExpirationStatus::from("enabled")).filter(prefix("")).expiration(days(1)).build().unwrap()], "MalformedXML"),
        ("no action", vec![rule("a").filter(prefix("")).build().unwrap()], "MalformedXML"),
        (
            "transition (no such tier)",
            vec![rule("a").filter(prefix("")).transitions(Transition::builder().days(1).storage_class(TransitionStorageClass::Glacier).build()).build().unwrap()],
            "InvalidStorageClass",
        ),
    ];
    for (what, rules, code) in bad {
        assert_eq!(put_lifecycle_rules(&s3, "lcb", rules).await, Err(code.to_string()), "{what}");
    }
    assert_s3_error(s3.get_bucket_lifecycle_configuration().bucket("lcb").send().await, 404, "NoSuchLifecycleConfiguration");

    let rules = vec![
        rule("logs").filter(prefix("logs/")).expiration(days(31)).build().unwrap(),
        LifecycleRule::builder()
            .status(ExpirationStatus::Disabled)
            .filter(LifecycleRuleFilter::builder().tag(Tag::builder().key("k").value("v").build().unwrap()).build())
            .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(3).newer_noncurrent_versions(2).build())
            .build()
            .unwrap(),
        rule("uploads").filter(prefix("")).abort_incomplete_multipart_upload(AbortIncompleteMultipartUpload::builder().days_after_initiation(2).build()).build().unwrap(),
    ];
    assert_eq!(put_lifecycle_rules(&s3, "lcb", rules).await, Ok(()));
    for round in ["before restart", "after restart"] {
        let s3 = srv.client();
        let got = ok(s3.get_bucket_lifecycle_configuration().bucket("lcb").send().await, round);
        let got = got.rules();
        assert_eq!(got.len(), 3, "{round}");
        assert_eq!((got[0].id(), got[0].expiration().and_then(|e| e.days())), (Some("logs"), Some(31)), "{round}");
        assert_eq!(got[0].filter().and_then(|f| f.prefix()), Some("logs/"), "{round}");
        let generated = got[1].id().unwrap_or_default();
        assert!(!generated.is_empty(), "a rule without an ID gets one ({round})");
        assert_eq!(got[1].status(), &ExpirationStatus::Disabled);
        let nc = got[1].noncurrent_version_expiration().expect("noncurrent");
        assert_eq!((nc.noncurrent_days(), nc.newer_noncurrent_versions()), (Some(3), Some(2)), "{round}");
        assert_eq!(got[2].abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()), Some(2), "{round}");
        if round == "before restart" {
            srv.restart();
        }
    }
    let s3 = srv.client();
    // x-amz-expiration on PUT, HEAD and GET of a matching key only:
    // 31 days after the write, rounded up to the next midnight UTC.
    let put = ok(s3.put_object().bucket("lcb").key("logs/a").body(bytestream(b"x")).send().await, "put");
    let header = put.expiration().expect("x-amz-expiration on PUT").to_string();
    assert!(header.starts_with("expiry-date=\"") && header.ends_with("GMT\", rule-id=\"logs\""), "{header}");
    assert!(header.contains("00:00:00 GMT"), "{header}");
    let head = ok(s3.head_object().bucket("lcb").key("logs/a").send().await, "head");
    assert_eq!(head.expiration(), Some(header.as_str()));
    let get = ok(s3.get_object().bucket("lcb").key("logs/a").send().await, "get");
    assert_eq!(get.expiration(), Some(header.as_str()));
    let other = ok(s3.put_object().bucket("lcb").key("data/a").body(bytestream(b"x")).send().await, "put other");
    assert_eq!(other.expiration(), None);

    ok(s3.delete_bucket_lifecycle().bucket("lcb").send().await, "delete");
    assert_s3_error(s3.get_bucket_lifecycle_configuration().bucket("lcb").send().await, 404, "NoSuchLifecycleConfiguration");
    let head = ok(s3.head_object().bucket("lcb").key("logs/a").send().await, "head after delete");
    assert_eq!(head.expiration(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_expires_objects_versions_markers_and_uploads() {
    let srv = server(1);
    let s3 = srv.client();

    // Unversioned: tmp/ objects go after one day, others stay; a tag rule
    // expires only the tagged object.
    ok(s3.create_bucket().bucket("plain").send().await, "create");
    for k in ["tmp/a", "tmp/b", "keep/a", "keep/tagged"] {
        ok(s3.put_object().bucket("plain").key(k).body(bytestream(b"data")).send().await, k);
    }
    let tags = Tagging::builder().tag_set(Tag::builder().key("expire").value("yes").build().unwrap()).build().unwrap();
    ok(s3.put_object_tagging().bucket("plain").key("keep/tagged").tagging(tags).send().await, "tag");
    let tag_filter = LifecycleRuleFilter::builder().tag(Tag::builder().key("expire").value("yes").build().unwrap()).build();
    let rules = vec![
        rule("tmp").filter(prefix("tmp/")).expiration(days(1)).build().unwrap(),
        rule("tagged").filter(tag_filter).expiration(days(1)).build().unwrap(),
    ];
    assert_eq!(put_lifecycle_rules(&s3, "plain", rules).await, Ok(()));
    wait_until_within(WORKER_DEADLINE, "tmp/ and tagged objects expire", || async {
        let l = ok(s3.list_objects_v2().bucket("plain").send().await, "list");
        let keys: Vec<&str> = l.contents().iter().filter_map(|o| o.key()).collect();
        keys == ["keep/a"]
    })
    .await;

    // Versioned: the current version gets a delete marker; noncurrent
    // versions go one day after they stopped being current; a delete
    // marker left alone is removed; a locked... (object lock is covered by
    // the skip in the worker; not here).
    ok(s3.create_bucket().bucket("ver").send().await, "create ver");
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("ver").versioning_configuration(enabled).send().await, "versioning");
    ok(s3.put_object().bucket("ver").key("gone").body(bytestream(b"v1")).send().await, "v1");
    ok(s3.delete_object().bucket("ver").key("gone").send().await, "marker");
    ok(s3.put_object().bucket("ver").key("cur").body(bytestream(b"v1")).send().await, "cur v1");
    let rules = vec![
        rule("markers").filter(prefix("")).expiration(LifecycleExpiration::builder().expired_object_delete_marker(true).build()).build().unwrap(),
        rule("noncurrent").filter(prefix("")).noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(1).build()).build().unwrap(),
        rule("cur").filter(prefix("cur")).expiration(days(1)).build().unwrap(),
    ];
    assert_eq!(put_lifecycle_rules(&s3, "ver", rules).await, Ok(()));
    wait_until_within(WORKER_DEADLINE, "every version and marker of the versioned bucket goes", || async {
        let v = ok(s3.list_object_versions().bucket("ver").send().await, "versions");
        v.versions().is_empty() && v.delete_markers().is_empty()
    })
    .await;

    // Incomplete multipart uploads are aborted.
    ok(s3.create_bucket().bucket("mpu").send().await, "create mpu");
    ok(s3.create_multipart_upload().bucket("mpu").key("big").send().await, "create upload");
    let rules = vec![rule("abort")
        .filter(prefix(""))
        .abort_incomplete_multipart_upload(AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build())
        .build()
        .unwrap()];
    assert_eq!(put_lifecycle_rules(&s3, "mpu", rules).await, Ok(()));
    wait_until_within(WORKER_DEADLINE, "the upload is aborted", || async {
        ok(s3.list_multipart_uploads().bucket("mpu").send().await, "uploads").uploads().is_empty()
    })
    .await;
}

/// `tessera_lifecycle_visited_entries_total` of the running process.
fn visited(srv: &Server) -> f64 {
    metric_total(&srv.scrape_metrics(), "tessera_lifecycle_visited_entries_total")
}

/// PUTs `keys` (small bodies), 32 at a time.
async fn put_all(s3: &aws_sdk_s3::Client, bucket: &str, keys: Vec<String>) {
    for chunk in keys.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for k in chunk {
            let (s3, bucket, k) = (s3.clone(), bucket.to_string(), k.clone());
            set.spawn(async move { ok(s3.put_object().bucket(bucket).key(&k).body(bytestream(b"x")).send().await, &k) });
        }
        while let Some(r) = set.join_next().await {
            r.expect("put task");
        }
    }
}

async fn listed(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    let mut n = 0;
    let mut token = None;
    loop {
        let page = ok(s3.list_objects_v2().bucket(bucket).prefix(prefix).set_continuation_token(token).send().await, "list");
        n += page.contents().len();
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return n;
        }
    }
}

/// The walk reads the age index up to the first entry not yet due: with 5
/// due objects among 300 young ones, its passes visit about the 5, where
/// the full walk visited all 305 every pass (about 3,000 over this test).
#[tokio::test(flavor = "multi_thread")]
async fn a_pass_visits_only_the_due_entries() {
    let srv = server(1);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("aged").send().await, "create");
    put_all(&s3, "aged", (0..5).map(|i| format!("old/{i}")).collect()).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    put_all(&s3, "aged", (0..300).map(|i| format!("young/{i:03}")).collect()).await;
    let before = visited(&srv);
    let rules = vec![rule("twenty").filter(prefix("")).expiration(days(20)).build().unwrap()];
    assert_eq!(put_lifecycle_rules(&s3, "aged", rules).await, Ok(()));
    wait_until_within(Duration::from_secs(30), "the 5 old objects expire", || async { listed(&s3, "aged", "old/").await == 0 }).await;
    // A few more passes: the young objects are not due for ~10 s more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let walked = visited(&srv) - before;
    assert_eq!(listed(&s3, "aged", "young/").await, 300, "no young object expired");
    assert!((5.0..50.0).contains(&walked), "the passes visited {walked} entries; only the 5 due ones (and a few retries at most) should be");
}

/// Noncurrent versions are found through the index too: 5 keys whose
/// noncurrent versions are old enough, among 300 keys with a young
/// noncurrent version each, in a bucket that gets its rule after the
/// writes (so its versions are backfilled). The old ones expire; the
/// passes visit about the 5 due entries, where the full walk of
/// `T_VERSIONS` visited all 305 every pass.
#[tokio::test(flavor = "multi_thread")]
async fn noncurrent_versions_expire_through_the_index() {
    let srv = server(1);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("ncaged").send().await, "create");
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("ncaged").versioning_configuration(enabled).send().await, "versioning");
    let old: Vec<String> = (0..5).map(|i| format!("old/{i}")).collect();
    put_all(&s3, "ncaged", old.clone()).await;
    put_all(&s3, "ncaged", old).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let young: Vec<String> = (0..300).map(|i| format!("young/{i:03}")).collect();
    put_all(&s3, "ncaged", young.clone()).await;
    put_all(&s3, "ncaged", young).await;
    let before = visited(&srv);
    let expire = NoncurrentVersionExpiration::builder().noncurrent_days(20).build();
    let rules = vec![rule("nc").filter(prefix("")).noncurrent_version_expiration(expire).build().unwrap()];
    assert_eq!(put_lifecycle_rules(&s3, "ncaged", rules).await, Ok(()));
    let versions = |p: &'static str| {
        let s3 = s3.clone();
        async move {
            let mut n = 0;
            let (mut key, mut vid) = (None, None);
            loop {
                let page = ok(
                    s3.list_object_versions().bucket("ncaged").prefix(p).set_key_marker(key).set_version_id_marker(vid).send().await,
                    "versions",
                );
                n += page.versions().len();
                if page.is_truncated() != Some(true) {
                    return n;
                }
                key = page.next_key_marker().map(str::to_string);
                vid = page.next_version_id_marker().map(str::to_string);
            }
        }
    };
    wait_until_within(Duration::from_secs(30), "the 5 old noncurrent versions expire", || async { versions("old/").await == 5 }).await;
    // A few more passes: the young versions are not due for ~10 s more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let walked = visited(&srv) - before;
    assert_eq!(versions("young/").await, 600, "no young noncurrent version expired");
    assert!((5.0..50.0).contains(&walked), "the passes visited {walked} entries; only the 5 due ones (and a few retries at most) should be");
}

/// A pass killed mid-way resumes from the watermark it last saved (once
/// per page of 256 entries): after the restart it visits what was left
/// plus at most a page, not the entries it had passed over. Actions are
/// paced at 10 a second per shard (40 over the node's 4 shards), so the
/// 100 actions between 600 and 1,000 visited entries take seconds and
/// the pass is still running when it is killed, even on a loaded machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_pass_resumes_from_its_watermark() {
    let args = ["--lifecycle-day-secs", "1", "--lifecycle-actions-per-sec", "10"].map(String::from).to_vec();
    let mut srv = Server::start_with(ServerOpts { args, ..Default::default() });
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("resume").send().await, "create");
    // Three kept objects for each expiring one, interleaved in time.
    let keys: Vec<String> = (0..1200).map(|i| if i % 4 == 3 { format!("tmp/{i:04}") } else { format!("keep/{i:04}") }).collect();
    for chunk in keys.chunks(4) {
        put_all(&s3, "resume", chunk.to_vec()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rules = vec![rule("tmp").filter(prefix("tmp/")).expiration(days(1)).build().unwrap()];
    assert_eq!(put_lifecycle_rules(&s3, "resume", rules).await, Ok(()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut before_kill = visited(&srv);
    while before_kill < 600.0 {
        assert!(std::time::Instant::now() < deadline, "the pass visited only {before_kill} entries in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
        before_kill = visited(&srv);
    }
    srv.kill9();
    assert!(before_kill < 1000.0, "the pass went too far ({before_kill} of 1200) before the kill to show anything");
    srv.start_again();
    let s3 = srv.client();
    wait_until_within(Duration::from_secs(30), "every tmp/ object expires", || async { listed(&s3, "resume", "tmp/").await == 0 }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = visited(&srv);
    let bound = 1200.0 - before_kill + 256.0;
    assert!(after <= bound, "after the restart the walk visited {after} entries, more than the {bound} left after the watermark");
    assert_eq!(listed(&s3, "resume", "keep/").await, 900);
}

/// A tag added to an object the walk already passed over (its watermark
/// is beyond the object's creation time) is still seen by a tag-filtered
/// rule: the rewrite of the old version gets a retry entry in the index.
/// (Without it the object stays until the configuration changes.)
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_added_after_the_walk_passed_is_seen() {
    let srv = server(1);
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("late-tag").send().await, "create");
    let tag = || Tag::builder().key("expire").value("yes").build().unwrap();
    let filter = LifecycleRuleFilter::builder().tag(tag()).build();
    let rules = vec![rule("tagged").filter(filter).expiration(days(1)).build().unwrap()];
    assert_eq!(put_lifecycle_rules(&s3, "late-tag", rules).await, Ok(()));
    let before = visited(&srv);
    put_all(&s3, "late-tag", vec!["obj".to_string(), "other".to_string()]).await;
    // The walk visits both (one day old, untagged: nothing to do) and its
    // watermark moves past them.
    wait_until_within(WORKER_DEADLINE, "the walk passes the untagged objects", || async { visited(&srv) - before >= 2.0 }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(listed(&s3, "late-tag", "").await, 2, "untagged objects stay");
    let tags = Tagging::builder().tag_set(tag()).build().unwrap();
    ok(s3.put_object_tagging().bucket("late-tag").key("obj").tagging(tags).send().await, "tag");
    wait_until_within(WORKER_DEADLINE, "the object tagged late expires", || async { listed(&s3, "late-tag", "obj").await == 0 }).await;
    assert_eq!(listed(&s3, "late-tag", "other").await, 1, "the untagged one stays");
}
