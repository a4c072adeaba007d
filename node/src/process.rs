//! The process around the reactors: the listeners' addresses (resolved,
//! refused when another process serves them, held until the reactors
//! join them), pinning reactor threads to cores, the open-file limit, and
//! the signal thread (stop with a drain, or reload the TLS certificates
//! and the users file on SIGHUP or when they change on disk).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::identity;
use crate::server::{Shared, DRAIN_TIMEOUT};

pub(crate) fn resolve(address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("bad address {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {address} resolves to nothing"))
}

/// How long a busy address is retried before the start is refused.
pub(crate) const ADDRESS_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Refuses an address that another process serves: the reactors bind with
/// `SO_REUSEPORT`, which would let a second node of the same user share the
/// port and split the clients between two stores. A plain bind (no reuse-port;
/// reuse-addr only, so connections of an earlier run in TIME_WAIT do not
/// count) fails while anyone listens there. Returns the address with the port
/// chosen when 0 was asked for.
///
/// A node killed a moment ago can still hold its listener: io_uring releases
/// a dead process's files asynchronously, after the process is reaped. So
/// the probe retries for `ADDRESS_RELEASE_WAIT` before refusing, which a
/// supervisor restarting a crashed node immediately needs.
pub(crate) fn probe_address(addr: SocketAddr) -> Result<SocketAddr, String> {
    use socket2::{Domain, Socket, Type};
    let started = std::time::Instant::now();
    let s = loop {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|e| e.to_string())?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        match s.bind(&addr.into()) {
            Ok(()) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if started.elapsed() >= ADDRESS_RELEASE_WAIT {
                    return Err(format!(
                        "address {addr} is already in use by another process (another tessera server?); refusing to share it"
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(format!("cannot bind {addr}: {e}")),
        }
    };
    s.local_addr()
        .map_err(|e| e.to_string())?
        .as_socket()
        .ok_or_else(|| "bound to a non-IP address".to_string())
}

/// Binds (without listening) a reuse-port socket to hold the port until the
/// reactors join it. Dropped before serving.
pub(crate) fn reserve_port(addr: SocketAddr) -> Result<(socket2::Socket, SocketAddr), String> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|e| e.to_string())?;
    s.set_reuse_port(true).map_err(|e| e.to_string())?;
    s.set_reuse_address(true).map_err(|e| e.to_string())?;
    s.bind(&addr.into()).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local = s
        .local_addr()
        .map_err(|e| e.to_string())?
        .as_socket()
        .ok_or_else(|| "bound to a non-IP address".to_string())?;
    Ok((s, local))
}

pub(crate) fn pin_to_core(core: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        libc::CPU_SET(core % cpus, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(core, "could not pin reactor thread");
        }
    }
}

/// Raises the open-file limit to its hard maximum: every connection and
/// every segment file is a descriptor, and the default soft limit (often
/// 1024) is far below `MAX_CONNECTIONS_PER_CORE` × cores.
pub(crate) fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!(soft = lim.rlim_cur, "could not raise the open-file limit");
            }
        }
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads
/// it spawns after), so that only `wait_for_signals` receives them.
pub(crate) fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls
    // only read and write it and this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// How often the signal thread looks at the reloadable files' size and
/// modification time (a `stat` each: negligible).
pub const RELOAD_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What identifies a version of a file without reading it: modification
/// time, size and inode (a file replaced by rename changes inode).
pub(crate) type FileStamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(path: &std::path::Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The stamps of the files a reload reads, in `reloadable_files` order.
pub(crate) fn reloadable_stamps(config: &Config) -> Vec<FileStamp> {
    stamps_of(&reloadable_files(config))
}

fn stamps_of(files: &[std::path::PathBuf]) -> Vec<FileStamp> {
    files.iter().map(|f| stamp(f)).collect()
}

/// The files a reload reads: certificates and keys, the users file.
fn reloadable_files(config: &Config) -> Vec<std::path::PathBuf> {
    [&config.tls_cert, &config.tls_key, &config.admin_tls_cert, &config.admin_tls_key, &config.users_file]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// Waits for signals, and every `RELOAD_POLL_INTERVAL` looks whether a
/// reloadable file changed. SIGHUP or a change reloads (`reload`); SIGTERM
/// or SIGINT stops the node: not ready any more, no new connections,
/// requests in flight drain (`DRAIN_TIMEOUT`). A second stop signal exits
/// at once. `stamps`: the files' stamps from before the node first read
/// them (`reloadable_stamps`).
pub(crate) fn wait_for_signals(set: libc::sigset_t, shared: Arc<Shared>, stop: async_channel::Sender<()>, mut stamps: Vec<FileStamp>) {
    let files = reloadable_files(&shared.config);
    let mut wait = || loop {
        let timeout = libc::timespec { tv_sec: RELOAD_POLL_INTERVAL.as_secs() as libc::time_t, tv_nsec: 0 };
        // SAFETY: sigtimedwait reads the set and the timeout; a null info is allowed.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if sig == libc::SIGHUP {
            tracing::info!("SIGHUP: reloading the TLS certificates and the users file");
            reload(&shared);
            stamps = stamps_of(&files);
        } else if sig > 0 {
            return Some(sig);
        } else {
            let err = std::io::Error::last_os_error().raw_os_error();
            if err != Some(libc::EAGAIN) && err != Some(libc::EINTR) {
                return None;
            }
            let now = stamps_of(&files);
            if now != stamps {
                let changed: Vec<String> =
                    files.iter().zip(now.iter().zip(&stamps)).filter(|(_, (a, b))| a != b).map(|(f, _)| f.display().to_string()).collect();
                tracing::info!(files = ?changed, "files changed: reloading the TLS certificates and the users file");
                stamps = now;
                reload(&shared);
            }
        }
    };
    let Some(sig) = wait() else {
        // Never happens with a valid set; keep serving rather than stop.
        tracing::error!("sigwait failed: stop signals are not handled");
        std::mem::forget(stop);
        return;
    };
    tracing::info!(signal = sig, drain_timeout_s = DRAIN_TIMEOUT.as_secs(), "stop signal: draining requests in flight");
    shared.metrics.set_stopping();
    stop.close();
    if let Some(sig) = wait() {
        tracing::warn!(signal = sig, "second stop signal: exiting without draining");
        std::process::exit(1);
    }
}

/// SIGHUP or a changed file: the TLS certificates and the users file are
/// read again. What fails to load is logged and the previous one stays in
/// use (a half-written file is retried at its next change).
fn reload(shared: &Shared) {
    if let Some(tls) = &shared.tls {
        tls.reload();
    }
    if let Some(tls) = &shared.admin_tls {
        tls.reload();
    }
    let config = &shared.config;
    match identity::load(&shared.home, config.users_file.as_deref()) {
        Ok(ids) => {
            tracing::info!(identities = ids.len(), "identities reloaded");
            shared.identities.store(Arc::new(ids));
        }
        Err(e) => tracing::error!("users not reloaded, keeping the previous ones: {e}"),
    }
}
