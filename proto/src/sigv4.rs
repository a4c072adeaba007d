//! AWS Signature Version 4 for S3: the `Authorization` header, presigned query strings
//! and the chunk signer of streaming uploads; also the dispatcher over every way a
//! request can carry credentials ([`authenticate`]), SigV2 included.
//!
//! Canonicalization follows S3, not the generic SigV4 services: the path is not
//! normalized and is encoded once (see [`canonical_uri`]).

use std::borrow::Cow;
use std::fmt;

use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

use crate::error::{S3Error, S3ErrorCode};
use crate::headers::Headers;
use crate::time::{format_amz_date, parse_amz_date, parse_http_date};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
pub const STREAMING_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// SHA-256 of the empty string, hex.
pub const EMPTY_SHA256_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Largest difference between the request's date and ours for header authentication.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;
/// Longest validity of a presigned URL (one week), as S3 enforces.
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 604_800;
/// Most entries in SignedHeaders; real clients sign about ten.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// The region [`authenticate`] expects in credential scopes.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Every byte but the unreserved ones is encoded (RFC 3986, as S3 canonicalizes).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// As `STRICT`, keeping the path separators.
const STRICT_PATH: &AsciiSet = &STRICT.remove(b'/');

/// The parts of a request a signature covers, as received.
#[derive(Debug, Clone, Copy)]
pub struct SigRequest<'a> {
    pub method: &'a str,
    /// Raw path as on the wire, before `?`.
    pub path: &'a str,
    /// Raw query as on the wire, after `?` (without it).
    pub query: &'a str,
    pub headers: &'a Headers,
}

/// Who sent the request and what its body must be checked against.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub access_key: String,
    /// The session token of temporary credentials (`x-amz-security-token`
    /// header, or `X-Amz-Security-Token` in a presigned URL, where the
    /// signature covers it); the caller must validate it against the key.
    pub security_token: Option<String>,
    pub payload: PayloadMode,
    pub kind: AuthKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    HeaderV4,
    PresignedV4,
    HeaderV2,
    PresignedV2,
}

/// How the body is protected.
// One per request and rarely moved: the signer's size is not worth a Box in the API.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum PayloadMode {
    /// `UNSIGNED-PAYLOAD`, presigned URLs, SigV2: only Content-MD5 / checksums apply.
    Unsigned,
    /// `x-amz-content-sha256` was a hex digest: the body must hash to it.
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: aws-chunked with signed chunks.
    StreamingSigned { signer: ChunkSigner, trailer: bool },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, integrity from the checksum trailer.
    StreamingUnsignedTrailer,
}

/// Signs and verifies the chunks of a streaming upload: the key and scope of the
/// request, and its seed signature (the first link of the chain).
#[derive(Clone)]
pub struct ChunkSigner {
    key: hmac::Key,
    amz_date: String,
    scope: String,
    seed_signature: String,
}

impl fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signing key is a secret: never printed.
        f.debug_struct("ChunkSigner")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("seed_signature", &self.seed_signature)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// `seed_signature` is the hex signature of the request itself.
    pub fn new(signing_key: &[u8; 32], amz_date: &str, scope: &str, seed_signature: &str) -> Self {
        ChunkSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, signing_key),
            amz_date: amz_date.to_string(),
            scope: scope.to_string(),
            seed_signature: seed_signature.to_ascii_lowercase(),
        }
    }

    pub fn seed_signature(&self) -> &str {
        &self.seed_signature
    }

    /// String to sign of a chunk whose data hashes to `chunk_sha256_hex`.
    pub fn chunk_string_to_sign(&self, previous_signature: &str, chunk_sha256_hex: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date, self.scope, previous_signature, EMPTY_SHA256_HEX, chunk_sha256_hex
        )
    }

    /// String to sign of the trailer section; `canonical_trailers` is the
    /// `name:value\n` lines (see `aws_chunked`).
    pub fn trailer_string_to_sign(&self, previous_signature: &str, canonical_trailers: &[u8]) -> String {
        format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous_signature,
            hex::encode(digest::digest(&digest::SHA256, canonical_trailers))
        )
    }

    /// Client side: the signature of a chunk (tests and the bench tool use it).
    pub fn sign_chunk(&self, previous_signature: &str, data: &[u8]) -> String {
        let data_hash = hex::encode(digest::digest(&digest::SHA256, data));
        hex::encode(hmac::sign(
            &self.key,
            self.chunk_string_to_sign(previous_signature, &data_hash).as_bytes(),
        ))
    }

    /// Client side: the signature of a trailer section.
    pub fn sign_trailer(&self, previous_signature: &str, canonical_trailers: &[u8]) -> String {
        let sts = self.trailer_string_to_sign(previous_signature, canonical_trailers);
        hex::encode(hmac::sign(&self.key, sts.as_bytes()))
    }

    /// Constant-time check of a chunk signature.
    pub(crate) fn verify_chunk(
        &self,
        previous_signature: &str,
        data_hash: &[u8],
        signature: &[u8; 32],
    ) -> bool {
        let sts = self.chunk_string_to_sign(previous_signature, &hex::encode(data_hash));
        hmac::verify(&self.key, sts.as_bytes(), signature).is_ok()
    }

    /// Constant-time check of a trailer signature.
    pub(crate) fn verify_trailer(
        &self,
        previous_signature: &str,
        canonical_trailers: &[u8],
        signature: &[u8; 32],
    ) -> bool {
        let sts = self.trailer_string_to_sign(previous_signature, canonical_trailers);
        hmac::verify(&self.key, sts.as_bytes(), signature).is_ok()
    }
}

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

