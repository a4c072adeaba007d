//! Access to every shard of the node from any reactor.
//!
//! A shard is owned by one reactor, which alone touches its files and index.
//! A call for a local shard runs directly; a call for another core's shard is
//! sent over that core's bounded channel and executed there by `serve`, and the
//! answer comes back on a one-shot channel. Bodies travel as owned buffers.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use tessera_io::{AlignedBuf, Body, DataBuf, Entry, Event, Extent, IoError, Mutation, Shard, Stored};

use crate::hotcache::{CachedObject, HotCache};

/// Bytes read from an extent to be sent: in their O_DIRECT buffer (the
/// range of it that was asked for) or in a buffer of their own.
pub enum ReadBytes {
    Vec(Vec<u8>),
    Aligned(AlignedBuf, Range<usize>),
}

impl ReadBytes {
    pub fn len(&self) -> usize {
        match self {
            ReadBytes::Vec(v) => v.len(),
            ReadBytes::Aligned(_, at) => at.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most records of one body a cache fill reads at the same time.
const FILL_READS_IN_FLIGHT: usize = 8;

/// A key of a shard table: what locks and write marks are about.
pub type TableKey = (u8, Vec<u8>);

/// A shard and what its owning core tracks beside it: the keys with a
/// commit in flight and the keys held by a running transaction, so a
/// transaction sees every earlier write to its keys and nothing writes them
/// until it ends.
pub struct LocalShard {
    pub shard: Shard,
    /// Keys with a plain commit in flight (appended, not yet acknowledged).
    /// (Both maps foldhash, randomly seeded: keys are clients' object keys.)
    writing: RefCell<HashMap<TableKey, u32, foldhash::fast::RandomState>>,
    /// Keys held (or being acquired) by a transaction.
    locked: RefCell<HashMap<TableKey, (), foldhash::fast::RandomState>>,
    /// Fires when a write mark or a lock is released.
    released: Event,
    /// The owning reactor's hot-object cache (see `hotcache`).
    cache: Rc<HotCache>,
    /// Format 2: the lane's other online members, which take every data
    /// write and commit this shard takes (see `lanes`). None on format 1,
    /// until a cluster attaches members on other nodes (`cluster_lanes`).
    /// Each call takes the lane it starts with to its end.
    mirrors: RefCell<Option<Rc<crate::lanes::Mirrors>>>,
    /// The owning reactor's notification queue clock and worker wake-up
    /// (shared by its shards; see `notify`).
    pub notify: Rc<crate::notify::CoreQueue>,
    /// The buckets whose commits `commit_marked` indexes (the node's set,
    /// kept by the bucket registry).
    ruled: Arc<crate::lifecycle::index::Ruled>,
    /// Commits in flight (derived, not yet applied) by epoch, and the
    /// epoch new commits join: see `drain_commits`.
    in_flight: [Cell<u64>; 2],
    epoch: Cell<usize>,
    /// Takes no writes through the lane API (`write_data`, `commit`):
    /// another node acts for this node's partitions (`takeover`); its
    /// member calls reach the bare shard.
    fenced: Cell<bool>,
}

impl LocalShard {
    /// A shard without a cache (tests).
    pub fn new(shard: Shard) -> Self {
        Self::with_cache(shard, Rc::new(HotCache::new(0, 0)))
    }

    pub fn with_cache(shard: Shard, cache: Rc<HotCache>) -> Self {
        LocalShard {
            shard,
            writing: RefCell::new(HashMap::default()),
            locked: RefCell::new(HashMap::default()),
            released: Event::default(),
            cache,
            mirrors: RefCell::new(None),
            notify: Rc::default(),
            ruled: Arc::default(),
            in_flight: [Cell::new(0), Cell::new(0)],
            epoch: Cell::new(0),
            fenced: Cell::new(false),
        }
    }

    /// Indexes the commits of the buckets in `ruled` (the node's set).
    pub fn with_ruled(mut self, ruled: Arc<crate::lifecycle::index::Ruled>) -> Self {
        self.ruled = ruled;
        self
    }

    /// Waits until every commit derived before this call is applied. The
    /// lifecycle backfill calls it after it saw a bucket's configuration:
    /// a commit derived earlier may have skipped the index and not be
    /// visible yet to the backfill's reads; every later one is indexed.
    /// (Two epochs: new commits join the other one while this one drains.)
    pub async fn drain_commits(&self) {
        let other = 1 - self.epoch.get();
        // A drain still running elsewhere left commits in the other epoch.
        while self.in_flight[other].get() > 0 {
            self.released.listen().await;
        }
        let old = self.epoch.replace(other);
        while self.in_flight[old].get() > 0 {
            self.released.listen().await;
        }
    }

    /// Shares the reactor's notification queue state with this shard.
    pub fn with_notify(mut self, notify: Rc<crate::notify::CoreQueue>) -> Self {
        self.notify = notify;
        self
    }

    /// Makes this shard the read primary of a format 2 lane.
    pub fn with_mirrors(self, mirrors: Option<Rc<crate::lanes::Mirrors>>) -> Self {
        *self.mirrors.borrow_mut() = mirrors;
        self
    }

    /// Makes this shard the primary of a lane from now on (`cluster_lanes`:
    /// members on other nodes), or a lone shard again (`None`). Calls in
    /// flight finish with the lane they started with.
    pub(crate) fn set_mirrors(&self, mirrors: Option<Rc<crate::lanes::Mirrors>>) {
        match &mirrors {
            Some(m) => crate::lanes::register(&self.shard, m),
            None => crate::lanes::unregister(&self.shard),
        }
        *self.mirrors.borrow_mut() = mirrors;
    }

    /// Detaches this shard's lane unless another took its place meanwhile
    /// (a foster lane retired after its requests in flight finished).
    pub(crate) fn retire_mirrors(&self) {
        if let Some(m) = self.mirrors.borrow_mut().take() {
            crate::lanes::unregister_if(&self.shard, &m);
        }
    }

    /// The lane this shard is the read primary of (format 2, or a cluster lane).
    pub(crate) fn mirrors(&self) -> Option<Rc<crate::lanes::Mirrors>> {
        self.mirrors.borrow().clone()
    }

    /// Format 2: the lane's other online members (their shards), empty on
    /// format 1.
    pub fn mirror_shards(&self) -> Vec<tessera_io::Shard> {
        self.mirrors().map_or_else(Vec::new, |m| m.members.iter().filter_map(|(_, h)| h.local().cloned()).collect())
    }

    /// Format 2: this lane's shard on disk `disk`, when it is on this core
    /// (the primary or a local member), for a remote caller.
    pub(crate) fn hosted(&self, disk: usize) -> Option<Shard> {
        let m = self.mirrors()?;
        if m.primary_disk == disk {
            return Some(self.shard.clone());
        }
        m.members.iter().find(|(d, _)| *d == disk).and_then(|(_, h)| h.local().cloned())
    }

    /// Refuses (or takes again) writes through the lane API (`takeover`).
    pub(crate) fn set_fenced(&self, fenced: bool) {
        self.fenced.set(fenced);
    }

    /// `Shard::write_data` through the lane (every online member on format 2).
    pub async fn write_data(&self, buf: DataBuf) -> Result<Extent, IoError> {
        if self.fenced.get() {
            return Err(IoError::BelowQuorum);
        }
        crate::lanes::write_data(&self.shard, self.mirrors().as_deref(), buf).await
    }

    /// `Shard::load` for a read that sends the body (GET, HEAD), through
    /// the hot-object cache: a hit is the entry of the key's current
    /// commit (see `hotcache` for why it cannot be stale), its body
    /// whole, shared with the cache (`ReadStored::cached`, not copied). On
    /// a miss an inline body is cached as read; an extent body small
    /// enough is read whole and cached when `fill` (a whole-object GET,
    /// which reads all of it anyway), and then comes back the same way.
    /// Otherwise the answer is `load`'s.
    pub async fn load_for_read(self: &Rc<Self>, table: u8, key: &[u8], fill: bool) -> Result<Option<ReadStored>, IoError> {
        let uncached = |stored: Option<Stored>| stored.map(|stored| ReadStored { stored, cached: None });
        if !self.cache.enabled() {
            return crate::stripes_io::load(&self.shard, table, key).await.map(uncached);
        }
        let Some(entry) = self.shard.get(table, key) else { return Ok(None) };
        let ck = (self.shard.id(), table, key.to_vec());
        if let Some(o) = self.cache.get(&ck, entry.seq) {
            return Ok(Some(ReadStored::of(o)));
        }
        let Some(stored) = crate::stripes_io::load(&self.shard, table, key).await? else { return Ok(None) };
        let Stored { seq, summary, meta, body } = stored;
        let data = match body {
            // The body read from the commit entry is ours: cached as it is.
            Body::Inline(d) if self.cache.admits_size(d.len() as u64) => d,
            Body::Extents(ex) if fill && self.cache.admits_size(ex.iter().map(|e| e.len).sum()) => {
                // The body's records are read together (up to
                // `FILL_READS_IN_FLIGHT` at a time): a 1 MiB object is 4
                // records (128, 256, 512, 128 KiB), and reading them one
                // after another cost 4 disk round trips (issue 17).
                use futures_util::StreamExt;
                let mut reads = futures_util::stream::iter(ex.iter().map(|e| self.read_extent_buf(e, 0..e.len)))
                    .buffered(FILL_READS_IN_FLIGHT);
                let mut parts = Vec::with_capacity(ex.len());
                for e in ex.iter() {
                    let Some(r) = reads.next().await else { break };
                    match r {
                        Ok(b) => parts.push(b),
                        // A striped piece below k good blocks: answered
                        // now (500), before any of the body is sent.
                        Err(err @ IoError::Corrupt { .. }) if e.segment == crate::stripes::VIRTUAL_SEGMENT => {
                            return Err(err)
                        }
                        // Moved, or an error the streaming path will meet and report.
                        Err(_) => {
                            drop(reads);
                            return Ok(uncached(Some(Stored { seq, summary, meta, body: Body::Extents(ex) })));
                        }
                    }
                }
                drop(reads);
                // One copy, out of the O_DIRECT buffers into the body.
                let mut data = Vec::with_capacity(parts.iter().map(ReadBytes::len).sum());
                for p in &parts {
                    match p {
                        ReadBytes::Vec(v) => data.extend_from_slice(v),
                        ReadBytes::Aligned(buf, at) => data.extend_from_slice(&buf.as_slice()[at.clone()]),
                    }
                }
                data
            }
            body => return Ok(uncached(Some(Stored { seq, summary, meta, body }))),
        };
        let obj = CachedObject { seq, summary, meta, data: data.into() };
        self.cache.insert(ck, obj.clone());
        Ok(Some(ReadStored::of(obj)))
    }

    /// `read_extent` for bytes that are sent on: a plain record's come
    /// in the O_DIRECT buffer they were read into, uncopied; a striped
    /// piece's as `read_extent` decodes them.
    pub async fn read_extent_buf(self: &Rc<Self>, e: &Extent, range: Range<u64>) -> Result<ReadBytes, IoError> {
        if e.segment == crate::stripes::VIRTUAL_SEGMENT {
            return self.read_extent(e, range).await.map(ReadBytes::Vec);
        }
        let (buf, at) = self.shard.read_extent_buf(e, range).await?;
        Ok(ReadBytes::Aligned(buf, at))
    }

    /// `Shard::read_extent` through the lane (a striped piece is read
    /// from its members' blocks); blocks found bad are repaired in the
    /// background, under the record key's lock.
    pub async fn read_extent(self: &Rc<Self>, e: &Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        let (bytes, job) = crate::stripes_io::read_extent(&self.shard, e, range).await?;
        if let Some(job) = job {
            let local = self.clone();
            monoio::spawn(async move {
                let Some(o) = job.piece.origin.clone() else { return };
                let _locks = local.lock(vec![(o.table, o.key)]).await;
                if let Err(e) = crate::stripes_io::repair(&local.shard, job).await {
                    tracing::error!(error = %e, "read repair failed; the block stays lacking");
                }
            });
        }
        Ok(bytes)
    }

    fn keys_of(muts: &[Mutation]) -> Vec<TableKey> {
        muts.iter()
            .map(|m| match m {
                Mutation::Put { table, key, .. } | Mutation::Delete { table, key } => (*table, key.clone()),
            })
            .collect()
    }

    /// A plain commit: waits while a transaction holds one of its keys,
    /// then commits with the keys marked as being written.
    async fn commit(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        let keys = Self::keys_of(&muts);
        loop {
            let held = {
                let locked = self.locked.borrow();
                keys.iter().any(|k| locked.contains_key(k))
            };
            if !held {
                break;
            }
            self.released.listen().await;
        }
        self.commit_marked(keys, muts).await
    }

    /// Every commit of the node's tables comes through here: the
    /// lifecycle index entries its mutations imply join it (same commit).
    async fn commit_marked(&self, keys: Vec<TableKey>, mut muts: Vec<Mutation>) -> Result<u64, IoError> {
        // No await between the derive and joining the epoch: a
        // `drain_commits` waits for this commit if it began after it.
        if self.fenced.get() {
            return Err(IoError::BelowQuorum);
        }
        crate::lifecycle::index::derive(&self.shard, &self.ruled, &mut muts);
        let _marks = WriteMarks::new(self, keys);
        crate::lanes::commit(&self.shard, self.mirrors().as_deref(), muts).await
    }

    /// Commits from inside a transaction: its own locks do not block it.
    pub async fn commit_in_txn(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        let keys = Self::keys_of(&muts);
        self.commit_marked(keys, muts).await
    }

    /// Takes the locks on `keys` (in order, so two transactions never wait
    /// on each other), then waits until no plain commit on them is in
    /// flight. New plain commits on a locked key wait for the release, so a
    /// stream of writers cannot starve the transaction.
    pub(crate) async fn lock(self: &Rc<Self>, mut keys: Vec<TableKey>) -> TxnLocks {
        keys.sort();
        keys.dedup();
        let mut held = TxnLocks { shard: self.clone(), keys: Vec::with_capacity(keys.len()) };
        for k in keys {
            while self.locked.borrow().contains_key(&k) {
                self.released.listen().await;
            }
            self.locked.borrow_mut().insert(k.clone(), ());
            held.keys.push(k);
        }
        loop {
            let busy = {
                let w = self.writing.borrow();
                held.keys.iter().any(|k| w.contains_key(k))
            };
            if !busy {
                return held;
            }
            self.released.listen().await;
        }
    }
}

/// A transaction's locks; released when dropped (on error too).
pub struct TxnLocks {
    shard: Rc<LocalShard>,
    keys: Vec<TableKey>,
}

impl Drop for TxnLocks {
    fn drop(&mut self) {
        let mut l = self.shard.locked.borrow_mut();
        for k in &self.keys {
            l.remove(k);
        }
        drop(l);
        self.shard.released.notify_all();
    }
}

/// Marks keys as being written, and the commit in flight in its epoch,
/// for as long as it lives (dropped on error too).
struct WriteMarks<'a> {
    shard: &'a LocalShard,
    keys: Vec<TableKey>,
    epoch: usize,
}

impl<'a> WriteMarks<'a> {
    fn new(shard: &'a LocalShard, keys: Vec<TableKey>) -> Self {
        let mut w = shard.writing.borrow_mut();
        for k in &keys {
            *w.entry(k.clone()).or_insert(0) += 1;
        }
        drop(w);
        let epoch = shard.epoch.get();
        shard.in_flight[epoch].set(shard.in_flight[epoch].get() + 1);
        WriteMarks { shard, keys, epoch }
    }
}

impl Drop for WriteMarks<'_> {
    fn drop(&mut self) {
        // The commit is applied (or failed): its keys' cache entries go.
        // (A lookup checks the commit's seq anyway; this frees them now.)
        let id = self.shard.shard.id();
        for (table, key) in &self.keys {
            self.shard.cache.invalidate(&(id, *table, key.clone()));
        }
        let mut w = self.shard.writing.borrow_mut();
        for k in &self.keys {
            if let Some(n) = w.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    w.remove(k);
                }
            }
        }
        drop(w);
        let n = &self.shard.in_flight[self.epoch];
        n.set(n.get() - 1);
        self.shard.released.notify_all();
    }
}

