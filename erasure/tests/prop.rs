//! Property tests of the erasure crate: any m losses recover, any corrupted
//! block is detected, more than m losses is an error and never wrong bytes.
//! The case count is modest so CI stays fast (`PROPTEST_CASES=N` for more).

use proptest::prelude::*;
use tessera_erasure::{Codec, Error, Params};

/// An object cut into stripes and encoded: `blocks[stripe][block]`.
fn encode_object(params: Params, tag: u128, data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut codec = Codec::new(params);
    let mut stripes = Vec::new();
    for s in 0..params.stripe_count(data.len() as u64) {
        let r = params.stripe_range(data.len() as u64, s).unwrap();
        let mut out = Vec::new();
        codec
            .encode_stripe(tag, s, &data[r.start as usize..r.end as usize], &mut out)
            .unwrap();
        assert_eq!(out.len(), params.total_blocks());
        stripes.push(out);
    }
    stripes
}

/// Decodes every stripe from the blocks `keep` allows, in the order given.
fn decode_object(
    params: Params,
    tag: u128,
    stripes: &[Vec<Vec<u8>>],
    order: &[usize],
    keep: impl Fn(usize) -> bool,
) -> Result<(Vec<u8>, Vec<u64>), Error> {
    let mut codec = Codec::new(params);
    let mut data = Vec::new();
    let mut lacking = Vec::new();
    let mut out = Vec::new();
    for (s, blocks) in stripes.iter().enumerate() {
        let given: Vec<Option<&[u8]>> = order
            .iter()
            .map(|&i| {
                if keep(i) {
                    Some(blocks[i].as_slice())
                } else {
                    None
                }
            })
            .collect();
        let d = codec.decode_stripe(tag, s as u64, &given, &mut out)?;
        assert_eq!(d.stripe_len, out.len());
        lacking.push(d.lacking);
        data.extend_from_slice(&out);
    }
    Ok((data, lacking))
}

/// k, m, stripe size, data, a permutation of block indexes, and a loss set.
fn case() -> impl Strategy<Value = (usize, usize, usize, Vec<u8>, Vec<usize>, Vec<usize>)> {
    (1usize..=12, 0usize..=6, 1usize..=3000).prop_flat_map(|(k, m, stripe)| {
        let n = k + m;
        (
            Just(k),
            Just(m),
            Just(stripe),
            prop::collection::vec(any::<u8>(), 0..=3 * stripe),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(96);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_m_losses_recover((k, m, stripe, data, order, lost) in case(), losses in 0usize..=6, tag in any::<u128>()) {
        let params = Params::new(k, m, stripe).unwrap();
        let stripes = encode_object(params, tag, &data);
        let lost = &lost[..losses.min(m)];
        let (got, lacking) = decode_object(params, tag, &stripes, &order, |i| !lost.contains(&i)).unwrap();
        prop_assert_eq!(&got, &data);
        let mask = lost.iter().fold(0u64, |a, &i| a | 1 << i);
        prop_assert!(lacking.iter().all(|&l| l == mask));
    }

    #[test]
    fn more_than_m_losses_is_an_error((k, m, stripe, data, order, lost) in case(), extra in 0usize..=12, tag in any::<u128>()) {
        let params = Params::new(k, m, stripe).unwrap();
        let stripes = encode_object(params, tag, &data);
        let losses = (m + 1 + extra).min(k + m);
        let lost = &lost[..losses];
        let r = decode_object(params, tag, &stripes, &order, |i| !lost.contains(&i));
        let too_few = matches!(r, Err(Error::TooFewBlocks { .. }));
        prop_assert!(too_few, "{:?}", r.map(|(d, _)| d.len()));
    }

    #[test]
    fn a_flipped_bit_is_detected_and_survived(
        (k, m, stripe, data, order, lost) in case(),
        victim in any::<prop::sample::Index>(),
        stripe_at in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        tag in any::<u128>(),
    ) {
        let params = Params::new(k, m, stripe).unwrap();
        let mut stripes = encode_object(params, tag, &data);
        let n = k + m;
        let v = victim.index(n);
        let s = stripe_at.index(stripes.len());
        let block = &mut stripes[s][v];
        let pos = at.index(block.len());
        block[pos] ^= 1 << bit;
        // The flip alone is always detected.
        let mut codec = Codec::new(params);
        let mut out = Vec::new();
        let given: Vec<Option<&[u8]>> = stripes[s].iter().map(|b| Some(b.as_slice())).collect();
        match codec.decode_stripe(tag, s as u64, &given, &mut out) {
            Ok(d) => {
                prop_assert_eq!(d.lacking, 1u64 << v);
                prop_assert_eq!(d.refused, 1);
            }
            Err(e) => prop_assert!(m == 0 && matches!(e, Error::TooFewBlocks { .. }), "{e}"),
        }
        // With up to m - 1 other losses the object still decodes exactly.
        if m >= 1 {
            let others: Vec<usize> = lost.iter().copied().filter(|&i| i != v).take(m - 1).collect();
            let (got, _) = decode_object(params, tag, &stripes, &order, |i| !others.contains(&i)).unwrap();
            prop_assert_eq!(&got, &data);
        }
    }

    #[test]
    fn reconstruct_rebuilds_the_exact_blocks((k, m, stripe, data, _order, lost) in case(), losses in 0usize..=6, tag in any::<u128>()) {
        let params = Params::new(k, m, stripe).unwrap();
        let stripes = encode_object(params, tag, &data);
        let lost = &lost[..losses.min(m)];
        let mut codec = Codec::new(params);
        let mut out = Vec::new();
        for (s, blocks) in stripes.iter().enumerate() {
            let given: Vec<Option<&[u8]>> = blocks
                .iter()
                .enumerate()
                .map(|(i, b)| if lost.contains(&i) { None } else { Some(b.as_slice()) })
                .collect();
            let (_, rebuilt) = codec.reconstruct_stripe(tag, s as u64, &given, &mut out).unwrap();
            prop_assert_eq!(rebuilt.blocks.len(), lost.len());
            for (i, b) in rebuilt.blocks {
                prop_assert!(lost.contains(&usize::from(i)));
                prop_assert_eq!(&b, &blocks[usize::from(i)]);
            }
        }
    }

    #[test]
    fn garbage_never_panics_nor_decodes(
        k in 1usize..=12,
        m in 0usize..=6,
        junk in prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..200)), 0..=40),
    ) {
        let params = Params::new(k, m, 4096).unwrap();
        let given: Vec<Option<&[u8]>> = junk.iter().map(|b| b.as_deref()).collect();
        let mut out = Vec::new();
        let r = Codec::new(params).decode_stripe(0, 0, &given, &mut out);
        let too_few = matches!(r, Err(Error::TooFewBlocks { good: 0, .. }));
        prop_assert!(too_few);
    }
}
