//! Forwarding an object request to the node that owns its key (issue 12).
//!
//! In a cluster every node answers S3 for every bucket, but a key's objects
//! live on its partition's owner (`owners`): transactions run as closures
//! on the owner's cores, so an object request is not split into remote
//! calls but forwarded whole. The receiving node proxies the request's
//! bytes to the owner's S3 listener and the response's bytes back:
//!
//! - The head is written again from the parsed one (method, target and
//!   headers as sent, in order), so the owner verifies the client's own
//!   signature; a presigned URL, a streaming (aws-chunked) body or a
//!   trailing checksum pass through untouched. The body is copied as it
//!   comes, its framing (length or chunked) followed only to find its end.
//! - `Expect: 100-continue` is honoured end to end: the body is sent only
//!   after the owner's `100 Continue`, which is relayed to the client; a
//!   refusal instead (403, 404...) is relayed and the body never read.
//! - One header is added, `x-tessera-forwarded: 1;VERSION;CLIENT-IP;SECS;MAC`:
//!   the layout version the forwarder used, the client's address (for
//!   `aws:SourceIp` conditions and access logs), the time, and an
//!   HMAC-SHA256 with the cluster secret's forward key over those and the
//!   request line and Host. The owner trusts the client address only when
//!   the MAC and the time (±5 min) check, and only in the last such header
//!   (ours is appended after any the client sent and signed, which pass
//!   through untouched and are never trusted). A forwarded request is never
//!   forwarded again: an owner that does not think it owns the key (its
//!   layout is behind or ahead) answers 503 and the client retries.
//! - Requests reuse idle connections to the owner (a pool per reactor and
//!   owner, each used again within 20 s and after a non-blocking peek
//!   shows it open). A reused connection found closed before any response
//!   byte is retried once on a fresh one for a bodyless request; a request
//!   with a body is never sent twice (the owner closing in the instant
//!   between the peek and the send fails it with a 503).
//! - An owner that cannot be reached gets the client a 503
//!   `ServiceUnavailable` (a dead owner's partitions are unavailable until
//!   takeover is built). Once response bytes were relayed, a failure can
//!   only close the client's connection.
//! - Plain HTTP between nodes: a cluster refuses `--tls-cert` at start.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use tessera_proto::http::{BodyFraming, RequestHead};
use tessera_proto::router::{self, Op};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::cluster::ClusterNode;
use crate::conn::{Conn, ConnError, IO_TIMEOUT};
use crate::server::Ctx;

pub const HEADER: &str = "x-tessera-forwarded";
/// How far a forwarded request's clock may be from ours.
const MAX_SKEW_SECS: u64 = 300;
/// Connecting to an owner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the owner may take to start answering (a large PUT's commit
/// included), and the longest stall of any read or write after that.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest response head accepted from an owner.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Idle connections kept per owner on a reactor.
const POOL_PER_OWNER: usize = 32;
const COPY_BYTES: usize = 256 * 1024;

/// What to do with a request, decided from its head.
pub enum Decision {
    /// Serve it here; the address is the client's (a verified forward
    /// carries the original client's), and whether the request came
    /// through a verified forward (its last forward header is ours to drop).
    /// The `u64` is the configuration index the forwarder's bucket
    /// registry had published (0 when not forwarded): the owner serves the
    /// request once its own registry is at least that new, so a bucket
    /// setting a client changed through the forwarder applies here too.
    Local(IpAddr, bool, u64),
    /// Proxy it to this owner.
    Forward { to: SocketAddr, version: u64 },
    /// Refuse it (a forwarded request this node does not own).
    Refuse(S3Error),
}

/// Where the request's key lives; `Local` for everything that is not an
/// object request and for a node outside a cluster. An object request
/// reaching a cluster node that has no layout yet (it is starting, or has
/// not applied the configuration) is refused with 503: where its key
/// lives is unknown, and storing it here could put it on the wrong node.
///
/// An object request this node serves gets `busy` set: its partition's
/// count of requests in service, taken before ownership is checked and
/// held until the request is answered (`handover` waits for it).
///
/// A request of this node's own keys that finds the node's configuration
/// lease lapsed waits a little for it (`takeover::lease_back`) and is
/// decided again.
pub async fn decide(
    node: &std::sync::Arc<ClusterNode>,
    head: &RequestHead,
    peer: IpAddr,
    vhost_domains: &[String],
    busy: &mut Option<crate::handover::Busy>,
) -> Decision {
    loop {
        let mut lease_lapsed = false;
        let decision = decide_now(node, head, peer, vhost_domains, busy, &mut lease_lapsed);
        if !lease_lapsed || !crate::takeover::lease_back(node).await {
            return decision;
        }
    }
}

