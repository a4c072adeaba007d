//! Access to every shard of the node from any reactor.
//!
//! A shard is owned by one reactor, which alone touches its files and index.
//! A call for a local shard runs directly; a call for another core's shard is
//! sent over that core's bounded channel and executed there by `serve`, and the
//! answer comes back on a one-shot channel. Bodies travel as owned buffers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use tessera_io::{DataBuf, Entry, Extent, IoError, Mutation, Shard, Stored};

use crate::meta::{ObjectSummary, T_OBJECTS};

/// A shard and what its owning core tracks beside it: the object keys with
/// a commit in flight, so a conditional write can wait until every earlier
/// write to its key is visible before it checks and commits.
pub struct LocalShard {
    pub shard: Shard,
    writing: RefCell<HashMap<Vec<u8>, u32>>,
}

impl LocalShard {
    pub fn new(shard: Shard) -> Self {
        LocalShard { shard, writing: RefCell::new(HashMap::new()) }
    }

    fn object_keys(muts: &[Mutation]) -> Vec<Vec<u8>> {
        muts.iter()
            .filter_map(|m| match m {
                Mutation::Put { table: T_OBJECTS, key, .. } | Mutation::Delete { table: T_OBJECTS, key } => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Commits, with the object keys marked as being written meanwhile.
    async fn commit(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        let _marks = WriteMarks::new(self, Self::object_keys(&muts));
        self.shard.commit(muts).await
    }

    /// Waits until no commit on `key` is in flight, then checks `cond`
    /// against the visible state and, if it holds, sequences the commit in
    /// the same step (no await between the check and the append), so no
    /// other write to the key can come between them.
    async fn commit_if(&self, key: &[u8], cond: &WriteCond, muts: Vec<Mutation>) -> Result<ShardResp, IoError> {
        while self.writing.borrow().contains_key(key) {
            monoio::time::sleep(Duration::from_micros(200)).await;
        }
        let current = self.shard.get(T_OBJECTS, key).and_then(|e| ObjectSummary::decode(&e.summary));
        if let Some(fail) = cond.check(current.as_ref()) {
            return Ok(ShardResp::CondFailed(fail));
        }
        Ok(ShardResp::Seq(self.commit(muts).await?))
    }
}

/// Marks keys as being written for as long as it lives (dropped on error too).
struct WriteMarks<'a> {
    shard: &'a LocalShard,
    keys: Vec<Vec<u8>>,
}

impl<'a> WriteMarks<'a> {
    fn new(shard: &'a LocalShard, keys: Vec<Vec<u8>>) -> Self {
        let mut w = shard.writing.borrow_mut();
        for k in &keys {
            *w.entry(k.clone()).or_insert(0) += 1;
        }
        drop(w);
        WriteMarks { shard, keys }
    }
}

impl Drop for WriteMarks<'_> {
    fn drop(&mut self) {
        let mut w = self.shard.writing.borrow_mut();
        for k in &self.keys {
            if let Some(n) = w.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    w.remove(k);
                }
            }
        }
    }
}

/// A precondition on the current object at a key; ETags unquoted, `*`
/// standing for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCond {
    /// `If-None-Match`: refused when the object exists with one of these
    /// ETags (`*`: when it exists at all).
    NoneMatch(Vec<String>),
    /// `If-Match`: the object must exist with one of these ETags.
    Match(Vec<String>),
}

/// Why a conditional write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondFailure {
    /// The ETag matched (`NoneMatch`) or did not (`Match`).
    Failed,
    /// `Match` on a missing key.
    Missing,
}

impl WriteCond {
    pub fn check(&self, current: Option<&ObjectSummary>) -> Option<CondFailure> {
        let matches = |tags: &[String], s: &ObjectSummary| {
            let etag = s.etag();
            let etag = etag.trim_matches('"');
            tags.iter().any(|t| t == "*" || t == etag)
        };
        match (self, current) {
            (WriteCond::NoneMatch(_), None) => None,
            (WriteCond::NoneMatch(tags), Some(s)) => matches(tags, s).then_some(CondFailure::Failed),
            (WriteCond::Match(_), None) => Some(CondFailure::Missing),
            (WriteCond::Match(tags), Some(s)) => (!matches(tags, s)).then_some(CondFailure::Failed),
        }
    }
}

/// Depth of each core's inbound queue; a full queue makes callers wait.
pub const CROSS_CORE_QUEUE: usize = 1024;

pub enum ShardReq {
    WriteData(DataBuf),
    Commit(Vec<Mutation>),
    CommitIf { key: Vec<u8>, cond: WriteCond, muts: Vec<Mutation> },
    Get { table: u8, key: Vec<u8> },
    Load { table: u8, key: Vec<u8> },
    ReadExtent { extent: Extent, range: Range<u64> },
    Range { table: u8, prefix: Vec<u8>, after: Option<Vec<u8>>, limit: usize },
}

pub enum ShardResp {
    Extent(Extent),
    Seq(u64),
    Entry(Option<Entry>),
    Stored(Option<Stored>),
    Bytes(Vec<u8>),
    Entries(Vec<(Vec<u8>, Entry)>),
    CondFailed(CondFailure),
}

pub struct ShardMsg {
    shard: u32,
    req: ShardReq,
    reply: async_channel::Sender<Result<ShardResp, IoError>>,
}

pub type CoreSender = async_channel::Sender<ShardMsg>;
pub type CoreReceiver = async_channel::Receiver<ShardMsg>;

