//! The durable Raft log and vote (FORMAT BOUNDARY, records in `record`).
//!
//! Files in the store's directory:
//! - `log`: records appended in order: `Entry`, `Truncate` (entries from an
//!   index on are gone) and `Purge` (entries up to a log id are gone).
//!   Opening replays them. An append or truncation is fsynced before it is
//!   acknowledged to openraft. A purge (after a snapshot) rewrites the file
//!   with a `Purge` record and the entries that remain (temporary file,
//!   fsync, rename, directory fsync), so the log never outgrows what the
//!   last snapshot does not cover.
//! - `vote`: one `Vote` record, replaced atomically and fsynced before
//!   `save_vote` returns.
//! - `committed`: one `Committed` record, the last committed log id this
//!   node knew of, replaced the same way when it moves. At a restart
//!   openraft applies the log up to it at once, so a node comes back with
//!   the configuration it last saw committed rather than its last snapshot
//!   (it would otherwise serve an older state until a leader's first
//!   message). Absent (an older store): the snapshot's state, as before.
//!
//! A torn record at the end of `log` (a crash during an append, never
//! acknowledged) is cut off at open; any other damage refuses the open.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};

use crate::record::{self, Decoded, Kind};
use crate::{invalid, replace_file, sync_dir, Entry, LogId, StorageError, TypeConfig, Vote};

const LOG: &str = "log";
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";

struct Inner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// The log and vote store; clones share it (openraft's log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

