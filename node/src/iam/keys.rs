//! The node key: two random 256-bit keys kept in one file (mode 0600, in
//! the first data dir unless `--key-file` puts it elsewhere). One seals the
//! secret keys of IAM access keys at rest (ChaCha20-Poly1305, the access
//! key id as associated data); the other seals STS session tokens, so a
//! token is authentic, carries its own expiry and hides the session's
//! secret. Neither is derived from any credential.
//!
//! A copy of the shard files alone hands out no secret: without this file
//! they are ciphertext. Keep the file on another medium than the data (or
//! in a secret store, pointed at by `--key-file`) for a copy of the whole
//! data dir not to hand them out either.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Default name of the key file in the first data dir.
pub const KEY_FILE: &str = "node.key";
const KEY_FILE_HEADER: &str = "tessera-node-key 1";
/// Prefix of session tokens (their format version).
pub const TOKEN_PREFIX: &str = "TSS1";
/// Longest session token accepted (a token with a 2 KiB session policy is
/// about 3.5 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Labels of the cluster's keys (`for_cluster`); a new label is a new key.
const CLUSTER_SECRETS_LABEL: &[u8] = b"tessera cluster iam secrets v1";
const CLUSTER_TOKENS_LABEL: &[u8] = b"tessera cluster sts tokens v1";

const SECRET_AAD: &[u8] = b"tessera-iam-secret-v1:";
const TOKEN_AAD: &[u8] = b"tessera-sts-token-v1";

pub struct NodeKeys {
    secrets: LessSafeKey,
    sts: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKeys(<redacted>)")
    }
}

fn key(bytes: &[u8]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&CHACHA20_POLY1305, bytes).map(LessSafeKey::new).map_err(|_| "bad key length".to_string())
}

