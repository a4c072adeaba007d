//! Inter-node RPC framing (FORMAT BOUNDARY), sans-IO: the handshake that
//! opens a connection and the frames that travel on it. The node moves
//! the bytes (TCP on its cluster address); everything that decides what
//! is accepted is here, with its tests.
//!
//! **Handshake.** The client sends a `Hello` (role client, its node id,
//! the node id it means to reach or zeros for "whoever is at this
//! address", a fresh 32-byte nonce, its clock), MACed with the RPC key of
//! the cluster secret. The server checks it (MAC, role, that it is the
//! node meant, clock within ±120 s) and answers its own `Hello` (role
//! server, its id, the client's id, a fresh nonce, and the client's nonce
//! echoed, so an old answer cannot be replayed into a new handshake). Both
//! then derive the connection's key: HMAC(rpc key, "session" ‖ client
//! nonce ‖ server nonce ‖ client id ‖ server id). Without the secret
//! nobody gets past the hello; the node answers nothing and closes.
//!
//! ```text
//! hello (112 bytes)
//!  0 magic "TSCR" | 4 version 1 | 5 role (1 client, 2 server) | 6 features u8 | 7 reserved
//!  8 sent_ms u64 | 16 from [16] | 32 to [16] | 48 nonce [32]
//! 80 mac [32] = HMAC-SHA256(rpc key, bytes [0, 80) ‖ echoed client nonce (server only))
//! ```
//!
//! **Frames.** Each direction numbers its frames from 0 (implicitly: TCP
//! keeps the order), and a frame's tag covers its direction and number, so
//! a frame cannot be replayed, reordered, dropped unnoticed, or reflected
//! back to its sender. A frame is bound to its method and call id: a
//! response names the call it answers.
//!
//! ```text
//! frame
//!  0 payload_len u32 | 4 kind u8 (1 request, 2 response, 3 error) | 5 reserved u8
//!  6 method u16 | 8 call u64 | 16 deadline_ms u32 (time left when sent; 0 none) | 20 reserved u32
//! 24 payload | then tag [16] = HMAC-SHA256(session key, direction ‖ number ‖ header ‖ payload)[..16]
//! ```
//!
//! **Sealed frames.** A hello's `features` byte says what its sender
//! can do (builds before it sent 0, and ignore it); when both hellos
//! carry `FEATURE_AEAD`, the connection's frames are sealed with
//! AES-256-GCM instead: the key HMAC(rpc key, "session-aead" ‖ the same
//! inputs), the nonce direction ‖ 0 [3] ‖ number (u64 LE), the header as
//! associated data, the payload encrypted and the GCM tag in the tag's
//! place (same layout). The same guarantees (a frame's number is in its
//! nonce), the payload hidden from the network, and about twice as fast
//! as HMAC-SHA256 on this machine's class of CPU (AES-NI).

use ring::hmac;

use crate::gossip::NODE_ID_BYTES;
use crate::seal::{ClusterKey, Purpose, Refused, MAX_SKEW_MS};

pub const MAGIC: [u8; 4] = *b"TSCR";
pub const VERSION: u8 = 1;
pub const HELLO_BYTES: usize = 112;
const HELLO_MACED: usize = 80;
pub const NONCE_BYTES: usize = 32;
/// A `Hello::features` bit: frames may be sealed with AES-256-GCM.
pub const FEATURE_AEAD: u8 = 1;
/// What this build offers in its hellos.
pub const FEATURES: u8 = FEATURE_AEAD;
pub const FRAME_HEADER_BYTES: usize = 24;
pub const TAG_BYTES: usize = 16;
/// Largest payload of one frame: bulk data moves in pieces of at most this.
pub const MAX_PAYLOAD_BYTES: u32 = 16 << 20;

pub type NodeId = [u8; NODE_ID_BYTES];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client = 1,
    Server = 2,
}

