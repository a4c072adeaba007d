//! A simulated disk for deterministic tests of the engine (in the manner
//! of TigerBeetle's VOPR and FoundationDB's simulation).
//!
//! Every file keeps two images: what a read returns now (`volatile`) and
//! what survives a power cut (`durable`), with the blocks written since the
//! last sync marked dirty. Directory entries likewise: creates, renames and
//! removes become durable only when their directory is synced. Operations
//! do not complete when called: they wait until the test's driver
//! ([`SimDisk::step`]) completes one of the pending operations, chosen by a
//! seeded generator, so completions are reordered, and faults can be
//! injected on the way: EIO on reads of latent sector errors, EIO and
//! ENOSPC on writes, misdirected writes, fsync failures that drop or keep
//! the dirty blocks at random (as Linux does after a failed fsync). A
//! [`SimDisk::crash`] produces the image a power cut leaves: each dirty
//! block kept, lost, or torn at 512-byte sectors (each old, new or
//! garbage: a torn rewrite loses what the block held); a prefix of the unsynced
//! directory operations applied.
//!
//! Everything runs on one thread, so with the same seed and the same
//! workload a run replays exactly.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::buf::AlignedBuf;
use crate::format::BLOCK;
use crate::storage::OpenMode;

/// A small seeded generator (xorshift64*), so runs replay from their seed.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p_per_million / 10^6`.
    pub fn chance(&mut self, p_per_million: u32) -> bool {
        self.below(1_000_000) < p_per_million as u64
    }
}

/// Fault rates, in parts per million of operations.
#[derive(Clone, Debug, Default)]
pub struct SimFaults {
    pub read_eio: u32,
    pub write_eio: u32,
    pub sync_eio: u32,
    pub misdirected_write: u32,
    /// Total bytes the disk holds; writes past it fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
}

#[derive(Default)]
struct Image {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    /// Blocks written since the last sync.
    dirty: BTreeSet<u64>,
}

type ImageRef = Rc<RefCell<Image>>;

#[derive(Clone)]
enum DirOp {
    Link(PathBuf, ImageRef),
    Unlink(PathBuf),
}

enum OpKind {
    Read { image: ImageRef, path: PathBuf, buf: AlignedBuf, pos: u64, len: usize },
    /// `dsync`: the file was opened with O_DSYNC; the written blocks are
    /// durable when the write completes (or, failing, may or may not be).
    Write { image: ImageRef, buf: AlignedBuf, pos: u64, segment_file: bool, dsync: bool },
    Sync { image: Option<ImageRef>, dir: Option<PathBuf> },
    Truncate { image: ImageRef, len: u64 },
    /// fallocate: the file grows to `to` with zeros, never overwriting.
    /// Only its length changes, and only in the volatile image: the new
    /// length reaches the durable one with the blocks written there (a
    /// power cut before keeps the file shorter, never garbage).
    Allocate { image: ImageRef, to: u64 },
    Meta,
}

enum Outcome {
    Buf(io::Result<AlignedBuf>),
    Unit(io::Result<()>),
}

struct Pending {
    id: u64,
    kind: OpKind,
}

struct Slot {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct State {
    /// Namespace as the running system sees it.
    names: BTreeMap<PathBuf, ImageRef>,
    /// Namespace as it is on stable storage.
    durable_names: BTreeMap<PathBuf, ImageRef>,
    /// Directory operations not yet made durable, in order, per directory.
    unsynced: Vec<(PathBuf, DirOp)>,
    dirs: BTreeSet<PathBuf>,
    pending: Vec<Pending>,
    slots: BTreeMap<u64, Slot>,
    next_id: u64,
    now_ms: u64,
    sleepers: Vec<(u64, Waker)>,
    latent: BTreeSet<(PathBuf, u64)>,
    /// Counters of injected faults, for the test's report.
    injected: u64,
}

/// The simulated disk; see the module docs.
pub struct SimDisk {
    state: RefCell<State>,
    rng: RefCell<SimRng>,
    faults: SimFaults,
    /// While false, the driver completes operations without faults.
    faults_on: Cell<bool>,
}

impl SimDisk {
    pub fn new(seed: u64, faults: SimFaults) -> Rc<SimDisk> {
        Rc::new(SimDisk {
            state: RefCell::new(State::default()),
            rng: RefCell::new(SimRng::new(seed)),
            faults,
            faults_on: Cell::new(true),
        })
    }

