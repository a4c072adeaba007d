//! AWS Signature Version 4 for S3: the `Authorization` header, presigned query strings
//! and the chunk signer of streaming uploads; also the dispatcher over every way a
//! request can carry credentials ([`authenticate`]), SigV2 included.
//!
//! Canonicalization follows S3, not the generic SigV4 services: the path is not
//! normalized and is encoded once (see [`canonical_uri`]).
//!
//! Files by meaning: `canonical.rs` (canonical URI, query, headers and request;
//! the string to sign), `keys.rs` (HMAC, derived signing keys and their cache,
//! signature hex, credential scope), `chunk.rs` (the chunk signer of streaming
//! uploads), `sign.rs` (client side: `Authorization` values and presigned URLs),
//! `parse.rs` (the `Authorization` header, credentials, SignedHeaders, the payload
//! claim), `verify.rs` (what must be signed, the signature check, the V4 header and
//! presigned mechanisms) and `dispatch.rs` (`authenticate*` over every mechanism,
//! and the IAM/STS query API). Every public item is re-exported here: its path is
//! `sigv4::X` whichever file holds it.

mod canonical;
mod chunk;
mod dispatch;
mod keys;
mod parse;
mod sign;
mod verify;

pub use canonical::{canonical_headers, canonical_query, canonical_request, canonical_uri, string_to_sign};
pub(crate) use canonical::decode_component;
pub use chunk::ChunkSigner;
pub use dispatch::{
    authenticate, authenticate_cached, authenticate_query_api, authenticate_vhost, query_api_service,
    QUERY_API_SERVICES,
};
pub use keys::{credential_scope, signature_hex, signing_key, SigningKeyCache, SIGNING_KEY_CACHE_ENTRIES};
pub use sign::{presign_query, sign_request};
pub use verify::must_be_signed;

use crate::headers::Headers;

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
