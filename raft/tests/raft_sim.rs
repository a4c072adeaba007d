//! Seeded simulation of the configuration Raft (openraft over the durable
//! stores of tessera-raft): 3 or 5 voters on one current-thread tokio
//! runtime with paused time, an in-memory network that loses, delays and
//! partitions messages, nodes killed and restarted from their files.
//!
//! Checked on every history:
//! - at most one leader per term (sampled from every node's metrics);
//! - every node's applied state is a prefix of one history: any two nodes at
//!   the same applied index have the same history hash (which folds in every
//!   applied entry), sampled all along, and a node's applied index only grows
//!   (except when it restarts, back to its snapshot);
//! - no acknowledged write is lost or changed: at the end, after healing,
//!   every acknowledged put is there with its version (its log index) and
//!   value on every node, no key was invented, compare-and-set never let two
//!   writers win from the same version, and all of this still holds after
//!   every node is restarted from its files;
//! - a node that was down while the others wrote past a snapshot and purged
//!   their logs catches up by installing a snapshot (`catch_up_by_snapshot`).
//!
//! Seeded: the fault schedule, the workload and each node's election timeout
//! come from the seed (openraft draws its timeout from a range, given here
//! one millisecond wide). `RAFT_SIM_SEEDS=N` runs more histories,
//! `RAFT_SIM_SEED=S` one.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{Fatal, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, Config, ServerState, Snapshot, SnapshotPolicy};
use tessera_raft::{Command, LogStore, NodeId, Raft, StateMachineStore, TypeConfig, Vote};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

struct Net {
    rng: Rng,
    up: BTreeMap<NodeId, Raft>,
    group: BTreeMap<NodeId, u8>,
    loss_per_mille: u64,
    max_delay_ms: u64,
    delivered: u64,
}

type Shared = Arc<Mutex<Net>>;

fn lock(net: &Shared) -> std::sync::MutexGuard<'_, Net> {
    net.lock().unwrap()
}

struct Factory {
    net: Shared,
    from: NodeId,
}

struct Client {
    net: Shared,
    from: NodeId,
    to: NodeId,
}

fn unreachable(what: &str) -> Unreachable {
    Unreachable::new(&io::Error::new(io::ErrorKind::ConnectionRefused, what.to_string()))
}

impl Client {
    /// Delays the message, then hands back the target if it is up, reachable
    /// from the sender and the message was not lost.
    async fn send(&self) -> Result<Raft, Unreachable> {
        let delay = {
            let mut n = lock(&self.net);
            let max = n.max_delay_ms;
            1 + n.rng.below(max)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut n = lock(&self.net);
        let p = n.loss_per_mille;
        let lost = n.rng.chance(p);
        let linked = n.group.get(&self.from) == n.group.get(&self.to) && n.up.contains_key(&self.from);
        match n.up.get(&self.to).cloned() {
            Some(r) if linked && !lost => {
                n.delivered += 1;
                Ok(r)
            }
            _ => Err(unreachable("lost, partitioned or down")),
        }
    }

    /// Whether the answer is lost on its way back (after the target acted).
    fn answer_lost(&self) -> bool {
        let mut n = lock(&self.net);
        let p = n.loss_per_mille;
        n.rng.chance(p) || n.group.get(&self.from) != n.group.get(&self.to)
    }
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Client;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Client {
        Client { net: self.net.clone(), from: self.from, to: target }
    }
}

type RpcErr = RPCError<NodeId, BasicNode, RaftError<NodeId>>;

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let r = self.send().await?;
        let out = r.append_entries(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))?;
        if self.answer_lost() {
            return Err(unreachable("answer lost").into());
        }
        Ok(out)
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        let r = self.send().await?;
        let out = r.vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))?;
        if self.answer_lost() {
            return Err(unreachable("answer lost").into());
        }
        Ok(out)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let r = self.send().await?;
        let out = r
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::RemoteError(RemoteError::new(self.to, e)))?;
        if self.answer_lost() {
            return Err(unreachable("answer lost").into());
        }
        Ok(out)
    }
}

struct Node {
    dir: PathBuf,
    config: Arc<Config>,
    raft: Option<Raft>,
    sm: Option<StateMachineStore>,
    /// Applied index last seen on this incarnation.
    seen: u64,
}

