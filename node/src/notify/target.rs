//! Notification targets: where events go. A target is driven by one sender
//! thread per reactor (see `worker`), so its `send` may block: a Kafka,
//! NATS or AMQP target implements [`Target`] with its own client library
//! (blocking, or its own runtime behind the call) and is added to
//! [`build`]. `send` returns only when the receiver has taken the event
//! (for a webhook: a 2xx), because the queue entry is deleted then.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::WebhookSpec;

/// Connecting, and each read or write, of a webhook delivery.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head or body a webhook delivery reads.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// A destination of events.
pub trait Target: Send {
    /// The operator's id (its queue's key prefix).
    fn id(&self) -> &str;
    /// Delivers one event message (AWS's JSON). `Ok` once the receiver has
    /// accepted it; `Err` (the reason, for logs) means retry later.
    fn send(&mut self, message: &[u8]) -> Result<(), String>;
}

/// The target of an operator's spec.
pub fn build(spec: &WebhookSpec) -> Result<Box<dyn Target>, String> {
    Ok(Box::new(Webhook::new(spec)?))
}

/// A parsed `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// `host:port` (port filled in).
    pub authority: String,
    pub host: String,
    /// `Host` header value (as written).
    pub host_header: String,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let (rest, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => return Err(format!("URL {url:?} must start with http:// or https://")),
    };
    let (auth, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if auth.is_empty() || auth.contains('@') || path.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(format!("URL {url:?} must be http[s]://HOST[:PORT][/PATH], without credentials or spaces"));
    }
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| format!("URL {url:?}: bad port"))?),
        _ => (auth, if https { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("URL {url:?}: no host"));
    }
    Ok(Url {
        https,
        authority: format!("{host}:{port}"),
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        host_header: auth.to_string(),
        path,
    })
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// POSTs each event to a URL over one kept-alive connection (re-opened
/// after any failure).
pub struct Webhook {
    id: String,
    url: Url,
    auth: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<BufReader<Box<dyn Stream>>>,
}

impl Webhook {
    pub fn new(spec: &WebhookSpec) -> Result<Self, String> {
        let url = parse_url(&spec.url)?;
        let tls = if url.https { Some(crate::admin_client::tls_config(spec.ca_file.as_deref())?) } else { None };
        let auth = spec.auth_token.as_ref().map(|t| if t.contains(' ') { t.clone() } else { format!("Bearer {t}") });
        Ok(Webhook { id: spec.id.clone(), url, auth, tls, conn: None })
    }