/// One side's greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    pub sent_ms: u64,
    pub from: NodeId,
    /// The node meant (zeros in a client's hello: whoever is there).
    pub to: NodeId,
    pub nonce: [u8; NONCE_BYTES],
    /// `FEATURE_*` bits the sender supports (0 from older builds).
    pub features: u8,
}

impl Hello {
    /// `echo`: the client's nonce, in a server's hello.
    pub fn encode(&self, key: &ClusterKey, echo: Option<&[u8; NONCE_BYTES]>) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.role as u8;
        b[6] = self.features;
        b[8..16].copy_from_slice(&self.sent_ms.to_le_bytes());
        b[16..32].copy_from_slice(&self.from);
        b[32..48].copy_from_slice(&self.to);
        b[48..80].copy_from_slice(&self.nonce);
        let tag = hello_tag(key, &b[..HELLO_MACED], echo);
        b[HELLO_MACED..].copy_from_slice(tag.as_ref());
        b
    }

    /// Checks a hello: the MAC (with the echoed nonce for a server's), the
    /// version, the role expected and the clock.
    pub fn decode(
        key: &ClusterKey,
        b: &[u8],
        role: Role,
        echo: Option<&[u8; NONCE_BYTES]>,
        now_ms: u64,
    ) -> Result<Hello, Refused> {
        if b.len() != HELLO_BYTES {
            return Err(Refused::Short);
        }
        if b[0..4] != MAGIC {
            return Err(Refused::Magic);
        }
        if b[4] != VERSION {
            return Err(Refused::Version(b[4]));
        }
        let expected = hello_tag(key, &b[..HELLO_MACED], echo);
        if !constant_eq(expected.as_ref(), &b[HELLO_MACED..]) {
            return Err(Refused::Mac);
        }
        if b[5] != role as u8 {
            return Err(Refused::Purpose);
        }
        let sent_ms = u64::from_le_bytes(b[8..16].try_into().expect("8"));
        if sent_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(Refused::Stale);
        }
        Ok(Hello {
            role,
            sent_ms,
            from: b[16..32].try_into().expect("16"),
            to: b[32..48].try_into().expect("16"),
            nonce: b[48..80].try_into().expect("32"),
            features: b[6],
        })
    }
}

fn hello_tag(key: &ClusterKey, maced: &[u8], echo: Option<&[u8; NONCE_BYTES]>) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key.key(Purpose::Rpc));
    ctx.update(maced);
    if let Some(e) = echo {
        ctx.update(e);
    }
    ctx.sign()
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Request = 1,
    Response = 2,
    Error = 3,
}

/// A frame's header, as read before its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub kind: FrameKind,
    pub method: u16,
    pub call: u64,
    pub deadline_ms: u32,
}

impl FrameHeader {
    fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        h[0..4].copy_from_slice(&self.payload_len.to_le_bytes());
        h[4] = self.kind as u8;
        h[6..8].copy_from_slice(&self.method.to_le_bytes());
        h[8..16].copy_from_slice(&self.call.to_le_bytes());
        h[16..20].copy_from_slice(&self.deadline_ms.to_le_bytes());
        h
    }

    /// Parses a header. Unauthenticated until [`Session::open`] checks
    /// the tag: only the length is used before that, and it is bounded.
    pub fn decode(h: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, Refused> {
        let payload_len = u32::from_le_bytes(h[0..4].try_into().expect("4"));
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(Refused::Short);
        }
        let kind = match h[4] {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::Error,
            _ => return Err(Refused::Magic),
        };
        if h[5] != 0 || h[20..24] != [0; 4] {
            return Err(Refused::Magic);
        }
        Ok(FrameHeader {
            payload_len,
            kind,
            method: u16::from_le_bytes(h[6..8].try_into().expect("2")),
            call: u64::from_le_bytes(h[8..16].try_into().expect("8")),
            deadline_ms: u32::from_le_bytes(h[16..20].try_into().expect("4")),
        })
    }

    /// Bytes after the header: the payload and the tag.
    pub fn rest_len(&self) -> usize {
        self.payload_len as usize + TAG_BYTES
    }
}