struct Sim {
    seed: u64,
    net: Shared,
    nodes: BTreeMap<NodeId, Node>,
    leaders: BTreeMap<u64, NodeId>,
    history: BTreeMap<u64, u64>,
    _root: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn base_dir() -> PathBuf {
    // Real files; tmpfs when there is one keeps the fsyncs cheap.
    match std::env::var_os("RAFT_SIM_DIR") {
        Some(d) => PathBuf::from(d),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    }
}

impl Sim {
    fn new(seed: u64, voters: u64, snapshot_every: u64) -> Sim {
        let root = base_dir().join(format!("tessera-raft-sim-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut rng = Rng(seed);
        let mut nodes = BTreeMap::new();
        for id in 0..voters {
            let min = 150 + rng.below(150);
            let config = Config {
                cluster_name: "sim".into(),
                heartbeat_interval: 50,
                election_timeout_min: min,
                election_timeout_max: min + 1,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
                max_in_snapshot_log_to_keep: 0,
                purge_batch_size: 1,
                ..Default::default()
            };
            let config = Arc::new(config.validate().unwrap());
            let dir = root.join(format!("n{id}"));
            nodes.insert(id, Node { dir, config, raft: None, sm: None, seen: 0 });
        }
        let net =
            Net { rng, up: BTreeMap::new(), group: BTreeMap::new(), loss_per_mille: 0, max_delay_ms: 5, delivered: 0 };
        Sim {
            seed,
            net: Arc::new(Mutex::new(net)),
            nodes,
            leaders: BTreeMap::new(),
            history: BTreeMap::new(),
            _root: TempDir(root),
        }
    }

    async fn start(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.raft.is_none());
        let log = LogStore::open(&node.dir).unwrap_or_else(|e| panic!("seed {}: reopen log of n{id}: {e}", self.seed));
        let sm = StateMachineStore::open(&node.dir)
            .unwrap_or_else(|e| panic!("seed {}: reopen state of n{id}: {e}", self.seed));
        let factory = Factory { net: self.net.clone(), from: id };
        let raft = Raft::new(id, node.config.clone(), factory, log, sm.clone()).await.unwrap();
        node.seen = sm.position().0;
        node.raft = Some(raft.clone());
        node.sm = Some(sm);
        lock(&self.net).up.insert(id, raft);
    }

    async fn stop(&mut self, id: NodeId) {
        lock(&self.net).up.remove(&id);
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(r) = node.raft.take() {
            r.shutdown().await.unwrap();
        }
        node.sm = None;
    }

    fn up(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.raft.is_some()).map(|(id, _)| *id).collect()
    }

    /// Samples every live node: leaders per term and applied positions.
    fn check(&mut self) {
        let seed = self.seed;
        for (id, node) in self.nodes.iter_mut() {
            let (Some(raft), Some(sm)) = (&node.raft, &node.sm) else {
                continue;
            };
            let m = raft.metrics().borrow().clone();
            if m.state == ServerState::Leader {
                let prev = *self.leaders.entry(m.current_term).or_insert(*id);
                assert_eq!(prev, *id, "seed {seed}: two leaders in term {}: n{prev} and n{id}", m.current_term);
            }
            let (index, hash) = sm.position();
            assert!(index >= node.seen, "seed {seed}: n{id} applied index went back from {} to {index}", node.seen);
            node.seen = index;
            if index > 0 {
                let h = *self.history.entry(index).or_insert(hash);
                assert_eq!(h, hash, "seed {seed}: n{id} at index {index} applied another history");
            }
        }
    }

    fn leader(&self) -> Option<(NodeId, Raft)> {
        for (id, node) in &self.nodes {
            if let Some(r) = &node.raft {
                let m = r.metrics().borrow().clone();
                if m.state == ServerState::Leader {
                    return Some((*id, r.clone()));
                }
            }
        }
        None
    }

    /// Waits (virtual time) until every node is up to date with one leader,
    /// checking all along.
    async fn settle(&mut self, what: &str) -> (NodeId, Raft) {
        for _ in 0..6000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.check();
            let Some((id, r)) = self.leader() else {
                continue;
            };
            let m = r.metrics().borrow().clone();
            let target = m.last_applied.map_or(0, |l| l.index);
            if m.last_log_index.map_or(0, |i| i) != target || target == 0 {
                continue;
            }
            if self.up().iter().all(|n| self.nodes[n].sm.as_ref().unwrap().position().0 == target) {
                return (id, r);
            }
        }
        panic!("seed {}: no convergence {what} within 60 s", self.seed);
    }
}

#[derive(Default)]
struct Writes {
    next: u64,
    /// key -> (value, version) of every acknowledged put.
    acked: BTreeMap<String, (Vec<u8>, u64)>,
    /// Every value ever proposed per key.
    proposed: BTreeMap<String, BTreeSet<Vec<u8>>>,
    /// The versions acknowledged compare-and-set writes expected.
    cas_wins: Vec<u64>,
    cas_proposed: u64,
}

type SharedWrites = Arc<Mutex<Writes>>;

