//! The io_uring ring each reactor runs on (ARCHITECTURE.md, "The
//! reactors' rings"): its setup, and the runtime built on it.

/// A monoio runtime with timers, on io_uring or (where io_uring is
/// refused) epoll: the reactors' and the offline checks' (`fsck`).
pub(crate) type Runtime = monoio::FusionRuntime<monoio::time::TimeDriver<monoio::IoUringDriver>, monoio::time::TimeDriver<monoio::LegacyDriver>>;

/// The ring a reactor runs on. COOP_TASKRUN: the kernel posts a
/// completion's task work without interrupting the reactor (an IPI to a
/// running thread) and runs it at the reactor's next entry into the
/// kernel, which comes within one turn of its loop (every turn submits or
/// waits); a reactor asleep in the ring is still woken. Measured with wrk's
/// presigned 4 KiB GETs: +3% at 16 connections, +4% at 64 (ARCHITECTURE.md,
/// "The reactors' rings"). SQPOLL was measured too and is not offered: a
/// kernel thread per ring polling its queue took the cores the reactors
/// and clients need (-35%).
pub(crate) fn ring_setup() -> io_uring::Builder {
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun();
    urb
}

/// Builds a reactor's runtime on a ring set up by `urb`; if the kernel
/// refuses that setup (COOP_TASKRUN needs Linux 5.19), on a ring set up
/// as monoio does by default. The second value says which.
pub(crate) fn reactor_runtime(urb: io_uring::Builder) -> std::io::Result<(Runtime, bool)> {
    match monoio::RuntimeBuilder::<monoio::FusionDriver>::new().uring_builder(urb).enable_timer().build() {
        Ok(rt) => Ok((rt, true)),
        Err(e) => {
            tracing::debug!("io_uring setup refused ({e}); the reactor uses a ring of default setup");
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().map(|rt| (rt, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{reactor_runtime, ring_setup, Runtime};
    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};

    /// What a reactor's ring must do, on the ring a reactor gets: socket
    /// I/O, a timer, and a wake from another thread while the reactor sleeps
    /// in the ring (with COOP_TASKRUN the kernel must still wake it).
    fn exercise(rt: &mut Runtime) {
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let echo = monoio::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                for _ in 0..100 {
                    let (r, buf) = s.read_exact(vec![0u8; 4096]).await;
                    r.expect("server read");
                    let (r, _) = s.write_all(buf).await;
                    r.expect("server write");
                }
            });
            let mut c = monoio::net::TcpStream::connect(addr).await.expect("connect");
            for i in 0..100u8 {
                let (r, _) = c.write_all(vec![i; 4096]).await;
                r.expect("client write");
                let (r, back) = c.read_exact(vec![0u8; 4096]).await;
                r.expect("client read");
                assert!(back.iter().all(|&b| b == i), "round {i}");
            }
            echo.await;
            let t = std::time::Instant::now();
            monoio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(t.elapsed() >= std::time::Duration::from_millis(20));
            let (tx, rx) = async_channel::bounded::<u32>(1);
            let sender = std::thread::spawn(move || {
                for i in 0..20 {
                    // Long enough for the reactor to be asleep in the ring.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    tx.send_blocking(i).expect("send");
                }
            });
            for i in 0..20 {
                assert_eq!(rx.recv().await.expect("recv"), i);
            }
            sender.join().expect("sender");
        });
    }

    /// Linux 5.19 took COOP_TASKRUN: from there on the reactors' ring has it.
    fn kernel_takes_coop_taskrun() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (5, 19)
    }

    #[test]
    fn the_reactor_ring_is_set_up_cooperative_and_works() {
        let (mut rt, coop) = reactor_runtime(ring_setup()).expect("runtime");
        if matches!(rt, monoio::FusionRuntime::Uring(_)) {
            assert_eq!(coop, kernel_takes_coop_taskrun(), "COOP_TASKRUN taken exactly where the kernel has it");
        }
        exercise(&mut rt);
    }

    /// A setup the kernel refuses (DEFER_TASKRUN without SINGLE_ISSUER is
    /// EINVAL) leaves a working ring of the default setup, not a failed start.
    #[test]
    fn a_refused_ring_setup_falls_back_to_the_default() {
        let mut urb = io_uring::IoUring::builder();
        urb.setup_defer_taskrun();
        let (mut rt, taken) = reactor_runtime(urb).expect("runtime");
        assert!(!taken, "DEFER_TASKRUN alone must be refused");
        exercise(&mut rt);
    }
}