    fn connect(&self) -> Result<BufReader<Box<dyn Stream>>, String> {
        let addr = self
            .url
            .authority
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.url.authority))?
            .next()
            .ok_or_else(|| format!("{} resolves to nothing", self.url.authority))?;
        let s = TcpStream::connect_timeout(&addr, WEBHOOK_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(WEBHOOK_TIMEOUT)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(WEBHOOK_TIMEOUT)).map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(s),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.url.host.clone())
                    .map_err(|e| format!("{}: not a TLS server name: {e}", self.url.host))?;
                let tls = rustls::ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
                Box::new(rustls::StreamOwned::new(tls, s))
            }
        };
        Ok(BufReader::new(stream))
    }

    fn post(&mut self, message: &[u8]) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let mut head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nuser-agent: tessera\r\n",
            self.url.path,
            self.url.host_header,
            message.len()
        );
        if let Some(a) = &self.auth {
            head.push_str(&format!("authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let w = conn.get_mut();
        w.write_all(head.as_bytes()).and_then(|_| w.write_all(message)).and_then(|_| w.flush()).map_err(|e| format!("send: {e}"))?;
        let (status, keep) = read_response(conn)?;
        if !keep {
            self.conn = None;
        }
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

impl Target for Webhook {
    fn id(&self) -> &str {
        &self.id
    }

    fn send(&mut self, message: &[u8]) -> Result<(), String> {
        let r = self.post(message);
        if r.is_err() {
            // Whatever the state of the connection, start over on a fresh one.
            self.conn = None;
        }
        r
    }
}

/// What a caller keeps of a response besides its status (see
/// [`read_response_into`]).
#[derive(Debug, Default)]
pub struct Reply {
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one response: its status and whether the connection may be kept.
pub(crate) fn read_response(r: &mut impl BufRead) -> Result<(u16, bool), String> {
    read_response_into(r, None, MAX_RESPONSE_BYTES)
}

/// `read_response` that keeps the headers and a body of at most
/// `max_body` bytes in `out` (discarded when `out` is `None`).
pub(crate) fn read_response_into(r: &mut impl BufRead, mut out: Option<&mut Reply>, max_body: u64) -> Result<(u16, bool), String> {
    let mut line = String::new();
    let mut head_bytes = 0u64;
    let mut next_line = |r: &mut dyn BufRead, line: &mut String| -> Result<(), String> {
        line.clear();
        let n = r.take(MAX_RESPONSE_BYTES - head_bytes.min(MAX_RESPONSE_BYTES)).read_line(line).map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            return Err("the receiver closed the connection".into());
        }
        head_bytes += n as u64;
        Ok(())
    };
    next_line(r, &mut line)?;
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut keep = version == "HTTP/1.1";
    let (mut length, mut chunked) = (None, false);
    loop {
        next_line(r, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((n, v)) = l.split_once(':') else { continue };
        let (n, v) = (n.trim().to_ascii_lowercase(), v.trim());
        if let Some(o) = out.as_deref_mut() {
            o.headers.push((n.clone(), v.to_string()));
        }
        match n.as_str() {
            "content-length" => length = Some(v.parse::<u64>().map_err(|_| "bad content-length")?),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "connection" if v.eq_ignore_ascii_case("close") => keep = false,
            "connection" if v.eq_ignore_ascii_case("keep-alive") => keep = true,
            _ => {}
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((status, keep));
    }
    if chunked {
        loop {
            next_line(r, &mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| "bad chunk size")?;
            if size > max_body {
                return Err("response chunk too large".into());
            }
            copy_body(r, size, out.as_deref_mut(), max_body)?;
            next_line(r, &mut line)?;
            if size == 0 {
                // `line` was the first trailer line or the final CRLF.
                while !line.trim_end().is_empty() {
                    next_line(r, &mut line)?;
                }
                break;
            }
        }
    } else if let Some(n) = length {
        if n > max_body {
            return Err("response body too large".into());
        }
        let got = copy_body(r, n, out.as_deref_mut(), max_body)?;
        if got < n {
            return Err("the receiver closed the connection mid-body".into());
        }
    } else {
        // Delimited by the close.
        let _ = copy_body(r, max_body, out, max_body);
        keep = false;
    }
    Ok((status, keep))
}

/// Reads `n` body bytes into `out` (at most `max_body` in all) or nowhere.
fn copy_body(r: &mut impl BufRead, n: u64, out: Option<&mut Reply>, max_body: u64) -> Result<u64, String> {
    let got = match out {
        None => std::io::copy(&mut Read::take(&mut *r, n), &mut std::io::sink()),
        Some(o) => {
            if o.body.len() as u64 + n > max_body {
                return Err("response body too large".into());
            }
            std::io::copy(&mut Read::take(&mut *r, n), &mut o.body)
        }
    };
    got.map_err(|e| format!("receive: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str(), u.https), ("127.0.0.1:8080", "/hook?x=1", false));
        let u = parse_url("https://example.com").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str(), u.host.as_str()), ("example.com:443", "/", "example.com"));
        let u = parse_url("http://[::1]:9/").unwrap();
        assert_eq!((u.authority.as_str(), u.host.as_str()), ("[::1]:9", "::1"));
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://u:p@x/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://x:notaport/").is_err());
    }

    #[test]
    fn responses() {
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 500 X\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.0 204 No\r\n\r\n"[..]);
        assert_eq!(read_response(&mut r), Ok((200, true)));
        assert_eq!(read_response(&mut r), Ok((500, true)));
        assert_eq!(read_response(&mut r), Ok((204, false)));
        assert!(read_response(&mut r).is_err(), "closed");
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nwhatever"[..]);
        assert_eq!(read_response(&mut r), Ok((200, false)));
    }
}
