//! The node's side of cluster membership (issue 12, first piece): gossip
//! with `tessera_cluster::Gossip` over UDP on the cluster address, run by
//! reactor 0, and the view it publishes for the admin API and metrics.
//!
//! Nothing on the data path uses membership yet: every node still serves
//! only its own disks. What this gives an operator today is a node that
//! joins (`--cluster-address`, `--join`, a shared `TESSERA_CLUSTER_SECRET`),
//! sees its peers, detects a dead one within seconds, and refuses anyone
//! without the secret (`GET /admin/v1/cluster`, `tessera admin cluster`).
//!
//! Files: `<first data dir>/tessera.node` holds the node id, created at
//! the first start with a cluster address (FORMAT BOUNDARY, text):
//! ```text
//! tessera-node 1
//! id <32 hex digits>
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_cluster::gossip::{Gossip, MemberView, NodeIdentity, Timing, NODE_ID_BYTES};
use tessera_cluster::seal::{ClusterKey, MIN_SECRET_BYTES};

pub const NODE_FILE: &str = "tessera.node";
const NODE_FILE_VERSION: &str = "tessera-node 1";
/// Largest gossip datagram accepted (foca's packets stay under 1,400 bytes).
const MAX_DATAGRAM_BYTES: usize = 64 * 1024;
/// The timer loop wakes at least this often (to notice a stop).
const TICK: Duration = Duration::from_millis(100);

/// How a node takes part in a cluster (`--cluster-address` and friends).
#[derive(Clone)]
pub struct ClusterConfig {
    /// Where this node listens for cluster traffic, and what peers reach it at.
    pub address: SocketAddr,
    /// Members to join through (none: this node starts a cluster).
    pub join: Vec<SocketAddr>,
    pub secret: Vec<u8>,
    /// The failure domain this node is in (`--zone`; empty: none named):
    /// lanes past four nodes span as many zones as they can.
    pub zone: String,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig").field("address", &self.address).field("join", &self.join).finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// Builds the settings from the flags: the secret from
    /// `TESSERA_CLUSTER_SECRET` or a file, checked before any dir is touched.
    pub fn from_flags(
        address: Option<&str>,
        join: &[String],
        secret_env: Option<String>,
        secret_file: Option<&Path>,
    ) -> Result<Option<ClusterConfig>, String> {
        let Some(address) = address else {
            if !join.is_empty() {
                return Err("--join needs --cluster-address (this node's own cluster address)".into());
            }
            return Ok(None);
        };
        let address = resolve(address).map_err(|e| format!("--cluster-address: {e}"))?;
        if address.ip().is_unspecified() || address.port() == 0 {
            return Err(format!(
                "--cluster-address {address}: give the address and port other nodes reach this node at \
                 (not 0.0.0.0, [::] or port 0)"
            ));
        }
        let join = join
            .iter()
            .map(|j| resolve(j).map_err(|e| format!("--join {j}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let secret = match (secret_env, secret_file) {
            (Some(_), Some(_)) => return Err("give the cluster secret once: TESSERA_CLUSTER_SECRET or --cluster-secret-file".into()),
            (Some(s), None) => s.into_bytes(),
            (None, Some(p)) => {
                let s = std::fs::read(p).map_err(|e| format!("--cluster-secret-file {}: {e}", p.display()))?;
                let trimmed = s.trim_ascii().to_vec();
                trimmed
            }
            (None, None) => {
                return Err(
                    "a cluster needs a secret shared by its nodes: set TESSERA_CLUSTER_SECRET or --cluster-secret-file".into(),
                )
            }
        };
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!("the cluster secret must be at least {MIN_SECRET_BYTES} bytes"));
        }
        Ok(Some(ClusterConfig { address, join, secret, zone: String::new() }))
    }

    /// With this node's zone (`--zone`): up to 64 letters, digits, `.`,
    /// `_` or `-`.
    pub fn with_zone(mut self, zone: Option<&str>) -> Result<ClusterConfig, String> {
        let zone = zone.unwrap_or_default();
        if zone.len() > 64 || !zone.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) {
            return Err(format!("--zone {zone:?}: up to 64 letters, digits, '.', '_' or '-'"));
        }
        self.zone = zone.to_string();
        Ok(self)
    }
}

