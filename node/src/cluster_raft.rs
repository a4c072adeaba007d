//! Cluster configuration in Raft on the node (issue 12): `tessera_raft`
//! (openraft) on a thread of its own, bridged to reactor 0 by channels.
//!
//! - **Thread:** `tessera-raft` runs a current-thread tokio runtime (openraft
//!   0.9 is tokio-only) with the Raft instance, its stores in
//!   `<home dir>/cluster/` (`log`, `vote`, `snapshot`; see `tessera_raft`)
//!   and the membership manager. The stores' file I/O runs inline there,
//!   never on a reactor.
//! - **Out:** Raft's messages to peers go as `Outgoing` over a channel to
//!   reactor 0, which sends them with its own `RpcPool` (one authenticated,
//!   multiplexed connection per peer, separate from the PING pool so a slow
//!   Raft call never holds up a PING, and no second implementation of the
//!   `rpc.rs` handshake on tokio) and sends the answer back.
//! - **In:** the RPC server (`cluster_rpc`) hands `METHOD_RAFT_*` requests
//!   to the Raft thread over a channel and writes the answer back.
//! - **Payloads** (FORMAT BOUNDARY, version 1 of these methods): JSON of
//!   openraft's request types; answers are JSON of `Result<answer, error>`.
//! - **Membership:** the first node (no `--join`) initialises a one-voter
//!   cluster. The leader adds every alive gossip member it does not know as
//!   a learner, and promotes caught-up learners to voters up to 3 (5 when
//!   5 or more nodes are alive). Raft node ids are the first 8 bytes of the
//!   node id (`tessera.node`); a node's Raft address is `ADDR#IDHEX`.
//! - **Writes** (`PUT /admin/v1/cluster/config/KEY?value=V`) go to the Raft
//!   thread, which forwards them once to the leader if this node is not it;
//!   reads (`GET .../KEY`) answer from this node's applied state (every node
//!   caches the configuration and follows the leader; a follower may be
//!   behind by what it has not applied yet).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_cluster::NodeIdentity;
use tessera_raft::openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use tessera_raft::openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use tessera_raft::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use tessera_raft::openraft::{BasicNode, Config, RaftMetrics, ServerState, Snapshot, SnapshotPolicy};
use tessera_raft::{Command, LogStore, NodeId, Raft, Response, StateMachineStore, TypeConfig, Vote};

use crate::cluster::ClusterNode;
use crate::owners;

pub const METHOD_RAFT_APPEND: u16 = 16;
pub const METHOD_RAFT_VOTE: u16 = 17;
pub const METHOD_RAFT_SNAPSHOT: u16 = 18;
/// A configuration write forwarded to the leader.
pub const METHOD_RAFT_WRITE: u16 = 19;
/// A follower asks the leader for a read index (answer: JSON of the log
/// index a linearizable read must see applied).
pub const METHOD_RAFT_READ_INDEX: u16 = 20;
/// Local calls from the node to its Raft thread (never on the wire).
const LOCAL_WRITE: u16 = 0;
const LOCAL_READ_INDEX: u16 = 1;
/// Longest one read-index round may take.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// A Raft call's whole exchange (a snapshot included).
const RAFT_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the leader looks for members to add or promote.
const MANAGE_EVERY: Duration = Duration::from_millis(500);
/// The directory under the home dir.
pub const RAFT_DIR: &str = "cluster";

pub fn is_raft_method(m: u16) -> bool {
    (METHOD_RAFT_APPEND..=METHOD_RAFT_READ_INDEX).contains(&m)
}

/// A node's Raft id: the first 8 bytes of its node id.
pub fn raft_id(id: &[u8; 16]) -> NodeId {
    u64::from_le_bytes(id[..8].try_into().unwrap())
}

/// The Raft ids of nodes named by id hex (a malformed id names none).
fn raft_ids(ids: impl IntoIterator<Item = String>) -> BTreeSet<NodeId> {
    ids.into_iter().filter_map(|id| <[u8; 16]>::try_from(hex::decode(id).ok()?).ok()).map(|id| raft_id(&id)).collect()
}

