//! Object bodies sealed in packages: AES-256-GCM over fixed-size pieces of
//! plaintext, so a ranged read decrypts only the packages it returns and a
//! flipped bit anywhere fails that package's tag.
//!
//! FORMAT BOUNDARY (on disk): a sealed body is its segments (a single PUT
//! is one segment, a multipart object one per part) one after the other;
//! a segment of `n` plaintext bytes is `packages(n)` packages, each
//! `min(PACKAGE_BYTES, rest)` bytes of ciphertext then a 16-byte tag. An
//! empty segment is one empty package (so truncating to nothing is
//! detected too).
//!
//! Keys and nonces: each segment has its own key, HMAC-SHA256(data key,
//! label ++ salt ++ part number) with a fresh random 16-byte salt per
//! segment (an overwritten part gets a new salt), so a nonce (the package
//! index) never repeats under one key. The associated data binds the part
//! number, the package index and a last-package flag: reordered, dropped,
//! truncated or extended packages fail to open.

use std::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Plaintext bytes per package.
pub const PACKAGE_BYTES: u64 = 64 * 1024;
/// GCM tag after each package.
pub const TAG_BYTES: u64 = 16;
/// A full package as stored.
pub const SEALED_PACKAGE_BYTES: u64 = PACKAGE_BYTES + TAG_BYTES;
/// Random salt of a segment's key.
pub const SALT_BYTES: usize = 16;
/// Data keys and segment keys are AES-256 keys.
pub const KEY_BYTES: usize = 32;
/// Most packages decrypted per read step (1 MiB of plaintext): bounds the
/// memory of a streamed read.
pub const PACKAGES_PER_CHUNK: u64 = 16;

const SEGMENT_KEY_LABEL: &[u8] = b"tessera-sse-v1 segment key";
const PACKAGE_AAD_LABEL: &[u8] = b"tessera-sse-v1 package";
const ETAG_LABEL: &[u8] = b"tessera-sse-v1 etag";

/// Something went wrong sealing or opening: never says more (no key,
/// no plaintext in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("an encrypted package failed authentication (corrupt or tampered data)")]
    Corrupt,
    #[error("no system randomness")]
    Random,
}

/// A 256-bit data key: one per object (and per upload). Its bytes never
/// reach `Debug`, logs or errors, and are wiped on drop.
pub struct DataKey(pub(crate) [u8; KEY_BYTES]);

impl DataKey {
    pub fn random() -> Result<Self, CipherError> {
        let mut k = [0u8; KEY_BYTES];
        SystemRandom::new().fill(&mut k).map_err(|_| CipherError::Random)?;
        Ok(DataKey(k))
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(DataKey(b.try_into().ok()?))
    }

    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// An ETag for an object whose ETag must not be the MD5 of its
    /// plaintext (SSE-C, SSE-KMS, as AWS): keyed by the data key, so it
    /// tells nothing about the content to who does not hold the key.
    pub fn etag_of(&self, md5: &[u8; 16]) -> [u8; 16] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let tag = hmac::sign(&k, &[ETAG_LABEL, md5.as_slice()].concat());
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Volatile writes: the wipe is not optimized away.
        for b in self.0.iter_mut() {
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

pub fn random_salt() -> Result<[u8; SALT_BYTES], CipherError> {
    let mut s = [0u8; SALT_BYTES];
    SystemRandom::new().fill(&mut s).map_err(|_| CipherError::Random)?;
    Ok(s)
}

/// Packages of a segment of `plain_len` bytes (an empty one has one).
pub fn packages(plain_len: u64) -> u64 {
    plain_len.div_ceil(PACKAGE_BYTES).max(1)
}

/// Stored size of a segment of `plain_len` plaintext bytes.
pub fn sealed_len(plain_len: u64) -> u64 {
    plain_len + packages(plain_len) * TAG_BYTES
}

/// The key of one segment (a single PUT's body, or one part).
pub struct SegmentKey {
    key: LessSafeKey,
    part: u32,
}

impl SegmentKey {
    pub fn derive(dk: &DataKey, salt: &[u8; SALT_BYTES], part: u32) -> Self {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &dk.0);
        let tag = hmac::sign(&mac, &[SEGMENT_KEY_LABEL, salt.as_slice(), &part.to_be_bytes()].concat());
        // A 32-byte HMAC output is always a valid AES-256 key.
        let unbound = UnboundKey::new(&AES_256_GCM, tag.as_ref()).unwrap_or_else(|_| unreachable!("32-byte key"));
        SegmentKey { key: LessSafeKey::new(unbound), part }
    }

    fn nonce(index: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&index.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut a = Vec::with_capacity(PACKAGE_AAD_LABEL.len() + 13);
        a.extend_from_slice(PACKAGE_AAD_LABEL);
        a.extend_from_slice(&self.part.to_be_bytes());
        a.extend_from_slice(&index.to_be_bytes());
        a.push(u8::from(last));
        a
    }

    /// Encrypts `buf[start..]` (one package of plaintext) in place and
    /// appends its tag.
    pub fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>, start: usize) -> Result<(), CipherError> {
        let aad = self.aad(index, last);
        let tag = self
            .key
            .seal_in_place_separate_tag(Self::nonce(index), Aad::from(&aad[..]), &mut buf[start..])
            .map_err(|_| CipherError::Corrupt)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts the sealed package at `buf[shift..]` and leaves its
    /// plaintext at the front of `buf`, in the same pass (so a run of
    /// packages is opened into contiguous plaintext without a copy).
    pub fn open_within<'a>(&self, index: u64, last: bool, buf: &'a mut [u8], shift: usize) -> Result<&'a mut [u8], CipherError> {
        let aad = self.aad(index, last);
        self.key.open_within(Self::nonce(index), Aad::from(&aad[..]), buf, shift..).map_err(|_| CipherError::Corrupt)
    }
}

