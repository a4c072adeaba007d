//! The client half of HTTP/1.1, just enough for S3: one keep-alive connection,
//! requests with Content-Length bodies, responses framed by Content-Length,
//! `chunked` or connection close. The head parser is sans-io; [`Conn`] is the shell.

use std::net::SocketAddr;

use std::sync::Arc;

use tessera_proto::http::ChunkedDecoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a connection runs over: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to open TLS connections (`https://` endpoints): the trusted CA and
/// the name the server's certificate must carry.
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl TlsClient {
    /// Trusts the PEM certificates of `ca_file` only (no system roots: a
    /// benchmark names the CA of the node it measures).
    pub fn new(ca_file: &std::path::Path, host: &str) -> Result<TlsClient, String> {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(ca_file).map_err(|e| format!("--ca-cert {}: {e}", ca_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("--ca-cert {}: {e}", ca_file.display()))?;
            roots.add(cert).map_err(|e| format!("--ca-cert {}: {e}", ca_file.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca-cert {}: no certificate", ca_file.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // `[v6]` hosts are IP names without the brackets.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(bare.to_string()).map_err(|e| format!("TLS name {bare:?}: {e}"))?;
        Ok(TlsClient { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), name })
    }
}

/// Largest response head accepted (status line and headers).
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Most headers in a response; S3 sends about fifteen.
pub const MAX_RESPONSE_HEADERS: usize = 96;
/// Read buffer per connection; bodies stream through it.
pub const READ_BUF_BYTES: usize = 256 * 1024;
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    /// The connection was dead before any byte of the response: a keep-alive
    /// connection the server had already closed, safe to retry on a new one.
    #[error("connection closed before the response")]
    ClosedIdle,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("response head larger than {MAX_RESPONSE_HEAD_BYTES} bytes")]
    HeadTooLarge,
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the client needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// The server closes the connection after this response.
    pub close: bool,
    /// Bytes of the head, blank line included.
    pub head_len: usize,
    /// The ETag header as sent (quotes included), when the request's response needs it.
    pub etag: Option<String>,
}

impl ResponseHead {
    /// RFC 9112 §6.3, client side: HEAD, 1xx, 204 and 304 have no body.
    pub fn framing(&self, request_was_head: bool) -> Framing {
        if request_was_head || (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else if let Some(n) = self.content_length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        }
    }
}

/// Parses a response head at the start of `buf`; `None` while it is incomplete.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Left uninitialised: httparse writes the ones it returns (initialising
    // all 96 cost more than parsing a GET's head).
    let mut headers = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_RESPONSE_HEAD_BYTES {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::Malformed("too many headers")),
        Err(_) => return Err(HttpError::Malformed("bad status line or header")),
    };
    let status = resp.code.ok_or(HttpError::Malformed("no status code"))?;
    // HTTP/1.0 closes unless it says keep-alive; 1.1 keeps alive unless it says close.
    let mut close = resp.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut etag = None;
    for h in resp.headers.iter() {
        // Every value must be UTF-8; an ASCII one (the usual case) is, and
        // only the four headers read here need it as a str.
        let utf8 = || std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed("non-UTF-8 header value"));
        if !h.value.is_ascii() {
            utf8()?;
        }
        let wanted = ["content-length", "transfer-encoding", "etag", "connection"];
        if !wanted.iter().any(|w| h.name.eq_ignore_ascii_case(w)) {
            continue;
        }
        let value = utf8()?;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.trim().parse().map_err(|_| HttpError::Malformed("bad Content-Length"))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed("Transfer-Encoding without chunked last"));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("etag") {
            etag = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && resp.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    Ok(Some(ResponseHead { status, content_length, chunked, close, head_len, etag }))
}

/// A response as the caller sees it: status, body length, and the first bytes of
/// the body (as many as the caller asked to keep).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// What Content-Length said (for HEAD, the object's size).
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    pub body_bytes: u64,
    pub body: Vec<u8>,
    /// The connection can carry another request.
    pub reusable: bool,
}

