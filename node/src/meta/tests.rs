//! Round trips and format boundaries of the records.

use super::*;

/// The v1 encoders exactly as they were, to prove old records stay readable.
mod v1 {
    use crate::codec::Enc;

    pub fn summary(size: u64, mtime_ms: i64, md5: [u8; 16], parts: u16) -> Vec<u8> {
        let mut e = Enc::new(1);
        e.u64(size).i64(mtime_ms);
        e.buf.extend_from_slice(&md5);
        e.u16(parts);
        e.finish()
    }

    pub fn meta(ct: &str, user: &[(&str, &str)], part_sizes: Option<&[u64]>) -> Vec<u8> {
        let mut e = Enc::new(1);
        e.opt_str(Some(ct)).opt_str(None).opt_str(None).opt_str(None).opt_str(None).opt_str(None);
        e.u8(1).str("x-amz-checksum-crc32").str("AAAAAA==");
        e.u32(user.len() as u32);
        for (k, v) in user {
            e.str(k).str(v);
        }
        if let Some(p) = part_sizes {
            e.u32(p.len() as u32);
            for n in p {
                e.u64(*n);
            }
        }
        e.finish()
    }

    pub fn part(size: u64, mtime_ms: i64, md5: [u8; 16]) -> Vec<u8> {
        let mut e = Enc::new(1);
        e.u64(size).i64(mtime_ms);
        e.buf.extend_from_slice(&md5);
        e.finish()
    }

    pub fn upload(initiated: i64, owner: &str, meta: &[u8]) -> Vec<u8> {
        let mut e = Enc::new(1);
        e.i64(initiated).str(owner).bytes(meta);
        e.finish()
    }
}

fn vid(micros: u64, r: u8) -> VersionId {
    VersionId::from_parts(micros, [r; 8])
}

#[test]
fn round_trips() {
    let mut s = ObjectSummary::new(5, 1_700_000_000_123, [7; 16], 3, vid(42, 9), false);
    assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
    assert!(s.etag().ends_with("-3\""));
    s.delete_marker = true;
    s.legal_hold = true;
    s.null_version = true;
    s.retention = Some(Retention { mode: LockMode::Compliance, until_ms: 99 });
    assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
    let m = ObjectMeta {
        content_type: Some("text/plain".into()),
        checksum: Some(("x-amz-checksum-crc32".into(), "AAAAAA==-2".into())),
        user: vec![("a".into(), "b".into())],
        part_sizes: vec![5, 6],
        checksum_type: Some(ChecksumType::Composite),
        part_checksums: vec!["AAAAAA==".into(), "AAAAAB==".into()],
        tags: vec![("k".into(), "v".into()), ("k2".into(), String::new())],
        ..Default::default()
    };
    assert_eq!(ObjectMeta::decode(&m.encode()), Some(m.clone()));
    // A v2 record is a v3 one without the ACL byte.
    let mut v2 = m.encode();
    v2[0] = META_V2;
    v2.pop();
    assert_eq!(ObjectMeta::decode(&v2), Some(m.clone()));
    let mut with_acl = m.clone();
    with_acl.acl = Some(tessera_policy::CannedAcl::BucketOwnerRead.expand(("w", "W"), ("b", "B")));
    assert_eq!(ObjectMeta::decode(&with_acl.encode()), Some(with_acl.clone()));
    assert_eq!(with_acl.owner_id("b"), "w");
    assert_eq!(m.owner_id("b"), "b");
    let enc = with_acl.encode();
    assert!(ObjectMeta::decode(&enc[..enc.len() - 1]).is_none());
    let mut u = UploadInfo::new(1, "o".into(), m);
    assert_eq!(UploadInfo::decode(&u.encode()), Some(u.clone()));
    u.checksum_algo = Some(ChecksumAlgo::Crc32c);
    u.checksum_type = Some(ChecksumType::FullObject);
    u.retention = Some(Retention { mode: LockMode::Governance, until_ms: 5 });
    u.legal_hold = true;
    assert_eq!(UploadInfo::decode(&u.encode()), Some(u));
    let p = PartSummary { size: 1, mtime_ms: 2, md5: [3; 16], checksum: Some((ChecksumAlgo::Sha1, vec![1; 20])), salt: None };
    assert_eq!(PartSummary::decode(&p.encode()), Some(p));
    let p = PartSummary { size: 1, mtime_ms: 2, md5: [3; 16], checksum: None, salt: None };
    assert_eq!(PartSummary::decode(&p.encode()), Some(p));
    assert!(ObjectMeta::decode(b"\x01\x05").is_none());
}

