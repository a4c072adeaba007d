//! Pooled, multiplexed RPC connections to peers (reactor 0): one
//! connection per peer, opened on first use and again after it breaks;
//! calls on it are numbered, many may be in flight (at most
//! `MAX_IN_FLIGHT`), and each answer finds its caller by call id. A
//! writer task seals frames in the order it sends them (frame numbers are
//! part of the tag) and a reader task opens the answers. A call that
//! passes its deadline gives up its slot; a late answer is dropped. A
//! broken connection fails every call in flight on it at once. A call
//! that passes its deadline while not one frame came in on its connection
//! breaks it too: a peer cut off by the network (packets dropped, no
//! reset) leaves the connection open but silent, and every later call on
//! it would wait its whole deadline, and after the heal wait for TCP's
//! backed-off retransmission; a new connection fails or recovers at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncWriteRentExt, Splitable};
use tessera_cluster::rpc::{FrameKind, NodeId};
use tessera_cluster::seal::ClusterKey;
use tessera_cluster::NodeIdentity;

use crate::cluster::ClusterNode;

/// Calls in flight on one connection; beyond it a call fails at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("too many calls in flight to that node")]
    Busy,
    #[error("no answer within the deadline")]
    Timeout,
    #[error("given up: the gossip holds the node down")]
    HeldDown,
    #[error("the node answered an error: {0}")]
    Remote(String),
}

type Reply = async_channel::Sender<Result<(FrameKind, Vec<u8>), String>>;

struct Outgoing {
    method: u16,
    call: u64,
    deadline_ms: u32,
    payload: Vec<u8>,
}

struct Conn {
    peer: NodeId,
    out: async_channel::Sender<Outgoing>,
    pending: RefCell<HashMap<u64, Reply>>,
    next_call: Cell<u64>,
    dead: Cell<bool>,
    /// Frames read from the peer so far.
    frames_in: Cell<u64>,
}

impl Conn {
    /// Marks the connection broken and fails every call in flight on it.
    fn fail(&self, why: &str) {
        self.dead.set(true);
        self.out.close();
        for (_, r) in self.pending.borrow_mut().drain() {
            let _ = r.try_send(Err(why.to_string()));
        }
    }
}