fn spawn_put(raft: Raft, writes: &SharedWrites) {
    let (key, value) = {
        let mut w = writes.lock().unwrap();
        w.next += 1;
        let key = format!("k{}", w.next);
        let value = format!("v{}", w.next).into_bytes();
        w.proposed.entry(key.clone()).or_default().insert(value.clone());
        (key, value)
    };
    let writes = writes.clone();
    tokio::spawn(async move {
        if let Ok(resp) = raft.client_write(Command::Put { key: key.clone(), value: value.clone() }).await {
            assert!(resp.data.ok && resp.data.version == resp.log_id.index);
            writes.lock().unwrap().acked.insert(key, (value, resp.log_id.index));
        }
    });
}

fn spawn_cas(raft: Raft, sm: &StateMachineStore, writes: &SharedWrites) {
    let current = sm.applied().state.get("counter").cloned();
    let (expect, n) = match current {
        Some(v) => (v.version, std::str::from_utf8(&v.value).unwrap().parse::<u64>().unwrap()),
        None => (0, 0),
    };
    let value = (n + 1).to_string().into_bytes();
    {
        let mut w = writes.lock().unwrap();
        w.cas_proposed += 1;
        w.proposed.entry("counter".into()).or_default().insert(value.clone());
    }
    let writes = writes.clone();
    tokio::spawn(async move {
        let cmd = Command::Cas { key: "counter".into(), expect, value: Some(value) };
        if let Ok(resp) = raft.client_write(cmd).await {
            if resp.data.ok {
                writes.lock().unwrap().cas_wins.push(expect);
            }
        }
    });
}