    pub fn set_faults(&self, on: bool) {
        self.faults_on.set(on);
    }

    pub fn faults_injected(&self) -> u64 {
        self.state.borrow().injected
    }

    pub fn now_ms(&self) -> u64 {
        self.state.borrow().now_ms
    }

    /// Operations waiting for the driver.
    pub fn pending(&self) -> usize {
        self.state.borrow().pending.len()
    }

    fn chance(&self, ppm: u32) -> bool {
        self.faults_on.get() && ppm > 0 && self.rng.borrow_mut().chance(ppm)
    }

    fn submit(&self, kind: OpKind) -> OpFuture<'_> {
        let mut s = self.state.borrow_mut();
        let id = s.next_id;
        s.next_id += 1;
        s.pending.push(Pending { id, kind });
        s.slots.insert(id, Slot { outcome: None, waker: None });
        OpFuture { disk: self, id }
    }

    /// Completes one pending operation (chosen at random), or, with none
    /// pending, moves time to the next sleeper. False when there is nothing
    /// to do at all.
    pub fn step(&self) -> bool {
        let n = self.state.borrow().pending.len();
        if n == 0 {
            return self.advance_time();
        }
        let i = self.rng.borrow_mut().below(n as u64) as usize;
        let op = self.state.borrow_mut().pending.swap_remove(i);
        let outcome = self.execute(op.kind);
        let waker = {
            let mut s = self.state.borrow_mut();
            match s.slots.get_mut(&op.id) {
                Some(slot) => {
                    slot.outcome = Some(outcome);
                    slot.waker.take()
                }
                None => None,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    fn advance_time(&self) -> bool {
        let mut s = self.state.borrow_mut();
        let Some(next) = s.sleepers.iter().map(|(t, _)| *t).min() else {
            return false;
        };
        s.now_ms = s.now_ms.max(next);
        let now = s.now_ms;
        let (due, rest): (Vec<_>, Vec<_>) = s.sleepers.drain(..).partition(|(t, _)| *t <= now);
        s.sleepers = rest;
        drop(s);
        for (_, w) in due {
            w.wake();
        }
        true
    }

    fn used_bytes(&self) -> u64 {
        let s = self.state.borrow();
        let mut seen = BTreeSet::new();
        let mut used = 0u64;
        for img in s.names.values() {
            if seen.insert(Rc::as_ptr(img) as usize) {
                used += img.borrow().volatile.len() as u64;
            }
        }
        used
    }

    pub(crate) fn free_bytes(&self) -> u64 {
        match self.faults.capacity_bytes {
            Some(c) => c.saturating_sub(self.used_bytes()),
            None => 1 << 50,
        }
    }

    fn execute(&self, kind: OpKind) -> Outcome {
        match kind {
            OpKind::Read { image, path, mut buf, pos, len } => {
                let first = pos / BLOCK as u64;
                let last = (pos + len as u64).div_ceil(BLOCK as u64);
                let latent = {
                    let s = self.state.borrow();
                    (first..last).any(|b| s.latent.contains(&(path.clone(), b)))
                };
                if latent || self.chance(self.faults.read_eio) {
                    self.state.borrow_mut().injected += 1;
                    return Outcome::Buf(Err(io::Error::from_raw_os_error(libc::EIO)));
                }
                let img = image.borrow();
                let end = (pos as usize + len).min(img.volatile.len());
                let n = end.saturating_sub(pos as usize);
                buf.set_len(0);
                if n > 0 {
                    buf.extend_from_slice(&img.volatile[pos as usize..end]);
                }
                Outcome::Buf(Ok(buf))
            }
            OpKind::Write { image, buf, pos, segment_file, dsync } => {
                let len = buf.len() as u64;
                let grows = (pos + len).saturating_sub(image.borrow().volatile.len() as u64);
                if grows > self.free_bytes() {
                    self.state.borrow_mut().injected += 1;
                    return Outcome::Buf(Err(io::Error::from_raw_os_error(libc::ENOSPC)));
                }
                if self.chance(self.faults.write_eio) {
                    self.state.borrow_mut().injected += 1;
                    return Outcome::Buf(Err(io::Error::from_raw_os_error(libc::EIO)));
                }
                let mut at = pos;
                if segment_file && self.chance(self.faults.misdirected_write) {
                    // The device acknowledged it, but put it one block off.
                    self.state.borrow_mut().injected += 1;
                    at = if pos >= BLOCK as u64 && self.rng.borrow_mut().below(2) == 0 {
                        pos - BLOCK as u64
                    } else {
                        pos + BLOCK as u64
                    };
                }
                let mut img = image.borrow_mut();
                let end = (at + len) as usize;
                if img.volatile.len() < end {
                    img.volatile.resize(end, 0);
                }
                img.volatile[at as usize..end].copy_from_slice(buf.as_slice());
                for b in at / BLOCK as u64..(at + len).div_ceil(BLOCK as u64) {
                    img.dirty.insert(b);
                }
                if dsync {
                    // The write's own flush: it fails as an fsync does,
                    // leaving each of its blocks persisted or not.
                    let failed = self.chance(self.faults.sync_eio);
                    self.persist(&mut img, at / BLOCK as u64..(at + len).div_ceil(BLOCK as u64), failed);
                    if failed {
                        drop(img);
                        self.state.borrow_mut().injected += 1;
                        return Outcome::Buf(Err(io::Error::from_raw_os_error(libc::EIO)));
                    }
                }
                drop(img);
                Outcome::Buf(Ok(buf))
            }
            OpKind::Sync { image, dir } => {
                let failed = self.chance(self.faults.sync_eio);
                if let Some(img) = image {
                    let mut img = img.borrow_mut();
                    // After an fsync, failed or not, no block is dirty.
                    let dirty = std::mem::take(&mut img.dirty);
                    let len = img.volatile.len();
                    self.persist(&mut img, dirty, failed);
                    if !failed {
                        img.durable.resize(len, 0);
                    }
                }
                if let Some(dir) = dir {
                    if !failed {
                        self.sync_dir(&dir);
                    }
                }
                if failed {
                    self.state.borrow_mut().injected += 1;
                    return Outcome::Unit(Err(io::Error::from_raw_os_error(libc::EIO)));
                }
                Outcome::Unit(Ok(()))
            }
            OpKind::Truncate { image, len } => {
                let mut img = image.borrow_mut();
                img.volatile.truncate(len as usize);
                img.dirty.retain(|b| b * (BLOCK as u64) < len);
                Outcome::Unit(Ok(()))
            }
            OpKind::Allocate { image, to } => {
                let grows = to.saturating_sub(image.borrow().volatile.len() as u64);
                if grows > self.free_bytes() {
                    return Outcome::Unit(Err(io::Error::from_raw_os_error(libc::ENOSPC)));
                }
                let mut img = image.borrow_mut();
                if (img.volatile.len() as u64) < to {
                    img.volatile.resize(to as usize, 0);
                }
                Outcome::Unit(Ok(()))
            }
            OpKind::Meta => Outcome::Unit(Ok(())),
        }
    }

    /// Makes `blocks` durable (and not dirty) after a flush; after a
    /// `failed` one each may or may not have reached the disk.
    fn persist(&self, img: &mut Image, blocks: impl IntoIterator<Item = u64>, failed: bool) {
        for b in blocks {
            if failed && self.rng.borrow_mut().below(2) == 0 {
                continue;
            }
            img.dirty.remove(&b);
            persist_block(img, b);
        }
    }

    fn sync_dir(&self, dir: &Path) {
        let mut s = self.state.borrow_mut();
        let ops = std::mem::take(&mut s.unsynced);
        let (mine, rest): (Vec<_>, Vec<_>) = ops.into_iter().partition(|(d, _)| d == dir);
        s.unsynced = rest;
        for (_, op) in mine {
            apply_dir_op(&mut s.durable_names, op);
        }
    }

    pub(crate) async fn open(self: &Rc<Self>, path: &Path, mode: OpenMode, dsync: bool) -> io::Result<SimFile> {
        self.submit(OpKind::Meta).await_unit().await?;
        let mut s = self.state.borrow_mut();
        let dir = parent(path);
        if !s.dirs.contains(&dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let existing = s.names.get(path).cloned();
        let image = match (mode, existing) {
            (OpenMode::Existing, Some(img)) => img,
            (OpenMode::Existing, None) => return Err(io::Error::from(io::ErrorKind::NotFound)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists))
            }
            (OpenMode::Replace, Some(img)) => {
                let mut i = img.borrow_mut();
                i.volatile.clear();
                i.dirty.clear();
                drop(i);
                img
            }
            (_, None) => {
                let img: ImageRef = Rc::default();
                s.names.insert(path.to_path_buf(), img.clone());
                s.unsynced.push((dir, DirOp::Link(path.to_path_buf(), img.clone())));
                img
            }
        };
        Ok(SimFile { disk: self.clone(), image: Some(image), path: path.to_path_buf(), dsync })
    }

    pub(crate) fn dir_handle(self: &Rc<Self>, dir: &Path) -> SimFile {
        SimFile { disk: self.clone(), image: None, path: dir.to_path_buf(), dsync: false }
    }

    pub(crate) fn create_dir_all(&self, dir: &Path) {
        let mut s = self.state.borrow_mut();
        let mut d = dir.to_path_buf();
        loop {
            s.dirs.insert(d.clone());
            if !d.pop() || d.as_os_str().is_empty() {
                break;
            }
        }
    }

    pub(crate) async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.submit(OpKind::Meta).await_unit().await?;
        let s = self.state.borrow();
        if !s.dirs.contains(dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(s.names
            .keys()
            .filter(|p| parent(p) == dir)
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect())
    }

    pub(crate) async fn remove(&self, path: &Path) -> io::Result<()> {
        self.submit(OpKind::Meta).await_unit().await?;
        let mut s = self.state.borrow_mut();
        if s.names.remove(path).is_none() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        s.unsynced.push((parent(path), DirOp::Unlink(path.to_path_buf())));
        Ok(())
    }

    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.submit(OpKind::Meta).await_unit().await?;
        let mut s = self.state.borrow_mut();
        let img = s.names.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.names.insert(to.to_path_buf(), img.clone());
        let dir = parent(to);
        s.unsynced.push((dir.clone(), DirOp::Unlink(from.to_path_buf())));
        s.unsynced.push((dir, DirOp::Link(to.to_path_buf(), img)));
        Ok(())
    }

    pub(crate) async fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.submit(OpKind::Meta).await_unit().await?;
        let s = self.state.borrow();
        Ok(s.names.get(path).map(|img| img.borrow().volatile.clone()))
    }

