//! STS: GetCallerIdentity, GetSessionToken and AssumeRole (trust policy
//! checked, session policy intersected, duration limits). Temporary
//! credentials are sealed session tokens (see `session`).

use tessera_policy::{Decision, Kind, SubjectKind};

use super::api::xml::Out;
use super::api::{random_token, Call, ID_ALPHABET, SECRET_ALPHABET};
use super::model::{policy_chars, valid_name, MIN_SESSION_SECS};
use super::session::{SessionBase, SessionClaims, SESSION_KEY_PREFIX};
use super::{parse_arn, IamError};

/// GetSessionToken durations: IAM users up to 36 hours (default 12), an
/// account's root up to one hour.
pub const MAX_USER_SESSION_SECS: i64 = 36 * 3600;
pub const DEFAULT_USER_SESSION_SECS: i64 = 12 * 3600;
pub const MAX_ROOT_SESSION_SECS: i64 = 3600;
/// AssumeRole: default one hour, at most the role's maximum; a session
/// assuming a role ("role chaining") at most one hour.
pub const DEFAULT_ROLE_SESSION_SECS: i64 = 3600;
pub const MAX_CHAINED_SESSION_SECS: i64 = 3600;
/// Largest session policy (characters other than white space).
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;

pub async fn dispatch(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    match action {
        "GetCallerIdentity" => caller_identity(c),
        "GetSessionToken" => session_token(c),
        "AssumeRole" => assume_role(c),
        "AssumeRoleWithWebIdentity" | "AssumeRoleWithSAML" => Err(IamError::new(
            "InvalidIdentityToken",
            400,
            "No OpenID Connect or SAML identity provider is configured on this server.",
        )),
        _ => Err(IamError::new("InvalidAction", 400, format!("Could not find operation {action} for version 2011-06-15"))),
    }
}

fn caller_identity(c: &Call<'_>) -> Result<Out, IamError> {
    // Answered whatever the policies say, as AWS does.
    let account = c.account()?;
    let mut o = Out::default();
    o.elem("UserId", &c.principal.user_id()).elem("Account", &account.user_id).elem("Arn", &c.principal.facts.arn);
    Ok(o)
}

fn duration(c: &Call<'_>, default: i64, max: i64) -> Result<i64, IamError> {
    let min = i64::from(c.ctx.shared.config.min_session_secs.min(MIN_SESSION_SECS));
    match c.param("DurationSeconds") {
        None => Ok(default.min(max)),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(IamError::validation(format!(
                "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {min} and {max}"
            ))),
        },
    }
}

fn new_claims(c: &Call<'_>, account: &str, base: SessionBase, secs: i64, policy: Option<String>) -> Result<SessionClaims, IamError> {
    let now = c.now_ms.div_euclid(1000);
    Ok(SessionClaims {
        access_key: format!("{SESSION_KEY_PREFIX}{}", random_token(c, 16, ID_ALPHABET)?),
        secret: random_token(c, 40, SECRET_ALPHABET)?,
        issued_unix: now,
        expires_unix: now.saturating_add(secs),
        account: account.to_string(),
        base,
        policy,
        source_arn: c.principal.facts.arn.clone(),
    })
}

fn credentials_xml(c: &Call<'_>, o: &mut Out, claims: &SessionClaims) -> Result<(), IamError> {
    let token = claims.seal(&c.ctx.shared.iam.keys).map_err(IamError::internal)?;
    o.open("Credentials")
        .elem("AccessKeyId", &claims.access_key)
        .elem("SecretAccessKey", &claims.secret)
        .elem("SessionToken", &token)
        .elem("Expiration", &tessera_policy::time::format_iso8601(claims.expires_unix))
        .close("Credentials");
    Ok(())
}

fn session_token(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    if c.principal.session.is_some() {
        return Err(IamError::access_denied("Cannot call GetSessionToken with session credentials"));
    }
    let (base, secs) = match (&c.principal.user, c.principal.kind) {
        (Some(u), _) => {
            (SessionBase::User { user_id: u.id.clone() }, duration(c, DEFAULT_USER_SESSION_SECS, MAX_USER_SESSION_SECS)?)
        }
        (None, SubjectKind::Root) => (SessionBase::Root, duration(c, MAX_ROOT_SESSION_SECS, MAX_ROOT_SESSION_SECS)?),
        _ => return Err(IamError::access_denied("Cannot call GetSessionToken with these credentials")),
    };
    let claims = new_claims(c, &account, base, secs, None)?;
    let mut o = Out::default();
    credentials_xml(c, &mut o, &claims)?;
    Ok(o)
}

fn assume_role(c: &Call<'_>) -> Result<Out, IamError> {
    c.account()?;
    let role_arn = c.required("RoleArn")?.to_string();
    let session_name = c.required("RoleSessionName")?.to_string();
    if session_name.len() < 2 || !valid_name(&session_name, 64) {
        return Err(IamError::validation(
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and match [\\w+=,.@-]*",
        ));
    }
    let policy = match c.param("Policy") {
        None => None,
        Some(text) => {
            if policy_chars(text) > MAX_SESSION_POLICY_CHARS {
                return Err(IamError::new("PackedPolicyTooLarge", 400, "The session policy is too large."));
            }
            tessera_policy::parse(text, Kind::Session).map_err(|e| IamError::malformed_policy(e.0))?;
            Some(text.to_string())
        }
    };
    let denied = || {
        IamError::access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            c.principal.facts.arn
        ))
    };
    let st = c.state();
    let (account, path, name) = parse_arn(&role_arn, "role").ok_or_else(|| IamError::validation(format!("Invalid RoleArn {role_arn}")))?;
    // A role that does not exist is answered like one that may not be assumed.
    let role = st.role(account, name).filter(|r| r.path == path).cloned().ok_or_else(denied)?;
    let decision = super::api::decide(&c.principal, &c.cond, "sts:AssumeRole", &role.arn(), &role.account, Some(&role.trust.parsed));
    if decision != Decision::Allow {
        return Err(denied());
    }
    let max = if c.principal.kind == SubjectKind::RoleSession {
        MAX_CHAINED_SESSION_SECS
    } else {
        i64::from(role.max_session_secs)
    };
    let secs = duration(c, DEFAULT_ROLE_SESSION_SECS, max)?;
    let base = SessionBase::Role { role_id: role.id.clone(), session_name: session_name.clone() };
    let claims = new_claims(c, &role.account, base, secs, policy)?;
    let mut o = Out::default();
    credentials_xml(c, &mut o, &claims)?;
    o.open("AssumedRoleUser")
        .elem("AssumedRoleId", &format!("{}:{session_name}", role.id))
        .elem("Arn", &format!("arn:aws:sts::{}:assumed-role/{}/{session_name}", role.account, role.name))
        .close("AssumedRoleUser");
    Ok(o)
}