/// `decide` at this moment; `lease_lapsed` set beside a refusal that the
/// lease's return could turn.
fn decide_now(
    node: &std::sync::Arc<ClusterNode>,
    head: &RequestHead,
    peer: IpAddr,
    vhost_domains: &[String],
    busy: &mut Option<crate::handover::Busy>,
    lease_lapsed: &mut bool,
) -> Decision {
    // A forwarder appends its header after any the client sent (and signed).
    let forwarded = head.headers.get_all(HEADER).last().and_then(|h| verify(node, head, h));
    let local = Decision::Local(forwarded.map_or(peer, |f| f.0), forwarded.is_some(), forwarded.map_or(0, |f| f.1));
    let Ok(routed) = router::route(head.method, &head.path, &head.query, head.headers.get("host"), vhost_domains) else {
        return local;
    };
    let (Some(bucket), Some(key)) = (routed.bucket.as_deref(), routed.key.as_deref()) else {
        return local;
    };
    if routed.op == Op::Options {
        return local;
    }
    let partition = crate::layout::partition_of(bucket, key);
    // Counted before the layout is read: a node that reads a newer layout
    // and then finds the count at zero knows no request admitted under the
    // older one is still in service.
    let guard = crate::handover::Busy::enter(node, partition);
    let Some(owners) = node.owners.load_full() else {
        return Decision::Refuse(S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "This node has not loaded the cluster's placement yet; please retry.",
        ));
    };
    let Some(owner) = owners.owner_of(partition) else {
        return local;
    };
    if owner.id == node.id_str() {
        if !crate::cluster_lanes::ready(node, owners.layout.version) {
            return Decision::Refuse(S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "This node is joining its storage to the cluster's placement; please retry.",
            ));
        }
        let lane_owner = owners.layout_owner_of(partition).map_or(owner.id.as_str(), |o| o.id.as_str());
        if !crate::takeover::ready(node, &owners, lane_owner) {
            let e = S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "This node cannot confirm it still serves this key (no configuration lease, or it is taking over a node's keys); please retry.",
            );
            *lease_lapsed = !crate::takeover::lease_held(node);
            return Decision::Refuse(e);
        }
        let mut guard = guard;
        guard.settle(&owners, node.id_str(), partition);
        *busy = Some(guard);
        return local;
    }
    if forwarded.is_some() {
        return Decision::Refuse(S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "The cluster's placement is changing; please retry.",
        ));
    }
    Decision::Forward { to: owner.s3, version: owners.version }
}

/// Whether this node stores `(bucket, key)`: true outside a cluster, else
/// when it owns the key's partition (false before it has a layout).
pub fn owned_here(ctx: &Ctx, bucket: &str, key: &str) -> bool {
    let Some(node) = &ctx.shared.cluster else { return true };
    let Some(owners) = node.owners.load_full() else { return false };
    owners.owner_of(crate::layout::partition_of(bucket, key)).is_none_or(|o| o.id == node.id_hex())
}

fn mac_input(head: &RequestHead, version: u64, client: &str, secs: u64, config: Option<u64>) -> Vec<u8> {
    // Format 1 (no configuration index) is still read, from a peer of the
    // build before; format 2 is written.
    let fmt = match config {
        None => "1".to_string(),
        Some(c) => format!("2|{c}"),
    };
    format!(
        "{fmt}|{version}|{client}|{secs}|{}|{}|{}|{}",
        head.method_raw,
        head.path,
        head.query,
        head.headers.get("host").unwrap_or("")
    )
    .into_bytes()
}

