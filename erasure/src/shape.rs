//! Pure decisions about an erasure set: its default parity, its quorums,
//! and whether an object is striped or replicated.

use crate::{Error, Params, MAX_TOTAL_BLOCKS};

/// Objects up to this size are replicated m + 1 times instead of striped:
/// a 4 KiB object cut k ways gives k tiny blocks, each costing a 4 KiB
/// aligned record and an I/O. Equal to the node's inline threshold
/// (`node/src/s3/put.rs`, `INLINE_MAX_BYTES`), so a replicated object is
/// one record per copy.
pub const REPLICATE_MAX_BYTES: u64 = 128 * 1024;

/// The default parity for a set of `disks` disks, as MinIO chooses it:
/// 1 → 0 (a plain disk), 2–3 → 1, 4–5 → 2, 6–7 → 3, 8 and more → 4.
/// A set survives the loss of that many disks.
pub fn default_parity(disks: usize) -> usize {
    match disks {
        0 | 1 => 0,
        2 | 3 => 1,
        4 | 5 => 2,
        6 | 7 => 3,
        _ => 4,
    }
}

/// The shape of an erasure set: how many disks, how many of each stripe's
/// blocks are parity. One block of each stripe goes to each disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetShape {
    data_blocks: u8,
    parity_blocks: u8,
}

impl SetShape {
    /// A set of `disks` disks with `parity` parity blocks (the default when
    /// `None`). Parity may be at most half the disks: beyond that a set
    /// would hold more parity than data, and two halves of it could each
    /// acknowledge a different version.
    pub fn new(disks: usize, parity: Option<usize>) -> Result<Self, Error> {
        let parity = parity.unwrap_or_else(|| default_parity(disks));
        let bad = |why| Error::BadShape { disks, parity, why };
        if disks == 0 || disks > MAX_TOTAL_BLOCKS {
            return Err(bad("disks must be in 1..=MAX_TOTAL_BLOCKS"));
        }
        if parity > disks / 2 {
            return Err(bad("parity may be at most half the disks"));
        }
        Ok(SetShape {
            data_blocks: (disks - parity) as u8,
            parity_blocks: parity as u8,
        })
    }

    pub fn disks(&self) -> usize {
        usize::from(self.data_blocks) + usize::from(self.parity_blocks)
    }
    pub fn data_blocks(&self) -> usize {
        usize::from(self.data_blocks)
    }
    pub fn parity_blocks(&self) -> usize {
        usize::from(self.parity_blocks)
    }

    /// Coding parameters for striped objects of this set.
    pub fn params(&self, stripe_bytes: usize) -> Result<Params, Error> {
        Params::new(self.data_blocks(), self.parity_blocks(), stripe_bytes)
    }

    /// Disks that must hold a durable block (and commit record) of a striped
    /// version before it is acknowledged: k, or k + 1 when k == m. Reads
    /// need k blocks, and a write quorum W with W + k > k + m makes every
    /// set of k disks a reader can reach overlap every acknowledged write,
    /// so no reader can miss the newest acknowledged version.
    pub fn write_quorum(&self) -> usize {
        if self.data_blocks == self.parity_blocks {
            self.data_blocks() + 1
        } else {
            self.data_blocks()
        }
    }

    /// Disks a read must hear from: k, the blocks one decode needs.
    pub fn read_quorum(&self) -> usize {
        self.data_blocks()
    }
}

/// How one object version is stored in a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redundancy {
    /// Whole copies on `copies` (m + 1) disks: survives the same m losses.
    Replicated { copies: usize },
    /// k + m blocks per stripe, one per disk.
    Striped {
        data_blocks: usize,
        parity_blocks: usize,
    },
}

/// Striped above `REPLICATE_MAX_BYTES`, replicated m + 1 times at or below
/// it (and always on a set without parity, where both mean one copy).
pub fn redundancy_for(object_bytes: u64, shape: SetShape) -> Redundancy {
    if object_bytes <= REPLICATE_MAX_BYTES || shape.parity_blocks() == 0 && shape.data_blocks() == 1
    {
        Redundancy::Replicated {
            copies: shape.parity_blocks() + 1,
        }
    } else {
        Redundancy::Striped {
            data_blocks: shape.data_blocks(),
            parity_blocks: shape.parity_blocks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parity_table() {
        let want = [
            (1, 0),
            (2, 1),
            (3, 1),
            (4, 2),
            (5, 2),
            (6, 3),
            (7, 3),
            (8, 4),
            (12, 4),
            (16, 4),
            (32, 4),
        ];
        for (disks, parity) in want {
            assert_eq!(default_parity(disks), parity, "{disks} disks");
            let s = SetShape::new(disks, None).unwrap();
            assert_eq!(
                (s.data_blocks(), s.parity_blocks()),
                (disks - parity, parity)
            );
        }
    }

    #[test]
    fn shape_limits() {
        assert!(SetShape::new(0, None).is_err());
        assert!(SetShape::new(MAX_TOTAL_BLOCKS + 1, None).is_err());
        assert!(SetShape::new(4, Some(3)).is_err());
        assert!(SetShape::new(1, Some(1)).is_err());
        assert_eq!(SetShape::new(4, Some(0)).unwrap().data_blocks(), 4);
        assert_eq!(
            SetShape::new(MAX_TOTAL_BLOCKS, Some(16))
                .unwrap()
                .data_blocks(),
            16
        );
    }

    #[test]
    fn quorums() {
        // 2+2: halves could each hold k blocks of a different version.
        assert_eq!(SetShape::new(4, None).unwrap().write_quorum(), 3);
        assert_eq!(SetShape::new(6, None).unwrap().write_quorum(), 4);
        assert_eq!(SetShape::new(6, Some(2)).unwrap().write_quorum(), 4);
        assert_eq!(SetShape::new(1, None).unwrap().write_quorum(), 1);
        assert_eq!(SetShape::new(2, None).unwrap().write_quorum(), 2);
        for disks in 1..=MAX_TOTAL_BLOCKS {
            let s = SetShape::new(disks, None).unwrap();
            assert!(s.write_quorum() + s.read_quorum() > s.disks(), "{disks}");
        }
    }

    #[test]
    fn small_objects_are_replicated() {
        let s = SetShape::new(6, None).unwrap();
        assert_eq!(redundancy_for(0, s), Redundancy::Replicated { copies: 4 });
        assert_eq!(
            redundancy_for(REPLICATE_MAX_BYTES, s),
            Redundancy::Replicated { copies: 4 }
        );
        assert_eq!(
            redundancy_for(REPLICATE_MAX_BYTES + 1, s),
            Redundancy::Striped {
                data_blocks: 3,
                parity_blocks: 3
            }
        );
        let plain = SetShape::new(1, None).unwrap();
        assert_eq!(
            redundancy_for(u64::MAX, plain),
            Redundancy::Replicated { copies: 1 }
        );
    }
}
