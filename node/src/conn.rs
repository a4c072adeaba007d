//! One client connection: read a request head, have it answered
//! (`request::respond`: route, authenticate, run), write the response;
//! repeat while keep-alive holds.
//!
//! Malformed HTTP gets a 400 and the connection is closed. A response whose
//! request body was not read to its end also closes the connection (we never
//! guess where the next request starts). Slow or vanished clients are bounded
//! by idle timeouts on every read and write.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use tessera_proto::http::{self, RequestHead};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::response::{Response, RespBody};
use crate::server::Ctx;

/// Largest step by which a connection's read buffer grows.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// Read buffer of a new or idle connection: enough for a usual request head,
/// so that thousands of idle connections cost little.
pub const INITIAL_READ_BUF_BYTES: usize = 4 * 1024;
/// Largest request (head and body) a connection keeps the room for between
/// requests, so that a client sending small objects has each request
/// received whole in one receive. With 4 KiB, a 4 KiB PUT (4,478 bytes with
/// its head) took two receives, 4,096 bytes and then the last 382: the
/// second receive cost 3.1 us of the node's CPU per PUT (7.7% of a 4 KiB
/// PUT at 64 connections). At most 20 KiB (a 16 KiB body and its head) per
/// connection: 80 MiB per core at `MAX_CONNECTIONS_PER_CORE`, against 16.
pub const SMALL_REQUEST_BYTES: usize = 20 * 1024;
/// Most bytes of unfinished request heads a reactor holds over all its
/// connections; a connection that would pass it gets `503 SlowDown` and is
/// closed. Heads that arrive whole in one read never count.
pub const MAX_PARTIAL_HEAD_BYTES_PER_CORE: usize = 8 * 1024 * 1024;
/// Internal errors logged per reactor per window; the rest are counted and
/// the count is logged once the window is over.
pub const MAX_ERROR_LOGS_PER_WINDOW: u32 = 10;
pub const ERROR_LOG_WINDOW: Duration = Duration::from_secs(10);
/// How long an idle keep-alive connection waits for the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time a request head may take to arrive once it has begun.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(30);
/// How long any single read of a request head or body, or write of a
/// response, may stall before the connection is dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection closed by peer")]
    Closed,
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Receives into `buf`'s room after its bytes (`Ok(0)` is never returned:
/// a closed connection is `Closed`) for at most `timeout`, and gives the
/// buffer back in every case. On the timeout the receive is cancelled and
/// awaited: monoio's plain `timeout` drops the operation and the buffer it
/// owns, which lost the bytes buffered before it, and a connection then
/// holding a partial pipelined head panicked its reactor on its next
/// `pending()` (its start index pointed past the empty buffer left behind).
/// An empty buffer has nothing to lose: it takes the plain receive (the
/// cancelable one costs ~1,000 instructions more, 1.7% of a 4 KiB GET),
/// and a timeout leaves an empty `Vec` in its place.
pub(crate) async fn recv_within(stream: &mut TcpStream, buf: Vec<u8>, timeout: Duration) -> (Result<usize, ConnError>, Vec<u8>) {
    use monoio::io::AsyncReadRent;
    let (len, cap) = (buf.len(), buf.capacity());
    if len == 0 {
        return match monoio::time::timeout(timeout, stream.read(buf.slice_mut(0..cap))).await {
            Ok((res, slice)) => received(res, slice.into_inner()),
            Err(_) => (Err(ConnError::Timeout), Vec::new()),
        };
    }
    recv_cancelable(stream, buf.slice_mut(len..cap), timeout).await
}

