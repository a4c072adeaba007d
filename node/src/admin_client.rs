//! `tessera admin info|buckets|scrub|heal|config`: calls the admin API of a
//! running node, signed with SigV4 by proto's signer (the one signing
//! implementation of the project). HTTP or HTTPS (rustls, trusting
//! `--ca-cert` or else the system's roots), one request, blocking: an
//! operator's command, not a client library.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
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
    /// HTTPS: the client configuration (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ClientConfig>>,
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

/// `http[s]://host:port[/]` → (`host:port`, whether HTTPS).
pub fn authority_of(endpoint: &str) -> Result<(String, bool), String> {
    let (rest, https) = match (endpoint.strip_prefix("http://"), endpoint.strip_prefix("https://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => return Err(format!("endpoint {endpoint:?} must start with http:// or https://")),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("endpoint {endpoint:?} must be http[s]://HOST:PORT"));
    }
    Ok((authority.to_string(), https))
}

/// A TLS client trusting the PEM certificates of `ca_cert`, or the
/// system's roots without it.
pub fn tls_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
                roots.add(c).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("--ca-cert {}: no certificate in the file", path.display()));
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl AdminClient {
    /// GETs `path`; the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.get_query(path, "")
    }

    /// GETs `path?query` (`query` already encoded: `name=value&...`).
    pub fn get_query(&self, path: &str, query: &str) -> Result<(u16, String), String> {
        self.call("GET", path, query)
    }

    /// `method path?query` without a body (admin requests carry none).
    pub fn call(&self, method: &str, path: &str, query: &str) -> Result<(u16, String), String> {
        let now = tessera_proto::time::now_unix_secs();
        let mut headers = Headers::new();
        headers.push("host", &self.authority);
        headers.push("x-amz-content-sha256", EMPTY_SHA256_HEX);
        headers.push("x-amz-date", &format_amz_date(now));
        let authorization = sign_request(
            method,
            path,
            query,
            &headers,
            EMPTY_SHA256_HEX,
            &self.access_key,
            &self.secret_key,
            &self.region,
            now,
        );
        let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
        let mut req = format!("{method} {target} HTTP/1.1\r\n");
        for (n, v) in headers.iter() {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str(&format!("authorization: {authorization}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"));
        let mut s = crate::remote_s3::connect_blocking(&self.authority, ADMIN_CLIENT_TIMEOUT)?;
        let mut raw = Vec::new();
        match &self.tls {
            None => {
                s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
                s.take(MAX_ADMIN_RESPONSE_BYTES).read_to_end(&mut raw).map_err(|e| format!("receive: {e}"))?;
            }
            Some(config) => {
                let host = self.authority.rsplit_once(':').map_or(self.authority.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
                let tls = rustls::ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
                let mut stream = rustls::StreamOwned::new(tls, s);
                stream.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
                // A server closing without close_notify after a whole
                // `Connection: close` response is read as the end.
                match stream.take(MAX_ADMIN_RESPONSE_BYTES).read_to_end(&mut raw) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                    Err(e) => return Err(format!("receive: {e}")),
                }
            }
        }
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
        assert_eq!(authority_of("http://127.0.0.1:9001/"), Ok(("127.0.0.1:9001".to_string(), false)));
        assert_eq!(authority_of("https://x:1"), Ok(("x:1".to_string(), true)));
        assert!(authority_of("ftp://x:1").is_err());
        assert!(authority_of("http://x:1/admin").is_err());
        assert_eq!(parse_response(b"HTTP/1.1 403 Forbidden\r\na: b\r\n\r\n{}\n"), Ok((403, "{}\n".to_string())));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
