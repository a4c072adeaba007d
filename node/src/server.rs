//! Start-up and the reactors: one pinned thread per core, each with its own
//! monoio runtime (io_uring, or epoll where io_uring is refused), its own
//! `SO_REUSEPORT` listener, its own shards and its inbound cross-core queue.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use tessera_io::Shard;

use crate::bodybuf::{BodyBudget, BODY_BUFFER_BYTES_PER_CORE};
use crate::buckets::Buckets;
use crate::conn::LogLimiter;
pub use crate::conn_load::ConnLoad;
use crate::config::Config;
use crate::iam::keys::{NodeKeys, KEY_FILE};
use crate::iam::store::IamStore;
use crate::identity::{self, Identities};
use crate::layout::Layout;
use crate::metrics::{NodeMetrics, SHARD_STATS_INTERVAL};
use crate::process::{
    block_stop_signals, pin_to_core, probe_address, raise_fd_limit, reloadable_stamps, reserve_port, resolve, wait_for_signals,
};
use crate::shards::{self, CoreReceiver, CoreSender, LocalShard, Shards};

/// Most open connections per reactor; beyond it new connections get 503 SlowDown.
pub const MAX_CONNECTIONS_PER_CORE: usize = 4096;
/// Most open connections from one client address per reactor; beyond it new
/// connections from that address get 503 SlowDown (one client cannot take
/// every slot, nor every byte of the partial-head and body budgets).
pub const MAX_CONNECTIONS_PER_CLIENT_PER_CORE: usize = 256;
/// After SIGTERM or SIGINT, how long requests in flight may take to finish
/// before the process exits anyway (below the 30 s most service managers
/// wait before SIGKILL).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a draining reactor looks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// What every reactor shares, read-only after start (buckets publish snapshots).
pub struct Shared {
    pub config: Config,
    pub layout: Layout,
    /// The root and the users file; SIGHUP swaps in a fresh load.
    pub identities: arc_swap::ArcSwap<Identities>,
    pub buckets: Buckets,
    pub iam: IamStore,
    /// The key service of SSE-S3 and SSE-KMS (see `sse::kms`).
    pub kms: Arc<dyn crate::sse::kms::KeyService>,
    /// Counters and readiness (per-core slots, see `metrics`).
    pub metrics: NodeMetrics,
    /// The S3 listener's TLS certificate (`None`: plain HTTP).
    pub tls: Option<crate::tls::TlsState>,
    /// The admin listener's (`None`: plain HTTP).
    pub admin_tls: Option<crate::tls::TlsState>,
    /// Cluster membership, when the node has a cluster address.
    pub cluster: Option<Arc<crate::cluster::ClusterNode>>,
    /// The data dir whose copies of the node's files count (`node_files`).
    pub home: std::path::PathBuf,
    /// S3 connections each reactor serves (see `ConnLoad`).
    pub conn_load: ConnLoad,
}

/// A connection one reactor let go between requests for another: the
/// socket, out of the first one's runtime, and the client's address.
type Handoff = (std::net::TcpStream, SocketAddr);

/// One reactor's view of the node.
pub struct Ctx {
    pub core: usize,
    pub shards: Shards,
    pub shared: Arc<Shared>,
    pub connections: Cell<usize>,
    /// Open connections of the admin listener on this reactor.
    pub admin_connections: Cell<usize>,
    /// Open connections per client address (see `MAX_CONNECTIONS_PER_CLIENT_PER_CORE`).
    pub clients: RefCell<HashMap<IpAddr, usize>>,
    /// Bytes of request heads received but not complete yet, over all of this
    /// reactor's connections (see `conn::MAX_PARTIAL_HEAD_BYTES_PER_CORE`).
    pub partial_head_bytes: Cell<usize>,
    /// Memory for request bodies (see `bodybuf`).
    pub body_budget: Rc<BodyBudget>,
    /// Internal errors logged, at a bounded rate.
    pub error_log: LogLimiter,
    /// Access-log lines not delivered yet (see `s3::logging`).
    pub access_log: crate::s3::logging::AccessLog,
    /// Closed when the node stops: `recv()` then returns at once.
    pub shutdown: async_channel::Receiver<()>,
    request_ids: RequestIds,
    /// SigV4 signing keys derived on this reactor (see `sigv4::SigningKeyCache`).
    pub signing_keys: tessera_proto::sigv4::SigningKeyCache,
    /// MD5 lanes shared by the bodies this reactor receives (`md5x`).
    pub md5_pool: Rc<RefCell<tessera_proto::md5x::Md5Pool>>,
    /// Every reactor's queue of connections handed to it (`ConnLoad`).
    handoff: Vec<async_channel::Sender<Handoff>>,
}