/// One segment of a sealed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The part number its key and packages are bound to.
    pub part: u32,
    pub salt: [u8; SALT_BYTES],
    pub plain_len: u64,
}

/// A run of whole packages of one segment to read and open, and what of
/// their plaintext a read wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub segment: usize,
    pub first_package: u64,
    pub package_count: u64,
    /// Stored bytes of these packages, as offsets in the sealed body.
    pub sealed: Range<u64>,
    /// Plaintext wanted, as offsets within these packages' plaintext.
    pub want: Range<usize>,
}

/// Where things are in a sealed body made of `segments`.
#[derive(Debug, Clone)]
pub struct Layout {
    segments: Vec<Segment>,
    /// Per segment: (plaintext start, sealed start).
    starts: Vec<(u64, u64)>,
    plain_len: u64,
    sealed_len: u64,
}

impl Layout {
    pub fn new(segments: Vec<Segment>) -> Self {
        let mut starts = Vec::with_capacity(segments.len());
        let (mut p, mut s) = (0u64, 0u64);
        for seg in &segments {
            starts.push((p, s));
            p += seg.plain_len;
            s += sealed_len(seg.plain_len);
        }
        Layout { segments, starts, plain_len: p, sealed_len: s }
    }

    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    pub fn sealed_len(&self) -> u64 {
        self.sealed_len
    }

    pub fn segment(&self, i: usize) -> &Segment {
        &self.segments[i]
    }

    /// The chunks that cover plaintext `range`, in order, each at most
    /// `PACKAGES_PER_CHUNK` packages of one segment.
    pub fn chunks(&self, range: Range<u64>) -> Vec<Chunk> {
        let mut out = Vec::new();
        if range.is_empty() {
            return out;
        }
        for (i, seg) in self.segments.iter().enumerate() {
            let (pstart, sstart) = self.starts[i];
            let pend = pstart + seg.plain_len;
            if pend <= range.start || pstart >= range.end {
                continue;
            }
            let lo = range.start.max(pstart) - pstart;
            let hi = range.end.min(pend) - pstart;
            let mut pkg = lo / PACKAGE_BYTES;
            let last_pkg = (hi - 1) / PACKAGE_BYTES;
            while pkg <= last_pkg {
                let count = (last_pkg - pkg + 1).min(PACKAGES_PER_CHUNK);
                let plain_from = pkg * PACKAGE_BYTES;
                let plain_to = ((pkg + count) * PACKAGE_BYTES).min(seg.plain_len);
                let sealed_from = sstart + pkg * SEALED_PACKAGE_BYTES;
                let sealed_to = sealed_from + (plain_to - plain_from) + count * TAG_BYTES;
                let want_from = lo.max(plain_from) - plain_from;
                let want_to = hi.min(plain_to) - plain_from;
                out.push(Chunk {
                    segment: i,
                    first_package: pkg,
                    package_count: count,
                    sealed: sealed_from..sealed_to,
                    want: want_from as usize..want_to as usize,
                });
                pkg += count;
            }
        }
        out
    }

    /// Opens a chunk's sealed bytes with its segment's key and returns the
    /// plaintext the chunk wants, in the buffer it was given: each package
    /// is opened where it lies and its plaintext moved down over the tags
    /// before it by the decryption itself, so no second buffer is filled
    /// (a fresh 1 MiB buffer per chunk cost more than AES-GCM did).
    pub fn open_chunk(&self, key: &SegmentKey, c: &Chunk, mut sealed: Vec<u8>) -> Result<Vec<u8>, CipherError> {
        let seg = &self.segments[c.segment];
        if sealed.len() as u64 != c.sealed.end - c.sealed.start {
            return Err(CipherError::Corrupt);
        }
        let total = packages(seg.plain_len);
        // `written` bytes of plaintext are at the front; the next sealed
        // package starts at `at` (always >= written).
        let mut written = 0usize;
        let mut at = 0usize;
        for pkg in c.first_package..c.first_package + c.package_count {
            let plain = (seg.plain_len - pkg * PACKAGE_BYTES).min(PACKAGE_BYTES) as usize;
            let end = at + plain + TAG_BYTES as usize;
            let piece = sealed.get_mut(written..end).ok_or(CipherError::Corrupt)?;
            written += key.open_within(pkg, pkg + 1 == total, piece, at - written)?.len();
            at = end;
        }
        if c.want.start > c.want.end || c.want.end > written {
            return Err(CipherError::Corrupt);
        }
        sealed.truncate(c.want.end);
        if c.want.start > 0 {
            sealed.drain(..c.want.start);
        }
        Ok(sealed)
    }
}