    pub(crate) async fn sleep(&self, d: Duration) {
        let deadline = self.now_ms() + d.as_millis() as u64;
        SleepFuture { disk: self, deadline }.await
    }

    /// The disk a power cut leaves: unsynced blocks kept, lost or torn,
    /// a prefix of the unsynced directory operations applied. Operations
    /// still pending are lost with the machine.
    pub fn crash(&self) -> Rc<SimDisk> {
        let s = self.state.borrow();
        let mut rng = self.rng.borrow_mut();
        let mut names = s.durable_names.clone();
        let keep_ops = rng.below(s.unsynced.len() as u64 + 1) as usize;
        for (_, op) in s.unsynced.iter().take(keep_ops) {
            apply_dir_op(&mut names, op.clone());
        }
        // New images, one per distinct old image (hard links share).
        let mut fresh: BTreeMap<usize, ImageRef> = BTreeMap::new();
        let mut out_names = BTreeMap::new();
        for (path, img) in names {
            let key = Rc::as_ptr(&img) as usize;
            let new = fresh
                .entry(key)
                .or_insert_with(|| Rc::new(RefCell::new(crash_image(&img.borrow(), &mut rng))))
                .clone();
            out_names.insert(path, new);
        }
        let state = State {
            names: out_names.clone(),
            durable_names: out_names,
            dirs: s.dirs.clone(),
            latent: s.latent.clone(),
            now_ms: s.now_ms,
            ..State::default()
        };
        let seed = rng.next_u64();
        Rc::new(SimDisk {
            state: RefCell::new(state),
            rng: RefCell::new(SimRng::new(seed)),
            faults: self.faults.clone(),
            faults_on: Cell::new(true),
        })
    }