impl Ctx {
    /// `fut`'s output, or `None` once the node stops (`shutdown` closes).
    pub async fn unless_stopped<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        use futures_util::future::{select, Either};
        match select(std::pin::pin!(fut), std::pin::pin!(self.shutdown.recv())).await {
            Either::Left((out, _)) => Some(out),
            Either::Right(_) => None,
        }
    }

    /// A request id: unique within this process run, and unguessable.
    pub fn next_request_id(&self) -> String {
        self.request_ids.next()
    }
}

/// The MD5 kernel: the CPU's widest, or `TESSERA_MD5_KERNEL`
/// (`scalar`, `avx2`, `avx512`) for comparisons; a kernel the CPU lacks
/// falls back to scalar.
fn md5_kernel() -> tessera_proto::md5x::Kernel {
    use tessera_proto::md5x::Kernel;
    match std::env::var("TESSERA_MD5_KERNEL").as_deref() {
        Ok("scalar") => Kernel::Scalar,
        Ok("avx2") => Kernel::Avx2,
        Ok("avx512") => Kernel::Avx512,
        _ => Kernel::detect(),
    }
}

/// Request ids: the core number, then the core's request counter through a
/// keyed permutation of 64-bit numbers (four Feistel rounds of SipHash-2-4,
/// a keyed PRF, under a 128-bit key drawn at start). Unique because the
/// permutation is one to one; unguessable because an id says nothing of
/// the next one without the key. (HMAC-SHA256 rounds cost 13% of a small
/// GET's instructions; SipHash of 5 bytes costs about a hundred.)
struct RequestIds {
    core: u8,
    key: [u8; 16],
    counter: Cell<u64>,
}

impl RequestIds {
    fn new(core: usize) -> Result<Self, String> {
        let mut key = [0u8; 16];
        SystemRandom::new().fill(&mut key).map_err(|_| "no system randomness for request ids".to_string())?;
        Ok(RequestIds { core: core as u8, key, counter: Cell::new(0) })
    }

    fn next(&self) -> String {
        use std::hash::Hasher;
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let (mut left, mut right) = ((n >> 32) as u32, n as u32);
        for round in 0u8..4 {
            let mut h = siphasher::sip::SipHasher24::new_with_key(&self.key);
            h.write_u8(round);
            h.write_u32(right);
            let f = h.finish() as u32;
            (left, right) = (right, left ^ f);
        }
        // By hand rather than `format!`: one per request.
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut id = [0u8; 18];
        let v = (u128::from(self.core) << 64) | (u128::from(left) << 32) | u128::from(right);
        for (i, d) in id.iter_mut().enumerate() {
            *d = DIGITS[((v >> (4 * (17 - i))) & 15) as usize];
        }
        String::from_utf8_lossy(&id).into_owned()
    }
}

