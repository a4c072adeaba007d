//! The small `Io` interface the engine uses for files: open (O_DIRECT when
//! the filesystem takes it), positional reads and writes of aligned buffers,
//! and syncs.
//!
//! Two backends, chosen per reactor at `Shard::open`:
//! - `Ring`: monoio's file ops, which are io_uring submissions.
//! - `Thread`: in monoio's legacy (epoll) driver, file ops have no readiness
//!   to wait for, so monoio 0.2.4 runs them as plain synchronous syscalls on
//!   the reactor thread (`legacy_interest()` is `None` for files, see
//!   driver/legacy/mod.rs). That would stall every connection of the core
//!   for each pread/pwrite/fdatasync. Instead each shard gets one I/O thread
//!   and the reactor awaits its replies; the thread wakes the task through
//!   monoio's cross-thread waker (the `sync` feature).

use std::cell::Cell;
use std::fs::{File as StdFile, OpenOptions};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};

use monoio::buf::{IoBuf, IoBufMut};

use crate::buf::AlignedBuf;
use crate::format::BLOCK;

/// How a shard reaches its files.
#[derive(Clone)]
pub(crate) enum Backend {
    Ring,
    Thread(Rc<Worker>),
}

impl Backend {
    /// The backend for the current reactor's driver.
    pub(crate) fn for_current_runtime(shard: u32) -> io::Result<Backend> {
        if monoio::utils::is_legacy() {
            Ok(Backend::Thread(Rc::new(Worker::start(shard)?)))
        } else {
            Ok(Backend::Ring)
        }
    }

    pub(crate) fn is_ring(&self) -> bool {
        matches!(self, Backend::Ring)
    }
}

/// Opens `path` for reads and writes (creating it if `create`), with
/// O_DIRECT when `direct` is asked for and the filesystem accepts it.
/// `direct` comes back false when O_DIRECT was refused with EINVAL (tmpfs,
/// some network filesystems); `warned` makes that warning appear once.
pub(crate) fn open_file(
    path: &Path,
    create: bool,
    direct: &Cell<bool>,
    warned: &Cell<bool>,
) -> io::Result<StdFile> {
    let open = |flags: i32| {
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(flags);
        if create {
            o.create_new(true);
        }
        o.open(path)
    };
    if direct.get() {
        match open(libc::O_DIRECT) {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                direct.set(false);
                if !warned.replace(true) {
                    tracing::warn!(path = %path.display(), "O_DIRECT refused (EINVAL); using buffered I/O + fdatasync");
                }
            }
            Err(e) => return Err(e),
        }
    }
    open(0)
}

/// An open file behind the shard's backend.
pub(crate) enum DiskFile {
    Ring(monoio::fs::File),
    Thread {
        file: Arc<StdFile>,
        worker: Rc<Worker>,
    },
}

impl DiskFile {
    pub(crate) fn new(file: StdFile, backend: &Backend) -> io::Result<DiskFile> {
        Ok(match backend {
            Backend::Ring => DiskFile::Ring(monoio::fs::File::from_std(file)?),
            Backend::Thread(w) => DiskFile::Thread {
                file: Arc::new(file),
                worker: w.clone(),
            },
        })
    }

    /// Reads `[pos, pos + len)` into `buf[..len]`; `len` is a multiple of
    /// BLOCK within the capacity. Returns the buffer with its length set to
    /// the bytes read, which is less than `len` only at end of file.
    pub(crate) async fn read_at(
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
        }
    }

    /// Writes all of `buf` (its length a multiple of BLOCK) at `pos`.
    pub(crate) async fn write_all_at(&self, buf: AlignedBuf, pos: u64) -> io::Result<AlignedBuf> {
        assert!(buf.bytes_init() % BLOCK == 0 && pos % BLOCK as u64 == 0);
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
        }
    }

    pub(crate) async fn sync_data(&self) -> io::Result<()> {
        match self {
            DiskFile::Ring(f) => f.sync_data().await,
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker.call(move || file.sync_data()).await?
            }
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
        }
    }
}

impl DiskFile {
    /// Cuts the file to `len` bytes and makes that durable. Recovery only;
    /// in ring mode the ftruncate runs on the reactor (a metadata update).
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
                ftruncate(f.as_raw_fd(), len)?;
                f.sync_all().await
            }
            DiskFile::Thread { file, worker } => {
                let file = file.clone();
                worker
                    .call(move || ftruncate(file.as_raw_fd(), len).and_then(|()| file.sync_all()))
                    .await?
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One I/O thread per shard for the legacy driver. Its queue holds at most
/// the shard's in-flight operations, which the node's per-core limits bound.
/// The thread ends when the last `Rc<Worker>` (the shard and its files) is
/// dropped, after finishing the jobs queued before.
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

#[cfg(test)]
pub(crate) fn tests_worker() -> Worker {
    Worker::start(0).unwrap()
}