/// How much of a body to keep in memory, by outcome; the rest is read and dropped.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub success_bytes: usize,
    pub error_bytes: usize,
}

/// One keep-alive connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    wbuf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, tls: Option<&TlsClient>) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        // Requests are written whole; Nagle would only delay the last segment.
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(t) => Box::new(t.connector.connect(t.name.clone(), tcp).await?),
        };
        Ok(Conn {
            stream,
            buf: vec![0u8; READ_BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            wbuf: Vec::with_capacity(COALESCE_BODY_BYTES + 2048),
        })
    }

    /// Sends a request head (ending in the blank line) and its body.
    pub async fn send(&mut self, head: &[u8], body: &[u8]) -> Result<(), HttpError> {
        let result = if body.len() <= COALESCE_BODY_BYTES {
            self.wbuf.clear();
            self.wbuf.extend_from_slice(head);
            self.wbuf.extend_from_slice(body);
            self.stream.write_all(&self.wbuf).await
        } else {
            match self.stream.write_all(head).await {
                Ok(()) => self.stream.write_all(body).await,
                Err(e) => Err(e),
            }
        };
        result.map_err(|e| if is_reset(&e) { HttpError::ClosedIdle } else { HttpError::Io(e) })
    }

    /// Reads one response; 1xx interim responses are skipped.
    pub async fn read_response(&mut self, request_was_head: bool, keep: Keep) -> Result<Response, HttpError> {
        let head = loop {
            if let Some(head) = parse_response_head(&self.buf[self.start..self.end])? {
                self.start += head.head_len;
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                break head;
            }
            let nothing_yet = self.start == self.end;
            match self.fill().await {
                Ok(()) => {}
                Err(HttpError::Closed) if nothing_yet => return Err(HttpError::ClosedIdle),
                Err(HttpError::Io(e)) if nothing_yet && is_reset(&e) => return Err(HttpError::ClosedIdle),
                Err(e) => return Err(e),
            }
        };
        let keep_bytes = if (200..300).contains(&head.status) { keep.success_bytes } else { keep.error_bytes };
        let mut body = Vec::new();
        let framing = head.framing(request_was_head);
        let body_bytes = self.read_body(framing, keep_bytes, &mut body).await?;
        // Bytes past the response mean the server and we disagree on framing.
        let reusable = !head.close && framing != Framing::UntilClose && self.start == self.end;
        Ok(Response { status: head.status, content_length: head.content_length, etag: head.etag, body_bytes, body, reusable })
    }

    async fn read_body(&mut self, framing: Framing, keep_bytes: usize, out: &mut Vec<u8>) -> Result<u64, HttpError> {
        let mut total = 0u64;
        match framing {
            Framing::Empty => {}
            Framing::Length(n) => {
                while total < n {
                    if self.start == self.end {
                        self.fill().await?;
                    }
                    let take = (n - total).min((self.end - self.start) as u64) as usize;
                    keep_prefix(out, &self.buf[self.start..self.start + take], keep_bytes);
                    self.start += take;
                    total += take as u64;
                }
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                while !decoder.is_done() {
                    if self.start == self.end {
                        self.fill().await?;
                    }
                    let input = &self.buf[self.start..self.end];
                    let (consumed, data) =
                        decoder.feed(input).map_err(|_| HttpError::Malformed("bad chunked body"))?;
                    keep_prefix(out, &input[data.clone()], keep_bytes);
                    total += data.len() as u64;
                    self.start += consumed;
                }
            }
            Framing::UntilClose => loop {
                if self.start == self.end {
                    match self.fill().await {
                        Ok(()) => {}
                        Err(HttpError::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                keep_prefix(out, &self.buf[self.start..self.end], keep_bytes);
                total += (self.end - self.start) as u64;
                self.start = self.end;
            },
        }
        Ok(total)
    }

    /// Reads more bytes behind the unread ones; `Closed` at end of stream.
    async fn fill(&mut self) -> Result<(), HttpError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(HttpError::HeadTooLarge);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(HttpError::Closed);
        }
        self.end += n;
        Ok(())
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof
    )
}

