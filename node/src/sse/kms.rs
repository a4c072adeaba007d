//! The key service: named master keys that seal and unseal per-object data
//! keys. `LocalKms` is the built-in one; an external service (KMIP, Vault's
//! transit engine) would implement [`KeyService`] the same way: the node
//! only ever asks it for a new data key (plain + sealed) and to unseal one.
//!
//! Master keys live in `kms-keys` in the first data dir, each sealed
//! (AES-256-GCM, its name as associated data) under the node master key.
//! The node master key is `TESSERA_MASTER_KEY` (base64 of 32 bytes) when
//! set, else the file `sse-master.key` in the first data dir (created 0600
//! on first start). Without it the keys file and every encrypted object
//! are ciphertext: keep a copy of it apart from the data.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::cipher::{DataKey, KEY_BYTES};

pub const MASTER_KEY_FILE: &str = "sse-master.key";
pub const MASTER_KEY_ENV: &str = "TESSERA_MASTER_KEY";
pub const KEYS_FILE: &str = "kms-keys";
const KEYS_FILE_HEADER: &str = "tessera-kms-keys 1";
const MASTER_FILE_HEADER: &str = "tessera-sse-master-key 1";
/// The master key of SSE-S3 (the store's own keys). Names under
/// `tessera/` are reserved: clients cannot name them.
pub const SSE_S3_KEY_ID: &str = "tessera/sse-s3";
const RESERVED_PREFIX: &str = "tessera/";
/// Longest key name (AWS key ARNs are under 256 characters).
pub const MAX_KEY_ID_BYTES: usize = 256;
/// Most master keys the built-in service holds.
pub const MAX_KMS_KEYS: usize = 10_000;
/// Format of a sealed data key: version, nonce, ciphertext and tag.
const SEALED_DATA_KEY_V1: u8 = 1;
const SEALED_DATA_KEY_BYTES: usize = 1 + NONCE_LEN + KEY_BYTES + 16;
const DATA_KEY_AAD: &[u8] = b"tessera-kms-data-key-v1";
const MASTER_KEY_AAD: &[u8] = b"tessera-kms-master-key-v1:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    #[error("no such KMS key")]
    NotFound,
    #[error("invalid KMS key name")]
    InvalidName,
    #[error("a sealed data key failed to open")]
    Corrupt,
    #[error("too many KMS keys")]
    TooMany,
    #[error("key service: {0}")]
    Io(String),
}

pub trait KeyService: Send + Sync {
    /// A new data key, plain and sealed under master key `key_id`, bound
    /// to `context` (the encryption context).
    fn generate_data_key(&self, key_id: &str, context: &[u8]) -> Result<(DataKey, Vec<u8>), KmsError>;
    fn decrypt_data_key(&self, key_id: &str, context: &[u8], sealed: &[u8]) -> Result<DataKey, KmsError>;
    /// Seals an existing data key under master key `key_id` (an object
    /// moved from another node, whose master keys are its own: `handover`).
    fn seal_data_key(&self, key_id: &str, context: &[u8], dk: &DataKey) -> Result<Vec<u8>, KmsError>;
    /// Creates master key `key_id` (`Ok(false)`: it existed already).
    fn create_key(&self, key_id: &str) -> Result<bool, KmsError>;
    fn has_key(&self, key_id: &str) -> bool;
    fn key_ids(&self) -> Vec<String>;
}

/// Whether clients may name `key_id` (not reserved, well formed).
pub fn valid_client_key_id(key_id: &str) -> bool {
    !key_id.starts_with(RESERVED_PREFIX) && valid_key_id(key_id)
}

fn valid_key_id(key_id: &str) -> bool {
    !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_BYTES
        && key_id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_/:.".contains(&c))
}

fn aes_key(b: &[u8]) -> Result<LessSafeKey, KmsError> {
    UnboundKey::new(&AES_256_GCM, b).map(LessSafeKey::new).map_err(|_| KmsError::Corrupt)
}

fn random<const N: usize>() -> Result<[u8; N], KmsError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| KmsError::Io("no system randomness".into()))?;
    Ok(b)
}

/// Seals `plain` under `key`: nonce ++ ciphertext ++ tag.
pub(crate) fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KmsError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| KmsError::Corrupt)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

pub(crate) fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KmsError> {
    if sealed.len() < NONCE_LEN {
        return Err(KmsError::Corrupt);
    }
    let (n, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| KmsError::Corrupt)?;
    let mut buf = ct.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| KmsError::Corrupt)?;
    Ok(plain.to_vec())
}

fn data_key_aad(key_id: &str, context: &[u8]) -> Vec<u8> {
    let mut a = DATA_KEY_AAD.to_vec();
    a.extend_from_slice(&(key_id.len() as u32).to_be_bytes());
    a.extend_from_slice(key_id.as_bytes());
    a.extend_from_slice(context);
    a
}

