//! Identities: the root credentials and the users declared in a users file.
//!
//! Secrets are never logged. A generated root pair is printed once, and only
//! to a terminal: under a service manager stdout is a log.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};

/// Name of the file, in the first data dir, that keeps generated root credentials.
pub const CREDENTIALS_FILE: &str = "credentials";

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub access_key: String,
    pub secret_key: String,
    /// Canonical user id (owner ID in listings and ACLs).
    pub user_id: String,
    pub display_name: String,
    pub is_root: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never reaches a log or an error message.
        f.debug_struct("User")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("display_name", &self.display_name)
            .field("is_root", &self.is_root)
            .finish()
    }
}

/// Longest user id (canonical id) and display name accepted.
pub const MAX_USER_ID_BYTES: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("credentials file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("users file line {line}: {msg}")]
    UsersFile { line: usize, msg: String },
    #[error("credentials: {0}")]
    Invalid(String),
}

/// Every identity the node accepts, by access key. Each is an account:
/// it owns the buckets it creates, and the IAM users, groups, roles and
/// policies created with its credentials (its user id is the account id).
#[derive(Debug, Default)]
pub struct Identities {
    /// (foldhash, randomly seeded: looked up on every request.)
    by_key: HashMap<String, Arc<User>, foldhash::fast::RandomState>,
    by_id: HashMap<String, Arc<User>, foldhash::fast::RandomState>,
}

impl Identities {
    pub fn get(&self, access_key: &str) -> Option<&Arc<User>> {
        self.by_key.get(access_key)
    }

    /// The account whose id (canonical user id) is `id`.
    pub fn account(&self, id: &str) -> Option<&Arc<User>> {
        self.by_id.get(id)
    }

    pub fn secret(&self, access_key: &str) -> Option<String> {
        self.by_key.get(access_key).map(|u| u.secret_key.clone())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds an identity; its access key and its user id must both be new (a
    /// reused user id would own the other identity's buckets, the root's too).
    fn insert(&mut self, user: User) -> Result<(), String> {
        if self.by_key.contains_key(&user.access_key) {
            return Err(format!("access key {} declared twice (or is the root key)", user.access_key));
        }
        if let Some(other) = self.by_key.values().find(|u| u.user_id == user.user_id) {
            let whose = if other.is_root { "the root's".to_string() } else { format!("access key {}'s", other.access_key) };
            return Err(format!("user id {:?} of access key {} is already {whose} user id", user.user_id, user.access_key));
        }
        let user = Arc::new(user);
        self.by_id.insert(user.user_id.clone(), user.clone());
        self.by_key.insert(user.access_key.clone(), user);
        Ok(())
    }
}

fn valid_key(s: &str) -> bool {
    (3..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_USER_ID_BYTES && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Root credentials: from `TESSERA_ACCESS_KEY`/`TESSERA_SECRET_KEY`, else from
/// the credentials file in `dir`, else generated, saved 0600 and printed once.
pub fn root_user(dir: &Path) -> Result<User, IdentityError> {
    let user_id = std::env::var("TESSERA_ROOT_USER_ID").unwrap_or_else(|_| "tessera-root".into());
    let display_name = std::env::var("TESSERA_ROOT_DISPLAY_NAME").unwrap_or_else(|_| "root".into());
    if !valid_user_id(&user_id) || display_name.len() > MAX_USER_ID_BYTES {
        return Err(IdentityError::Invalid(format!(
            "TESSERA_ROOT_USER_ID must be 1-{MAX_USER_ID_BYTES} printable characters, TESSERA_ROOT_DISPLAY_NAME at most {MAX_USER_ID_BYTES} bytes"
        )));
    }
    let make = |access_key: String, secret_key: String| User {
        access_key,
        secret_key,
        user_id: user_id.clone(),
        display_name: display_name.clone(),
        is_root: true,
    };
    match (std::env::var("TESSERA_ACCESS_KEY"), std::env::var("TESSERA_SECRET_KEY")) {
        (Ok(a), Ok(s)) => {
            if !valid_key(&a) || s.len() < 8 || !valid_key(&s) {
                return Err(IdentityError::Invalid(
                    "TESSERA_ACCESS_KEY must be 3-128 printable characters, TESSERA_SECRET_KEY 8-128".into(),
                ));
            }
            warn_if_kept_root_differs(dir, &a, &s);
            return Ok(make(a, s));
        }
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            return Err(IdentityError::Invalid(
                "set both TESSERA_ACCESS_KEY and TESSERA_SECRET_KEY, or neither".into(),
            ))
        }
        _ => {}
    }
    let path = dir.join(CREDENTIALS_FILE);
    let io_err = |source| IdentityError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let (Some(a), Some(s)) = (lines.next(), lines.next()) else {
                return Err(IdentityError::Invalid(format!("{} is malformed", path.display())));
            };
            let mode = std::fs::metadata(&path).map_err(io_err)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "credentials file is readable by others");
            }
            Ok(make(a.to_string(), s.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (a, s) = generate_pair().map_err(IdentityError::Invalid)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err)?;
            f.write_all(format!("{a}\n{s}\n").as_bytes()).map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
            announce_generated(&path, &a, &s);
            Ok(make(a, s))
        }
        Err(e) => Err(io_err(e)),
    }
}

