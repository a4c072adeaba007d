//! Table tests of the edges: every error, every refusal reason, the block
//! format as a contract.

use tessera_erasure::{
    payload_len_for, verify_block, BlockError, Codec, Error, Params, BLOCK_FORMAT_VERSION,
    BLOCK_HEADER_BYTES, DEFAULT_STRIPE_BYTES, MAX_STRIPE_BYTES, MAX_TOTAL_BLOCKS,
    PAYLOAD_ALIGN_BYTES,
};

fn encode(params: Params, tag: u128, stripe: u64, data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    Codec::new(params)
        .encode_stripe(tag, stripe, data, &mut out)
        .unwrap();
    out
}

fn decode(
    params: Params,
    tag: u128,
    stripe: u64,
    blocks: &[Option<&[u8]>],
) -> Result<(Vec<u8>, u64, usize), Error> {
    let mut out = vec![0xAA; 7]; // decode clears what was there
    let d = Codec::new(params).decode_stripe(tag, stripe, blocks, &mut out)?;
    Ok((out, d.lacking, d.refused))
}

/// Re-seals a block after editing its header, as a broken writer would.
fn reseal(block: &mut [u8]) {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::new();
    h.write(&block[..40]);
    h.write(&block[BLOCK_HEADER_BYTES..]);
    let sum = h.finish();
    block[40..48].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn params_errors() {
    for (k, m, stripe) in [
        (0, 2, 1024),
        (31, 2, 1024),
        (4, 2, 0),
        (4, 2, MAX_STRIPE_BYTES + 1),
    ] {
        assert!(
            matches!(Params::new(k, m, stripe), Err(Error::BadParams { .. })),
            "{k} {m} {stripe}"
        );
    }
    assert!(Params::new(MAX_TOTAL_BLOCKS, 0, MAX_STRIPE_BYTES).is_ok());
    let p = Params::new(4, 2, DEFAULT_STRIPE_BYTES).unwrap();
    assert_eq!(p.stripe_count(0), 1);
    assert_eq!(p.stripe_count(1), 1);
    assert_eq!(p.stripe_count(DEFAULT_STRIPE_BYTES as u64), 1);
    assert_eq!(p.stripe_count(DEFAULT_STRIPE_BYTES as u64 + 1), 2);
    assert_eq!(p.stripe_range(10, 0), Some(0..10));
    assert_eq!(p.stripe_range(10, 1), None);
    assert_eq!(
        p.block_bytes(DEFAULT_STRIPE_BYTES),
        BLOCK_HEADER_BYTES + DEFAULT_STRIPE_BYTES / 4
    );
}

#[test]
fn ranges_map_to_stripes_and_offsets() {
    let p = Params::new(4, 2, 1000).unwrap();
    for (len, range, want) in [
        (0u64, 0u64..10u64, 0u64..0u64),
        (2500, 0..2500, 0..3),
        (2500, 999..1001, 0..2),
        (2500, 1000..1001, 1..2),
        (2500, 2400..9999, 2..3),
        (2500, 2500..2600, 0..0),
        (2500, std::ops::Range { start: 10, end: 5 }, 0..0), // inverted
    ] {
        assert_eq!(p.stripes_for(len, range.clone()), want, "{len} {range:?}");
    }
    // 1000 bytes / 4 = 250 → 256 padded, plus the header.
    assert_eq!(p.block_offset(0), 0);
    assert_eq!(p.block_offset(3), 3 * (BLOCK_HEADER_BYTES as u64 + 256));
    assert_eq!(p.block_offset(u64::MAX), u64::MAX);
    // The stream of one disk's blocks, cut at those offsets, decodes.
    let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    let mut codec = Codec::new(p);
    let mut streams: Vec<Vec<u8>> = vec![Vec::new(); 6];
    let mut out = Vec::new();
    for s in 0..p.stripe_count(2500) {
        let r = p.stripe_range(2500, s).unwrap();
        codec
            .encode_stripe(3, s, &data[r.start as usize..r.end as usize], &mut out)
            .unwrap();
        for (disk, b) in out.iter().enumerate() {
            assert_eq!(streams[disk].len() as u64, p.block_offset(s));
            streams[disk].extend_from_slice(b);
        }
    }
    let s = 2u64;
    let blocks: Vec<Option<&[u8]>> = streams
        .iter()
        .map(|st| Some(&st[p.block_offset(s) as usize..]))
        .collect();
    let mut got = Vec::new();
    codec.decode_stripe(3, s, &blocks, &mut got).unwrap();
    assert_eq!(got, &data[2000..]);
}

#[test]
fn payload_sizes() {
    for (len, k, want) in [
        (0, 4, 0),
        (1, 4, 64),
        (256, 4, 64),
        (257, 4, 128),
        (1 << 20, 4, 1 << 18),
        (1000, 12, 128),
    ] {
        assert_eq!(payload_len_for(len, k), want, "{len} / {k}");
        assert_eq!(want % PAYLOAD_ALIGN_BYTES, 0);
    }
}

#[test]
fn stripe_too_large() {
    let p = Params::new(2, 1, 100).unwrap();
    let mut out = Vec::new();
    let r = Codec::new(p).encode_stripe(1, 0, &[0; 101], &mut out);
    assert_eq!(r, Err(Error::StripeTooLarge { len: 101, max: 100 }));
}

#[test]
fn too_many_candidates() {
    let p = Params::new(2, 1, 100).unwrap();
    let blocks = vec![None; 2 * MAX_TOTAL_BLOCKS + 1];
    assert!(matches!(
        decode(p, 1, 0, &blocks),
        Err(Error::TooManyCandidates { .. })
    ));
}

#[test]
fn empty_stripe_round_trips_with_all_losses_up_to_m() {
    let p = Params::new(3, 2, 1024).unwrap();
    let blocks = encode(p, 9, 0, b"");
    assert!(blocks.iter().all(|b| b.len() == BLOCK_HEADER_BYTES));
    let given = [
        None,
        Some(&blocks[1][..]),
        None,
        Some(&blocks[3][..]),
        Some(&blocks[4][..]),
    ];
    assert_eq!(decode(p, 9, 0, &given).unwrap(), (vec![], 0b00101, 0));
    let given = [None, None, None, Some(&blocks[3][..]), Some(&blocks[4][..])];
    assert!(matches!(
        decode(p, 9, 0, &given),
        Err(Error::TooFewBlocks {
            good: 2,
            needed: 3,
            ..
        })
    ));
}

#[test]
fn block_header_is_the_documented_layout() {
    let p = Params::new(4, 2, 4096).unwrap();
    let tag = 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128;
    let blocks = encode(p, tag, 7, &[5u8; 1000]);
    let b = &blocks[5];
    assert_eq!(&b[0..4], b"TSEB");
    assert_eq!(b[4], BLOCK_FORMAT_VERSION);
    assert_eq!((b[5], b[6], b[7]), (4, 2, 5));
    assert_eq!(&b[8..24], &tag.to_le_bytes());
    assert_eq!(&b[24..32], &7u64.to_le_bytes());
    assert_eq!(&b[32..36], &1000u32.to_le_bytes());
    assert_eq!(&b[36..40], &256u32.to_le_bytes());
    assert_eq!(b.len(), BLOCK_HEADER_BYTES + 256);
    let (h, payload) = verify_block(b).unwrap();
    assert_eq!(
        (h.tag, h.stripe_index, h.stripe_len, h.payload_len),
        (tag, 7, 1000, 256)
    );
    assert_eq!(payload.len(), 256);
    // Data blocks hold the stripe's bytes in order, zero padded.
    assert_eq!(&blocks[0][BLOCK_HEADER_BYTES..], &[5u8; 256][..]);
    assert_eq!(
        &blocks[3][BLOCK_HEADER_BYTES..BLOCK_HEADER_BYTES + 232],
        &[5u8; 232][..]
    );
    assert!(blocks[3][BLOCK_HEADER_BYTES + 232..]
        .iter()
        .all(|&x| x == 0));
}

#[test]
fn every_refusal_reason() {
    let p = Params::new(2, 1, 4096).unwrap();
    let good = encode(p, 1, 0, b"hello world")[0].clone();
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Vec<u8>, BlockError)> = vec![
        ("short", good[..10].to_vec(), BlockError::Truncated),
        (
            "cut payload",
            good[..good.len() - 1].to_vec(),
            BlockError::Truncated,
        ),
        (
            "extra byte",
            edit(&|b| b.push(0)),
            BlockError::TrailingBytes,
        ),
        ("magic", edit(&|b| b[0] = b'X'), BlockError::BadMagic),
        (
            "version",
            edit(&|b| b[4] = 2),
            BlockError::UnsupportedVersion(2),
        ),
        ("checksum", edit(&|b| b[47] ^= 1), BlockError::Checksum),
        (
            "payload bit",
            edit(&|b| b[50] ^= 0x10),
            BlockError::Checksum,
        ),
        ("header bit", edit(&|b| b[30] ^= 0x10), BlockError::Checksum),
        (
            "huge payload len",
            edit(&|b| b[36..40].copy_from_slice(&u32::MAX.to_le_bytes())),
            BlockError::Truncated,
        ),
        (
            "k = 0",
            edit(&|b| {
                b[5] = 0;
                reseal(b)
            }),
            BlockError::BadHeader,
        ),
        (
            "index past k+m",
            edit(&|b| {
                b[7] = 3;
                reseal(b)
            }),
            BlockError::BadHeader,
        ),
        (
            "k+m too big",
            edit(&|b| {
                b[5] = 40;
                reseal(b)
            }),
            BlockError::BadHeader,
        ),
        (
            "len vs payload",
            edit(&|b| {
                b[32] = 200;
                reseal(b)
            }),
            BlockError::BadHeader,
        ),
    ];
    for (name, block, want) in cases {
        assert_eq!(verify_block(&block).map(|_| ()), Err(want), "{name}");
    }
}

