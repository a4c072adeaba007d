//! HTTP/1.1 framing, sans-io: request heads (httparse), body framing
//! (Content-Length, chunked), response heads.
//!
//! WIRE BOUNDARY: what is accepted here is what every client sees; limits are
//! named constants and tested at their edge.

use std::ops::Range;

use crate::{Headers, S3Error, S3ErrorCode};

/// Largest request head (request line + headers) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines accepted in one request.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) in a chunked body.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Largest trailer section of a chunked body.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Options,
    Other,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// A parsed request line and header block.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// The method token as sent (for signing; `Other` methods keep their name).
    pub method_raw: String,
    /// The raw path, as on the wire, before any `?`.
    pub path: String,
    /// The raw query after `?` (without it); empty when none.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Headers,
}

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Length(u64),
    Chunked,
}

/// Errors of HTTP framing; all answer 400 and close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head too large")]
    HeadTooLarge,
    #[error("too many headers")]
    TooManyHeaders,
}

impl From<HttpError> for S3Error {
    fn from(e: HttpError) -> S3Error {
        match e {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => S3Error::with_message(
                S3ErrorCode::RequestHeaderSectionTooLarge,
                "Your request header section exceeds the maximum allowed size.",
            ),
            HttpError::Malformed(m) => S3Error::with_message(S3ErrorCode::BadRequest, m),
        }
    }
}

/// Parses a request head from the start of `buf`.
/// `Ok(None)`: incomplete, read more. `Ok(Some((head, n)))`: the head took `n` bytes.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed("malformed request head")),
    };
    let n = match status {
        httparse::Status::Partial => {
            if buf.len() > MAX_HEAD_BYTES {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        httparse::Status::Complete(n) => n,
    };
    if n > MAX_HEAD_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    let method_raw = req.method.ok_or(HttpError::Malformed("no method"))?;
    let target = req.path.ok_or(HttpError::Malformed("no request target"))?;
    let minor_version = req.version.ok_or(HttpError::Malformed("no version"))?;
    if !target.starts_with('/') {
        // Absolute-form and asterisk-form targets are not S3 requests.
        return Err(HttpError::Malformed("request target must be origin-form"));
    }
    let (path, query) = match target.find('?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, ""),
    };
    let mut headers = Headers::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed("header value is not UTF-8"))?;
        headers.push(h.name, value);
    }
    let head = RequestHead {
        method: Method::parse(method_raw),
        method_raw: method_raw.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        minor_version,
        headers,
    };
    Ok(Some((head, n)))
}

impl RequestHead {
    /// Whether the connection may serve another request after this one.
    pub fn keep_alive(&self) -> bool {
        let conn = self.headers.get("connection").map(|v| v.to_ascii_lowercase());
        match self.minor_version {
            0 => conn.is_some_and(|c| c.contains("keep-alive")),
            _ => !conn.is_some_and(|c| c.contains("close")),
        }
    }

    /// `Expect: 100-continue` was sent.
    pub fn expects_continue(&self) -> bool {
        self.headers.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// Body framing per RFC 9112 §6.3; conflicting or malformed framing is an error.
    pub fn framing(&self) -> Result<BodyFraming, HttpError> {
        let mut te = self.headers.get_all("transfer-encoding");
        if let Some(v) = te.next() {
            if te.next().is_some() || !v.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed("unsupported transfer-encoding"));
            }
            if self.headers.contains("content-length") {
                return Err(HttpError::Malformed("both content-length and transfer-encoding"));
            }
            return Ok(BodyFraming::Chunked);
        }
        let mut len: Option<u64> = None;
        for v in self.headers.get_all("content-length") {
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed("bad content-length"));
            }
            let n: u64 = v.parse().map_err(|_| HttpError::Malformed("bad content-length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed("conflicting content-length"));
            }
            len = Some(n);
        }
        Ok(BodyFraming::Length(len.unwrap_or(0)))
    }

    /// Whether a Content-Length header was present.
    pub fn has_content_length(&self) -> bool {
        self.headers.contains("content-length")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataCrlf,
    Trailers,
    Done,
}

/// Decoder of `Transfer-Encoding: chunked`, sans-io. Chunk extensions and
/// trailers are read and dropped (within limits).
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder { state: ChunkState::Size, line: Vec::new(), trailer_bytes: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes a prefix of `input`; returns (consumed, range of payload bytes in `input`).
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Range<usize>), HttpError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data(left) => {
                    let n = left.min((input.len() - pos) as u64) as usize;
                    let rest = left - n as u64;
                    self.state = if rest == 0 { ChunkState::DataCrlf } else { ChunkState::Data(rest) };
                    return Ok((pos + n, pos..pos + n));
                }
                ChunkState::Size | ChunkState::DataCrlf | ChunkState::Trailers => {
                    let Some(line) = self.take_line(input, &mut pos)? else { break };
                    self.on_line(&line)?;
                }
            }
        }
        Ok((pos, pos..pos))
    }

    /// Accumulates one CRLF-terminated line; `None` when more input is needed.
    fn take_line(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<Vec<u8>>, HttpError> {
        let rest = &input[*pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.line.extend_from_slice(&rest[..i]);
                *pos += i + 1;
                self.check_line_len()?;
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(Some(line))
            }
            None => {
                self.line.extend_from_slice(rest);
                *pos = input.len();
                self.check_line_len()?;
                Ok(None)
            }
        }
    }

    fn check_line_len(&self) -> Result<(), HttpError> {
        if self.line.len() > MAX_CHUNK_LINE_BYTES {
            return Err(HttpError::Malformed("chunk line too long"));
        }
        Ok(())
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), HttpError> {
        match self.state {
            ChunkState::Size => {
                let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
                let size = parse_hex_u64(trim_ascii(&line[..end]))
                    .ok_or(HttpError::Malformed("bad chunk size"))?;
                self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
            }
            ChunkState::DataCrlf => {
                if !line.is_empty() {
                    return Err(HttpError::Malformed("chunk data not followed by CRLF"));
                }
                self.state = ChunkState::Size;
            }
            ChunkState::Trailers => {
                if line.is_empty() {
                    self.state = ChunkState::Done;
                } else {
                    self.trailer_bytes += line.len();
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(HttpError::Malformed("trailer section too large"));
                    }
                }
            }
            ChunkState::Data(_) | ChunkState::Done => {}
        }
        Ok(())
    }
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &s[start..end]
}

