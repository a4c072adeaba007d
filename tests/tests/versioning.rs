//! Versioning: bucket states, version ids, delete markers, the null
//! version, reads/deletes/copies by version id, ListObjectVersions paging,
//! DeleteObjects with versions, and versions under concurrency.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, MfaDelete, ObjectIdentifier, VersioningConfiguration,
};
use tessera_tests::*;

async fn set_versioning(s3: &aws_sdk_s3::Client, bucket: &str, status: BucketVersioningStatus) {
    let conf = VersioningConfiguration::builder().status(status).build();
    ok(s3.put_bucket_versioning().bucket(bucket).versioning_configuration(conf).send().await, "put versioning");
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> Option<String> {
    let out = ok(s3.put_object().bucket(bucket).key(key).body(bytestream(body)).send().await, "put");
    out.version_id().map(str::to_string)
}

async fn get_version(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, v: &str) -> Vec<u8> {
    let out = ok(s3.get_object().bucket(bucket).key(key).version_id(v).send().await, "get version");
    assert_eq!(out.version_id(), Some(v));
    read_body(out).await
}

/// One entry of a versions listing: (key, version id, is latest, is delete marker).
type Entry = (String, String, bool, bool);

/// Every version and delete marker, in listing order, paged by `page` keys.
async fn list_all_versions(s3: &aws_sdk_s3::Client, bucket: &str, page: i32) -> Vec<Entry> {
    let mut out = Vec::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    loop {
        let r = ok(
            s3.list_object_versions()
                .bucket(bucket)
                .max_keys(page)
                .set_key_marker(km.clone())
                .set_version_id_marker(vm.clone())
                .send()
                .await,
            "list versions",
        );
        // Versions and markers come as two lists; the listing interleaves
        // them by key, newest first, which version ids (time-ordered) give back.
        let mut batch: Vec<Entry> = r
            .versions()
            .iter()
            .map(|v| (v.key().unwrap().to_string(), v.version_id().unwrap().to_string(), v.is_latest().unwrap(), false))
            .chain(r.delete_markers().iter().map(|d| {
                (d.key().unwrap().to_string(), d.version_id().unwrap().to_string(), d.is_latest().unwrap(), true)
            }))
            .collect();
        assert!(batch.len() <= page as usize, "page holds at most max-keys entries");
        batch.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        out.extend(batch);
        if !r.is_truncated().unwrap_or(false) {
            return out;
        }
        km = r.next_key_marker().map(str::to_string);
        vm = r.next_version_id_marker().map(str::to_string);
        assert!(km.is_some(), "a truncated page names where to continue");
    }
}

/// Version ids of a versions listing in document order (versions and
/// delete markers interleaved, as the server sends them).
fn raw_version_ids(server: &Server, bucket: &str) -> Vec<String> {
    let r = server.send(&server.sign(server.raw_request("GET", &format!("/{bucket}?versions"))));
    assert_eq!(r.status, 200, "{}", r.body_text());
    r.body_text()
        .split("<VersionId>")
        .skip(1)
        .map(|s| s.split("</VersionId>").next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn versioning_configuration_states_and_errors() {
    let (server, s3) = with_bucket("cfg").await;
    let got = ok(s3.get_bucket_versioning().bucket("cfg").send().await, "get");
    assert_eq!(got.status(), None, "a new bucket is unversioned");
    for status in [BucketVersioningStatus::Suspended, BucketVersioningStatus::Enabled, BucketVersioningStatus::Enabled, BucketVersioningStatus::Suspended] {
        set_versioning(&s3, "cfg", status.clone()).await;
        let got = ok(s3.get_bucket_versioning().bucket("cfg").send().await, "get");
        assert_eq!(got.status(), Some(&status));
        assert_eq!(got.mfa_delete(), None, "MFA delete is never configured");
    }
    // MFA delete is answered as AWS does without MFA authentication.
    let conf = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .mfa_delete(MfaDelete::Enabled)
        .build();
    assert_s3_error(s3.put_bucket_versioning().bucket("cfg").versioning_configuration(conf).send().await, 403, "AccessDenied");
    let conf = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .mfa_delete(MfaDelete::Disabled)
        .build();
    ok(s3.put_bucket_versioning().bucket("cfg").versioning_configuration(conf).send().await, "MFA delete disabled");
    // Malformed documents.
    for body in ["<VersioningConfiguration><Status>On</Status></VersioningConfiguration>", "<Nope/>", "junk"] {
        let r = server.send(&server.sign(server.raw_request("PUT", "/cfg?versioning").body(body)));
        assert_eq!((r.status, r.body_text().contains("MalformedXML")), (400, true), "{body}: {}", r.body_text());
    }
    assert_s3_error(s3.get_bucket_versioning().bucket("missing").send().await, 404, "NoSuchBucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_delete_markers_and_reads_by_id() {
    let (server, s3) = with_bucket("ver").await;
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let v = put(&s3, "ver", "k", format!("content-{i}").as_bytes()).await.expect("a version id");
        assert_eq!(v.len(), 22);
        assert!(v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "URL-safe: {v}");
        ids.push(v);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "version ids are time-ordered");
    for (i, v) in ids.iter().enumerate() {
        assert_eq!(get_version(&s3, "ver", "k", v).await, format!("content-{i}").into_bytes());
    }
    let head = ok(s3.head_object().bucket("ver").key("k").send().await, "head");
    assert_eq!(head.version_id(), Some(ids[4].as_str()));

    // A delete without an id writes a delete marker.
    let del = ok(s3.delete_object().bucket("ver").key("k").send().await, "delete");
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del.version_id().expect("marker id").to_string();
    assert!(marker > ids[4]);
    let r = server.send(&server.sign(server.raw_request("GET", "/ver/k")));
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(r.header("x-amz-version-id"), Some(marker.as_str()));
    assert!(r.body_text().contains("NoSuchKey"));
    let r = server.send(&server.sign(server.raw_request("HEAD", "/ver/k")));
    assert_eq!((r.status, r.header("x-amz-delete-marker")), (404, Some("true")));
    // GET of the marker by id: 405 with the marker's headers.
    let r = server.send(&server.sign(server.raw_request("GET", &format!("/ver/k?versionId={marker}"))));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("x-amz-delete-marker"), Some("true"));
    assert!(r.header("last-modified").is_some());
    // Older versions stay readable; ListObjects no longer shows the key.
    assert_eq!(get_version(&s3, "ver", "k", &ids[2]).await, b"content-2");
    let listed = ok(s3.list_objects_v2().bucket("ver").send().await, "list");
    assert!(listed.contents().is_empty(), "delete markers are not listed");

    // Deleting the marker by id restores the newest version.
    let del = ok(s3.delete_object().bucket("ver").key("k").version_id(&marker).send().await, "delete marker");
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some(marker.as_str()));
    let got = ok(s3.get_object().bucket("ver").key("k").send().await, "get restored");
    assert_eq!(got.version_id(), Some(ids[4].as_str()));
    // Deleting the current version by id promotes the one before it.
    ok(s3.delete_object().bucket("ver").key("k").version_id(&ids[4]).send().await, "delete current");
    let got = ok(s3.get_object().bucket("ver").key("k").send().await, "get promoted");
    assert_eq!(read_body(got).await, b"content-3");
    // Deleting a noncurrent version leaves the current one.
    ok(s3.delete_object().bucket("ver").key("k").version_id(&ids[1]).send().await, "delete noncurrent");
    assert_s3_error(s3.get_object().bucket("ver").key("k").version_id(&ids[1]).send().await, 404, "NoSuchVersion");
    let all = list_all_versions(&s3, "ver", 1000).await;
    let left: Vec<&str> = all.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(left, [ids[3].as_str(), ids[2].as_str(), ids[0].as_str()]);
    assert_eq!(all.iter().filter(|e| e.2).count(), 1, "one latest");
    // Deleting a version twice succeeds (idempotent).
    ok(s3.delete_object().bucket("ver").key("k").version_id(&ids[1]).send().await, "delete again");
    // Bad and unknown ids.
    assert_s3_error(s3.get_object().bucket("ver").key("k").version_id("not-an-id").send().await, 400, "InvalidArgument");
    assert_s3_error(s3.delete_object().bucket("ver").key("k").version_id("zz").send().await, 400, "InvalidArgument");
    let unknown = "00000000000000000000-0";
    assert_s3_error(s3.get_object().bucket("ver").key("k").version_id(unknown).send().await, 400, "InvalidArgument");
    let absent = ids[1].clone();
    assert_s3_error(s3.head_object().bucket("ver").key("k").version_id(&absent).send().await, 404, "NotFound");
    assert_s3_error(s3.get_object().bucket("ver").key("nokey").version_id(&absent).send().await, 404, "NoSuchVersion");

    // A bucket holding only noncurrent versions or markers is not empty.
    for v in [&ids[3], &ids[2]] {
        ok(s3.delete_object().bucket("ver").key("k").version_id(v).send().await, "delete");
    }
    ok(s3.delete_object().bucket("ver").key("k").send().await, "marker over the last version");
    assert_s3_error(s3.delete_bucket().bucket("ver").send().await, 409, "BucketNotEmpty");
    for e in list_all_versions(&s3, "ver", 2).await {
        ok(s3.delete_object().bucket("ver").key(&e.0).version_id(&e.1).send().await, "delete all");
    }
    ok(s3.delete_bucket().bucket("ver").send().await, "delete bucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_null_version_unversioned_enabled_and_suspended() {
    let (server, s3) = with_bucket("nul").await;
    // Unversioned: no version id on writes or reads.
    assert_eq!(put(&s3, "nul", "k", b"plain").await, None);
    let r = server.send(&server.sign(server.raw_request("HEAD", "/nul/k")));
    assert_eq!(r.header("x-amz-version-id"), None);
    assert_eq!(get_version(&s3, "nul", "k", "null").await, b"plain");
    // A plain delete in an unversioned bucket: no marker.
    ok(s3.delete_object().bucket("nul").key("k").send().await, "delete");
    let r = server.send(&server.sign(server.raw_request("HEAD", "/nul/k")));
    assert_eq!((r.status, r.header("x-amz-delete-marker")), (404, Some("false")));

    put(&s3, "nul", "k", b"plain").await;
    set_versioning(&s3, "nul", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "nul", "k", b"v1").await.expect("id");
    assert_eq!(raw_version_ids(&server, "nul"), [v1.as_str(), "null"]);
    assert_eq!(get_version(&s3, "nul", "k", "null").await, b"plain");
    // Suspended: writes replace the null version, keep the others.
    set_versioning(&s3, "nul", BucketVersioningStatus::Suspended).await;
    assert_eq!(put(&s3, "nul", "k", b"null-2").await, None, "no version id for null versions");
    assert_eq!(raw_version_ids(&server, "nul"), ["null", v1.as_str()]);
    assert_eq!(get_version(&s3, "nul", "k", "null").await, b"null-2");
    assert_eq!(put(&s3, "nul", "k", b"null-3").await, None);
    assert_eq!(raw_version_ids(&server, "nul"), ["null", v1.as_str()], "the null version was replaced, not stacked");
    // A suspended delete writes a null delete marker in place of the null version.
    let del = ok(s3.delete_object().bucket("nul").key("k").send().await, "delete");
    assert_eq!((del.delete_marker(), del.version_id()), (Some(true), Some("null")));
    assert_eq!(raw_version_ids(&server, "nul"), ["null", v1.as_str()]);
    let r = ok(s3.list_object_versions().bucket("nul").send().await, "list");
    assert_eq!(r.delete_markers().len(), 1);
    assert_eq!(r.delete_markers()[0].is_latest(), Some(true));
    assert_eq!(r.versions().len(), 1);
    assert_eq!(r.versions()[0].is_latest(), Some(false));
    ok(s3.delete_object().bucket("nul").key("k").version_id("null").send().await, "delete null marker");
    let got = ok(s3.get_object().bucket("nul").key("k").send().await, "v1 is current again");
    assert_eq!(read_body(got).await, b"v1");
    // GET/HEAD in a versioned bucket report `null` for the null version.
    put(&s3, "nul", "other", b"x").await;
    let r = server.send(&server.sign(server.raw_request("HEAD", "/nul/other")));
    assert_eq!(r.header("x-amz-version-id"), Some("null"));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_object_versions_pages_by_key_and_version_markers() {
    let (server, s3) = with_bucket("lvs").await;
    set_versioning(&s3, "lvs", BucketVersioningStatus::Enabled).await;
    let keys = ["a", "a/1", "a/2", "b", "b\u{0}x", "c d", "日本"];
    let mut expected: Vec<Entry> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let mut mine = Vec::new();
        for j in 0..=(i % 3) {
            let v = put(&s3, "lvs", k, format!("{k}-{j}").as_bytes()).await.expect("id");
            mine.push((k.to_string(), v, false, false));
        }
        if i % 2 == 0 {
            let d = ok(s3.delete_object().bucket("lvs").key(*k).send().await, "marker");
            mine.push((k.to_string(), d.version_id().unwrap().to_string(), false, true));
        }
        mine.reverse();
        mine[0].2 = true;
        expected.extend(mine);
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    for page in [1, 2, 3, 5, 1000] {
        assert_eq!(list_all_versions(&s3, "lvs", page).await, expected, "page size {page}");
    }
    // Prefix and delimiter.
    let r = ok(s3.list_object_versions().bucket("lvs").prefix("a").delimiter("/").send().await, "delimiter");
    let prefixes: Vec<&str> = r.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(prefixes, ["a/"]);
    assert!(r.versions().iter().all(|v| v.key() == Some("a")));
    let r = ok(s3.list_object_versions().bucket("lvs").prefix("b").send().await, "prefix");
    let ks: HashSet<&str> = r.versions().iter().map(|v| v.key().unwrap()).collect();
    assert_eq!(ks, HashSet::from(["b", "b\u{0}x"]));
    // encoding-type=url encodes keys and markers.
    let r = server.send(&server.sign(server.raw_request("GET", "/lvs?versions&encoding-type=url&max-keys=1&prefix=c%20")));
    let body = r.body_text();
    assert!(body.contains("<Key>c%20d</Key>"), "{body}");
    assert!(body.contains("<NextKeyMarker>c%20d</NextKeyMarker>"), "{body}");
    // Marker errors.
    let r = server.send(&server.sign(server.raw_request("GET", "/lvs?versions&version-id-marker=null")));
    assert_eq!(r.status, 400, "a version-id marker needs a key marker");
    let r = server.send(&server.sign(server.raw_request("GET", "/lvs?versions&key-marker=a&version-id-marker=bad")));
    assert_eq!(r.status, 400);
    // ListObjects still lists current keys only.
    let listed = ok(s3.list_objects_v2().bucket("lvs").send().await, "list");
    let names: Vec<&str> = listed.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(names, ["a/1", "b", "c d"], "keys whose latest version is a delete marker are hidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_with_versions_and_markers() {
    let (_server, s3) = with_bucket("mdv").await;
    set_versioning(&s3, "mdv", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "mdv", "k", b"1").await.unwrap();
    let v2 = put(&s3, "mdv", "k", b"2").await.unwrap();
    let ident = |k: &str, v: Option<&str>| ObjectIdentifier::builder().key(k).set_version_id(v.map(str::to_string)).build().unwrap();
    // Without ids: markers.
    let r = ok(
        s3.delete_objects()
            .bucket("mdv")
            .delete(Delete::builder().objects(ident("k", None)).objects(ident("new", None)).build().unwrap())
            .send()
            .await,
        "markers",
    );
    assert_eq!(r.deleted().len(), 2);
    for d in r.deleted() {
        assert_eq!(d.delete_marker(), Some(true));
        assert!(d.delete_marker_version_id().is_some());
    }
    let markers: Vec<String> = r.deleted().iter().map(|d| d.delete_marker_version_id().unwrap().to_string()).collect();
    // With ids: versions and markers removed; unknown ids succeed; bad ids fail alone.
    let mut objects = vec![ident("k", Some(&v1)), ident("k", Some(&v2)), ident("k", Some("null")), ident("k", Some("bad"))];
    objects.push(ident("k", Some(&markers[0])));
    objects.push(ident("new", Some(&markers[1])));
    let r = ok(
        s3.delete_objects().bucket("mdv").delete(Delete::builder().set_objects(Some(objects)).build().unwrap()).send().await,
        "versions",
    );
    assert_eq!(r.deleted().len(), 5, "{r:?}");
    assert_eq!(r.errors().len(), 1);
    assert_eq!(r.errors()[0].version_id(), Some("bad"));
    let by_version: HashMap<&str, Option<bool>> =
        r.deleted().iter().map(|d| (d.version_id().unwrap(), d.delete_marker())).collect();
    assert_eq!(by_version[markers[0].as_str()], Some(true), "removing a marker says so");
    assert_eq!(by_version[v1.as_str()], None);
    assert!(list_all_versions(&s3, "mdv", 1000).await.is_empty());
    ok(s3.delete_bucket().bucket("mdv").send().await, "bucket now empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_from_a_version_and_acl_of_a_version() {
    let (_server, s3) = with_bucket("cpv").await;
    set_versioning(&s3, "cpv", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "cpv", "src", b"first").await.unwrap();
    let _v2 = put(&s3, "cpv", "src", b"second").await.unwrap();
    let out = ok(
        s3.copy_object().bucket("cpv").key("dst").copy_source(format!("cpv/src?versionId={v1}")).send().await,
        "copy version",
    );
    assert_eq!(out.copy_source_version_id(), Some(v1.as_str()));
    assert!(out.version_id().is_some());
    let got = ok(s3.get_object().bucket("cpv").key("dst").send().await, "get copy");
    assert_eq!(read_body(got).await, b"first");
    // Copy onto itself from an older version restores it as a new version.
    ok(s3.copy_object().bucket("cpv").key("src").copy_source(format!("cpv/src?versionId={v1}")).send().await, "restore");
    let got = ok(s3.get_object().bucket("cpv").key("src").send().await, "get restored");
    assert_eq!(read_body(got).await, b"first");
    assert_eq!(list_all_versions(&s3, "cpv", 1000).await.iter().filter(|e| e.0 == "src").count(), 3);
    // A delete marker cannot be a copy source.
    let d = ok(s3.delete_object().bucket("cpv").key("src").send().await, "marker");
    let marker = d.version_id().unwrap();
    assert_s3_error(s3.copy_object().bucket("cpv").key("x").copy_source("cpv/src").send().await, 404, "NoSuchKey");
    assert_s3_error(
        s3.copy_object().bucket("cpv").key("x").copy_source(format!("cpv/src?versionId={marker}")).send().await,
        400,
        "InvalidRequest",
    );
    // GetObjectAcl by version.
    let acl = ok(s3.get_object_acl().bucket("cpv").key("src").version_id(&v1).send().await, "acl of a version");
    assert_eq!(acl.grants().len(), 1);
    assert_s3_error(s3.get_object_acl().bucket("cpv").key("src").version_id(marker).send().await, 405, "MethodNotAllowed");
}

/// Writers and deleters race on one key; afterwards every version written
/// is readable by its id, the listing holds exactly what was written (each
/// key's versions newest first), and removing the latest entries one by
/// one always exposes the next one.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_overwrite_delete_and_restore_of_one_key() {
    let (server, s3) = with_bucket("race").await;
    set_versioning(&s3, "race", BucketVersioningStatus::Enabled).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..12 {
        let s3 = s3.clone();
        tasks.spawn(async move {
            let mut wrote = Vec::new();
            for i in 0..8 {
                if (t + i) % 4 == 3 {
                    let d = ok(s3.delete_object().bucket("race").key("hot").send().await, "delete");
                    wrote.push((d.version_id().unwrap().to_string(), None));
                } else {
                    let body = format!("task {t} write {i}").into_bytes();
                    let v = put(&s3, "race", "hot", &body).await.unwrap();
                    wrote.push((v, Some(body)));
                }
            }
            wrote
        });
    }
    let mut written: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        for (v, body) in r.expect("task") {
            assert!(written.insert(v, body).is_none(), "version ids are unique");
        }
    }
    let listed = list_all_versions(&s3, "race", 7).await;
    let ids: Vec<String> = listed.iter().map(|e| e.1.clone()).collect();
    let mut want: Vec<String> = written.keys().cloned().collect();
    want.reverse();
    assert_eq!(ids, want, "the listing holds every version, newest first");
    for e in &listed {
        assert_eq!(e.3, written[&e.1].is_none(), "markers are markers");
    }
    for (v, body) in &written {
        if let Some(body) = body {
            assert_eq!(&get_version(&s3, "race", "hot", v).await, body);
        }
    }
    // Restore: remove the latest entry repeatedly; the next one shows through.
    for (i, e) in listed.iter().enumerate() {
        let r = server.send(&server.sign(server.raw_request("GET", "/race/hot")));
        match &written[&e.1] {
            Some(body) => assert_eq!((r.status, &r.body), (200, body)),
            None => assert_eq!((r.status, r.header("x-amz-version-id")), (404, Some(e.1.as_str()))),
        }
        ok(s3.delete_object().bucket("race").key("hot").version_id(&e.1).send().await, "remove latest");
        let left = list_all_versions(&s3, "race", 1000).await;
        assert_eq!(left.len(), listed.len() - i - 1);
        if let Some(first) = left.first() {
            assert!(first.2, "the newest remaining entry is the latest");
        }
    }
    ok(s3.delete_bucket().bucket("race").send().await, "empty bucket");
}

/// Conditional writes see delete markers as "no object".
#[tokio::test(flavor = "multi_thread")]
async fn conditional_writes_in_a_versioned_bucket() {
    let (_server, s3) = with_bucket("condv").await;
    set_versioning(&s3, "condv", BucketVersioningStatus::Enabled).await;
    assert_s3_error(s3.put_object().bucket("condv").key("k").if_match("*").body(bytestream(b"x")).send().await, 404, "NoSuchKey");
    let first = ok(s3.put_object().bucket("condv").key("k").if_none_match("*").body(bytestream(b"1")).send().await, "create");
    assert_s3_error(s3.put_object().bucket("condv").key("k").if_none_match("*").body(bytestream(b"2")).send().await, 412, "PreconditionFailed");
    ok(s3.put_object().bucket("condv").key("k").if_match(first.e_tag().unwrap()).body(bytestream(b"2")).send().await, "if-match");
    ok(s3.delete_object().bucket("condv").key("k").send().await, "marker");
    assert_s3_error(s3.put_object().bucket("condv").key("k").if_match("*").body(bytestream(b"3")).send().await, 404, "NoSuchKey");
    ok(s3.put_object().bucket("condv").key("k").if_none_match("*").body(bytestream(b"3")).send().await, "create over a marker");
    assert_eq!(list_all_versions(&s3, "condv", 1000).await.len(), 4, "two versions, a marker, the new version");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_attributes_of_versions_and_markers() {
    use aws_sdk_s3::types::ObjectAttributes;
    let (server, s3) = with_bucket("attrv").await;
    set_versioning(&s3, "attrv", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "attrv", "k", b"foo").await.unwrap();
    put(&s3, "attrv", "k", b"longer").await.unwrap();
    let a = ok(
        s3.get_object_attributes()
            .bucket("attrv")
            .key("k")
            .version_id(&v1)
            .object_attributes(ObjectAttributes::ObjectSize)
            .object_attributes(ObjectAttributes::Etag)
            .send()
            .await,
        "attributes of v1",
    );
    assert_eq!((a.version_id(), a.object_size(), a.e_tag()), (Some(v1.as_str()), Some(3), Some(md5_hex(b"foo").as_str())));
    assert_eq!(a.delete_marker(), None);
    let d = ok(s3.delete_object().bucket("attrv").key("k").send().await, "marker");
    let r = server.send(&server.sign(server.raw_request("GET", "/attrv/k?attributes").header("x-amz-object-attributes", "ETag")));
    assert_eq!((r.status, r.header("x-amz-delete-marker")), (404, Some("true")));
    let r = server.send(&server.sign(
        server
            .raw_request("GET", &format!("/attrv/k?attributes&versionId={}", d.version_id().unwrap()))
            .header("x-amz-object-attributes", "ETag"),
    ));
    assert_eq!((r.status, r.header("x-amz-delete-marker")), (405, Some("true")));
    let r = server.send(&server.sign(server.raw_request("GET", &format!("/attrv/k?attributes&versionId={v1}"))));
    assert_eq!(r.status, 400, "x-amz-object-attributes is required");
    let r = server.send(&server.sign(
        server.raw_request("GET", &format!("/attrv/k?attributes&versionId={v1}")).header("x-amz-object-attributes", "Color"),
    ));
    assert_eq!(r.status, 400, "unknown attribute");
}