/// S3's canonical URI: the wire path decoded once and re-encoded with the strict
/// rule (`/` kept). `%20` stays `%20`, a raw `+` becomes `%2B`, a raw space `%20`.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    let bytes: Cow<'_, [u8]> = percent_decode(raw_path.as_bytes()).into();
    percent_encode(&bytes, STRICT_PATH).to_string()
}

/// Decodes a query component: `%XX` only (`+` is a literal plus); invalid UTF-8 is
/// replaced, which can only make a signature fail.
pub(crate) fn decode_component(raw: &str) -> Cow<'_, str> {
    percent_decode(raw.as_bytes()).decode_utf8_lossy()
}

/// Splits a raw query into decoded `(name, value)` pairs, in order; a parameter
/// without `=` has an empty value. Empty segments (`a=1&&b=2`) are skipped.
pub(crate) fn parse_query(raw_query: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (decode_component(n), decode_component(v)),
            None => (decode_component(p), Cow::Borrowed("")),
        })
        .collect()
}

/// The canonical query string: parameters decoded, re-encoded strictly, sorted by
/// name then value. With `drop_signature`, `X-Amz-Signature` is left out (presigned).
pub fn canonical_query(raw_query: &str, drop_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let name: Cow<'_, [u8]> = percent_decode(n.as_bytes()).into();
            if drop_signature && name.as_ref() == b"X-Amz-Signature" {
                return None;
            }
            let value: Cow<'_, [u8]> = percent_decode(v.as_bytes()).into();
            Some((percent_encode(&name, STRICT).to_string(), percent_encode(&value, STRICT).to_string()))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len() + 16);
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of spaces collapsed
/// to one. Only spaces, as S3 does (tabs are kept).
fn push_trimmed_value(out: &mut String, value: &str) {
    let mut previous_space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
}

/// The canonical headers block: `name:value\n` for each signed header, in the order
/// given; repeated headers are joined with `,`. An absent header has an empty value.
pub fn canonical_headers(headers: &Headers, signed_headers: &[&str]) -> String {
    let mut out = String::with_capacity(signed_headers.len() * 48);
    push_canonical_headers(&mut out, headers, signed_headers);
    out
}

fn push_canonical_headers(out: &mut String, headers: &Headers, signed_headers: &[&str]) {
    for name in signed_headers {
        let lower: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        out.push_str(&lower);
        out.push(':');
        for (i, value) in headers.get_all(&lower).enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_trimmed_value(out, value);
        }
        out.push('\n');
    }
}

/// The canonical request from already-canonical URI and query.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &Headers,
    signed_headers: &[&str],
    payload_hash: &str,
) -> String {
    // Built in one buffer (no `format!`, no temporaries): every signed request.
    let mut out = String::with_capacity(
        method.len() + canonical_uri.len() + canonical_query.len() + payload_hash.len() + signed_headers.len() * 64 + 8,
    );
    out.push_str(method);
    out.push('\n');
    out.push_str(canonical_uri);
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    push_canonical_headers(&mut out, headers, signed_headers);
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    let mut out = String::with_capacity(ALGORITHM.len() + amz_date.len() + scope.len() + 3 + 64);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(amz_date);
    out.push('\n');
    out.push_str(scope);
    out.push('\n');
    crate::checksum::push_hex_lower(&mut out, hash.as_ref());
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The derived signing key: HMAC chain over date (`YYYYMMDD`), region, service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Most derived signing keys a [`SigningKeyCache`] keeps (one per access
/// key, day, region and service in use; a client keeps one for a day).
pub const SIGNING_KEY_CACHE_ENTRIES: usize = 64;

/// Derived signing keys already computed, so that a request costs one HMAC
/// over its string to sign instead of five (the four HMACs of the key
/// chain were a quarter of a small GET's instructions). An entry is found
/// only by the same secret, date, region and service: a rotated secret
/// derives a new key. Bounded (`SIGNING_KEY_CACHE_ENTRIES`, the oldest
/// entry goes first); single-threaded (one per reactor). Secrets and keys
/// are wiped when dropped and never shown by `Debug`.
#[derive(Default)]
pub struct SigningKeyCache {
    entries: std::cell::RefCell<Vec<CachedKey>>,
    /// Next slot to overwrite once full.
    next: std::cell::Cell<usize>,
}

struct CachedKey {
    secret: Vec<u8>,
    date: String,
    region: String,
    service: String,
    key: [u8; 32],
    /// `key` ready for HMAC (its inner and outer pads hashed once).
    hmac: hmac::Key,
}

impl Drop for CachedKey {
    fn drop(&mut self) {
        // Best effort: the derived key is as good as the secret for its day.
        self.key = [0u8; 32];
        self.secret.fill(0);
    }
}

impl fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeyCache({} keys)", self.entries.borrow().len())
    }
}

