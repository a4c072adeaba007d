//! IAM entities of an account: users, access keys, groups, managed
//! policies (with versions) and roles, each with its inline policies; their
//! names, ids and ARNs; and their stored encodings.
//!
//! FORMAT BOUNDARY: the `encode`/`decode` pairs are on disk (the meta bytes
//! of `T_IAM` records); each starts with a version byte.

use std::sync::Arc;

use tessera_policy::{Kind, Policy, PolicyError};

use crate::codec::{Dec, Enc};

const ENTITY_V1: u8 = 1;

/// Limits (AWS's default quotas where AWS has one).
pub const MAX_NAME_BYTES: usize = 64;
pub const MAX_POLICY_NAME_BYTES: usize = 128;
pub const MAX_PATH_BYTES: usize = 512;
pub const MAX_DESCRIPTION_BYTES: usize = 1000;
pub const MAX_USERS_PER_ACCOUNT: usize = 5000;
pub const MAX_GROUPS_PER_ACCOUNT: usize = 300;
pub const MAX_ROLES_PER_ACCOUNT: usize = 1000;
pub const MAX_POLICIES_PER_ACCOUNT: usize = 1500;
pub const MAX_KEYS_PER_USER: usize = 2;
pub const MAX_GROUPS_PER_USER: usize = 10;
pub const MAX_ATTACHED_POLICIES: usize = 10;
pub const MAX_POLICY_VERSIONS: usize = 5;
pub const MAX_INLINE_POLICIES: usize = 100;
pub const MAX_TAGS: usize = 50;
/// Policy sizes in characters other than white space, as AWS counts them.
pub const MAX_USER_INLINE_CHARS: usize = 2048;
pub const MAX_GROUP_INLINE_CHARS: usize = 5120;
pub const MAX_ROLE_INLINE_CHARS: usize = 10_240;
pub const MAX_MANAGED_POLICY_CHARS: usize = 6144;
pub const MAX_TRUST_POLICY_CHARS: usize = 2048;
/// Session lengths.
pub const DEFAULT_MAX_SESSION_SECS: u32 = 3600;
pub const MAX_MAX_SESSION_SECS: u32 = 12 * 3600;
pub const MIN_SESSION_SECS: u32 = 900;

/// Characters of a policy that count against its size limit.
pub fn policy_chars(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

/// A policy document as given and as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub text: String,
    pub parsed: Arc<Policy>,
}

impl Doc {
    pub fn new(text: String, kind: Kind) -> Result<Doc, PolicyError> {
        let parsed = Arc::new(tessera_policy::parse(&text, kind)?);
        Ok(Doc { text, parsed })
    }
}