    /// Stops the machine after a power cut: drops pending operations and
    /// sleepers (their wakers hold the tasks that were running, which hold
    /// the disk: a cycle that would otherwise never be freed).
    pub fn halt(&self) {
        let mut s = self.state.borrow_mut();
        let pending = std::mem::take(&mut s.pending);
        let slots = std::mem::take(&mut s.slots);
        let sleepers = std::mem::take(&mut s.sleepers);
        drop(s);
        drop((pending, slots, sleepers));
    }

    /// A deep copy of the disk as it is now (to recover one image twice).
    pub fn fork(&self) -> Rc<SimDisk> {
        let s = self.state.borrow();
        let mut fresh: BTreeMap<usize, ImageRef> = BTreeMap::new();
        let mut copy = |img: &ImageRef| -> ImageRef {
            fresh
                .entry(Rc::as_ptr(img) as usize)
                .or_insert_with(|| {
                    let i = img.borrow();
                    Rc::new(RefCell::new(Image {
                        volatile: i.volatile.clone(),
                        durable: i.durable.clone(),
                        dirty: i.dirty.clone(),
                    }))
                })
                .clone()
        };
        let names = s.names.iter().map(|(p, i)| (p.clone(), copy(i))).collect();
        let durable_names = s.durable_names.iter().map(|(p, i)| (p.clone(), copy(i))).collect();
        let state = State {
            names,
            durable_names,
            dirs: s.dirs.clone(),
            latent: s.latent.clone(),
            now_ms: s.now_ms,
            ..State::default()
        };
        Rc::new(SimDisk {
            state: RefCell::new(state),
            rng: RefCell::new(self.rng.borrow().clone()),
            faults: self.faults.clone(),
            faults_on: Cell::new(self.faults_on.get()),
        })
    }

