//! Inter-node RPC on the node (issue 12): TCP on the cluster address
//! (the same port number as gossip's UDP), served and called by reactor 0,
//! framed and authenticated by `tessera_cluster::rpc`.
//!
//! Methods: `PING` (the peer's id, clock and alive count), called every
//! `PING_EVERY` on every alive member, which gives the admin API a
//! per-member RPC status and round-trip time; the Raft methods
//! (`cluster_raft`), handed to the Raft thread; and the four shard
//! methods of remote lane members (`holder::wire`), served by the node's
//! `ShardHost`, which also serves DeleteBucket's drain check
//! (`buckets::cluster::METHOD_BUCKET_DRAIN`, 40) and the reads of a copy
//! source another node asks for (`copy_remote`, 41 and 42). A connection's calls run concurrently (at most
//! `MAX_SERVED_IN_FLIGHT`), answered as they finish. Calls go through
//! the pool (`cluster_pool`): one multiplexed connection per peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::cell::RefCell;

use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use tessera_cluster::rpc::{FrameHeader, FrameKind, Hello, Role, Session, FRAME_HEADER_BYTES, HELLO_BYTES, NONCE_BYTES, FEATURES};
use tessera_cluster::seal::ClusterKey;
use tessera_cluster::NodeIdentity;

use crate::cluster::{now_ms, ClusterNode, RpcStatus};
use crate::holder::host::ShardHost;
use crate::holder::wire;

pub const METHOD_PING: u16 = 1;
/// How often every alive member is pinged over RPC.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// A hello must arrive within this; a call's whole exchange too.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// An RPC connection idle this long is closed by the server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Most calls of one connection running at once on the server.
const MAX_SERVED_IN_FLIGHT: usize = 64;
/// Most RPC connections served at once (beyond it, new ones are closed).
const MAX_CONNECTIONS: usize = 512;

fn nonce() -> [u8; NONCE_BYTES] {
    let mut n = [0u8; NONCE_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n).expect("system randomness");
    n
}