impl LogStore {
    /// Opens (creating if needed) the store in `dir`, replaying `log` and
    /// reading `vote`.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let vote = match fs::read(dir.join(VOTE)) {
            Ok(bytes) => Some(read_vote(&bytes).map_err(|e| invalid(format!("{}: {e}", dir.join(VOTE).display())))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let committed = match fs::read(dir.join(COMMITTED)) {
            Ok(bytes) => Some(read_committed(&bytes).map_err(|e| invalid(format!("{}: {e}", dir.join(COMMITTED).display())))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let path = dir.join(LOG);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut entries = BTreeMap::new();
        let mut last_purged: Option<LogId> = None;
        let mut at = 0;
        while at < bytes.len() {
            let what = |e: String| invalid(format!("{} at offset {at}: {e}", path.display()));
            match record::decode(&bytes[at..]).map_err(|e| what(e.to_string()))? {
                Decoded::Torn => break,
                Decoded::Record { kind, payload, len } => {
                    match kind {
                        Kind::Entry => {
                            let e: Entry = serde_json::from_slice(payload).map_err(|e| what(e.to_string()))?;
                            let index = e.log_id.index;
                            if last_purged.is_none_or(|p| index > p.index) {
                                let _ = entries.split_off(&index);
                                entries.insert(index, e);
                            }
                        }
                        Kind::Truncate => {
                            let since: u64 = serde_json::from_slice(payload).map_err(|e| what(e.to_string()))?;
                            let _ = entries.split_off(&since);
                        }
                        Kind::Purge => {
                            let upto: LogId = serde_json::from_slice(payload).map_err(|e| what(e.to_string()))?;
                            entries = entries.split_off(&(upto.index + 1));
                            last_purged = Some(upto);
                        }
                        other => return Err(what(format!("a {other:?} record in the log"))),
                    }
                    at += len;
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if at < bytes.len() {
            // A torn tail: cut it off so the next append follows a whole record.
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        Ok(LogStore { inner: Arc::new(Mutex::new(Inner { dir: dir.to_path_buf(), file, entries, last_purged, vote, committed })) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (first present index, last index, purged up to) for status pages and tests.
    pub fn span(&self) -> (Option<u64>, Option<u64>, Option<LogId>) {
        let g = self.lock();
        (g.entries.keys().next().copied(), g.entries.keys().next_back().copied(), g.last_purged)
    }
}

fn read_vote(bytes: &[u8]) -> Result<Vote, String> {
    match record::decode(bytes).map_err(|e| e.to_string())? {
        Decoded::Record { kind: Kind::Vote, payload, len } if len == bytes.len() => {
            serde_json::from_slice(payload).map_err(|e| e.to_string())
        }
        Decoded::Record { .. } => Err("not one vote record".into()),
        // The file is replaced by rename after an fsync: it is never torn.
        Decoded::Torn => Err("vote record cut short or damaged".into()),
    }
}

fn read_committed(bytes: &[u8]) -> Result<LogId, String> {
    match record::decode(bytes).map_err(|e| e.to_string())? {
        Decoded::Record { kind: Kind::Committed, payload, len } if len == bytes.len() => {
            serde_json::from_slice(payload).map_err(|e| e.to_string())
        }
        Decoded::Record { .. } => Err("not one committed record".into()),
        Decoded::Torn => Err("committed record cut short or damaged".into()),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft types serialize")
}

impl Inner {
    fn append_records(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.file.sync_data()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = self.lock();
        Ok(g.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g.entries.values().next_back().map(|e| e.log_id).or(g.last_purged);
        Ok(LogState { last_purged_log_id: g.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut g = self.lock();
        let mut buf = Vec::new();
        record::encode(Kind::Vote, &json(vote), &mut buf);
        replace_file(&g.dir, VOTE, &buf).map_err(|e| StorageIOError::write_vote(&e))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut g = self.lock();
        let Some(c) = committed else { return Ok(()) };
        if g.committed.is_some_and(|old| old.index >= c.index) {
            return Ok(());
        }
        let mut buf = Vec::new();
        record::encode(Kind::Committed, &json(&c), &mut buf);
        // Losing it costs only the quick start (openraft waits for a leader
        // again), so a failure to save is logged, never fatal.
        match replace_file(&g.dir, COMMITTED, &buf) {
            Ok(()) => g.committed = Some(c),
            Err(e) => tracing::warn!(error = %e, "raft: cannot save the committed log id"),
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.lock();
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for e in entries {
            record::encode(Kind::Entry, &json(&e), &mut buf);
            added.push(e);
        }
        for e in added {
            g.entries.insert(e.log_id.index, e);
        }
        match g.append_records(&buf) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        let _ = g.entries.split_off(&log_id.index);
        let mut buf = Vec::new();
        record::encode(Kind::Truncate, &json(&log_id.index), &mut buf);
        g.append_records(&buf).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.entries = g.entries.split_off(&(log_id.index + 1));
        g.last_purged = Some(log_id);
        // Rewrite the log with what remains.
        let mut buf = Vec::new();
        record::encode(Kind::Purge, &json(&log_id), &mut buf);
        for e in g.entries.values() {
            record::encode(Kind::Entry, &json(e), &mut buf);
        }
        let dir = g.dir.clone();
        let rewrite = || -> io::Result<File> {
            replace_file(&dir, LOG, &buf)?;
            OpenOptions::new().append(true).open(dir.join(LOG))
        };
        g.file = rewrite().map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::Command;

    fn entry(term: u64, index: u64) -> Entry {
        let cmd = Command::Put { key: format!("k{index}"), value: vec![term as u8] };
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 0), index), payload: EntryPayload::Normal(cmd) }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    fn indexes(s: &LogStore) -> Vec<(u64, u64)> {
        s.lock().entries.values().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
    }

    #[test]
    fn append_truncate_purge_vote_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("tessera-raft-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        rt().block_on(async {
            let mut s = LogStore::open(&dir).unwrap();
            s.blocking_append((1..=6).map(|i| entry(1, i))).await.unwrap();
            s.truncate(LogId::new(CommittedLeaderId::new(1, 0), 5)).await.unwrap();
            s.blocking_append([entry(2, 5)]).await.unwrap();
            s.save_vote(&Vote::new(2, 1)).await.unwrap();
            let want = vec![(1, 1), (1, 2), (1, 3), (1, 4), (2, 5)];
            assert_eq!(indexes(&s), want);
            drop(s);
            let mut s = LogStore::open(&dir).unwrap();
            assert_eq!(indexes(&s), want);
            assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
            // The committed id survives a reopen and never moves back.
            assert_eq!(s.read_committed().await.unwrap(), None);
            let c4 = LogId::new(CommittedLeaderId::new(1, 0), 4);
            s.save_committed(Some(c4)).await.unwrap();
            s.save_committed(Some(LogId::new(CommittedLeaderId::new(1, 0), 2))).await.unwrap();
            drop(s);
            let mut s = LogStore::open(&dir).unwrap();
            assert_eq!(s.read_committed().await.unwrap(), Some(c4));
            s.purge(LogId::new(CommittedLeaderId::new(1, 0), 3)).await.unwrap();
            s.blocking_append([entry(2, 6)]).await.unwrap();
            drop(s);
            let mut s = LogStore::open(&dir).unwrap();
            assert_eq!(indexes(&s), vec![(1, 4), (2, 5), (2, 6)]);
            let st = s.get_log_state().await.unwrap();
            assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(3));
            assert_eq!(st.last_log_id.map(|l| l.index), Some(6));
            drop(s);

            // A torn append (never acknowledged) is cut off; the store goes on.
            let mut log = OpenOptions::new().append(true).open(dir.join(LOG)).unwrap();
            let mut buf = Vec::new();
            record::encode(Kind::Entry, &json(&entry(2, 7)), &mut buf);
            log.write_all(&buf[..buf.len() - 3]).unwrap();
            drop(log);
            let mut s = LogStore::open(&dir).unwrap();
            assert_eq!(indexes(&s).last(), Some(&(2, 6)));
            s.blocking_append([entry(3, 7)]).await.unwrap();
            drop(s);
            assert_eq!(indexes(&LogStore::open(&dir).unwrap()).last(), Some(&(3, 7)));

            // Damage in the middle, or a record of an unknown version, refuses the open.
            let good = fs::read(dir.join(LOG)).unwrap();
            let mut bad = good.clone();
            bad[record::HEADER + 2] ^= 1;
            fs::write(dir.join(LOG), &bad).unwrap();
            let e = LogStore::open(&dir).err().unwrap().to_string();
            assert!(e.contains("checksum") && e.contains("offset 0"), "{e}");
            let mut newer = good.clone();
            newer[4] = 9;
            fs::write(dir.join(LOG), &newer).unwrap();
            let e = LogStore::open(&dir).err().unwrap().to_string();
            assert!(e.contains("version 9"), "{e}");
            fs::write(dir.join(LOG), &good).unwrap();
            let mut vote = fs::read(dir.join(VOTE)).unwrap();
            vote[4] = 2;
            fs::write(dir.join(VOTE), &vote).unwrap();
            let e = LogStore::open(&dir).err().unwrap().to_string();
            assert!(e.contains("vote") && e.contains("version 2"), "{e}");
            fs::write(dir.join(VOTE), fs::read(dir.join(VOTE)).unwrap().iter().enumerate().map(|(i, b)| if i == 4 { 1 } else { *b }).collect::<Vec<u8>>()).unwrap();
            let mut committed = fs::read(dir.join(COMMITTED)).unwrap();
            committed[4] = 2;
            fs::write(dir.join(COMMITTED), &committed).unwrap();
            let e = LogStore::open(&dir).err().unwrap().to_string();
            assert!(e.contains("committed") && e.contains("version 2"), "{e}");
        });
        let _ = fs::remove_dir_all(&dir);
    }
}
