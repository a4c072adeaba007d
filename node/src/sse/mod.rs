//! Server-side encryption: what a request asks for (SSE-S3, SSE-KMS,
//! SSE-C, or the bucket's default), what is stored with an object to read
//! it back (`SseInfo`, in its metadata), and the response headers.
//!
//! Envelope encryption: every object (and every multipart upload) gets a
//! random data key; its body is sealed in packages (`cipher`) under keys
//! derived from it; the data key itself is stored sealed: by the key
//! service (`kms`) for SSE-S3 and SSE-KMS, under the customer's key for
//! SSE-C, of which only a salted HMAC (to tell a wrong key) and the MD5
//! the client sent are kept.

pub mod cipher;
pub mod kms;
pub mod stream;

use base64::Engine as _;
use md5::{Digest, Md5};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hmac;
use tessera_proto::{Headers, S3Error, S3ErrorCode, S3Result};

use crate::buckets::BucketInfo;
use crate::codec::{Dec, Enc};
use crate::response::Response;
pub use cipher::DataKey;
use cipher::{Layout, Segment, SegmentKey, KEY_BYTES, SALT_BYTES};
use kms::{KeyService, KmsError};

/// Format of the encryption section of object metadata.
const SSE_INFO_V1: u8 = 1;
const MODE_S3: u8 = 1;
const MODE_KMS: u8 = 2;
const MODE_CUSTOMER: u8 = 3;
const CUSTOMER_SEAL_AAD: &[u8] = b"tessera-sse-c-data-key-v1";
const CUSTOMER_HMAC_LABEL: &[u8] = b"tessera-sse-c-key-check-v1";
/// Longest `x-amz-server-side-encryption-context` accepted (base64).
pub const MAX_CONTEXT_BYTES: usize = 1024;

pub const H_SSE: &str = "x-amz-server-side-encryption";
pub const H_KMS_KEY: &str = "x-amz-server-side-encryption-aws-kms-key-id";
pub const H_CONTEXT: &str = "x-amz-server-side-encryption-context";
pub const H_BUCKET_KEY: &str = "x-amz-server-side-encryption-bucket-key-enabled";
/// Prefix of the SSE-C headers of the object written or read.
pub const CUSTOMER: &str = "x-amz-server-side-encryption-customer-";
/// Prefix of the SSE-C headers of a copy's source.
pub const COPY_SOURCE_CUSTOMER: &str = "x-amz-copy-source-server-side-encryption-customer-";

/// How an object's data key is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseMode {
    /// SSE-S3: sealed by the key service under the store's own key.
    S3 { key_id: String },
    /// SSE-KMS: sealed by the key service under the named key, bound to
    /// the encryption context (base64 JSON, as the client sent it).
    Kms { key_id: String, context: Option<String>, bucket_key: bool },
    /// SSE-C: sealed under the customer's key; `key_hmac` (HMAC-SHA256
    /// keyed by `salt`) tells a wrong key; `key_md5` is what responses echo.
    Customer { key_md5: [u8; 16], salt: [u8; SALT_BYTES], key_hmac: [u8; 32] },
}

/// The encryption of a stored object or upload (in its metadata).
#[derive(Clone, PartialEq, Eq)]
pub struct SseInfo {
    pub mode: SseMode,
    pub sealed_key: Vec<u8>,
    /// Per segment (one for a single PUT, one per part): the part number
    /// its packages are bound to and its key's salt. Empty for an upload.
    pub segments: Vec<(u32, [u8; SALT_BYTES])>,
}

impl std::fmt::Debug for SseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseInfo").field("mode", &self.mode).field("segments", &self.segments.len()).finish_non_exhaustive()
    }
}

impl SseInfo {
    pub fn encode(&self, e: &mut Enc) {
        e.u8(SSE_INFO_V1);
        match &self.mode {
            SseMode::S3 { key_id } => {
                e.u8(MODE_S3).str(key_id);
            }
            SseMode::Kms { key_id, context, bucket_key } => {
                e.u8(MODE_KMS).str(key_id).opt_str(context.as_deref()).u8(u8::from(*bucket_key));
            }
            SseMode::Customer { key_md5, salt, key_hmac } => {
                e.u8(MODE_CUSTOMER);
                e.buf.extend_from_slice(key_md5);
                e.buf.extend_from_slice(salt);
                e.buf.extend_from_slice(key_hmac);
            }
        }
        e.bytes(&self.sealed_key);
        e.u32(self.segments.len() as u32);
        for (part, salt) in &self.segments {
            e.u32(*part);
            e.buf.extend_from_slice(salt);
        }
    }

