//! HTTP/1.1 over a plain TCP socket, byte for byte: for what an SDK never
//! sends (malformed requests, bad signatures, pipelining, truncated bodies).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use crate::sign::{sign_headers, sign_headers_reference, Payload};

/// How long a raw read waits for the server before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes a response head may have before the harness gives up.
const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    /// Path and query exactly as sent on the request line.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn new(method: &str, target: &str) -> Self {
        RawRequest {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body and a matching Content-Length header.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
        self.headers
            .push(("Content-Length".into(), self.body.len().to_string()));
        self
    }

    /// Sets the bytes sent after the head without touching the headers.
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Signs with SigV4 in headers; the payload hash is the SHA-256 of the body.
    pub fn sign(self, access_key: &str, secret_key: &str, time: SystemTime) -> Self {
        let body = self.body.clone();
        self.sign_payload(access_key, secret_key, time, Payload::Bytes(&body))
    }

    /// Signs with SigV4 in headers with the given payload mode
    /// (tessera-proto's signer).
    pub fn sign_payload(mut self, access_key: &str, secret_key: &str, time: SystemTime, payload: Payload<'_>) -> Self {
        assert!(self.get_header("host").is_some(), "set Host before signing");
        let added = sign_headers(
            &self.method,
            &self.target,
            &self.headers,
            payload,
            access_key,
            secret_key,
            time,
        );
        self.headers.extend(added);
        self
    }

    /// Signs with the AWS reference signer, which takes the path exactly as
    /// sent (like clients that leave '=' or ',' unencoded and sign that).
    pub fn sign_reference(mut self, access_key: &str, secret_key: &str, time: SystemTime) -> Self {
        let host = self.get_header("host").expect("set Host before signing").to_string();
        let uri = format!("http://{host}{}", self.target);
        let body = self.body.clone();
        let (added, _sig) = sign_headers_reference(
            &self.method,
            &uri,
            &self.headers,
            Payload::Bytes(&body),
            access_key,
            secret_key,
            time,
        );
        self.headers.extend(added);
        self
    }

    /// The `Signature=` part of the Authorization header.
    pub fn signature(&self) -> Option<&str> {
        self.get_header("authorization")?.split("Signature=").nth(1)
    }

    /// Request line and headers, ending with the empty line.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub reason: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Text of the first `<tag>...</tag>` in the body.
    pub fn xml(&self, tag: &str) -> Option<String> {
        xml_field(&self.body_text(), tag)
    }

    pub fn error_code(&self) -> Option<String> {
        self.xml("Code")
    }

    /// Asserts the status and the S3 error code, with the body on failure.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error_code().as_deref()),
            (status, Some(code)),
            "expected {status} {code}, got {} with headers {:?} and body {:?}",
            self.status,
            self.headers,
            self.body_text()
        );
    }
}

/// Text of the first `<tag>...</tag>` in `xml` (no attributes, no nesting of
/// the same tag; enough for S3's flat error and list documents).
pub fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(xml[start..end].to_string())
}

/// Texts of every `<tag>...</tag>` in `xml`, in order.
pub fn xml_fields(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let start = i + open.len();
        match rest[start..].find(&close) {
            Some(j) => {
                out.push(rest[start..start + j].to_string());
                rest = &rest[start + j + close.len()..];
            }
            None => break,
        }
    }
    out
}

/// One client connection; reads are buffered so pipelined responses that
/// arrive in one segment are split correctly.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes the write side (FIN): the server sees end of input.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes with RST instead of FIN (SO_LINGER 0), like a crashed client.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own, with a correctly sized value.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(self.stream);
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads the next response head, 1xx included.
    pub fn try_read_head(&mut self) -> io::Result<RawResponse> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let out = RawResponse {
                        status: resp.code.unwrap_or(0),
                        reason: resp.reason.unwrap_or("").to_string(),
                        headers: resp
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).trim().to_string(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    self.buf.drain(..len);
                    return Ok(out);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD_BYTES {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
                    }
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "connection closed before a complete response head ({} bytes buffered)",
                                self.buf.len()
                            ),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "unparsable response head: {e}: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
            }
        }
    }

    /// Reads the next response (1xx included) with its body, framed by
    /// Content-Length, chunked encoding, or the end of the connection.
    pub fn try_read_message(&mut self, request_method: &str) -> io::Result<RawResponse> {
        let mut resp = self.try_read_head()?;
        let no_body = request_method.eq_ignore_ascii_case("HEAD")
            || resp.status / 100 == 1
            || resp.status == 204
            || resp.status == 304;
        if no_body {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        if chunked {
            resp.body = self.read_chunked()?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad Content-Length {len:?}")))?;
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body ended after {} of {len} bytes", self.buf.len()),
                    ));
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill()? != 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunked body truncated"));
                }
            }
            body.extend(self.buf.drain(..size));
            let crlf: Vec<u8> = self.buf.drain(..2).collect();
            if crlf != b"\r\n" {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk not followed by CRLF"));
            }
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
        }
    }

    /// Reads the final response to a request (skipping any 1xx).
    #[track_caller]
    pub fn read_response_for(&mut self, request_method: &str) -> RawResponse {
        loop {
            let resp = self
                .try_read_message(request_method)
                .unwrap_or_else(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        panic!("no complete response to {request_method} within {READ_TIMEOUT:?}")
                    }
                    _ => panic!("reading response to {request_method}: {e}"),
                });
            if resp.status / 100 != 1 {
                return resp;
            }
        }
    }

    #[track_caller]
    pub fn read_response(&mut self) -> RawResponse {
        self.read_response_for("GET")
    }

    /// True if the server closed the connection (EOF or reset) within
    /// `timeout` without sending anything more.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let closed = loop {
            match self.fill() {
                Ok(0) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted && Instant::now() < deadline => continue,
                Err(_) => break false,
            }
        };
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        closed
    }

    /// Bytes received but not yet consumed by a parsed response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}
