//! Body checksums: the MD5 that becomes the ETag, S3's flexible checksums (CRC32,
//! CRC32C, CRC64NVME, SHA1, SHA256) and the signed payload hash, computed in one pass.
//!
//! [`BodyVerifier`] is built from the request head before the body is read, fed every
//! decoded body byte, and settled once the body (and its trailers) have ended. Nothing
//! about the body may be committed before [`BodyVerifier::finish`] returns `Ok`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::cell::RefCell;
use std::rc::Rc;

use ring::digest;

use crate::error::{S3Error, S3ErrorCode};
use crate::headers::Headers;
use crate::md5x::{Md5Pool, PooledMd5};
use crate::sigv4::PayloadMode;

/// Most header values naming trailers we look at (`x-amz-trailer` is a short list).
const MAX_TRAILER_NAMES: usize = 8;

/// An S3 flexible-checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgo {
    pub const ALL: [ChecksumAlgo; 5] = [
        ChecksumAlgo::Crc32,
        ChecksumAlgo::Crc32c,
        ChecksumAlgo::Crc64Nvme,
        ChecksumAlgo::Sha1,
        ChecksumAlgo::Sha256,
    ];

    /// From `x-amz-sdk-checksum-algorithm` / `ChecksumAlgorithm` values, any case.
    pub fn from_algorithm_name(name: &str) -> Option<ChecksumAlgo> {
        let name = name.trim();
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// From a header (or trailer) name such as `x-amz-checksum-crc32`, any case.
    pub fn from_header_name(name: &str) -> Option<ChecksumAlgo> {
        let name = name.trim();
        Self::ALL.into_iter().find(|a| a.header_name().eq_ignore_ascii_case(name))
    }

    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgo::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgo::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgo::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgo::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The name as S3 spells it in `ChecksumAlgorithm`: `CRC32`, `CRC64NVME`, ...
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgo::Crc32 => "CRC32",
            ChecksumAlgo::Crc32c => "CRC32C",
            ChecksumAlgo::Crc64Nvme => "CRC64NVME",
            ChecksumAlgo::Sha1 => "SHA1",
            ChecksumAlgo::Sha256 => "SHA256",
        }
    }

    /// Length in bytes of the raw digest.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgo::Crc32 | ChecksumAlgo::Crc32c => 4,
            ChecksumAlgo::Crc64Nvme => 8,
            ChecksumAlgo::Sha1 => 20,
            ChecksumAlgo::Sha256 => 32,
        }
    }
}

enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc64fast_nvme::Digest),
    // Boxed: a SHA context is ten times the size of the CRC states.
    Sha(Box<digest::Context>),
}

/// Streaming checksum of one algorithm.
pub struct Checksummer {
    algo: ChecksumAlgo,
    state: State,
}

impl Checksummer {
    pub fn new(algo: ChecksumAlgo) -> Self {
        let state = match algo {
            ChecksumAlgo::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgo::Crc32c => State::Crc32c(0),
            ChecksumAlgo::Crc64Nvme => State::Crc64Nvme(crc64fast_nvme::Digest::new()),
            ChecksumAlgo::Sha1 => {
                State::Sha(Box::new(digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY)))
            }
            ChecksumAlgo::Sha256 => State::Sha(Box::new(digest::Context::new(&digest::SHA256))),
        };
        Checksummer { algo, state }
    }

    pub fn algo(&self) -> ChecksumAlgo {
        self.algo
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(data),
            State::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            State::Crc64Nvme(d) => d.write(data),
            State::Sha(ctx) => ctx.update(data),
        }
    }

    /// The digest; CRCs are their big-endian integer bytes, as S3 encodes them.
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(crc) => crc.to_be_bytes().to_vec(),
            State::Crc64Nvme(d) => d.sum64().to_be_bytes().to_vec(),
            State::Sha(ctx) => ctx.finish().as_ref().to_vec(),
        }
    }

    /// The digest in base64, the form of `x-amz-checksum-*` values.
    pub fn finish_base64(self) -> String {
        BASE64.encode(self.finish())
    }
}