/// Parses a non-empty hex number of at most 16 digits.
pub fn parse_hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        v = (v << 4) | d as u64;
    }
    Some(v)
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Serializes a response head into `out`. `headers` must not contain
/// Content-Length; `content_length` is written when `Some`. `http10`: the
/// request was HTTP/1.0, so keep-alive must be stated.
pub fn write_response_head<N: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(N, V)],
    content_length: Option<u64>,
    keep_alive: bool,
    http10: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref().as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // A CR, LF or NUL in a value would split the response: never written.
        let bad = |b: &u8| *b == b'\r' || *b == b'\n' || *b == 0;
        debug_assert!(!value.iter().any(bad), "{name}");
        if value.iter().any(bad) {
            out.extend(value.iter().map(|b| if bad(b) { b' ' } else { *b }));
        } else {
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    match (keep_alive, http10) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        // HTTP/1.0 closes unless keep-alive is confirmed.
        (true, true) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, false) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, without a `String` on the way.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal_digits(n, &mut [0; 20]));
}

/// The ASCII decimal digits of `n`, written at the end of `buf` (no
/// formatting machinery: response heads and ETags on every request).
pub fn decimal_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_written_byte_for_byte() {
        let mut out = Vec::new();
        write_response_head(&mut out, 206, &[("ETag", "\"abc\""), ("x-amz-meta-k", "v")], Some(1_234_567), true, false);
        assert_eq!(out, b"HTTP/1.1 206 Partial Content\r\nETag: \"abc\"\r\nx-amz-meta-k: v\r\nContent-Length: 1234567\r\n\r\n");
        for (n, text) in [(0u64, "0"), (9, "9"), (10, "10"), (u64::MAX, "18446744073709551615")] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, text.as_bytes());
        }
        let mut out = Vec::new();
        let none: &[(&str, String)] = &[];
        write_response_head(&mut out, 404, none, None, false, false);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    }

    fn head(raw: &str) -> RequestHead {
        parse_request_head(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn parses_path_query_headers() {
        let h = head("PUT /b/k%20y?uploads&x=1 HTTP/1.1\r\nHost: a\r\nX-Amz-Meta-A:  v \r\n\r\n");
        assert_eq!(h.method, Method::Put);
        assert_eq!(h.path, "/b/k%20y");
        assert_eq!(h.query, "uploads&x=1");
        assert_eq!(h.headers.get("x-amz-meta-a"), Some("v"));
        assert!(h.keep_alive());
    }

    #[test]
    fn partial_and_limits() {
        assert!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_request_head(big.as_bytes()).unwrap_err(), HttpError::HeadTooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("h{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse_request_head(many.as_bytes()).unwrap_err(), HttpError::TooManyHeaders);
        assert!(parse_request_head(b"GARBAGE\r\n\r\n").is_err());
        assert!(parse_request_head(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn framing_rules() {
        let cases: &[(&str, Result<BodyFraming, ()>)] = &[
            ("Content-Length: 5\r\n", Ok(BodyFraming::Length(5))),
            ("", Ok(BodyFraming::Length(0))),
            ("Transfer-Encoding: chunked\r\n", Ok(BodyFraming::Chunked)),
            ("Transfer-Encoding: gzip\r\n", Err(())),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", Err(())),
            ("Content-Length: 5\r\nContent-Length: 6\r\n", Err(())),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", Ok(BodyFraming::Length(5))),
            ("Content-Length: -1\r\n", Err(())),
            ("Content-Length: 99999999999999999999\r\n", Err(())),
        ];
        for (hdrs, want) in cases {
            let h = head(&format!("PUT /b/k HTTP/1.1\r\n{hdrs}\r\n"));
            assert_eq!(h.framing().map_err(|_| ()), *want, "{hdrs}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive());
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
    }

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), HttpError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                let (n, r) = d.feed(&buf)?;
                out.extend_from_slice(&buf[r]);
                buf.drain(..n);
                if n == 0 || buf.is_empty() {
                    break;
                }
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn chunked_decodes_at_any_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            let (out, done) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello world");
            assert!(done);
        }
    }

    #[test]
    fn chunked_rejects_bad_framing() {
        assert!(decode_all(b"zz\r\n", 4).is_err());
        assert!(decode_all(b"2\r\nabX\r\n", 8).is_err());
        let long = format!("{}\r\n", "0".repeat(MAX_CHUNK_LINE_BYTES + 1));
        assert!(decode_all(long.as_bytes(), 100).is_err());
        assert!(decode_all(b"11111111111111111\r\n", 100).is_err());
    }
}