/// `[\w+=,.@-]{1,max}`: the characters IAM names allow.
pub fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `/` or `/segments/`, printable ASCII.
pub fn valid_path(s: &str) -> bool {
    s.len() <= MAX_PATH_BYTES
        && s.starts_with('/')
        && s.ends_with('/')
        && s.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// The ARN of an IAM entity of `kind` (`user`, `group`, `role`, `policy`).
pub fn arn(account: &str, kind: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:{kind}{path}{name}")
}

pub fn root_arn(account: &str) -> String {
    // Concatenated rather than `format!`ed: every request of a root
    // identity builds it (~350 instructions through `format!`).
    concat_str(&["arn:aws:iam::", account, ":root"])
}

/// The strings, one after another, in one allocation of the right size.
pub fn concat_str(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// Inline policies by name (names compared case-sensitively, as AWS does).
pub type Inline = Vec<(String, Doc)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamUser {
    pub account: String,
    pub name: String,
    pub path: String,
    /// `AIDA...`: stable across renames.
    pub id: String,
    pub created_ms: i64,
    pub inline: Inline,
    /// ARNs of attached managed policies.
    pub attached: Vec<String>,
    pub boundary: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl IamUser {
    pub fn arn(&self) -> String {
        arn(&self.account, "user", &self.path, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamGroup {
    pub account: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub created_ms: i64,
    pub inline: Inline,
    pub attached: Vec<String>,
    /// Member users by id.
    pub members: Vec<String>,
}

impl IamGroup {
    pub fn arn(&self) -> String {
        arn(&self.account, "group", &self.path, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamRole {
    pub account: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub created_ms: i64,
    pub trust: Doc,
    pub description: String,
    pub max_session_secs: u32,
    pub inline: Inline,
    pub attached: Vec<String>,
    pub boundary: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl IamRole {
    pub fn arn(&self) -> String {
        arn(&self.account, "role", &self.path, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub id: u32,
    pub doc: Doc,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub account: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub description: String,
    pub default_version: u32,
    pub next_version: u32,
    pub versions: Vec<PolicyVersion>,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        arn(&self.account, "policy", &self.path, &self.name)
    }

    pub fn default_doc(&self) -> Option<&Doc> {
        self.versions.iter().find(|v| v.id == self.default_version).map(|v| &v.doc)
    }
}

/// An access key. `user`: the IAM user's id; `None` for a key of the
/// account's root identity.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub account: String,
    pub user: Option<String>,
    pub active: bool,
    pub created_ms: i64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("active", &self.active)
            .finish()
    }
}

// ---- encodings ------------------------------------------------------------

fn enc_inline(e: &mut Enc, inline: &Inline) {
    e.u32(inline.len() as u32);
    for (n, d) in inline {
        e.str(n).str(&d.text);
    }
}

fn dec_inline(d: &mut Dec<'_>, kind: Kind) -> Option<Inline> {
    let mut out = Vec::new();
    for _ in 0..d.count(MAX_INLINE_POLICIES)? {
        let name = d.str()?;
        // A stored policy that no longer parses makes the record corrupt:
        // dropping it could drop a Deny.
        out.push((name, Doc::new(d.str()?, kind).ok()?));
    }
    Some(out)
}

fn enc_strs(e: &mut Enc, v: &[String]) {
    e.u32(v.len() as u32);
    for s in v {
        e.str(s);
    }
}

fn dec_strs(d: &mut Dec<'_>, max: usize) -> Option<Vec<String>> {
    (0..d.count(max)?).map(|_| d.str()).collect()
}

fn enc_tags(e: &mut Enc, tags: &[(String, String)]) {
    e.u32(tags.len() as u32);
    for (k, v) in tags {
        e.str(k).str(v);
    }
}

fn dec_tags(d: &mut Dec<'_>) -> Option<Vec<(String, String)>> {
    (0..d.count(MAX_TAGS)?).map(|_| Some((d.str()?, d.str()?))).collect()
}

/// Members of a group are bounded by the users of an account.
const MAX_DECODED_MEMBERS: usize = MAX_USERS_PER_ACCOUNT;

impl IamUser {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(ENTITY_V1);
        e.str(&self.account).str(&self.name).str(&self.path).str(&self.id).i64(self.created_ms);
        enc_inline(&mut e, &self.inline);
        enc_strs(&mut e, &self.attached);
        e.opt_str(self.boundary.as_deref());
        enc_tags(&mut e, &self.tags);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, ENTITY_V1)?;
        let u = IamUser {
            account: d.str()?,
            name: d.str()?,
            path: d.str()?,
            id: d.str()?,
            created_ms: d.i64()?,
            inline: dec_inline(&mut d, Kind::Identity)?,
            attached: dec_strs(&mut d, MAX_ATTACHED_POLICIES)?,
            boundary: d.opt_str()?,
            tags: dec_tags(&mut d)?,
        };
        d.end()?;
        Some(u)
    }
}

impl IamGroup {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(ENTITY_V1);
        e.str(&self.account).str(&self.name).str(&self.path).str(&self.id).i64(self.created_ms);
        enc_inline(&mut e, &self.inline);
        enc_strs(&mut e, &self.attached);
        enc_strs(&mut e, &self.members);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, ENTITY_V1)?;
        let g = IamGroup {
            account: d.str()?,
            name: d.str()?,
            path: d.str()?,
            id: d.str()?,
            created_ms: d.i64()?,
            inline: dec_inline(&mut d, Kind::Identity)?,
            attached: dec_strs(&mut d, MAX_ATTACHED_POLICIES)?,
            members: dec_strs(&mut d, MAX_DECODED_MEMBERS)?,
        };
        d.end()?;
        Some(g)
    }
}

impl IamRole {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(ENTITY_V1);
        e.str(&self.account).str(&self.name).str(&self.path).str(&self.id).i64(self.created_ms);
        e.str(&self.trust.text).str(&self.description).u32(self.max_session_secs);
        enc_inline(&mut e, &self.inline);
        enc_strs(&mut e, &self.attached);
        e.opt_str(self.boundary.as_deref());
        enc_tags(&mut e, &self.tags);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, ENTITY_V1)?;
        let r = IamRole {
            account: d.str()?,
            name: d.str()?,
            path: d.str()?,
            id: d.str()?,
            created_ms: d.i64()?,
            trust: Doc::new(d.str()?, Kind::Trust).ok()?,
            description: d.str()?,
            max_session_secs: d.u32()?,
            inline: dec_inline(&mut d, Kind::Identity)?,
            attached: dec_strs(&mut d, MAX_ATTACHED_POLICIES)?,
            boundary: d.opt_str()?,
            tags: dec_tags(&mut d)?,
        };
        d.end()?;
        Some(r)
    }
}

impl ManagedPolicy {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(ENTITY_V1);
        e.str(&self.account).str(&self.name).str(&self.path).str(&self.id).i64(self.created_ms).i64(self.updated_ms);
        e.str(&self.description).u32(self.default_version).u32(self.next_version);
        e.u32(self.versions.len() as u32);
        for v in &self.versions {
            e.u32(v.id).str(&v.doc.text).i64(v.created_ms);
        }
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, ENTITY_V1)?;
        let mut p = ManagedPolicy {
            account: d.str()?,
            name: d.str()?,
            path: d.str()?,
            id: d.str()?,
            created_ms: d.i64()?,
            updated_ms: d.i64()?,
            description: d.str()?,
            default_version: d.u32()?,
            next_version: d.u32()?,
            versions: Vec::new(),
        };
        for _ in 0..d.count(MAX_POLICY_VERSIONS)? {
            let id = d.u32()?;
            let doc = Doc::new(d.str()?, Kind::Identity).ok()?;
            p.versions.push(PolicyVersion { id, doc, created_ms: d.i64()? });
        }
        d.end()?;
        p.default_doc()?;
        Some(p)
    }
}

impl AccessKey {
    /// The record, with the secret sealed by `seal`.
    pub fn encode(&self, sealed_secret: &[u8]) -> Vec<u8> {
        let mut e = Enc::new(ENTITY_V1);
        e.str(&self.id).bytes(sealed_secret).str(&self.account).opt_str(self.user.as_deref());
        e.u8(u8::from(self.active)).i64(self.created_ms);
        e.finish()
    }

    /// Decodes a record; `open` unseals the secret (given the key id).
    pub fn decode(b: &[u8], open: impl Fn(&str, &[u8]) -> Option<String>) -> Option<Self> {
        let mut d = Dec::new(b, ENTITY_V1)?;
        let id = d.str()?;
        let secret = open(&id, d.bytes()?)?;
        let k = AccessKey {
            id,
            secret,
            account: d.str()?,
            user: d.opt_str()?,
            active: match d.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
            created_ms: d.i64()?,
        };
        d.end()?;
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_arns_are_concatenated_as_aws_spells_them() {
        assert_eq!(root_arn("123456789012"), "arn:aws:iam::123456789012:root");
        assert_eq!(root_arn(""), "arn:aws:iam:::root");
        assert_eq!(concat_str(&[]), "");
        let s = concat_str(&["arn:aws:iam:::user/", "ü-ser"]);
        assert_eq!((s.as_str(), s.capacity()), ("arn:aws:iam:::user/ü-ser", "arn:aws:iam:::user/ü-ser".len()));
    }

    fn doc(kind: Kind) -> Doc {
        let text = match kind {
            Kind::Trust => r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::a:root"},"Action":"sts:AssumeRole"}}"#,
            _ => r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
        };
        Doc::new(text.into(), kind).unwrap()
    }

    #[test]
    fn entities_round_trip() {
        let u = IamUser {
            account: "acct".into(),
            name: "alice".into(),
            path: "/p/".into(),
            id: "AIDAX".into(),
            created_ms: 5,
            inline: vec![("p1".into(), doc(Kind::Identity))],
            attached: vec!["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into()],
            boundary: Some("arn:aws:iam::acct:policy/b".into()),
            tags: vec![("k".into(), "v".into())],
        };
        assert_eq!(IamUser::decode(&u.encode()), Some(u.clone()));
        assert_eq!(u.arn(), "arn:aws:iam::acct:user/p/alice");
        let g = IamGroup {
            account: "acct".into(),
            name: "g".into(),
            path: "/".into(),
            id: "AGPAX".into(),
            created_ms: 1,
            inline: Vec::new(),
            attached: Vec::new(),
            members: vec!["AIDAX".into()],
        };
        assert_eq!(IamGroup::decode(&g.encode()), Some(g));
        let r = IamRole {
            account: "acct".into(),
            name: "r".into(),
            path: "/".into(),
            id: "AROAX".into(),
            created_ms: 1,
            trust: doc(Kind::Trust),
            description: "d".into(),
            max_session_secs: 3600,
            inline: vec![("p".into(), doc(Kind::Identity))],
            attached: Vec::new(),
            boundary: None,
            tags: Vec::new(),
        };
        assert_eq!(IamRole::decode(&r.encode()), Some(r));
        let p = ManagedPolicy {
            account: "acct".into(),
            name: "p".into(),
            path: "/".into(),
            id: "ANPAX".into(),
            created_ms: 1,
            updated_ms: 2,
            description: String::new(),
            default_version: 2,
            next_version: 3,
            versions: vec![
                PolicyVersion { id: 1, doc: doc(Kind::Identity), created_ms: 1 },
                PolicyVersion { id: 2, doc: doc(Kind::Identity), created_ms: 2 },
            ],
        };
        assert_eq!(ManagedPolicy::decode(&p.encode()), Some(p.clone()));
        let mut bad = p.clone();
        bad.default_version = 9;
        assert!(ManagedPolicy::decode(&bad.encode()).is_none(), "default version must exist");
        let k = AccessKey { id: "AKIAX".into(), secret: "sec".into(), account: "acct".into(), user: None, active: true, created_ms: 3 };
        let enc = k.encode(b"sealed");
        assert_eq!(AccessKey::decode(&enc, |id, s| (id == "AKIAX" && s == b"sealed").then(|| "sec".to_string())), Some(k.clone()));
        assert!(AccessKey::decode(&enc, |_, _| None).is_none(), "a secret that does not unseal");
        assert!(!format!("{k:?}").contains("sec\""));
        let e = u.encode();
        for cut in 0..e.len() {
            assert!(IamUser::decode(&e[..cut]).is_none());
        }
    }

    #[test]
    fn names_and_paths() {
        assert!(valid_name("a.b+c=d,e@f_g-h", MAX_NAME_BYTES));
        assert!(!valid_name("", MAX_NAME_BYTES));
        assert!(!valid_name("a/b", MAX_NAME_BYTES));
        assert!(!valid_name(&"a".repeat(65), MAX_NAME_BYTES));
        assert!(valid_path("/"));
        assert!(valid_path("/a/b/"));
        assert!(!valid_path("a/"));
        assert!(!valid_path("/a"));
        assert!(!valid_path("/a b/"));
        assert_eq!(policy_chars("{ \"a\" :\n 1 }"), 7);
    }
}