impl SigningKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`signing_key`], from the cache when it was derived before.
    pub fn key(&self, secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
        self.key_and_hmac(secret, date, region, service).0
    }

    /// The signing key and its HMAC key.
    fn key_and_hmac(&self, secret: &str, date: &str, region: &str, service: &str) -> ([u8; 32], hmac::Key) {
        let mut entries = self.entries.borrow_mut();
        let found = entries.iter().find(|e| {
            e.date == date && e.region == region && e.service == service && constant_time_eq(&e.secret, secret.as_bytes())
        });
        if let Some(e) = found {
            return (e.key, e.hmac.clone());
        }
        let key = signing_key(secret, date, region, service);
        let hkey = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let entry = CachedKey {
            secret: secret.as_bytes().to_vec(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            key,
            hmac: hkey.clone(),
        };
        if entries.len() < SIGNING_KEY_CACHE_ENTRIES {
            entries.push(entry);
        } else {
            let i = self.next.get() % SIGNING_KEY_CACHE_ENTRIES;
            entries[i] = entry;
            self.next.set(i + 1);
        }
        (key, hkey)
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signing key of a request and its HMAC key: from the cache when there is one.
fn derive_key(
    cache: Option<&SigningKeyCache>,
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> ([u8; 32], hmac::Key) {
    match cache {
        Some(c) => c.key_and_hmac(secret, date, region, service),
        None => {
            let key = signing_key(secret, date, region, service);
            (key, hmac::Key::new(hmac::HMAC_SHA256, &key))
        }
    }
}

/// Hex signature of a string to sign.
pub fn signature_hex(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

/// `YYYYMMDD/region/service/aws4_request`.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    let mut out = String::with_capacity(date.len() + region.len() + service.len() + 15);
    for part in [date, "/", region, "/", service, "/aws4_request"] {
        out.push_str(part);
    }
    out
}

/// Headers a client never signs (they change in transit or are the signature).
const UNSIGNABLE: [&str; 5] =
    ["authorization", "user-agent", "expect", "x-amzn-trace-id", "transfer-encoding"];

fn headers_to_sign(headers: &Headers) -> Vec<&str> {
    let mut names: Vec<&str> = headers.iter().map(|(n, _)| n).filter(|n| !UNSIGNABLE.contains(n)).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Client side: the `Authorization` value for a request. `headers` must already hold
/// `host`, `x-amz-date` (= `format_amz_date(unix_secs)`) and, for S3,
/// `x-amz-content-sha256` (= `payload_hash`); every header but the unsignable ones is
/// signed. Path and query are raw, as they will be sent.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    payload_hash: &str,
    access_key: &str,
    secret: &str,
    region: &str,
    unix_secs: i64,
) -> String {
    let amz_date = format_amz_date(unix_secs);
    let date = &amz_date[..8];
    let signed = headers_to_sign(headers);
    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(query, false),
        headers,
        &signed,
        payload_hash,
    );
    let scope = credential_scope(date, region, "s3");
    let sig =
        signature_hex(&signing_key(secret, date, region, "s3"), &string_to_sign(&amz_date, &scope, &creq));
    format!(
        "{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    )
}

/// Client side: the query string of a presigned URL (the given `query` plus the
/// `X-Amz-*` parameters and the signature). Signs `headers` (at least `host`).
#[allow(clippy::too_many_arguments)]
pub fn presign_query(
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    access_key: &str,
    secret: &str,
    region: &str,
    unix_secs: i64,
    expires_secs: i64,
) -> String {
    let amz_date = format_amz_date(unix_secs);
    let date = &amz_date[..8];
    let scope = credential_scope(date, region, "s3");
    let signed = headers_to_sign(headers);
    let credential = percent_encode(format!("{access_key}/{scope}").as_bytes(), STRICT).to_string();
    let signed_list = percent_encode(signed.join(";").as_bytes(), STRICT).to_string();
    let mut full = String::from(query);
    if !full.is_empty() {
        full.push('&');
    }
    full.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={amz_date}\
         &X-Amz-Expires={expires_secs}&X-Amz-SignedHeaders={signed_list}"
    ));
    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(&full, true),
        headers,
        &signed,
        UNSIGNED_PAYLOAD,
    );
    let sig =
        signature_hex(&signing_key(secret, date, region, "s3"), &string_to_sign(&amz_date, &scope, &creq));
    full.push_str("&X-Amz-Signature=");
    full.push_str(&sig);
    full
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// A parsed credential: `AKID/YYYYMMDD/region/service/aws4_request`.
struct Credential<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
}

