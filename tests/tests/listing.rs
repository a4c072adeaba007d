//! ListObjectsV2 and ListObjects (V1): prefix, delimiter, paging, owners,
//! URL encoding.

use std::collections::BTreeSet;

use aws_sdk_s3::types::EncodingType;
use tessera_tests::raw::{xml_field, xml_fields};
use tessera_tests::*;

async fn bucket_with(keys: &[&str], bucket: &str) -> (Server, aws_sdk_s3::Client) {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket(bucket).send().await, "create");
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    put_keys(&s3, bucket, &keys, 8).await;
    (server, s3)
}

fn keys_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<&str> {
    out.contents().iter().map(|o| o.key().unwrap_or("")).collect()
}

fn prefixes_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<&str> {
    out.common_prefixes().iter().map(|p| p.prefix().unwrap_or("")).collect()
}

const TREE: &[&str] = &["a/1", "a/2", "a/b/3", "a/b/c/4", "b/1", "c", "d/e/f", "dz", "e-"];

#[tokio::test(flavor = "multi_thread")]
async fn list_v2_prefix_and_delimiter() {
    let (_server, s3) = bucket_with(TREE, "tree").await;
    let list = || s3.list_objects_v2().bucket("tree");

    let all = ok(list().send().await, "list all");
    assert_eq!(keys_of(&all), TREE.to_vec());
    assert_eq!(all.key_count(), Some(TREE.len() as i32));
    assert_eq!(all.is_truncated(), Some(false));
    for o in all.contents() {
        assert_eq!(o.size(), Some(o.key().unwrap().len() as i64), "size of {:?}", o.key());
        assert_eq!(
            o.e_tag(),
            Some(etag(o.key().unwrap().as_bytes()).as_str()),
            "etag of {:?}",
            o.key()
        );
        assert!(o.last_modified().is_some());
    }

    let top = ok(list().delimiter("/").send().await, "delimiter /");
    assert_eq!(keys_of(&top), vec!["c", "dz", "e-"]);
    assert_eq!(prefixes_of(&top), vec!["a/", "b/", "d/"]);
    assert_eq!(top.key_count(), Some(6), "KeyCount counts keys and common prefixes");
    assert_eq!(top.delimiter(), Some("/"));

    let a = ok(list().prefix("a/").delimiter("/").send().await, "prefix a/ delimiter /");
    assert_eq!(keys_of(&a), vec!["a/1", "a/2"]);
    assert_eq!(prefixes_of(&a), vec!["a/b/"]);
    assert_eq!(a.prefix(), Some("a/"));

    let a_all = ok(list().prefix("a/").send().await, "prefix a/");
    assert_eq!(keys_of(&a_all), vec!["a/1", "a/2", "a/b/3", "a/b/c/4"]);
    assert!(a_all.common_prefixes().is_empty());

    let d = ok(list().prefix("d").delimiter("/").send().await, "prefix d delimiter /");
    assert_eq!(keys_of(&d), vec!["dz"]);
    assert_eq!(prefixes_of(&d), vec!["d/"]);

    // A delimiter other than '/'.
    let dash = ok(list().delimiter("-").send().await, "delimiter -");
    assert_eq!(prefixes_of(&dash), vec!["e-"]);
    assert_eq!(keys_of(&dash), TREE[..8].to_vec());

    let none = ok(list().prefix("zzz").send().await, "no match");
    assert!(none.contents().is_empty() && none.common_prefixes().is_empty());
    assert_eq!(none.key_count(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_v2_max_keys_and_start_after() {
    let (_server, s3) = bucket_with(TREE, "paged").await;
    let first = ok(
        s3.list_objects_v2().bucket("paged").max_keys(2).send().await,
        "max-keys 2",
    );
    assert_eq!(keys_of(&first), vec!["a/1", "a/2"]);
    assert_eq!(first.is_truncated(), Some(true));
    assert_eq!(first.max_keys(), Some(2));
    let token = first
        .next_continuation_token()
        .expect("NextContinuationToken when truncated");
    let second = ok(
        s3.list_objects_v2()
            .bucket("paged")
            .max_keys(3)
            .continuation_token(token)
            .send()
            .await,
        "second page",
    );
    assert_eq!(keys_of(&second), vec!["a/b/3", "a/b/c/4", "b/1"]);
    assert_eq!(second.continuation_token(), Some(token));

    // Common prefixes count against max-keys and page correctly.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let page = ok(
            s3.list_objects_v2()
                .bucket("paged")
                .delimiter("/")
                .max_keys(1)
                .set_continuation_token(token.clone())
                .send()
                .await,
            "delimited page",
        );
        assert!(page.contents().len() + page.common_prefixes().len() <= 1);
        seen.extend(keys_of(&page).into_iter().map(str::to_string));
        seen.extend(prefixes_of(&page).into_iter().map(str::to_string));
        if page.is_truncated() != Some(true) {
            token = None;
            break;
        }
        token = Some(page.next_continuation_token().expect("token").to_string());
    }
    assert!(token.is_none(), "paging did not finish");
    assert_eq!(seen, vec!["a/", "b/", "c", "d/", "dz", "e-"]);

    let after = ok(
        s3.list_objects_v2().bucket("paged").start_after("b/1").send().await,
        "start-after",
    );
    assert_eq!(keys_of(&after), vec!["c", "d/e/f", "dz", "e-"]);
    assert_eq!(after.start_after(), Some("b/1"));
    let after = ok(
        s3.list_objects_v2().bucket("paged").start_after("a/b").send().await,
        "start-after non-key",
    );
    assert_eq!(keys_of(&after)[0], "a/b/3");
    let zero = ok(
        s3.list_objects_v2().bucket("paged").max_keys(0).send().await,
        "max-keys 0",
    );
    assert!(zero.contents().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_v2_pages_through_2500_keys() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("many").send().await, "create");
    let keys: Vec<String> = (0..2500).map(|i| format!("dir{}/key-{i:05}", i % 3)).collect();
    put_keys(&s3, "many", &keys, 32).await;
    let want: Vec<String> = keys.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();

    let mut got = Vec::new();
    let mut page_sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ok(
            s3.list_objects_v2()
                .bucket("many")
                .set_continuation_token(token.clone())
                .send()
                .await,
            "page",
        );
        page_sizes.push(page.contents().len());
        got.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            assert!(page.next_continuation_token().is_none());
            break;
        }
        token = Some(page.next_continuation_token().expect("token").to_string());
        assert!(page_sizes.len() < 10, "too many pages");
    }
    assert_eq!(page_sizes, vec![1000, 1000, 500], "default max-keys is 1000");
    assert_eq!(got, want);

    // A max-keys above 1000 is capped at 1000.
    let big = ok(
        s3.list_objects_v2().bucket("many").max_keys(5000).send().await,
        "max-keys 5000",
    );
    assert_eq!(big.contents().len(), 1000);
    assert_eq!(big.is_truncated(), Some(true));

    // Delimiter over many keys: three prefixes, one page.
    let top = ok(
        s3.list_objects_v2().bucket("many").delimiter("/").send().await,
        "delimiter",
    );
    assert_eq!(prefixes_of(&top), vec!["dir0/", "dir1/", "dir2/"]);
    assert_eq!(top.is_truncated(), Some(false));

    // The SDK paginator sees the same.
    let mut pages = s3
        .list_objects_v2()
        .bucket("many")
        .max_keys(700)
        .into_paginator()
        .send();
    let mut n = 0;
    while let Some(page) = pages.next().await {
        n += page.expect("paginator page").contents().len();
    }
    assert_eq!(n, 2500);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_v2_fetch_owner() {
    let (_server, s3) = bucket_with(&["x", "y"], "owners").await;
    let plain = ok(s3.list_objects_v2().bucket("owners").send().await, "list");
    assert!(
        plain.contents().iter().all(|o| o.owner().is_none()),
        "V2 omits Owner unless fetch-owner"
    );
    let with = ok(
        s3.list_objects_v2().bucket("owners").fetch_owner(true).send().await,
        "fetch-owner",
    );
    let buckets_owner = ok(s3.list_buckets().send().await, "list buckets")
        .owner()
        .and_then(|o| o.id().map(str::to_string));
    assert_eq!(with.contents().len(), 2);
    for o in with.contents() {
        let owner = o.owner().expect("Owner with fetch-owner=true");
        assert!(owner.id().is_some_and(|id| !id.is_empty()), "{owner:?}");
        assert_eq!(
            owner.id().map(str::to_string),
            buckets_owner,
            "object owner is the bucket's creator"
        );
    }
}