/// GF(2) matrix times vector: the CRC-register transform `mat` applied to `vec`.
fn gf2_times(mat: &[u64; 64], mut vec: u64) -> u64 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 != 0 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn gf2_square(out: &mut [u64; 64], mat: &[u64; 64], bits: usize) {
    for n in 0..bits {
        out[n] = gf2_times(mat, mat[n]);
    }
}

/// zlib's `crc32_combine`, for any reflected CRC whose init and final xor are
/// all ones (CRC32, CRC32C, CRC64NVME): the CRC of `a ++ b` from crc(a),
/// crc(b) and len(b).
fn combine_reflected(poly: u64, bits: usize, crc_a: u64, crc_b: u64, mut len_b: u64) -> u64 {
    if len_b == 0 {
        return crc_a;
    }
    let mut odd = [0u64; 64];
    let mut even = [0u64; 64];
    odd[0] = poly;
    let mut row = 1u64;
    for slot in odd.iter_mut().take(bits).skip(1) {
        *slot = row;
        row <<= 1;
    }
    gf2_square(&mut even, &odd, bits);
    gf2_square(&mut odd, &even, bits);
    let mut crc = crc_a;
    loop {
        gf2_square(&mut even, &odd, bits);
        if len_b & 1 != 0 {
            crc = gf2_times(&even, crc);
        }
        len_b >>= 1;
        if len_b == 0 {
            break;
        }
        gf2_square(&mut odd, &even, bits);
        if len_b & 1 != 0 {
            crc = gf2_times(&odd, crc);
        }
        len_b >>= 1;
        if len_b == 0 {
            break;
        }
    }
    crc ^ crc_b
}

/// The checksum of `a ++ b` from the checksums (big-endian digests, as S3
/// encodes them) of `a` and `b` and the length of `b`: how a FULL_OBJECT
/// checksum of a multipart upload is made from its parts'. `None` for the
/// SHA algorithms (they do not combine) and for digests of the wrong size.
pub fn combine_crc(algo: ChecksumAlgo, crc_a: &[u8], crc_b: &[u8], len_b: u64) -> Option<Vec<u8>> {
    match algo {
        ChecksumAlgo::Crc32 | ChecksumAlgo::Crc32c => {
            let a = u32::from_be_bytes(crc_a.try_into().ok()?);
            let b = u32::from_be_bytes(crc_b.try_into().ok()?);
            let poly = if algo == ChecksumAlgo::Crc32 { 0xEDB8_8320 } else { 0x82F6_3B78 };
            let c = combine_reflected(poly, 32, u64::from(a), u64::from(b), len_b) as u32;
            Some(c.to_be_bytes().to_vec())
        }
        ChecksumAlgo::Crc64Nvme => {
            let a = u64::from_be_bytes(crc_a.try_into().ok()?);
            let b = u64::from_be_bytes(crc_b.try_into().ok()?);
            Some(combine_reflected(0x9A6C_9329_AC4B_C9B5, 64, a, b, len_b).to_be_bytes().to_vec())
        }
        ChecksumAlgo::Sha1 | ChecksumAlgo::Sha256 => None,
    }
}

/// Whether `algo` can make a FULL_OBJECT checksum of a multipart upload.
pub fn combinable(algo: ChecksumAlgo) -> bool {
    matches!(algo, ChecksumAlgo::Crc32 | ChecksumAlgo::Crc32c | ChecksumAlgo::Crc64Nvme)
}

/// Decodes an `x-amz-checksum-*` value of `algo` to its raw digest.
pub fn decode_value(algo: ChecksumAlgo, value: &str) -> Option<Vec<u8>> {
    BASE64.decode(value.trim()).ok().filter(|raw| raw.len() == algo.digest_len())
}

pub fn encode_value(raw: &[u8]) -> String {
    BASE64.encode(raw)
}

/// What a fully received body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySums {
    /// MD5 of the body: the ETag of a single-part object.
    pub md5: [u8; 16],
    /// The flexible checksum the client declared (header, trailer or algorithm
    /// header), computed by us, base64.
    pub checksum: Option<(ChecksumAlgo, String)>,
}