pub fn run(config: Config) -> Result<(), String> {
    let started = Instant::now();
    // Everything that can be checked without a data dir is, before one is touched.
    config.check()?;
    // Stamped before they are read: a change made from here on, before the
    // signal thread starts watching, is seen at its first look (stamped
    // there, a file changed while the node started was never reloaded).
    let file_stamps = reloadable_stamps(&config);
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::TlsState::load(cert, key)?),
        _ => None,
    };
    let admin_tls = match (&config.admin_tls_cert, &config.admin_tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::TlsState::load(cert, key).map_err(|e| format!("admin listener: {e}"))?)
        }
        _ => None,
    };
    let addr = resolve(&config.address)?;
    let admin_addr = match &config.admin_address {
        Some(a) => Some(resolve(a).map_err(|e| format!("--admin-address: {e}"))?),
        None => None,
    };
    raise_fd_limit();
    let addr = probe_address(addr)?;
    // Held from here until the reactors listen: while it is bound, no
    // later bind to port 0 (the admin listener's probe, another process)
    // can be handed this port. (Both taken from port 0 once got the same
    // port, and the kernel then split S3 connections between the two.)
    let (reservation, addr) = reserve_port(addr)?;
    let (admin_reservation, admin_addr) = match admin_addr {
        Some(a) if a == addr || (a.port() == addr.port() && a.port() != 0) => {
            return Err(format!("--admin-address {a} must differ from --address {addr}"));
        }
        Some(a) => {
            let a = probe_address(a).map_err(|e| format!("admin listener: {e}"))?;
            if a.port() == addr.port() {
                return Err(format!("admin listener: got the S3 address's port {}", a.port()));
            }
            let (r, a) = reserve_port(a).map_err(|e| format!("admin listener: {e}"))?;
            (Some(r), Some(a))
        }
        None => (None, None),
    };
    let signals = block_stop_signals();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dirs = ?config.data_dirs,
        address = %addr,
        admin_address = %admin_addr.map_or("off".to_string(), |a| a.to_string()),
        region = %config.region,
        "starting tessera"
    );
    // Held for the life of the process, taken before anything in the dirs is written.
    let (_locks, layout) =
        crate::sets_open::open_for_server(&config.data_dirs, config.shards_per_disk, config.erasure)
            .map_err(|e| e.to_string())?;
    // The node's files live in every online dir (see `node_files`): the
    // copies are made equal first, then loaded (or created) in home, then
    // what was created is copied out.
    let node_dirs = crate::node_files::online_dirs(&layout, &config.data_dirs);
    let home = node_dirs.first().cloned().ok_or("no online data dir")?;
    let spread = crate::node_files::spread(&node_dirs)?;
    if spread > 0 {
        tracing::warn!(copies = spread, home = %home.display(), "node files copied to data dirs that lacked them or held other copies");
    }
    let identities = identity::load(&home, config.users_file.as_deref()).map_err(|e| e.to_string())?;
    let key_file = config.key_file.clone().unwrap_or_else(|| home.join(KEY_FILE));
    let node_keys = NodeKeys::load_or_create(&key_file)?;
    let master = crate::sse::kms::load_master_key(&home)?;
    let kms: Arc<dyn crate::sse::kms::KeyService> =
        Arc::new(crate::sse::kms::LocalKms::open(&node_dirs, &master, &config.kms_keys)?);
    let threads = config.threads;
    let total = layout.total_shards();
    tracing::info!(
        threads,
        shards = total,
        identities = identities.len(),
        io_uring = tessera_io::io_uring_available(),
        "opening shards"
    );
    let buckets = Buckets::new(layout.meta_shards.clone());
    // In a cluster, IAM secrets and STS tokens are sealed with keys derived
    // from the cluster secret (the same on every node); the node key still
    // opens what the node kept before it joined (`iam::cluster`).
    let iam = match &config.cluster {
        Some(c) => IamStore::for_cluster(NodeKeys::for_cluster(&c.secret)?, node_keys, layout.meta_shards.clone()),
        None => IamStore::new(node_keys, layout.meta_shards.clone()),
    };
    let shard_disks: Vec<String> = layout
        .shard_dirs
        .iter()
        .map(|sd| {
            config.data_dirs.iter().find(|d| sd.starts_with(d)).map_or_else(String::new, |d| d.display().to_string())
        })
        .collect();
    let metrics = NodeMetrics::new(threads, total as usize).with_disks(shard_disks);
    let identities = arc_swap::ArcSwap::from_pointee(identities);
    let cluster = match config.cluster.clone() {
        Some(c) => {
            if tls.is_some() {
                // Nodes forward S3 requests to a key's owner over plain HTTP (`forward`).
                return Err("--tls-cert with --cluster-address: forwarding S3 requests between nodes over TLS is \
                            not built yet; terminate TLS in front of the nodes"
                    .into());
            }
            let node = Arc::new(crate::cluster::ClusterNode::open(c, &home)?);
            node.set_s3_address(addr);
            node.threads.store(threads as u64, std::sync::atomic::Ordering::Relaxed);
            node.shards.store(total as u64, std::sync::atomic::Ordering::Relaxed);
            node.start_raft(&home)?;
            if let Some(r) = node.raft() {
                buckets.attach_cluster(crate::buckets::cluster::ClusterLink::new(node.clone(), r.clone()));
                iam.attach_cluster(crate::iam::cluster::IamLink::new(r.clone()));
            }
            Some(node)
        }
        None => None,
    };
    crate::node_files::spread(&node_dirs)?;
    let conn_load = ConnLoad::new(threads);
    let shared = Arc::new(Shared { config, layout, identities, buckets, iam, kms, metrics, tls, admin_tls, cluster, home, conn_load });
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let drained = Arc::new(AtomicUsize::new(0));
    let owner: Vec<usize> = (0..total as usize).map(|s| s % threads).collect();
    let (senders, receivers): (Vec<CoreSender>, Vec<CoreReceiver>) =
        (0..threads).map(|_| async_channel::bounded(shards::CROSS_CORE_QUEUE)).unzip();
    // Unbounded: a reactor hands over at most the connections it serves.
    let (handoff, handoff_rxs): (Vec<async_channel::Sender<Handoff>>, Vec<async_channel::Receiver<Handoff>>) =
        (0..threads).map(|_| async_channel::unbounded()).unzip();
    let mut handoff_rxs = handoff_rxs.into_iter();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut go = Vec::new();
    let mut handles = Vec::new();
    for (core, rx) in receivers.into_iter().enumerate() {
        let (go_tx, go_rx) = async_channel::bounded::<()>(1);
        go.push(go_tx);
        let r = Reactor {
            core,
            addr,
            admin_addr,
            shutdown: stop_rx.clone(),
            drained: drained.clone(),
            shared: shared.clone(),
            owner: owner.clone(),
            senders: senders.clone(),
            rx,
            handoff: handoff.clone(),
            handoff_rx: handoff_rxs.next().ok_or("no handoff queue")?,
        };
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("reactor-{core}"))
            .spawn(move || r.run(ready, go_rx))
            .map_err(|e| format!("cannot spawn reactor: {e}"))?;
        handles.push(h);
    }
    drop(senders);
    drop(handoff);
    drop(ready_tx);
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a reactor died during start".into()),
        }
    }
    drop(reservation);
    drop(admin_reservation);
    drop(stop_rx);
    for g in go {
        let _ = g.send_blocking(());
    }
    shared.metrics.set_serving();
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
    if let Some(a) = admin_addr {
        let scheme = if shared.admin_tls.is_some() { "https" } else { "http" };
        println!("tessera: admin on {scheme}://{a}");
    }
    let scheme = if shared.tls.is_some() { "https" } else { "http" };
    println!("tessera: listening on {scheme}://{addr}");
    let stopper = shared.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_signals(signals, stopper, stop_tx, file_stamps))
        .map_err(|e| format!("cannot spawn the signal thread: {e}"))?;
    for h in handles {
        let _ = h.join();
    }
    if let Some(c) = &shared.cluster {
        c.leave();
    }
    tracing::info!(uptime_s = shared.metrics.started.elapsed().as_secs(), "stopped");
    Ok(())
}

