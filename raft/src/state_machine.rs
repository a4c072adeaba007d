//! The configuration state machine and its snapshots (FORMAT BOUNDARY).
//!
//! Applying is in memory; what is durable is the last snapshot, in the file
//! `snapshot` of the store's directory: one `Snapshot` record whose JSON
//! payload is a `SnapshotFile` (openraft's snapshot meta and the
//! `ConfigState`), replaced atomically and fsynced before a built snapshot
//! is offered or a received one acknowledged. At open the state is the
//! snapshot's; openraft applies the log entries after it again (the log
//! keeps every entry the snapshot does not cover).
//!
//! The snapshot data openraft moves between nodes is the same JSON
//! `SnapshotFile` body, so a follower checks what it installs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::record::{self, Decoded, Kind};
use crate::{
    invalid, Command, replace_file, ConfigState, Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

const SNAPSHOT: &str = "snapshot";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta,
    pub state: ConfigState,
}

struct Inner {
    dir: PathBuf,
    state: ConfigState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The current snapshot, as persisted (meta, encoded `SnapshotFile`).
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    built: u64,
    installed: u64,
    /// Told after every apply and snapshot install (see `subscribe`).
    watchers: Vec<Watcher>,
}

/// What changed in one apply call: the applied index after it and the keys
/// its commands named (`None`: anything may have changed, as after a
/// snapshot install).
pub struct Change<'a> {
    pub index: u64,
    pub keys: Option<&'a [String]>,
}

/// A callback told of every change (on the Raft thread, outside the lock;
/// it must not block).
pub type Watcher = Arc<dyn Fn(&Change<'_>) + Send + Sync>;

/// The state machine; clones share it (the snapshot builder is a clone, and
/// the node reads the configuration through one).
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
}

/// What a node can read of the applied configuration.
#[derive(Clone, Debug)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub state: ConfigState,
    pub snapshot: Option<LogId>,
    pub snapshots_built: u64,
    pub snapshots_installed: u64,
}

fn decode_file(bytes: &[u8]) -> Result<SnapshotFile, String> {
    match record::decode(bytes).map_err(|e| e.to_string())? {
        Decoded::Record { kind: Kind::Snapshot, payload, len } if len == bytes.len() => {
            serde_json::from_slice(payload).map_err(|e| e.to_string())
        }
        Decoded::Record { .. } => Err("not one snapshot record".into()),
        Decoded::Torn => Err("snapshot record cut short or damaged".into()),
    }
}

fn encode_file(file: &SnapshotFile) -> Vec<u8> {
    let mut buf = Vec::new();
    record::encode(Kind::Snapshot, &serde_json::to_vec(file).expect("snapshot serializes"), &mut buf);
    buf
}

