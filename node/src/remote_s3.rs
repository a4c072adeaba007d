//! A remote S3 endpoint the operator names (a replication target, a
//! storage tier): its spec (URL and credentials, from the flag, a secret
//! file or the environment) and a small blocking client: SigV4-signed
//! HTTP/1.1 requests over one kept-alive connection (re-opened after any
//! failure). The client runs on a sender thread, never on a reactor.

use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tessera_proto::sigv4::{sign_request, UNSIGNED_PAYLOAD};
use tessera_proto::time::{format_amz_date, now_unix_secs};
use tessera_proto::Headers;

use crate::notify::target::{parse_url, read_response_into, Reply};

/// Connecting, and each read or write.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// One request to the remote.
#[derive(Debug, Clone)]
pub struct RemoteRequest {
    pub method: &'static str,
    /// Already URI-encoded (`encode_path`).
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A streamed request body: its length, then chunks from the reactor that
/// reads it (an `Err` aborts the request: the connection is dropped and
/// the outcome is a retry).
pub type Chunks = async_channel::Receiver<Result<Vec<u8>, String>>;

/// An object sent as a multipart upload (`Remote::send_multipart`): the
/// object's path, the headers of CreateMultipartUpload (its metadata) and
/// of CompleteMultipartUpload, and the parts' sizes in order. The body
/// comes as one stream of chunks, none crossing a part's end.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    /// Already URI-encoded (`encode_path`).
    pub path: String,
    pub create_headers: Vec<(String, String)>,
    pub complete_headers: Vec<(String, String)>,
    pub parts: Vec<u64>,
}

/// Largest answer kept from CreateMultipartUpload, UploadPart and
/// CompleteMultipartUpload (their XML is small).
const MULTIPART_ANSWER_BYTES: u64 = 1 << 20;

/// What follows a request's head.
enum Payload<'a> {
    Bytes(&'a [u8]),
    Stream(u64, &'a Chunks),
}

/// How the remote took a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The remote refused it for good (4xx but 408/429).
    Refused(String),
    /// Unreachable, 5xx, 408 or 429: retried after a backoff.
    Retry(String),
}

/// One remote as the operator configured it.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    pub id: String,
    /// `http://host:port` of the remote's S3 endpoint.
    pub url: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl std::fmt::Debug for RemoteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSpec")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("region", &self.region)
            .finish()
    }
}

/// `NAME=http://HOST:PORT[/PATH],ACCESS_KEY,SECRET_KEY[,region=R][,secret-file=PATH]`
/// and the options `extra` accepts (`flag` names the option in errors).
/// With `secret-file`, SECRET_KEY may be empty. The URL's path (`/` when
/// absent) is returned beside the spec, whose `url` has none.
pub fn parse_spec(
    flag: &str,
    s: &str,
    extra: &mut dyn FnMut(&str, &str) -> Result<bool, String>,
) -> Result<(RemoteSpec, String), String> {
    let (id, rest) = s.split_once('=').ok_or_else(|| format!("{flag} {s:?}: expected NAME=URL,ACCESS,SECRET"))?;
    let id = id.trim();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return Err(format!("{flag}: name {id:?} must be 1 to 64 of A-Z a-z 0-9 - _"));
    }
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or("").trim().to_string();
    let u = parse_url(&url).map_err(|e| format!("{flag} {id}: {e}"))?;
    if u.https || u.path.contains('?') {
        return Err(format!("{flag} {id}: URL must be http://HOST:PORT[/PATH] (https is not supported yet)"));
    }
    let access_key = parts.next().unwrap_or("").trim().to_string();
    let mut secret_key = parts.next().unwrap_or("").trim().to_string();
    let mut region = "us-east-1".to_string();
    for p in parts {
        match p.split_once('=') {
            Some(("region", v)) => region = v.trim().to_string(),
            Some(("secret-file", v)) => {
                let t = std::fs::read_to_string(v.trim()).map_err(|e| format!("{flag} {id}: secret-file {v}: {e}"))?;
                secret_key = t.trim().to_string();
            }
            Some((k, v)) if extra(k.trim(), v.trim())? => {}
            _ => return Err(format!("{flag} {id}: unknown option {p:?}")),
        }
    }
    if access_key.is_empty() || secret_key.is_empty() {
        return Err(format!("{flag} {id}: an access key and a secret key are required"));
    }
    let base = format!("http://{}", u.host_header);
    Ok((RemoteSpec { id: id.to_string(), url: base, access_key, secret_key, region }, u.path))
}

pub struct Remote {
    spec: RemoteSpec,
    authority: String,
    host_header: String,
    conn: Option<BufReader<TcpStream>>,
}

/// `/bucket/key` with every byte but the unreserved ones and `/` encoded.
pub fn encode_path(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 2);
    out.push('/');
    out.push_str(bucket);
    out.push('/');
    for &c in key.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(c as char),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