/// Checks a request body against everything the head promised about it.
pub struct BodyVerifier {
    /// Alone, or in a lane of the core's pool (`with_md5_pool`).
    md5: PooledMd5,
    content_md5: Option<[u8; 16]>,
    /// The digest `x-amz-content-sha256` promised; its hash is computed by `sha256`,
    /// or by `checksum` when that is SHA-256 too.
    expected_sha256: Option<[u8; 32]>,
    sha256: Option<digest::Context>,
    checksum: Option<Checksummer>,
    /// Raw digest from an `x-amz-checksum-*` header.
    header_value: Option<Vec<u8>>,
    /// Set when `x-amz-trailer` announced the checksum as a trailer.
    trailer_announced: bool,
}

fn invalid_request(message: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message)
}

/// Decodes a checksum value (base64 of exactly the algorithm's digest length).
fn decode_checksum_value(algo: ChecksumAlgo, value: &str) -> Result<Vec<u8>, S3Error> {
    match BASE64.decode(value.trim()) {
        Ok(raw) if raw.len() == algo.digest_len() => Ok(raw),
        // A value that cannot be a digest of this algorithm cannot match the
        // body either: S3 answers BadDigest (s3-tests checks this on AWS).
        _ => Err(S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!("The {} you specified did not match the calculated checksum.", algo.name()),
        )),
    }
}

