//! Object lock: bucket configuration, default retention, per-version
//! retention and legal hold, GOVERNANCE bypass, COMPLIANCE that no one can
//! shorten or delete before its date, and every error on the way.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, Delete, ObjectIdentifier, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
    ObjectLockRule, VersioningConfiguration,
};
use tessera_tests::*;

fn lock_conf(mode: ObjectLockRetentionMode, days: Option<i32>, years: Option<i32>) -> ObjectLockConfiguration {
    let d = DefaultRetention::builder().mode(mode).set_days(days).set_years(years).build();
    ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(ObjectLockRule::builder().default_retention(d).build())
        .build()
}

fn retention(mode: ObjectLockRetentionMode, until: SystemTime) -> ObjectLockRetention {
    ObjectLockRetention::builder().mode(mode).retain_until_date(DateTime::from(until)).build()
}

fn hold(on: bool) -> ObjectLockLegalHold {
    let s = if on { ObjectLockLegalHoldStatus::On } else { ObjectLockLegalHoldStatus::Off };
    ObjectLockLegalHold::builder().status(s).build()
}

fn in_secs(s: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(s)
}

async fn locked_bucket(name: &str) -> (Server, aws_sdk_s3::Client) {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket(name).object_lock_enabled_for_bucket(true).send().await, "create locked bucket");
    (server, s3)
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let out = ok(s3.put_object().bucket(bucket).key(key).body(bytestream(b"abc")).send().await, "put");
    out.version_id().expect("versioned").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_configuration_rules() {
    let (server, s3) = locked_bucket("lockcfg").await;
    let v = ok(s3.get_bucket_versioning().bucket("lockcfg").send().await, "versioning");
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled), "object lock turns versioning on");
    let got = ok(s3.get_object_lock_configuration().bucket("lockcfg").send().await, "get");
    let c = got.object_lock_configuration().unwrap();
    assert_eq!(c.object_lock_enabled(), Some(&ObjectLockEnabled::Enabled));
    assert!(c.rule().is_none());
    ok(
        s3.put_object_lock_configuration()
            .bucket("lockcfg")
            .object_lock_configuration(lock_conf(ObjectLockRetentionMode::Compliance, None, Some(1)))
            .send()
            .await,
        "set default",
    );
    let got = ok(s3.get_object_lock_configuration().bucket("lockcfg").send().await, "get");
    let d = got.object_lock_configuration().unwrap().rule().unwrap().default_retention().unwrap();
    assert_eq!((d.mode(), d.days(), d.years()), (Some(&ObjectLockRetentionMode::Compliance), None, Some(1)));
    // Invalid configurations.
    for (days, years, code) in [
        (Some(0), None, "InvalidRetentionPeriod"),
        (None, Some(-1), "InvalidRetentionPeriod"),
        (Some(36501), None, "InvalidRetentionPeriod"),
        (Some(1), Some(1), "MalformedXML"),
    ] {
        assert_s3_error(
            s3.put_object_lock_configuration()
                .bucket("lockcfg")
                .object_lock_configuration(lock_conf(ObjectLockRetentionMode::Governance, days, years))
                .send()
                .await,
            400,
            code,
        );
    }
    for body in [
        "<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled></ObjectLockConfiguration>",
        "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>governance</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
    ] {
        let r = server.send(&server.sign(
            server.raw_request("PUT", "/lockcfg?object-lock").header("Content-MD5", &content_md5(body.as_bytes())).body(body),
        ));
        assert_eq!((r.status, r.body_text().contains("MalformedXML")), (400, true), "{body}");
    }
    // Content-MD5 or a checksum is required.
    let body = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>";
    let r = server.send(&server.sign(server.raw_request("PUT", "/lockcfg?object-lock").body(body)));
    assert_eq!((r.status, r.body_text().contains("InvalidRequest")), (400, true), "{}", r.body_text());
    // Versioning cannot be suspended under object lock.
    let conf = VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build();
    assert_s3_error(
        s3.put_bucket_versioning().bucket("lockcfg").versioning_configuration(conf).send().await,
        409,
        "InvalidBucketState",
    );

    // A plain bucket: no configuration; it can be enabled only once versioned.
    ok(s3.create_bucket().bucket("plain").send().await, "plain bucket");
    assert_s3_error(s3.get_object_lock_configuration().bucket("plain").send().await, 404, "ObjectLockConfigurationNotFoundError");
    let conf = lock_conf(ObjectLockRetentionMode::Governance, Some(1), None);
    assert_s3_error(
        s3.put_object_lock_configuration().bucket("plain").object_lock_configuration(conf.clone()).send().await,
        409,
        "InvalidBucketState",
    );
    ok(
        s3.put_bucket_versioning()
            .bucket("plain")
            .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
            .send()
            .await,
        "enable versioning",
    );
    ok(s3.put_object_lock_configuration().bucket("plain").object_lock_configuration(conf).send().await, "enable lock later");
    // Lock operations on a bucket without object lock.
    ok(s3.create_bucket().bucket("nolock").send().await, "bucket");
    ok(s3.put_object().bucket("nolock").key("k").body(bytestream(b"x")).send().await, "put");
    let until = in_secs(3600);
    assert_s3_error(
        s3.put_object_retention().bucket("nolock").key("k").retention(retention(ObjectLockRetentionMode::Governance, until)).send().await,
        400,
        "InvalidRequest",
    );
    assert_s3_error(s3.get_object_retention().bucket("nolock").key("k").send().await, 400, "InvalidRequest");
    assert_s3_error(s3.put_object_legal_hold().bucket("nolock").key("k").legal_hold(hold(true)).send().await, 400, "InvalidRequest");
    assert_s3_error(s3.get_object_legal_hold().bucket("nolock").key("k").send().await, 400, "InvalidRequest");
    assert_s3_error(
        s3.put_object().bucket("nolock").key("k2").object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On).body(bytestream(b"x")).send().await,
        400,
        "InvalidRequest",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn governance_retention_and_bypass() {
    let (_server, s3) = locked_bucket("gov").await;
    let v = put(&s3, "gov", "k").await;
    assert_s3_error(s3.get_object_retention().bucket("gov").key("k").send().await, 404, "NoSuchObjectLockConfiguration");
    let until = in_secs(3600 * 24 * 2);
    ok(
        s3.put_object_retention().bucket("gov").key("k").retention(retention(ObjectLockRetentionMode::Governance, until)).send().await,
        "retain",
    );
    let got = ok(s3.get_object_retention().bucket("gov").key("k").version_id(&v).send().await, "get retention");
    let r = got.retention().unwrap();
    assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Governance));
    let head = ok(s3.head_object().bucket("gov").key("k").send().await, "head");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
    assert!(head.object_lock_retain_until_date().is_some());
    // Protected: delete by id and shortening are refused without bypass.
    assert_s3_error(s3.delete_object().bucket("gov").key("k").version_id(&v).send().await, 403, "AccessDenied");
    let shorter = in_secs(3600);
    assert_s3_error(
        s3.put_object_retention().bucket("gov").key("k").retention(retention(ObjectLockRetentionMode::Governance, shorter)).send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        s3.put_object_retention().bucket("gov").key("k").retention(retention(ObjectLockRetentionMode::Compliance, until)).send().await,
        403,
        "AccessDenied",
    );
    // Extending is always allowed; a delete without id only adds a marker.
    ok(
        s3.put_object_retention().bucket("gov").key("k").retention(retention(ObjectLockRetentionMode::Governance, in_secs(3600 * 72))).send().await,
        "extend",
    );
    let marker = ok(s3.delete_object().bucket("gov").key("k").send().await, "marker");
    assert_eq!(marker.delete_marker(), Some(true));
    ok(s3.delete_object().bucket("gov").key("k").version_id(marker.version_id().unwrap()).send().await, "markers are not locked");
    // With bypass (root): shorten, then delete.
    ok(
        s3.put_object_retention()
            .bucket("gov")
            .key("k")
            .retention(retention(ObjectLockRetentionMode::Governance, shorter))
            .bypass_governance_retention(true)
            .send()
            .await,
        "shorten with bypass",
    );
    ok(s3.delete_object().bucket("gov").key("k").version_id(&v).bypass_governance_retention(true).send().await, "delete with bypass");
    // A retain-until date in the past is refused.
    let v2 = put(&s3, "gov", "k2").await;
    let past = SystemTime::now() - Duration::from_secs(60);
    assert_s3_error(
        s3.put_object_retention().bucket("gov").key("k2").version_id(&v2).retention(retention(ObjectLockRetentionMode::Governance, past)).send().await,
        400,
        "InvalidArgument",
    );
    // DeleteObjects: the locked version fails alone.
    let v3 = put(&s3, "gov", "k3").await;
    ok(
        s3.put_object_retention().bucket("gov").key("k3").retention(retention(ObjectLockRetentionMode::Governance, until)).send().await,
        "retain k3",
    );
    let ident = |k: &str, v: &str| ObjectIdentifier::builder().key(k).version_id(v).build().unwrap();
    let del = Delete::builder().objects(ident("k3", &v3)).objects(ident("k2", &v2)).build().unwrap();
    let r = ok(s3.delete_objects().bucket("gov").delete(del.clone()).send().await, "multi delete");
    assert_eq!((r.deleted().len(), r.errors().len()), (1, 1));
    assert_eq!((r.errors()[0].key(), r.errors()[0].code()), (Some("k3"), Some("AccessDenied")));
    let r = ok(s3.delete_objects().bucket("gov").delete(del).bypass_governance_retention(true).send().await, "with bypass");
    assert_eq!((r.deleted().len(), r.errors().len()), (2, 0));
}