fn parse_credential(value: &str) -> Result<Credential<'_>, &'static str> {
    parse_credential_for(value, &["s3"]).map(|(c, _)| c)
}

/// A credential scoped to one of `services` (S3 requests accept only `s3`;
/// the query APIs `iam` and `sts`), with the service it names.
fn parse_credential_for<'v>(value: &'v str, services: &[&str]) -> Result<(Credential<'v>, &'v str), &'static str> {
    let mut parts = value.rsplitn(5, '/');
    let terminator = parts.next().unwrap_or_default();
    let service = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or_default();
    let date = parts.next().unwrap_or_default();
    let access_key = parts.next().unwrap_or_default();
    // boto3 clients of the global IAM/STS endpoints made with `region_name=''`
    // sign with an empty region; S3 credentials must name one.
    let region_needed = service == "s3" || !services.contains(&service);
    if access_key.is_empty() || (region.is_empty() && region_needed) || terminator != "aws4_request" {
        return Err(
            "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        );
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err("incorrect date format. This date in the credential must be in the format \"yyyyMMdd\".");
    }
    if !services.contains(&service) {
        return Err("incorrect service. This endpoint belongs to \"s3\".");
    }
    if !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("the region is mal-formed.");
    }
    Ok((Credential { access_key, date, region }, service))
}

/// Whether a header present in the request must be listed in SignedHeaders: every
/// `x-amz-*` header (copy sources, metadata directives, checksums, ACLs, the payload
/// hash, the date and the session token alike) and `content-md5`, as S3 requires,
/// and tessera's own `x-tessera-*` (a replica write's version id: a presigned URL's
/// holder must not add one). `host` is required separately (it is always present).
pub fn must_be_signed(name: &str) -> bool {
    name.starts_with("x-amz-") || name.starts_with("x-tessera-") || name == "content-md5"
}

/// Refuses a request carrying a header that must be signed but is not in
/// `signed_headers`. For a presigned URL, `query` holds its parameters: an `x-amz-*`
/// value may ride there instead (the canonical query then covers it), so a header is
/// also accepted when the query carries the same name with the same value.
fn check_all_signed(
    headers: &Headers,
    signed_headers: &[&str],
    query: Option<&[(Cow<'_, str>, Cow<'_, str>)]>,
) -> Result<(), S3Error> {
    let mut unsigned: Vec<&str> = Vec::new();
    for (name, value) in headers.iter() {
        if !must_be_signed(name) || signed_headers.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            continue;
        }
        let in_query = query.is_some_and(|q| q.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value));
        if !in_query && !unsigned.contains(&name) {
            unsigned.push(name);
        }
    }
    if unsigned.is_empty() {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::AccessDenied,
        "There were headers present in the request which were not signed",
    )
    .with_detail("HeadersNotSigned", unsigned.join(", ")))
}

/// AWS's answer to a credential scoped to another region than ours.
fn wrong_region(found: &str, expected: &str) -> String {
    format!("the region '{found}' is wrong; expecting '{expected}'")
}

fn parse_signed_headers(value: &str) -> Result<Vec<&str>, &'static str> {
    let names: Vec<&str> = value.split(';').collect();
    if names.len() > MAX_SIGNED_HEADERS || names.iter().any(|n| n.is_empty()) {
        return Err("the SignedHeaders list is mal-formed.");
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err("the host header must be signed.");
    }
    Ok(names)
}

fn parse_signature(value: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).ok()?;
    Some(out)
}

fn header_malformed(detail: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AuthorizationHeaderMalformed,
        format!("The authorization header is malformed; {detail}"),
    )
}

fn query_malformed(message: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AuthorizationQueryParametersError, message)
}

fn access_denied(message: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, message)
}

/// The three fields of a V4 `Authorization` header.
struct HeaderAuth<'a> {
    credential: Credential<'a>,
    signed_headers: Vec<&'a str>,
    signature: Option<[u8; 32]>,
}

fn parse_authorization(value: &str) -> Result<HeaderAuth<'_>, S3Error> {
    parse_authorization_for(value, &["s3"]).map(|(h, _)| h)
}