    /// Paths of the files that exist now.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.borrow().names.keys().cloned().collect()
    }

    pub fn file_len(&self, path: &Path) -> Option<u64> {
        self.state.borrow().names.get(path).map(|i| i.borrow().volatile.len() as u64)
    }

    /// Flips one bit of a file, in both images (bit rot on the medium).
    pub fn flip_bit(&self, path: &Path, byte: u64, bit: u8) -> bool {
        let s = self.state.borrow();
        let Some(img) = s.names.get(path) else { return false };
        let mut img = img.borrow_mut();
        let i = byte as usize;
        if i >= img.volatile.len() {
            return false;
        }
        img.volatile[i] ^= 1 << (bit % 8);
        if i < img.durable.len() {
            img.durable[i] ^= 1 << (bit % 8);
        }
        true
    }

    /// Removes a file from the disk, durably (an operator deleting it).
    pub fn remove_file(&self, path: &Path) -> bool {
        let mut s = self.state.borrow_mut();
        s.durable_names.remove(path);
        s.names.remove(path).is_some()
    }

    /// Makes reads of block `block` of `path` fail with EIO from now on.
    pub fn add_latent_error(&self, path: &Path, block: u64) {
        self.state.borrow_mut().latent.insert((path.to_path_buf(), block));
    }

    pub fn rng_below(&self, n: u64) -> u64 {
        self.rng.borrow_mut().below(n)
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply_dir_op(names: &mut BTreeMap<PathBuf, ImageRef>, op: DirOp) {
    match op {
        DirOp::Link(p, img) => {
            names.insert(p, img);
        }
        DirOp::Unlink(p) => {
            names.remove(&p);
        }
    }
}

fn persist_block(img: &mut Image, b: u64) {
    let start = b as usize * BLOCK;
    let end = (start + BLOCK).min(img.volatile.len());
    if start >= end {
        return;
    }
    if img.durable.len() < end {
        img.durable.resize(end, 0);
    }
    let (d, v) = (&mut img.durable, &img.volatile);
    d[start..end].copy_from_slice(&v[start..end]);
}

/// What one file holds after a power cut.
fn crash_image(img: &Image, rng: &mut SimRng) -> Image {
    let mut out = img.durable.clone();
    for &b in &img.dirty {
        let start = b as usize * BLOCK;
        let end = (start + BLOCK).min(img.volatile.len());
        if start >= end {
            continue;
        }
        match rng.below(3) {
            0 => {}
            1 => {
                if out.len() < end {
                    out.resize(end, 0);
                }
                out[start..end].copy_from_slice(&img.volatile[start..end]);
            }
            _ => {
                // Torn: each 512-byte sector old, new, or (a sector being
                // written when the power went) garbage. A block rewritten
                // with some of its bytes unchanged (a packed batch rewrites
                // the last block of the copy before it) can thus lose the
                // bytes it held: a torn rewrite.
                if out.len() < end {
                    out.resize(end, 0);
                }
                for s in (start..end).step_by(512) {
                    let e = (s + 512).min(end);
                    match rng.below(8) {
                        0..=3 => out[s..e].copy_from_slice(&img.volatile[s..e]),
                        4..=6 => {}
                        _ => {
                            for b in &mut out[s..e] {
                                *b = rng.next_u64() as u8;
                            }
                        }
                    }
                }
            }
        }
    }
    Image { volatile: out.clone(), durable: out, dirty: BTreeSet::new() }
}

struct OpFuture<'a> {
    disk: &'a SimDisk,
    id: u64,
}