/// A COMPLIANCE-locked version: nobody (not root, not with bypass) can
/// delete it or shorten its retention before its date; after the date it
/// can be deleted.
#[tokio::test(flavor = "multi_thread")]
async fn compliance_lock_holds_until_its_date() {
    let (_server, s3) = locked_bucket("comp").await;
    let until = in_secs(4);
    let out = ok(
        s3.put_object()
            .bucket("comp")
            .key("k")
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from(until))
            .body(bytestream(b"precious"))
            .send()
            .await,
        "put with compliance",
    );
    let v = out.version_id().unwrap().to_string();
    let head = ok(s3.head_object().bucket("comp").key("k").send().await, "head");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    assert_s3_error(s3.delete_object().bucket("comp").key("k").version_id(&v).send().await, 403, "AccessDenied");
    assert_s3_error(
        s3.delete_object().bucket("comp").key("k").version_id(&v).bypass_governance_retention(true).send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        s3.put_object_retention()
            .bucket("comp")
            .key("k")
            .retention(retention(ObjectLockRetentionMode::Compliance, in_secs(2)))
            .bypass_governance_retention(true)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        s3.put_object_retention()
            .bucket("comp")
            .key("k")
            .retention(retention(ObjectLockRetentionMode::Governance, in_secs(3600)))
            .bypass_governance_retention(true)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    let r = ok(
        s3.delete_objects()
            .bucket("comp")
            .delete(Delete::builder().objects(ObjectIdentifier::builder().key("k").version_id(&v).build().unwrap()).build().unwrap())
            .bypass_governance_retention(true)
            .send()
            .await,
        "multi delete",
    );
    assert_eq!(r.errors().len(), 1);
    let got = ok(s3.get_object().bucket("comp").key("k").version_id(&v).send().await, "still there");
    assert_eq!(read_body(got).await, b"precious");
    // The bucket holding it cannot be deleted either.
    assert_s3_error(s3.delete_bucket().bucket("comp").send().await, 409, "BucketNotEmpty");
    tokio::time::sleep(until.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(1100)).await;
    ok(s3.delete_object().bucket("comp").key("k").version_id(&v).send().await, "delete after the date");
    ok(s3.delete_bucket().bucket("comp").send().await, "delete bucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn legal_hold_default_retention_and_lock_headers() {
    let (server, s3) = locked_bucket("hold").await;
    let v = put(&s3, "hold", "k").await;
    let got = ok(s3.get_object_legal_hold().bucket("hold").key("k").send().await, "get hold");
    assert_eq!(got.legal_hold().and_then(|h| h.status()), Some(&ObjectLockLegalHoldStatus::Off));
    ok(s3.put_object_legal_hold().bucket("hold").key("k").legal_hold(hold(true)).send().await, "hold on");
    let head = ok(s3.head_object().bucket("hold").key("k").send().await, "head");
    assert_eq!(head.object_lock_legal_hold_status(), Some(&ObjectLockLegalHoldStatus::On));
    assert_s3_error(
        s3.delete_object().bucket("hold").key("k").version_id(&v).bypass_governance_retention(true).send().await,
        403,
        "AccessDenied",
    );
    ok(s3.put_object_legal_hold().bucket("hold").key("k").legal_hold(hold(false)).send().await, "hold off");
    ok(s3.delete_object().bucket("hold").key("k").version_id(&v).send().await, "delete once released");
    let r = server.send(&server.sign(
        server
            .raw_request("PUT", "/hold/k?legal-hold")
            .header("Content-MD5", &content_md5(b"<LegalHold><Status>MAYBE</Status></LegalHold>"))
            .body("<LegalHold><Status>MAYBE</Status></LegalHold>"),
    ));
    assert_eq!((r.status, r.body_text().contains("MalformedXML")), (400, true), "{}", r.body_text());

    // Lock headers on PUT, with their errors.
    let until = in_secs(3600);
    let out = ok(
        s3.put_object()
            .bucket("hold")
            .key("h")
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(DateTime::from(until))
            .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
            .body(bytestream(b"x"))
            .send()
            .await,
        "put with lock headers",
    );
    let hv = out.version_id().unwrap().to_string();
    let head = ok(s3.head_object().bucket("hold").key("h").send().await, "head");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
    assert_eq!(head.object_lock_legal_hold_status(), Some(&ObjectLockLegalHoldStatus::On));
    let unsigned_md5 = content_md5(b"x");
    for (headers, why) in [
        (vec![("x-amz-object-lock-mode", "GOVERNANCE")], "mode without date"),
        (vec![("x-amz-object-lock-mode", "SOMETIMES"), ("x-amz-object-lock-retain-until-date", "2099-01-01T00:00:00Z")], "bad mode"),
        (vec![("x-amz-object-lock-mode", "GOVERNANCE"), ("x-amz-object-lock-retain-until-date", "2001-01-01T00:00:00Z")], "past date"),
        (vec![("x-amz-object-lock-legal-hold", "MAYBE")], "bad hold"),
    ] {
        let mut req = server.raw_request("PUT", "/hold/bad").header("Content-MD5", &unsigned_md5);
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let r = server.send(&server.sign(req.body("x")));
        assert_eq!((r.status, r.body_text().contains("InvalidArgument")), (400, true), "{why}: {}", r.body_text());
    }
    let r = server.send(&server.sign(server.raw_request("PUT", "/hold/bad").header("x-amz-object-lock-legal-hold", "ON").body("x")));
    assert_eq!((r.status, r.body_text().contains("InvalidRequest")), (400, true), "lock headers need an integrity check");
    ok(s3.put_object_legal_hold().bucket("hold").key("h").legal_hold(hold(false)).send().await, "release");
    ok(s3.delete_object().bucket("hold").key("h").version_id(&hv).bypass_governance_retention(true).send().await, "cleanup");

    // Default retention applies to new versions (PUT and multipart).
    ok(
        s3.put_object_lock_configuration()
            .bucket("hold")
            .object_lock_configuration(lock_conf(ObjectLockRetentionMode::Governance, Some(1), None))
            .send()
            .await,
        "default retention",
    );
    let dv = put(&s3, "hold", "d").await;
    let r = ok(s3.get_object_retention().bucket("hold").key("d").send().await, "retention from default");
    let r = r.retention().unwrap();
    assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Governance));
    let until = r.retain_until_date().unwrap().secs();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((until - now - 86_400).abs() < 60, "one day from now: {until} vs {now}");
    assert_s3_error(s3.delete_object().bucket("hold").key("d").version_id(&dv).send().await, 403, "AccessDenied");
    let up = ok(s3.create_multipart_upload().bucket("hold").key("mp").send().await, "mpu");
    let id = up.upload_id().unwrap();
    let part = ok(s3.upload_part().bucket("hold").key("mp").upload_id(id).part_number(1).body(bytestream(b"p")).send().await, "part");
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(aws_sdk_s3::types::CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap()).build())
        .build();
    let c = ok(s3.complete_multipart_upload().bucket("hold").key("mp").upload_id(id).multipart_upload(done).send().await, "complete");
    assert_s3_error(
        s3.delete_object().bucket("hold").key("mp").version_id(c.version_id().unwrap()).send().await,
        403,
        "AccessDenied",
    );
}