/// Every live node holds the same state, with every acknowledged write.
fn check_final(sim: &Sim, writes: &Writes, what: &str) {
    let seed = sim.seed;
    let mut states = sim.up().into_iter().map(|id| (id, sim.nodes[&id].sm.as_ref().unwrap().applied()));
    let (first, a) = states.next().unwrap();
    for (id, b) in states {
        assert_eq!(
            a.last_applied, b.last_applied,
            "seed {seed} {what}: n{first} and n{id} applied up to different entries"
        );
        assert_eq!(a.state, b.state, "seed {seed} {what}: n{first} and n{id} differ");
    }
    for (key, (value, version)) in &writes.acked {
        let got = a.state.get(key).unwrap_or_else(|| panic!("seed {seed} {what}: acknowledged {key} lost"));
        assert_eq!((&got.value, got.version), (value, *version), "seed {seed} {what}: acknowledged {key} changed");
    }
    for (key, v) in &a.state.keys {
        assert!(
            writes.proposed.get(key).is_some_and(|p| p.contains(&v.value)),
            "seed {seed} {what}: {key} was never written"
        );
    }
    let wins: BTreeSet<u64> = writes.cas_wins.iter().copied().collect();
    assert_eq!(
        wins.len(),
        writes.cas_wins.len(),
        "seed {seed} {what}: two compare-and-set writes won from one version"
    );
    let counter = a.state.get("counter").map_or(0, |v| std::str::from_utf8(&v.value).unwrap().parse::<u64>().unwrap());
    assert!(
        counter >= writes.cas_wins.len() as u64 && counter <= writes.cas_proposed,
        "seed {seed} {what}: counter {counter}, {} acknowledged wins, {} proposed",
        writes.cas_wins.len(),
        writes.cas_proposed
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

async fn history(seed: u64) -> (u64, u64) {
    let voters = if seed % 2 == 0 { 3 } else { 5 };
    let mut rng = Rng(seed ^ 0x5eed);
    let mut sim = Sim::new(seed, voters, 5 + rng.below(25));
    for id in 0..voters {
        sim.start(id).await;
    }
    let members: BTreeMap<NodeId, BasicNode> = (0..voters).map(|i| (i, BasicNode::new(format!("n{i}")))).collect();
    let first = rng.below(voters);
    sim.nodes[&first].raft.as_ref().unwrap().initialize(members).await.unwrap();
    let writes: SharedWrites = Arc::default();
    for _step in 0..150 {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(60))).await;
        sim.check();
        match rng.below(100) {
            0..=54 => {
                // Writes go to whoever believes it leads (a stale leader's writes
                // must fail or be overwritten, never be acknowledged and lost).
                let up = sim.up();
                if up.is_empty() {
                    continue;
                }
                let id = up[rng.below(up.len() as u64) as usize];
                let node = &sim.nodes[&id];
                let raft = node.raft.clone().unwrap();
                if raft.metrics().borrow().state != ServerState::Leader {
                    continue;
                }
                for _ in 0..1 + rng.below(3) {
                    if rng.chance(250) {
                        spawn_cas(raft.clone(), node.sm.as_ref().unwrap(), &writes);
                    } else {
                        spawn_put(raft.clone(), &writes);
                    }
                }
            }
            55..=64 => {
                let mut n = lock(&sim.net);
                for id in 0..voters {
                    let g = n.rng.below(2) as u8;
                    n.group.insert(id, g);
                }
            }
            65..=74 => lock(&sim.net).group.clear(),
            75..=82 => {
                let up = sim.up();
                if up.len() > 1 {
                    sim.stop(up[rng.below(up.len() as u64) as usize]).await;
                }
            }
            83..=92 => {
                let down: Vec<NodeId> = (0..voters).filter(|id| !sim.up().contains(id)).collect();
                if !down.is_empty() {
                    sim.start(down[rng.below(down.len() as u64) as usize]).await;
                }
            }
            _ => {
                let mut n = lock(&sim.net);
                n.loss_per_mille = [0, 20, 50, 200][rng.below(4) as usize];
                n.max_delay_ms = [2, 5, 20, 60][rng.below(4) as usize];
            }
        }
    }
    // Heal everything, bring every node back, and let the writes in flight end.
    {
        let mut n = lock(&sim.net);
        n.group.clear();
        n.loss_per_mille = 0;
        n.max_delay_ms = 5;
    }
    for id in 0..voters {
        if sim.nodes[&id].raft.is_none() {
            sim.start(id).await;
        }
    }
    let (_, leader) = sim.settle("after healing").await;
    spawn_put(leader, &writes);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.settle("after the last write").await;
    check_final(&sim, &writes.lock().unwrap(), "after healing");
    // Every node restarts from its files: nothing acknowledged is lost.
    for id in 0..voters {
        sim.stop(id).await;
    }
    for id in 0..voters {
        sim.start(id).await;
    }
    let (_, leader) = sim.settle("after a full restart").await;
    spawn_put(leader, &writes);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.settle("after the write following the restart").await;
    check_final(&sim, &writes.lock().unwrap(), "after a full restart");
    for id in 0..voters {
        sim.stop(id).await;
    }
    let acked = writes.lock().unwrap().acked.len() as u64;
    let delivered = lock(&sim.net).delivered;
    (acked, delivered)
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("RAFT_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n = std::env::var("RAFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    (0..n).collect()
}

#[test]
fn random_histories() {
    let (mut acked, mut delivered, mut leaders_elected) = (0, 0, 0);
    for seed in seeds() {
        let (a, d) = runtime().block_on(history(seed));
        acked += a;
        delivered += d;
        leaders_elected += 1;
    }
    eprintln!("raft_sim: {leaders_elected} histories, {acked} acknowledged writes, {delivered} messages delivered");
    assert!(acked > 0);
}

/// A node down while the others write past snapshots (and purge their logs)
/// comes back and catches up by installing a snapshot, then restarts from it.
#[test]
fn catch_up_by_snapshot() {
    for seed in 0..20u64 {
        runtime().block_on(async move {
            let voters = if seed % 2 == 0 { 3 } else { 5 };
            let mut sim = Sim::new(1000 + seed, voters, 10);
            for id in 0..voters {
                sim.start(id).await;
            }
            let members: BTreeMap<NodeId, BasicNode> =
                (0..voters).map(|i| (i, BasicNode::new(format!("n{i}")))).collect();
            sim.nodes[&0].raft.as_ref().unwrap().initialize(members).await.unwrap();
            let (leader_id, _) = sim.settle("at start").await;
            let lagging = (leader_id + 1) % voters;
            sim.stop(lagging).await;
            let writes: SharedWrites = Arc::default();
            for _ in 0..60 {
                let (_, leader) = sim.settle("while one is down").await;
                spawn_put(leader, &writes);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (_, leader) = sim.settle("after the writes").await;
            let purged = leader.metrics().borrow().purged.map_or(0, |p| p.index);
            assert!(purged > 10, "seed {seed}: the leader purged its log up to {purged} only");
            sim.start(lagging).await;
            sim.settle("after the lagging node is back").await;
            let installed = sim.nodes[&lagging].sm.as_ref().unwrap().applied().snapshots_installed;
            assert!(installed >= 1, "seed {seed}: n{lagging} caught up without a snapshot");
            check_final(&sim, &writes.lock().unwrap(), "after catch-up");
            assert_eq!(writes.lock().unwrap().acked.len(), 60);
            // And it restarts from the installed snapshot plus its log.
            sim.stop(lagging).await;
            sim.start(lagging).await;
            sim.settle("after the caught-up node restarts").await;
            check_final(&sim, &writes.lock().unwrap(), "after the caught-up node restarts");
            for id in 0..voters {
                sim.stop(id).await;
            }
        });
    }
}
