//! Membership and failure detection: SWIM via `foca`, sans-IO.
//!
//! [`Gossip`] owns one foca instance and everything it asks of a runtime:
//! datagrams to send (sealed with the cluster key, see [`crate::seal`]),
//! timers (kept here, fired by [`Gossip::advance`] with the caller's
//! clock) and membership events. The node drives it from one reactor with
//! a UDP socket; the seeded simulation (`tests/gossip_sim.rs`) drives many
//! instances over a simulated network. Nothing here reads a clock or does
//! I/O, so a simulated history replays from its seed.
//!
//! A node's identity is its cluster address, its node id (stable across
//! restarts) and a `bump` that orders its incarnations: a restarted node
//! announces a higher bump, so the cluster takes it for the same node
//! coming back (foca's `Identity::renew`), and the down identity it had is
//! superseded rather than fought over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use foca::{Config, Foca, Identity, NoCustomBroadcast, Notification, PostcardCodec, Runtime, State, Timer};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::seal::{ClusterKey, Purpose, Refused};

/// Bytes of a node id.
pub const NODE_ID_BYTES: usize = 16;

/// Who a member is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Where it listens for cluster traffic.
    pub addr: SocketAddr,
    /// Stable across restarts (kept in its first data dir).
    pub id: [u8; NODE_ID_BYTES],
    /// Orders its incarnations (wrapping): higher is newer.
    pub bump: u16,
}

impl Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Wrapping order: a restart after a long run still wins.
        (self.bump.wrapping_sub(adversary.bump) as i16) > 0
    }
}

impl NodeIdentity {
    /// The placeholder a join announces to: only the address is known.
    pub fn seed(addr: SocketAddr) -> NodeIdentity {
        NodeIdentity {
            addr,
            id: [0; NODE_ID_BYTES],
            bump: 0,
        }
    }

    pub fn id_hex(&self) -> String {
        crate::placement::hex(&self.id)
    }
}

/// A member as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub identity: NodeIdentity,
    pub state: MemberState,
    pub incarnation: u16,
    /// This node itself.
    pub local: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

/// A change of membership, in the order foca reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Up(NodeIdentity),
    Down(NodeIdentity),
    /// This node was declared down and came back with a new identity.
    Rejoined(NodeIdentity),
}

/// What the gossip layer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Frames refused by [`ClusterKey::open`] (wrong secret, misaddressed, stale, garbage).
    pub refused: u64,
    /// Authenticated frames foca could not use.
    pub invalid: u64,
}

/// Timings of the failure detector.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    pub gossip_every: Duration,
    /// Announces to live members (finds a node that missed the join).
    pub announce_every: Duration,
    /// Announces to members held down: how soon the two sides of a healed
    /// partition see each other again (a down member is probed by nobody).
    pub announce_down_every: Duration,
}

impl Timing {
    /// A LAN's defaults for about `cluster_size` nodes (memberlist's
    /// DefaultLANConfig, through foca).
    pub fn lan(cluster_size: u32) -> Timing {
        let c = Config::new_lan(NonZeroU32::new(cluster_size.max(1)).expect("nonzero"));
        Timing {
            probe_period: c.probe_period,
            probe_rtt: c.probe_rtt,
            suspect_to_down: c.suspect_to_down_after,
            gossip_every: c.periodic_gossip.map_or(Duration::from_millis(200), |p| p.frequency),
            announce_every: Duration::from_secs(10),
            // At 10 s the handback after a healed partition came 3 to 13 s
            // after the heal, as the next announce fell; a packet every 2 s
            // to each of up to 2 down members costs nothing.
            announce_down_every: Duration::from_secs(2),
        }
    }

    fn config(&self, cluster_size: u32) -> Config {
        let mut c = Config::new_lan(NonZeroU32::new(cluster_size.max(1)).expect("nonzero"));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down;
        if let Some(p) = c.periodic_gossip.as_mut() {
            p.frequency = self.gossip_every;
        }
        // A node that missed the join (or restarted) is found again by
        // periodic announces to live and down members.
        if let Some(p) = c.periodic_announce.as_mut() {
            p.frequency = self.announce_every;
        }
        if let Some(p) = c.periodic_announce_to_down_members.as_mut() {
            p.frequency = self.announce_down_every;
        }
        // Keep a down member for a day (foca's default): it stays reported.
        c
    }
}

