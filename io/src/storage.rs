//! The small storage interface the engine uses: open (O_DIRECT when the
//! filesystem takes it), positional reads and writes of aligned buffers,
//! syncs, truncation, and the few directory operations a shard needs
//! (list, create, remove, rename, free space). Every file and directory
//! operation of the engine goes through here, so the deterministic
//! simulator (`sim`) can stand in for the disk.
//!
//! Three backends, chosen per shard at `Shard::open`:
//! - `Ring`: monoio's file ops, which are io_uring submissions. Directory
//!   operations (and opening files) go to the shard's I/O thread, so a
//!   segment roll never blocks the reactor on `open(O_CREAT)`.
//! - `Thread`: in monoio's legacy (epoll) driver, file ops have no readiness
//!   to wait for, so monoio 0.2.4 runs them as plain synchronous syscalls on
//!   the reactor thread (`legacy_interest()` is `None` for files, see
//!   driver/legacy/mod.rs). That would stall every connection of the core
//!   for each pread/pwrite/fdatasync. Instead each shard gets one I/O thread
//!   and the reactor awaits its replies; the thread wakes the task through
//!   monoio's cross-thread waker (the `sync` feature).
//! - `Sim`: the simulated disk, for tests.

use std::cell::Cell;
use std::fs::{File as StdFile, OpenOptions};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::buf::IoBufMut;

use crate::buf::AlignedBuf;
use crate::format::BLOCK;
use crate::sim::{SimDisk, SimFile};

/// The name a retired segment file takes while it is cut down and
/// removed (`Backend::trash_retired`); recovery deletes such files.
pub(crate) const TRASH_SUFFIX: &str = ".trash";

/// A retired segment file being cut down (`Backend::cut_trash`).
pub(crate) struct Trash {
    file: std::fs::File,
    path: PathBuf,
    /// Bytes it still holds.
    pub(crate) len: u64,
}

/// Bytes a retired segment file is cut by per synced step (restated in
/// `io/tests/reclaim.rs`, whose test sizes its segment to several steps).
pub(crate) const RETIRE_TRUNCATE_STEP: u64 = 8 << 20;

/// How a shard reaches its files.
#[derive(Clone)]
pub(crate) enum Backend {
    Ring(Rc<Worker>),
    Thread(Rc<Worker>),
    Sim(Rc<SimDisk>),
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Must exist.
    Existing,
    /// Must not exist yet.
    CreateNew,
    /// Created or truncated (small metadata files written whole).
    Replace,
}

impl Backend {
    /// The backend for the current reactor's driver.
    pub(crate) fn for_current_runtime(shard: u32) -> io::Result<Backend> {
        let worker = Rc::new(Worker::start(shard)?);
        if monoio::utils::is_legacy() {
            Ok(Backend::Thread(worker))
        } else {
            Ok(Backend::Ring(worker))
        }
    }

    pub(crate) fn is_ring(&self) -> bool {
        matches!(self, Backend::Ring(_))
    }

    fn worker(&self) -> Option<&Rc<Worker>> {
        match self {
            Backend::Ring(w) | Backend::Thread(w) => Some(w),
            Backend::Sim(_) => None,
        }
    }