/// How often a watched call (`RpcPool::call_unless_down`, a forward's
/// `forward::Watch`) looks at the gossip.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The deadline of a watched call made while the gossip already holds the
/// peer down (`call_unless_down`): a restarted node that answers does so
/// at once, and a cut-off one must not hold the caller for the full
/// deadline. (The partition test caught a lane write that started a few
/// ms after the gossip's "down" and before its reactor's lanes took the
/// member out: unwatched, on a pooled connection the cut left silent, it
/// waited the member call's 10 s.)
pub const HELD_DOWN_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves once the gossip holds node `id` down (looked at every
/// `WATCH_EVERY`); never when `watch` is off.
pub(crate) async fn held_down(node: &ClusterNode, id: [u8; tessera_cluster::gossip::NODE_ID_BYTES], watch: bool) {
    if !watch {
        return futures_util::future::pending().await;
    }
    loop {
        monoio::time::sleep(WATCH_EVERY).await;
        if node.held_down(&id) {
            return;
        }
    }
}

pub struct RpcPool {
    node: Arc<ClusterNode>,
    key: ClusterKey,
    conns: RefCell<HashMap<SocketAddr, Rc<Conn>>>,
}

impl RpcPool {
    pub fn new(node: Arc<ClusterNode>) -> Rc<RpcPool> {
        let key = node.key();
        Rc::new(RpcPool { node, key, conns: RefCell::new(HashMap::new()) })
    }

    /// Connections open (not known broken).
    pub fn open_connections(&self) -> usize {
        self.conns.borrow().values().filter(|c| !c.dead.get()).count()
    }

    /// Calls `method` on `peer` with `payload`; its answer.
    pub async fn call(self: &Rc<Self>, peer: &NodeIdentity, method: u16, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, RpcError> {
        self.call_watched(peer, method, payload, timeout, false).await
    }

    /// `call`, given up once the gossip comes to hold `peer` down (looked
    /// at every `WATCH_EVERY`) instead of at the deadline: for lane
    /// members, which the lanes take out of service on the gossip's word
    /// too (`cluster_lanes::revive`), so a write in flight when a node is
    /// cut off waits for the gossip (about 6 s), not the member call's
    /// 10 s deadline. A connection silent since the call was sent is
    /// dropped then, as at a deadline (a cut-off peer leaves it open and
    /// silent). Only the change counts: a call made while the gossip
    /// already holds the peer down is not given up (a restarted node is
    /// answering before the gossip knows its new incarnation), but gets a
    /// deadline of at most `HELD_DOWN_CALL_TIMEOUT`.
    pub async fn call_unless_down(
        self: &Rc<Self>,
        peer: &NodeIdentity,
        method: u16,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        self.call_watched(peer, method, payload, timeout, true).await
    }

    /// `call_inner`, timed (`rpc_metrics`): an answer, a result or an
    /// error, is a call's duration; anything else is a failure.
    async fn call_watched(
        self: &Rc<Self>,
        peer: &NodeIdentity,
        method: u16,
        payload: Vec<u8>,
        timeout: Duration,
        watch: bool,
    ) -> Result<Vec<u8>, RpcError> {
        let started = std::time::Instant::now();
        let r = self.call_inner(peer, method, payload, timeout, watch).await;
        match &r {
            Ok(_) | Err(RpcError::Remote(_)) => self.node.rpc_times.calls.record(method, started.elapsed()),
            Err(_) => self.node.rpc_times.failed(method),
        }
        r
    }

    async fn call_inner(
        self: &Rc<Self>,
        peer: &NodeIdentity,
        method: u16,
        payload: Vec<u8>,
        timeout: Duration,
        watch: bool,
    ) -> Result<Vec<u8>, RpcError> {
        use futures_util::future::{select, Either};
        let down_already = watch && self.node.held_down(&peer.id);
        let timeout = if down_already { timeout.min(HELD_DOWN_CALL_TIMEOUT) } else { timeout };
        let watch = watch && !down_already;
        let conn = {
            let c = std::pin::pin!(monoio::time::timeout(timeout, self.conn(peer)));
            match select(c, std::pin::pin!(held_down(&self.node, peer.id, watch))).await {
                Either::Left((Ok(c), _)) => c?,
                Either::Left((Err(_), _)) => return Err(RpcError::Timeout),
                Either::Right(_) => return Err(RpcError::HeldDown),
            }
        };
        if conn.pending.borrow().len() >= MAX_IN_FLIGHT {
            return Err(RpcError::Busy);
        }
        let call = conn.next_call.get();
        conn.next_call.set(call + 1);
        let (tx, rx) = async_channel::bounded(1);
        conn.pending.borrow_mut().insert(call, tx);
        let deadline_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        let heard = conn.frames_in.get();
        if conn.out.send(Outgoing { method, call, deadline_ms, payload }).await.is_err() {
            conn.pending.borrow_mut().remove(&call);
            return Err(RpcError::Lost("the connection closed".into()));
        }
        let answer = {
            let r = std::pin::pin!(monoio::time::timeout(timeout, rx.recv()));
            match select(r, std::pin::pin!(held_down(&self.node, peer.id, watch))).await {
                Either::Left((r, _)) => Some(r),
                Either::Right(_) => None,
            }
        };
        match answer {
            Some(Ok(Ok(Ok((FrameKind::Response, p))))) => Ok(p),
            Some(Ok(Ok(Ok((_, p))))) => Err(RpcError::Remote(String::from_utf8_lossy(&p).into_owned())),
            Some(Ok(Ok(Err(e)))) => Err(RpcError::Lost(e)),
            Some(Ok(Err(_))) => Err(RpcError::Lost("the connection closed".into())),
            Some(Err(_)) | None => {
                conn.pending.borrow_mut().remove(&call);
                if conn.frames_in.get() == heard && !conn.dead.get() {
                    tracing::warn!(peer = %peer.addr, "no frame from a node within a call's deadline (or before the gossip held it down); its connection is dropped");
                    conn.fail("the connection went silent");
                }
                Err(if answer.is_none() { RpcError::HeldDown } else { RpcError::Timeout })
            }
        }
    }

    /// The live connection to `peer`, opened if there is none (or the one
    /// there leads to another incarnation's id).
    async fn conn(self: &Rc<Self>, peer: &NodeIdentity) -> Result<Rc<Conn>, RpcError> {
        if let Some(c) = self.conns.borrow().get(&peer.addr) {
            if !c.dead.get() && c.peer == peer.id {
                return Ok(c.clone());
            }
        }
        let (stream, session) = crate::cluster_rpc::connect(&self.node, &self.key, peer).await.map_err(RpcError::Connect)?;
        // Another call may have connected meanwhile: keep one.
        if let Some(c) = self.conns.borrow().get(&peer.addr) {
            if !c.dead.get() && c.peer == peer.id {
                return Ok(c.clone());
            }
        }
        let (out_tx, out_rx) = async_channel::bounded::<Outgoing>(MAX_IN_FLIGHT);
        let conn = Rc::new(Conn {
            peer: peer.id,
            out: out_tx,
            pending: RefCell::new(HashMap::new()),
            next_call: Cell::new(1),
            dead: Cell::new(false),
            frames_in: Cell::new(0),
        });
        let session = Rc::new(RefCell::new(session));
        let (rd, mut wr) = stream.into_split();
        {
            let (conn, session) = (conn.clone(), session.clone());
            monoio::spawn(async move {
                // Sealed in the order sent (frame numbers are in the tag),
                // the calls queued meanwhile sent together.
                let mut out = crate::rpc_frames::Coalescer::new(out_rx);
                let seal = |o: Outgoing| session.borrow_mut().seal(FrameKind::Request, o.method, o.call, o.deadline_ms, &o.payload);
                while let Some(batch) = out.next(seal).await {
                    let (res, _) = wr.write_all(batch).await;
                    if let Err(e) = res {
                        conn.fail(&e.to_string());
                        return;
                    }
                }
            });
        }
        {
            let conn = conn.clone();
            monoio::spawn(async move {
                let mut frames = crate::rpc_frames::FrameReader::new(rd);
                let why = loop {
                    let (h, mut rest) = match frames.next(None, None).await {
                        Ok(f) => f,
                        Err(e) => break e,
                    };
                    conn.frames_in.set(conn.frames_in.get() + 1);
                    // The payload is opened in place; the buffer becomes it.
                    let opened = session.borrow_mut().open(&h, &mut rest).map(|(fh, p)| (fh, p.len()));
                    let opened = opened.map(|(fh, n)| {
                        rest.truncate(n);
                        (fh, rest)
                    });
                    let (fh, payload) = match opened {
                        Ok(x) => x,
                        Err(e) => break format!("answer refused: {e}"),
                    };
                    if fh.kind == FrameKind::Request {
                        break "the node sent a request on a client connection".into();
                    }
                    // An answer to a call that gave up is dropped.
                    if let Some(r) = conn.pending.borrow_mut().remove(&fh.call) {
                        let _ = r.try_send(Ok((fh.kind, payload)));
                    }
                };
                conn.fail(&why);
            });
        }
        self.conns.borrow_mut().insert(peer.addr, conn.clone());
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_rpc::METHOD_PING;

    use crate::cluster::test_node as node;
    use crate::cluster::free_test_port as free_port;

    #[test]
    fn many_calls_in_flight_on_one_connection_errors_and_refusals() {
        let tmp = std::env::temp_dir().join(format!("tessera-pool-{}", std::process::id()));
        let (da, db) = (tmp.join("a"), tmp.join("b"));
        std::fs::create_dir_all(&da).unwrap();
        std::fs::create_dir_all(&db).unwrap();
        let secret = "the pool test's cluster secret";
        let a = node(&da, secret);
        let b = node(&db, secret);
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap();
        rt.block_on(async {
            let listener = a.take_rpc_listener_for_test();
            let server = monoio::spawn(crate::cluster_rpc::serve(a.clone(), listener, None));
            let pool = RpcPool::new(b.clone());
            let peer = a.identity.clone();
            let calls: Vec<_> = (0..200)
                .map(|_| {
                    let (pool, peer) = (pool.clone(), peer.clone());
                    monoio::spawn(async move { pool.call(&peer, METHOD_PING, Vec::new(), Duration::from_secs(10)).await })
                })
                .collect();
            for c in calls {
                let answer = c.await.expect("a PING in flight with 199 others");
                crate::cluster_rpc::check_ping_answer(&answer, &peer).unwrap();
            }
            assert_eq!(pool.open_connections(), 1, "one connection carried every call");
            // A method the node does not know: its error, and the
            // connection stays usable.
            let e = pool.call(&peer, 999, Vec::new(), Duration::from_secs(5)).await.unwrap_err();
            assert_eq!(e, RpcError::Remote("unknown method".into()));
            assert!(pool.call(&peer, METHOD_PING, Vec::new(), Duration::from_secs(5)).await.is_ok());
            // A call meant for another node at that address: the node there
            // refuses the hello (closes without a word).
            let mut other = peer.clone();
            other.id = [0xAB; 16];
            match pool.call(&other, METHOD_PING, Vec::new(), Duration::from_secs(5)).await {
                Err(RpcError::Connect(_)) => {}
                r => panic!("{r:?}"),
            }
            assert_eq!(a.rpc_refused.load(std::sync::atomic::Ordering::Relaxed), 1);
            // Nobody listens at the address: the call fails at once.
            let mut gone = peer.clone();
            gone.addr = free_port();
            let started = std::time::Instant::now();
            assert!(matches!(pool.call(&gone, METHOD_PING, Vec::new(), Duration::from_secs(5)).await, Err(RpcError::Connect(_))));
            assert!(started.elapsed() < Duration::from_secs(5), "a refused connect waited for the deadline");
            drop(server);
        });
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