/// A receive into `slice` raced against `timeout`; on the timeout it is
/// cancelled and awaited, so the buffer always comes back (a receive that
/// completed before the cancel reached it keeps its bytes).
async fn recv_cancelable<T: IoBufMut>(
    stream: &mut TcpStream,
    slice: monoio::buf::SliceMut<T>,
    timeout: Duration,
) -> (Result<usize, ConnError>, T) {
    use futures_util::future::{select, Either};
    use monoio::io::{CancelableAsyncReadRent, Canceller};
    let canceller = Canceller::new();
    let mut read = std::pin::pin!(stream.cancelable_read(slice, canceller.handle()));
    let (res, slice) = match select(read.as_mut(), std::pin::pin!(monoio::time::sleep(timeout))).await {
        Either::Left((done, _)) => done,
        Either::Right(((), _)) => {
            canceller.cancel();
            match read.await {
                (Ok(n), slice) if n > 0 => (Ok(n), slice),
                (Ok(_), slice) => (Ok(0), slice),
                (Err(_), slice) => return (Err(ConnError::Timeout), slice.into_inner()),
            }
        }
    };
    received(res, slice.into_inner())
}

/// A receive's outcome: 0 bytes is the peer closing.
fn received<T>(res: std::io::Result<usize>, buf: T) -> (Result<usize, ConnError>, T) {
    match res {
        Ok(0) => (Err(ConnError::Closed), buf),
        Ok(n) => (Ok(n), buf),
        Err(e) => (Err(ConnError::Io(e)), buf),
    }
}

/// The socket and its read buffer (bytes received but not yet consumed).
pub struct Conn {
    stream: TcpStream,
    /// On the TLS listener: every read and write goes through it.
    tls: Option<Box<crate::tls::TlsSession>>,
    buf: Vec<u8>,
    start: usize,
    /// The client's address (access logs).
    pub peer: Option<std::net::IpAddr>,
    /// Bytes read and written since the last `take_byte_counts` (metrics).
    read_bytes: u64,
    written_bytes: u64,
    /// The read buffer kept between requests: room for the last request
    /// whole when it was small (`SMALL_REQUEST_BYTES`), else 4 KiB.
    idle_room: usize,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Self {
        let peer = stream.peer_addr().ok().map(|a| a.ip());
        Conn { stream, tls: None, buf: Vec::with_capacity(INITIAL_READ_BUF_BYTES), start: 0, peer, read_bytes: 0, written_bytes: 0, idle_room: INITIAL_READ_BUF_BYTES }
    }

    /// A connection to the TLS listener, once its handshake is done. A
    /// client speaking plain HTTP gets a 400 in plain HTTP (it could not
    /// read anything else) and is closed; a failed handshake just closes.
    pub(crate) async fn accept_tls(
        stream: TcpStream,
        config: Arc<rustls::ServerConfig>,
        request_id: &str,
        metrics: &crate::metrics::CoreMetrics,
        listener: crate::metrics::Listener,
    ) -> Option<Conn> {
        use crate::metrics::TlsFailure;
        let mut conn = Conn::new(stream);
        match crate::tls::TlsSession::accept(&mut conn.stream, config).await {
            Ok(crate::tls::Accepted::Tls(session)) => {
                conn.tls = Some(session);
                Some(conn)
            }
            Ok(crate::tls::Accepted::PlainHttp) => {
                metrics.tls_handshake_failed(listener, TlsFailure::PlainHttp);
                let mut e = S3Error::new(S3ErrorCode::BadRequest);
                e.message = "This port speaks HTTPS only: use https://".into();
                let resp = Response::error(&e, "/", request_id);
                if write_response(&mut conn, resp, false, false, false).await.is_ok() {
                    linger(conn).await;
                }
                None
            }
            Err(e) => {
                let why = match &e {
                    ConnError::Timeout => TlsFailure::Timeout,
                    ConnError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => TlsFailure::Protocol,
                    _ => TlsFailure::Closed,
                };
                metrics.tls_handshake_failed(listener, why);
                tracing::debug!(peer = ?conn.peer, "TLS handshake failed: {e}");
                None
            }
        }
    }

    /// Whether the connection is encrypted (TLS listener).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Bytes read and written since the last call; also sizes the room
    /// kept for the next request from the bytes this one read.
    fn take_byte_counts(&mut self) -> (u64, u64) {
        let read = std::mem::take(&mut self.read_bytes);
        self.idle_room = idle_room_after(read);
        (read, std::mem::take(&mut self.written_bytes))
    }

