//! Identity and access management: accounts' IAM users, groups, roles,
//! managed and inline policies and access keys (`store`, `model`), STS
//! sessions (`session`), the node key that seals secrets and tokens
//! (`keys`), and the IAM and STS query APIs served on the S3 endpoint
//! (`api`, `sts`).
//!
//! Accounts are the node's static identities (the root and the users
//! file): each owns its buckets and its IAM entities, and its user id is
//! the account id in ARNs (`arn:aws:iam::<account>:root`).

pub mod api;
pub mod cluster;
pub mod keys;
pub mod managed;
pub mod model;
pub mod session;
pub mod store;
pub mod sts;

use std::sync::Arc;

use tessera_policy::Policy;

use store::IamState;

/// An error of the IAM and STS APIs: AWS's code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamError {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
}

impl IamError {
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        IamError { code, status, message: message.into() }
    }

    /// A storage or internal failure: logged, never shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("iam: {detail}");
        IamError::new("ServiceFailure", 500, "The request processing has failed because of an unknown error.")
    }

    pub fn no_such_entity(message: impl Into<String>) -> Self {
        IamError::new("NoSuchEntity", 404, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        IamError::new("EntityAlreadyExists", 409, message)
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        IamError::new("InvalidInput", 400, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        IamError::new("ValidationError", 400, message)
    }

    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        IamError::new("LimitExceeded", 409, message)
    }

    pub fn delete_conflict(message: impl Into<String>) -> Self {
        IamError::new("DeleteConflict", 409, message)
    }

    pub fn malformed_policy(message: impl Into<String>) -> Self {
        IamError::new("MalformedPolicyDocument", 400, message)
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        IamError::new("AccessDenied", 403, message)
    }
}

/// `(account, path, name)` of an IAM ARN of `kind` (`user`, `role`,
/// `group`, `policy`): `arn:aws:iam::<account>:<kind><path><name>`.
pub fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix(kind)?;
    if !rest.starts_with('/') {
        return None;
    }
    let slash = rest.rfind('/')?;
    let (path, name) = (&rest[..=slash], &rest[slash + 1..]);
    (!name.is_empty()).then_some((account, path, name))
}

/// The current default document of the managed policy `arn` (built in,
/// or a customer policy of the state).
pub fn managed_policy(state: &IamState, arn: &str) -> Option<Arc<Policy>> {
    if let Some(p) = managed::policy(arn) {
        return Some(p);
    }
    let (account, path, name) = parse_arn(arn, "policy")?;
    let p = state.policy(account, name)?;
    if p.path != path {
        return None;
    }
    p.default_doc().map(|d| d.parsed.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(parse_arn("arn:aws:iam::123:user/a/b/name", "user"), Some(("123", "/a/b/", "name")));
        assert_eq!(parse_arn("arn:aws:iam::123:user/name", "user"), Some(("123", "/", "name")));
        assert_eq!(parse_arn("arn:aws:iam::123:role/name", "user"), None);
        assert_eq!(parse_arn("arn:aws:iam::123:user/", "user"), None);
        assert_eq!(parse_arn("arn:aws:iam::aws:policy/AmazonS3FullAccess", "policy"), Some(("aws", "/", "AmazonS3FullAccess")));
    }
}
