//! Reading a request body off the connection: HTTP framing (Content-Length
//! or chunked), then aws-chunked decoding when the payload is streamed, with
//! every byte fed to the verifier (MD5 for the ETag, Content-MD5, SHA-256,
//! x-amz-checksum-*). The end of the body is reported only after all checks
//! passed, so a caller that commits on `Ok(0)` never commits unverified data.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tessera_proto::aws_chunked::AwsChunkedDecoder;
use tessera_proto::checksum::{BodySums, BodyVerifier};
use tessera_proto::md5x::Md5Pool;
use tessera_proto::http::{BodyFraming, ChunkedDecoder, RequestHead};
use tessera_proto::sigv4::{PayloadMode, EMPTY_SHA256_HEX};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::conn::{Conn, ConnError, IO_TIMEOUT};

/// A body may take this long (time spent waiting on the client) before the
/// minimum rate applies: slow starts and `100 Continue` round trips pass.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(10);
/// After the grace, every window of this much waiting must bring at least
/// [`MIN_BODY_BYTES_PER_WINDOW`] bytes, or the request ends with `RequestTimeout`.
pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(5);
/// 16 KiB per 5 s: about 3 KiB/s, far below any working link, far above a drip.
pub const MIN_BODY_BYTES_PER_WINDOW: u64 = 16 * 1024;
/// Bodies this big (or of unknown length) compute their MD5 in a lane of
/// the reactor's pool (`md5x`) as they arrive, reserving a whole lane queue.
pub const MD5_POOL_MIN_BODY: u64 = 128 * 1024;
/// Smaller bodies from this size take a lane of their own size; one whole
/// in a receive is hashed at its end, after one yield, with the other
/// bodies that ended in the same turn of the reactor (side by side when
/// there are enough of them, else alone as before).
pub const MD5_BATCH_MIN_BODY: u64 = 2 * 1024;

/// The minimum-rate clock of one body. Only time spent waiting for the
/// client counts: while the handler writes to disk or waits for a buffer,
/// the client is not to blame.
struct Pace {
    waited: Duration,
    next_check: Duration,
    received: u64,
    received_at_check: u64,
}

impl Pace {
    fn new() -> Self {
        Pace { waited: Duration::ZERO, next_check: BODY_RATE_GRACE, received: 0, received_at_check: 0 }
    }

    /// Reads more of the body off the socket, or fails the request when the
    /// client fell below the minimum rate.
    async fn fill(&mut self, conn: &mut Conn) -> Result<(), S3Error> {
        let started = Instant::now();
        let n = match conn.fill(self.wait_left()).await {
            Ok(n) => n,
            Err(ConnError::Timeout) => 0,
            Err(e) => return Err(conn_error(e)),
        };
        self.after_wait(started, n)
    }

    /// How long the next receive may wait: to the next rate check.
    fn wait_left(&self) -> Duration {
        self.next_check.saturating_sub(self.waited).min(IO_TIMEOUT).max(Duration::from_millis(1))
    }

    /// Counts a wait since `started` that brought `n` bytes; fails the
    /// request when the client fell below the minimum rate.
    fn after_wait(&mut self, started: Instant, n: usize) -> Result<(), S3Error> {
        self.waited += started.elapsed();
        self.received += n as u64;
        if self.waited >= self.next_check {
            if self.received - self.received_at_check < MIN_BODY_BYTES_PER_WINDOW {
                return Err(S3Error::new(S3ErrorCode::RequestTimeout));
            }
            self.received_at_check = self.received;
            self.next_check = self.waited + BODY_RATE_WINDOW;
        }
        Ok(())
    }

    /// `fill`, receiving straight into `buf` (at most `max` bytes): `Ok(0)`
    /// when the wait ended without bytes and the rate still holds.
    async fn fill_into(&mut self, conn: &mut Conn, buf: tessera_io::DataBuf, max: usize) -> (Result<usize, S3Error>, tessera_io::DataBuf) {
        let started = Instant::now();
        let (read, buf) = conn.recv_into(buf, max, self.wait_left()).await;
        let n = match read {
            Ok(n) => n,
            Err(ConnError::Timeout) => 0,
            Err(e) => return (Err(conn_error(e)), buf),
        };
        (self.after_wait(started, n).map(|()| n), buf)
    }
}

/// Least spare room for a receive straight into a body buffer; with less,
/// the bytes come through the connection's buffer.
const DIRECT_READ_MIN: usize = 16 * 1024;

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
}

pub struct BodyReader {
    framing: Framing,
    /// Bytes de-framed from HTTP chunked encoding, waiting for the aws layer.
    staged: Vec<u8>,
    staged_pos: usize,
    aws: Option<AwsChunkedDecoder>,
    verifier: Option<BodyVerifier>,
    decoded: u64,
    expected_decoded: Option<u64>,
    expect_continue: bool,
    sums: Option<BodySums>,
    failed: bool,
    pace: Pace,
}

fn incomplete() -> S3Error {
    S3Error::new(S3ErrorCode::IncompleteBody)
}

