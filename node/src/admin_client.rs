//! `tessera admin info`: calls the admin API of a running node, signed with
//! SigV4 by proto's signer (the one signing implementation of the project).
//! Plain HTTP to the admin listener, one request, blocking: an operator's
//! command, not a client library.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tessera_proto::sigv4::{sign_request, EMPTY_SHA256_HEX};
use tessera_proto::time::format_amz_date;
use tessera_proto::Headers;

/// How long connecting, and each read or write, may take.
pub const ADMIN_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest admin answer read.
pub const MAX_ADMIN_RESPONSE_BYTES: u64 = 16 << 20;

/// Credentials and where to send.
pub struct AdminClient {
    /// `host:port` of the admin listener.
    pub authority: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("authority", &self.authority)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// `http://host:port[/]` → `host:port`.
pub fn authority_of(endpoint: &str) -> Result<String, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("endpoint {endpoint:?} must start with http:// (the admin listener speaks plain HTTP)"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("endpoint {endpoint:?} must be http://HOST:PORT"));
    }
    Ok(authority.to_string())
}

impl AdminClient {
    /// GETs `path`; the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let now = tessera_proto::time::now_unix_secs();
        let mut headers = Headers::new();
        headers.push("host", &self.authority);
        headers.push("x-amz-content-sha256", EMPTY_SHA256_HEX);
        headers.push("x-amz-date", &format_amz_date(now));
        let authorization = sign_request(
            "GET",
            path,
            "",
            &headers,
            EMPTY_SHA256_HEX,
            &self.access_key,
            &self.secret_key,
            &self.region,
            now,
        );
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        for (n, v) in headers.iter() {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str(&format!("authorization: {authorization}\r\nconnection: close\r\n\r\n"));
        let addr = self
            .authority
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.authority))?
            .next()
            .ok_or_else(|| format!("{} resolves to nothing", self.authority))?;
        let mut s = TcpStream::connect_timeout(&addr, ADMIN_CLIENT_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(ADMIN_CLIENT_TIMEOUT)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(ADMIN_CLIENT_TIMEOUT)).map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        s.take(MAX_ADMIN_RESPONSE_BYTES).read_to_end(&mut raw).map_err(|e| format!("receive: {e}"))?;
        parse_response(&raw)
    }
}

/// Status and body of a `Connection: close` response read to its end.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("incomplete response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {:?}", head.lines().next().unwrap_or("")))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_responses() {
        assert_eq!(authority_of("http://127.0.0.1:9001/"), Ok("127.0.0.1:9001".to_string()));
        assert!(authority_of("https://x:1").is_err());
        assert!(authority_of("http://x:1/admin").is_err());
        assert_eq!(parse_response(b"HTTP/1.1 403 Forbidden\r\na: b\r\n\r\n{}\n"), Ok((403, "{}\n".to_string())));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