#[derive(Default)]
struct Rt {
    send: Vec<(NodeIdentity, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeIdentity>)>,
    events: Vec<Event>,
}

impl Runtime<NodeIdentity> for Rt {
    fn notify(&mut self, n: Notification<'_, NodeIdentity>) {
        match n {
            Notification::MemberUp(m) => self.events.push(Event::Up(m.clone())),
            Notification::MemberDown(m) => self.events.push(Event::Down(m.clone())),
            Notification::Rejoin(m) => self.events.push(Event::Rejoined(m.clone())),
            _ => {}
        }
    }

    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.send.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<NodeIdentity>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// One node's membership state machine.
pub struct Gossip {
    foca: Foca<NodeIdentity, PostcardCodec, SmallRng, NoCustomBroadcast>,
    rt: Rt,
    key: ClusterKey,
    me: NodeIdentity,
    now_ms: u64,
    /// Due time (ms), then a sequence number for ties.
    timers: BTreeMap<(u64, u64), Timer<NodeIdentity>>,
    timer_seq: u64,
    out: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
    /// Seed addresses, announced to again while this node knows no member
    /// (a seed that was not up yet, or a cluster that forgot us).
    seeds: Vec<SocketAddr>,
    next_seed_announce_ms: u64,
    announce_every_ms: u64,
    /// Members seen suspect: (identity, incarnation) -> since (ms).
    suspects: BTreeMap<(SocketAddr, u16, u16), u64>,
    /// How long a suspicion may stand before this node declares the member
    /// down itself (see `expire_suspicions`).
    suspicion_limit_ms: u64,
    pub counters: Counters,
}

impl Gossip {
    /// A node alone in its cluster until it joins or is joined. `seed`
    /// seeds foca's random choices (probe targets, gossip fan-out).
    pub fn new(me: NodeIdentity, key: ClusterKey, timing: Timing, cluster_size: u32, seed: u64, now_ms: u64) -> Gossip {
        let foca = Foca::new(me.clone(), timing.config(cluster_size), SmallRng::seed_from_u64(seed), PostcardCodec);
        let mut g = Gossip {
            foca,
            rt: Rt::default(),
            key,
            me,
            now_ms,
            timers: BTreeMap::new(),
            timer_seq: 0,
            out: Vec::new(),
            events: Vec::new(),
            seeds: Vec::new(),
            next_seed_announce_ms: 0,
            announce_every_ms: (timing.probe_period.as_millis() as u64).max(1),
            suspects: BTreeMap::new(),
            suspicion_limit_ms: 2 * (timing.suspect_to_down + timing.probe_period).as_millis() as u64,
            counters: Counters::default(),
        };
        // foca schedules its periodic timers once it has a member; the
        // periodic announce below is ours until then.
        g.drain();
        g
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.me
    }

    /// Announces this node to each seed address (other than its own).
    /// Until it knows a member, it announces again every probe period.
    pub fn join(&mut self, seeds: &[SocketAddr]) {
        self.seeds = seeds.iter().copied().filter(|s| *s != self.me.addr).collect();
        self.announce_to_seeds();
    }

    fn announce_to_seeds(&mut self) {
        for i in 0..self.seeds.len() {
            let _ = self.foca.announce(NodeIdentity::seed(self.seeds[i]), &mut self.rt);
        }
        self.next_seed_announce_ms = self.now_ms + self.announce_every_ms;
        self.drain();
    }

    /// Handles one datagram received at `now_ms`.
    pub fn handle(&mut self, frame: &[u8], now_ms: u64) -> Result<(), Refused> {
        self.now_ms = self.now_ms.max(now_ms);
        self.counters.datagrams_in += 1;
        let payload = match self.key.open(Purpose::Gossip, self.me.addr, now_ms, frame) {
            Ok(p) => p,
            Err(e) => {
                self.counters.refused += 1;
                return Err(e);
            }
        };
        if self.foca.handle_data(payload, &mut self.rt).is_err() {
            self.counters.invalid += 1;
        }
        self.drain();
        Ok(())
    }

