//! The cluster's pure parts (no I/O), driven by the node:
//!
//! - [`placement`]: a [`Layout`] maps each of P partitions to an ordered
//!   set of `width` (= k + m) disks, on distinct nodes and zones where the
//!   cluster has enough of them, balanced by disk weight, and moves as
//!   little as possible when the membership changes.
//! - [`gossip`]: membership and failure detection (SWIM via `foca`), with
//!   its timers and datagrams handed to the caller.
//! - [`seal`]: the authenticated frame every cluster datagram travels in,
//!   keyed by the cluster secret.
//! - [`rpc`]: the handshake and frames of inter-node RPC connections.
//!
//! Configuration in Raft (openraft) and the quorums of issue 12 build on
//! these; they are not here yet.

pub mod gossip;
pub mod placement;
pub mod rpc;
pub mod seal;

pub use gossip::{Event, Gossip, MemberState, MemberView, NodeIdentity, Timing};
pub use placement::{Disk, DiskId, Error, Layout, Membership, Node};
pub use seal::{ClusterKey, Refused};
