//! Thread per core: one single-threaded tokio runtime per client thread. Worker
//! `i` runs on thread `i % threads` for its whole life, so a connection, its
//! buffers and its counters stay on one core and no task ever migrates.

use std::future::Future;
use std::thread::JoinHandle as ThreadHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Pool {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<ThreadHandle<()>>,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool, String> {
        assert!(threads > 0);
        let mut pool = Pool { handles: Vec::new(), stops: Vec::new(), threads: Vec::new() };
        for i in 0..threads {
            let rt = Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
            let (stop, stopped) = oneshot::channel::<()>();
            pool.handles.push(rt.handle().clone());
            pool.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("bench-{i}"))
                // Tasks spawned on a current-thread runtime run while it is blocked on.
                .spawn(move || rt.block_on(async move { let _ = stopped.await; }))
                .map_err(|e| format!("thread: {e}"))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// The thread (and live-stats slot) worker `worker` runs on.
    pub fn slot_of(&self, worker: usize) -> usize {
        worker % self.handles.len()
    }

    /// Runs `fut` on the thread of worker `worker`.
    pub fn spawn<F>(&self, worker: usize, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[self.slot_of(worker)].spawn(fut)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
