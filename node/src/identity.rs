//! Identities: the root credentials and the users declared in a users file.
//!
//! Secrets are never logged; the root pair is printed once, when generated.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};

/// Name of the file, in the first data dir, that keeps generated root credentials.
pub const CREDENTIALS_FILE: &str = "credentials";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub access_key: String,
    pub secret_key: String,
    /// Canonical user id (owner ID in listings and ACLs).
    pub user_id: String,
    pub display_name: String,
    pub is_root: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("credentials file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("users file line {line}: {msg}")]
    UsersFile { line: usize, msg: String },
    #[error("credentials: {0}")]
    Invalid(String),
}

/// Every identity the node accepts, by access key.
#[derive(Debug, Default)]
pub struct Identities {
    by_key: HashMap<String, Arc<User>>,
}

impl Identities {
    pub fn get(&self, access_key: &str) -> Option<&Arc<User>> {
        self.by_key.get(access_key)
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

    fn insert(&mut self, user: User) -> Result<(), String> {
        if self.by_key.contains_key(&user.access_key) {
            return Err(format!("access key {} declared twice (or is the root key)", user.access_key));
        }
        self.by_key.insert(user.access_key.clone(), Arc::new(user));
        Ok(())
    }
}

fn valid_key(s: &str) -> bool {
    (3..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Root credentials: from `TESSERA_ACCESS_KEY`/`TESSERA_SECRET_KEY`, else from
/// the credentials file in `dir`, else generated, saved 0600 and printed once.
pub fn root_user(dir: &Path) -> Result<User, IdentityError> {
    let user_id = std::env::var("TESSERA_ROOT_USER_ID").unwrap_or_else(|_| "tessera-root".into());
    let display_name = std::env::var("TESSERA_ROOT_DISPLAY_NAME").unwrap_or_else(|_| "root".into());
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
            println!("tessera: generated root credentials (kept in {}):", path.display());
            println!("tessera:   access key: {a}");
            println!("tessera:   secret key: {s}");
            Ok(make(a, s))
        }
        Err(e) => Err(io_err(e)),
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
pub fn parse_users(text: &str) -> Result<Vec<User>, IdentityError> {
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
        users.push(User {
            access_key: a.into(),
            secret_key: s.into(),
            user_id: id.trim().into(),
            display_name: display.into(),
            is_root: false,
        });
    }
    Ok(users)
}

/// Root plus the users file, if any. A declared user may not reuse the root key.
pub fn load(first_dir: &Path, users_file: Option<&Path>) -> Result<Identities, IdentityError> {
    let mut ids = Identities::default();
    let root = root_user(first_dir)?;
    ids.insert(root).map_err(IdentityError::Invalid)?;
    if let Some(path) = users_file {
        let text = std::fs::read_to_string(path)
            .map_err(|source| IdentityError::Io { path: path.display().to_string(), source })?;
        for (n, u) in parse_users(&text)?.into_iter().enumerate() {
            ids.insert(u).map_err(|msg| IdentityError::UsersFile { line: n + 1, msg })?;
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
        assert_eq!(u[0].display_name, "M. Tester");
        assert_eq!(u[1].display_name, "id2");
        assert!(parse_users("AK1 short id\n").is_err());
        assert!(parse_users("AK1\n").is_err());
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