    /// Between requests: gives back a read buffer a big head or body grew,
    /// or makes room for a small request like the last one.
    fn shrink_when_idle(&mut self) {
        if self.pending().is_empty() && self.buf.capacity() != self.idle_room {
            self.buf = Vec::with_capacity(self.idle_room);
            self.start = 0;
        }
    }

    /// Receives at most `max` bytes straight into `buf`'s spare room (a
    /// plain connection with nothing buffered: see `BodyReader::read_into`),
    /// for at most `timeout`; the buffer comes back in every case.
    ///
    /// One receive takes at most `READ_BUF_BYTES` (64 KiB), as `fill` does:
    /// receives of up to the buffer's room (512 KiB) made 1 MiB PUTs 26%
    /// slower at 64 connections (636 against 879/s), where 64 KiB ones made
    /// them 14-18% faster than the copy through the connection's buffer.
    pub async fn recv_into(&mut self, buf: tessera_io::DataBuf, max: usize, timeout: Duration) -> (Result<usize, ConnError>, tessera_io::DataBuf) {
        debug_assert!(self.tls.is_none() && self.pending().is_empty());
        let start = buf.record_len();
        let end = start + max.min(buf.remaining()).min(READ_BUF_BYTES);
        let (r, buf) = recv_cancelable(&mut self.stream, buf.slice_mut(start..end), timeout).await;
        if let Ok(n) = r {
            self.read_bytes += n as u64;
        }
        (r, buf)
    }

    /// Received bytes not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.start + n <= self.buf.len());
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes; `Ok(0)` never happens: end of stream is `Closed`.
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, ConnError> {
        if self.start > 0 && (self.buf.len() == self.buf.capacity() || self.start > READ_BUF_BYTES / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            // Grows with what the client sends (doubling, 64 KiB steps at most).
            self.buf.reserve(self.buf.capacity().clamp(INITIAL_READ_BUF_BYTES, READ_BUF_BYTES));
        }
        if let Some(tls) = &mut self.tls {
            let n = tls.read(&mut self.stream, &mut self.buf, timeout).await?;
            self.read_bytes += n as u64;
            return Ok(n);
        }
        let (res, buf) = recv_within(&mut self.stream, std::mem::take(&mut self.buf), timeout).await;
        self.buf = buf;
        let n = res?;
        self.read_bytes += n as u64;
        Ok(n)
    }

    /// Sends `data` whole (a `Vec`, or a cache hit's shared `Bytes`) and
    /// gives it back.
    pub async fn write_all<B>(&mut self, data: B) -> Result<B, ConnError>
    where
        B: monoio::buf::IoBuf + std::ops::Deref<Target = [u8]>,
    {
        if let Some(tls) = &mut self.tls {
            tls.write_all(&mut self.stream, &data).await?;
            self.written_bytes += data.len() as u64;
            return Ok(data);
        }
        let write = self.stream.write_all(data);
        match monoio::time::timeout(IO_TIMEOUT, write).await {
            Ok((Ok(_), buf)) => {
                self.written_bytes += buf.len() as u64;
                Ok(buf)
            }
            Ok((Err(e), _)) => Err(ConnError::Io(e)),
            Err(_) => Err(ConnError::Timeout),
        }
    }
}