async fn exec(local: &LocalShard, req: ShardReq) -> Result<ShardResp, IoError> {
    let shard = &local.shard;
    Ok(match req {
        ShardReq::WriteData(buf) => ShardResp::Extent(shard.write_data(buf).await?),
        ShardReq::Commit(muts) => ShardResp::Seq(local.commit(muts).await?),
        ShardReq::CommitIf { key, cond, muts } => local.commit_if(&key, &cond, muts).await?,
        ShardReq::Get { table, key } => ShardResp::Entry(shard.get(table, &key)),
        ShardReq::Load { table, key } => ShardResp::Stored(shard.load(table, &key).await?),
        ShardReq::ReadExtent { extent, range } => {
            ShardResp::Bytes(shard.read_extent(&extent, range).await?)
        }
        ShardReq::Range { table, prefix, after, limit } => {
            ShardResp::Entries(shard.range(table, &prefix, after.as_deref(), limit))
        }
    })
}

/// The shards as one reactor sees them.
pub struct Shards {
    core: usize,
    /// Shards owned by this core, by global shard id.
    local: Vec<Option<Rc<LocalShard>>>,
    /// Owning core of each shard.
    owner: Vec<usize>,
    /// Inbound queue of each core.
    cores: Vec<CoreSender>,
}

fn unexpected() -> IoError {
    IoError::Io(std::io::Error::other("unexpected shard response"))
}

impl Shards {
    pub fn new(core: usize, local: Vec<Option<Rc<LocalShard>>>, owner: Vec<usize>, cores: Vec<CoreSender>) -> Self {
        debug_assert_eq!(local.len(), owner.len());
        Shards { core, local, owner, cores }
    }

    pub fn count(&self) -> u32 {
        self.owner.len() as u32
    }

    pub fn local(&self, shard: u32) -> Option<&Rc<LocalShard>> {
        self.local.get(shard as usize).and_then(|s| s.as_ref())
    }

    async fn call(&self, shard: u32, req: ShardReq) -> Result<ShardResp, IoError> {
        if let Some(s) = self.local(shard) {
            let s = s.clone();
            return exec(&s, req).await;
        }
        let core = *self.owner.get(shard as usize).ok_or_else(unexpected)?;
        debug_assert_ne!(core, self.core);
        let (tx, rx) = async_channel::bounded(1);
        self.cores[core]
            .send(ShardMsg { shard, req, reply: tx })
            .await
            .map_err(|_| IoError::ShardFailed)?;
        rx.recv().await.map_err(|_| IoError::ShardFailed)?
    }

    pub async fn write_data(&self, shard: u32, buf: DataBuf) -> Result<Extent, IoError> {
        match self.call(shard, ShardReq::WriteData(buf)).await? {
            ShardResp::Extent(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    pub async fn commit(&self, shard: u32, muts: Vec<Mutation>) -> Result<u64, IoError> {
        match self.call(shard, ShardReq::Commit(muts)).await? {
            ShardResp::Seq(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    /// Commits `muts` only if `cond` holds for the object at `key`, checked
    /// atomically with the commit on the shard's owning core.
    pub async fn commit_if(
        &self,
        shard: u32,
        key: Vec<u8>,
        cond: WriteCond,
        muts: Vec<Mutation>,
    ) -> Result<Result<u64, CondFailure>, IoError> {
        match self.call(shard, ShardReq::CommitIf { key, cond, muts }).await? {
            ShardResp::Seq(s) => Ok(Ok(s)),
            ShardResp::CondFailed(f) => Ok(Err(f)),
            _ => Err(unexpected()),
        }
    }

    pub async fn get(&self, shard: u32, table: u8, key: Vec<u8>) -> Result<Option<Entry>, IoError> {
        if let Some(s) = self.local(shard) {
            return Ok(s.shard.get(table, &key));
        }
        match self.call(shard, ShardReq::Get { table, key }).await? {
            ShardResp::Entry(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    pub async fn load(&self, shard: u32, table: u8, key: Vec<u8>) -> Result<Option<Stored>, IoError> {
        match self.call(shard, ShardReq::Load { table, key }).await? {
            ShardResp::Stored(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    pub async fn read_extent(&self, shard: u32, extent: Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        match self.call(shard, ShardReq::ReadExtent { extent, range }).await? {
            ShardResp::Bytes(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    pub async fn range(
        &self,
        shard: u32,
        table: u8,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, IoError> {
        if let Some(s) = self.local(shard) {
            return Ok(s.shard.range(table, &prefix, after.as_deref(), limit));
        }
        match self.call(shard, ShardReq::Range { table, prefix, after, limit }).await? {
            ShardResp::Entries(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }
}

/// Most calls from other cores executing at once on this core. Past it the
/// inbound queue fills and callers wait: backpressure reaches the senders
/// instead of piling up tasks (and their buffers) here.
pub const MAX_INBOUND_IN_FLIGHT: usize = 256;

/// Serves other cores' calls on this core's shards until every sender is gone.
pub async fn serve(rx: CoreReceiver, local: Vec<Option<Rc<LocalShard>>>) {
    let (tokens_tx, tokens_rx) = async_channel::bounded::<()>(MAX_INBOUND_IN_FLIGHT);
    for _ in 0..MAX_INBOUND_IN_FLIGHT {
        let _ = tokens_tx.try_send(());
    }
    while let Ok(()) = tokens_rx.recv().await {
        let Ok(msg) = rx.recv().await else { break };
        let Some(shard) = local.get(msg.shard as usize).and_then(|s| s.clone()) else {
            let _ = msg.reply.send(Err(IoError::ShardFailed)).await;
            let _ = tokens_tx.try_send(());
            continue;
        };
        let tokens = tokens_tx.clone();
        monoio::spawn(async move {
            let r = exec(&shard, msg.req).await;
            let _ = msg.reply.send(r).await;
            let _ = tokens.try_send(());
        });
    }
}