const ENC_KEYS: &[&str] = &[
    "sp ace/é+x",
    "sp ace/sub/y",
    "a&b<c>",
    "plain",
    "tab\tkey",
    "ctrl\u{1}key",
];

#[tokio::test(flavor = "multi_thread")]
async fn list_v2_encoding_type_url() {
    let (server, s3) = bucket_with(ENC_KEYS, "enc").await;

    let resp = server.send(&server.sign(server.raw_request("GET", "/enc?list-type=2&encoding-type=url")));
    assert_eq!(resp.status, 200, "{resp:?}");
    let xml = resp.body_text();
    assert_eq!(xml_field(&xml, "EncodingType").as_deref(), Some("url"), "{xml}");
    let raw_keys = xml_fields(&xml, "Key");
    for k in &raw_keys {
        assert!(
            k.bytes().all(|b| b.is_ascii_graphic()) && !k.contains('&') && !k.contains('<'),
            "key not URL-encoded in the listing: {k:?}"
        );
    }
    let decoded: BTreeSet<String> = raw_keys.iter().map(|k| decode_url(k)).collect();
    let want: BTreeSet<String> = ENC_KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(decoded, want, "{xml}");

    // Prefix, delimiter, start-after and common prefixes are encoded too.
    let q = "/enc?list-type=2&encoding-type=url&prefix=sp%20ace%2F&delimiter=%2F&start-after=sp%20ace%2Fa";
    let resp = server.send(&server.sign(server.raw_request("GET", q)));
    assert_eq!(resp.status, 200, "{resp:?}");
    let xml = resp.body_text();
    let prefix = xml_field(&xml, "Prefix").expect("Prefix");
    assert!(!prefix.contains(' '), "Prefix not encoded: {xml}");
    assert_eq!(decode_url(&prefix), "sp ace/");
    let start_after = xml_field(&xml, "StartAfter").expect("StartAfter");
    assert!(!start_after.contains(' '), "StartAfter not encoded: {xml}");
    assert_eq!(decode_url(&start_after), "sp ace/a");
    assert_eq!(decode_url(&xml_field(&xml, "Delimiter").expect("Delimiter")), "/");
    let keys: Vec<String> = xml_fields(&xml, "Key").iter().map(|k| decode_url(k)).collect();
    assert_eq!(keys, vec!["sp ace/é+x"], "{xml}");
    let common = xml_field(&xml, "CommonPrefixes").expect("CommonPrefixes");
    let cp = xml_field(&common, "Prefix").expect("CommonPrefixes/Prefix");
    assert!(!cp.contains(' '), "common prefix not encoded: {xml}");
    assert_eq!(decode_url(&cp), "sp ace/sub/");

    // Without encoding-type the keys come back as text (XML-escaped).
    let plain = ok(
        s3.list_objects_v2().bucket("enc").prefix("a&").send().await,
        "plain list",
    );
    assert_eq!(plain.contents()[0].key(), Some("a&b<c>"));
    let sdk = ok(
        s3.list_objects_v2()
            .bucket("enc")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "sdk url list",
    );
    assert_eq!(sdk.contents().len(), ENC_KEYS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_v1_marker_next_marker_and_delimiter() {
    let mut keys: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    keys.extend(["dir/x".to_string(), "dir/y".to_string(), "other/z".to_string()]);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (_server, s3) = bucket_with(&refs, "list-v1").await;

    let all = ok(s3.list_objects().bucket("list-v1").send().await, "v1 list");
    let got: Vec<&str> = all.contents().iter().map(|o| o.key().unwrap()).collect();
    let mut sorted = refs.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    assert_eq!(all.is_truncated(), Some(false));

    let from = ok(
        s3.list_objects()
            .bucket("list-v1")
            .marker("k10")
            .max_keys(3)
            .send()
            .await,
        "marker",
    );
    let got: Vec<&str> = from.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(got, vec!["k11", "k12", "k13"]);
    assert_eq!(from.marker(), Some("k10"));
    assert_eq!(from.is_truncated(), Some(true));

    // With a delimiter, NextMarker drives the paging.
    let mut seen_keys = Vec::new();
    let mut seen_prefixes = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..20 {
        let page = ok(
            s3.list_objects()
                .bucket("list-v1")
                .delimiter("/")
                .max_keys(10)
                .set_marker(marker.clone())
                .send()
                .await,
            "v1 page",
        );
        seen_keys.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        seen_prefixes.extend(page.common_prefixes().iter().map(|p| p.prefix().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            marker = None;
            break;
        }
        marker = Some(
            page.next_marker()
                .expect("NextMarker with a delimiter when truncated")
                .to_string(),
        );
    }
    assert!(marker.is_none(), "V1 paging did not finish");
    assert_eq!(seen_prefixes, vec!["dir/", "other/"]);
    let want: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    assert_eq!(seen_keys, want);

    let pre = ok(
        s3.list_objects().bucket("list-v1").prefix("dir/").send().await,
        "v1 prefix",
    );
    let got: Vec<&str> = pre.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(got, vec!["dir/x", "dir/y"]);
}