    pub fn decode(d: &mut Dec<'_>) -> Option<Self> {
        if d.u8()? != SSE_INFO_V1 {
            return None;
        }
        let mode = match d.u8()? {
            MODE_S3 => SseMode::S3 { key_id: d.str()? },
            MODE_KMS => SseMode::Kms {
                key_id: d.str()?,
                context: d.opt_str()?,
                bucket_key: match d.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            },
            MODE_CUSTOMER => SseMode::Customer { key_md5: d.fixed()?, salt: d.fixed()?, key_hmac: d.fixed()? },
            _ => return None,
        };
        let sealed_key = d.bytes()?.to_vec();
        let mut segments = Vec::new();
        for _ in 0..d.count(crate::meta::MAX_PARTS)? {
            segments.push((d.u32()?, d.fixed()?));
        }
        Some(SseInfo { mode, sealed_key, segments })
    }

    /// Whether the ETag must not be the plaintext's MD5 (AWS: SSE-C and
    /// SSE-KMS objects).
    pub fn hides_md5(&self) -> bool {
        !matches!(self.mode, SseMode::S3 { .. })
    }

    /// The MD5 field stored for plaintext MD5 `md5` (what the ETag shows).
    pub fn etag_md5(&self, dk: &DataKey, md5: [u8; 16]) -> [u8; 16] {
        if self.hides_md5() {
            dk.etag_of(&md5)
        } else {
            md5
        }
    }

    /// The layout of a body of these segments: `part_sizes` for a multipart
    /// object, else one segment of `size`.
    pub fn layout(&self, size: u64, part_sizes: &[u64]) -> S3Result<Layout> {
        let sizes: Vec<u64> = if part_sizes.is_empty() { vec![size] } else { part_sizes.to_vec() };
        if sizes.len() != self.segments.len() {
            return Err(crate::s3::internal("encrypted object: segments and part sizes disagree"));
        }
        Ok(Layout::new(
            self.segments.iter().zip(sizes).map(|((part, salt), plain_len)| Segment { part: *part, salt: *salt, plain_len }).collect(),
        ))
    }
}

/// A customer-provided key (SSE-C), checked against its MD5. Wiped on drop;
/// never in `Debug`.
pub struct CustomerKey {
    key: [u8; KEY_BYTES],
    pub md5: [u8; 16],
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(<redacted>)")
    }
}

impl Drop for CustomerKey {
    fn drop(&mut self) {
        for b in self.key.iter_mut() {
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl CustomerKey {
    fn check_value(&self, salt: &[u8; SALT_BYTES]) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, salt);
        let tag = hmac::sign(&k, &[CUSTOMER_HMAC_LABEL, self.key.as_slice()].concat());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn aes(&self) -> S3Result<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.key)
            .map(LessSafeKey::new)
            .map_err(|_| crate::s3::internal("customer key length"))
    }

    pub fn md5_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.md5)
    }
}

fn invalid_argument(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

fn invalid_request(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, msg)
}