/// The environment's root key wins over the one kept in the data dir; an
/// operator who changed one and not the other should hear of it (which
/// part differs, never the values).
fn warn_if_kept_root_differs(dir: &Path, access_key: &str, secret_key: &str) {
    let path = dir.join(CREDENTIALS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (kept_a, kept_s) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if kept_a != access_key || kept_s != secret_key {
        tracing::warn!(
            path = %path.display(),
            access_key_differs = kept_a != access_key,
            "TESSERA_ACCESS_KEY/TESSERA_SECRET_KEY differ from the root credentials kept in the data dir; the environment's are used"
        );
    }
}

/// Tells where generated credentials are. The secret is printed only to a
/// terminal: a service manager's stdout goes to logs that others may read.
fn announce_generated(path: &Path, access_key: &str, secret_key: &str) {
    // SAFETY: isatty only inspects the descriptor.
    let terminal = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    if terminal {
        println!("tessera: generated root credentials (kept in {}):", path.display());
        println!("tessera:   access key: {access_key}");
        println!("tessera:   secret key: {secret_key}");
    } else {
        println!("tessera: generated root credentials; they are in {} (mode 0600)", path.display());
    }
}

fn generate_pair() -> Result<(String, String), String> {
    const AK: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const SK: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let rng = SystemRandom::new();
    let mut raw = [0u8; 60];
    rng.fill(&mut raw).map_err(|_| "no system randomness".to_string())?;
    let ak: String = raw[..20].iter().map(|b| AK[*b as usize % AK.len()] as char).collect();
    let sk: String = raw[20..].iter().map(|b| SK[*b as usize % SK.len()] as char).collect();
    Ok((ak, sk))
}

/// Parses a users file: `<access_key> <secret_key> <user_id> <display name...>`.
/// Each user comes with its line number.
pub fn parse_users(text: &str) -> Result<Vec<(usize, User)>, IdentityError> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: &str| IdentityError::UsersFile { line: i + 1, msg: msg.to_string() };
        let mut it = line.splitn(4, char::is_whitespace);
        let (Some(a), Some(s), Some(id)) = (it.next(), it.next(), it.next()) else {
            return Err(err("expected <access_key> <secret_key> <user_id> [display name]"));
        };
        let display = it.next().map(str::trim).filter(|d| !d.is_empty()).unwrap_or(id);
        if !valid_key(a) || !valid_key(s) || s.len() < 8 {
            return Err(err("access key must be 3-128 printable characters, secret 8-128"));
        }
        if !valid_user_id(id.trim()) || display.len() > MAX_USER_ID_BYTES {
            return Err(err("user id must be 1-128 printable characters, display name at most 128 bytes"));
        }
        users.push((i + 1, User {
            access_key: a.into(),
            secret_key: s.into(),
            user_id: id.trim().into(),
            display_name: display.into(),
            is_root: false,
        }));
    }
    Ok(users)
}

/// Root plus the users file, if any. A declared user may not reuse the root key.
pub fn load(first_dir: &Path, users_file: Option<&Path>) -> Result<Identities, IdentityError> {
    let mut ids = Identities::default();
    let root = root_user(first_dir)?;
    ids.insert(root).map_err(IdentityError::Invalid)?;
    if let Some(path) = users_file {
        let io_err = |source| IdentityError::Io { path: path.display().to_string(), source };
        let text = std::fs::read_to_string(path).map_err(io_err)?;
        let mode = std::fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "users file (it holds secrets) is accessible by other users; chmod 600 it");
        }
        for (line, u) in parse_users(&text)? {
            ids.insert(u).map_err(|msg| IdentityError::UsersFile { line, msg })?;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_lines() {
        let text = "# c\n\nAK1 secret111 id1 M. Tester\nAK2 secret222 id2\n";
        let u = parse_users(text).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!((u[0].0, u[0].1.display_name.as_str()), (3, "M. Tester"));
        assert_eq!((u[1].0, u[1].1.display_name.as_str()), (4, "id2"));
        assert!(parse_users("AK1 short id\n").is_err());
        assert!(parse_users("AK1\n").is_err());
    }

    #[test]
    fn debug_output_has_no_secret() {
        let (_, u) = parse_users("AK1 supersecretvalue id1\n").unwrap().remove(0);
        let shown = format!("{u:?} {:?}", Identities { by_key: [("AK1".to_string(), Arc::new(u.clone()))].into_iter().collect(), by_id: HashMap::default() });
        assert!(!shown.contains("supersecretvalue"), "{shown}");
        assert!(shown.contains("AK1") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn duplicate_user_ids_and_keys_are_refused() {
        let mut ids = Identities::default();
        let user = |a: &str, id: &str, root: bool| User {
            access_key: a.into(),
            secret_key: "secret123".into(),
            user_id: id.into(),
            display_name: id.into(),
            is_root: root,
        };
        ids.insert(user("ROOT", "tessera-root", true)).unwrap();
        ids.insert(user("AK1", "id1", false)).unwrap();
        let e = ids.insert(user("AK2", "tessera-root", false)).unwrap_err();
        assert!(e.contains("root"), "{e}");
        assert!(ids.insert(user("AK3", "id1", false)).unwrap_err().contains("AK1"));
        assert!(ids.insert(user("AK1", "id9", false)).is_err());
        assert!(parse_users(&format!("AK9 secret999 {}\n", "x".repeat(129))).is_err());
    }

    #[test]
    fn generated_pairs_differ() {
        let a = generate_pair().unwrap();
        let b = generate_pair().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 20);
        assert_eq!(a.1.len(), 40);
    }
}
