//! The cluster's pure parts (no I/O): where each partition's erasure set
//! lives. Membership (foca), configuration (openraft) and the inter-node
//! RPC of issue 12 build on this; none of them is here yet.
//!
//! - [`placement`]: a [`Layout`] maps each of P partitions to an ordered
//!   set of `width` (= k + m) disks, on distinct nodes and zones where the
//!   cluster has enough of them, balanced by disk weight, and moves as
//!   little as possible when the membership changes.

pub mod placement;

pub use placement::{Disk, DiskId, Error, Layout, Membership, Node};
