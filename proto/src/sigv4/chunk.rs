//! The chunk signer of streaming uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
//! and its `-TRAILER` form): the chain of chunk and trailer signatures seeded by
//! the request's own signature. Verified by `aws_chunked`.

use std::fmt;

use ring::{digest, hmac};

use super::EMPTY_SHA256_HEX;

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