/// Seals a whole segment held in memory (small bodies, tests).
pub fn seal_all(key: &SegmentKey, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
    let n = packages(plain.len() as u64);
    let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
    for i in 0..n {
        let from = (i * PACKAGE_BYTES) as usize;
        let to = (from + PACKAGE_BYTES as usize).min(plain.len());
        let start = out.len();
        out.extend_from_slice(&plain[from..to]);
        key.seal(i, i + 1 == n, &mut out, start)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_and_body(sizes: &[u64]) -> (DataKey, Layout, Vec<u8>, Vec<u8>) {
        let dk = DataKey::random().unwrap();
        let mut segs = Vec::new();
        let (mut plain, mut sealed) = (Vec::new(), Vec::new());
        for (i, n) in sizes.iter().enumerate() {
            let salt = random_salt().unwrap();
            let part = i as u32 + 1;
            let p: Vec<u8> = (0..*n).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8)).collect();
            sealed.extend(seal_all(&SegmentKey::derive(&dk, &salt, part), &p).unwrap());
            plain.extend(p);
            segs.push(Segment { part, salt, plain_len: *n });
        }
        (dk, Layout::new(segs), plain, sealed)
    }

    fn read(dk: &DataKey, l: &Layout, sealed: &[u8], r: Range<u64>) -> Result<Vec<u8>, CipherError> {
        let mut out = Vec::new();
        for c in l.chunks(r) {
            let s = l.segment(c.segment);
            let k = SegmentKey::derive(dk, &s.salt, s.part);
            out.extend(l.open_chunk(&k, &c, sealed[c.sealed.start as usize..c.sealed.end as usize].to_vec())?);
        }
        Ok(out)
    }

    #[test]
    fn sizes_and_ranges_across_package_and_segment_edges() {
        let p = PACKAGE_BYTES;
        let (dk, l, plain, sealed) = layout_and_body(&[0, 1, p - 1, p, p + 1, 3 * p, 17 * p + 5]);
        assert_eq!(sealed.len() as u64, l.sealed_len());
        assert_eq!(plain.len() as u64, l.plain_len());
        assert_eq!(sealed_len(0), 16);
        assert_eq!(sealed_len(p), p + 16);
        assert_eq!(sealed_len(p + 1), p + 33);
        let n = plain.len() as u64;
        for r in [0..n, 0..1, p - 1..p + 1, p..2 * p, 1..n - 1, n - 1..n, 2 * p + 7..9 * p + 3, 5..5] {
            assert_eq!(read(&dk, &l, &sealed, r.clone()).unwrap(), plain[r.start as usize..r.end as usize], "{r:?}");
        }
    }

    #[test]
    fn tampering_is_detected() {
        let p = PACKAGE_BYTES;
        let (dk, l, _, sealed) = layout_and_body(&[2 * p + 9, p]);
        let n = l.plain_len();
        for at in [0usize, p as usize + 3, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert_eq!(read(&dk, &l, &bad, 0..n), Err(CipherError::Corrupt), "flip at {at}");
        }
        // Swapping two full packages (reordering) fails their AAD.
        let mut swapped = sealed.clone();
        let sp = SEALED_PACKAGE_BYTES as usize;
        let (a, b) = swapped.split_at_mut(sp);
        a.swap_with_slice(&mut b[..sp]);
        assert!(read(&dk, &l, &swapped, 0..n).is_err());
        // Dropping the last package: the one before it is not marked last.
        let short = Layout::new(vec![Segment { part: 1, salt: l.segment(0).salt, plain_len: 2 * p }]);
        assert!(read(&dk, &short, &sealed[..2 * sp], 0..2 * p).is_err());
        // Another data key opens nothing.
        let other = DataKey::random().unwrap();
        assert!(read(&other, &l, &sealed, 0..1).is_err());
    }

    #[test]
    fn keys_stay_out_of_debug() {
        let dk = DataKey([7; 32]);
        assert_eq!(format!("{dk:?}"), "DataKey(<redacted>)");
        assert_ne!(dk.etag_of(&[1; 16]), [1; 16]);
    }
}
