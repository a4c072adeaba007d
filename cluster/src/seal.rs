//! Authenticated cluster datagrams (FORMAT BOUNDARY: every node of a
//! cluster must read what the others write).
//!
//! Nodes talk to each other with a key of their own, derived from the
//! cluster secret (`TESSERA_CLUSTER_SECRET`), never from S3 credentials. A
//! purpose label separates the keys of gossip and (later) RPC, so a frame
//! of one can never pass for the other. Each frame names the address it
//! was sent to and when it was sent, both under the MAC: a frame captured
//! on its way to one node is refused by every other node, and a frame
//! older (or newer) than `MAX_SKEW_MS` is refused everywhere.
//!
//! ```text
//!  0  magic      [u8; 4]  b"TSCG"
//!  4  version    u8       1
//!  5  purpose    u8       1 gossip
//!  6  reserved   [u8; 2]  0
//!  8  sent_ms    u64      sender's clock, Unix milliseconds
//! 16  to         [u8; 18] destination: IPv6 (or v4-mapped) address, port (big endian)
//! 34  payload    ...
//! end-32 mac     [u8; 32] HMAC-SHA256(purpose key, bytes [0, end-32))
//! ```

use std::net::{IpAddr, SocketAddr};

use ring::hmac;

pub const MAGIC: [u8; 4] = *b"TSCG";
pub const VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 34;
pub const MAC_BYTES: usize = 32;
/// A frame's clock may differ from the receiver's by this much.
pub const MAX_SKEW_MS: u64 = 120_000;
/// Shortest secret accepted: 16 bytes of key material at least.
pub const MIN_SECRET_BYTES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    Gossip = 1,
    /// The handshake of an RPC connection (see `rpc`).
    Rpc = 2,
}

/// Why a frame was refused. Refusals are counted by the caller, never
/// answered: an unauthenticated peer learns nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("frame too short")]
    Short,
    #[error("not a tessera cluster frame")]
    Magic,
    #[error("cluster frame version {0}")]
    Version(u8),
    #[error("frame of another purpose")]
    Purpose,
    #[error("frame authentication failed (another cluster secret?)")]
    Mac,
    #[error("frame addressed to another node")]
    Target,
    #[error("frame clock too far from ours (replay, or clocks apart)")]
    Stale,
}

/// The keys a node derives from the cluster secret.
#[derive(Clone)]
pub struct ClusterKey {
    gossip: hmac::Key,
    rpc: hmac::Key,
    forward: hmac::Key,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// Derives the purpose keys; `None` when the secret is too short.
    pub fn new(secret: &[u8]) -> Option<ClusterKey> {
        if secret.len() < MIN_SECRET_BYTES {
            return None;
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Some(ClusterKey {
            gossip: derive(b"tessera cluster gossip v1"),
            rpc: derive(b"tessera cluster rpc v1"),
            forward: derive(b"tessera cluster forward v1"),
        })
    }

    /// A 256-bit key for `label`, derived from the cluster secret the way
    /// the purpose keys are (HMAC-SHA256 of the label under a key that is
    /// the secret's own HMAC): the same on every node of the cluster, and
    /// unrelated to any other label's. `None` when the secret is too short.
    /// The node seals IAM secret keys and STS session tokens with such keys.
    pub fn derive_key(secret: &[u8], label: &[u8]) -> Option<[u8; 32]> {
        if secret.len() < MIN_SECRET_BYTES {
            return None;
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let k = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Some(hmac::sign(&k, b"tessera derived key").as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"))
    }

    /// The MAC a node puts on an S3 request it forwards to another node
    /// (the node's `forward` module says what `msg` covers).
    pub fn sign_forward(&self, msg: &[u8]) -> [u8; 32] {
        hmac::sign(&self.forward, msg).as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
    }

    /// Checks a forwarded request's MAC (constant time).
    pub fn verify_forward(&self, msg: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.forward, msg, tag).is_ok()
    }

    pub(crate) fn key(&self, p: Purpose) -> &hmac::Key {
        match p {
            Purpose::Gossip => &self.gossip,
            Purpose::Rpc => &self.rpc,
        }
    }

    /// Frames `payload` for `to`.
    pub fn seal(&self, p: Purpose, to: SocketAddr, sent_ms: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + payload.len() + MAC_BYTES);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(p as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&sent_ms.to_le_bytes());
        out.extend_from_slice(&addr_bytes(to));
        out.extend_from_slice(payload);
        let tag = hmac::sign(self.key(p), &out);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Checks a frame received at `me` at `now_ms`; its payload.
    pub fn open<'a>(&self, p: Purpose, me: SocketAddr, now_ms: u64, frame: &'a [u8]) -> Result<&'a [u8], Refused> {
        if frame.len() < HEADER_BYTES + MAC_BYTES {
            return Err(Refused::Short);
        }
        if frame[0..4] != MAGIC {
            return Err(Refused::Magic);
        }
        if frame[4] != VERSION {
            return Err(Refused::Version(frame[4]));
        }
        if frame[5] != p as u8 {
            return Err(Refused::Purpose);
        }
        let (body, tag) = frame.split_at(frame.len() - MAC_BYTES);
        hmac::verify(self.key(p), body, tag).map_err(|_| Refused::Mac)?;
        if frame[16..34] != addr_bytes(me) {
            return Err(Refused::Target);
        }
        let sent = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
        if sent.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(Refused::Stale);
        }
        Ok(&body[HEADER_BYTES..])
    }
}

fn addr_bytes(a: SocketAddr) -> [u8; 18] {
    let ip = match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut out = [0u8; 18];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&a.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn roundtrip_and_every_refusal() {
        let k = key("0123456789abcdef-secret");
        let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        let f = k.seal(Purpose::Gossip, a, 1_000_000, b"hello");
        assert_eq!(k.open(Purpose::Gossip, a, 1_000_500, &f), Ok(&b"hello"[..]));
        // A frame of one purpose never passes for another.
        assert_eq!(k.open(Purpose::Rpc, a, 1_000_500, &f), Err(Refused::Purpose));
        // Bound to its target.
        assert_eq!(k.open(Purpose::Gossip, b, 1_000_500, &f), Err(Refused::Target));
        // Another secret.
        assert_eq!(key("another secret, 16+").open(Purpose::Gossip, a, 1_000_000, &f), Err(Refused::Mac));
        // Any flipped bit anywhere is refused.
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(k.open(Purpose::Gossip, a, 1_000_000, &g).is_err(), "byte {i} bit {bit}");
            }
        }
        // Truncated.
        for n in 0..f.len() {
            assert!(k.open(Purpose::Gossip, a, 1_000_000, &f[..n]).is_err());
        }
        // Old or from the future.
        assert_eq!(k.open(Purpose::Gossip, a, 1_000_000 + MAX_SKEW_MS + 1, &f), Err(Refused::Stale));
        assert_eq!(k.open(Purpose::Gossip, a, 1_000_000 - MAX_SKEW_MS - 1, &f), Err(Refused::Stale));
        // IPv4 and its v6-mapped form are one address.
        let m: SocketAddr = "[::ffff:127.0.0.1]:7001".parse().unwrap();
        assert!(k.open(Purpose::Gossip, m, 1_000_000, &f).is_ok());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ClusterKey::new(b"short").is_none());
        assert!(ClusterKey::new(&[7u8; MIN_SECRET_BYTES]).is_some());
    }
}