#[test]
fn encrypted_records_are_v4_and_plain_ones_stay_v3() {
    let plain = ObjectMeta { content_type: Some("t".into()), ..Default::default() };
    let enc = plain.encode();
    assert_eq!(enc[0], META_V3, "an unencrypted object keeps the v3 encoding older builds read");
    assert_eq!(ObjectMeta::decode(&enc), Some(plain.clone()));
    let sealed = ObjectMeta {
        sse: Some(crate::sse::SseInfo {
            mode: crate::sse::SseMode::S3 { key_id: "tessera/sse-s3".into() },
            sealed_key: vec![1; 61],
            segments: vec![(1, [2; 16])],
        }),
        ..plain
    };
    let enc = sealed.encode();
    assert_eq!(enc[0], META_V4);
    assert_eq!(ObjectMeta::decode(&enc), Some(sealed));
    // A v4 record cut short is refused, never read as unencrypted.
    for cut in 1..enc.len() {
        assert!(ObjectMeta::decode(&enc[..cut]).map_or(true, |m| m.sse.is_some()), "cut {cut}");
    }
    let mut tiered = sealed_clone_for_tier();
    assert_eq!(ObjectMeta::decode(&tiered.encode()), Some(tiered.clone()));
    tiered.sse = None;
    let enc = tiered.encode();
    assert_eq!(enc[0], META_V5);
    assert_eq!(ObjectMeta::decode(&enc), Some(tiered));
    for cut in 1..enc.len() {
        assert!(ObjectMeta::decode(&enc[..cut]).is_none_or(|m| m.tier.is_some()), "cut {cut}");
    }
    let mut s = ObjectSummary::new(5, 1, [7; 16], 0, vid(1, 2), false);
    assert_eq!(s.encode()[0], SUMMARY_V2);
    s.tier_class = Some("COLD".into());
    assert_eq!(s.encode()[0], SUMMARY_V4);
    assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
    let mut v3 = s.encode();
    v3[0] = SUMMARY_V3;
    assert!(ObjectSummary::decode(&v3).is_none(), "the tiered flag is unknown to v3");
    let p = PartSummary { size: 1, mtime_ms: 2, md5: [3; 16], checksum: None, salt: Some([4; 16]) };
    assert_eq!(p.encode()[0], PART_V3);
    assert_eq!(PartSummary::decode(&p.encode()), Some(p));
}

#[test]
fn v1_records_stay_readable() {
    let s = ObjectSummary::decode(&v1::summary(5, 1_700_000_000_123, [7; 16], 3)).expect("v1 summary");
    assert_eq!((s.size, s.mtime_ms, s.md5, s.parts), (5, 1_700_000_000_123, [7; 16], 3));
    assert!(s.null_version && !s.delete_marker && !s.legal_hold && s.retention.is_none());
    assert_eq!(s.version_id(), "null");
    assert_eq!(s.version.micros(), 1_700_000_000_123_000);
    // A v1 summary of known bytes (as written by the old encoder).
    let fixture = hex::decode("0105000000000000007b68e5cf8b010000070707070707070707070707070707070300").unwrap();
    assert_eq!(ObjectSummary::decode(&fixture), Some(s));

    let m = ObjectMeta::decode(&v1::meta("text/plain", &[("a", "b")], Some(&[5, 6]))).expect("v1 meta");
    assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.user, vec![("a".to_string(), "b".to_string())]);
    assert_eq!(m.part_sizes, vec![5, 6]);
    assert_eq!(m.checksum_type, None);
    assert_eq!(m.effective_checksum_type(), ChecksumType::Composite);
    assert!(m.tags.is_empty() && m.part_checksums.is_empty());
    let m = ObjectMeta::decode(&v1::meta("t", &[], None)).expect("v1 meta without part sizes");
    assert!(m.part_sizes.is_empty());
    assert_eq!(m.effective_checksum_type(), ChecksumType::FullObject);

    let p = PartSummary::decode(&v1::part(9, 8, [1; 16])).expect("v1 part");
    assert_eq!(p, PartSummary { size: 9, mtime_ms: 8, md5: [1; 16], checksum: None, salt: None });
    let u = UploadInfo::decode(&v1::upload(3, "own", &v1::meta("t", &[], None))).expect("v1 upload");
    assert_eq!((u.initiated_ms, u.owner_id.as_str(), u.checksum_algo), (3, "own", None));
}