fn conn_error(e: ConnError) -> S3Error {
    match e {
        ConnError::Timeout => S3Error::new(S3ErrorCode::RequestTimeout),
        _ => incomplete(),
    }
}

impl BodyReader {
    pub fn new(head: &RequestHead, payload: Option<&PayloadMode>) -> Result<Self, S3Error> {
        let framing = match head.framing().map_err(S3Error::from)? {
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new()),
        };
        let aws = match payload {
            Some(PayloadMode::StreamingSigned { signer, trailer }) => {
                Some(AwsChunkedDecoder::new(Some(signer.clone()), *trailer))
            }
            Some(PayloadMode::StreamingUnsignedTrailer) => Some(AwsChunkedDecoder::new(None, true)),
            _ => None,
        };
        let expected_decoded = match head.headers.get("x-amz-decoded-content-length") {
            Some(v) if aws.is_some() => Some(v.parse::<u64>().map_err(|_| {
                S3Error::with_message(S3ErrorCode::InvalidArgument, "bad x-amz-decoded-content-length")
            })?),
            _ => None,
        };
        let aws = match (aws, expected_decoded) {
            (Some(a), Some(n)) => Some(a.with_decoded_len(n)),
            (a, _) => a,
        };
        let empty = matches!(framing, Framing::Length(0)) && aws.is_none();
        if let (true, Some(PayloadMode::Sha256(d))) = (empty, payload) {
            // An empty body is complete before anyone reads it: check its claimed hash now.
            if hex::encode(d) != EMPTY_SHA256_HEX {
                return Err(S3Error::new(S3ErrorCode::XAmzContentSHA256Mismatch));
            }
        }
        let unsigned = PayloadMode::Unsigned;
        let verifier = BodyVerifier::from_request(&head.headers, payload.unwrap_or(&unsigned))?;
        Ok(BodyReader {
            framing,
            staged: Vec::new(),
            staged_pos: 0,
            aws,
            verifier: Some(verifier),
            decoded: 0,
            expected_decoded,
            expect_continue: head.expects_continue(),
            sums: None,
            failed: false,
            pace: Pace::new(),
        })
    }

    /// Computes the body's MD5 in a lane of the reactor's pool (see
    /// `md5x`): whole-queue lanes for large bodies (or of unknown length),
    /// lanes of their size for small ones (`MD5_BATCH_MIN_BODY`); tiny
    /// ones hash alone.
    pub fn with_md5_pool(mut self, pool: &Rc<RefCell<Md5Pool>>) -> Self {
        self.verifier = self.verifier.take().map(|v| match self.announced_len() {
            Some(n) if n < MD5_BATCH_MIN_BODY => v,
            Some(n) if n < MD5_POOL_MIN_BODY => v.with_md5_pool_for(pool, n),
            _ => v.with_md5_pool(pool),
        });
        self
    }

    /// The decoded length announced by the client, when known up front.
    pub fn announced_len(&self) -> Option<u64> {
        match (&self.framing, &self.aws) {
            (_, Some(_)) => self.expected_decoded,
            (Framing::Length(n), None) => Some(*n),
            (Framing::Chunked(_), None) => None,
        }
    }

    /// Whether the body was read to its verified end.
    pub fn is_complete(&self) -> bool {
        let empty_body = matches!(self.framing, Framing::Length(0)) && self.aws.is_none();
        self.sums.is_some() || (empty_body && !self.failed)
    }

    /// MD5 and checksum of the body, once it was read to its end.
    pub fn sums(&self) -> Option<&BodySums> {
        self.sums.as_ref()
    }

    fn raw_exhausted(&self) -> bool {
        match &self.framing {
            Framing::Length(n) => *n == 0,
            Framing::Chunked(d) => d.is_done(),
        }
    }

    fn staged_len(&self) -> usize {
        self.staged.len() - self.staged_pos
    }

    /// Reads decoded bytes into `dst`. `Ok(0)`: the body ended and passed
    /// every check. Any error leaves the reader failed.
    pub async fn read(&mut self, conn: &mut Conn, dst: &mut [u8]) -> Result<usize, S3Error> {
        if self.sums.is_some() || dst.is_empty() {
            return Ok(0);
        }
        if self.failed {
            return Err(incomplete());
        }
        if self.expect_continue {
            self.expect_continue = false;
            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await.map_err(conn_error)?;
        }
        match self.read_inner(conn, dst).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Reads decoded bytes into `buf`'s spare room, as `read` does. A plain
    /// Content-Length body (no aws-chunked layer) with nothing buffered, on
    /// a plain-TCP connection, is received straight into the buffer, at most
    /// what is left of the body (a pipelined request behind it stays on the
    /// socket): no copy out of the connection's buffer, which was about 5%
    /// of a 1 MiB PUT's CPU. Anything else goes through `read`.
    pub async fn read_into(&mut self, conn: &mut Conn, buf: &mut tessera_io::DataBuf) -> Result<usize, S3Error> {
        let direct = |r: &Self, conn: &Conn, buf: &tessera_io::DataBuf| {
            matches!(r.framing, Framing::Length(left) if left > 0)
                && r.aws.is_none()
                && r.sums.is_none()
                && !r.failed
                && !r.expect_continue
                && !conn.is_tls()
                && conn.pending().is_empty()
                && buf.remaining() >= DIRECT_READ_MIN
        };
        while direct(self, conn, buf) {
            let Framing::Length(left) = self.framing else { break };
            let before = buf.data_len();
            let owned = std::mem::replace(buf, tessera_io::DataBuf::new(0));
            let (r, back) = self.pace.fill_into(conn, owned, usize::try_from(left).unwrap_or(usize::MAX)).await;
            *buf = back;
            let n = match r {
                Ok(n) => n,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            };
            if n == 0 {
                continue;
            }
            self.framing = Framing::Length(left - n as u64);
            // The MD5 lane hashes these bytes where they were received
            // (no copy into its queue), keeping the buffer's memory until
            // it has: a DataBuf's data never changes once filled.
            let keep: tessera_proto::md5x::Keep = buf.keep_alive();
            self.decoded += n as u64;
            if let Some(v) = self.verifier.as_mut() {
                // SAFETY: `keep` holds the buffer's allocation, and its
                // data bytes stay as received (`DataBuf::keep_alive`).
                unsafe { v.update_kept(&buf.data()[before..before + n], &keep) };
            }
            return Ok(n);
        }
        let n = self.read(conn, buf.spare_mut()).await?;
        buf.advance(n);
        Ok(n)
    }

    /// Counts payload bytes just decoded and feeds them to the verifier.
    fn decoded_now(&mut self, bytes: &[u8]) {
        self.decoded += bytes.len() as u64;
        if let Some(v) = self.verifier.as_mut() {
            v.update(bytes);
        }
    }

    async fn read_inner(&mut self, conn: &mut Conn, dst: &mut [u8]) -> Result<usize, S3Error> {
        loop {
            let (used, n) = self.decode_some(conn, dst)?;
            if n > 0 {
                self.decoded_now(&dst[..n]);
                return Ok(n);
            }
            if used > 0 {
                continue;
            }
            if self.raw_exhausted() && self.staged_len() == 0 {
                // The whole body is in: the aws layer must end cleanly too.
                if let Some(aws) = self.aws.as_mut() {
                    aws.finish()?;
                }
                if self.verifier.as_ref().is_some_and(|v| v.md5_waits()) {
                    // Let the other bodies that ended in this turn queue
                    // theirs: the first to finish hashes them all at once.
                    tessera_io::sim::yield_now().await;
                }
                self.finish()?;
                return Ok(0);
            }
            self.pace.fill(conn).await?;
        }
    }

    /// Decodes what is already buffered: (input bytes used, payload bytes
    /// produced); (0, 0) when more input is needed (or at the end).
    fn decode_some(&mut self, conn: &mut Conn, dst: &mut [u8]) -> Result<(usize, usize), S3Error> {
        // Stage 1: HTTP chunked framing goes into `staged`.
        if let Framing::Chunked(dec) = &mut self.framing {
            while !dec.is_done() && !conn.pending().is_empty() && self.staged.len() - self.staged_pos < 256 * 1024 {
                let (used, r) = dec.feed(conn.pending()).map_err(S3Error::from)?;
                self.staged.extend_from_slice(&conn.pending()[r]);
                conn.consume(used);
                if used == 0 {
                    break;
                }
            }
        }
        // Stage 2: the raw body bytes available now.
        let (raw, from_conn): (&[u8], bool) = match &self.framing {
            Framing::Length(left) => {
                let p = conn.pending();
                (&p[..p.len().min(*left as usize)], true)
            }
            Framing::Chunked(_) => (&self.staged[self.staged_pos..], false),
        };
        if raw.is_empty() {
            return Ok((0, 0));
        }
        let (used, produced) = match self.aws.as_mut() {
            None => {
                let n = raw.len().min(dst.len());
                dst[..n].copy_from_slice(&raw[..n]);
                (n, n)
            }
            Some(aws) => {
                // Capping the input at dst's size bounds the payload range too.
                let input = &raw[..raw.len().min(dst.len())];
                let (used, r) = aws.feed(input)?;
                let n = r.len();
                dst[..n].copy_from_slice(&input[r]);
                (used, n)
            }
        };
        if from_conn {
            conn.consume(used);
            if let Framing::Length(left) = &mut self.framing {
                *left -= used as u64;
            }
        } else {
            self.staged_pos += used;
            if self.staged_pos == self.staged.len() {
                self.staged.clear();
                self.staged_pos = 0;
            }
        }
        Ok((used, produced))
    }

    fn finish(&mut self) -> Result<(), S3Error> {
        if let Some(exp) = self.expected_decoded {
            if exp != self.decoded {
                return Err(incomplete());
            }
        }
        let trailers: Vec<(String, String)> = self.aws.as_ref().map(|a| a.trailers().to_vec()).unwrap_or_default();
        let verifier = self.verifier.take().ok_or_else(incomplete)?;
        self.sums = Some(verifier.finish(&trailers)?);
        Ok(())
    }
}