/// The SSE-C key of headers starting with `prefix` (`CUSTOMER` or
/// `COPY_SOURCE_CUSTOMER`), validated as S3 does: all three headers,
/// algorithm AES256, a 256-bit key, its MD5.
pub fn customer_key(h: &Headers, prefix: &str) -> S3Result<Option<CustomerKey>> {
    // One name buffer for the three lookups (this runs on every GET and PUT).
    let mut name = String::with_capacity(prefix.len() + 9);
    let mut get = |s: &str| {
        name.clear();
        name.push_str(prefix);
        name.push_str(s);
        h.get(&name).map(str::trim)
    };
    let (algo, key, md5) = (get("algorithm"), get("key"), get("key-md5"));
    if algo.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    match algo {
        None => return Err(invalid_argument("Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.")),
        Some("AES256") => {}
        Some(_) => return Err(invalid_argument("The encryption algorithm specified is not valid.")),
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = key.ok_or_else(|| {
        invalid_argument("Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.")
    })?;
    let raw = b64.decode(key).ok().filter(|k| k.len() == KEY_BYTES).ok_or_else(|| {
        invalid_argument("The secret key was invalid for the specified algorithm.")
    })?;
    let md5 = md5.ok_or_else(|| {
        invalid_argument("Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.")
    })?;
    let computed: [u8; 16] = Md5::digest(&raw).into();
    if b64.decode(md5).ok().as_deref() != Some(computed.as_slice()) {
        return Err(invalid_argument("The calculated MD5 hash of the key did not match the hash that was provided."));
    }
    let mut k = [0u8; KEY_BYTES];
    k.copy_from_slice(&raw);
    Ok(Some(CustomerKey { key: k, md5: computed }))
}

/// What a write (PutObject, CreateMultipartUpload, CopyObject's
/// destination, a POST form) asks for.
#[derive(Debug)]
pub enum Wanted {
    /// Nothing: the bucket's default applies.
    Default,
    S3,
    Kms { key_id: Option<String>, context: Option<String>, bucket_key: Option<bool> },
    Customer(CustomerKey),
}

/// Parses a write's encryption headers; conflicting or malformed ones are
/// 400 InvalidArgument, as S3 answers.
pub fn wanted(h: &Headers) -> S3Result<Wanted> {
    let sse = h.get(H_SSE).map(str::trim);
    let key_id = h.get(H_KMS_KEY).map(|v| v.trim().to_string());
    let context = h.get(H_CONTEXT).map(|v| v.trim().to_string());
    let bucket_key = match h.get(H_BUCKET_KEY).map(str::trim) {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => return Err(invalid_argument("x-amz-server-side-encryption-bucket-key-enabled must be true or false")),
    };
    let customer = customer_key(h, CUSTOMER)?;
    let kms_only = || {
        invalid_argument("Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms")
    };
    match (sse, customer) {
        (Some(_), Some(_)) => Err(invalid_argument(
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
        )),
        (None, Some(c)) => {
            if key_id.is_some() || context.is_some() {
                return Err(kms_only());
            }
            Ok(Wanted::Customer(c))
        }
        (None, None) => {
            if key_id.is_some() || context.is_some() || bucket_key.is_some() {
                return Err(kms_only());
            }
            Ok(Wanted::Default)
        }
        (Some("AES256"), None) => {
            if key_id.is_some() || context.is_some() {
                return Err(kms_only());
            }
            Ok(Wanted::S3)
        }
        (Some("aws:kms" | "aws:kms:dsse"), None) => {
            if let Some(c) = &context {
                check_context(c)?;
            }
            Ok(Wanted::Kms { key_id, context, bucket_key })
        }
        (Some(_), None) => Err(invalid_argument("The encryption method specified is not supported")),
    }
}

/// An encryption context is base64 of a JSON object of strings.
fn check_context(c: &str) -> S3Result<()> {
    let bad = || invalid_argument("The encryption context must be base64-encoded JSON of string values.");
    if c.len() > MAX_CONTEXT_BYTES {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(c).map_err(|_| bad())?;
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(m)) if m.values().all(|v| v.is_string()) => Ok(()),
        _ => Err(bad()),
    }
}

/// A bucket's default encryption (PutBucketEncryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEncryption {
    /// `aws:kms` (true) or `AES256` (false).
    pub kms: bool,
    pub kms_key_id: Option<String>,
    pub bucket_key: bool,
}

/// A new object's (or upload's) encryption: its info (no segments yet)
/// and plain data key.
pub struct Sealing {
    pub info: SseInfo,
    pub dk: DataKey,
}

impl Sealing {
    /// The key of a new segment bound to `part`, and its salt recorded.
    pub fn new_segment(&mut self, part: u32) -> S3Result<SegmentKey> {
        let salt = cipher::random_salt().map_err(|e| crate::s3::internal(e.to_string()))?;
        self.info.segments.push((part, salt));
        Ok(SegmentKey::derive(&self.dk, &salt, part))
    }
}

fn kms_error(e: KmsError) -> S3Error {
    match e {
        KmsError::NotFound | KmsError::InvalidName => invalid_argument("Invalid keyId: no such KMS key"),
        other => crate::s3::internal(format!("key service: {other}")),
    }
}