impl OpFuture<'_> {
    async fn await_unit(self) -> io::Result<()> {
        match self.await {
            Outcome::Unit(r) => r,
            Outcome::Buf(r) => r.map(drop),
        }
    }

    async fn await_buf(self) -> io::Result<AlignedBuf> {
        match self.await {
            Outcome::Buf(r) => r,
            Outcome::Unit(_) => Err(io::Error::other("sim: wrong outcome")),
        }
    }
}

impl Future for OpFuture<'_> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut s = self.disk.state.borrow_mut();
        let Some(slot) = s.slots.get_mut(&self.id) else {
            return Poll::Ready(Outcome::Unit(Err(io::Error::other("sim: lost operation"))));
        };
        match slot.outcome.take() {
            Some(o) => {
                s.slots.remove(&self.id);
                Poll::Ready(o)
            }
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for OpFuture<'_> {
    fn drop(&mut self) {
        // A dropped operation still happens (the kernel has it), but nobody waits.
        if let Ok(mut s) = self.disk.state.try_borrow_mut() {
            if let Some(slot) = s.slots.get_mut(&self.id) {
                slot.waker = None;
            }
        }
    }
}

struct SleepFuture<'a> {
    disk: &'a SimDisk,
    deadline: u64,
}

impl Future for SleepFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.disk.state.borrow_mut();
        if s.now_ms >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        s.sleepers.push((deadline, cx.waker().clone()));
        Poll::Pending
    }
}

/// An open simulated file (or a directory handle, to sync the directory).
pub(crate) struct SimFile {
    disk: Rc<SimDisk>,
    image: Option<ImageRef>,
    path: PathBuf,
    /// Opened with O_DSYNC.
    dsync: bool,
}

impl SimFile {
    fn image(&self) -> io::Result<ImageRef> {
        self.image.clone().ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))
    }

    pub(crate) async fn read_at(&self, buf: AlignedBuf, pos: u64, len: usize) -> io::Result<AlignedBuf> {
        let image = self.image()?;
        let path = self.path.clone();
        self.disk.submit(OpKind::Read { image, path, buf, pos, len }).await_buf().await
    }

    pub(crate) async fn write_at(&self, buf: AlignedBuf, pos: u64) -> io::Result<AlignedBuf> {
        let image = self.image()?;
        let segment_file = self.path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seg-"));
        self.disk.submit(OpKind::Write { image, buf, pos, segment_file, dsync: self.dsync }).await_buf().await
    }

    pub(crate) async fn sync(&self) -> io::Result<()> {
        let kind = match &self.image {
            Some(img) => OpKind::Sync { image: Some(img.clone()), dir: None },
            None => OpKind::Sync { image: None, dir: Some(self.path.clone()) },
        };
        self.disk.submit(kind).await_unit().await
    }

    pub(crate) async fn truncate(&self, len: u64) -> io::Result<()> {
        let image = self.image()?;
        self.disk.submit(OpKind::Truncate { image, len }).await_unit().await
    }

    pub(crate) async fn allocate(&self, to: u64) -> io::Result<()> {
        let image = self.image()?;
        self.disk.submit(OpKind::Allocate { image, to }).await_unit().await
    }

    pub(crate) fn len(&self) -> u64 {
        self.image.as_ref().map_or(0, |i| i.borrow().volatile.len() as u64)
    }
}

/// Yields once to the other tasks of the reactor: the wake-up comes from a
/// task queued behind them. (A task that wakes itself while being polled is
/// run again at once by monoio, which pushes self-wakes to the front.)
pub async fn yield_now() {
    struct Yield(bool);
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            let w = cx.waker().clone();
            monoio::spawn(async move { w.wake() });
            Poll::Pending
        }
    }
    Yield(false).await
}