/// The body of a transaction, built on the caller's core and run on the
/// shard's owning core (so it may capture only `Send` data; the future it
/// returns runs there and need not be `Send`).
type TxnFn = Box<dyn FnOnce(Rc<LocalShard>) -> Pin<Box<dyn Future<Output = Box<dyn Any + Send>>>> + Send>;

/// Depth of each core's inbound queue; a full queue makes callers wait.
pub const CROSS_CORE_QUEUE: usize = 1024;

pub enum ShardReq {
    WriteData(DataBuf),
    Commit(Vec<Mutation>),
    Txn { keys: Vec<TableKey>, f: TxnFn },
    Get { table: u8, key: Vec<u8> },
    Load { table: u8, key: Vec<u8> },
    LoadForRead { table: u8, key: Vec<u8>, fill: bool },
    ReadExtent { extent: Extent, range: Range<u64> },
    ReadExtentBuf { extent: Extent, range: Range<u64> },
    Range { table: u8, prefix: Vec<u8>, after: Option<Vec<u8>>, limit: usize },
    /// A remote lane primary's call on one disk's shard of this lane
    /// (`holder::host`): the answer payload.
    Hosted { disk: usize, call: crate::holder::wire::Call },
    /// A cluster lane owner's call on the member shard this node holds
    /// for it (`members`); routed to a core by the owner's shard index.
    Member { owner: [u8; 16], index: u32, call: crate::holder::wire::Call },
}