struct Reactor {
    core: usize,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: async_channel::Receiver<()>,
    /// Reactors whose connections are done (see `drain`).
    drained: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    owner: Vec<usize>,
    senders: Vec<CoreSender>,
    rx: CoreReceiver,
    /// Every reactor's queue of connections handed to it, and this one's.
    handoff: Vec<async_channel::Sender<Handoff>>,
    handoff_rx: async_channel::Receiver<Handoff>,
}

impl Reactor {
    fn run(self, ready: std::sync::mpsc::Sender<Result<(), String>>, go: async_channel::Receiver<()>) {
        pin_to_core(self.core);
        let mut rt = match crate::ring::reactor_runtime(crate::ring::ring_setup()) {
            Ok((rt, _)) => rt,
            Err(e) => {
                let _ = ready.send(Err(format!("reactor {}: cannot build runtime: {e}", self.core)));
                return;
            }
        };
        rt.block_on(async move {
            let core = self.core;
            let threads = self.shared.config.threads;
            let drained = self.drained.clone();
            let listener = match self.start().await {
                Ok(x) => x,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let (listener, ctx, handoff_rx) = listener;
            let _ = ready.send(Ok(()));
            if go.recv().await.is_err() {
                return;
            }
            monoio::spawn(take_handoffs(handoff_rx, ctx.clone()));
            accept_loop(listener, ctx.clone()).await;
            drain(&ctx, &drained, threads).await;
            settle_shards(&ctx).await;
            tracing::info!(core, "reactor stopped");
        });
    }

    async fn start(self) -> Result<(monoio::net::TcpListener, Rc<Ctx>, async_channel::Receiver<Handoff>), String> {
        let shared = self.shared;
        let total = shared.layout.total_shards() as usize;
        let mut local: Vec<Option<Rc<LocalShard>>> = vec![None; total];
        // A shard that cannot be opened (a failing disk) stays offline: its
        // requests answer 503, the rest of the node serves.
        let mine: Vec<usize> = (0..total).filter(|&s| self.owner[s] == self.core).collect();
        let opts = shared.config.shard_options();
        let cache = Rc::new(crate::hotcache::HotCache::new(
            shared.config.cache_bytes_per_core(),
            shared.config.cache_max_object_bytes,
        ));
        // Each logical shard's members: the shard itself on format 1, the
        // lane's online member shards on format 2 (all on this core).
        let opened = futures_util::future::join_all(mine.iter().map(|&s| {
            let members = shared.layout.members(s);
            let opts = opts.clone();
            async move {
                let mut out = Vec::with_capacity(members.len());
                for (id, dir, disk) in members {
                    let r = Shard::open(&dir, id, opts.clone()).await;
                    out.push((dir, disk, r));
                }
                (s, out)
            }
        }))
        .await;
        let lanes = shared.layout.lanes.as_ref();
        let notify_queue = Rc::new(crate::notify::CoreQueue::default());
        for (s, members) in opened {
            let mut shards = Vec::new();
            for (dir, disk, r) in members {
                match r {
                    Ok(shard) => shards.push((disk, shard)),
                    Err(e @ tessera_io::IoError::Format(_)) => {
                        return Err(format!("cannot open shard {}: {e}", dir.display()));
                    }
                    Err(e) => {
                        if let (Some(l), Some(d)) = (lanes, disk) {
                            l.health.fail(d);
                        }
                        tracing::error!(shard = s, dir = %dir.display(), error = %e, "shard cannot be opened; it stays offline (its requests answer 503)");
                    }
                }
            }
            if shards.is_empty() {
                shared.metrics.shards[s].set_offline();
                continue;
            }
            let (disk, primary) = shards.remove(0);
            // A healing disk lacks records: it never serves as the primary.
            if let (Some(l), Some(d)) = (lanes, disk) {
                if l.health.healing(d) {
                    tracing::error!(shard = s, "every whole member of the lane failed to open; it stays offline");
                    shared.metrics.shards[s].set_offline();
                    continue;
                }
            }
            shared.metrics.shards[s].publish(&primary.stats());
            let others = shards.into_iter().filter_map(|(d, sh)| d.map(|d| (d, crate::holder::Holder::Local(sh)))).collect();
            let mirrors = crate::lanes::mirrors_of(
                disk,
                others,
                lanes.map_or(1, |l| l.write_quorum),
                lanes.map(|l| l.health.clone()),
                lanes.and_then(|l| {
                    let f = &l.format;
                    tessera_erasure::Params::new(f.set_disks() - f.parity, f.parity, f.stripe_bytes).ok()
                }),
            );
            if let Some(m) = &mirrors {
                crate::lanes::register(&primary, m);
            }
            local[s] = Some(Rc::new(
                LocalShard::with_cache(primary, cache.clone())
                    .with_mirrors(mirrors)
                    .with_notify(notify_queue.clone())
                    .with_ruled(shared.buckets.ruled()),
            ));
        }
        monoio::spawn(shards::serve(self.rx, local.clone()));
        if let Some(l) = lanes {
            let rate = shared.config.heal_bytes_per_sec / shared.config.threads.max(1) as u64;
            let rate = rate.max(u64::from(shared.config.heal_bytes_per_sec > 0));
            if l.health.disks.iter().any(|d| d.heal.is_healing()) {
                monoio::spawn(crate::heal::run(l.health.clone(), local.clone(), rate));
            }
            monoio::spawn(crate::ec_scrub::run(l.health.clone(), local.clone(), rate));
        }
        let md5_pool = tessera_proto::md5x::Md5Pool::with_kernel(md5_kernel());
        monoio::spawn(publish_shard_stats(shared.clone(), local.clone(), self.core, cache, md5_pool.clone()));
        let opts = monoio::net::ListenerOpts::new().reuse_port(true).reuse_addr(true).backlog(4096);
        let listener = monoio::net::TcpListener::bind_with_config(self.addr, &opts)
            .map_err(|e| format!("reactor {}: cannot listen on {}: {e}", self.core, self.addr))?;
        let admin_listener = match self.admin_addr {
            Some(a) => Some(
                monoio::net::TcpListener::bind_with_config(a, &opts)
                    .map_err(|e| format!("reactor {}: cannot listen on admin address {a}: {e}", self.core))?,
            ),
            None => None,
        };
        let shared_interval = shared.config.access_log_interval;
        let ctx = Rc::new(Ctx {
            core: self.core,
            shards: Shards::new(self.core, local, self.owner, self.senders),
            shared,
            connections: Cell::new(0),
            admin_connections: Cell::new(0),
            clients: RefCell::new(HashMap::new()),
            partial_head_bytes: Cell::new(0),
            body_budget: BodyBudget::new(BODY_BUFFER_BYTES_PER_CORE),
            error_log: LogLimiter::new(),
            access_log: crate::s3::logging::AccessLog::new(shared_interval),
            request_ids: RequestIds::new(self.core)?,
            signing_keys: tessera_proto::sigv4::SigningKeyCache::new(),
            md5_pool,
            shutdown: self.shutdown,
            handoff: self.handoff,
        });
        // One reactor loads the bucket registry from every copy (the other
        // cores answer its reads as soon as their shards are open); nobody
        // serves before every reactor is ready.
        if self.core == 0 && ctx.shared.buckets.clustered() {
            // In a cluster the registry follows the Raft configuration; the
            // buckets of the meta shards (from before the node joined) are
            // proposed to it.
            let c = ctx.clone();
            monoio::spawn(async move {
                let purge = |id: u64| {
                    let c = c.clone();
                    monoio::spawn(async move {
                        if let Err(e) = crate::s3::bucket::purge_uploads(&c, id).await {
                            tracing::warn!(bucket_id = id, error = %e.code, "cannot purge the uploads of a deleted bucket");
                        }
                    });
                };
                c.shared.buckets.follow(purge).await
            });
            let c = ctx.clone();
            monoio::spawn(async move { c.shared.buckets.import_local(&c.shards).await });
            tracing::info!("bucket registry follows the cluster configuration");
        } else if self.core == 0 {
            let n = ctx.shared.buckets.load(&ctx.shards).await?;
            tracing::info!(buckets = n, copies = ctx.shared.layout.meta_shards.len(), "bucket registry loaded");
        }
        if self.core == 0 && ctx.shared.iam.clustered() {
            // In a cluster the IAM store follows the Raft configuration; the
            // records of the meta shards (from before the node joined) are
            // proposed to it.
            let c = ctx.clone();
            monoio::spawn(async move { c.shared.iam.follow().await });
            let c = ctx.clone();
            monoio::spawn(async move { c.shared.iam.import_local(&c.shards).await });
            tracing::info!("IAM store follows the cluster configuration");
        } else if self.core == 0 {
            let n = ctx.shared.iam.load(&ctx.shards).await?;
            tracing::info!(records = n, "IAM store loaded");
        }
        monoio::spawn(crate::s3::logging::deliver_periodically(ctx.clone()));
        monoio::spawn(crate::lifecycle::run(ctx.clone()));
        monoio::spawn(crate::notify::worker::run(ctx.clone()));
        if ctx.shared.cluster.is_some() {
            crate::shards::set_member_ctx(&ctx);
            monoio::spawn(crate::cluster_lanes::run(ctx.clone()));
        }
        if let (0, Some(c)) = (self.core, &ctx.shared.cluster) {
            let host: Rc<dyn crate::holder::host::ShardHost> = Rc::new(crate::holder::host::NodeHost { ctx: ctx.clone() });
            monoio::spawn(crate::cluster::run(c.clone(), ctx.shutdown.clone(), Some(host)));
            monoio::spawn(crate::handover::run(ctx.clone()));
        }
        monoio::spawn(crate::replication::worker::run(ctx.clone()));
        monoio::spawn(crate::replication::backfill::run(ctx.clone()));
        if let Some(l) = admin_listener {
            monoio::spawn(crate::admin::accept_loop(l, ctx.clone()));
        }
        Ok((listener, ctx, self.handoff_rx))
    }
}

/// One open connection of a client address, counted in `Ctx::clients`.
struct ClientSlot {
    ctx: Rc<Ctx>,
    ip: IpAddr,
}

impl ClientSlot {
    /// Counts a connection from `ip`, or None when that address is at its cap.
    fn take(ctx: &Rc<Ctx>, ip: IpAddr) -> Option<ClientSlot> {
        let mut clients = ctx.clients.borrow_mut();
        let n = clients.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_CLIENT_PER_CORE {
            return None;
        }
        *n += 1;
        Some(ClientSlot { ctx: ctx.clone(), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut clients = self.ctx.clients.borrow_mut();
        if let Some(n) = clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

/// Publishes this reactor's shards' figures for `/metrics` and the admin API.
async fn publish_shard_stats(
    shared: Arc<Shared>,
    local: Vec<Option<Rc<LocalShard>>>,
    core: usize,
    cache: Rc<crate::hotcache::HotCache>,
    md5_pool: Rc<RefCell<tessera_proto::md5x::Md5Pool>>,
) {
    loop {
        monoio::time::sleep(SHARD_STATS_INTERVAL).await;
        shared.metrics.core(core).publish_cache(&cache.stats());
        shared.metrics.core(core).publish_md5(&md5_pool.borrow().stats());
        let mut pending = 0;
        for (s, l) in local.iter().enumerate() {
            if let Some(l) = l {
                shared.metrics.shards[s].publish(&l.shard.stats());
                pending += l.shard.len(crate::meta::T_EVENTS) as u64;
            }
        }
        shared.metrics.core(core).publish_notify_pending(pending);
    }
}

/// After the accept loop ended: waits (at most `DRAIN_TIMEOUT`) for this
/// reactor's connections to finish, then for every other reactor's, since
/// their requests may still need shards this reactor owns.
async fn drain(ctx: &Ctx, drained: &AtomicUsize, threads: usize) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let busy = || ctx.connections.get() + ctx.admin_connections.get();
    while busy() > 0 && Instant::now() < deadline {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    let left = busy();
    if left > 0 {
        tracing::warn!(core = ctx.core, connections = left, "drain timed out; closing connections");
    }
    drained.fetch_add(1, Ordering::SeqCst);
    while drained.load(Ordering::SeqCst) < threads && Instant::now() < deadline + DRAIN_POLL * 100 {
        monoio::time::sleep(DRAIN_POLL).await;
    }
}

/// After the drain: every shard this reactor owns writes a checkpoint if
/// its log grew much since the last one, and a durable mark, so the next
/// start reads snapshots instead of replaying the logs. On format 2 the
/// lane's other members too: without the mark, bit rot in a member's last
/// record would look like a torn tail at the next start and cut an
/// acknowledged commit.
async fn settle_shards(ctx: &Ctx) {
    for s in 0..ctx.shards.count() {
        if let Some(local) = ctx.shards.local(s) {
            if let Err(e) = local.shard.prepare_stop().await {
                tracing::warn!(shard = s, error = %e, "no checkpoint at stop; the next start replays the log");
            }
            for member in local.mirror_shards() {
                if let Err(e) = member.prepare_stop().await {
                    tracing::warn!(lane = s, member = member.id(), error = %e, "no checkpoint at stop for a lane member");
                }
            }
        }
    }
    for member in crate::members::open_here() {
        if let Err(e) = member.prepare_stop().await {
            tracing::warn!(member = member.id(), error = %e, "no checkpoint at stop for a member shard of another node's lane");
        }
    }
    crate::shards::clear_member_ctx();
}

/// Accepts until the node stops (the shutdown channel closes).
async fn accept_loop(listener: monoio::net::TcpListener, ctx: Rc<Ctx>) {
    while let Some(accepted) = ctx.unless_stopped(listener.accept()).await {
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(core = ctx.core, "accept: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        ctx.shared.conn_load.opened(ctx.core);
        serve_accepted(&ctx, stream, peer);
    }
}

/// Hands a connection `serve` let go to reactor `to` (counted there
/// already). A reactor that has stopped takes nothing: the connection
/// closes, as an idle one does at the stop.
fn hand_over(ctx: &Ctx, moved: crate::conn::Moved, peer: SocketAddr) {
    let crate::conn::Moved { stream, to } = moved;
    // Out of this runtime (nothing else holds the socket: the connection
    // is between requests, no operation on it in flight), into the other's.
    let fd = std::os::fd::IntoRawFd::into_raw_fd(stream);
    // SAFETY: `fd` is the connection's socket, just released by the
    // runtime, and owned by nothing else from here.
    let std = unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if ctx.handoff[to].try_send((std, peer)).is_err() {
        ctx.shared.conn_load.done(to);
    }
}

/// Serves the connections other reactors hand to this one, until the node stops.
async fn take_handoffs(rx: async_channel::Receiver<Handoff>, ctx: Rc<Ctx>) {
    while let Some(Ok((std, peer))) = ctx.unless_stopped(rx.recv()).await {
        match monoio::net::TcpStream::from_std(std) {
            Ok(stream) => serve_accepted(&ctx, stream, peer),
            Err(e) => {
                tracing::warn!(core = ctx.core, "cannot take a connection from another reactor: {e}");
                ctx.shared.conn_load.done(ctx.core);
            }
        }
    }
}

/// Serves one connection on this reactor (counted for it in `ConnLoad`).
fn serve_accepted(ctx: &Rc<Ctx>, stream: monoio::net::TcpStream, peer: SocketAddr) {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        match serve_counted(&ctx, stream, peer).await {
            Some(moved) => hand_over(&ctx, moved, peer),
            None => ctx.shared.conn_load.done(ctx.core),
        }
    });
}

/// Serves a connection until it ends, or `serve` lets it go to another reactor.
async fn serve_counted(ctx: &Rc<Ctx>, stream: monoio::net::TcpStream, peer: SocketAddr) -> Option<crate::conn::Moved> {
    if ctx.connections.get() >= MAX_CONNECTIONS_PER_CORE {
        crate::conn::reject_busy(stream, ctx.shared.tls.is_some()).await;
        return None;
    }
    let Some(slot) = ClientSlot::take(ctx, peer.ip()) else {
        crate::conn::reject_busy(stream, ctx.shared.tls.is_some()).await;
        return None;
    };
    ctx.connections.set(ctx.connections.get() + 1);
    let metrics = ctx.shared.metrics.core(ctx.core);
    metrics.connection_opened();
    let moved = crate::conn::serve(ctx.clone(), stream, peer.ip()).await;
    metrics.connection_closed();
    ctx.connections.set(ctx.connections.get() - 1);
    drop(slot);
    moved
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    /// Ids are 18 uppercase hex digits, the core's two first, and distinct.
    #[test]
    fn request_ids_are_hex_and_distinct() {
        let ids = RequestIds::new(0x2a).expect("randomness");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.next();
            assert_eq!(id.len(), 18, "{id}");
            assert!(id.starts_with("2A"), "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{id}");
            assert!(seen.insert(id));
        }
    }
}