/// How a connection's frames are protected.
enum Protect {
    Hmac(hmac::Key),
    Aead(ring::aead::LessSafeKey),
}

/// One end of an established connection.
pub struct Session {
    key: Protect,
    role: Role,
    sent: u64,
    received: u64,
    /// The peer's node id, as its hello said (authenticated).
    pub peer: NodeId,
}

impl Session {
    /// Derives the connection's key from both hellos.
    /// Frames are sealed (AES-256-GCM) when both hellos offer it.
    pub fn new(key: &ClusterKey, role: Role, client: &Hello, server: &Hello) -> Session {
        let aead = client.features & server.features & FEATURE_AEAD != 0;
        let mut ctx = hmac::Context::with_key(key.key(Purpose::Rpc));
        ctx.update(if aead { b"session-aead" } else { b"session" });
        ctx.update(&client.nonce);
        ctx.update(&server.nonce);
        ctx.update(&client.from);
        ctx.update(&server.from);
        let k = ctx.sign();
        let peer = if role == Role::Client { server.from } else { client.from };
        let key = if aead {
            let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, k.as_ref()).expect("a 32-byte key");
            Protect::Aead(ring::aead::LessSafeKey::new(unbound))
        } else {
            Protect::Hmac(hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()))
        };
        Session {
            key,
            role,
            sent: 0,
            received: 0,
            peer,
        }
    }

    /// Whether this connection's frames are sealed (AES-256-GCM).
    pub fn sealed(&self) -> bool {
        matches!(self.key, Protect::Aead(_))
    }

    fn nonce(from: Role, number: u64) -> ring::aead::Nonce {
        let mut n = [0u8; 12];
        n[0] = from as u8;
        n[4..].copy_from_slice(&number.to_le_bytes());
        ring::aead::Nonce::assume_unique_for_key(n)
    }

    fn tag(key: &hmac::Key, from: Role, number: u64, header: &[u8], payload: &[u8]) -> [u8; TAG_BYTES] {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(&[from as u8]);
        ctx.update(&number.to_le_bytes());
        ctx.update(header);
        ctx.update(payload);
        let t = ctx.sign();
        t.as_ref()[..TAG_BYTES].try_into().expect("16")
    }

    /// Frames `payload` (at most `MAX_PAYLOAD_BYTES`) as this end's next frame.
    pub fn seal(&mut self, kind: FrameKind, method: u16, call: u64, deadline_ms: u32, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= MAX_PAYLOAD_BYTES as usize, "an RPC payload over the frame limit");
        let h = FrameHeader {
            payload_len: payload.len() as u32,
            kind,
            method,
            call,
            deadline_ms,
        }
        .encode();
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len() + TAG_BYTES);
        out.extend_from_slice(&h);
        out.extend_from_slice(payload);
        let tag: [u8; TAG_BYTES] = match &self.key {
            Protect::Hmac(k) => Self::tag(k, self.role, self.sent, &h, payload),
            Protect::Aead(k) => {
                let t = k
                    .seal_in_place_separate_tag(Self::nonce(self.role, self.sent), ring::aead::Aad::from(h), &mut out[FRAME_HEADER_BYTES..])
                    .expect("a frame within AES-GCM's length limit");
                t.as_ref().try_into().expect("a 16-byte tag")
            }
        };
        self.sent += 1;
        out.extend_from_slice(&tag);
        out
    }

    /// Checks the peer's next frame: `header` as read, `rest` its payload
    /// and tag. The payload, if the tag holds (a sealed frame's opened in
    /// place; `rest` is unspecified when refused).
    pub fn open<'a>(&mut self, header: &[u8; FRAME_HEADER_BYTES], rest: &'a mut [u8]) -> Result<(FrameHeader, &'a [u8]), Refused> {
        let h = FrameHeader::decode(header)?;
        if rest.len() != h.rest_len() {
            return Err(Refused::Short);
        }
        let from = if self.role == Role::Client { Role::Server } else { Role::Client };
        let payload: &'a [u8] = match &self.key {
            Protect::Hmac(k) => {
                let (payload, tag) = rest.split_at(h.payload_len as usize);
                let expected = Self::tag(k, from, self.received, header, payload);
                if !constant_eq(&expected, tag) {
                    return Err(Refused::Mac);
                }
                payload
            }
            Protect::Aead(k) => k
                .open_in_place(Self::nonce(from, self.received), ring::aead::Aad::from(*header), rest)
                .map_err(|_| Refused::Mac)?,
        };
        self.received += 1;
        Ok((h, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::new(s.as_bytes()).unwrap()
    }

    const NOW: u64 = 5_000_000;

    /// Client and server offering `cf` and `sf`.
    fn handshake_with(k: &ClusterKey, cf: u8, sf: u8) -> (Session, Session) {
        let ch = Hello { role: Role::Client, sent_ms: NOW, from: [1; 16], to: [2; 16], nonce: [3; 32], features: cf };
        let cb = ch.encode(k, None);
        let got = Hello::decode(k, &cb, Role::Client, None, NOW).unwrap();
        let sh = Hello { role: Role::Server, sent_ms: NOW, from: [2; 16], to: got.from, nonce: [4; 32], features: sf };
        let sb = sh.encode(k, Some(&got.nonce));
        let back = Hello::decode(k, &sb, Role::Server, Some(&ch.nonce), NOW).unwrap();
        (Session::new(k, Role::Client, &ch, &back), Session::new(k, Role::Server, &got, &sh))
    }

    fn split(f: &[u8]) -> ([u8; FRAME_HEADER_BYTES], Vec<u8>) {
        (f[..FRAME_HEADER_BYTES].try_into().unwrap(), f[FRAME_HEADER_BYTES..].to_vec())
    }

    #[test]
    fn hellos_are_authenticated_bound_and_fresh() {
        let k = key("cluster secret of the test, 1234");
        let ch = Hello { role: Role::Client, sent_ms: NOW, from: [1; 16], to: [0; 16], nonce: [9; 32], features: FEATURES };
        let b = ch.encode(&k, None);
        assert_eq!(Hello::decode(&k, &b, Role::Client, None, NOW), Ok(ch));
        assert_eq!(Hello::decode(&key("another secret, also 16+"), &b, Role::Client, None, NOW), Err(Refused::Mac));
        assert_eq!(Hello::decode(&k, &b, Role::Server, None, NOW), Err(Refused::Purpose));
        assert_eq!(Hello::decode(&k, &b, Role::Client, None, NOW + MAX_SKEW_MS + 1), Err(Refused::Stale));
        for i in 0..HELLO_BYTES {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(Hello::decode(&k, &c, Role::Client, None, NOW).is_err(), "byte {i}");
        }
        // A server's hello answers one client nonce only.
        let sh = Hello { role: Role::Server, sent_ms: NOW, from: [2; 16], to: [1; 16], nonce: [8; 32], features: 0 };
        let sb = sh.encode(&k, Some(&[9; 32]));
        assert!(Hello::decode(&k, &sb, Role::Server, Some(&[9; 32]), NOW).is_ok());
        assert_eq!(Hello::decode(&k, &sb, Role::Server, Some(&[7; 32]), NOW), Err(Refused::Mac));
        // An RPC hello is not a gossip frame, and the reverse.
        let g = k.seal(Purpose::Gossip, "127.0.0.1:1".parse().unwrap(), NOW, &[0; 40]);
        assert!(Hello::decode(&k, &g[..HELLO_BYTES.min(g.len())], Role::Client, None, NOW).is_err());
    }

    #[test]
    fn frames_roundtrip_and_refuse_tamper_replay_reorder_and_reflection() {
        // Sealed (both offer it), and MACed only (either end of an older build).
        for (cf, sf) in [(FEATURES, FEATURES), (0, FEATURES), (FEATURES, 0), (0, 0)] {
            frames_hold(cf, sf);
        }
    }

    fn frames_hold(cf: u8, sf: u8) {
        let handshake = |k: &ClusterKey| handshake_with(k, cf, sf);
        let k = key("cluster secret of the test, 1234");
        let (mut c, mut s) = handshake(&k);
        let sealed = cf & sf & FEATURE_AEAD != 0;
        assert_eq!((c.sealed(), s.sealed()), (sealed, sealed));
        assert_eq!((c.peer, s.peer), ([2; 16], [1; 16]));
        let f1 = c.seal(FrameKind::Request, 7, 42, 1000, b"first");
        let f2 = c.seal(FrameKind::Request, 7, 43, 1000, b"second");
        assert_eq!(f1[FRAME_HEADER_BYTES..].windows(5).any(|w| w == b"first"), !sealed, "a sealed payload is not in the clear");
        let (h, mut r) = split(&f1);
        let (fh, p) = s.open(&h, &mut r).unwrap();
        assert_eq!((fh.kind, fh.method, fh.call, fh.deadline_ms, p), (FrameKind::Request, 7, 42, 1000, &b"first"[..]));
        // Replaying the first frame is refused (the server expects number 1),
        // though a session expecting frame 0 of the same key takes it.
        let (mut s2, f1b) = (handshake(&k).1, f1.clone());
        let (h, r) = split(&f1b);
        assert!(s2.open(&h, &mut r.clone()).is_ok(), "a fresh session takes frame 0 once");
        assert_eq!(s.open(&h, &mut r.clone()).map(|_| ()), Err(Refused::Mac), "replay");
        // In order, the second passes.
        let (h, mut r) = split(&f2);
        assert_eq!(s.open(&h, &mut r).unwrap().1, b"second");
        // Reflection: the server's own frame fed back to it is refused.
        let resp = s.seal(FrameKind::Response, 7, 42, 0, b"ok");
        let (h, mut r) = split(&resp);
        let mut s3 = handshake(&k).1;
        assert_eq!(s3.open(&h, &mut r).map(|_| ()), Err(Refused::Mac), "reflection");
        // Every flipped bit is refused.
        let (mut c4, mut s4) = handshake(&k);
        let f = c4.seal(FrameKind::Request, 1, 1, 0, b"payload");
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 1;
            let (h, mut r) = split(&g);
            assert!(s4.open(&h, &mut r).is_err(), "byte {i}");
        }
        let (h, mut r) = split(&f);
        assert!(s4.open(&h, &mut r).is_ok(), "the untouched frame still opens (number not consumed by failures)");
        // A session of another cluster's secret: refused. (The test's
        // handshakes reuse fixed nonces, so its sessions of one secret share
        // a key; real nonces are random per connection.)
        let (mut c5, _) = handshake(&k);
        let other = c5.seal(FrameKind::Request, 1, 1, 0, b"x");
        let (h, mut r) = split(&other);
        let k2 = key("a different cluster secret 12345");
        let mut s6 = handshake(&k2).1;
        assert!(s6.open(&h, &mut r).is_err());
        // A frame sealed one way does not open the other way.
        if sealed {
            let (mut c7, _) = handshake(&k);
            let f = c7.seal(FrameKind::Request, 1, 1, 0, b"mode");
            let (h, mut r) = split(&f);
            assert!(handshake_with(&k, 0, 0).1.open(&h, &mut r).is_err(), "a sealed frame on a MACed session");
        }
        // An oversized length is refused before any payload is read.
        let mut big = [0u8; FRAME_HEADER_BYTES];
        big[0..4].copy_from_slice(&(MAX_PAYLOAD_BYTES + 1).to_le_bytes());
        big[4] = 1;
        assert!(FrameHeader::decode(&big).is_err());
    }
}