#[test]
fn foreign_blocks_are_refused() {
    let p = Params::new(2, 1, 4096).unwrap();
    let mine = encode(p, 1, 3, b"the newest version");
    let stale = encode(p, 2, 3, b"an older version!!");
    let other_stripe = encode(p, 1, 4, b"the newest version");
    let other_params = encode(
        Params::new(1, 2, 4096).unwrap(),
        1,
        3,
        b"the newest version",
    );
    let bigger_stripes = encode(Params::new(2, 1, 8192).unwrap(), 1, 3, &[1; 5000]);
    for (name, foreign) in [
        ("stale tag", &stale[1]),
        ("other stripe", &other_stripe[1]),
        ("other k/m", &other_params[1]),
        ("stripe over the size", &bigger_stripes[1]),
    ] {
        let given = [Some(&mine[0][..]), Some(&foreign[..])];
        assert!(
            matches!(
                decode(p, 1, 3, &given),
                Err(Error::TooFewBlocks { good: 1, .. })
            ),
            "{name}"
        );
        let given = [Some(&foreign[..]), Some(&mine[0][..]), Some(&mine[2][..])];
        assert_eq!(
            decode(p, 1, 3, &given).unwrap(),
            (b"the newest version".to_vec(), 0b010, 1),
            "{name}"
        );
    }
}