/// The encryption of a new object in bucket `b` asked for by `w` (the
/// bucket's default when the request names none); `None`: unencrypted.
pub fn start(kms: &dyn KeyService, w: Wanted, b: &BucketInfo) -> S3Result<Option<Sealing>> {
    let w = match w {
        Wanted::Default => match &b.encryption {
            None => return Ok(None),
            Some(d) if d.kms => Wanted::Kms { key_id: d.kms_key_id.clone(), context: None, bucket_key: Some(d.bucket_key) },
            Some(_) => Wanted::S3,
        },
        w => w,
    };
    let (mode, dk, sealed_key) = match w {
        Wanted::Default => return Ok(None),
        Wanted::S3 => {
            let (dk, sealed) = kms.generate_data_key(kms::SSE_S3_KEY_ID, b"").map_err(kms_error)?;
            (SseMode::S3 { key_id: kms::SSE_S3_KEY_ID.into() }, dk, sealed)
        }
        Wanted::Kms { key_id, context, bucket_key } => {
            let bucket_default = b.encryption.as_ref().filter(|d| d.kms);
            let key_id = key_id
                .or_else(|| bucket_default.and_then(|d| d.kms_key_id.clone()))
                .ok_or_else(|| invalid_argument("Server Side Encryption with AWS KMS requires a key id (x-amz-server-side-encryption-aws-kms-key-id) here"))?;
            if !kms::valid_client_key_id(&key_id) {
                return Err(kms_error(KmsError::InvalidName));
            }
            let ctx_bytes = context.as_deref().unwrap_or_default().as_bytes().to_vec();
            let (dk, sealed) = kms.generate_data_key(&key_id, &ctx_bytes).map_err(kms_error)?;
            let bucket_key = bucket_key.unwrap_or_else(|| bucket_default.is_some_and(|d| d.bucket_key));
            (SseMode::Kms { key_id, context, bucket_key }, dk, sealed)
        }
        Wanted::Customer(c) => {
            let dk = DataKey::random().map_err(|e| crate::s3::internal(e.to_string()))?;
            let salt = cipher::random_salt().map_err(|e| crate::s3::internal(e.to_string()))?;
            let sealed = kms::seal_with(&c.aes()?, CUSTOMER_SEAL_AAD, dk.bytes()).map_err(kms_error)?;
            (SseMode::Customer { key_md5: c.md5, salt, key_hmac: c.check_value(&salt) }, dk, sealed)
        }
    };
    Ok(Some(Sealing { info: SseInfo { mode, sealed_key, segments: Vec::new() }, dk }))
}

/// The data key of a stored object or upload, given the SSE-C key the
/// request sent (checked here: missing, not applicable or wrong is 400).
pub fn open(kms: &dyn KeyService, info: Option<&SseInfo>, customer: Option<&CustomerKey>) -> S3Result<Option<DataKey>> {
    let Some(info) = info else {
        return match customer {
            Some(_) => Err(invalid_request("The encryption parameters are not applicable to this object.")),
            None => Ok(None),
        };
    };
    match (&info.mode, customer) {
        (SseMode::Customer { .. }, None) => Err(invalid_request(
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
        )),
        (SseMode::Customer { salt, key_hmac, .. }, Some(c)) => {
            if !constant_time_eq(&c.check_value(salt), key_hmac) {
                return Err(invalid_request("The provided encryption parameters did not match the ones used originally."));
            }
            let plain = kms::open_with(&c.aes()?, CUSTOMER_SEAL_AAD, &info.sealed_key)
                .map_err(|_| crate::s3::internal("SSE-C data key does not open"))?;
            Ok(Some(DataKey::from_bytes(&plain).ok_or_else(|| crate::s3::internal("SSE-C data key length"))?))
        }
        (_, Some(_)) => Err(invalid_request("The encryption parameters are not applicable to this object.")),
        (SseMode::S3 { key_id }, None) => kms.decrypt_data_key(key_id, b"", &info.sealed_key).map(Some).map_err(internal_kms),
        (SseMode::Kms { key_id, context, .. }, None) => {
            let c = context.as_deref().unwrap_or_default().as_bytes();
            kms.decrypt_data_key(key_id, c, &info.sealed_key).map(Some).map_err(internal_kms)
        }
    }
}

/// Seals `dk`, the data key of an SSE-S3/SSE-KMS object or upload another
/// node sealed, under this node's master key of the same name (`handover`).
/// SSE-C keys are sealed under the client's key: left as they are.
pub fn seal_again(kms: &dyn KeyService, info: &mut SseInfo, dk: &DataKey) -> S3Result<()> {
    let sealed = match &info.mode {
        SseMode::S3 { key_id } => kms.seal_data_key(key_id, b"", dk),
        SseMode::Kms { key_id, context, .. } => {
            kms.seal_data_key(key_id, context.as_deref().unwrap_or_default().as_bytes(), dk)
        }
        SseMode::Customer { .. } => return Ok(()),
    };
    info.sealed_key = sealed.map_err(internal_kms)?;
    Ok(())
}