/// Binds, retrying while the address is in use for up to
/// `process::ADDRESS_RELEASE_WAIT`: a node killed a moment ago can still
/// hold its sockets (io_uring releases a dead process's files after it is
/// reaped), and a supervisor restarts it at once.
fn bind_retrying<T>(mut bind: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match bind() {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && started.elapsed() < crate::process::ADDRESS_RELEASE_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn resolve(a: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    a.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| format!("{a} resolves to no address"))
}

/// The node's cluster state, shared by every reactor.
pub struct ClusterNode {
    pub config: ClusterConfig,
    pub identity: NodeIdentity,
    /// `identity.id` in hex, as layouts and takeover records name nodes
    /// (written once: object requests compare it on every forward).
    id_hex: String,
    /// Taken by reactor 0 when it starts gossiping.
    socket: Mutex<Option<std::net::UdpSocket>>,
    /// A handle of the same socket, for the leave at a clean stop (after
    /// the reactors are gone).
    stop_socket: std::net::UdpSocket,
    /// The state machine, driven by reactor 0 (the lock is uncontended
    /// until the stop).
    gossip: Mutex<Option<Gossip>>,
    /// The members as last published by the gossip task.
    view: Mutex<Vec<MemberView>>,
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub refused: AtomicU64,
    pub send_errors: AtomicU64,
    /// The RPC listener (TCP on the cluster address), taken by reactor 0.
    rpc_listener: Mutex<Option<std::net::TcpListener>>,
    /// The last PING of each alive member (see `cluster_rpc`).
    rpc: Mutex<HashMap<SocketAddr, RpcStatus>>,
    /// RPC connections or frames refused (no secret, wrong node, tampered).
    pub rpc_refused: AtomicU64,
    pub rpc_served: AtomicU64,
    pub rpc_failed: AtomicU64,
    /// RPC timings by method, both sides (`rpc_metrics`).
    pub rpc_times: crate::rpc_metrics::RpcMetrics,
    /// Cluster lanes (`cluster_lanes`, `members`): member shards this node
    /// opened for other nodes' lanes, commits they took, local shards that
    /// are the primary of a lane over other nodes, members taken out of
    /// service and put back.
    pub lane_member_shards: AtomicU64,
    /// Member shards removed because no lane reads them any more (`members::sweep`).
    pub lane_member_shards_removed: AtomicU64,
    pub lane_member_commits: AtomicU64,
    pub lanes_attached: AtomicU64,
    pub lane_members_revived: AtomicU64,
    /// Lane members taken out of service because the gossip held their node
    /// down (before a call to them failed).
    pub lane_members_held_down: AtomicU64,
    /// Connections to a node's RPC address refused (nothing listens: the
    /// process is gone or restarting), by node id: each reactor's lanes
    /// take that node's members out of service when the count grows, so a
    /// death one reactor met costs the others no failed write.
    connects_refused: Mutex<HashMap<[u8; NODE_ID_BYTES], u64>>,
    /// Lane members taken out of service because another call to their
    /// node was refused.
    pub lane_members_refused: AtomicU64,
    /// Heals of returning members (`cluster_lanes`): records verified,
    /// rebuilt, removed, body bytes written.
    pub lane_heal_verified: AtomicU64,
    pub lane_heal_rebuilt: AtomicU64,
    pub lane_heal_removed: AtomicU64,
    pub lane_heal_bytes: AtomicU64,
    /// Re-striping of records narrower than their lanes (`restripe`):
    /// reactors walking their lanes now (a gauge), records examined,
    /// records committed again in the lanes' shape.
    pub restripe_running: AtomicU64,
    pub restripe_examined: AtomicU64,
    pub restripe_records: AtomicU64,
    pub restripe_failed: AtomicU64,
    /// The lane order version and the reactors whose walk under it ended
    /// (every reactor's: the node reports it, `restripe::report`).
    pub restripe_done: Mutex<(u64, std::collections::BTreeSet<usize>)>,
    /// Each reactor's view of its cluster lanes, by core (`cluster_lanes`),
    /// for the status.
    pub lane_views: Mutex<std::collections::BTreeMap<usize, serde_json::Value>>,
    /// The layout version each reactor's lanes follow, and the one every
    /// reactor follows (0: none yet; `cluster_lanes::ready`).
    pub lane_follows: Mutex<std::collections::BTreeMap<usize, u64>>,
    pub lanes_ready: AtomicU64,
    /// What striped reads of the cluster lanes met (`tessera_ec_*`).
    pub lane_ec: std::sync::Arc<crate::sets_open::EcCounters>,
    /// The cluster configuration's Raft thread (`cluster_raft`), set at start.
    raft: std::sync::OnceLock<std::sync::Arc<crate::cluster_raft::ClusterRaft>>,
    /// Where peers forward S3 requests to this node: the S3 listener's
    /// address (its IP replaced by the cluster address's when unspecified),
    /// set once the listener is bound.
    pub s3_address: std::sync::OnceLock<SocketAddr>,
    /// The committed placement this node follows (`owners`); None before
    /// the first layout.
    pub owners: arc_swap::ArcSwapOption<crate::owners::Owners>,
    /// Object requests being served here, per partition, counted before
    /// their ownership is checked (`handover::Busy`): a node handing a
    /// partition's keys over waits until none is left.
    pub busy: Box<[std::sync::atomic::AtomicU32]>,
    /// The same, of the requests served here for another lane owner this
    /// node acts for (from its foster lanes, `takeover`): a move of that
    /// owner's keys from here (`handover::VERSION_FOSTER`) waits for these
    /// alone (this node may own the partition now, and its own requests
    /// for it wait for the move).
    pub busy_foster: Box<[std::sync::atomic::AtomicU32]>,
    /// Keys moved here by `handover` (taken from their previous owner),
    /// their bodies' bytes, and the export pages they took.
    pub moved_keys: AtomicU64,
    pub moved_bytes: AtomicU64,
    pub moved_pages: AtomicU64,
    /// The layout version whose keys all moved here (the mover's pass
    /// ended; `ensure` stops asking), and the keys being moved now.
    pub moved_for: AtomicU64,
    pub moving_keys: Mutex<std::collections::HashSet<(u64, String)>>,
    /// Keys `handover::ensure` found here already (moved, or nothing to
    /// move) during the move to a layout version: asked of the old owner
    /// no more (at most `handover::HERE_KEYS_MAX`).
    pub here_keys: Mutex<(u64, std::collections::HashSet<(u64, String)>)>,
    /// The applied configuration index `owners` was last checked against.
    pub owners_seen: AtomicU64,
    /// Owner takeover (`takeover`): the lease's end (ms since `started`),
    /// reactors with foster lanes, per lane owner the takeover record
    /// version this node is ready to act at, and each reactor's foster
    /// lanes (lane owner -> record version).
    pub lease_until_ms: AtomicU64,
    started: std::time::Instant,
    pub fostering: AtomicU64,
    pub acting_ready: Mutex<HashMap<String, u64>>,
    pub foster_follows: Mutex<std::collections::BTreeMap<usize, std::collections::BTreeMap<String, u64>>>,
    /// Per reactor: the configuration index it had applied when it made
    /// the view, and (lane owner, member) -> whether the member is in
    /// service and healed of every commit it missed in its lanes.
    #[allow(clippy::type_complexity)]
    pub lane_clean: Mutex<std::collections::BTreeMap<usize, (u64, std::collections::BTreeMap<(String, String), bool>)>>,
    /// Takeover records this node committed as leader, and stale records removed.
    pub takeovers_committed: AtomicU64,
    pub stale_cleared: AtomicU64,
    /// This node's reactors and shards (set at start).
    pub threads: AtomicU64,
    pub shards: AtomicU64,
    key: ClusterKey,
}

/// The outcome of the last RPC PING of a member.
#[derive(Clone, Debug)]
pub struct RpcStatus {
    pub at_ms: u64,
    pub rtt_us: Option<u64>,
    pub error: Option<String>,
}

impl ClusterNode {
    /// Reads (or creates) the node id and binds the cluster socket, so a
    /// taken port fails the start with a clear message.
    pub fn open(config: ClusterConfig, first_dir: &Path) -> Result<ClusterNode, String> {
        let id = load_or_create_node_id(first_dir)?;
        let socket = bind_retrying(|| std::net::UdpSocket::bind(config.address))
            .map_err(|e| format!("--cluster-address {}: cannot listen: {e}", config.address))?;
        // Restarts get a higher bump (the low 16 bits of the clock in
        // seconds, compared wrapping), so peers take a restarted node for
        // the same node coming back.
        let bump = (now_ms() / 1000) as u16;
        let identity = NodeIdentity { addr: config.address, id, bump };
        let me = MemberView {
            identity: identity.clone(),
            state: tessera_cluster::MemberState::Alive,
            incarnation: 0,
            local: true,
        };
        let stop_socket = socket.try_clone().map_err(|e| format!("--cluster-address: {e}"))?;
        let rpc_listener = bind_retrying(|| std::net::TcpListener::bind(config.address))
            .map_err(|e| format!("--cluster-address {} (RPC, TCP): cannot listen: {e}", config.address))?;
        Ok(ClusterNode {
            id_hex: identity.id_hex(),
            identity,
            socket: Mutex::new(Some(socket)),
            stop_socket,
            gossip: Mutex::new(None),
            view: Mutex::new(vec![me]),
            datagrams_in: AtomicU64::new(0),
            datagrams_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            rpc_listener: Mutex::new(Some(rpc_listener)),
            rpc: Mutex::new(HashMap::new()),
            rpc_refused: AtomicU64::new(0),
            rpc_served: AtomicU64::new(0),
            rpc_failed: AtomicU64::new(0),
            rpc_times: Default::default(),
            lane_member_shards: AtomicU64::new(0),
            lane_member_shards_removed: AtomicU64::new(0),
            lane_member_commits: AtomicU64::new(0),
            lanes_attached: AtomicU64::new(0),
            lane_members_revived: AtomicU64::new(0),
            lane_members_held_down: AtomicU64::new(0),
            connects_refused: Mutex::new(HashMap::new()),
            lane_members_refused: AtomicU64::new(0),
            lane_heal_verified: AtomicU64::new(0),
            lane_heal_rebuilt: AtomicU64::new(0),
            lane_heal_removed: AtomicU64::new(0),
            lane_heal_bytes: AtomicU64::new(0),
            restripe_running: AtomicU64::new(0),
            restripe_examined: AtomicU64::new(0),
            restripe_records: AtomicU64::new(0),
            restripe_failed: AtomicU64::new(0),
            restripe_done: Mutex::new((0, std::collections::BTreeSet::new())),
            lane_ec: std::sync::Arc::default(),
            lane_views: Mutex::new(std::collections::BTreeMap::new()),
            lane_follows: Mutex::new(std::collections::BTreeMap::new()),
            lanes_ready: AtomicU64::new(0),
            raft: std::sync::OnceLock::new(),
            s3_address: std::sync::OnceLock::new(),
            owners: arc_swap::ArcSwapOption::empty(),
            busy: (0..crate::layout::PARTITIONS).map(|_| std::sync::atomic::AtomicU32::new(0)).collect(),
            busy_foster: (0..crate::layout::PARTITIONS).map(|_| std::sync::atomic::AtomicU32::new(0)).collect(),
            moved_keys: AtomicU64::new(0),
            moved_bytes: AtomicU64::new(0),
            moved_pages: AtomicU64::new(0),
            moved_for: AtomicU64::new(0),
            moving_keys: Mutex::new(std::collections::HashSet::new()),
            here_keys: Mutex::new((0, std::collections::HashSet::new())),
            owners_seen: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
            fostering: AtomicU64::new(0),
            acting_ready: Mutex::new(HashMap::new()),
            foster_follows: Mutex::new(std::collections::BTreeMap::new()),
            lane_clean: Mutex::new(std::collections::BTreeMap::new()),
            takeovers_committed: AtomicU64::new(0),
            stale_cleared: AtomicU64::new(0),
            threads: AtomicU64::new(0),
            shards: AtomicU64::new(0),
            key: ClusterKey::new(&config.secret).ok_or("the cluster secret is too short")?,
            config,
        })
    }

    /// Records where this node's S3 listener is bound (see `s3_address`).
    pub fn set_s3_address(&self, bound: SocketAddr) {
        let addr = if bound.ip().is_unspecified() { SocketAddr::new(self.config.address.ip(), bound.port()) } else { bound };
        let _ = self.s3_address.set(addr);
    }

    /// Milliseconds since this process opened the node (the lease's clock).
    pub fn since_start_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// This node's id, hex (the configuration's `node/<id>` key).
    pub fn id_hex(&self) -> String {
        self.id_hex.clone()
    }

    /// `id_hex`, borrowed (the per-request paths).
    pub fn id_str(&self) -> &str {
        &self.id_hex
    }

    /// Tells the cluster this node leaves (a clean stop, after the
    /// reactors stopped), so peers mark it down at once instead of after
    /// suspicion. Best effort: datagrams may be lost.
    pub fn leave(&self) {
        let mut g = self.gossip.lock().unwrap_or_else(|e| e.into_inner());
        let Some(g) = g.as_mut() else { return };
        g.leave();
        for (to, frame) in g.take_outgoing() {
            let _ = self.stop_socket.send_to(&frame, to);
        }
        tracing::info!("cluster: left");
    }

    #[cfg(test)]
    pub(crate) fn take_rpc_listener_for_test(&self) -> monoio::net::TcpListener {
        let l = self.rpc_listener.lock().unwrap().take().expect("listener");
        l.set_nonblocking(true).unwrap();
        monoio::net::TcpListener::from_std(l).unwrap()
    }

    /// Starts the configuration's Raft thread with its state in `<home>/cluster/`.
    pub fn start_raft(self: &std::sync::Arc<Self>, home: &Path) -> Result<(), String> {
        let r = crate::cluster_raft::ClusterRaft::start(self, home)?;
        let _ = self.raft.set(r);
        Ok(())
    }

    pub fn raft(&self) -> Option<&std::sync::Arc<crate::cluster_raft::ClusterRaft>> {
        self.raft.get()
    }

    pub(crate) fn key(&self) -> ClusterKey {
        self.key.clone()
    }

    pub(crate) fn key_ref(&self) -> &ClusterKey {
        &self.key
    }

    pub(crate) fn set_rpc_status(&self, s: HashMap<SocketAddr, RpcStatus>) {
        *self.rpc.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn gossip(&self) -> std::sync::MutexGuard<'_, Option<Gossip>> {
        self.gossip.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn members(&self) -> Vec<MemberView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The ids of the members the gossip holds alive (in any incarnation:
    /// a restarted node may be listed twice, its old incarnation down).
    pub fn alive_ids(&self) -> std::collections::BTreeSet<[u8; NODE_ID_BYTES]> {
        self.members().into_iter().filter(|m| m.state == tessera_cluster::MemberState::Alive).map(|m| m.identity.id).collect()
    }

    /// Whether the gossip knows node `id` and holds every one of its
    /// incarnations down (not merely suspect: under load it suspects live
    /// nodes now and then). A node it does not know (just started) is not
    /// held down.
    /// A connection to node `id`'s RPC address was refused.
    pub fn note_refused(&self, id: &[u8; NODE_ID_BYTES]) {
        *self.connects_refused.lock().unwrap_or_else(|e| e.into_inner()).entry(*id).or_insert(0) += 1;
    }

    /// How many connections to node `id`'s RPC address were refused since start.
    pub fn refused_count(&self, id: &[u8; NODE_ID_BYTES]) -> u64 {
        self.connects_refused.lock().unwrap_or_else(|e| e.into_inner()).get(id).copied().unwrap_or(0)
    }

    pub fn held_down(&self, id: &[u8; NODE_ID_BYTES]) -> bool {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = false;
        for m in view.iter().filter(|m| m.identity.id == *id) {
            if m.state != tessera_cluster::MemberState::Down {
                return false;
            }
            known = true;
        }
        known
    }

    fn publish(&self, g: &Gossip) {
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = g.members();
        self.datagrams_in.store(g.counters.datagrams_in, Relaxed);
        self.datagrams_out.store(g.counters.datagrams_out, Relaxed);
        self.refused.store(g.counters.refused, Relaxed);
    }

    /// `GET /admin/v1/cluster`.
    pub fn status(&self) -> serde_json::Value {
        let rpc = self.rpc.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let members: Vec<serde_json::Value> = self
            .members()
            .iter()
            .map(|m| {
                let r = rpc.get(&m.identity.addr).map(|r| {
                    serde_json::json!({ "ok": r.error.is_none(), "rtt_us": r.rtt_us, "error": r.error, "at_ms": r.at_ms })
                });
                serde_json::json!({
                    "rpc": r,
                    "id": m.identity.id_hex(),
                    "address": m.identity.addr.to_string(),
                    "bump": m.identity.bump,
                    "state": m.state.as_str(),
                    "incarnation": m.incarnation,
                    "local": m.local,
                })
            })
            .collect();
        serde_json::json!({
            "enabled": true,
            "node": {
                "id": self.identity.id_hex(),
                "address": self.config.address.to_string(),
                "join": self.config.join.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            },
            "members": members,
            "datagrams_in": self.datagrams_in.load(Relaxed),
            "datagrams_out": self.datagrams_out.load(Relaxed),
            "refused": self.refused.load(Relaxed),
            "send_errors": self.send_errors.load(Relaxed),
            "rpc_refused": self.rpc_refused.load(Relaxed),
            "rpc_served": self.rpc_served.load(Relaxed),
            "rpc_failed": self.rpc_failed.load(Relaxed),
            "raft": self.raft().map(|r| r.status()),
            "s3_address": self.s3_address.get().map(|a| a.to_string()),
            "layout": self.owners.load().as_ref().map(|o| o.status(&self.identity.id_hex())),
            "lanes": self.lanes_status(),
            "moved_here": {
                "keys": self.moved_keys.load(Relaxed),
                "bytes": self.moved_bytes.load(Relaxed),
                "pages": self.moved_pages.load(Relaxed),
                "done_for_layout": self.moved_for.load(Relaxed),
            },
        })
    }

    /// The cluster lanes as the reactors see them: the shape, and per
    /// other node whether some reactor has its members out of service and
    /// how many missed keys wait for its heal.
    fn lanes_status(&self) -> serde_json::Value {
        let views = self.lane_views.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(first) = views.values().find(|v| !v.is_null()).cloned() else {
            return serde_json::json!({ "enabled": false, "note": "objects live on their owner alone (lanes need 3 or 4 placed nodes of format 1)" });
        };
        let mut members: std::collections::BTreeMap<String, (bool, u64, bool)> = std::collections::BTreeMap::new();
        for v in views.values() {
            for m in v["members"].as_array().into_iter().flatten() {
                let e = members.entry(m["node"].as_str().unwrap_or("?").to_string()).or_insert((true, 0, false));
                e.0 &= m["in_service"].as_bool().unwrap_or(false);
                e.1 += m["missed_keys"].as_u64().unwrap_or(0);
                e.2 |= m["missed_overflow"].as_bool().unwrap_or(false);
            }
        }
        let version = self.owners.load_full().map(|o| o.layout.version);
        serde_json::json!({
            "enabled": true,
            // Every reactor's lanes follow the committed layout: object
            // requests for this node's keys are served (else 503).
            "ready": version.is_some_and(|v| crate::cluster_lanes::ready(self, v)),
            "data_blocks": first["data_blocks"],
            "parity_blocks": first["parity_blocks"],
            "write_quorum": first["write_quorum"],
            "lanes": views.values().map(|v| v["lanes"].as_u64().unwrap_or(0)).sum::<u64>(),
            "members": members.iter().map(|(id, (ok, missed, over))| serde_json::json!({
                "node": id, "in_service": ok, "missed_keys": missed, "missed_overflow": over,
            })).collect::<Vec<_>>(),
            "heal": {
                "verified_records": self.lane_heal_verified.load(Relaxed),
                "rebuilt_records": self.lane_heal_rebuilt.load(Relaxed),
                "removed_records": self.lane_heal_removed.load(Relaxed),
                "bytes": self.lane_heal_bytes.load(Relaxed),
            },
            "restripe": {
                "running": self.restripe_running.load(Relaxed),
                "examined_records": self.restripe_examined.load(Relaxed),
                "restriped_records": self.restripe_records.load(Relaxed),
                "failed_records": self.restripe_failed.load(Relaxed),
            },
        })
    }

    /// Prometheus lines.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let members = self.members();
        let _ = writeln!(out, "# HELP tessera_cluster_members Members this node knows, by state (itself included).");
        let _ = writeln!(out, "# TYPE tessera_cluster_members gauge");
        for state in ["alive", "suspect", "down"] {
            let n = members.iter().filter(|m| m.state.as_str() == state).count();
            let _ = writeln!(out, "tessera_cluster_members{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP tessera_cluster_datagrams_refused_total Cluster datagrams refused (wrong secret, misaddressed, stale, garbage).");
        let _ = writeln!(out, "# TYPE tessera_cluster_datagrams_refused_total counter");
        let _ = writeln!(out, "tessera_cluster_datagrams_refused_total {}", self.refused.load(Relaxed));
        let _ = writeln!(out, "# HELP tessera_cluster_rpc_refused_total RPC connections or frames refused (no secret, another node meant, tampered).");
        let _ = writeln!(out, "# TYPE tessera_cluster_rpc_refused_total counter");
        let _ = writeln!(out, "tessera_cluster_rpc_refused_total {}", self.rpc_refused.load(Relaxed));
        let _ = writeln!(out, "# HELP tessera_cluster_rpc_served_total RPC calls answered.");
        let _ = writeln!(out, "# TYPE tessera_cluster_rpc_served_total counter");
        let _ = writeln!(out, "tessera_cluster_rpc_served_total {}", self.rpc_served.load(Relaxed));
        self.rpc_times.render(out);
        for (name, kind, help, v) in [
            ("tessera_cluster_lane_member_shards", "gauge", "Member shards this node holds for other nodes' lanes.", &self.lane_member_shards),
            ("tessera_cluster_lane_member_shards_removed_total", "counter", "Member shards removed because no lane reads them any more.", &self.lane_member_shards_removed),
            ("tessera_cluster_lane_member_commits_total", "counter", "Commits this node's member shards took for other nodes' lanes.", &self.lane_member_commits),
            ("tessera_cluster_lanes", "gauge", "This node's shards that are the primary of a lane with members on other nodes.", &self.lanes_attached),
            ("tessera_cluster_lane_members_revived_total", "counter", "Lane members on other nodes put back in service after a failure.", &self.lane_members_revived),
            ("tessera_cluster_lane_members_held_down_total", "counter", "Lane members taken out of service because the gossip held their node down.", &self.lane_members_held_down),
            ("tessera_cluster_lane_members_refused_total", "counter", "Lane members taken out of service because a connection to their node was refused (by any reactor).", &self.lane_members_refused),
            ("tessera_cluster_lane_heal_verified_records_total", "counter", "Records a returning member was found to hold whole.", &self.lane_heal_verified),
            ("tessera_cluster_lane_heal_rebuilt_records_total", "counter", "Records rebuilt on a returning member (commits it missed).", &self.lane_heal_rebuilt),
            ("tessera_cluster_lane_heal_removed_records_total", "counter", "Records removed from a returning member (deletes it missed).", &self.lane_heal_removed),
            ("tessera_cluster_lane_heal_bytes_total", "counter", "Body bytes written to returning members by their heal.", &self.lane_heal_bytes),
            ("tessera_cluster_restripe_running", "gauge", "Reactors re-striping their lanes' records written before the lanes formed or grew (a node joining 2 or 3).", &self.restripe_running),
            ("tessera_cluster_restripe_examined_records_total", "counter", "Records the re-striping walk read.", &self.restripe_examined),
            ("tessera_cluster_restripe_records_total", "counter", "Records the re-striping walk committed again in their lane's shape (2+2 over 4 nodes), or whole (lanes on their way out, 3 nodes to 2).", &self.restripe_records),
            ("tessera_cluster_restripe_failed_records_total", "counter", "Records the re-striping walk gave up on after its tries (left in the older shape; the next start walks again).", &self.restripe_failed),
            ("tessera_cluster_takeover_records_committed_total", "counter", "Takeover records this node committed as the configuration leader (another node acts for a lane owner, or the owner gets its partitions back).", &self.takeovers_committed),
            ("tessera_cluster_stale_records_cleared_total", "counter", "Stale member records this node removed once the member was healed.", &self.stale_cleared),
            ("tessera_cluster_fostered_owners", "gauge", "Lane owners this node's reactors act for (summed over reactors).", &self.fostering),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
        let _ = writeln!(out, "# HELP tessera_cluster_lease_held Whether this node holds its configuration lease (with cluster lanes it serves object requests only then).");
        let _ = writeln!(out, "# TYPE tessera_cluster_lease_held gauge");
        let _ = writeln!(out, "tessera_cluster_lease_held {}", u8::from(crate::takeover::lease_held(self)));
    }
}

/// `GET /admin/v1/cluster` on a node without a cluster address.
pub fn status_disabled() -> serde_json::Value {
    serde_json::json!({ "enabled": false, "members": [], "note": "single node: start with --cluster-address to form a cluster" })
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn load_or_create_node_id(dir: &Path) -> Result<[u8; NODE_ID_BYTES], String> {
    let path = dir.join(NODE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_node_file(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut id = [0u8; NODE_ID_BYTES];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
                .map_err(|_| "no randomness for a node id".to_string())?;
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let tmp = dir.join(format!("{NODE_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(format!("{NODE_FILE_VERSION}\nid {hex}\n").as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn parse_node_file(text: &str) -> Result<[u8; NODE_ID_BYTES], String> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if first != NODE_FILE_VERSION {
        return Err(format!("not a node file this build reads (first line {first:?}, expected {NODE_FILE_VERSION:?})"));
    }
    let hex = lines.next().and_then(|l| l.strip_prefix("id ")).ok_or("no `id` line")?;
    let bytes = hex::decode(hex.trim()).map_err(|_| "the id is not hex")?;
    bytes.try_into().map_err(|_| format!("the id must be {NODE_ID_BYTES} bytes"))
}

/// Reactor 0's gossip: a receive loop and a timer loop sharing one
/// `Gossip`. Stops (after telling the cluster it leaves) when the node does.
pub async fn run(
    node: std::sync::Arc<ClusterNode>,
    shutdown: async_channel::Receiver<()>,
    host: Option<Rc<dyn crate::holder::host::ShardHost>>,
) {
    let Some(std_socket) = node.socket.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    let rpc = node.rpc_listener.lock().unwrap_or_else(|e| e.into_inner()).take();
    match rpc.map(|l| l.set_nonblocking(true).and_then(|()| monoio::net::TcpListener::from_std(l))) {
        Some(Ok(l)) => {
            monoio::spawn(crate::cluster_rpc::serve(node.clone(), l, host));
            monoio::spawn(crate::cluster_rpc::ping_loop(node.clone(), shutdown.clone()));
            if let Some(r) = node.raft() {
                monoio::spawn(r.clone().send_loop(node.clone()));
            }
        }
        Some(Err(e)) => tracing::error!(error = %e, "cluster: cannot use the RPC listener; not serving RPC"),
        None => {}
    }
    let socket = match std_socket.set_nonblocking(true).and_then(|()| monoio::net::udp::UdpSocket::from_std(std_socket)) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot use the cluster socket; not gossiping");
            return;
        }
    };
    let mut seed = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
    let key = ClusterKey::new(&node.config.secret).expect("checked at start");
    let mut g = Gossip::new(node.identity.clone(), key, Timing::lan(8), 8, u64::from_le_bytes(seed), now_ms());
    g.join(&node.config.join);
    *node.gossip() = Some(g);
    tracing::info!(address = %node.config.address, join = ?node.config.join, id = %node.identity.id_hex(), "cluster: gossiping");
    let receiver = {
        let (socket, node) = (socket.clone(), node.clone());
        monoio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
            loop {
                let (res, b) = socket.recv_from(buf).await;
                buf = b;
                let Ok((n, _from)) = res else {
                    // Never spin on a failing socket.
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // A refused frame is counted by `Gossip` and published below.
                if let Some(g) = node.gossip().as_mut() {
                    let _ = g.handle(&buf[..n], now_ms());
                }
                flush(&socket, &node).await;
            }
        })
    };
    loop {
        let due = node.gossip().as_ref().and_then(|g| g.next_due_ms());
        let wait = due.map_or(TICK, |due| Duration::from_millis(due.saturating_sub(now_ms())).min(TICK));
        monoio::time::sleep(wait).await;
        if shutdown.is_closed() {
            // `ClusterNode::leave` tells the cluster, once the reactors stopped.
            break;
        }
        let events = match node.gossip().as_mut() {
            Some(g) => {
                g.advance(now_ms());
                g.take_events()
            }
            None => Vec::new(),
        };
        flush(&socket, &node).await;
        for e in events {
            match e {
                tessera_cluster::Event::Up(m) => tracing::info!(member = %m.addr, id = %m.id_hex(), "cluster: member up"),
                tessera_cluster::Event::Down(m) => tracing::warn!(member = %m.addr, id = %m.id_hex(), "cluster: member down"),
                tessera_cluster::Event::Rejoined(m) => tracing::warn!(bump = m.bump, "cluster: this node was declared down and rejoined"),
            }
        }
    }
    drop(receiver);
}

async fn flush(socket: &monoio::net::udp::UdpSocket, node: &ClusterNode) {
    let out = match node.gossip().as_mut() {
        Some(g) => {
            node.publish(g);
            g.take_outgoing()
        }
        None => return,
    };
    for (to, frame) in out {
        let (res, _) = socket.send_to(frame, to).await;
        if res.is_err() {
            node.send_errors.fetch_add(1, Relaxed);
        }
    }
}

/// A loopback address free for both UDP (gossip) and TCP (RPC), for tests.
#[cfg(test)]
pub(crate) fn free_test_port() -> SocketAddr {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = u.local_addr().unwrap();
        if std::net::TcpListener::bind(a).is_ok() {
            return a;
        }
    }
}

/// A cluster node with its files in `dir` (created), on a free port, for tests.
#[cfg(test)]
pub(crate) fn test_node(dir: &Path, secret: &str) -> std::sync::Arc<ClusterNode> {
    std::fs::create_dir_all(dir).unwrap();
    let config = ClusterConfig { address: free_test_port(), join: Vec::new(), secret: secret.as_bytes().to_vec(), zone: String::new() };
    std::sync::Arc::new(ClusterNode::open(config, dir).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_file_roundtrip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("tessera-node-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = load_or_create_node_id(&dir).unwrap();
        assert_eq!(load_or_create_node_id(&dir).unwrap(), a, "the id is stable");
        std::fs::write(dir.join(NODE_FILE), "tessera-node 2\nid 00\n").unwrap();
        assert!(load_or_create_node_id(&dir).unwrap_err().contains("not a node file this build reads"));
        std::fs::write(dir.join(NODE_FILE), "tessera-node 1\nid zz\n").unwrap();
        assert!(load_or_create_node_id(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_zone_is_a_short_plain_name() {
        let c = ClusterConfig { address: "127.0.0.1:7000".parse().unwrap(), join: Vec::new(), secret: vec![1; 16], zone: String::new() };
        assert_eq!(c.clone().with_zone(Some("rack-7.b_2")).unwrap().zone, "rack-7.b_2");
        assert_eq!(c.clone().with_zone(None).unwrap().zone, "");
        for bad in ["a b", "zone/1", "ü", &"z".repeat(65)] {
            assert!(c.clone().with_zone(Some(bad)).unwrap_err().contains("--zone"), "{bad}");
        }
    }

    #[test]
    fn flags_are_checked() {
        let e = |a: Option<&str>, j: &[&str], s: Option<&str>| {
            let j: Vec<String> = j.iter().map(|s| s.to_string()).collect();
            ClusterConfig::from_flags(a, &j, s.map(|s| s.to_string()), None)
        };
        assert!(e(None, &[], None).unwrap().is_none());
        assert!(e(None, &["127.0.0.1:7000"], None).unwrap_err().contains("--join needs --cluster-address"));
        assert!(e(Some("127.0.0.1:7000"), &[], None).unwrap_err().contains("TESSERA_CLUSTER_SECRET"));
        assert!(e(Some("127.0.0.1:7000"), &[], Some("short")).unwrap_err().contains("at least"));
        assert!(e(Some("0.0.0.0:7000"), &[], Some("a long enough secret")).unwrap_err().contains("other nodes reach"));
        assert!(e(Some("127.0.0.1:0"), &[], Some("a long enough secret")).is_err());
        let c = e(Some("127.0.0.1:7000"), &["127.0.0.1:7001"], Some("a long enough secret")).unwrap().unwrap();
        assert_eq!(c.join, vec!["127.0.0.1:7001".parse::<SocketAddr>().unwrap()]);
    }
}