/// The client address and the forwarder's configuration index a valid
/// forward header carries.
fn verify(node: &ClusterNode, head: &RequestHead, h: &str) -> Option<(IpAddr, u64)> {
    let parts: Vec<&str> = h.split(';').collect();
    let (version, client, secs, config, mac) = match parts[..] {
        ["1", version, client, secs, mac] => (version, client, secs, None, mac),
        ["2", version, client, secs, config, mac] => (version, client, secs, Some(config.parse::<u64>().ok()?), mac),
        _ => return None,
    };
    let version: u64 = version.parse().ok()?;
    let secs: u64 = secs.parse().ok()?;
    let now = tessera_proto::time::now_unix_secs().max(0) as u64;
    if now.abs_diff(secs) > MAX_SKEW_SECS {
        return None;
    }
    let tag = hex::decode(mac).ok()?;
    if !node.key_ref().verify_forward(&mac_input(head, version, client, secs, config), &tag) {
        return None;
    }
    Some((client.parse().ok()?, config.unwrap_or(0)))
}

/// The head as the owner receives it: the client's, without any forward
/// header of its own, plus ours.
fn upstream_head(node: &ClusterNode, head: &RequestHead, client: IpAddr, version: u64, config: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + head.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>());
    out.extend_from_slice(head.method_raw.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    if !head.query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(head.query.as_bytes());
    }
    out.extend_from_slice(if head.minor_version == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    for (n, v) in head.headers.iter() {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let client = client.to_string();
    let secs = tessera_proto::time::now_unix_secs().max(0) as u64;
    let tag = node.key_ref().sign_forward(&mac_input(head, version, &client, secs, Some(config)));
    out.extend_from_slice(format!("{HEADER}: 2;{version};{client};{secs};{config};{}\r\n\r\n", hex::encode(tag)).as_bytes());
    out
}

thread_local! {
    /// Idle keep-alive connections to owners, per reactor, with the time
    /// each was given back.
    static POOL: RefCell<HashMap<SocketAddr, Vec<(TcpStream, std::time::Instant)>>> = RefCell::new(HashMap::new());
}

/// An idle connection is used again only this long (owners close idle
/// connections after `conn::IDLE_TIMEOUT`).
const POOL_IDLE: Duration = Duration::from_secs(20);

/// Whether an idle connection still looks open: nothing to read and no
/// end of stream (a non-blocking peek).
fn looks_open(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: a valid fd and a 1-byte buffer we own.
    let n = unsafe { libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// An idle connection to `to` that is fresh and still open.
fn pooled(to: SocketAddr) -> Option<TcpStream> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.get_mut(&to)?;
        while let Some((s, since)) = idle.pop() {
            if since.elapsed() < POOL_IDLE && looks_open(&s) {
                return Some(s);
            }
        }
        None
    })
}

fn give_back(to: SocketAddr, s: TcpStream) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.entry(to).or_default();
        if idle.len() < POOL_PER_OWNER {
            idle.push((s, std::time::Instant::now()));
        }
    });
}

async fn connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    match monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(r) => {
            let s = r?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// How a forward ended, for the connection loop.
pub struct Outcome {
    /// The status relayed (or answered, when the owner could not be reached).
    pub status: u16,
    /// Whether the client's connection can carry another request.
    pub keep: bool,
    /// Whether the client's request body was read to its end.
    pub body_done: bool,
    /// An error to answer ourselves (nothing relayed yet).
    pub error: Option<S3Error>,
}

fn unreachable_owner(to: SocketAddr, why: impl std::fmt::Display) -> S3Error {
    tracing::warn!(owner = %to, "forward: {why}");
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, "The node that owns this key cannot be reached; please retry.")
}