impl NodeKeys {
    /// Reads the key file at `path`, or creates it (0600, synced) when
    /// absent. A file readable by others is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(format!("{shown}: the node key file is accessible by other users; chmod 600 it"));
                }
                let mut lines = text.lines().map(str::trim);
                if lines.next() != Some(KEY_FILE_HEADER) {
                    return Err(format!("{shown}: not a tessera node key file"));
                }
                let mut next = || -> Result<[u8; 32], String> {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(lines.next().unwrap_or_default(), &mut out)
                        .map_err(|_| format!("{shown}: malformed node key file"))?;
                    Ok(out)
                };
                let (a, b) = (next()?, next()?);
                Self::from_bytes(&a, &b)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let mut raw = [0u8; 64];
                rng.fill(&mut raw).map_err(|_| "no system randomness".to_string())?;
                let text = format!("{KEY_FILE_HEADER}\n{}\n{}\n", hex::encode(&raw[..32]), hex::encode(&raw[32..]));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("{shown}: {e}"))?;
                f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| format!("{shown}: {e}"))?;
                if let Some(dir) = path.parent() {
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Self::from_bytes(&raw[..32], &raw[32..])
            }
            Err(e) => Err(format!("{shown}: {e}")),
        }
    }

    /// The cluster's keys (a node in a cluster): both derived from the
    /// cluster secret with labels of their own (`ClusterKey::derive_key`),
    /// so every node seals and opens the same secrets and tokens.
    pub fn for_cluster(secret: &[u8]) -> Result<Self, String> {
        let derive = |label: &[u8]| {
            tessera_cluster::ClusterKey::derive_key(secret, label).ok_or_else(|| "the cluster secret is too short".to_string())
        };
        Self::from_bytes(&derive(CLUSTER_SECRETS_LABEL)?, &derive(CLUSTER_TOKENS_LABEL)?)
    }

    pub fn from_bytes(secrets: &[u8], sts: &[u8]) -> Result<Self, String> {
        Ok(NodeKeys { secrets: key(secrets)?, sts: key(sts)?, rng: SystemRandom::new() })
    }

    fn seal(&self, key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| "no system randomness".to_string())?;
        let mut buf = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| "seal failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (n, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).ok()?;
        let mut buf = ct.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
        Some(plain.to_vec())
    }

    /// The secret of `access_key`, sealed for storage.
    pub fn seal_secret(&self, access_key: &str, secret: &str) -> Result<Vec<u8>, String> {
        let aad = [SECRET_AAD, access_key.as_bytes()].concat();
        self.seal(&self.secrets, &aad, secret.as_bytes())
    }

    pub fn open_secret(&self, access_key: &str, sealed: &[u8]) -> Option<String> {
        let aad = [SECRET_AAD, access_key.as_bytes()].concat();
        String::from_utf8(Self::open(&self.secrets, &aad, sealed)?).ok()
    }

    /// A session token carrying `claims` (sealed: authentic and secret).
    pub fn seal_token(&self, claims: &[u8]) -> Result<String, String> {
        let sealed = self.seal(&self.sts, TOKEN_AAD, claims)?;
        Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// The claims of a token this node sealed; `None` for anything else.
    pub fn open_token(&self, token: &str) -> Option<Vec<u8>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let body = token.strip_prefix(TOKEN_PREFIX)?;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).ok()?;
        Self::open(&self.sts, TOKEN_AAD, &sealed)
    }

    /// Random bytes (ids, keys, secrets).
    pub fn random(&self, out: &mut [u8]) -> Result<(), String> {
        self.rng.fill(out).map_err(|_| "no system randomness".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let k = NodeKeys::from_bytes(&[1; 32], &[2; 32]).unwrap();
        let sealed = k.seal_secret("AKIA1", "s3cr3t").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"), "ciphertext");
        assert_eq!(k.open_secret("AKIA1", &sealed).as_deref(), Some("s3cr3t"));
        assert_eq!(k.open_secret("AKIA2", &sealed), None, "bound to its key id");
        let other = NodeKeys::from_bytes(&[3; 32], &[2; 32]).unwrap();
        assert_eq!(other.open_secret("AKIA1", &sealed), None);
        let t = k.seal_token(b"claims").unwrap();
        assert!(t.starts_with(TOKEN_PREFIX));
        assert_eq!(k.open_token(&t).as_deref(), Some(&b"claims"[..]));
        let mut forged = t.clone();
        forged.push('A');
        assert_eq!(k.open_token(&forged), None);
        assert_eq!(k.open_token("TSS1"), None);
        assert_eq!(k.open_token("garbage"), None);
        assert_eq!(other.open_token(&t).as_deref(), Some(&b"claims"[..]), "tokens use the second key");
        let third = NodeKeys::from_bytes(&[1; 32], &[9; 32]).unwrap();
        assert_eq!(third.open_token(&t), None);
        assert!(!format!("{k:?}").contains('1'));
    }

    #[test]
    fn cluster_keys_are_the_same_on_every_node_and_apart_from_each_other() {
        let a = NodeKeys::for_cluster(b"a secret of the test cluster").unwrap();
        let b = NodeKeys::for_cluster(b"a secret of the test cluster").unwrap();
        let sealed = a.seal_secret("AKIA1", "s3cr3t").unwrap();
        assert_eq!(b.open_secret("AKIA1", &sealed).as_deref(), Some("s3cr3t"));
        let t = a.seal_token(b"claims").unwrap();
        assert_eq!(b.open_token(&t).as_deref(), Some(&b"claims"[..]));
        let other = NodeKeys::for_cluster(b"another cluster's secret!!").unwrap();
        assert_eq!(other.open_secret("AKIA1", &sealed), None);
        assert_eq!(other.open_token(&t), None);
        // The two keys differ: a token's sealed claims do not open as a secret.
        let swapped = NodeKeys::from_bytes(
            &tessera_cluster::ClusterKey::derive_key(b"a secret of the test cluster", CLUSTER_TOKENS_LABEL).unwrap(),
            &tessera_cluster::ClusterKey::derive_key(b"a secret of the test cluster", CLUSTER_SECRETS_LABEL).unwrap(),
        )
        .unwrap();
        assert_eq!(swapped.open_secret("AKIA1", &sealed), None);
        assert!(NodeKeys::for_cluster(b"short").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let a = NodeKeys::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = NodeKeys::load_or_create(&path).unwrap();
        let sealed = a.seal_secret("k", "v").unwrap();
        assert_eq!(b.open_secret("k", &sealed).as_deref(), Some("v"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(NodeKeys::load_or_create(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "junk").unwrap();
        assert!(NodeKeys::load_or_create(&path).is_err());
    }
}
