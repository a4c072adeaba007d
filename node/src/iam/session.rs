//! STS sessions: temporary credentials whose session token carries
//! everything needed to check them (the access key id, its secret, the
//! expiry, whose session it is and its session policy), sealed under the
//! node's STS key. Nothing is stored per session; a session of a role or
//! user that has since been deleted stops working, and its permissions are
//! those of its role or user at the time of each request.
//!
//! FORMAT BOUNDARY: the claims encoding travels inside tokens that clients
//! hold until they expire; it carries a version byte.

use super::keys::NodeKeys;
use crate::codec::{Dec, Enc};

const CLAIMS_V1: u8 = 1;
/// Prefix of session access key ids.
pub const SESSION_KEY_PREFIX: &str = "ASIA";

/// Whose session it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionBase {
    /// GetSessionToken by an account's root identity.
    Root,
    /// GetSessionToken by an IAM user.
    User { user_id: String },
    /// AssumeRole.
    Role { role_id: String, session_name: String },
}

#[derive(Clone, PartialEq, Eq)]
pub struct SessionClaims {
    pub access_key: String,
    pub secret: String,
    pub issued_unix: i64,
    pub expires_unix: i64,
    pub account: String,
    pub base: SessionBase,
    /// The session policy passed to AssumeRole, as given.
    pub policy: Option<String>,
    /// The ARN of who asked for the session.
    pub source_arn: String,
}

impl std::fmt::Debug for SessionClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClaims")
            .field("access_key", &self.access_key)
            .field("secret", &"<redacted>")
            .field("expires_unix", &self.expires_unix)
            .field("account", &self.account)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused (AWS's codes: `InvalidToken`, `ExpiredToken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
}

impl SessionClaims {
    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(CLAIMS_V1);
        e.str(&self.access_key).str(&self.secret).i64(self.issued_unix).i64(self.expires_unix).str(&self.account);
        match &self.base {
            SessionBase::Root => {
                e.u8(0);
            }
            SessionBase::User { user_id } => {
                e.u8(1).str(user_id);
            }
            SessionBase::Role { role_id, session_name } => {
                e.u8(2).str(role_id).str(session_name);
            }
        }
        e.opt_str(self.policy.as_deref()).str(&self.source_arn);
        e.finish()
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, CLAIMS_V1)?;
        let (access_key, secret, issued_unix, expires_unix, account) = (d.str()?, d.str()?, d.i64()?, d.i64()?, d.str()?);
        let base = match d.u8()? {
            0 => SessionBase::Root,
            1 => SessionBase::User { user_id: d.str()? },
            2 => SessionBase::Role { role_id: d.str()?, session_name: d.str()? },
            _ => return None,
        };
        let c = SessionClaims { access_key, secret, issued_unix, expires_unix, account, base, policy: d.opt_str()?, source_arn: d.str()? };
        d.end()?;
        Some(c)
    }

    /// The session token for these claims.
    pub fn seal(&self, keys: &NodeKeys) -> Result<String, String> {
        keys.seal_token(&self.encode())
    }

    /// The claims of `token`, if this node issued it and it has not expired at `now_unix`.
    pub fn open(keys: &NodeKeys, token: &str, now_unix: i64) -> Result<Self, TokenError> {
        let raw = keys.open_token(token).ok_or(TokenError::Invalid)?;
        let c = Self::decode(&raw).ok_or(TokenError::Invalid)?;
        if now_unix >= c.expires_unix {
            return Err(TokenError::Expired);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let keys = NodeKeys::from_bytes(&[1; 32], &[2; 32]).unwrap();
        let c = SessionClaims {
            access_key: "ASIAX".into(),
            secret: "topsecret".into(),
            issued_unix: 100,
            expires_unix: 1000,
            account: "acct".into(),
            base: SessionBase::Role { role_id: "AROA1".into(), session_name: "s".into() },
            policy: Some("{}".into()),
            source_arn: "arn:aws:iam::acct:user/u".into(),
        };
        let t = c.seal(&keys).unwrap();
        assert!(!t.contains("topsecret"));
        assert_eq!(SessionClaims::open(&keys, &t, 999), Ok(c.clone()));
        assert_eq!(SessionClaims::open(&keys, &t, 1000), Err(TokenError::Expired));
        assert_eq!(SessionClaims::open(&keys, "TSS1AAAA", 1), Err(TokenError::Invalid));
        assert!(!format!("{c:?}").contains("topsecret"));
        for base in [SessionBase::Root, SessionBase::User { user_id: "AIDA".into() }] {
            let c2 = SessionClaims { base, policy: None, ..c.clone() };
            assert_eq!(SessionClaims::decode(&c2.encode()), Some(c2));
        }
    }
}