/// Reading an object whose master key is gone or whose sealed key does not
/// open is the store's fault, not the client's.
fn internal_kms(e: KmsError) -> S3Error {
    crate::s3::internal(format!("key service: {e}"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A read (GET, HEAD) names no encryption: those headers belong to writes
/// (S3 answers 400).
pub fn refuse_write_headers_on_read(h: &Headers) -> S3Result<()> {
    if h.contains(H_SSE) || h.contains(H_KMS_KEY) {
        return Err(invalid_argument("x-amz-server-side-encryption headers are not allowed on this request"));
    }
    Ok(())
}

/// Whether the request carries SSE-C headers (its own or a copy source's).
pub fn has_customer_headers(h: &Headers) -> bool {
    h.iter().any(|(n, _)| n.starts_with(CUSTOMER) || n.starts_with(COPY_SOURCE_CUSTOMER))
}

/// The response headers that describe an object's encryption.
pub fn push_headers(resp: &mut Response, info: &SseInfo) {
    match &info.mode {
        SseMode::S3 { .. } => resp.push_header(H_SSE, "AES256"),
        SseMode::Kms { key_id, context, bucket_key } => {
            resp.push_header(H_SSE, "aws:kms");
            resp.push_header(H_KMS_KEY, key_id.clone());
            if *bucket_key {
                resp.push_header(H_BUCKET_KEY, "true");
            }
            if let Some(c) = context {
                resp.push_header(H_CONTEXT, c.clone());
            }
        }
        SseMode::Customer { key_md5, .. } => {
            resp.push_header("x-amz-server-side-encryption-customer-algorithm", "AES256");
            resp.push_header(
                "x-amz-server-side-encryption-customer-key-MD5",
                base64::engine::general_purpose::STANDARD.encode(key_md5),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(n, v);
        }
        h
    }

    const KEY: &str = "pO3upElrwuEXSoFwCfnZPdSsmt/xWeFa0N9KgDijwVs=";
    const MD5: &str = "DWygnHRtgiJ77HCm+1rvHw==";

    #[test]
    fn write_headers_table() {
        let c = |s| format!("{CUSTOMER}{s}");
        let (ca, ck, cm) = (c("algorithm"), c("key"), c("key-md5"));
        let ok: &[&[(&str, &str)]] = &[
            &[],
            &[(H_SSE, "AES256")],
            &[(H_SSE, "aws:kms")],
            &[(H_SSE, "aws:kms"), (H_KMS_KEY, "k")],
            &[(&ca, "AES256"), (&ck, KEY), (&cm, MD5)],
        ];
        for h in ok {
            assert!(wanted(&headers(h)).is_ok(), "{h:?}");
        }
        let bad: &[&[(&str, &str)]] = &[
            &[(H_SSE, "aes:kms")],
            &[(H_KMS_KEY, "k")],
            &[(H_SSE, "AES256"), (H_KMS_KEY, "k")],
            &[(H_SSE, "AES256"), (&ca, "AES256"), (&ck, KEY), (&cm, MD5)],
            &[(&ca, "AES256")],
            &[(&ca, "AES256"), (&ck, KEY)],
            &[(&ck, KEY), (&cm, MD5)],
            &[(&ca, "AES256"), (&ck, KEY), (&cm, "AAAAAAAAAAAAAAAAAAAAAA==")],
            &[(&ca, "AES128"), (&ck, KEY), (&cm, MD5)],
            &[(&ca, "AES256"), (&ck, "c2hvcnQ="), (&cm, MD5)],
            &[(H_SSE, "aws:kms"), (H_CONTEXT, "bm90IGpzb24=")],
        ];
        for h in bad {
            let e = wanted(&headers(h)).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidArgument, "{h:?}");
            assert!(!e.message.contains(KEY));
        }
    }

    #[test]
    fn info_round_trips_and_keeps_no_key() {
        let info = SseInfo {
            mode: SseMode::Customer { key_md5: [1; 16], salt: [2; 16], key_hmac: [3; 32] },
            sealed_key: vec![4; 60],
            segments: vec![(1, [5; 16]), (3, [6; 16])],
        };
        for mode in [
            info.mode.clone(),
            SseMode::S3 { key_id: "tessera/sse-s3".into() },
            SseMode::Kms { key_id: "k".into(), context: Some("e30=".into()), bucket_key: true },
        ] {
            let i = SseInfo { mode, ..info.clone() };
            let mut e = Enc::new(9);
            i.encode(&mut e);
            let b = e.finish();
            let mut d = Dec::new(&b, 9).unwrap();
            assert_eq!(SseInfo::decode(&mut d), Some(i));
        }
        let c = customer_key(
            &headers(&[(&format!("{CUSTOMER}algorithm"), "AES256"), (&format!("{CUSTOMER}key"), KEY), (&format!("{CUSTOMER}key-md5"), MD5)]),
            CUSTOMER,
        )
        .unwrap()
        .unwrap();
        assert_eq!(format!("{c:?}"), "CustomerKey(<redacted>)");
        assert_eq!(c.md5_base64(), MD5);
    }
}