/// Proxies one request to `to` and its response back (see the module doc).
pub async fn proxy(
    node: &ClusterNode,
    conn: &mut Conn,
    head: &RequestHead,
    client: IpAddr,
    to: SocketAddr,
    version: u64,
    config: u64,
    extra: &[(&str, &str)],
) -> Outcome {
    let framing = match head.framing() {
        Ok(f) => f,
        Err(e) => return Outcome { status: 400, keep: false, body_done: false, error: Some(e.into()) },
    };
    let bodyless = framing == BodyFraming::Length(0);
    let head_bytes = upstream_head(node, head, client, version, config);
    let watch = Watch::new(node, to);
    // An idle connection is checked before use; one the owner closed in
    // the instant after is retried once on a fresh one, for a bodyless
    // request only (a body already read cannot be sent again).
    let mut reused = if watch.down_at_start { None } else { pooled(to) };
    loop {
        let was_reused = reused.is_some();
        let mut up = match reused.take() {
            Some(s) => s,
            None => match connect(to).await {
                Ok(s) => s,
                Err(e) => {
                    return Outcome { status: 503, keep: false, body_done: bodyless, error: Some(unreachable_owner(to, e)) }
                }
            },
        };
        match exchange(watch, conn, &mut up, head, framing, head_bytes.clone(), extra).await {
            Ok(x) => {
                if x.upstream_reusable {
                    give_back(to, up);
                }
                let keep = x.body_done && head.keep_alive() && !x.close;
                return Outcome { status: x.status, keep, body_done: x.body_done, error: None };
            }
            Err(Failed::BeforeResponse(e)) if was_reused && bodyless => {
                tracing::debug!(owner = %to, "forward: a pooled connection was closed ({e}); retrying on a new one");
                continue;
            }
            Err(Failed::BeforeResponse(e)) => {
                return Outcome { status: 503, keep: false, body_done: bodyless, error: Some(unreachable_owner(to, e)) }
            }
            Err(Failed::Client(e)) => {
                tracing::debug!("forward: the client went away: {e}");
                return Outcome { status: 499, keep: false, body_done: false, error: None };
            }
            Err(Failed::Relaying(e)) => {
                tracing::warn!(owner = %to, "forward: failed while relaying the response: {e}");
                return Outcome { status: 502, keep: false, body_done: false, error: None };
            }
        }
    }
}

enum Failed {
    /// The owner failed before any response byte reached the client.
    BeforeResponse(String),
    /// The client's side failed (nothing more can be sent to it).
    Client(String),
    /// The owner failed after response bytes were relayed.
    Relaying(String),
}

struct Exchanged {
    status: u16,
    body_done: bool,
    /// The response said `Connection: close` (or ended with the connection).
    close: bool,
    upstream_reusable: bool,
}

/// The owner a forward talks to, as the gossip knows it: a step with it
/// (a write, a read) is given up once the gossip comes to hold it down,
/// instead of at `RESPONSE_TIMEOUT`: an owner cut off by the network
/// leaves the connection open and silent. Only the change counts: an
/// owner held down when the forward starts may be a node that restarted
/// before the gossip knew its new incarnation, answering; such a forward
/// takes a new connection (its connect fails within `CONNECT_TIMEOUT`
/// when the owner is really gone) and is not watched.
#[derive(Clone, Copy)]
struct Watch<'a> {
    node: &'a ClusterNode,
    /// `None`: not watched (the address names no registered node, or the
    /// gossip held it down already).
    owner: Option<[u8; 16]>,
    /// The gossip held the owner down when the forward started.
    down_at_start: bool,
}

impl Watch<'_> {
    fn new(node: &ClusterNode, to: SocketAddr) -> Watch<'_> {
        let owner: Option<[u8; 16]> = node.owners.load_full().and_then(|o| {
            let r = o.nodes.values().find(|r| r.s3 == to)?;
            hex::decode(&r.id).ok()?.try_into().ok()
        });
        let down_at_start = owner.is_some_and(|id| node.held_down(&id));
        Watch { node, owner: owner.filter(|_| !down_at_start), down_at_start }
    }

    /// `f`, bounded by `RESPONSE_TIMEOUT` and by the owner's being held down.
    async fn bounded<T>(self, f: impl std::future::Future<Output = T>, what: &str) -> Result<T, String> {
        use futures_util::future::{select, Either};
        let down = crate::cluster_pool::held_down(self.node, self.owner.unwrap_or_default(), self.owner.is_some());
        match select(std::pin::pin!(monoio::time::timeout(RESPONSE_TIMEOUT, f)), std::pin::pin!(down)).await {
            Either::Left((Ok(v), _)) => Ok(v),
            Either::Left((Err(_), _)) => Err(format!("timed out {what}")),
            Either::Right(_) => Err(format!("the gossip holds the owner down ({what})")),
        }
    }
}