#[test]
fn duplicates_and_disagreeing_lengths() {
    let p = Params::new(2, 2, 4096).unwrap();
    let a = encode(p, 5, 0, &[7; 100]);
    // A second copy of block 0 adds nothing and is counted as refused.
    let given = [Some(&a[0][..]), Some(&a[0][..]), Some(&a[3][..])];
    assert_eq!(decode(p, 5, 0, &given).unwrap(), (vec![7; 100], 0b0110, 1));
    // Same tag, another length (a broken writer): the majority wins.
    let b = encode(p, 5, 0, &[7; 130]);
    let given = [
        Some(&a[0][..]),
        Some(&a[1][..]),
        Some(&b[2][..]),
        Some(&a[3][..]),
    ];
    assert_eq!(decode(p, 5, 0, &given).unwrap(), (vec![7; 100], 0b0100, 1));
}

#[test]
fn plain_and_mirror_shapes() {
    // 1+0: one block is the data.
    let p = Params::new(1, 0, 64).unwrap();
    let b = encode(p, 1, 0, b"abc");
    assert_eq!(decode(p, 1, 0, &[Some(&b[0][..])]).unwrap().0, b"abc");
    assert!(decode(p, 1, 0, &[None]).is_err());
    // 1+1: either block alone.
    let p = Params::new(1, 1, 64).unwrap();
    let b = encode(p, 1, 0, b"abc");
    assert_eq!(decode(p, 1, 0, &[None, Some(&b[1][..])]).unwrap().0, b"abc");
}