/// What `load_for_read` found: the record, and, for an object the
/// hot-object cache holds (or just took), its whole body shared with the
/// cache, uncopied; `stored.body` is then empty.
pub struct ReadStored {
    pub stored: Stored,
    pub cached: Option<bytes::Bytes>,
}

impl ReadStored {
    fn of(o: CachedObject) -> Self {
        ReadStored {
            stored: Stored { seq: o.seq, summary: o.summary, meta: o.meta, body: Body::Inline(Vec::new()) },
            cached: Some(o.data),
        }
    }
}

pub enum ShardResp {
    Extent(Extent),
    Seq(u64),
    Entry(Option<Entry>),
    Stored(Option<Stored>),
    ReadStored(Option<ReadStored>),
    Bytes(Vec<u8>),
    Read(ReadBytes),
    Entries(Vec<(Vec<u8>, Entry)>),
    Txn(Box<dyn Any + Send>),
}

pub struct ShardMsg {
    shard: u32,
    req: ShardReq,
    /// The answer, back to the calling core: a oneshot (one allocation,
    /// an atomic state) rather than a channel per call.
    reply: tokio::sync::oneshot::Sender<Result<ShardResp, IoError>>,
}

pub type CoreSender = async_channel::Sender<ShardMsg>;
pub type CoreReceiver = async_channel::Receiver<ShardMsg>;