/// The one `x-amz-checksum-<algo>` header, if any, with its decoded value.
fn checksum_header(headers: &Headers) -> Result<Option<(ChecksumAlgo, Vec<u8>)>, S3Error> {
    let mut found: Option<(ChecksumAlgo, Vec<u8>)> = None;
    for (name, value) in headers.iter() {
        let Some(algo) = ChecksumAlgo::from_header_name(name) else { continue };
        if found.is_some() {
            return Err(invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        found = Some((algo, decode_checksum_value(algo, value)?));
    }
    Ok(found)
}

/// The checksum algorithm `x-amz-trailer` announces, if any. Other trailer names are
/// tolerated (the SigV4 trailer format allows them) but carry nothing we check.
fn announced_trailer(headers: &Headers) -> Result<Option<ChecksumAlgo>, S3Error> {
    let mut found = None;
    for value in headers.get_all("x-amz-trailer") {
        for name in value.split(',').take(MAX_TRAILER_NAMES) {
            let Some(algo) = ChecksumAlgo::from_header_name(name) else { continue };
            if found.is_some_and(|f| f != algo) {
                return Err(invalid_request(
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                ));
            }
            found = Some(algo);
        }
    }
    Ok(found)
}

impl BodyVerifier {
    /// Reads what the request head says the body must match.
    pub fn from_request(headers: &Headers, payload: &PayloadMode) -> Result<BodyVerifier, S3Error> {
        let content_md5 = match headers.get("content-md5") {
            None => None,
            Some(value) => match BASE64.decode(value) {
                Ok(raw) => Some(
                    <[u8; 16]>::try_from(raw.as_slice())
                        .map_err(|_| S3Error::new(S3ErrorCode::InvalidDigest))?,
                ),
                Err(_) => return Err(S3Error::new(S3ErrorCode::InvalidDigest)),
            },
        };
        let header = checksum_header(headers)?;
        let trailer = announced_trailer(headers)?;
        let sdk_algo = match headers.get("x-amz-sdk-checksum-algorithm") {
            None => None,
            Some(name) => Some(ChecksumAlgo::from_algorithm_name(name).ok_or_else(|| {
                invalid_request(
                    "Checksum algorithm provided is unsupported. Please try again with any of \
                     the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]",
                )
            })?),
        };
        if let (Some((header_algo, _)), Some(trailer_algo)) = (&header, trailer) {
            if *header_algo != trailer_algo {
                return Err(invalid_request(
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                ));
            }
        }
        let trailer_mode = matches!(
            payload,
            PayloadMode::StreamingUnsignedTrailer | PayloadMode::StreamingSigned { trailer: true, .. }
        );
        if trailer_mode && trailer.is_none() && header.is_none() {
            // In these modes the trailer carries the body's integrity; S3 requires x-amz-trailer.
            return Err(invalid_request(
                "x-amz-trailer must name the checksum trailer of a STREAMING-...-TRAILER payload.",
            ));
        }
        // The value given (header or trailer) decides the algorithm; the SDK's
        // algorithm header alone still asks us to compute and keep that checksum.
        let algo = header.as_ref().map(|(a, _)| *a).or(trailer).or(sdk_algo);
        let expected_sha256 = match payload {
            PayloadMode::Sha256(d) => Some(*d),
            _ => None,
        };
        let sha256 = match (expected_sha256, algo) {
            (Some(_), Some(ChecksumAlgo::Sha256)) | (None, _) => None,
            (Some(_), _) => Some(digest::Context::new(&digest::SHA256)),
        };
        Ok(BodyVerifier {
            md5: PooledMd5::alone(),
            content_md5,
            expected_sha256,
            sha256,
            checksum: algo.map(Checksummer::new),
            header_value: header.map(|(_, v)| v),
            trailer_announced: trailer.is_some(),
        })
    }

    /// Computes the body's MD5 in a lane of `pool` (shared with the other
    /// bodies this core is receiving) if one is free. Before any `update`.
    pub fn with_md5_pool(mut self, pool: &Rc<RefCell<Md5Pool>>) -> Self {
        self.md5 = PooledMd5::new(pool);
        self
    }

    /// `with_md5_pool` for a body of `len` bytes (its lane reserves that).
    pub fn with_md5_pool_for(mut self, pool: &Rc<RefCell<Md5Pool>>, len: u64) -> Self {
        self.md5 = PooledMd5::for_len(pool, len);
        self
    }

    /// Whether the MD5 has whole blocks waiting in a lane (`PooledMd5::waits`).
    pub fn md5_waits(&self) -> bool {
        self.md5.waits()
    }

    /// Feeds decoded body bytes, in order.
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.update_sums(data);
    }

    /// The digests other than MD5 (each hashes at once).
    fn update_sums(&mut self, data: &[u8]) {
        if let Some(ctx) = &mut self.sha256 {
            ctx.update(data);
        }
        if let Some(c) = &mut self.checksum {
            c.update(data);
        }
    }

    /// `update` for bytes that stay where they are until `keep` is
    /// dropped: the MD5 lane hashes them in place (`PooledMd5::update_kept`).
    ///
    /// # Safety
    /// As `PooledMd5::update_kept`: `data` stays allocated and unchanged
    /// while any clone of `keep` lives.
    pub unsafe fn update_kept(&mut self, data: &[u8], keep: &crate::md5x::Keep) {
        // SAFETY: passed on from our caller.
        unsafe { self.md5.update_kept(data, keep) };
        self.update_sums(data);
    }

    /// Settles the body once it has ended. `trailers` are the aws-chunked trailers
    /// (lowercased names), empty for other bodies.
    pub fn finish(self, trailers: &[(String, String)]) -> Result<BodySums, S3Error> {
        let md5: [u8; 16] = self.md5.finish();
        let computed = self.checksum.map(|c| (c.algo(), c.finish()));
        if let Some(expected) = self.expected_sha256 {
            let actual = match (self.sha256, &computed) {
                (Some(ctx), _) => ctx.finish().as_ref().to_vec(),
                (None, Some((ChecksumAlgo::Sha256, d))) => d.clone(),
                // from_request always sets up one of the two above.
                (None, _) => Vec::new(),
            };
            if actual != expected {
                return Err(S3Error::new(S3ErrorCode::XAmzContentSHA256Mismatch));
            }
        }
        if self.content_md5.is_some_and(|want| want != md5) {
            return Err(S3Error::new(S3ErrorCode::BadDigest));
        }
        let Some((algo, digest)) = computed else {
            return Ok(BodySums { md5, checksum: None });
        };
        let mismatch = || {
            S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!("The {} you specified did not match the calculated checksum.", algo.name()),
            )
        };
        let mut checksum_trailers = trailers.iter().filter(|(n, _)| ChecksumAlgo::from_header_name(n).is_some());
        let trailer_value = checksum_trailers.next().map(|(n, v)| (n, v));
        if checksum_trailers.next().is_some() {
            return Err(invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        let trailer_value = match trailer_value {
            Some((n, v)) if n == algo.header_name() => Some(v),
            Some((n, _)) => {
                return Err(invalid_request(format!(
                    "The body carried the trailer {n}, but the checksum of this request is {}.",
                    algo.header_name()
                )))
            }
            None => None,
        };
        if let Some(value) = trailer_value {
            if decode_checksum_value(algo, value)? != digest {
                return Err(mismatch());
            }
        }
        match &self.header_value {
            Some(value) if *value != digest => return Err(mismatch()),
            Some(_) => {}
            None if self.trailer_announced && trailer_value.is_none() => {
                return Err(invalid_request(format!(
                    "The x-amz-trailer header announced {} but the body carried no such trailer.",
                    algo.header_name()
                )));
            }
            None => {}
        }
        Ok(BodySums { md5, checksum: Some((algo, BASE64.encode(&digest))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(algo: ChecksumAlgo, data: &[u8]) -> String {
        let mut c = Checksummer::new(algo);
        for piece in data.chunks(3) {
            c.update(piece);
        }
        c.finish_base64()
    }

    #[test]
    fn known_checksums_of_hello_world() {
        // Values as S3 returns them for the 11 bytes "hello world".
        let data = b"hello world";
        assert_eq!(sum(ChecksumAlgo::Crc32, data), "DUoRhQ==");
        assert_eq!(sum(ChecksumAlgo::Crc32c, data), "yZRlqg==");
        assert_eq!(sum(ChecksumAlgo::Sha1, data), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(sum(ChecksumAlgo::Sha256, data), "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=");
        assert_eq!(sum(ChecksumAlgo::Crc64Nvme, b"123456789"), "rosUhgp5mIg=");
    }

    #[test]
    fn crcs_combine_as_if_computed_over_the_whole() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let raw = |algo, d: &[u8]| {
            let mut c = Checksummer::new(algo);
            c.update(d);
            c.finish()
        };
        for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Crc32c, ChecksumAlgo::Crc64Nvme] {
            assert!(combinable(algo));
            for split in [0usize, 1, 7, 2500, 4999, 5000] {
                let (a, b) = data.split_at(split);
                let combined = combine_crc(algo, &raw(algo, a), &raw(algo, b), b.len() as u64);
                assert_eq!(combined, Some(raw(algo, &data)), "{algo:?} split {split}");
            }
        }
        assert!(combine_crc(ChecksumAlgo::Sha256, &[0; 32], &[0; 32], 1).is_none());
        assert!(combine_crc(ChecksumAlgo::Crc32, &[0; 3], &[0; 4], 1).is_none());
        assert!(!combinable(ChecksumAlgo::Sha1));
    }

    #[test]
    fn names_round_trip() {
        for algo in ChecksumAlgo::ALL {
            assert_eq!(ChecksumAlgo::from_algorithm_name(algo.name()), Some(algo));
            assert_eq!(ChecksumAlgo::from_algorithm_name(&algo.name().to_lowercase()), Some(algo));
            assert_eq!(ChecksumAlgo::from_header_name(algo.header_name()), Some(algo));
            assert_eq!(ChecksumAlgo::from_header_name(&algo.header_name().to_uppercase()), Some(algo));
        }
        assert_eq!(ChecksumAlgo::from_algorithm_name("MD5"), None);
        assert_eq!(ChecksumAlgo::from_header_name("x-amz-checksum-mode"), None);
        assert_eq!(ChecksumAlgo::from_header_name("x-amz-checksum-type"), None);
    }
}

/// Lowercase hex of `bytes`, as `hex::encode` writes it, without its
/// char-by-char iterator (hex of digests is on every request's path: the
/// string to sign, ETags).
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex_lower(&mut s, bytes);
    s
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex_lower(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 128];
    for chunk in bytes.chunks(64) {
        for (i, &b) in chunk.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        // Hex digits are ASCII: always valid UTF-8.
        out.push_str(std::str::from_utf8(&buf[..2 * chunk.len()]).unwrap_or_default());
    }
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn hex_lower_is_hex_encode() {
        for len in [0usize, 1, 16, 32, 33] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(super::hex_lower(&bytes), hex::encode(&bytes));
        }
        assert_eq!(super::hex_lower(&[0x00, 0xff, 0x0a]), "00ff0a");
    }
}