#[test]
fn newer_or_damaged_records_are_refused() {
    let s = ObjectSummary::new(5, 1, [7; 16], 0, vid(1, 1), false).encode();
    let mut future = s.clone();
    future[0] = 5;
    assert!(ObjectSummary::decode(&future).is_none());
    // v3 (a replication status) round-trips; a v2 record with its bits is refused.
    let mut r = ObjectSummary::new(5, 1, [7; 16], 0, vid(1, 1), false);
    r.repl = ReplStatus::Replica;
    let v3 = r.encode();
    assert_eq!((v3[0], ObjectSummary::decode(&v3)), (3, Some(r)));
    let mut v2_with_status = v3.clone();
    v2_with_status[0] = 2;
    assert!(ObjectSummary::decode(&v2_with_status).is_none());
    let mut trailing = s.clone();
    trailing.push(0);
    assert!(ObjectSummary::decode(&trailing).is_none());
    for cut in 0..s.len() {
        assert!(ObjectSummary::decode(&s[..cut]).is_none(), "cut {cut}");
    }
    // Unknown flag bits or lock mode: refused, not read as "unlocked".
    let flags_at = 1 + 8 + 8 + 16 + 2 + 16;
    let mut bad = s.clone();
    bad[flags_at] = 0x80;
    assert!(ObjectSummary::decode(&bad).is_none());
    let mut bad = s.clone();
    bad[flags_at + 1] = 7;
    assert!(ObjectSummary::decode(&bad).is_none());
}

#[test]
fn lock_checks() {
    let mut s = ObjectSummary::new(1, 1, [0; 16], 0, vid(1, 1), false);
    assert!(s.check_removable(100, false).is_ok());
    s.retention = Some(Retention { mode: LockMode::Governance, until_ms: 200 });
    assert!(s.check_removable(100, false).is_err());
    assert!(s.check_removable(100, true).is_ok());
    assert!(s.check_removable(200, false).is_ok());
    s.retention = Some(Retention { mode: LockMode::Compliance, until_ms: 200 });
    assert!(s.check_removable(100, true).is_err());
    assert!(s.check_removable(201, false).is_ok());
    s.legal_hold = true;
    assert!(s.check_removable(201, true).is_err());
}

#[test]
fn keys_sort_within_bucket() {
    assert!(object_key(1, "a") < object_key(1, "a/"));
    assert!(object_key(1, "zzz") < object_key(2, ""));
    assert!(object_key(1, "k").starts_with(&bucket_prefix(1)));
    assert!(!object_key(2, "k").starts_with(&bucket_prefix(1)));
    assert!(part_key(1, "k", "u", 2) < part_key(1, "k", "u", 10));
    assert!(part_key(1, "k", "u", 1).starts_with(&part_prefix(1, "k", "u")));
}

fn vkey_bytes(bucket: u64, key: &[u8], v: &VersionId) -> Vec<u8> {
    let mut k = bucket.to_be_bytes().to_vec();
    push_escaped(&mut k, key);
    k.extend_from_slice(&KEY_TERMINATOR);
    k.extend(v.0.iter().map(|b| !b));
    k
}

#[test]
fn escaping_round_trips_every_byte() {
    let keys: Vec<Vec<u8>> = vec![
        vec![],
        b"a".to_vec(),
        vec![0],
        vec![0, 0],
        vec![0xFF],
        vec![0, 0xFF],
        vec![0xFF, 0],
        vec![b'a', 0, 0, b'b', 0xFF, 0xFF, 0],
        (0..=255u8).collect(),
    ];
    for k in &keys {
        let mut e = Vec::new();
        push_escaped(&mut e, k);
        assert!(!e.windows(2).any(|w| w == KEY_TERMINATOR), "{k:?}");
        e.extend_from_slice(&KEY_TERMINATOR);
        e.extend_from_slice(b"tail");
        let (back, rest) = split_escaped(&e).expect("well-formed");
        assert_eq!(&back, k);
        assert_eq!(rest, b"tail");
        let v = vid(123, 4);
        assert_eq!(parse_version_key(&vkey_bytes(7, k, &v)), Some((7, k.clone(), v)));
    }
    assert!(split_escaped(&[b'a', 0]).is_none());
    assert!(split_escaped(&[b'a', 0, 1]).is_none());
    assert!(split_escaped(b"abc").is_none());
    assert!(parse_version_key(&[0; 7]).is_none());
}