fn parse_authorization_for<'v>(value: &'v str, services: &[&str]) -> Result<(HeaderAuth<'v>, &'v str), S3Error> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| header_malformed("the authorization type is not AWS4-HMAC-SHA256."))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| header_malformed("the authorization component is not a key=value pair."))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(header_malformed("unknown authorization component.")),
        };
        if slot.replace(val).is_some() {
            return Err(header_malformed("repeated authorization component."));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(header_malformed(
            "the authorization header requires Credential, SignedHeaders and Signature.",
        ));
    };
    let (credential, service) = parse_credential_for(credential, services).map_err(header_malformed)?;
    Ok((
        HeaderAuth {
            credential,
            signed_headers: parse_signed_headers(signed).map_err(header_malformed)?,
            signature: parse_signature(signature),
        },
        service,
    ))
}

/// What `x-amz-content-sha256` (or the presign parameter) said about the body.
enum PayloadClaim {
    Unsigned,
    Sha256([u8; 32]),
    Streaming { trailer: bool },
    StreamingUnsignedTrailer,
}

fn parse_payload_claim(value: &str) -> Result<PayloadClaim, S3Error> {
    Ok(match value {
        UNSIGNED_PAYLOAD => PayloadClaim::Unsigned,
        STREAMING_PAYLOAD => PayloadClaim::Streaming { trailer: false },
        STREAMING_PAYLOAD_TRAILER => PayloadClaim::Streaming { trailer: true },
        STREAMING_UNSIGNED_PAYLOAD_TRAILER => PayloadClaim::StreamingUnsignedTrailer,
        _ => PayloadClaim::Sha256(parse_signature(value).ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                 STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER \
                 or a valid sha256 value.",
            )
        })?),
    })
}

/// Everything needed to check one V4 signature.
struct Check<'a> {
    req: &'a SigRequest<'a>,
    signed_headers: &'a [&'a str],
    canonical_query: &'a str,
    payload_hash: &'a str,
    amz_date: &'a str,
    scope: &'a str,
    /// The signing key, ready for HMAC.
    key: &'a hmac::Key,
}

/// Verifies `provided` against the canonical path, then against the raw wire path
/// (clients that leave `=` and friends unencoded sign the raw form).
fn verify_v4(check: &Check<'_>, provided: Option<&[u8; 32]>) -> Result<(), S3Error> {
    let mismatch = || S3Error::new(S3ErrorCode::SignatureDoesNotMatch);
    let provided = provided.ok_or_else(mismatch)?;
    let key = check.key;
    let canonical = canonical_uri(check.req.path);
    let raw = if check.req.path.is_empty() { "/" } else { check.req.path };
    let candidates: &[&str] = if raw == canonical { &[&canonical] } else { &[&canonical, raw] };
    for uri in candidates {
        let creq = canonical_request(
            check.req.method,
            uri,
            check.canonical_query,
            check.req.headers,
            check.signed_headers,
            check.payload_hash,
        );
        let sts = string_to_sign(check.amz_date, check.scope, &creq);
        if hmac::verify(key, sts.as_bytes(), provided).is_ok() {
            return Ok(());
        }
    }
    Err(mismatch())
}

fn payload_mode(
    claim: PayloadClaim,
    key: &[u8; 32],
    amz_date: &str,
    scope: &str,
    signature: &[u8; 32],
) -> PayloadMode {
    match claim {
        PayloadClaim::Unsigned => PayloadMode::Unsigned,
        PayloadClaim::Sha256(d) => PayloadMode::Sha256(d),
        PayloadClaim::StreamingUnsignedTrailer => PayloadMode::StreamingUnsignedTrailer,
        PayloadClaim::Streaming { trailer } => PayloadMode::StreamingSigned {
            signer: ChunkSigner::new(key, amz_date, scope, &hex::encode(signature)),
            trailer,
        },
    }
}

/// The request time for header auth: `x-amz-date`, else `Date`; with the amz-format
/// text that goes in the string to sign.
fn request_time(headers: &Headers) -> Result<(i64, String), S3Error> {
    let invalid = || access_denied("AWS authentication requires a valid Date or x-amz-date header");
    if let Some(v) = headers.get("x-amz-date") {
        let t = parse_amz_date(v).ok_or_else(invalid)?;
        return Ok((t, v.to_string()));
    }
    let t = headers.get("date").and_then(parse_http_date).ok_or_else(invalid)?;
    Ok((t, format_amz_date(t)))
}

fn lookup_secret(secret_for: &dyn Fn(&str) -> Option<String>, access_key: &str) -> Result<String, S3Error> {
    secret_for(access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))
}