    /// Fires every timer due by `now_ms`.
    pub fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > self.now_ms {
                break;
            }
            let t = entry.remove();
            let _ = self.foca.handle_timer(t, &mut self.rt);
            self.drain();
        }
        if !self.seeds.is_empty() && self.foca.num_members() == 0 && self.now_ms >= self.next_seed_announce_ms {
            self.announce_to_seeds();
        }
        self.expire_suspicions();
    }

    /// foca declares a suspect down only on the node whose probe failed,
    /// and only if the suspect's incarnation has not moved since. When the
    /// suspect refuted once and was suspected again by gossip (or the
    /// prober went away), nobody holds that timer, and a suspect that never
    /// hears of its suspicion (the updates ran out of transmissions under
    /// loss) stays suspect everywhere for ever (found by the simulation).
    /// So a suspicion standing for twice the detector's time is taken as
    /// down here: the member hears it (foca answers a down member's
    /// messages with TurnUndead), renews its identity and is alive again
    /// with a higher bump, and a member really gone stays down.
    fn expire_suspicions(&mut self) {
        let mut seen = std::collections::BTreeSet::new();
        let mut expired = Vec::new();
        for m in self.foca.iter_membership_state() {
            if m.state() != State::Suspect {
                continue;
            }
            let k = (m.id().addr, m.id().bump, m.incarnation());
            seen.insert(k);
            let since = *self.suspects.entry(k).or_insert(self.now_ms);
            if self.now_ms.saturating_sub(since) >= self.suspicion_limit_ms {
                expired.push(foca::Member::new(m.id().clone(), m.incarnation(), State::Down));
            }
        }
        self.suspects.retain(|k, _| seen.contains(k));
        if !expired.is_empty() {
            let _ = self.foca.apply_many(expired.into_iter(), true, &mut self.rt);
            self.drain();
        }
    }

    /// When the next timer is due (ms), if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        let timer = self.timers.keys().next().map(|k| k.0);
        let seeds = (!self.seeds.is_empty() && self.foca.num_members() == 0).then_some(self.next_seed_announce_ms);
        match (timer, seeds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sealed datagrams to send, with their destinations.
    pub fn take_outgoing(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    /// Membership changes since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Tells the cluster this node leaves (a clean stop), so it is down
    /// at once rather than after suspicion.
    pub fn leave(&mut self) {
        let _ = self.foca.leave_cluster(&mut self.rt);
        self.drain();
    }

    /// Every member known, this node first, then by address.
    pub fn members(&self) -> Vec<MemberView> {
        let mut out = vec![MemberView {
            identity: self.me.clone(),
            state: MemberState::Alive,
            incarnation: 0,
            local: true,
        }];
        let mut others: Vec<MemberView> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.id().addr != self.me.addr)
            .map(|m| MemberView {
                identity: m.id().clone(),
                state: match m.state() {
                    State::Alive => MemberState::Alive,
                    State::Suspect => MemberState::Suspect,
                    State::Down => MemberState::Down,
                },
                incarnation: m.incarnation(),
                local: false,
            })
            .collect();
        others.sort_by(|a, b| (a.identity.addr, a.identity.bump).cmp(&(b.identity.addr, b.identity.bump)));
        out.extend(others);
        out
    }

    fn drain(&mut self) {
        // foca may have renewed this node's identity (declared down, back).
        let current = self.foca.identity().clone();
        if current != self.me {
            self.me = current;
        }
        for (to, data) in self.rt.send.drain(..) {
            let frame = self.key.seal(Purpose::Gossip, to.addr, self.now_ms, &data);
            self.counters.datagrams_out += 1;
            self.out.push((to.addr, frame));
        }
        for (after, t) in self.rt.timers.drain(..) {
            let due = self.now_ms + after.as_millis() as u64;
            self.timers.insert((due, self.timer_seq), t);
            self.timer_seq += 1;
        }
        self.events.append(&mut self.rt.events);
    }
}