async fn up_write(w: Watch<'_>, up: &mut TcpStream, data: Vec<u8>) -> Result<Vec<u8>, String> {
    match w.bounded(up.write_all(data), "writing to the owner").await? {
        (Ok(_), b) => Ok(b),
        (Err(e), _) => Err(e.to_string()),
    }
}

/// Reads more of the owner's answer into `buf`; 0 at its end.
async fn up_read(w: Watch<'_>, up: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(COPY_BYTES);
    }
    let b = std::mem::take(buf);
    let (len, cap) = (b.len(), b.capacity());
    use monoio::buf::IoBufMut;
    let read = up.read(b.slice_mut(len..cap));
    let (r, slice) = w.bounded(read, "waiting for the owner").await?;
    *buf = slice.into_inner();
    r.map_err(|e| e.to_string())
}

/// A response head read from the owner.
struct UpHead {
    status: u16,
    /// Bytes of the head (relayed as they are).
    len: usize,
    framing: RespFraming,
    close: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RespFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads a response head into `buf` (which may already hold bytes).
async fn read_up_head(w: Watch<'_>, up: &mut TcpStream, buf: &mut Vec<u8>, request_is_head: bool) -> Result<UpHead, String> {
    loop {
        if !buf.is_empty() {
            if let Some(h) = parse_up_head(buf, request_is_head)? {
                return Ok(h);
            }
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err("the owner's response head is too large".into());
        }
        if up_read(w, up, buf).await? == 0 {
            return Err("the owner closed the connection before answering".into());
        }
    }
}

fn parse_up_head(buf: &[u8], request_is_head: bool) -> Result<Option<UpHead>, String> {
    let mut slots = [httparse::EMPTY_HEADER; 96];
    let mut r = httparse::Response::new(&mut slots);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a malformed response from the owner: {e}")),
    };
    let status = r.code.ok_or("a response without a status")?;
    let mut length = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    for h in r.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(v.trim().parse::<u64>().map_err(|_| "a bad content-length from the owner")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.trim().eq_ignore_ascii_case("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = v.to_ascii_lowercase();
            close = v.contains("close") || (r.version == Some(0) && !v.contains("keep-alive"));
        }
    }
    let framing = if request_is_head || (100..200).contains(&status) || status == 204 || status == 304 {
        RespFraming::None
    } else if chunked {
        RespFraming::Chunked
    } else if let Some(l) = length {
        RespFraming::Length(l)
    } else {
        RespFraming::UntilClose
    };
    Ok(Some(UpHead { status, len: n, framing, close: close || framing == RespFraming::UntilClose }))
}

