//! A seeded simulation of version resolution over one erasure set: random
//! histories of writes that reach some shards only (crashes between the
//! shards' commits), settles that drop replaced versions (also cut short),
//! and reads with random shards away. Checked after every read:
//! - never an older version than the newest acknowledged one;
//! - an answered version is readable, and once answered (rolled forward)
//!   counts as acknowledged, so reads never flip back;
//! - with every shard reachable the answer is never `Unavailable`.
//!
//! `PROPTEST_CASES=N` for more histories (default 256, ~1 s).

use std::collections::BTreeSet;

use proptest::prelude::*;
use tessera_erasure::{resolve, Candidate, Resolution, SetShape};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, good enough to pick events.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A random subset of `0..n`.
    fn subset(&mut self, n: usize) -> BTreeSet<usize> {
        (0..n).filter(|_| self.next() & 1 == 1).collect()
    }
}

/// Runs one history; returns a description of the first violation.
fn run(disks: usize, parity: usize, seed: u64, steps: usize) -> Result<(), String> {
    let shape = SetShape::new(disks, Some(parity)).map_err(|e| e.to_string())?;
    let (k, w) = (shape.data_blocks(), shape.write_quorum());
    let mut rng = Rng(seed | 1);
    // What each shard holds: versions with their record and block.
    let mut held: Vec<BTreeSet<u128>> = vec![BTreeSet::new(); disks];
    let mut acked: Option<u128> = None;
    let mut next_version = 1u128;
    for step in 0..steps {
        match rng.below(4) {
            0 | 1 => {
                // A write: the online shards, then the ones its commits reached.
                let v = next_version;
                next_version += 1;
                let online = rng.subset(disks);
                let crashed = rng.below(3) == 0;
                let reached: BTreeSet<usize> = if crashed {
                    online
                        .iter()
                        .copied()
                        .filter(|_| rng.next() & 1 == 1)
                        .collect()
                } else {
                    online
                };
                for &d in &reached {
                    held[d].insert(v);
                }
                if !crashed && reached.len() >= w {
                    acked = acked.max(Some(v));
                    // The settle after the ack: drop what v replaced, on some
                    // of v's shards (it may be cut short too).
                    for &d in &reached {
                        if rng.next() & 1 == 1 {
                            held[d].retain(|&x| x >= v);
                        }
                    }
                }
            }
            _ => {
                // A read with some shards away (any number, beyond m too).
                let away = if rng.below(3) == 0 {
                    BTreeSet::new()
                } else {
                    rng.subset(disks)
                };
                let reachable: Vec<usize> = (0..disks).filter(|d| !away.contains(d)).collect();
                let seen: BTreeSet<u128> = reachable
                    .iter()
                    .flat_map(|&d| held[d].iter().copied())
                    .collect();
                let candidates: Vec<Candidate> = seen
                    .iter()
                    .map(|&v| {
                        let records = reachable.iter().filter(|&&d| held[d].contains(&v)).count();
                        Candidate {
                            version: v,
                            records,
                            unknown: away.len(),
                            readable: records >= k,
                        }
                    })
                    .collect();
                let r = resolve(&shape, away.len(), reachable.len(), &candidates);
                let ctx =
                    || format!("step {step}: {r:?}, acked {acked:?}, away {away:?}, held {held:?}");
                match r {
                    Resolution::Answer {
                        version,
                        roll_forward,
                    } => {
                        let c = candidates
                            .iter()
                            .find(|c| c.version == version)
                            .ok_or_else(ctx)?;
                        if !c.readable || Some(version) < acked {
                            return Err(format!(
                                "answered an unreadable or older version: {}",
                                ctx()
                            ));
                        }
                        if roll_forward {
                            for &d in &reachable {
                                held[d].insert(version);
                            }
                        }
                        acked = acked.max(Some(version));
                    }
                    Resolution::Absent if acked.is_some() => {
                        return Err(format!("lost: {}", ctx()))
                    }
                    Resolution::Unavailable if away.is_empty() => {
                        return Err(format!("unavailable with every shard reachable: {}", ctx()))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reads_never_go_back((disks, parity) in (1usize..=8).prop_flat_map(|n| (Just(n), 0..=n / 2)), seed in any::<u64>()) {
        prop_assert_eq!(run(disks, parity, seed, 60), Ok(()));
    }
}

#[test]
fn a_partial_write_over_an_acknowledged_version_is_skipped() {
    // 4+2 (W = 4): v1 on all six, v2 crashed after three commits.
    let shape = SetShape::new(6, Some(2)).unwrap();
    let c = [
        Candidate {
            version: 2,
            records: 3,
            unknown: 0,
            readable: false,
        },
        Candidate {
            version: 1,
            records: 6,
            unknown: 0,
            readable: true,
        },
    ];
    assert_eq!(
        resolve(&shape, 0, 6, &c),
        Resolution::Answer {
            version: 1,
            roll_forward: false
        }
    );
    // With two shards away v2 might have reached four: refuse, never v1.
    let c = [
        Candidate {
            version: 2,
            records: 2,
            unknown: 2,
            readable: false,
        },
        Candidate {
            version: 1,
            records: 4,
            unknown: 2,
            readable: true,
        },
    ];
    assert_eq!(resolve(&shape, 2, 4, &c), Resolution::Unavailable);
    // Readable but short of W (2+2, W = 3): rolled forward if it can be.
    let shape = SetShape::new(4, None).unwrap();
    let c = [Candidate {
        version: 5,
        records: 2,
        unknown: 0,
        readable: true,
    }];
    assert_eq!(
        resolve(&shape, 0, 4, &c),
        Resolution::Answer {
            version: 5,
            roll_forward: true
        }
    );
    assert_eq!(resolve(&shape, 2, 2, &c), Resolution::Unavailable);
    // Nothing seen: only W shards away could hide an acknowledged version.
    assert_eq!(resolve(&shape, 3, 1, &[]), Resolution::Unavailable);
    assert_eq!(resolve(&shape, 2, 2, &[]), Resolution::Absent);
}