/// The node master key: from the environment, else from its file (created
/// on first start). Malformed is an error that stops the start.
pub fn load_master_key(dir: &Path) -> Result<[u8; KEY_BYTES], String> {
    if let Ok(v) = std::env::var(MASTER_KEY_ENV) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| format!("{MASTER_KEY_ENV} is not base64"))?;
        return raw.try_into().map_err(|_| format!("{MASTER_KEY_ENV} must be the base64 of 32 bytes"));
    }
    let path = dir.join(MASTER_KEY_FILE);
    let shown = path.display();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path).map_err(|e| format!("{shown}: {e}"))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(format!("{shown}: the master key file is accessible by other users; chmod 600 it"));
            }
            let mut lines = text.lines().map(str::trim);
            if lines.next() != Some(MASTER_FILE_HEADER) {
                return Err(format!("{shown}: not a tessera master key file"));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(lines.next().unwrap_or_default())
                .map_err(|_| format!("{shown}: malformed master key file"))?;
            raw.try_into().map_err(|_| format!("{shown}: malformed master key file (not 32 bytes)"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; KEY_BYTES] = random().map_err(|e| e.to_string())?;
            let text = format!("{MASTER_FILE_HEADER}\n{}\n", base64::engine::general_purpose::STANDARD.encode(key));
            write_new(&path, text.as_bytes(), true)?;
            Ok(key)
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Writes `bytes` to `path` 0600 and syncs it and its directory. `exclusive`:
/// never replace a file (the master key); else via a temporary file and a
/// rename (the keys file: a crash leaves the old or the new one).
fn write_new(path: &Path, bytes: &[u8], exclusive: bool) -> Result<(), String> {
    let shown = path.display();
    let target = if exclusive { path.to_path_buf() } else { path.with_extension("tmp") };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if exclusive {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let mut f = opts.open(&target).map_err(|e| format!("{shown}: {e}"))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{shown}: {e}"))?;
    if !exclusive {
        std::fs::rename(&target, path).map_err(|e| format!("{shown}: {e}"))?;
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The built-in key service.
pub struct LocalKms {
    master: LessSafeKey,
    keys: ArcSwap<BTreeMap<String, Arc<LessSafeKey>>>,
    /// The sealed form of every key, as written to the file.
    sealed: Mutex<BTreeMap<String, String>>,
    path: PathBuf,
    /// The keys file's copies in the node's other online dirs.
    copies: Vec<PathBuf>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKms(<redacted>)")
    }
}

impl LocalKms {
    /// Opens the service in `dir` with `master`, creating the SSE-S3 key and
    /// each of `names` that does not exist yet.
    /// `dirs`: the node's online data dirs, home first (`node_files`):
    /// the keys file is read in home and written to all of them.
    pub fn open(dirs: &[PathBuf], master: &[u8; KEY_BYTES], names: &[String]) -> Result<Self, String> {
        let dir = dirs.first().ok_or("no data dir for the KMS keys file")?;
        let path = dir.join(KEYS_FILE);
        let copies = dirs[1..].iter().map(|d| d.join(KEYS_FILE)).collect();
        let master = aes_key(master).map_err(|e| e.to_string())?;
        let shown = path.display();
        let mut sealed = BTreeMap::new();
        let mut keys = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut lines = text.lines();
                if lines.next() != Some(KEYS_FILE_HEADER) {
                    return Err(format!("{shown}: not a tessera KMS keys file"));
                }
                for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let bad = || format!("{shown}: line {}: malformed", i + 2);
                    let (name, b64) = line.split_once('\t').ok_or_else(bad)?;
                    if !valid_key_id(name) {
                        return Err(bad());
                    }
                    let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
                    let material = open_with(&master, &[MASTER_KEY_AAD, name.as_bytes()].concat(), &raw).map_err(|_| {
                        format!("{shown}: key {name:?} does not open with the node master key (wrong {MASTER_KEY_ENV} or {MASTER_KEY_FILE}?)")
                    })?;
                    keys.insert(name.to_string(), Arc::new(aes_key(&material).map_err(|_| bad())?));
                    sealed.insert(name.to_string(), b64.to_string());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{shown}: {e}")),
        }
        let kms = LocalKms { master, keys: ArcSwap::from_pointee(keys), sealed: Mutex::new(sealed), path, copies };
        kms.insert(SSE_S3_KEY_ID).map_err(|e| e.to_string())?;
        for n in names {
            if !valid_client_key_id(n) {
                return Err(format!("--kms-key {n:?}: a key name is 1 to {MAX_KEY_ID_BYTES} of A-Z a-z 0-9 - _ / : . (not under tessera/)"));
            }
            kms.insert(n).map_err(|e| e.to_string())?;
        }
        Ok(kms)
    }

    fn insert(&self, key_id: &str) -> Result<bool, KmsError> {
        let mut sealed = self.sealed.lock().map_err(|_| KmsError::Io("key store lock poisoned".into()))?;
        if sealed.contains_key(key_id) {
            return Ok(false);
        }
        if sealed.len() >= MAX_KMS_KEYS {
            return Err(KmsError::TooMany);
        }
        let material: [u8; KEY_BYTES] = random()?;
        let raw = seal_with(&self.master, &[MASTER_KEY_AAD, key_id.as_bytes()].concat(), &material)?;
        sealed.insert(key_id.to_string(), base64::engine::general_purpose::STANDARD.encode(raw));
        let mut text = format!("{KEYS_FILE_HEADER}\n");
        for (n, s) in sealed.iter() {
            text.push_str(&format!("{n}\t{s}\n"));
        }
        // Home first, then every copy: a key is created only once all
        // hold it (a failure leaves it in some files, unused; the next
        // start makes the copies equal to home's).
        let written = write_new(&self.path, text.as_bytes(), false)
            .and_then(|()| self.copies.iter().try_for_each(|c| crate::node_files::write_copy(c, text.as_bytes())));
        if let Err(e) = written {
            sealed.remove(key_id);
            return Err(KmsError::Io(e));
        }
        let mut keys = (**self.keys.load()).clone();
        keys.insert(key_id.to_string(), Arc::new(aes_key(&material)?));
        self.keys.store(Arc::new(keys));
        Ok(true)
    }

    fn key(&self, key_id: &str) -> Result<Arc<LessSafeKey>, KmsError> {
        self.keys.load().get(key_id).cloned().ok_or(KmsError::NotFound)
    }
}

impl KeyService for LocalKms {
    fn generate_data_key(&self, key_id: &str, context: &[u8]) -> Result<(DataKey, Vec<u8>), KmsError> {
        let master = self.key(key_id)?;
        let dk = DataKey::random().map_err(|e| KmsError::Io(e.to_string()))?;
        let mut out = vec![SEALED_DATA_KEY_V1];
        out.extend(seal_with(&master, &data_key_aad(key_id, context), dk.bytes())?);
        Ok((dk, out))
    }

    fn seal_data_key(&self, key_id: &str, context: &[u8], dk: &DataKey) -> Result<Vec<u8>, KmsError> {
        let master = self.key(key_id)?;
        let mut out = vec![SEALED_DATA_KEY_V1];
        out.extend(seal_with(&master, &data_key_aad(key_id, context), dk.bytes())?);
        Ok(out)
    }

    fn decrypt_data_key(&self, key_id: &str, context: &[u8], sealed: &[u8]) -> Result<DataKey, KmsError> {
        let master = self.key(key_id)?;
        match sealed.split_first() {
            Some((&SEALED_DATA_KEY_V1, rest)) if sealed.len() == SEALED_DATA_KEY_BYTES => {
                let plain = open_with(&master, &data_key_aad(key_id, context), rest)?;
                DataKey::from_bytes(&plain).ok_or(KmsError::Corrupt)
            }
            _ => Err(KmsError::Corrupt),
        }
    }

    fn create_key(&self, key_id: &str) -> Result<bool, KmsError> {
        if !valid_client_key_id(key_id) {
            return Err(KmsError::InvalidName);
        }
        self.insert(key_id)
    }

    fn has_key(&self, key_id: &str) -> bool {
        self.keys.load().contains_key(key_id)
    }

    fn key_ids(&self) -> Vec<String> {
        self.keys.load().keys().filter(|k| !k.starts_with(RESERVED_PREFIX)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_data_keys_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let master = [9u8; 32];
        let kms = LocalKms::open(&[dir.path().to_path_buf()], &master, &["testkey-1".into()]).unwrap();
        let (dk, sealed) = kms.generate_data_key("testkey-1", b"ctx").unwrap();
        assert_eq!(kms.decrypt_data_key("testkey-1", b"ctx", &sealed).unwrap().bytes(), dk.bytes());
        assert_eq!(kms.decrypt_data_key("testkey-1", b"other", &sealed).unwrap_err(), KmsError::Corrupt);
        assert_eq!(kms.generate_data_key("nope", b"").unwrap_err(), KmsError::NotFound);
        assert!(kms.create_key("tessera/x").is_err());
        assert_eq!(kms.create_key("k2"), Ok(true));
        assert_eq!(kms.create_key("k2"), Ok(false));
        drop(kms);
        let again = LocalKms::open(&[dir.path().to_path_buf()], &master, &[]).unwrap();
        assert_eq!(again.decrypt_data_key("testkey-1", b"ctx", &sealed).unwrap().bytes(), dk.bytes());
        assert_eq!(again.key_ids(), vec!["k2".to_string(), "testkey-1".to_string()]);
        // Another master key opens none of them, and says so.
        let err = LocalKms::open(&[dir.path().to_path_buf()], &[1u8; 32], &[]).unwrap_err();
        assert!(err.contains("does not open"), "{err}");
        assert_eq!(format!("{again:?}"), "LocalKms(<redacted>)");
    }

    #[test]
    fn master_key_file_is_created_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_master_key(dir.path()).unwrap();
        assert_eq!(load_master_key(dir.path()).unwrap(), a);
        let path = dir.path().join(MASTER_KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, format!("{MASTER_FILE_HEADER}\nnot-base64!\n")).unwrap();
        assert!(load_master_key(dir.path()).unwrap_err().contains("malformed"));
    }
}
