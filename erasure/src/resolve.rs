//! Which version of a key a read answers, from what the set's shards hold.
//!
//! Each shard commits on its own, so a crash between the commits of one
//! write leaves a version on some shards only. The rule (ARCHITECTURE.md,
//! "Erasure sets"), newest version first:
//! - readable (enough good blocks or a good copy) → answer it; if fewer than
//!   W shards hold its record, the reader first rolls it forward onto every
//!   shard it can write, and answers only if that reaches W (else a later
//!   read with other shards away could skip it and flip back to an older
//!   version);
//! - not readable, and its records plus the shards that could not be asked
//!   reach W → it may have been acknowledged: `Unavailable`, never an older
//!   version in its place;
//! - otherwise it provably never reached W, so was never acknowledged: skip;
//! - no version left: absent, unless the shards nobody could ask are as
//!   many as W (an acknowledged version could be there alone): unavailable.
//!
//! This holds only if a shard keeps a replaced version's record (and
//! blocks) until the version replacing it is acknowledged: an unfinished
//! write must not destroy what it replaces. `tests/resolve_sim.rs` checks the
//! rule against random histories of partial writes, settles and outages.

use crate::SetShape;

/// One version of a key as the reachable shards report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Orders versions (the version id as a u128); larger is newer.
    pub version: u128,
    /// Reachable shards holding its record.
    pub records: usize,
    /// Shards that could hold its record but could not be asked (offline,
    /// or a disk still healing that lost it).
    pub unknown: usize,
    /// Whether its bytes can be read: >= k good blocks, or one good copy.
    pub readable: bool,
}

/// What a read answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Answer this version; with `roll_forward`, after committing it onto
    /// the writable shards that lack it.
    Answer { version: u128, roll_forward: bool },
    /// A version that may have been acknowledged cannot be read now: 503.
    Unavailable,
    /// No version that was or may have been acknowledged: the key is absent.
    Absent,
}

/// Resolves a key's versions (`candidates`, in any order; at most one per
/// version) on a set of `shape`. `unreachable`: shards that could not be
/// asked at all (so versions held only there are not among the
/// candidates); `writable`: shards able to take a commit now.
pub fn resolve(
    shape: &SetShape,
    unreachable: usize,
    writable: usize,
    candidates: &[Candidate],
) -> Resolution {
    let w = shape.write_quorum();
    let mut newest_first: Vec<&Candidate> = candidates.iter().collect();
    newest_first.sort_unstable_by_key(|c| std::cmp::Reverse(c.version));
    for c in newest_first {
        if c.readable {
            if c.records >= w {
                return Resolution::Answer {
                    version: c.version,
                    roll_forward: false,
                };
            }
            if writable >= w {
                return Resolution::Answer {
                    version: c.version,
                    roll_forward: true,
                };
            }
            return Resolution::Unavailable;
        }
        if c.records + c.unknown >= w {
            return Resolution::Unavailable;
        }
    }
    // A version held only by shards nobody could ask is no candidate; if
    // they are as many as a write quorum, one may be the acknowledged one.
    if unreachable >= w {
        Resolution::Unavailable
    } else {
        Resolution::Absent
    }
}