async fn read_exact_timeout(s: &mut TcpStream, n: usize, t: Duration) -> Result<Vec<u8>, String> {
    match monoio::time::timeout(t, s.read_exact(vec![0u8; n])).await {
        Ok((Ok(_), buf)) => Ok(buf),
        Ok((Err(e), _)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn write_timeout(s: &mut TcpStream, b: Vec<u8>, t: Duration) -> Result<(), String> {
    match monoio::time::timeout(t, s.write_all(b)).await {
        Ok((Ok(_), _)) => Ok(()),
        Ok((Err(e), _)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Accepts RPC connections for ever (reactor 0). `host` serves the
/// shard methods of remote lane members (`holder`); without one they are
/// answered "unknown method".
pub async fn serve(node: Arc<ClusterNode>, listener: TcpListener, host: Option<Rc<dyn ShardHost>>) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of descriptors or the like: never spin.
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if open.get() >= MAX_CONNECTIONS {
            node.rpc_refused.fetch_add(1, Relaxed);
            continue;
        }
        open.set(open.get() + 1);
        // Answers are often small frames (a commit's acknowledgement) sent
        // while the connection carries other calls: not held back by Nagle,
        // as the calling side's connections already are (`connect`).
        let _ = stream.set_nodelay(true);
        let (node, open, host) = (node.clone(), open.clone(), host.clone());
        monoio::spawn(async move {
            if let Err(e) = serve_conn(&node, stream, host).await {
                tracing::debug!(%peer, error = %e, "cluster rpc: connection closed");
            }
            open.set(open.get() - 1);
        });
    }
}

/// One answer on its way to the connection's writer.
struct Answer {
    /// When its request was read (`rpc_metrics`' served time).
    read_at: Instant,
    kind: FrameKind,
    method: u16,
    call: u64,
    body: Vec<u8>,
}

async fn serve_conn(node: &Arc<ClusterNode>, mut s: TcpStream, host: Option<Rc<dyn ShardHost>>) -> Result<(), String> {
    let key = node.key();
    let b = read_exact_timeout(&mut s, HELLO_BYTES, HANDSHAKE_TIMEOUT).await?;
    let client = match Hello::decode(&key, &b, Role::Client, None, now_ms()) {
        Ok(h) if h.to == [0; 16] || h.to == node.identity.id => h,
        Ok(_) => {
            node.rpc_refused.fetch_add(1, Relaxed);
            return Err("a hello meant for another node".into());
        }
        Err(e) => {
            node.rpc_refused.fetch_add(1, Relaxed);
            return Err(format!("hello refused: {e}"));
        }
    };
    let mine = Hello { role: Role::Server, sent_ms: now_ms(), from: node.identity.id, to: client.from, nonce: nonce(), features: FEATURES };
    write_timeout(&mut s, mine.encode(&key, Some(&client.nonce)).to_vec(), HANDSHAKE_TIMEOUT).await?;
    let session = Rc::new(RefCell::new(Session::new(&key, Role::Server, &client, &mine)));
    let caller = client.from;
    let (rd, mut wr) = s.into_split();
    // Calls run concurrently (a slow disk read does not hold up a PING);
    // answers are sealed by one writer in the order they are sent (frame
    // numbers are part of the tag), each naming its call.
    let (tx, rx) = async_channel::bounded::<Answer>(MAX_SERVED_IN_FLIGHT);
    let writer = {
        let (session, node) = (session.clone(), node.clone());
        monoio::spawn(async move {
            let mut out = crate::rpc_frames::Coalescer::new(rx);
            let seal = |a: Answer| {
                node.rpc_times.served.record(a.method, a.read_at.elapsed());
                session.borrow_mut().seal(a.kind, a.method, a.call, 0, &a.body)
            };
            while let Some(batch) = out.next(seal).await {
                match monoio::time::timeout(CALL_TIMEOUT, wr.write_all(batch)).await {
                    Ok((Ok(_), _)) => {}
                    _ => return,
                }
            }
        })
    };
    let (tokens_tx, tokens_rx) = async_channel::bounded::<()>(MAX_SERVED_IN_FLIGHT);
    for _ in 0..MAX_SERVED_IN_FLIGHT {
        let _ = tokens_tx.try_send(());
    }
    let mut frames = crate::rpc_frames::FrameReader::new(rd);
    let r = loop {
        let (h, mut rest) = match frames.next(Some(IDLE_TIMEOUT), Some(CALL_TIMEOUT)).await {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        let opened = session.borrow_mut().open(&h, &mut rest).map(|(fh, p)| (fh, p.len()));
        let (fh, len) = match opened {
            Ok(x) => x,
            Err(e) => {
                node.rpc_refused.fetch_add(1, Relaxed);
                break Err(format!("frame refused: {e}"));
            }
        };
        if fh.kind != FrameKind::Request {
            break Err("a frame other than a request".into());
        }
        node.rpc_served.fetch_add(1, Relaxed);
        let mut payload = rest;
        payload.truncate(len);
        let (method, call) = (fh.method, fh.call);
        let read_at = Instant::now();
        let answer = move |kind, body| Answer { read_at, kind, method, call, body };
        match (method, &host) {
            (METHOD_PING, _) if payload.is_empty() => {
                let _ = tx.send(answer(FrameKind::Response, ping_answer(node))).await;
            }
            (METHOD_PING, _) => {
                let _ = tx.send(answer(FrameKind::Error, b"PING takes no payload".to_vec())).await;
            }
            // Raft's messages go to the Raft thread (`cluster_raft`), each
            // in a task of its own (an append waits for the log's fsync).
            (m, _) if crate::cluster_raft::is_raft_method(m) => match node.raft() {
                Some(r) => {
                    if tokens_rx.recv().await.is_err() {
                        break Ok(());
                    }
                    let (r, tx, tokens) = (r.clone(), tx.clone(), tokens_tx.clone());
                    monoio::spawn(async move {
                        let a = match r.serve(m, payload).await {
                            Ok(b) => answer(FrameKind::Response, b),
                            Err(e) => answer(FrameKind::Error, e.into_bytes()),
                        };
                        let _ = tx.send(a).await;
                        let _ = tokens.try_send(());
                    });
                }
                None => {
                    let _ = tx.send(answer(FrameKind::Error, b"no raft on this node".to_vec())).await;
                }
            },
            (wire::METHOD_SHARD_WRITE..=wire::METHOD_SHARD_READ | wire::METHOD_SHARD_RANGE, Some(host)) => {
                // At most MAX_SERVED_IN_FLIGHT calls run per connection;
                // past it this reader waits, and so does the caller.
                if tokens_rx.recv().await.is_err() {
                    break Ok(());
                }
                let (host, tx, tokens) = (host.clone(), tx.clone(), tokens_tx.clone());
                monoio::spawn(async move {
                    let a = match crate::holder::host::serve_call(&host, caller, method, &payload).await {
                        Ok(b) => answer(FrameKind::Response, b),
                        Err(b) => answer(FrameKind::Error, b),
                    };
                    let _ = tx.send(a).await;
                    let _ = tokens.try_send(());
                });
            }
            (
                crate::fanout::METHOD_NODE_RANGE
                | crate::fanout::METHOD_NODE_DELETE
                | crate::buckets::cluster::METHOD_BUCKET_DRAIN
                | crate::takeover::METHOD_NODE_APPLIED
                | crate::copy_remote::METHOD_COPY_HEAD
                | crate::copy_remote::METHOD_COPY_READ
                | crate::handover::METHOD_MOVE_EXPORT
                | crate::handover::METHOD_MOVE_READ
                | crate::handover::METHOD_MOVE_DROP
                | crate::handover::METHOD_MOVE_LIST
                | crate::handover::METHOD_MOVE_QUEUE,
                Some(host),
            ) => {
                if tokens_rx.recv().await.is_err() {
                    break Ok(());
                }
                let (host, tx, tokens) = (host.clone(), tx.clone(), tokens_tx.clone());
                monoio::spawn(async move {
                    let a = match host.node_call(method, payload).await {
                        Ok(b) => answer(FrameKind::Response, b),
                        Err(b) => answer(FrameKind::Error, b),
                    };
                    let _ = tx.send(a).await;
                    let _ = tokens.try_send(());
                });
            }
            _ => {
                let _ = tx.send(answer(FrameKind::Error, b"unknown method".to_vec())).await;
            }
        }
    };
    // Calls still running finish and answer; the writer ends with them.
    drop(tx);
    let _ = writer.await;
    r
}

fn ping_answer(node: &ClusterNode) -> Vec<u8> {
    let alive = node.members().iter().filter(|m| m.state == tessera_cluster::MemberState::Alive).count() as u32;
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&node.identity.id);
    b.extend_from_slice(&now_ms().to_le_bytes());
    b.extend_from_slice(&alive.to_le_bytes());
    b
}

/// Opens an RPC connection to `peer`: connect, the handshake (refusing a
/// node other than the one meant).
pub(crate) async fn connect(node: &ClusterNode, key: &ClusterKey, peer: &NodeIdentity) -> Result<(TcpStream, Session), String> {
    let connect = TcpStream::connect(peer.addr);
    let mut s = match monoio::time::timeout(CALL_TIMEOUT, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                node.note_refused(&peer.id);
            }
            return Err(format!("connect: {e}"));
        }
        Err(_) => return Err("connect: timed out".into()),
    };
    let _ = s.set_nodelay(true);
    let mine = Hello { role: Role::Client, sent_ms: now_ms(), from: node.identity.id, to: peer.id, nonce: nonce(), features: FEATURES };
    write_timeout(&mut s, mine.encode(key, None).to_vec(), HANDSHAKE_TIMEOUT).await?;
    let b = read_exact_timeout(&mut s, HELLO_BYTES, HANDSHAKE_TIMEOUT).await?;
    let theirs = Hello::decode(key, &b, Role::Server, Some(&mine.nonce), now_ms()).map_err(|e| format!("hello refused: {e}"))?;
    if theirs.from != peer.id || theirs.to != node.identity.id {
        return Err("another node answered at that address".into());
    }
    Ok((s, Session::new(key, Role::Client, &mine, &theirs)))
}

/// Calls PING on `peer` over a fresh connection: the call's round trip.
/// (The ping loop uses the pool; this is the one-shot form.)
pub async fn ping(node: &ClusterNode, key: &ClusterKey, peer: &NodeIdentity) -> Result<Duration, String> {
    let (mut s, mut session) = connect(node, key, peer).await?;
    let started = Instant::now();
    let call = 1;
    write_timeout(&mut s, session.seal(FrameKind::Request, METHOD_PING, call, CALL_TIMEOUT.as_millis() as u32, &[]), CALL_TIMEOUT).await?;
    let h = read_exact_timeout(&mut s, FRAME_HEADER_BYTES, CALL_TIMEOUT).await?;
    let h: [u8; FRAME_HEADER_BYTES] = h.try_into().expect("header length");
    let fh = FrameHeader::decode(&h).map_err(|e| e.to_string())?;
    let mut rest = read_exact_timeout(&mut s, fh.rest_len(), CALL_TIMEOUT).await?;
    let (fh, payload) = session.open(&h, &mut rest).map_err(|e| format!("answer refused: {e}"))?;
    let rtt = started.elapsed();
    if fh.call != call || fh.method != METHOD_PING {
        return Err("an answer to another call".into());
    }
    if fh.kind != FrameKind::Response {
        return Err(format!("error: {}", String::from_utf8_lossy(payload)));
    }
    check_ping_answer(payload, peer)?;
    Ok(rtt)
}

pub(crate) fn check_ping_answer(payload: &[u8], peer: &NodeIdentity) -> Result<(), String> {
    if payload.len() != 28 || payload[..16] != peer.id {
        return Err("a malformed PING answer".into());
    }
    Ok(())
}

/// Pings every alive member every `PING_EVERY`, all at once over the
/// pooled connections, and records the outcome.
pub async fn ping_loop(node: Arc<ClusterNode>, shutdown: async_channel::Receiver<()>) {
    let pool = crate::cluster_pool::RpcPool::new(node.clone());
    loop {
        monoio::time::sleep(PING_EVERY).await;
        if shutdown.is_closed() {
            return;
        }
        let peers: Vec<NodeIdentity> = node
            .members()
            .into_iter()
            .filter(|m| !m.local && m.state == tessera_cluster::MemberState::Alive)
            .map(|m| m.identity)
            .collect();
        let calls: Vec<_> = peers
            .into_iter()
            .map(|p| {
                let pool = pool.clone();
                monoio::spawn(async move {
                    let started = Instant::now();
                    let r = pool
                        .call(&p, METHOD_PING, Vec::new(), CALL_TIMEOUT)
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|answer| check_ping_answer(&answer, &p))
                        .map(|()| started.elapsed());
                    (p.addr, r)
                })
            })
            .collect();
        let mut results: HashMap<SocketAddr, RpcStatus> = HashMap::new();
        for c in calls {
            let (addr, r) = c.await;
            if r.is_err() {
                node.rpc_failed.fetch_add(1, Relaxed);
            }
            results.insert(
                addr,
                RpcStatus { at_ms: now_ms(), rtt_us: r.as_ref().ok().map(|d| d.as_micros() as u64), error: r.err() },
            );
        }
        node.set_rpc_status(results);
    }
}