fn raft_node(identity: &NodeIdentity) -> BasicNode {
    BasicNode::new(format!("{}#{}", identity.addr, identity.id_hex()))
}

fn peer_of(node: &BasicNode) -> Option<NodeIdentity> {
    let (addr, hex) = node.addr.split_once('#')?;
    let id: [u8; 16] = hex::decode(hex).ok()?.try_into().ok()?;
    Some(NodeIdentity { addr: addr.parse().ok()?, id, bump: 0 })
}

type Reply = async_channel::Sender<Result<Vec<u8>, String>>;

/// An RPC from the Raft thread for reactor 0 to send.
pub struct Outgoing {
    peer: NodeIdentity,
    method: u16,
    payload: Vec<u8>,
    reply: Reply,
}

struct Incoming {
    method: u16,
    payload: Vec<u8>,
    reply: Reply,
}

/// The node's handle on its Raft thread.
pub struct ClusterRaft {
    pub id: NodeId,
    incoming: async_channel::Sender<Incoming>,
    outgoing: Mutex<Option<async_channel::Receiver<Outgoing>>>,
    sm: StateMachineStore,
    metrics: Arc<Mutex<Option<RaftMetrics<NodeId, BasicNode>>>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotCall {
    vote: Vote,
    meta: tessera_raft::SnapshotMeta,
    data: Vec<u8>,
}

/// A configuration write's outcome, as the admin API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub index: u64,
    pub response: Response,
}

impl ClusterRaft {
    /// Opens the stores in `<home>/cluster/` and starts the Raft thread.
    pub fn start(node: &Arc<ClusterNode>, home: &Path) -> Result<Arc<ClusterRaft>, String> {
        let dir = home.join(RAFT_DIR);
        let log = LogStore::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sm = StateMachineStore::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let id = raft_id(&node.identity.id);
        let (in_tx, in_rx) = async_channel::bounded::<Incoming>(1024);
        let (out_tx, out_rx) = async_channel::bounded::<Outgoing>(1024);
        let metrics = Arc::new(Mutex::new(None));
        let config = Config {
            cluster_name: "tessera".into(),
            heartbeat_interval: 100,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())?;
        let (node2, sm2, metrics2) = (node.clone(), sm.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("tessera-raft".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("raft runtime");
                rt.block_on(run(node2, id, Arc::new(config), log, sm2, in_rx, out_tx, metrics2));
            })
            .map_err(|e| format!("cannot start the raft thread: {e}"))?;
        Ok(Arc::new(ClusterRaft { id, incoming: in_tx, outgoing: Mutex::new(Some(out_rx)), sm, metrics }))
    }

    /// A request from a peer (the RPC server): the answer's payload.
    pub async fn serve(&self, method: u16, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let (tx, rx) = async_channel::bounded(1);
        self.incoming.send(Incoming { method, payload, reply: tx }).await.map_err(|_| "raft stopped".to_string())?;
        rx.recv().await.map_err(|_| "raft stopped".to_string())?
    }

    /// Proposes `cmd` (through the leader): its outcome once committed.
    pub async fn write(&self, cmd: &Command) -> Result<WriteOutcome, String> {
        // A local write, which the Raft thread forwards to the leader.
        let answer = self.serve(LOCAL_WRITE, serde_json::to_vec(cmd).expect("command")).await?;
        serde_json::from_slice(&answer).map_err(|e| e.to_string())
    }

    /// The read index: a log index such that every configuration write
    /// acknowledged before this call is at or below it (Raft's ReadIndex,
    /// asked of the leader, which confirms it still leads). A node that has
    /// applied up to it reads a state no older than this call. Concurrent
    /// calls share one round.
    pub async fn read_index(&self) -> Result<u64, String> {
        let answer = self.serve(LOCAL_READ_INDEX, Vec::new()).await?;
        serde_json::from_slice(&answer).map_err(|e| e.to_string())
    }

    /// The state machine this node applies to (cheap reads of one key or
    /// one prefix, the applied index, change notifications).
    pub fn store(&self) -> &StateMachineStore {
        &self.sm
    }