impl StateMachineStore {
    pub fn open(dir: &Path) -> io::Result<StateMachineStore> {
        fs::create_dir_all(dir)?;
        let path = dir.join(SNAPSHOT);
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            state: ConfigState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            built: 0,
            installed: 0,
            watchers: Vec::new(),
        };
        match fs::read(&path) {
            Ok(bytes) => {
                let f = decode_file(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                inner.state = f.state;
                inner.last_applied = f.meta.last_log_id;
                inner.membership = f.meta.last_membership.clone();
                inner.snapshot = Some((f.meta, bytes));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(StateMachineStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn applied(&self) -> Applied {
        let g = self.lock();
        Applied {
            last_applied: g.last_applied,
            state: g.state.clone(),
            snapshot: g.snapshot.as_ref().and_then(|(m, _)| m.last_log_id),
            snapshots_built: g.built,
            snapshots_installed: g.installed,
        }
    }

    /// `f` of the applied state, under the lock (no copy of the state).
    pub fn read<R>(&self, f: impl FnOnce(&ConfigState) -> R) -> R {
        f(&self.lock().state)
    }

    /// The last applied index, without copying the state.
    pub fn applied_index(&self) -> u64 {
        self.lock().last_applied.map_or(0, |l| l.index)
    }

    /// The keys starting with `prefix` and the applied index they are at,
    /// copying only those (the node's bucket feed reads `bucket/`).
    pub fn with_prefix(&self, prefix: &str) -> (u64, Vec<(String, crate::Versioned)>) {
        let g = self.lock();
        let keys = g.state.keys.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        (g.last_applied.map_or(0, |l| l.index), keys.map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// One key's value and version (a copy of that key only).
    pub fn get(&self, key: &str) -> (u64, Option<crate::Versioned>) {
        let g = self.lock();
        (g.last_applied.map_or(0, |l| l.index), g.state.get(key).cloned())
    }

    /// Adds a callback told of every change (the bucket registry and the
    /// IAM store each have one).
    pub fn subscribe(&self, watcher: Watcher) {
        self.lock().watchers.push(watcher);
    }

    fn tell(&self, index: u64, keys: Option<&[String]>) {
        let watchers = self.lock().watchers.clone();
        for w in watchers {
            w(&Change { index, keys });
        }
    }

    /// (last applied index, history hash) without copying the state.
    pub fn position(&self) -> (u64, u64) {
        let g = self.lock();
        (g.last_applied.map_or(0, |l| l.index), g.state.history)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut g = self.lock();
        g.built += 1;
        let last = g.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, g.built),
            None => format!("0-0-{}", g.built),
        };
        let meta = SnapshotMeta { last_log_id: last, last_membership: g.membership.clone(), snapshot_id };
        let bytes = encode_file(&SnapshotFile { meta: meta.clone(), state: g.state.clone() });
        replace_file(&g.dir, SNAPSHOT, &bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        g.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(bytes) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.lock();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.lock();
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for e in entries {
            let (index, term) = (e.log_id.index, e.log_id.leader_id.term);
            g.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {
                    g.state.record(index, term, b"blank");
                    out.push(Response { ok: true, version: 0 });
                }
                EntryPayload::Normal(cmd) => {
                    let what = serde_json::to_vec(&cmd).expect("command serializes");
                    g.state.record(index, term, &what);
                    out.push(g.state.apply(index, &cmd));
                    match cmd {
                        Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => touched.push(key),
                        Command::Txn { writes, .. } => touched.extend(writes.into_iter().map(|(k, _)| k)),
                        Command::SetRing { .. } => {}
                    }
                }
                EntryPayload::Membership(m) => {
                    g.state.record(index, term, b"membership");
                    g.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Response { ok: true, version: 0 });
                }
            }
        }
        let index = g.last_applied.map_or(0, |l| l.index);
        drop(g);
        self.tell(index, Some(&touched));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError> {
        Ok(Box::new(Vec::new()))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Vec<u8>>) -> Result<(), StorageError> {
        let f = decode_file(&snapshot)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &invalid(e)))?;
        if f.meta.last_log_id != meta.last_log_id {
            let e = invalid(format!("snapshot data is of {:?}, its meta says {:?}", f.meta.last_log_id, meta.last_log_id));
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
        }
        let mut g = self.lock();
        replace_file(&g.dir, SNAPSHOT, &snapshot)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        g.state = f.state;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.snapshot = Some((meta.clone(), *snapshot));
        g.installed += 1;
        let index = g.last_applied.map_or(0, |l| l.index);
        drop(g);
        self.tell(index, None);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(bytes.clone()) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::Command;

    #[test]
    fn snapshot_survives_reopen_and_a_damaged_or_newer_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("tessera-raft-sm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut sm = StateMachineStore::open(&dir).unwrap();
            let e = |i: u64, key: &str| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
                payload: EntryPayload::Normal(Command::Put { key: key.into(), value: b"v".to_vec() }),
            };
            let out = sm.apply([e(1, "a"), e(2, "b")]).await.unwrap();
            assert_eq!(out[1], Response { ok: true, version: 2 });
            let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
            assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
            sm.apply([e(3, "c")]).await.unwrap();
            let before = sm.applied();
            drop(sm);
            // Reopened: the snapshot's state (entry 3 comes back from the log).
            let sm = StateMachineStore::open(&dir).unwrap();
            let after = sm.applied();
            assert_eq!(after.last_applied.map(|l| l.index), Some(2));
            assert!(after.state.get("b").is_some() && after.state.get("c").is_none());
            assert_ne!(after.state.history, before.state.history);
            let good = fs::read(dir.join(SNAPSHOT)).unwrap();
            let mut newer = good.clone();
            newer[4] = 7;
            fs::write(dir.join(SNAPSHOT), &newer).unwrap();
            let err = StateMachineStore::open(&dir).err().unwrap().to_string();
            assert!(err.contains("version 7"), "{err}");
            fs::write(dir.join(SNAPSHOT), &good[..good.len() - 1]).unwrap();
            assert!(StateMachineStore::open(&dir).is_err(), "a cut snapshot is refused");
            // A received snapshot whose bytes do not match its meta is refused.
            let mut sm = StateMachineStore::open(&dir.join("other")).unwrap();
            let mut meta = snap.meta.clone();
            meta.last_log_id = Some(LogId::new(CommittedLeaderId::new(1, 0), 9));
            assert!(sm.install_snapshot(&meta, Box::new(good.clone())).await.is_err());
            sm.install_snapshot(&snap.meta, Box::new(good)).await.unwrap();
            assert_eq!(sm.applied().snapshots_installed, 1);
        });
        let _ = fs::remove_dir_all(&dir);
    }
}