impl Conn {
    /// Sends bytes read for a response: a plain record's bytes straight
    /// from the O_DIRECT buffer they were read into (no copy, issue 17),
    /// a decoded piece's from its own buffer.
    pub async fn write_read(&mut self, bytes: crate::shards::ReadBytes) -> Result<(), ConnError> {
        let (buf, at) = match bytes {
            crate::shards::ReadBytes::Vec(v) => return self.write_all(v).await.map(drop),
            crate::shards::ReadBytes::Aligned(buf, at) => (buf, at),
        };
        if at.end > buf.len() || at.start > at.end {
            return Err(ConnError::Io(std::io::Error::other("read range outside its buffer")));
        }
        let n = at.len() as u64;
        if let Some(tls) = &mut self.tls {
            tls.write_all(&mut self.stream, &buf.as_slice()[at]).await?;
            self.written_bytes += n;
            return Ok(());
        }
        use monoio::buf::IoBuf;
        let write = self.stream.write_all(buf.slice(at));
        match monoio::time::timeout(IO_TIMEOUT, write).await {
            Ok((Ok(_), _)) => {
                self.written_bytes += n;
                Ok(())
            }
            Ok((Err(e), _)) => Err(ConnError::Io(e)),
            Err(_) => Err(ConnError::Timeout),
        }
    }
}

/// Answers 503 SlowDown and closes: the reactor is at its connection limit.
/// On the TLS listener it only closes: a handshake is the costly part that
/// an overloaded reactor must not take on.
pub async fn reject_busy(stream: TcpStream, tls: bool) {
    if tls {
        return;
    }
    let mut conn = Conn::new(stream);
    let resp = Response::error(&S3Error::new(S3ErrorCode::SlowDown), "/", "0");
    let _ = write_response(&mut conn, resp, false, false, false).await;
}

pub(crate) fn resource_of(head: &RequestHead) -> String {
    head.path.clone()
}

/// Rate limit of the log lines of internal errors (one per reactor).
pub struct LogLimiter {
    window_start: Cell<Instant>,
    logged: Cell<u32>,
    suppressed: Cell<u64>,
}

impl LogLimiter {
    pub fn new() -> Self {
        LogLimiter { window_start: Cell::new(Instant::now()), logged: Cell::new(0), suppressed: Cell::new(0) }
    }