fn authenticate_header_v4(
    req: &SigRequest<'_>,
    value: &str,
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
    keys: Option<&SigningKeyCache>,
) -> Result<AuthContext, S3Error> {
    let auth = parse_authorization(value)?;
    if auth.credential.region != region {
        return Err(header_malformed(&wrong_region(auth.credential.region, region)).with_detail("Region", region));
    }
    let secret = lookup_secret(secret_for, auth.credential.access_key)?;
    let (t, amz_date) = request_time(req.headers)?;
    if !amz_date.starts_with(auth.credential.date) {
        return Err(header_malformed("Invalid credential date. Date is not the same as X-Amz-Date."));
    }
    if now_unix_secs.abs_diff(t) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    let payload_hash = req.headers.get("x-amz-content-sha256").ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Missing required header for this request: x-amz-content-sha256",
        )
    })?;
    let claim = parse_payload_claim(payload_hash)?;
    check_all_signed(req.headers, &auth.signed_headers, None)?;
    let cred = &auth.credential;
    let scope = credential_scope(cred.date, cred.region, "s3");
    let (key, hkey) = derive_key(keys, &secret, cred.date, cred.region, "s3");
    let check = Check {
        req,
        signed_headers: &auth.signed_headers,
        canonical_query: &canonical_query(req.query, false),
        payload_hash,
        amz_date: &amz_date,
        scope: &scope,
        key: &hkey,
    };
    verify_v4(&check, auth.signature.as_ref())?;
    let signature = auth.signature.unwrap_or_default();
    Ok(AuthContext {
        access_key: cred.access_key.to_string(),
        security_token: None,
        payload: payload_mode(claim, &key, &amz_date, &scope, &signature),
        kind: AuthKind::HeaderV4,
    })
}

/// The single value of a presign parameter; absent or repeated is an error.
fn single_param<'q>(params: &'q [(Cow<'q, str>, Cow<'q, str>)], name: &str) -> Result<&'q str, S3Error> {
    let mut values = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_ref());
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v),
        (Some(_), Some(_)) => Err(query_malformed("Query-string authentication parameters must not repeat.")),
        (None, _) => Err(query_malformed(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        )),
    }
}