    /// The applied configuration (this node's cache).
    pub fn state(&self) -> tessera_raft::state_machine::Applied {
        self.sm.applied()
    }

    /// Reactor 0 sends the Raft thread's messages (see the module doc).
    pub async fn send_loop(self: Arc<Self>, node: Arc<ClusterNode>) {
        let Some(rx) = self.outgoing.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let pool = crate::cluster_pool::RpcPool::new(node);
        while let Ok(o) = rx.recv().await {
            let pool: Rc<_> = pool.clone();
            monoio::spawn(async move {
                let r = pool.call(&o.peer, o.method, o.payload, RAFT_CALL_TIMEOUT).await.map_err(|e| e.to_string());
                let _ = o.reply.try_send(r);
            });
        }
    }

    /// The `raft` part of `GET /admin/v1/cluster`.
    pub fn status(&self) -> serde_json::Value {
        let m = self.metrics.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let applied = self.sm.applied();
        let Some(m) = m else { return serde_json::json!({ "id": self.id.to_string(), "role": "starting" }) };
        let membership = m.membership_config.membership();
        let voters: Vec<String> = membership.voter_ids().map(|v| v.to_string()).collect();
        let learners: Vec<String> = membership.learner_ids().map(|v| v.to_string()).collect();
        serde_json::json!({
            "id": self.id.to_string(),
            "role": format!("{:?}", m.state).to_lowercase(),
            "term": m.current_term,
            "leader": m.current_leader.map(|l| l.to_string()),
            "last_log_index": m.last_log_index,
            "applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
            "purged_index": m.purged.map(|l| l.index),
            "voters": voters,
            "learners": learners,
            "keys": applied.state.keys.len(),
            "ring_version": applied.state.ring_version,
            "history": format!("{:016x}", applied.state.history),
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    node: Arc<ClusterNode>,
    id: NodeId,
    config: Arc<Config>,
    log: LogStore,
    sm: StateMachineStore,
    incoming: async_channel::Receiver<Incoming>,
    out: async_channel::Sender<Outgoing>,
    metrics: Arc<Mutex<Option<RaftMetrics<NodeId, BasicNode>>>>,
) {
    let factory = Factory { out: out.clone() };
    let follow = sm.clone();
    let sit_out = Duration::from_millis(config.election_timeout_min);
    let raft = match Raft::new(id, config, factory, log, sm).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cluster raft: cannot start");
            return;
        }
    };
    if node.config.join.is_empty() && !raft.is_initialized().await.unwrap_or(true) {
        let me = BTreeMap::from([(id, raft_node(&node.identity))]);
        match raft.initialize(me).await {
            Ok(()) => tracing::info!(id, "cluster raft: initialised a one-voter cluster"),
            Err(e) => tracing::error!(error = %e, "cluster raft: cannot initialise"),
        }
    }
    {
        let (raft, metrics, node, sm) = (raft.clone(), metrics.clone(), node.clone(), follow.clone());
        tokio::spawn(async move {
            let mut rx = raft.metrics();
            let mut placement = Placement::default();
            loop {
                *metrics.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx.borrow().clone());
                placement.follow(&node, &sm);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    tokio::spawn(manage(node.clone(), raft.clone(), follow, out.clone()));
    tokio::spawn(break_split_votes(raft.clone(), sit_out));
    let reads = Arc::new(ReadRounds::default());
    {
        let (raft, out, reads) = (raft.clone(), out.clone(), reads.clone());
        tokio::spawn(crate::takeover::keep_lease(node.clone(), move || {
            let (raft, out, reads) = (raft.clone(), out.clone(), reads.clone());
            async move { reads.read_index(&raft, &out).await }
        }));
    }
    while let Ok(inc) = incoming.recv().await {
        let (raft, out, reads) = (raft.clone(), out.clone(), reads.clone());
        tokio::spawn(async move {
            let r = match inc.method {
                LOCAL_READ_INDEX => reads.read_index(&raft, &out).await.map(|i| json(&i)),
                m => handle(&raft, &out, m, &inc.payload, &inc.reply).await,
            };
            let _ = inc.reply.try_send(r);
        });
    }
}

/// Local read-index calls, answered in rounds: a round's answer is asked
/// after every call it answers arrived (so it covers every write
/// acknowledged before them), and calls that arrive during a round wait
/// for the next one. A storm of reads costs the leader one confirmation
/// per round, not one per read.
#[derive(Default)]
struct ReadRounds {
    /// (a round is running, the calls waiting for the next round).
    state: Mutex<(bool, Vec<tokio::sync::oneshot::Sender<Result<u64, String>>>)>,
}

impl ReadRounds {
    async fn read_index(&self, raft: &Raft, out: &async_channel::Sender<Outgoing>) -> Result<u64, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runs = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            g.1.push(tx);
            !std::mem::replace(&mut g.0, true)
        };
        if runs {
            loop {
                let waiting = {
                    let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if g.1.is_empty() {
                        g.0 = false;
                        break;
                    }
                    std::mem::take(&mut g.1)
                };
                // A round that cannot finish (a leader that lost its quorum)
                // must not hold up every later one.
                let r = match tokio::time::timeout(READ_INDEX_TIMEOUT, read_index_round(raft, out)).await {
                    Ok(r) => r,
                    Err(_) => Err("no read index within the time limit".to_string()),
                };
                for w in waiting {
                    let _ = w.send(r.clone());
                }
            }
        }
        rx.await.map_err(|_| "stopping".to_string())?
    }
}

/// This node's read index, if it leads (confirmed with a quorum).
async fn read_index_here(raft: &Raft) -> Result<u64, RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>> {
    raft.get_read_log_id().await.map(|(read, _)| read.map_or(0, |l| l.index))
}

/// One read index: this node's if it leads, else the leader's.
async fn read_index_round(raft: &Raft, out: &async_channel::Sender<Outgoing>) -> Result<u64, String> {
    match read_index_here(raft).await {
        Ok(i) => Ok(i),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            parse::<u64>(&to_leader(out, f.leader_node.as_ref(), METHOD_RAFT_READ_INDEX, Vec::new()).await?)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Sends a call this node cannot answer to the leader it was pointed at
/// (once: the leader answers it itself): the leader's answer.
async fn to_leader(out: &async_channel::Sender<Outgoing>, leader: Option<&BasicNode>, method: u16, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let Some(peer) = leader.and_then(peer_of) else {
        return Err("no leader known".into());
    };
    let (tx, rx) = async_channel::bounded(1);
    out.send(Outgoing { peer, method, payload, reply: tx }).await.map_err(|_| "stopping".to_string())?;
    rx.recv().await.map_err(|_| "stopping".to_string())?
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft messages serialize")
}

fn parse<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("a malformed raft message: {e}"))
}

/// `caller`: where the answer goes (a local write is not forwarded once
/// its caller stopped waiting).
async fn handle(raft: &Raft, out: &async_channel::Sender<Outgoing>, method: u16, payload: &[u8], caller: &Reply) -> Result<Vec<u8>, String> {
    match method {
        METHOD_RAFT_APPEND => Ok(json(&raft.append_entries(parse(payload)?).await)),
        METHOD_RAFT_VOTE => Ok(json(&raft.vote(parse(payload)?).await)),
        METHOD_RAFT_SNAPSHOT => {
            let c: SnapshotCall = parse(payload)?;
            let snapshot = Snapshot { meta: c.meta, snapshot: Box::new(c.data) };
            Ok(json(&raft.install_full_snapshot(c.vote, snapshot).await))
        }
        // A write from a peer: this node must lead (no second forward).
        METHOD_RAFT_WRITE => write_here(raft, parse(payload)?).await.map(|o| json(&o)),
        // A read index for a peer: this node must lead (no second forward).
        METHOD_RAFT_READ_INDEX => read_index_here(raft).await.map(|i| json(&i)).map_err(|e| e.to_string()),
        // A local write: forwarded once to the leader if this node does not lead.
        LOCAL_WRITE => {
            let cmd: Command = parse(payload)?;
            match raft.client_write(cmd.clone()).await {
                Ok(r) => Ok(json(&outcome(r))),
                // Not when its caller gave up (answered 503): a leader cut
                // off from its quorum keeps the write pending until it
                // learns of a newer leader, maybe at the heal, long after.
                // Forwarding it then would make a write the client was
                // told failed happen after all.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) if caller.is_closed() => {
                    Err("the caller no longer waits; not forwarded".into())
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    to_leader(out, f.leader_node.as_ref(), METHOD_RAFT_WRITE, json(&cmd)).await
                }
                Err(e) => Err(e.to_string()),
            }
        }
        _ => Err("unknown raft method".into()),
    }
}

fn outcome(r: ClientWriteResponse<TypeConfig>) -> WriteOutcome {
    WriteOutcome { index: r.log_id.index, response: r.data }
}

async fn write_here(raft: &Raft, cmd: Command) -> Result<WriteOutcome, String> {
    raft.client_write(cmd).await.map(outcome).map_err(|e| e.to_string())
}

/// What `ClusterNode::owners` was last built from: the versions of the
/// `layout` key and of the `node/` keys.
#[derive(Default)]
struct Placement {
    seen: Option<(u64, Vec<u64>)>,
}

impl Placement {
    /// Rebuilds the node's `owners` when the layout or a node record changed.
    fn follow(&mut self, node: &ClusterNode, sm: &StateMachineStore) {
        // Read before the state: `owners_seen` never runs ahead of it.
        let applied = sm.applied_index();
        let now = sm.read(|s| {
            let layout = s.get(owners::LAYOUT_KEY).map_or(0, |v| v.version);
            let versions = |prefix: &str| -> Vec<u64> {
                s.keys.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.version).collect()
            };
            let mut keys = versions(owners::NODE_KEY_PREFIX);
            // Takeover and stale records change who serves what (`takeover`);
            // a marker keeps the prefixes apart.
            keys.push(u64::MAX);
            keys.extend(versions(crate::takeover::TAKEOVER_PREFIX));
            keys.push(u64::MAX);
            keys.extend(versions(crate::takeover::STALE_PREFIX));
            // A move's previous layout and the nodes' reports (`handover`).
            keys.push(u64::MAX);
            keys.push(s.get(owners::PREV_LAYOUT_KEY).map_or(0, |v| v.version));
            keys.extend(versions(owners::MOVED_PREFIX));
            keys.push(u64::MAX);
            keys.extend(versions(owners::DECOMMISSION_PREFIX));
            // The lanes' order and the nodes' re-striping reports (`restripe`).
            keys.push(u64::MAX);
            keys.push(s.get(owners::LANE_ORDER_KEY).map_or(0, |v| v.version));
            keys.extend(versions(owners::RESTRIPED_PREFIX));
            (layout, keys)
        });
        if self.seen.as_ref() == Some(&now) {
            node.owners_seen.fetch_max(applied, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        match sm.read(owners::Owners::from_state) {
            Ok(o) => {
                if let Some(o) = &o {
                    tracing::info!(version = o.layout.version, nodes = o.nodes.len(), pending = o.pending.len(), "cluster: following layout");
                }
                node.owners.store(o.map(Arc::new));
                self.seen = Some(now);
                node.owners_seen.fetch_max(applied, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::error!("cluster: the committed layout cannot be read, keeping the previous one: {e}"),
        }
    }
}

/// Keeps this node's record (`node/<id>`: its addresses) in the configuration.
async fn register(node: &ClusterNode, raft: &Raft, sm: &StateMachineStore, out: &async_channel::Sender<Outgoing>) {
    let Some(s3) = node.s3_address.get() else { return };
    let me = owners::NodeRecord {
        format: owners::NODE_RECORD_FORMAT,
        id: node.id_hex(),
        cluster: node.config.address,
        s3: *s3,
        shards: Some(node.shards.load(std::sync::atomic::Ordering::Relaxed) as u32).filter(|&n| n > 0),
        zone: node.config.zone.clone(),
    };
    let key = me.key();
    let value = me.encode();
    if sm.read(|s| s.get(&key).is_some_and(|v| v.value == value)) {
        return;
    }
    let cmd = Command::Put { key, value };
    // This task is the caller and waits for the answer.
    let (caller, _waits) = async_channel::bounded(1);
    match handle(raft, out, LOCAL_WRITE, &json(&cmd), &caller).await {
        Ok(_) => tracing::info!(s3 = %s3, "cluster: registered this node"),
        Err(e) => tracing::debug!("cluster: registration waits: {e}"),
    }
}

/// On the leader: commits a new layout when the registered nodes changed
/// (`owners::next_layout`), and ends a move once every node that gained
/// partitions holds its keys (`owners::move_finished`).
async fn lay_out(raft: &Raft, sm: &StateMachineStore) {
    for (what, plan) in [
        ("a new layout", owners::next_layout as fn(&tessera_raft::state::ConfigState) -> Result<Option<Command>, String>),
        ("the end of a move", owners::move_finished),
    ] {
        let cmd = match sm.read(plan) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!("cluster: cannot compute {what}: {e}");
                continue;
            }
        };
        match raft.client_write(cmd).await {
            Ok(r) if r.data.ok => tracing::info!(index = r.log_id.index, "cluster: committed {what}"),
            Ok(_) => tracing::debug!("cluster: the layout changed meanwhile"),
            Err(e) => tracing::warn!(error = %e, "cluster: committing {what} failed"),
        }
    }
}

/// On the leader: commits the takeover records `takeover::decide` asks for.
async fn take_over(node: &ClusterNode, raft: &Raft, sm: &StateMachineStore, seen: &mut HashMap<String, std::time::Instant>) {
    let Some(owners) = node.owners.load_full() else { return };
    let alive: BTreeSet<String> = node.alive_ids().iter().map(hex::encode).collect();
    let cmds = sm.read(|s| crate::takeover::decide(s, &owners, &alive, seen));
    for cmd in sm.read(|s| crate::takeover::left_behind(s, &owners)) {
        match raft.client_write(cmd.clone()).await {
            Ok(r) if r.data.ok => tracing::info!(index = r.log_id.index, ?cmd, "cluster: a record naming a node that left is removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cluster: removing a record of a node that left failed"),
        }
    }
    for cmd in cmds {
        let Command::Cas { key, value, .. } = &cmd else { continue };
        let acting = value.as_deref().and_then(|v| crate::takeover::TakeoverRecord::decode(v).ok()).map(|r| r.acting);
        match raft.client_write(cmd.clone()).await {
            Ok(r) if r.data.ok => {
                node.takeovers_committed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(index = r.log_id.index, record = %key, acting = ?acting, "cluster: another node acts for a lane owner now");
            }
            Ok(_) => tracing::debug!(record = %key, "cluster: the takeover record changed meanwhile"),
            Err(e) => tracing::warn!(error = %e, "cluster: committing a takeover record failed"),
        }
    }
}

/// On the leader: takes decommissioned nodes out of the Raft membership
/// once no layout (current or, during a move, previous) places them;
/// whether the membership changed. A voter that leaves is replaced in the
/// same change by a learner of `ready` (alive, caught up) where there is
/// one: with 3 voters, one leaving would otherwise leave 2, and the loss
/// of either (a dead node decommissioned, then another failing before a
/// promotion) would stop the configuration for good.
async fn leave(
    raft: &Raft,
    sm: &StateMachineStore,
    membership: &tessera_raft::openraft::Membership<NodeId, BasicNode>,
    gone: &BTreeSet<NodeId>,
    ready: &[NodeId],
) -> bool {
    let still_placed = raft_ids(sm.read(|s| -> Vec<String> {
        let o = owners::Owners::from_state(s).ok().flatten();
        o.map(|o| o.placed_nodes().iter().map(|r| r.id.clone()).collect()).unwrap_or_default()
    }));
    let leaving: BTreeSet<NodeId> = gone.iter().copied().filter(|g| !still_placed.contains(g)).collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let out_voters: BTreeSet<NodeId> = voters.intersection(&leaving).copied().collect();
    if !out_voters.is_empty() {
        let mut stay: BTreeSet<NodeId> = voters.difference(&out_voters).copied().collect();
        if stay.is_empty() {
            return false;
        }
        stay.extend(ready.iter().copied().filter(|l| !gone.contains(l)).take(out_voters.len()));
        return match raft.change_membership(stay.clone(), false).await {
            Ok(_) => {
                tracing::info!(voters = ?stay, removed = ?out_voters, "cluster raft: decommissioned nodes left the voters");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster raft: removing decommissioned voters failed");
                false
            }
        };
    }
    let learners: BTreeSet<NodeId> = membership.learner_ids().filter(|l| leaving.contains(l)).collect();
    if learners.is_empty() {
        return false;
    }
    match raft.change_membership(tessera_raft::openraft::ChangeMembers::RemoveNodes(learners.clone()), false).await {
        Ok(_) => {
            tracing::info!(removed = ?learners, "cluster raft: decommissioned nodes left the configuration");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cluster raft: removing decommissioned learners failed");
            false
        }
    }
}

/// Breaks a split vote that would otherwise repeat for ever.
///
/// openraft 0.9 draws a node's election timeout once, when the `Raft` is
/// built, and reuses it for every campaign (0.10 draws one per campaign:
/// databendlabs/openraft#1838), and elections fire on its 150 ms tick. Two
/// voters left when the leader dies whose draws land on the same tick of
/// nearly aligned tick grids campaign together, each votes for itself and
/// refuses the other, and both time out together again, term after term:
/// no leader, so no configuration write and no write that must record a
/// member stale (the CI saw 10 s of it, 11 terms). So when this node starts
/// a second campaign with no leader seen since its first, it turns
/// openraft's tick elections off, sits out a random time below `max` (the
/// shortest election timeout; still granting votes: another candidate may
/// win meanwhile), then campaigns at that moment, off the tick, unless a
/// leader came, and turns the tick elections back on. Two voters doing so
/// campaign apart by far more than a vote's round trip, most times.
async fn break_split_votes(raft: Raft, max: Duration) {
    let mut rx = raft.metrics();
    // The term of this node's first campaign since it last saw a leader.
    let mut campaign: Option<u64> = None;
    loop {
        let (state, term, leader) = {
            let m = rx.borrow_and_update();
            (m.state, m.current_term, m.current_leader)
        };
        if leader.is_some() || state == ServerState::Leader {
            campaign = None;
        } else if state == ServerState::Candidate {
            match campaign {
                None => campaign = Some(term),
                Some(first) if term > first => {
                    // (No randomness from the system: no sit-out.)
                    let r = crate::s3::versions::random8().map_or(0, u64::from_le_bytes);
                    let wait = Duration::from_millis(r % max.as_millis().max(1) as u64);
                    tracing::info!(term, first, wait_ms = wait.as_millis() as u64, "cluster raft: campaigning again with no leader since; sitting out a random time first");
                    raft.runtime_config().elect(false);
                    tokio::time::sleep(wait).await;
                    let (state, leader) = {
                        let m = raft.metrics();
                        let m = m.borrow();
                        (m.state, m.current_leader)
                    };
                    if leader.is_none() && state != ServerState::Leader {
                        let _ = raft.trigger().elect().await;
                    }
                    raft.runtime_config().elect(true);
                    campaign = None;
                    continue;
                }
                Some(_) => {}
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Every node keeps its record; the leader also lays out the registered
/// nodes, adds alive members as learners and promotes caught-up learners
/// to voters, up to 3 (5 with 5 or more alive nodes).
async fn manage(node: Arc<ClusterNode>, raft: Raft, sm: StateMachineStore, out: async_channel::Sender<Outgoing>) {
    let mut seen = HashMap::new();
    loop {
        tokio::time::sleep(MANAGE_EVERY).await;
        register(&node, &raft, &sm, &out).await;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            seen.clear();
            continue;
        }
        lay_out(&raft, &sm).await;
        take_over(&node, &raft, &sm, &mut seen).await;
        let membership = m.membership_config.membership().clone();
        let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        // Decommissioned nodes never join the configuration again, and
        // leave it once their keys moved away (`owners::decommission`).
        let gone = raft_ids(sm.read(owners::decommissioned));
        let alive: Vec<NodeIdentity> = node
            .members()
            .into_iter()
            .filter(|m| m.state == tessera_cluster::MemberState::Alive && !gone.contains(&raft_id(&m.identity.id)))
            .map(|m| m.identity)
            .collect();
        let last = m.last_log_index.unwrap_or(0);
        let alive_ids: BTreeSet<NodeId> = alive.iter().map(|p| raft_id(&p.id)).collect();
        let caught_up = |l: &NodeId| {
            m.replication.as_ref().and_then(|r| r.get(l).cloned().flatten()).is_some_and(|x| x.index + 10 >= last)
        };
        // Learners ready to vote: alive, caught up, staying.
        let ready: Vec<NodeId> = membership.learner_ids().filter(|l| alive_ids.contains(l) && caught_up(l)).collect();
        if !gone.is_empty() && leave(&raft, &sm, &membership, &gone, &ready).await {
            continue;
        }
        for p in &alive {
            let pid = raft_id(&p.id);
            if !known.contains(&pid) {
                match raft.add_learner(pid, raft_node(p), false).await {
                    Ok(_) => tracing::info!(learner = pid, addr = %p.addr, "cluster raft: added a learner"),
                    Err(e) => tracing::warn!(error = %e, "cluster raft: adding a learner failed"),
                }
            }
        }
        let want = if alive.len() >= 5 { 5 } else { 3 };
        if voters.len() >= want {
            continue;
        }
        let promote: Vec<NodeId> = ready.iter().copied().take(want - voters.len()).collect();
        if promote.is_empty() {
            continue;
        }
        let mut new_voters = voters.clone();
        new_voters.extend(promote.iter().copied());
        match raft.change_membership(new_voters.clone(), true).await {
            Ok(_) => tracing::info!(voters = ?new_voters, "cluster raft: promoted learners to voters"),
            Err(e) => tracing::warn!(error = %e, "cluster raft: promotion failed"),
        }
    }
}

struct Factory {
    out: async_channel::Sender<Outgoing>,
}

struct Client {
    out: async_channel::Sender<Outgoing>,
    target: NodeId,
    peer: Option<NodeIdentity>,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Client;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Client {
        Client { out: self.out.clone(), target, peer: peer_of(node) }
    }
}

fn unreachable(why: String) -> Unreachable {
    Unreachable::new(&std::io::Error::other(why))
}

impl Client {
    async fn call(&self, method: u16, payload: Vec<u8>) -> Result<Vec<u8>, Unreachable> {
        let peer = self.peer.clone().ok_or_else(|| unreachable("a raft node address this build cannot read".into()))?;
        let (tx, rx) = async_channel::bounded(1);
        self.out.send(Outgoing { peer, method, payload, reply: tx }).await.map_err(|_| unreachable("stopping".into()))?;
        match tokio::time::timeout(RAFT_CALL_TIMEOUT + Duration::from_millis(500), rx.recv()).await {
            Ok(Ok(r)) => r.map_err(unreachable),
            Ok(Err(_)) => Err(unreachable("stopping".into())),
            Err(_) => Err(unreachable("timed out".into())),
        }
    }
}

type RpcErr<E = tessera_raft::openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let answer = self.call(METHOD_RAFT_APPEND, json(&rpc)).await?;
        let r: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            serde_json::from_slice(&answer).map_err(|e| unreachable(e.to_string()))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        let answer = self.call(METHOD_RAFT_VOTE, json(&rpc)).await?;
        let r: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            serde_json::from_slice(&answer).map_err(|e| unreachable(e.to_string()))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let call = SnapshotCall { vote, meta: snapshot.meta, data: *snapshot.snapshot };
        let answer = self.call(METHOD_RAFT_SNAPSHOT, json(&call)).await?;
        let r: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            serde_json::from_slice(&answer).map_err(|e| unreachable(e.to_string()))?;
        r.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
