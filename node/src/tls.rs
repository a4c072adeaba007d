//! TLS on the S3 listener: rustls (ring provider) driven by hand over the
//! reactor's monoio socket, so no second runtime and no extra thread.
//!
//! A `TlsSession` owns the `rustls::ServerConnection` and two ciphertext
//! buffers; `Conn` (see `conn.rs`) calls it instead of the raw socket for
//! every read and write, so every path that talks to the client (request
//! heads, bodies, streamed GETs, 100-continue, errors) is encrypted alike.
//! The certificate lives in an `ArcSwap` read by each new handshake: SIGHUP
//! swaps it (`TlsState::reload`), connections already open keep theirs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::conn::{ConnError, IO_TIMEOUT};

/// Longest time a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ciphertext read from the socket at once: a little more than one full
/// TLS record (16 KiB of data plus header, tag and padding).
pub const TLS_READ_BYTES: usize = 18 * 1024 + 512;
/// Plaintext handed to rustls per encryption step; rustls buffers at most
/// this much ciphertext before we send it.
pub const TLS_WRITE_CHUNK_BYTES: usize = 64 * 1024;
/// Largest certificate or key file read (a chain of a few certificates is
/// a few KiB; anything this big is not a PEM file for us).
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;
/// ALPN: the only protocol spoken.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Where the certificate chain and key are, and the configuration made of
/// them that new handshakes use.
pub struct TlsState {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl TlsState {
    /// Loads both files; any error names the file, never its content.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsState, String> {
        let config = server_config(cert_path, key_path)?;
        Ok(TlsState {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from(config),
        })
    }