async fn exchange(
    w: Watch<'_>,
    conn: &mut Conn,
    up: &mut TcpStream,
    head: &RequestHead,
    framing: BodyFraming,
    head_bytes: Vec<u8>,
    extra: &[(&str, &str)],
) -> Result<Exchanged, Failed> {
    up_write(w, up, head_bytes).await.map_err(Failed::BeforeResponse)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let request_is_head = head.method == http::Method::Head;
    let has_body = framing != BodyFraming::Length(0);
    let mut body_done = !has_body;
    let mut early: Option<UpHead> = None;
    if has_body && head.expects_continue() {
        // The owner decides first; its 100 goes to the client, which then sends.
        let h = read_up_head(w, up, &mut buf, request_is_head).await.map_err(Failed::BeforeResponse)?;
        if h.status == 100 {
            buf.drain(..h.len);
            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await.map_err(|e| Failed::Client(e.to_string()))?;
        } else {
            early = Some(h);
        }
    }
    if has_body && early.is_none() {
        match send_body(w, conn, up, framing).await {
            Ok(()) => body_done = true,
            Err(SendFailed::Client(e)) => return Err(Failed::Client(e)),
            // The owner stopped reading: it may have answered early (an
            // error); relay that, the client's connection then closes.
            Err(SendFailed::Owner(e)) => tracing::debug!("forward: the owner stopped reading the body: {e}"),
        }
    }
    let h = match early {
        Some(h) => h,
        None => loop {
            let h = read_up_head(w, up, &mut buf, request_is_head).await.map_err(Failed::BeforeResponse)?;
            if h.status == 100 {
                // An unasked 100 (or one after the body): not for the client.
                buf.drain(..h.len);
                continue;
            }
            break h;
        },
    };
    let status = h.status;
    // Relay the head and whatever body bytes came with it, then the rest.
    let mut relayed_end = false;
    let mut scan = Scan::new(h.framing);
    let head_len = h.len;
    let first = buf.split_off(0);
    let body_part = &first[head_len..];
    let (take, end) = scan.feed(body_part).map_err(Failed::Relaying)?;
    if take < body_part.len() {
        return Err(Failed::Relaying("the owner sent bytes past its response".into()));
    }
    relayed_end |= end;
    let first = if extra.is_empty() || head_len < 4 || &first[head_len - 4..head_len] != b"\r\n\r\n" {
        first
    } else {
        // The relayed head with `extra` headers before its blank line.
        let mut out = Vec::with_capacity(first.len() + 256);
        out.extend_from_slice(&first[..head_len - 2]);
        for (k, v) in extra {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(&first[head_len - 2..]);
        out
    };
    conn.write_all(first).await.map_err(|e| Failed::Client(e.to_string()))?;
    while !relayed_end {
        let mut chunk = Vec::with_capacity(COPY_BYTES);
        let n = up_read(w, up, &mut chunk).await.map_err(Failed::Relaying)?;
        if n == 0 {
            if scan.framing == RespFraming::UntilClose {
                break;
            }
            return Err(Failed::Relaying("the owner closed the connection mid-response".into()));
        }
        let (take, end) = scan.feed(&chunk).map_err(Failed::Relaying)?;
        if take < chunk.len() {
            return Err(Failed::Relaying("the owner sent bytes past its response".into()));
        }
        relayed_end = end;
        conn.write_all(chunk).await.map_err(|e| Failed::Client(e.to_string()))?;
    }
    let close = h.close;
    Ok(Exchanged { status, body_done, close, upstream_reusable: !close && body_done && relayed_end })
}

enum SendFailed {
    Client(String),
    Owner(String),
}

/// Copies the client's request body to the owner, following its framing
/// to its end.
async fn send_body(w: Watch<'_>, conn: &mut Conn, up: &mut TcpStream, framing: BodyFraming) -> Result<(), SendFailed> {
    let mut scan = Scan::new(match framing {
        BodyFraming::Length(n) => RespFraming::Length(n),
        BodyFraming::Chunked => RespFraming::Chunked,
    });
    loop {
        if conn.pending().is_empty() {
            match conn.fill(IO_TIMEOUT).await {
                Ok(_) => {}
                Err(ConnError::Closed) => return Err(SendFailed::Client("closed mid-body".into())),
                Err(e) => return Err(SendFailed::Client(e.to_string())),
            }
        }
        let (take, end) = scan.feed(conn.pending()).map_err(SendFailed::Client)?;
        let piece = conn.pending()[..take].to_vec();
        conn.consume(take);
        up_write(w, up, piece).await.map_err(SendFailed::Owner)?;
        if end {
            return Ok(());
        }
    }
}

/// Finds the end of a message body in a byte stream without decoding it.
struct Scan {
    framing: RespFraming,
    state: Chunk,
}

#[derive(Clone, Copy, Debug)]
enum Chunk {
    Size { value: u64, digits: u8, ext: bool },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
    Trailer { len: usize },
    TrailerLf { len: usize },
}

impl Scan {
    fn new(framing: RespFraming) -> Self {
        Scan { framing, state: Chunk::Size { value: 0, digits: 0, ext: false } }
    }

    /// How many of `bytes` belong to the body, and whether it ends there.
    fn feed(&mut self, bytes: &[u8]) -> Result<(usize, bool), String> {
        match &mut self.framing {
            RespFraming::None => Ok((0, true)),
            RespFraming::UntilClose => Ok((bytes.len(), false)),
            RespFraming::Length(left) => {
                let take = (*left).min(bytes.len() as u64) as usize;
                *left -= take as u64;
                Ok((take, *left == 0))
            }
            RespFraming::Chunked => {
                let mut i = 0;
                while i < bytes.len() {
                    let b = bytes[i];
                    self.state = match self.state {
                        Chunk::Size { value, digits, ext } => match b {
                            b'\r' if digits > 0 => Chunk::SizeLf { value },
                            _ if ext => Chunk::Size { value, digits, ext },
                            b';' | b' ' | b'\t' if digits > 0 => Chunk::Size { value, digits, ext: true },
                            _ => {
                                let d = (b as char).to_digit(16).ok_or("a malformed chunk size")?;
                                if digits >= 15 {
                                    return Err("a chunk size too large".into());
                                }
                                Chunk::Size { value: value * 16 + u64::from(d), digits: digits + 1, ext }
                            }
                        },
                        Chunk::SizeLf { value } => {
                            if b != b'\n' {
                                return Err("a malformed chunk size line".into());
                            }
                            if value == 0 {
                                Chunk::Trailer { len: 0 }
                            } else {
                                Chunk::Data(value)
                            }
                        }
                        Chunk::Data(n) => {
                            let take = n.min((bytes.len() - i) as u64);
                            i += take as usize;
                            self.state = if n == take { Chunk::DataCr } else { Chunk::Data(n - take) };
                            continue;
                        }
                        Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                        Chunk::DataLf if b == b'\n' => Chunk::Size { value: 0, digits: 0, ext: false },
                        Chunk::DataCr | Chunk::DataLf => return Err("a chunk not ended by CRLF".into()),
                        Chunk::Trailer { len } if b == b'\r' => Chunk::TrailerLf { len },
                        Chunk::Trailer { len } => {
                            if len > 64 * 1024 {
                                return Err("a trailer line too long".into());
                            }
                            Chunk::Trailer { len: len + 1 }
                        }
                        Chunk::TrailerLf { len } => {
                            if b != b'\n' {
                                return Err("a malformed trailer line".into());
                            }
                            if len == 0 {
                                return Ok((i + 1, true));
                            }
                            Chunk::Trailer { len: 0 }
                        }
                    };
                    i += 1;
                }
                Ok((bytes.len(), false))
            }
        }
    }
}

use tessera_proto::http;

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(framing: RespFraming, body: &[u8], step: usize) -> Result<(usize, bool), String> {
        let mut s = Scan::new(framing);
        let mut at = 0;
        while at < body.len() {
            let end = (at + step).min(body.len());
            let (take, done) = s.feed(&body[at..end])?;
            at += take;
            if done {
                return Ok((at, true));
            }
        }
        Ok((at, false))
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_end() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            let mut with_next = body.to_vec();
            with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let mut s = Scan::new(RespFraming::Chunked);
            let mut at = 0;
            let mut done = false;
            while !done {
                let end = (at + step).min(with_next.len());
                let (take, d) = s.feed(&with_next[at..end]).unwrap();
                assert!(d || take == end - at, "took part of a piece without ending");
                at += take;
                done = d;
            }
            assert_eq!(at, body.len(), "step {step}");
        }
        assert_eq!(scan_all(RespFraming::Chunked, b"0\r\n\r\n", 1).unwrap(), (5, true));
        assert!(scan_all(RespFraming::Chunked, b"zz\r\n", 1).is_err());
        assert!(scan_all(RespFraming::Chunked, b"2\r\nabX\r\n", 1).is_err());
        assert!(scan_all(RespFraming::Chunked, b"ffffffffffffffffff\r\n", 1).is_err());
    }

    #[test]
    fn lengths_end_exactly() {
        let mut s = Scan::new(RespFraming::Length(5));
        assert_eq!(s.feed(b"abc").unwrap(), (3, false));
        assert_eq!(s.feed(b"deXYZ").unwrap(), (2, true));
        assert_eq!(Scan::new(RespFraming::None).feed(b"abc").unwrap(), (0, true));
    }

    #[test]
    fn response_heads_say_how_their_body_ends() {
        let h = parse_up_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody", false).unwrap().unwrap();
        assert_eq!((h.status, h.framing, h.close), (200, RespFraming::Length(12), false));
        let h = parse_up_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true).unwrap().unwrap();
        assert_eq!(h.framing, RespFraming::None, "a HEAD's answer has no body");
        let h = parse_up_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.close), (RespFraming::Chunked, true));
        let h = parse_up_head(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap().unwrap();
        assert_eq!((h.status, h.framing), (100, RespFraming::None));
        assert!(parse_up_head(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap().is_none());
        assert!(parse_up_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    }
}