/// `k=v&...` form encoding (for `x-amz-tagging` and queries).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(c as char),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

impl Remote {
    pub fn new(spec: &RemoteSpec) -> Result<Self, String> {
        let u = parse_url(&spec.url)?;
        Ok(Remote { spec: spec.clone(), authority: u.authority, host_header: u.host_header, conn: None })
    }

    fn connect(&self) -> Result<BufReader<TcpStream>, String> {
        let s = connect_blocking(&self.authority, REMOTE_TIMEOUT)?;
        let _ = s.set_nodelay(true);
        Ok(BufReader::new(s))
    }

    /// Sends `r` and reads the answer.
    pub fn send(&mut self, r: &RemoteRequest) -> Outcome {
        self.send_keeping(r, None, 1 << 20)
    }

    /// `send` that keeps the answer's headers and body (at most `max_body`
    /// bytes) in `out`.
    pub fn send_keeping(&mut self, r: &RemoteRequest, out: Option<&mut Reply>, max_body: u64) -> Outcome {
        self.outcome(r, Payload::Bytes(&r.body), out, max_body)
    }

    /// Sends `r` with a body of `len` bytes taken from `chunks` (`r.body`
    /// is not sent), so a body of any size passes with bounded memory.
    pub fn send_streamed(&mut self, r: &RemoteRequest, len: u64, chunks: &Chunks) -> Outcome {
        self.send_streamed_keeping(r, len, chunks, None)
    }

    /// `send_streamed` that keeps the answer's headers (and a body of at
    /// most 1 MiB) in `out`.
    pub fn send_streamed_keeping(&mut self, r: &RemoteRequest, len: u64, chunks: &Chunks, out: Option<&mut Reply>) -> Outcome {
        self.outcome(r, Payload::Stream(len, chunks), out, 1 << 20)
    }

    /// Sends an object as a multipart upload: CreateMultipartUpload, each
    /// part streamed from `chunks` (`len` bytes in all), then
    /// CompleteMultipartUpload. When a step fails after the upload was
    /// made, the upload is aborted (best effort: an upload the remote kept
    /// is left to its lifecycle) and that step's outcome is the answer.
    /// `out`, when given, gets the CompleteMultipartUpload's answer.
    pub fn send_multipart(&mut self, m: &MultipartUpload, chunks: &Chunks, out: Option<&mut Reply>) -> Outcome {
        let create = RemoteRequest { method: "POST", path: m.path.clone(), query: "uploads".into(), headers: m.create_headers.clone(), body: Vec::new() };
        let mut reply = Reply::default();
        match self.send_keeping(&create, Some(&mut reply), MULTIPART_ANSWER_BYTES) {
            Outcome::Done => {}
            o => return o,
        }
        let Some(id) = xml_text(&reply.body, "UploadId") else {
            return Outcome::Retry(format!("POST {}?uploads answered no UploadId", m.path));
        };
        let outcome = self.upload_parts(m, &id, chunks, out);
        if outcome != Outcome::Done {
            let abort = RemoteRequest { method: "DELETE", path: m.path.clone(), query: format!("uploadId={}", form_encode(&id)), headers: Vec::new(), body: Vec::new() };
            match self.send(&abort) {
                Outcome::Done => {}
                Outcome::Refused(e) | Outcome::Retry(e) => tracing::warn!(path = %m.path, upload_id = %id, "a failed multipart replication's upload was not aborted, left to the remote's lifecycle: {e}"),
            }
        }
        outcome
    }

    /// The parts and the Complete of upload `id`.
    fn upload_parts(&mut self, m: &MultipartUpload, id: &str, chunks: &Chunks, out: Option<&mut Reply>) -> Outcome {
        let upload = form_encode(id);
        let mut etags = Vec::with_capacity(m.parts.len());
        for (i, &len) in m.parts.iter().enumerate() {
            let query = format!("partNumber={}&uploadId={upload}", i + 1);
            let req = RemoteRequest { method: "PUT", path: m.path.clone(), query, headers: Vec::new(), body: Vec::new() };
            let mut reply = Reply::default();
            match self.outcome(&req, Payload::Stream(len, chunks), Some(&mut reply), MULTIPART_ANSWER_BYTES) {
                Outcome::Done => {}
                o => return o,
            }
            let Some(etag) = reply.header("etag") else {
                return Outcome::Retry(format!("PUT {} part {} answered no ETag", m.path, i + 1));
            };
            etags.push(etag.to_string());
        }
        let mut body = String::from("<CompleteMultipartUpload>");
        for (i, e) in etags.iter().enumerate() {
            body.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>", i + 1));
            tessera_proto::xml::escape_into(&mut body, e);
            body.push_str("</ETag></Part>");
        }
        body.push_str("</CompleteMultipartUpload>");
        let req = RemoteRequest {
            method: "POST",
            path: m.path.clone(),
            query: format!("uploadId={upload}"),
            headers: m.complete_headers.clone(),
            body: body.into_bytes(),
        };
        let mut own = Reply::default();
        let reply = match out {
            Some(r) => r,
            None => &mut own,
        };
        match self.send_keeping(&req, Some(&mut *reply), MULTIPART_ANSWER_BYTES) {
            // S3 may answer 200 with an error in the body (retried, as S3
            // says to).
            Outcome::Done if xml_text(&reply.body, "Code").is_some() => {
                Outcome::Retry(format!("POST {}?uploadId answered 200 with an error: {}", m.path, String::from_utf8_lossy(&reply.body)))
            }
            o => o,
        }
    }