    /// Runs a blocking filesystem call on the shard's I/O thread.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<R> + Send + 'static,
    ) -> io::Result<R> {
        match self.worker() {
            Some(w) => w.call(f).await?,
            None => Err(io::Error::other("no I/O thread in the simulator")),
        }
    }

    /// Opens `path` for reads and writes, with O_DIRECT when `direct` is
    /// asked for and the filesystem accepts it. `direct` comes back false
    /// when O_DIRECT was refused with EINVAL (tmpfs, some network
    /// filesystems); `warned` makes that warning appear once. With `dsync`
    /// the file is opened O_DSYNC: a write completes once it (and the
    /// metadata needed to read it back) is on stable storage.
    pub(crate) async fn open(
        &self,
        path: &Path,
        mode: OpenMode,
        direct: &Cell<bool>,
        warned: &Cell<bool>,
        dsync: bool,
    ) -> io::Result<DiskFile> {
        if let Backend::Sim(d) = self {
            return d.open(path, mode, dsync).await.map(DiskFile::Sim);
        }
        let path_buf = path.to_path_buf();
        let want_direct = direct.get();
        let (file, refused) = self
            .blocking(move || open_std(&path_buf, mode, want_direct, dsync))
            .await?;
        if refused {
            direct.set(false);
            if !warned.replace(true) {
                tracing::warn!(path = %path.display(), "O_DIRECT refused (EINVAL); using buffered I/O + fdatasync");
            }
        }
        self.wrap(file)
    }

    fn wrap(&self, file: StdFile) -> io::Result<DiskFile> {
        Ok(match self {
            Backend::Ring(_) => DiskFile::Ring(monoio::fs::File::from_std(file)?),
            Backend::Thread(w) => DiskFile::Thread {
                file: Arc::new(file),
                worker: w.clone(),
            },
            Backend::Sim(_) => return Err(io::Error::other("real file in the simulator")),
        })
    }

    /// A directory handle, for `sync_all` after creating, renaming or
    /// removing entries.
    pub(crate) async fn open_dir(&self, dir: &Path) -> io::Result<DiskFile> {
        if let Backend::Sim(d) = self {
            return Ok(DiskFile::Sim(d.dir_handle(dir)));
        }
        let dir = dir.to_path_buf();
        let file = self.blocking(move || StdFile::open(dir)).await?;
        self.wrap(file)
    }

    pub(crate) async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if let Backend::Sim(d) = self {
            d.create_dir_all(dir);
            return Ok(());
        }
        let dir = dir.to_path_buf();
        self.blocking(move || std::fs::create_dir_all(dir)).await
    }

    /// Names of the entries of `dir`.
    pub(crate) async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        if let Backend::Sim(d) = self {
            return d.list(dir).await;
        }
        let dir = dir.to_path_buf();
        self.blocking(move || {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir)? {
                if let Some(n) = e?.file_name().to_str() {
                    out.push(n.to_string());
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn remove(&self, path: &Path) -> io::Result<()> {
        if let Backend::Sim(d) = self {
            return d.remove(path).await;
        }
        let path = path.to_path_buf();
        self.blocking(move || std::fs::remove_file(path)).await
    }

    /// Takes a retired segment file, whose removal its shard's log has
    /// already made durable, out of the segments' names: renamed (recovery
    /// deletes such a leftover unread, `TRASH_SUFFIX`) and opened, for
    /// `cut_trash` to cut down and unlink. The directory is not synced
    /// here: the caller syncs it after. The simulator removes the file at
    /// once (None).
    pub(crate) async fn trash_retired(&self, path: &Path) -> io::Result<Option<Trash>> {
        let mut trash = path.as_os_str().to_owned();
        trash.push(TRASH_SUFFIX);
        self.trash_as(path, Path::new(&trash)).await
    }

    /// `trash_retired` for a file at `path` whose trash name is `trash`
    /// (a spare segment file: `spare.rs`).
    pub(crate) async fn trash_as(&self, path: &Path, trash: &Path) -> io::Result<Option<Trash>> {
        if let Backend::Sim(d) = self {
            d.remove(path).await?;
            return Ok(None);
        }
        let trash = trash.to_path_buf();
        let (from, to) = (path.to_path_buf(), trash.clone());
        let (file, len) = self
            .blocking(move || {
                std::fs::rename(&from, &to)?;
                let file = std::fs::OpenOptions::new().write(true).open(&to)?;
                let len = file.metadata()?.len();
                Ok((file, len))
            })
            .await?;
        Ok(Some(Trash { file, path: trash, len }))
    }

    /// One step of the removal of a trashed segment file, without one long
    /// stall of the filesystem's journal: the file is cut from its end by
    /// `RETIRE_TRUNCATE_STEP` bytes, synced (and so committed by the
    /// journal on its own), as its own job on the I/O thread; once empty,
    /// it is unlinked (None). On a filesystem mounted with online discard
    /// (ext4 `discard`) an unlink of a 1 GiB segment made the journal
    /// commit that freed it take about 190 ms, and every commit waiting on
    /// an fdatasync meanwhile; a step of 8 MiB takes 1.7 ms (2.7 at worst).
    /// The shard paces the steps (`reap::reap`).
    pub(crate) async fn cut_trash(&self, trash: Trash) -> io::Result<Option<Trash>> {
        let Trash { file, path, len } = trash;
        let to = len.saturating_sub(RETIRE_TRUNCATE_STEP);
        let file = self
            .blocking(move || {
                file.set_len(to)?;
                file.sync_data()?;
                Ok(file)
            })
            .await?;
        if to > 0 {
            return Ok(Some(Trash { file, path, len: to }));
        }
        drop(file);
        self.blocking(move || std::fs::remove_file(path)).await?;
        Ok(None)
    }

    /// Allocates `[from, to)` of `file` (fallocate, mode 0: the file's
    /// size grows to at least `to`; blocks it already has, and their bytes,
    /// are left as they are; new ones read as zeros). On the shard's I/O
    /// thread, through a duplicate of the ring file's descriptor, so that
    /// closing the file meanwhile cannot hand the call another file. Not
    /// synced: the log's next sync of the file carries it.
    pub(crate) async fn allocate(&self, file: &DiskFile, from: u64, to: u64) -> io::Result<()> {
        fn fallocate(fd: std::os::fd::RawFd, from: u64, to: u64) -> io::Result<()> {
            let off = libc::off_t::try_from(from).map_err(|_| io::Error::other("offset overflows off_t"))?;
            let len = libc::off_t::try_from(to.saturating_sub(from)).map_err(|_| io::Error::other("length overflows off_t"))?;
            // SAFETY: fd is an open descriptor owned by the caller for the call's duration.
            if unsafe { libc::fallocate(fd, 0, off, len) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        if to <= from {
            return Ok(());
        }
        match file {
            DiskFile::Ring(f) => {
                // SAFETY: the ring file's descriptor is open while `f` is borrowed.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(f.as_raw_fd()) }.try_clone_to_owned()?;
                self.blocking(move || fallocate(fd.as_raw_fd(), from, to)).await
            }
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker.call(move || fallocate(file.as_raw_fd(), from, to)).await?
            }
            DiskFile::Sim(f) => f.allocate(to).await,
        }
    }

    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Backend::Sim(d) = self {
            return d.rename(from, to).await;
        }
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        self.blocking(move || std::fs::rename(from, to)).await
    }

    /// A small file's whole content, or None if it does not exist.
    pub(crate) async fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        if let Backend::Sim(d) = self {
            return d.read_small(path).await;
        }
        let path = path.to_path_buf();
        self.blocking(move || match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Writes a small file durably and atomically: a temporary file, synced,
    /// renamed over `path`, and the directory synced.
    pub(crate) async fn write_small_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = tmp_path(path);
        let no = Cell::new(false);
        let f = self.open(&tmp, OpenMode::Replace, &no, &no, false).await?;
        let mut buf = AlignedBuf::with_capacity(bytes.len().max(1));
        buf.extend_from_slice(bytes);
        f.write_all_at(buf, 0).await?;
        f.sync_all().await?;
        drop(f);
        self.rename(&tmp, path).await?;
        let dir = path.parent().unwrap_or(Path::new("."));
        self.open_dir(dir).await?.sync_all().await
    }

    /// Free bytes for unprivileged writers on the filesystem of `dir`.
    pub(crate) async fn free_bytes(&self, dir: &Path) -> io::Result<u64> {
        if let Backend::Sim(d) = self {
            return Ok(d.free_bytes());
        }
        let dir = dir.to_path_buf();
        self.blocking(move || statvfs_free(&dir)).await
    }

    /// Milliseconds on the backend's clock (simulated time in the simulator).
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Backend::Sim(s) => s.now_ms(),
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// Sleeps; in the simulator, in simulated time.
    pub(crate) async fn sleep(&self, d: Duration) {
        match self {
            Backend::Sim(s) => s.sleep(d).await,
            _ => monoio::time::sleep(d).await,
        }
    }
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Opens with the standard library; the bool says O_DIRECT was refused.
fn open_std(path: &Path, mode: OpenMode, direct: bool, dsync: bool) -> io::Result<(StdFile, bool)> {
    let sync_flag = if dsync { libc::O_DSYNC } else { 0 };
    let open = |flags: i32| {
        let flags = flags | sync_flag;
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(flags).mode(0o600);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                o.create_new(true);
            }
            OpenMode::Replace => {
                o.create(true).truncate(true);
            }
        }
        o.open(path)
    };
    if direct {
        match open(libc::O_DIRECT) {
            Ok(f) => return Ok((f, false)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // A failed create_new may have left the file: reopen it.
                let f = if mode == OpenMode::CreateNew && path.exists() {
                    let mut o = OpenOptions::new();
                    o.read(true).write(true).custom_flags(sync_flag);
                    o.open(path)?
                } else {
                    open(0)?
                };
                return Ok((f, true));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((open(0)?, false))
}

fn statvfs_free(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path holds a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated path; st is plain data written by the call.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// Extra attempts of a read that failed with EIO.
pub(crate) const READ_EIO_RETRIES: u32 = 2;

/// An open file behind the shard's backend.
pub(crate) enum DiskFile {
    Ring(monoio::fs::File),
    Thread {
        file: Arc<StdFile>,
        worker: Rc<Worker>,
    },
    Sim(SimFile),
}

impl DiskFile {
    /// Reads `[pos, pos + len)` into `buf[..len]`; `len` is a multiple of
    /// BLOCK within the capacity. Returns the buffer with its length set to
    /// the bytes read, which is less than `len` only at end of file. An EIO
    /// is tried again (`READ_EIO_RETRIES` times): a transient error passes,
    /// a latent sector error stays an error.
    pub(crate) async fn read_at(&self, buf: AlignedBuf, pos: u64, len: usize) -> io::Result<AlignedBuf> {
        let cap = buf.capacity();
        let mut r = self.read_at_once(buf, pos, len).await;
        let mut tries = 0;
        while tries < READ_EIO_RETRIES && r.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EIO)) {
            tries += 1;
            tracing::warn!(offset = pos, len, "read failed with EIO; retrying");
            r = self.read_at_once(AlignedBuf::with_capacity(cap), pos, len).await;
        }
        r
    }

    async fn read_at_once(
        &self,
        mut buf: AlignedBuf,
        pos: u64,
        len: usize,
    ) -> io::Result<AlignedBuf> {
        assert!(len <= buf.capacity() && len % BLOCK == 0 && pos % BLOCK as u64 == 0);
        match self {
            DiskFile::Ring(f) => {
                let mut done = 0usize;
                while done < len {
                    buf.set_len(done);
                    let (res, slice) = f.read_at(buf.slice_mut(done..len), pos + done as u64).await;
                    buf = slice.into_inner();
                    match res {
                        Ok(0) => break,
                        // A short read that is not block aligned only happens at end of file.
                        Ok(n) if n % BLOCK != 0 => {
                            done += n;
                            break;
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.set_len(done);
                Ok(buf)
            }
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker
                    .call(move || {
                        let mut done = 0usize;
                        let out = buf.full_mut();
                        while done < len {
                            match file.read_at(&mut out[done..len], pos + done as u64) {
                                Ok(0) => break,
                                Ok(n) => done += n,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(e) => return Err(e),
                            }
                        }
                        buf.set_len(done);
                        Ok(buf)
                    })
                    .await?
            }
            DiskFile::Sim(f) => f.read_at(buf, pos, len).await,
        }
    }

    /// Writes all of `buf` at `pos` (block-aligned length and position on
    /// files opened with O_DIRECT).
    pub(crate) async fn write_all_at(&self, buf: AlignedBuf, pos: u64) -> io::Result<AlignedBuf> {
        match self {
            DiskFile::Ring(f) => {
                let (res, buf) = f.write_all_at(buf, pos).await;
                res.map(|()| buf)
            }
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker
                    .call(move || file.write_all_at(buf.as_slice(), pos).map(|()| buf))
                    .await?
            }
            DiskFile::Sim(f) => f.write_at(buf, pos).await,
        }
    }

    pub(crate) async fn sync_data(&self) -> io::Result<()> {
        match self {
            DiskFile::Ring(f) => f.sync_data().await,
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker.call(move || file.sync_data()).await?
            }
            DiskFile::Sim(f) => f.sync().await,
        }
    }

    /// fsync; used on directories, where fdatasync is not enough on every filesystem.
    pub(crate) async fn sync_all(&self) -> io::Result<()> {
        match self {
            DiskFile::Ring(f) => f.sync_all().await,
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker.call(move || file.sync_all()).await?
            }
            DiskFile::Sim(f) => f.sync().await,
        }
    }

    /// Cuts the file to `len` bytes and makes that durable.
    pub(crate) async fn truncate(&self, len: u64) -> io::Result<()> {
        fn ftruncate(fd: std::os::fd::RawFd, len: u64) -> io::Result<()> {
            let len = libc::off_t::try_from(len)
                .map_err(|_| io::Error::other("length overflows off_t"))?;
            // SAFETY: fd is an open descriptor owned by the caller for the call's duration.
            if unsafe { libc::ftruncate(fd, len) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        match self {
            DiskFile::Ring(f) => {
                // A metadata update; rare (recovery and after I/O errors).
                ftruncate(f.as_raw_fd(), len)?;
                f.sync_all().await
            }
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker
                    .call(move || ftruncate(file.as_raw_fd(), len).and_then(|()| file.sync_all()))
                    .await?
            }
            DiskFile::Sim(f) => {
                f.truncate(len).await?;
                f.sync().await
            }
        }
    }

    /// Current length of the file.
    pub(crate) async fn len(&self) -> io::Result<u64> {
        match self {
            DiskFile::Ring(f) => {
                let fd = f.as_raw_fd();
                fd_len(fd)
            }
            DiskFile::Thread { file, .. } => Ok(file.metadata()?.len()),
            DiskFile::Sim(f) => Ok(f.len()),
        }
    }
}

fn fd_len(fd: std::os::fd::RawFd) -> io::Result<u64> {
    // SAFETY: fd is open for the call; st is plain data written by fstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_size as u64)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One I/O thread per shard: every blocking filesystem call (opening and
/// creating files, directory operations, statvfs), and under the legacy
/// driver all file I/O. Its queue holds at most the shard's in-flight
/// operations, which the node's per-core limits bound. The thread ends when
/// the last `Rc<Worker>` (the shard and its files) is dropped, after
/// finishing the jobs queued before.
pub(crate) struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    fn start(shard: u32) -> io::Result<Worker> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("tessera-io-{shard}"))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(Worker { tx })
    }

    /// Runs `f` on the I/O thread; the future resolves with its result, or
    /// an error if the thread is gone.
    fn call<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Reply<R> {
        let state = Arc::new(Mutex::new(ReplyState {
            value: None,
            waker: None,
            closed: false,
        }));
        let completer = Completer(state.clone());
        // If the thread is gone, the job (and its Completer) is dropped here,
        // which closes the reply.
        let _ = self.tx.send(Box::new(move || completer.complete(f())));
        Reply(state)
    }
}

struct ReplyState<R> {
    value: Option<R>,
    waker: Option<Waker>,
    closed: bool,
}

struct Reply<R>(Arc<Mutex<ReplyState<R>>>);

impl<R> Future for Reply<R> {
    type Output = io::Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let mut s = match self.0.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = s.value.take() {
            return Poll::Ready(Ok(v));
        }
        if s.closed {
            return Poll::Ready(Err(io::Error::other("shard I/O thread is gone")));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The I/O thread's end of a reply: completing or dropping it wakes the task.
struct Completer<R>(Arc<Mutex<ReplyState<R>>>);

impl<R> Completer<R> {
    fn complete(self, v: R) {
        if let Ok(mut s) = self.0.lock() {
            s.value = Some(v);
        }
        // Drop wakes.
    }
}

impl<R> Drop for Completer<R> {
    fn drop(&mut self) {
        let waker = match self.0.lock() {
            Ok(mut s) => {
                s.closed = true;
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}
