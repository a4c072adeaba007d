//! Cluster configuration in Raft (issue 12), on `openraft` 0.9: the type
//! configuration, a durable log and vote store (`log_store`), the
//! configuration state machine with snapshots (`state_machine`, over the
//! pure `state`), and the on-disk record framing (`record`).
//!
//! Everything here runs on one tokio runtime (the node gives it a thread of
//! its own); the stores do their file I/O inline, which is what that thread
//! is for. No network: the caller supplies a `RaftNetworkFactory`.

pub mod log_store;
pub mod record;
pub mod state;
pub mod state_machine;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub use log_store::LogStore;
pub use state::{Command, ConfigState, Response, Versioned};
pub use state_machine::StateMachineStore;

openraft::declare_raft_types!(
    /// openraft's type configuration for the cluster configuration.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// Replaces `dir/name` with one record: written to a temporary file,
/// fsynced, renamed over the old one, and the directory fsynced, so a crash
/// leaves either the old record or the new one.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The openraft this crate is built on, for callers that name its types.
pub use openraft;