fn authenticate_presigned_v4(
    req: &SigRequest<'_>,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
    keys: Option<&SigningKeyCache>,
) -> Result<AuthContext, S3Error> {
    if single_param(params, "X-Amz-Algorithm")? != ALGORITHM {
        return Err(query_malformed("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""));
    }
    let credential = single_param(params, "X-Amz-Credential")?;
    let amz_date = single_param(params, "X-Amz-Date")?;
    let expires = single_param(params, "X-Amz-Expires")?;
    let signed_headers = single_param(params, "X-Amz-SignedHeaders")?;
    let signature = parse_signature(single_param(params, "X-Amz-Signature")?);
    let cred = parse_credential(credential).map_err(|detail| {
        query_malformed(&format!("Error parsing the X-Amz-Credential parameter; {detail}"))
    })?;
    let signed_headers = parse_signed_headers(signed_headers).map_err(|detail| {
        query_malformed(&format!("Error parsing the X-Amz-SignedHeaders parameter; {detail}"))
    })?;
    if cred.region != region {
        return Err(query_malformed(&format!(
            "Error parsing the X-Amz-Credential parameter; {}",
            wrong_region(cred.region, region)
        ))
        .with_detail("Region", region));
    }
    let secret = lookup_secret(secret_for, cred.access_key)?;
    let t = parse_amz_date(amz_date).ok_or_else(|| {
        query_malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    if !amz_date.starts_with(cred.date) {
        return Err(query_malformed("Invalid credential date. Date is not the same as X-Amz-Date."));
    }
    let expires_secs: i64 = match expires.parse::<i64>() {
        Ok(v) if expires.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => return Err(query_malformed("X-Amz-Expires should be a number")),
    };
    if expires_secs > MAX_PRESIGN_EXPIRES_SECS {
        return Err(query_malformed("X-Amz-Expires must be less than a week (in seconds) that is; 604800"));
    }
    if t > now_unix_secs.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(access_denied("Request is not valid yet"));
    }
    // A URL valid for zero seconds is expired as soon as it exists.
    if expires_secs == 0 || now_unix_secs > t.saturating_add(expires_secs) {
        return Err(access_denied("Request has expired"));
    }
    let (payload_hash, claim) = match params.iter().find(|(n, _)| n == "X-Amz-Content-Sha256") {
        None => (UNSIGNED_PAYLOAD, PayloadClaim::Unsigned),
        Some((_, v)) => match parse_payload_claim(v)? {
            c @ (PayloadClaim::Unsigned | PayloadClaim::Sha256(_)) => (v.as_ref(), c),
            _ => {
                return Err(query_malformed(
                    "X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD or a sha256 value",
                ))
            }
        },
    };
    check_all_signed(req.headers, &signed_headers, Some(params))?;
    let scope = credential_scope(cred.date, cred.region, "s3");
    let (key, hkey) = derive_key(keys, &secret, cred.date, cred.region, "s3");
    let check = Check {
        req,
        signed_headers: &signed_headers,
        canonical_query: &canonical_query(req.query, true),
        payload_hash,
        amz_date,
        scope: &scope,
        key: &hkey,
    };
    verify_v4(&check, signature.as_ref())?;
    Ok(AuthContext {
        access_key: cred.access_key.to_string(),
        security_token: None,
        payload: payload_mode(claim, &key, amz_date, &scope, &signature.unwrap_or_default()),
        kind: AuthKind::PresignedV4,
    })
}

/// The services of the AWS query protocol served on the S3 endpoint.
pub const QUERY_API_SERVICES: [&str; 2] = ["iam", "sts"];

/// The service named by a V4 Authorization header's credential scope, when
/// it is one of [`QUERY_API_SERVICES`] (how an IAM or STS request is told
/// from an S3 one on the same endpoint).
pub fn query_api_service(headers: &Headers) -> Option<&'static str> {
    let value = headers.get("authorization")?;
    let (_, service) = parse_authorization_for(value, &QUERY_API_SERVICES).ok()?;
    QUERY_API_SERVICES.iter().copied().find(|s| *s == service)
}

/// Authenticates an IAM or STS request (AWS query protocol: a form body
/// signed with SigV4 header auth). The body was read first; its SHA-256
/// is the payload hash (SDKs send no `x-amz-content-sha256` to these
/// services; one that is sent must agree). `regions`: the credential
/// scopes accepted (IAM is global and signed for us-east-1).
pub fn authenticate_query_api(
    req: &SigRequest<'_>,
    body_sha256_hex: &str,
    regions: &[&str],
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<(AuthContext, &'static str), S3Error> {
    let value = req.headers.get("authorization").ok_or_else(|| access_denied("Missing Authentication Token"))?;
    let (auth, service) = parse_authorization_for(value, &QUERY_API_SERVICES)?;
    let service = QUERY_API_SERVICES.iter().copied().find(|s| *s == service).unwrap_or("sts");
    let cred = &auth.credential;
    if !regions.contains(&cred.region) {
        let expected = regions.first().copied().unwrap_or(DEFAULT_REGION);
        return Err(header_malformed(&wrong_region(cred.region, expected)));
    }
    let secret = lookup_secret(secret_for, cred.access_key)?;
    let (t, amz_date) = request_time(req.headers)?;
    if !amz_date.starts_with(cred.date) {
        return Err(header_malformed("Invalid credential date. Date is not the same as X-Amz-Date."));
    }
    if now_unix_secs.abs_diff(t) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    if let Some(claimed) = req.headers.get("x-amz-content-sha256") {
        if !claimed.eq_ignore_ascii_case(body_sha256_hex) {
            return Err(S3Error::new(S3ErrorCode::XAmzContentSHA256Mismatch));
        }
    }
    check_all_signed(req.headers, &auth.signed_headers, None)?;
    let scope = credential_scope(cred.date, cred.region, service);
    let (_, hkey) = derive_key(None, &secret, cred.date, cred.region, service);
    let check = Check {
        req,
        signed_headers: &auth.signed_headers,
        canonical_query: &canonical_query(req.query, false),
        payload_hash: body_sha256_hex,
        amz_date: &amz_date,
        scope: &scope,
        key: &hkey,
    };
    verify_v4(&check, auth.signature.as_ref())?;
    let ctx = AuthContext {
        access_key: cred.access_key.to_string(),
        security_token: req.headers.get("x-amz-security-token").map(str::to_string),
        payload: PayloadMode::Unsigned,
        kind: AuthKind::HeaderV4,
    };
    Ok((ctx, service))
}

const V4_QUERY_PARAMS: [&str; 3] = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"];
const V2_QUERY_PARAMS: [&str; 2] = ["AWSAccessKeyId", "Signature"];

/// Authenticates a request by whichever mechanism it uses.
///
/// `Ok(None)`: no authentication information at all (anonymous request). Credentials
/// anywhere (header or query) are always verified; two mechanisms at once are refused.
/// SigV4 credentials must be scoped to [`DEFAULT_REGION`].
pub fn authenticate(
    req: &SigRequest,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AuthContext>, S3Error> {
    authenticate_vhost(req, None, DEFAULT_REGION, now_unix_secs, secret_for)
}

/// As [`authenticate`], for a node serving `region` (SigV4 credential scopes must
/// name it), and for a virtual-hosted-style request whose bucket came from the
/// Host header: SigV2 signs `/<bucket><path>`, which the path alone doesn't show.
pub fn authenticate_vhost(
    req: &SigRequest,
    vhost_bucket: Option<&str>,
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AuthContext>, S3Error> {
    authenticate_cached(req, vhost_bucket, region, now_unix_secs, secret_for, None)
}

/// As [`authenticate_vhost`], deriving SigV4 signing keys through `keys`
/// (a server keeps one cache per thread): the same decisions, less work.
pub fn authenticate_cached(
    req: &SigRequest,
    vhost_bucket: Option<&str>,
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
    keys: Option<&SigningKeyCache>,
) -> Result<Option<AuthContext>, S3Error> {
    let params = parse_query(req.query);
    // Detected in any case, so that a near-miss spelling is refused rather than
    // served anonymously; verification then wants the exact names.
    let has = |names: &[&str]| params.iter().any(|(n, _)| names.iter().any(|a| a.eq_ignore_ascii_case(n)));
    let (v4_query, v2_query) = (has(&V4_QUERY_PARAMS), has(&V2_QUERY_PARAMS));
    let mut authorization = req.headers.get_all("authorization");
    let header = authorization.next();
    let only_one = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        )
    };
    if authorization.next().is_some()
        || (v4_query && v2_query)
        || (header.is_some() && (v4_query || v2_query))
    {
        return Err(only_one());
    }
    let scheme = header.map(|v| v.split(' ').next().unwrap_or_default());
    let ctx = match (header, scheme) {
        (Some(value), Some(ALGORITHM)) => authenticate_header_v4(req, value, region, now_unix_secs, secret_for, keys)?,
        (Some(value), Some("AWS")) => {
            crate::sigv2::authenticate_header(req, vhost_bucket, value, now_unix_secs, secret_for)?
        }
        (Some(_), Some("AWS4-ECDSA-P256-SHA256")) => {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "SigV4a is not supported."));
        }
        (Some(_), _) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Unsupported Authorization Type",
            ));
        }
        (None, _) if v4_query => authenticate_presigned_v4(req, &params, region, now_unix_secs, secret_for, keys)?,
        (None, _) if v2_query => {
            crate::sigv2::authenticate_query(req, vhost_bucket, &params, now_unix_secs, secret_for)?
        }
        (None, _) => return Ok(None),
    };
    let mut ctx = ctx;
    ctx.security_token = req
        .headers
        .get("x-amz-security-token")
        .map(str::to_string)
        .or_else(|| params.iter().find(|(n, _)| n == "X-Amz-Security-Token").map(|(_, v)| v.to_string()));
    Ok(Some(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_signing_keys_equal_derived_ones_and_stay_bounded() {
        let cache = SigningKeyCache::new();
        let k = cache.key("secret", "20260101", "us-east-1", "s3");
        assert_eq!(k, signing_key("secret", "20260101", "us-east-1", "s3"));
        assert_eq!(cache.key("secret", "20260101", "us-east-1", "s3"), k);
        assert_eq!(cache.len(), 1);
        // Any part that differs derives another key; a rotated secret too.
        for (secret, date, region, service) in [
            ("secret2", "20260101", "us-east-1", "s3"),
            ("secret", "20260102", "us-east-1", "s3"),
            ("secret", "20260101", "eu-west-1", "s3"),
            ("secret", "20260101", "us-east-1", "iam"),
        ] {
            assert_eq!(cache.key(secret, date, region, service), signing_key(secret, date, region, service));
        }
        assert_eq!(cache.len(), 5);
        for i in 0..3 * SIGNING_KEY_CACHE_ENTRIES {
            let secret = format!("s{i}");
            assert_eq!(cache.key(&secret, "20260101", "us-east-1", "s3"), signing_key(&secret, "20260101", "us-east-1", "s3"));
        }
        assert_eq!(cache.len(), SIGNING_KEY_CACHE_ENTRIES);
        assert!(!format!("{cache:?}").contains("s1"), "Debug shows no secret");
    }

    #[test]
    fn credentials_parse() {
        let c = parse_credential("AKID/20130524/us-east-1/s3/aws4_request").map_err(|_| ()).unwrap();
        assert_eq!((c.access_key, c.date, c.region), ("AKID", "20130524", "us-east-1"));
        for bad in [
            "",
            "AKID/20130524/us-east-1/s3",
            "/20130524/us-east-1/s3/aws4_request",
            "AKID/2013052/us-east-1/s3/aws4_request",
            "AKID/20130524/us-east-1/ec2/aws4_request",
            "AKID/20130524//s3/aws4_request",
            "AKID/20130524/us east/s3/aws4_request",
            "AKID/20130524/us-east-1/s3/aws4_requests",
        ] {
            assert!(parse_credential(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_headers_limits() {
        assert!(parse_signed_headers("host;x-amz-date").is_ok());
        assert!(parse_signed_headers("x-amz-date").is_err());
        assert!(parse_signed_headers("host;;x").is_err());
        let many = vec!["h"; MAX_SIGNED_HEADERS].join(";").replacen('h', "host", 1);
        assert!(parse_signed_headers(&many).is_ok());
        let too_many = format!("{many};x");
        assert!(parse_signed_headers(&too_many).is_err());
    }
}