fn keep_prefix(out: &mut Vec<u8>, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(out.len());
    out.extend_from_slice(&data[..room.min(data.len())]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<ResponseHead>, HttpError> {
        parse_response_head(text.as_bytes())
    }

    #[test]
    fn response_heads() {
        // (response, status, content length, chunked, close)
        for (text, status, len, chunked, close) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, Some(5), false, false),
            ("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 404, Some(0), false, false),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, None, true, false),
            ("HTTP/1.1 503 Slow Down\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", 503, Some(3), false, true),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 200, Some(1), false, true),
            ("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n", 200, Some(1), false, false),
            ("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", 200, Some(7), false, false),
            ("HTTP/1.1 204 No Content\r\n\r\n", 204, None, false, false),
        ] {
            let h = head(text).unwrap().unwrap();
            assert_eq!((h.status, h.content_length, h.chunked, h.close), (status, len, chunked, close), "{text:?}");
            assert_eq!(&text[h.head_len - 4..h.head_len], "\r\n\r\n");
        }
    }

    #[test]
    fn partial_and_bad_heads() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Len").unwrap().is_none());
        assert!(head("").unwrap().is_none());
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "FOO 200 OK\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_RESPONSE_HEAD_BYTES));
        assert!(matches!(head(&big), Err(HttpError::HeadTooLarge)));
        let many: String = (0..MAX_RESPONSE_HEADERS + 1).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
    }

    #[test]
    fn framing_rules() {
        let h = |status, content_length, chunked| ResponseHead { status, content_length, chunked, close: false, head_len: 0, etag: None };
        assert_eq!(h(200, Some(10), false).framing(true), Framing::Empty);
        assert_eq!(h(204, None, false).framing(false), Framing::Empty);
        assert_eq!(h(304, Some(10), false).framing(false), Framing::Empty);
        assert_eq!(h(200, Some(10), false).framing(false), Framing::Length(10));
        assert_eq!(h(200, Some(10), true).framing(false), Framing::Chunked);
        assert_eq!(h(200, None, false).framing(false), Framing::UntilClose);
    }

    /// Serves `transcript` bytes on a real local socket after reading one request
    /// per response, then checks what the client makes of them.
    async fn serve(responses: Vec<&'static [u8]>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            for r in responses {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(r).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_bodies_over_one_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\n<Error/>xyz",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
        ])
        .await;
        let mut c = Conn::connect(addr, None).await.unwrap();
        let keep = Keep { success_bytes: 0, error_bytes: 8 };
        let all = Keep { success_bytes: 1024, error_bytes: 1024 };

        c.send(b"GET /a HTTP/1.1\r\n\r\n", b"").await.unwrap();
        let r = c.read_response(false, keep).await.unwrap();
        assert_eq!((r.status, r.body_bytes, r.body.len(), r.reusable), (200, 5, 0, true));

        c.send(b"GET /b HTTP/1.1\r\n\r\n", b"").await.unwrap();
        let r = c.read_response(false, all).await.unwrap();
        assert_eq!((r.status, r.body_bytes, r.body.as_slice(), r.reusable), (200, 5, &b"abcde"[..], true));

        c.send(b"GET /c HTTP/1.1\r\n\r\n", b"").await.unwrap();
        let r = c.read_response(false, keep).await.unwrap();
        assert_eq!((r.status, r.body_bytes, r.body.as_slice(), r.reusable), (404, 11, &b"<Error/>"[..], true));

        c.send(b"GET /d HTTP/1.1\r\n\r\n", b"").await.unwrap();
        let r = c.read_response(false, all).await.unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.reusable), (200, &b"until close"[..], false));
    }

    #[tokio::test]
    async fn truncated_body_is_an_error() {
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]).await;
        let mut c = Conn::connect(addr, None).await.unwrap();
        c.send(b"GET / HTTP/1.1\r\n\r\n", b"").await.unwrap();
        let keep = Keep { success_bytes: 0, error_bytes: 0 };
        assert!(matches!(c.read_response(false, keep).await, Err(HttpError::Closed)));
    }
}