async fn exec(local: &Rc<LocalShard>, req: ShardReq) -> Result<ShardResp, IoError> {
    let shard = &local.shard;
    Ok(match req {
        ShardReq::WriteData(buf) => ShardResp::Extent(local.write_data(buf).await?),
        ShardReq::Commit(muts) => ShardResp::Seq(local.commit(muts).await?),
        ShardReq::Txn { keys, f } => {
            let _locks = local.lock(keys).await;
            // Extents the transaction reads stay committable to its end
            // (compaction defers retiring what it empties meanwhile).
            let _hold = local.shard.hold();
            ShardResp::Txn(f(local.clone()).await)
        }
        ShardReq::Get { table, key } => ShardResp::Entry(shard.get(table, &key)),
        ShardReq::Load { table, key } => ShardResp::Stored(crate::stripes_io::load(shard, table, &key).await?),
        ShardReq::LoadForRead { table, key, fill } => ShardResp::ReadStored(local.load_for_read(table, &key, fill).await?),
        ShardReq::ReadExtent { extent, range } => ShardResp::Bytes(local.read_extent(&extent, range).await?),
        ShardReq::ReadExtentBuf { extent, range } => ShardResp::Read(local.read_extent_buf(&extent, range).await?),
        ShardReq::Range { table, prefix, after, limit } => {
            ShardResp::Entries(shard.range(table, &prefix, after.as_deref(), limit))
        }
        ShardReq::Hosted { disk, call } => {
            let raw = local.hosted(disk).ok_or(IoError::ShardFailed)?;
            ShardResp::Bytes(crate::holder::host::run(&raw, call).await?)
        }
        // Served by `serve` before a shard is looked up (it needs the reactor's context).
        ShardReq::Member { .. } => return Err(unexpected()),
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

    /// Requests waiting in each core's inbound queue now (`/metrics`).
    pub fn queue_depths(&self) -> Vec<usize> {
        self.cores.iter().map(|c| c.len()).collect()
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
        let core = if crate::takeover::is_foster(shard) {
            // A foster shard (`takeover`) lives on the core of this node's
            // member shard of that lane.
            let routed = crate::takeover::foster_index(shard) % self.count().max(1);
            let core = *self.owner.get(routed as usize).ok_or_else(unexpected)?;
            if core == self.core {
                // Not open (yet, or any more): the acting node is not ready.
                let l = crate::takeover::foster(shard).ok_or(IoError::BelowQuorum)?;
                return exec(&l, req).await;
            }
            core
        } else {
            *self.owner.get(shard as usize).ok_or_else(unexpected)?
        };
        if core == self.core {
            // Ours but not open: the shard is offline (it failed to open).
            return Err(IoError::ShardFailed);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cores[core]
            .send(ShardMsg { shard, req, reply: tx })
            .await
            .map_err(|_| IoError::ShardFailed)?;
        rx.await.map_err(|_| IoError::ShardFailed)?
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

    /// Runs `f` as a transaction on the shard's owning core, with `keys`
    /// locked: it sees every write to them acknowledged before it started,
    /// and no other write to them happens until it ends. `f` reads with
    /// `LocalShard::shard` and commits with `LocalShard::commit_in_txn`.
    pub async fn txn<T, F, Fut>(&self, shard: u32, keys: Vec<TableKey>, f: F) -> Result<T, IoError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<LocalShard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let f: TxnFn = Box::new(move |local| {
            Box::pin(async move { Box::new(f(local).await) as Box<dyn Any + Send> })
        });
        match self.call(shard, ShardReq::Txn { keys, f }).await? {
            ShardResp::Txn(out) => out.downcast::<T>().map(|b| *b).map_err(|_| unexpected()),
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

    /// `load` for GET and HEAD, through the owning core's hot-object cache
    /// (see `LocalShard::load_for_read`).
    pub async fn load_for_read(&self, shard: u32, table: u8, key: Vec<u8>, fill: bool) -> Result<Option<ReadStored>, IoError> {
        match self.call(shard, ShardReq::LoadForRead { table, key, fill }).await? {
            ShardResp::ReadStored(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    pub async fn read_extent(&self, shard: u32, extent: Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        match self.call(shard, ShardReq::ReadExtent { extent, range }).await? {
            ShardResp::Bytes(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    /// `read_extent` for a response: the bytes of a plain record stay in
    /// the buffer they were read into (see `Conn::write_read`).
    pub async fn read_extent_buf(&self, shard: u32, extent: Extent, range: Range<u64>) -> Result<ReadBytes, IoError> {
        match self.call(shard, ShardReq::ReadExtentBuf { extent, range }).await? {
            ShardResp::Read(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    /// Runs a remote lane primary's call on disk `disk`'s shard of lane
    /// `shard`, on its owning core (see `holder::host::NodeHost`).
    pub async fn hosted(&self, shard: u32, disk: usize, call: crate::holder::wire::Call) -> Result<Vec<u8>, IoError> {
        match self.call(shard, ShardReq::Hosted { disk, call }).await? {
            ShardResp::Bytes(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    /// Runs a cluster lane owner's call on this node's member shard for
    /// its lane `index` (`members`), on the core that owns this node's
    /// shard `index % count`.
    pub async fn member(&self, owner: [u8; 16], index: u32, call: crate::holder::wire::Call) -> Result<Vec<u8>, IoError> {
        let routed = index % self.count().max(1);
        let core = *self.owner.get(routed as usize).ok_or_else(unexpected)?;
        if core == self.core {
            let ctx = MEMBER_CTX.with(|c| c.borrow().clone()).ok_or(IoError::ShardFailed)?;
            return crate::members::serve(&ctx, owner, index, call).await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cores[core]
            .send(ShardMsg { shard: routed, req: ShardReq::Member { owner, index, call }, reply: tx })
            .await
            .map_err(|_| IoError::ShardFailed)?;
        match rx.await.map_err(|_| IoError::ShardFailed)?? {
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

thread_local! {
    /// This reactor's context, once it is built: member shards of other
    /// nodes' lanes are opened with it (`members`).
    static MEMBER_CTX: RefCell<Option<Rc<crate::server::Ctx>>> = const { RefCell::new(None) };
}

/// Lets this reactor serve member calls of cluster lanes (`members`).
pub fn set_member_ctx(ctx: &Rc<crate::server::Ctx>) {
    MEMBER_CTX.with(|c| *c.borrow_mut() = Some(ctx.clone()));
}

/// Ends `set_member_ctx` (the reactor stops).
pub fn clear_member_ctx() {
    MEMBER_CTX.with(|c| c.borrow_mut().take());
}

/// Serves other cores' calls on this core's shards until every sender is gone.
pub async fn serve(rx: CoreReceiver, local: Vec<Option<Rc<LocalShard>>>) {
    let (tokens_tx, tokens_rx) = async_channel::bounded::<()>(MAX_INBOUND_IN_FLIGHT);
    for _ in 0..MAX_INBOUND_IN_FLIGHT {
        let _ = tokens_tx.try_send(());
    }
    while let Ok(()) = tokens_rx.recv().await {
        let Ok(msg) = rx.recv().await else { break };
        if let ShardReq::Member { owner, index, call } = msg.req {
            let tokens = tokens_tx.clone();
            monoio::spawn(Box::pin(async move {
                let r = match MEMBER_CTX.with(|c| c.borrow().clone()) {
                    Some(ctx) => crate::members::serve(&ctx, owner, index, call).await.map(ShardResp::Bytes),
                    None => Err(IoError::ShardFailed),
                };
                let _ = msg.reply.send(r);
                let _ = tokens.try_send(());
            }));
            continue;
        }
        let found = match crate::takeover::is_foster(msg.shard) {
            true => crate::takeover::foster(msg.shard),
            false => local.get(msg.shard as usize).and_then(|s| s.clone()),
        };
        let Some(shard) = found else {
            let e = if crate::takeover::is_foster(msg.shard) { IoError::BelowQuorum } else { IoError::ShardFailed };
            let _ = msg.reply.send(Err(e));
            let _ = tokens_tx.try_send(());
            continue;
        };
        let tokens = tokens_tx.clone();
        // Boxed: `exec`'s future is as large as its largest arm, and a task
        // moves its future by value when spawned and when it completes
        // (three copies of it per call); a box is moved as one pointer.
        monoio::spawn(Box::pin(async move {
            let r = exec(&shard, msg.req).await;
            let _ = msg.reply.send(r);
            let _ = tokens.try_send(());
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;

    use tessera_io::{Body, Mutation, Shard, ShardOptions};

    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(f)
    }

    fn put(key: &[u8]) -> Mutation {
        Mutation::Put { table: 1, key: key.to_vec(), summary: vec![], meta: vec![], body: Body::Inline(vec![]) }
    }

    async fn local(dir: &std::path::Path) -> Rc<LocalShard> {
        Rc::new(LocalShard::new(Shard::open(dir, 0, ShardOptions::default()).await.expect("open")))
    }

    /// A plain commit on a locked key waits until the transaction ends; a
    /// commit on another key does not.
    #[test]
    fn plain_commits_wait_for_a_transaction_on_their_key() {
        let dir = tempfile::tempdir().unwrap();
        run(async {
            let l = local(dir.path()).await;
            let order = Rc::new(RefCell::new(Vec::new()));
            let locks = l.lock(vec![(1, b"upload".to_vec())]).await;
            let (l2, o2) = (l.clone(), order.clone());
            let blocked = monoio::spawn(async move {
                l2.commit(vec![put(b"upload")]).await.unwrap();
                o2.borrow_mut().push("plain");
            });
            let (l3, o3) = (l.clone(), order.clone());
            let free = monoio::spawn(async move {
                l3.commit(vec![put(b"other")]).await.unwrap();
                o3.borrow_mut().push("other");
            });
            free.await;
            monoio::time::sleep(Duration::from_millis(20)).await;
            order.borrow_mut().push("txn ends");
            drop(locks);
            blocked.await;
            assert_eq!(*order.borrow(), ["other", "txn ends", "plain"]);
        });
    }

    /// A transaction starts only after the plain commits on its keys that
    /// were in flight are acknowledged, so it sees them.
    #[test]
    fn transactions_see_every_commit_in_flight_on_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        run(async {
            let l = local(dir.path()).await;
            let l2 = l.clone();
            let writer = monoio::spawn(async move { l2.commit(vec![put(b"k")]).await.unwrap() });
            // Let the write start (append + sync in flight), then lock.
            monoio::time::sleep(Duration::from_micros(1)).await;
            let _locks = l.lock(vec![(1, b"k".to_vec())]).await;
            assert!(l.shard.get(1, b"k").is_some(), "the transaction started before the write it raced was visible");
            writer.await;
        });
    }

    /// `drain_commits` returns only once every commit that began before it
    /// is applied (what the lifecycle backfill relies on), while commits
    /// begun meanwhile do not hold it up forever.
    #[test]
    fn drain_commits_waits_for_the_commits_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        run(async {
            let l = local(dir.path()).await;
            let writers: Vec<_> = (0..4u8)
                .map(|i| {
                    let l2 = l.clone();
                    monoio::spawn(async move { l2.commit(vec![put(&[b'a', i])]).await.unwrap() })
                })
                .collect();
            // Let the writes start (derived, append in flight), then drain.
            tessera_io::sim::yield_now().await;
            assert!(l.in_flight.iter().map(Cell::get).sum::<u64>() > 0, "the writes are in flight");
            let l3 = l.clone();
            let later = monoio::spawn(async move { l3.commit(vec![put(b"later")]).await.unwrap() });
            l.drain_commits().await;
            for i in 0..4u8 {
                assert!(l.shard.get(1, &[b'a', i]).is_some(), "drain returned before commit {i} was applied");
            }
            // A second drain right away: the other epoch is reused.
            l.drain_commits().await;
            later.await;
            assert!(l.shard.get(1, b"later").is_some());
            for w in writers {
                w.await;
            }
        });
    }
}