    /// Whether to log one more error now.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start.get()) >= ERROR_LOG_WINDOW {
            let suppressed = self.suppressed.replace(0);
            if suppressed > 0 {
                tracing::error!(suppressed, "internal errors not logged in the last {ERROR_LOG_WINDOW:?}");
            }
            self.window_start.set(now);
            self.logged.set(0);
        }
        if self.logged.get() < MAX_ERROR_LOGS_PER_WINDOW {
            self.logged.set(self.logged.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The read buffer to keep after a request of `read` bytes: all of it,
/// in whole pages, when it is small; else `INITIAL_READ_BUF_BYTES`.
fn idle_room_after(read: u64) -> usize {
    match usize::try_from(read) {
        Ok(n) if n <= SMALL_REQUEST_BYTES => n.next_multiple_of(INITIAL_READ_BUF_BYTES).max(INITIAL_READ_BUF_BYTES),
        _ => INITIAL_READ_BUF_BYTES,
    }
}

/// Counts a request (or, with `op` None, only the bytes of a connection).
pub(crate) fn account(ctx: &Ctx, conn: &mut Conn, op: Option<(&str, u16, Instant)>) {
    let metrics = &ctx.shared.metrics;
    let (read, written) = conn.take_byte_counts();
    metrics.core(ctx.core).add_bytes(read, written);
    if let Some((op, status, started)) = op {
        metrics.record(ctx.core, op, status, started.elapsed());
    }
}

pub async fn serve(ctx: Rc<Ctx>, stream: TcpStream, peer: std::net::IpAddr) -> Option<Moved> {
    let mut conn = match &ctx.shared.tls {
        None => Conn::new(stream),
        Some(tls) => match Conn::accept_tls(
            stream,
            tls.current(),
            &ctx.next_request_id(),
            ctx.shared.metrics.core(ctx.core),
            crate::metrics::Listener::S3,
        )
        .await
        {
            Some(c) => c,
            None => return None,
        },
    };
    let mut answered = false;
    loop {
        // Between requests, with nothing of the next one read yet, a plain
        // connection may move to a reactor serving fewer (`ConnLoad`):
        // its socket holds whatever the client sends meanwhile.
        if answered && conn.tls.is_none() && conn.pending().is_empty() && !ctx.shared.metrics.stopping() {
            if let Some(to) = ctx.shared.conn_load.rebalance(ctx.core) {
                return Some(Moved { stream: conn.stream, to });
            }
        }
        answered = true;
        conn.shrink_when_idle();
        let mut head = match read_head(&ctx, &mut conn, true).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                account(&ctx, &mut conn, None);
                return None;
            }
            Err(e) => {
                let started = Instant::now();
                let resp = Response::error(&e, "/", &ctx.next_request_id());
                let status = resp.status;
                let written = write_response(&mut conn, resp, false, false, false).await;
                account(&ctx, &mut conn, Some((crate::metrics::OP_UNROUTED, status, started)));
                if written.is_ok() {
                    // The rest of the head may still be arriving: drain, then close.
                    linger(conn).await;
                }
                return None;
            }
        };
        let started = Instant::now();
        let request_id = ctx.next_request_id();
        let keep_alive = head.keep_alive();
        let is_head = head.method == http::Method::Head;
        let http10 = head.minor_version == 0;
        // In a cluster, an object request whose key another node owns is
        // proxied there whole (`forward`).
        let mut client = peer;
        // Held until this request is answered (`handover::Busy`).
        let mut busy: Option<crate::handover::Busy> = None;
        if let Some(node) = ctx.shared.cluster.as_ref().filter(|_| !head.path.starts_with("/_tessera/")) {
            let mut decision = crate::forward::decide(node, &head, peer, &ctx.shared.config.vhost_domains, &mut busy).await;
            // A browser POST upload's key is in its form: found by reading ahead.
            if let crate::forward::Decision::Local(_, false, _) = decision {
                if let Some((to, version)) =
                    crate::forward_post::post_owner(node, &mut conn, &mut head, &ctx.shared.config.vhost_domains).await
                {
                    decision = crate::forward::Decision::Forward { to, version };
                }
            }
            let early = match decision {
                crate::forward::Decision::Local(ip, forwarded, config) => {
                    // The forwarder's header is not part of the client's
                    // signed request: the signature check must not see it.
                    if forwarded {
                        head.headers.remove_last(crate::forward::HEADER);
                    }
                    // A forwarder's connection carries many clients' requests:
                    // each is this request's client (events, SSE-C's rule).
                    conn.peer = Some(ip);
                    client = ip;
                    // Bucket settings and IAM entities the forwarder had when
                    // it forwarded apply here.
                    if ctx.shared.buckets.catch_up_to(config).await && ctx.shared.iam.caught_up_to(config).await {
                        None
                    } else {
                        let e = tessera_proto::S3Error::with_message(
                            tessera_proto::S3ErrorCode::ServiceUnavailable,
                            "This node has not applied the cluster configuration the request was sent with yet; please retry.",
                        );
                        Some((e, matches!(head.framing(), Ok(http::BodyFraming::Length(0)))))
                    }
                }
                crate::forward::Decision::Forward { to, version } => {
                    let config = ctx.shared.buckets.published_index().max(ctx.shared.iam.published_index());
                    let o = crate::forward::proxy(node, &mut conn, &head, peer, to, version, config, &[]).await;
                    match o.error {
                        None => {
                            account(&ctx, &mut conn, Some((crate::metrics::OP_FORWARDED, o.status, started)));
                            match (o.keep && !ctx.shared.metrics.stopping(), o.body_done) {
                                (true, _) => continue,
                                (false, false) if o.status != 499 => {
                                    linger(conn).await;
                                    return None;
                                }
                                _ => return None,
                            }
                        }
                        Some(e) => Some((e, o.body_done)),
                    }
                }
                crate::forward::Decision::Refuse(e) => {
                    Some((e, matches!(head.framing(), Ok(http::BodyFraming::Length(0)))))
                }
            };
            if let Some((e, body_done)) = early {
                let resp = Response::error(&e, &resource_of(&head), &request_id);
                let status = resp.status;
                let keep = keep_alive && body_done && !ctx.shared.metrics.stopping();
                let written = write_response(&mut conn, resp, is_head, keep, http10).await;
                account(&ctx, &mut conn, Some((crate::metrics::OP_FORWARDED, status, started)));
                match written {
                    Ok(()) if keep => continue,
                    Ok(()) if !body_done => {
                        linger(conn).await;
                        return None;
                    }
                    _ => return None,
                }
            }
        }
        let (resp, body_done, op) = crate::request::respond(&ctx, &head, &mut conn, request_id, client).await;
        // A stopping node answers what it was asked, then closes.
        let keep = keep_alive && body_done && !ctx.shared.metrics.stopping();
        let status = resp.status;
        let written = write_response(&mut conn, resp, is_head, keep, http10).await;
        account(&ctx, &mut conn, Some((op, status, started)));
        match written {
            Ok(()) if keep => continue,
            Ok(()) if !body_done => {
                linger(conn).await;
                return None;
            }
            _ => return None,
        }
    }
}