    fn outcome(&mut self, r: &RemoteRequest, body: Payload<'_>, out: Option<&mut Reply>, max_body: u64) -> Outcome {
        match self.exchange(r, body, out, max_body) {
            Ok(status) if (200..300).contains(&status) => Outcome::Done,
            Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                Outcome::Refused(format!("{} {} answered {status}", r.method, r.path))
            }
            Ok(status) => {
                self.conn = None;
                Outcome::Retry(format!("{} {} answered {status}", r.method, r.path))
            }
            Err(e) => {
                self.conn = None;
                Outcome::Retry(e)
            }
        }
    }

    fn exchange(&mut self, r: &RemoteRequest, body: Payload<'_>, out: Option<&mut Reply>, max_body: u64) -> Result<u16, String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let now = now_unix_secs();
        let mut h = Headers::new();
        h.push("host", &self.host_header);
        h.push("x-amz-date", &format_amz_date(now));
        h.push("x-amz-content-sha256", UNSIGNED_PAYLOAD);
        let len = match body {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Stream(n, _) => n,
        };
        h.push("content-length", &len.to_string());
        for (n, v) in &r.headers {
            h.push(n, v);
        }
        let s = &self.spec;
        let auth = sign_request(r.method, &r.path, &r.query, &h, UNSIGNED_PAYLOAD, &s.access_key, &s.secret_key, &s.region, now);
        let target = if r.query.is_empty() { r.path.clone() } else { format!("{}?{}", r.path, r.query) };
        let mut head = format!("{} {target} HTTP/1.1\r\n", r.method);
        for (n, v) in h.iter() {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("authorization: {auth}\r\nuser-agent: tessera\r\n\r\n"));
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let w = conn.get_mut();
        w.write_all(head.as_bytes()).map_err(|e| format!("send: {e}"))?;
        match body {
            Payload::Bytes(b) => w.write_all(b).map_err(|e| format!("send: {e}"))?,
            Payload::Stream(len, chunks) => {
                let mut sent = 0u64;
                while sent < len {
                    let chunk = chunks.recv_blocking().map_err(|_| "the body's reader went away".to_string())??;
                    if chunk.is_empty() || sent + chunk.len() as u64 > len {
                        return Err(format!("the body is not the {len} bytes announced"));
                    }
                    w.write_all(&chunk).map_err(|e| format!("send: {e}"))?;
                    sent += chunk.len() as u64;
                }
            }
        }
        w.flush().map_err(|e| format!("send: {e}"))?;
        let (status, keep) = read_response_into(conn, out, max_body)?;
        if !keep {
            self.conn = None;
        }
        Ok(status)
    }
}

/// The text of the first `<name>` element of an XML answer (no nested
/// elements expected: UploadId, Code).
pub(crate) fn xml_text(body: &[u8], name: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = s.find(&open)? + open.len();
    let end = start + s[start..].find('<')?;
    Some(s[start..end].trim().to_string()).filter(|t| !t.is_empty())
}

/// A blocking TCP connection to `authority` (host:port, resolved here),
/// with `timeout` for the connect and for every read and write (the
/// remote-S3 client and `tessera admin`).
pub fn connect_blocking(authority: &str, timeout: std::time::Duration) -> Result<TcpStream, String> {
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_uri_encoded() {
        assert_eq!(encode_path("b", "a b/c+d~é"), "/b/a%20b/c%2Bd~%C3%A9");
        assert_eq!(form_encode("k=v&x"), "k%3Dv%26x");
    }

    #[test]
    fn xml_answers_give_their_text() {
        let b = b"<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId>ab12</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(xml_text(b, "UploadId").as_deref(), Some("ab12"));
        assert_eq!(xml_text(b, "Code"), None);
        assert_eq!(xml_text(b"<Error><Code>InternalError</Code></Error>", "Code").as_deref(), Some("InternalError"));
        assert_eq!(xml_text(b"<UploadId></UploadId>", "UploadId"), None);
    }
}