    /// The configuration for a handshake starting now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again; on any error the old certificate keeps being
    /// served and the error is logged.
    pub fn reload(&self) {
        match server_config(&self.cert_path, &self.key_path) {
            Ok(c) => {
                self.current.store(c);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!("TLS certificate not reloaded, still serving the previous one: {e}"),
        }
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let mut data = Vec::new();
    f.take(MAX_PEM_FILE_BYTES + 1).read_to_end(&mut data).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(format!("{what} {}: larger than {MAX_PEM_FILE_BYTES} bytes", path.display()));
    }
    Ok(data)
}

/// A server configuration from PEM files: TLS 1.3 and 1.2, ALPN http/1.1.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = read_pem(cert_path, "--tls-cert")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: not a PEM certificate chain: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", cert_path.display()));
    }
    let key_pem = read_pem(key_path, "--tls-key")?;
    // The PEM parser's own messages may quote lines of the file: for a key
    // they stay unsaid.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!("--tls-key {}: no private key in the file", key_path.display()),
        _ => format!("--tls-key {}: not a PEM private key", key_path.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key {} and {}: {e}", cert_path.display(), key_path.display()))?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

fn tls_error(e: rustls::Error) -> ConnError {
    ConnError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// One connection's TLS state and ciphertext buffers.
pub struct TlsSession {
    tls: ServerConnection,
    /// Ciphertext received and not yet given to rustls: `inbuf[in_start..]`.
    inbuf: Vec<u8>,
    in_start: usize,
    /// Ciphertext to send (reused between writes).
    outbuf: Vec<u8>,
}

/// What the first bytes of a connection to the TLS port were.
pub enum Accepted {
    Tls(Box<TlsSession>),
    /// Not a TLS record: the client speaks plain HTTP to the TLS port.
    PlainHttp,
}

impl TlsSession {
    /// Runs the handshake (bounded by `TLS_HANDSHAKE_TIMEOUT`). A failed
    /// handshake sends rustls's alert when it can and returns the error;
    /// the caller closes the connection.
    pub async fn accept(stream: &mut TcpStream, config: Arc<ServerConfig>) -> Result<Accepted, ConnError> {
        let tls = ServerConnection::new(config).map_err(tls_error)?;
        let mut s = Box::new(TlsSession { tls, inbuf: Vec::with_capacity(TLS_READ_BYTES), in_start: 0, outbuf: Vec::new() });
        let handshake = async {
            s.read_socket(stream, TLS_HANDSHAKE_TIMEOUT).await?;
            // A TLS connection starts with a handshake record (type 22).
            if s.inbuf.first() != Some(&0x16) {
                return Ok(false);
            }
            while s.tls.is_handshaking() {
                // Consumes every buffered byte unless rustls stops reading.
                s.feed(stream).await?;
                if s.tls.is_handshaking() {
                    if !s.tls.wants_read() {
                        return Err(ConnError::Closed);
                    }
                    s.read_socket(stream, TLS_HANDSHAKE_TIMEOUT).await?;
                }
            }
            s.flush(stream).await?;
            Ok(true)
        };
        match monoio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(true)) => Ok(Accepted::Tls(s)),
            Ok(Ok(false)) => Ok(Accepted::PlainHttp),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnError::Timeout),
        }
    }

    /// Gives buffered ciphertext to rustls and sends what it answers
    /// (handshake messages, alerts, session tickets).
    async fn feed(&mut self, stream: &mut TcpStream) -> Result<(), ConnError> {
        while self.in_start < self.inbuf.len() {
            let mut rd = &self.inbuf[self.in_start..];
            // Only called with no plaintext pending, so rustls has room.
            let n = self.tls.read_tls(&mut rd).map_err(ConnError::Io)?;
            self.in_start += n;
            if let Err(e) = self.tls.process_new_packets() {
                // Tell the client why (an alert), then give up on it.
                let _ = self.flush(stream).await;
                return Err(tls_error(e));
            }
            if n == 0 || !self.tls.wants_read() {
                break;
            }
        }
        if self.in_start == self.inbuf.len() {
            self.inbuf.clear();
            self.in_start = 0;
        }
        self.flush(stream).await
    }

    /// Reads ciphertext from the socket; end of stream is `Closed`.
    async fn read_socket(&mut self, stream: &mut TcpStream, timeout: Duration) -> Result<(), ConnError> {
        if self.in_start > 0 {
            self.inbuf.drain(..self.in_start);
            self.in_start = 0;
        }
        if self.inbuf.capacity() - self.inbuf.len() < TLS_READ_BYTES / 2 {
            self.inbuf.reserve(TLS_READ_BYTES);
        }
        // (A timeout keeps the ciphertext buffered so far: `recv_within`.)
        let (res, buf) = crate::conn::recv_within(stream, std::mem::take(&mut self.inbuf), timeout).await;
        self.inbuf = buf;
        res.map(|_| ())
    }

    /// Sends every byte of ciphertext rustls has ready.
    async fn flush(&mut self, stream: &mut TcpStream) -> Result<(), ConnError> {
        while self.tls.wants_write() {
            let mut out = std::mem::take(&mut self.outbuf);
            out.clear();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut out).map_err(ConnError::Io)?;
            }
            match monoio::time::timeout(IO_TIMEOUT, stream.write_all(out)).await {
                Ok((Ok(_), out)) => self.outbuf = out,
                Ok((Err(e), _)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout),
            }
        }
        Ok(())
    }

    /// Decrypted bytes into `buf[len..capacity]`; reads the socket as
    /// needed. `Ok(0)` never happens: the end of the stream is `Closed`.
    pub async fn read(&mut self, stream: &mut TcpStream, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize, ConnError> {
        let len = buf.len();
        // rustls's reader wants initialised memory; the zeroing is small
        // next to the decryption of the same bytes.
        buf.resize(buf.capacity(), 0);
        let got = loop {
            match self.tls.reader().read(&mut buf[len..]) {
                Ok(0) => break Err(ConnError::Closed),
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => break Err(ConnError::Io(e)),
            }
            if self.in_start == self.inbuf.len() {
                if let Err(e) = self.read_socket(stream, timeout).await {
                    break Err(e);
                }
            }
            if let Err(e) = self.feed(stream).await {
                break Err(e);
            }
        };
        buf.truncate(len + *got.as_ref().unwrap_or(&0));
        got
    }

    /// Encrypts and sends all of `data`.
    pub async fn write_all(&mut self, stream: &mut TcpStream, data: &[u8]) -> Result<(), ConnError> {
        for chunk in data.chunks(TLS_WRITE_CHUNK_BYTES) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let n = self.tls.writer().write(rest).map_err(ConnError::Io)?;
                if n == 0 {
                    // Only after close_notify: nothing more may be sent.
                    return Err(ConnError::Closed);
                }
                rest = &rest[n..];
                self.flush(stream).await?;
            }
        }
        Ok(())
    }

    /// Sends close_notify: the client then knows the response is whole.
    pub async fn close(&mut self, stream: &mut TcpStream) {
        self.tls.send_close_notify();
        let _ = self.flush(stream).await;
    }
}