#[test]
fn version_keys_sort_by_key_then_newest_first() {
    // Keys in byte order, including NUL and 0xFF bytes and prefixes.
    let mut keys: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        vec![0],
        vec![0, 0],
        vec![0, 1],
        vec![0, 0xFF],
        b"a".to_vec(),
        vec![b'a', 0],
        vec![b'a', 0, 0],
        vec![b'a', 0, b'b'],
        vec![b'a', 1],
        b"ab".to_vec(),
        vec![b'a', 0xFF],
        vec![0xFF],
        vec![0xFF, 0],
        vec![0xFF, 0xFF],
    ];
    keys.sort();
    let versions = [vid(30, 0), vid(20, 9), vid(20, 1), vid(10, 0xFF)];
    let mut all = Vec::new();
    for k in &keys {
        for v in &versions {
            all.push(vkey_bytes(1, k, v));
        }
    }
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, all, "composite keys sort by key, then newest version first");
    // A key's versions share its prefix; no other key's do.
    for k in &keys {
        let mut p = 1u64.to_be_bytes().to_vec();
        push_escaped(&mut p, k);
        p.extend_from_slice(&KEY_TERMINATOR);
        let mine = all.iter().filter(|e| e.starts_with(&p)).count();
        assert_eq!(mine, versions.len(), "{k:?}");
    }
    // Escaped prefixes select exactly the keys with that prefix.
    for p in &keys {
        let mut ep = 1u64.to_be_bytes().to_vec();
        push_escaped(&mut ep, p);
        for k in &keys {
            assert_eq!(vkey_bytes(1, k, &versions[0]).starts_with(&ep), k.starts_with(p), "{p:?} {k:?}");
        }
    }
    let (b, k) = (9u64, "some/key");
    assert!(version_key(b, k, &vid(5, 0)) > versions_prefix(b, k));
    assert!(version_key(b, k, &vid(5, 0)) < past_versions_of(b, k));
    assert!(past_versions_of(b, k) < versions_prefix(b, "some/key0"));
    assert!(version_key(b, k, &vid(5, 0)).starts_with(&versions_scan_prefix(b, "some/")));
}

#[test]
fn version_ids_render_in_order_and_parse_back() {
    let ids = [
        vid(0, 0),
        VersionId::from_parts(0, [0, 0, 0, 0, 0, 0, 0, 1]),
        vid(1, 0),
        vid(1_700_000_000_000_000, 3),
        vid(1_700_000_000_000_001, 0),
        VersionId([0xFF; 16]),
    ];
    for w in ids.windows(2) {
        assert!(w[0] < w[1]);
        assert!(w[0].render() < w[1].render(), "{} {}", w[0].render(), w[1].render());
    }
    for id in ids {
        let r = id.render();
        assert_eq!(r.len(), VersionId::CHARS);
        assert!(r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{r}");
        assert_eq!(VersionId::parse(&r), Some(id));
    }
    let good = vid(77, 7).render();
    assert!(VersionId::parse(&good[1..]).is_none());
    assert!(VersionId::parse(&format!("{good}x")).is_none());
    assert!(VersionId::parse(&good.replace(&good[..1], "+")).is_none());
    let mut last_digit_not_canonical = good.clone();
    last_digit_not_canonical.pop();
    last_digit_not_canonical.push('1');
    assert!(VersionId::parse(&last_digit_not_canonical).is_none());
    assert_eq!(VersionSel::parse("null"), Ok(VersionSel::Null));
    assert!(VersionSel::parse("nope").is_err());
}

#[test]
fn version_ids_increase_per_key() {
    let prev = vid(1000, 0xFF);
    assert!(VersionId::next(999, Some(&prev), [0; 8]) > prev);
    assert!(VersionId::next(1000, Some(&prev), [0; 8]) > prev);
    assert_eq!(VersionId::next(5000, Some(&prev), [0; 8]).micros(), 5000);
    assert_eq!(VersionId::next(5, None, [0; 8]).micros(), 5);
}

fn sealed_clone_for_tier() -> ObjectMeta {
    ObjectMeta {
        content_type: Some("t".into()),
        tags: vec![("k".into(), "v".into())],
        sse: Some(crate::sse::SseInfo {
            mode: crate::sse::SseMode::S3 { key_id: "tessera/sse-s3".into() },
            sealed_key: vec![1; 61],
            segments: vec![(1, [2; 16])],
        }),
        tier: Some(crate::tier::TierInfo {
            class: "COLD".into(),
            remote_bucket: "tier".into(),
            remote_key: "b/k/v".into(),
            restored_until_ms: Some(9),
        }),
        ..Default::default()
    }
}
