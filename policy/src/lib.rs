//! The AWS access policy language and S3 access control lists, as pure
//! functions: a policy document (JSON text) is parsed and validated into a
//! [`Policy`]; a request is described by its action, resource ARN,
//! principal and condition keys ([`Context`]); [`authorize`] combines
//! identity policies, session policies, permission boundaries, a
//! resource policy and an ACL in AWS's evaluation order and answers
//! allow, explicit deny or implicit deny.
//!
//! Invariants: no I/O, no runtime, no clock (the caller puts the time in the
//! context); nothing here panics on input (`tests/fuzzish.rs`); every limit
//! is a named constant.

pub mod acl;
pub mod authorize;
pub mod condition;
pub mod context;
pub mod document;
pub mod eval;
pub mod glob;
pub mod public;
pub mod time;

pub use acl::{Acl, CannedAcl, Grant, Grantee, Permission};
pub use authorize::{authorize, Decision, Subject, SubjectKind, Target};
pub use context::Context;
pub use document::{parse, Effect, Kind, Policy, PolicyError, Statement};
pub use eval::{PrincipalFacts, PrincipalMatch};