/// A connection `serve` let go between requests, for reactor `to`.
pub struct Moved {
    pub stream: TcpStream,
    pub to: usize,
}

/// Most bytes read and dropped while closing a connection whose request body
/// was not read, and for how long.
pub const LINGER_BYTES: usize = 4 * 1024 * 1024;
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Closes after an early response: shut our side, then drain what the client
/// is still sending for a short while. Closing with unread data would make
/// the kernel send a reset that can destroy the response before the client
/// reads it.
pub(crate) async fn linger(mut conn: Conn) {
    use monoio::io::AsyncWriteRent;
    if let Some(tls) = &mut conn.tls {
        tls.close(&mut conn.stream).await;
    }
    let _ = conn.stream.shutdown().await;
    let deadline = std::time::Instant::now() + LINGER_TIMEOUT;
    let mut dropped = 0usize;
    while dropped < LINGER_BYTES {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let n = conn.pending().len();
        conn.consume(n);
        dropped += n;
        if conn.fill(left).await.is_err() {
            break;
        }
    }
}

/// This connection's share of its reactor's partial-head bytes; given back
/// when the head is complete or the connection ends.
struct PartialHead<'a> {
    total: &'a Cell<usize>,
    mine: usize,
}

impl PartialHead<'_> {
    /// Counts `bytes` of an unfinished head, or refuses past the reactor's cap.
    fn set(&mut self, bytes: usize) -> Result<(), S3Error> {
        let others = self.total.get() - self.mine;
        if others + bytes > MAX_PARTIAL_HEAD_BYTES_PER_CORE {
            return Err(S3Error::new(S3ErrorCode::SlowDown));
        }
        self.total.set(others + bytes);
        self.mine = bytes;
        Ok(())
    }
}

impl Drop for PartialHead<'_> {
    fn drop(&mut self) {
        self.total.set(self.total.get() - self.mine);
    }
}

/// Reads one request head. `Ok(None)`: the client closed between requests
/// (or, with `close_when_stopping`, the node stops while none is coming).
pub(crate) async fn read_head(
    ctx: &Ctx,
    conn: &mut Conn,
    close_when_stopping: bool,
) -> Result<Option<RequestHead>, S3Error> {
    let mut first = true;
    let mut deadline: Option<std::time::Instant> = None;
    let mut partial = PartialHead { total: &ctx.partial_head_bytes, mine: 0 };
    loop {
        if !conn.pending().is_empty() {
            match http::parse_request_head(conn.pending()) {
                Ok(Some((head, n))) => {
                    conn.consume(n);
                    return Ok(Some(head));
                }
                Ok(None) => partial.set(conn.pending().len())?,
                Err(e) => return Err(e.into()),
            }
        }
        // Idle between requests may last IDLE_TIMEOUT; once a head has begun,
        // all of it must arrive within HEAD_DEADLINE (no slow-drip heads).
        let timeout = if first && conn.pending().is_empty() {
            IDLE_TIMEOUT
        } else {
            let d = *deadline.get_or_insert_with(|| std::time::Instant::now() + HEAD_DEADLINE);
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(S3Error::new(S3ErrorCode::RequestTimeout));
            }
            left
        };
        let idle = first && conn.pending().is_empty();
        first = false;
        if idle && close_when_stopping {
            // Between requests a stop closes the connection at once.
            match ctx.unless_stopped(conn.fill(timeout)).await {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(None),
            }
        }
        match conn.fill(timeout).await {
            Ok(_) => {}
            Err(_) if conn.pending().is_empty() => return Ok(None),
            Err(ConnError::Timeout) => return Err(S3Error::new(S3ErrorCode::RequestTimeout)),
            Err(_) => return Ok(None),
        }
    }
}

