//! Keys: HMAC-SHA256, the derived signing key and its per-reactor cache, the
//! signature of a string to sign, the credential scope.

use std::fmt;

use ring::hmac;

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
pub(super) fn derive_key(
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
}