/// Writes a response; for HEAD the body is left out but its length is sent.
pub async fn write_response(
    conn: &mut Conn,
    resp: Response,
    is_head: bool,
    keep_alive: bool,
    http10: bool,
) -> Result<(), ConnError> {
    let Response { status, mut headers, body } = resp;
    let len = body.len();
    // Room for the head and a body that goes out with it (one allocation).
    let coalesced = match &body {
        RespBody::Bytes(b) if !is_head => b.len(),
        RespBody::Object(stream) if !is_head => stream.small_inline().map_or(0, <[u8]>::len),
        _ => 0,
    };
    let named: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut head = Vec::with_capacity(128 + named + coalesced);
    let chunked = matches!(body, RespBody::Select(_));
    if chunked {
        headers.push((std::borrow::Cow::Borrowed("Transfer-Encoding"), "chunked".to_string()));
    }
    let content_length = if chunked || status == 304 || (status == 204 && len == 0) { None } else { Some(len) };
    http::write_response_head(&mut head, status, &headers, content_length, keep_alive, http10);
    match body {
        RespBody::Empty => {
            conn.write_all(head).await?;
        }
        RespBody::Bytes(b) if is_head => {
            let _ = b;
            conn.write_all(head).await?;
        }
        RespBody::Bytes(b) => {
            head.extend_from_slice(&b);
            conn.write_all(head).await?;
        }
        RespBody::Object(_) if is_head => {
            conn.write_all(head).await?;
        }
        RespBody::Object(stream) => match stream.small_inline() {
            Some(bytes) => {
                head.extend_from_slice(bytes);
                conn.write_all(head).await?;
            }
            None => {
                conn.write_all(head).await?;
                stream.write_to(conn).await?;
            }
        },
        RespBody::Select(stream) => {
            conn.write_all(head).await?;
            stream.write_to(conn).await?;
        }
        RespBody::Tier(_) if is_head => {
            conn.write_all(head).await?;
        }
        RespBody::Tier(stream) => {
            conn.write_all(head).await?;
            stream.write_to(conn).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_requests_bytes_are_kept_room_for_in_whole_pages_and_a_big_ones_are_not() {
        // A GET's head alone: the usual 4 KiB.
        assert_eq!(idle_room_after(0), INITIAL_READ_BUF_BYTES);
        assert_eq!(idle_room_after(382), INITIAL_READ_BUF_BYTES);
        assert_eq!(idle_room_after(4096), 4096);
        // A 4 KiB PUT with its head: both in one receive next time.
        assert_eq!(idle_room_after(4478), 8192);
        // A 16 KiB body with a head of up to 4 KiB.
        assert_eq!(idle_room_after(16 * 1024 + 700), SMALL_REQUEST_BYTES);
        assert_eq!(idle_room_after(SMALL_REQUEST_BYTES as u64), SMALL_REQUEST_BYTES);
        // Bigger ones go back to 4 KiB: their bodies are received straight
        // into the body buffer, and idle connections stay cheap.
        assert_eq!(idle_room_after(SMALL_REQUEST_BYTES as u64 + 1), INITIAL_READ_BUF_BYTES);
        assert_eq!(idle_room_after(1 << 20), INITIAL_READ_BUF_BYTES);
        assert_eq!(idle_room_after(u64::MAX), INITIAL_READ_BUF_BYTES);
    }
}
