//! Object lock: the bucket configuration (Put/GetObjectLockConfiguration),
//! per-version retention and legal hold (Put/Get), and the lock headers of
//! PutObject, CopyObject and CreateMultipartUpload.
//!
//! A protected version cannot be removed (`ObjectSummary::check_removable`);
//! COMPLIANCE retention cannot be shortened or weakened by anyone,
//! GOVERNANCE only with `x-amz-bypass-governance-retention` (root only
//! until policies exist).

use std::rc::Rc;

use tessera_proto::time::{format_iso8601_ms, now_unix_ms, parse_iso8601_ms};
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::get::read_version;
use super::{bypass_governance, push_read_version, require_integrity_check, update_version, versions};
use crate::buckets::{BucketInfo, DefaultRetention, LockConfig, RetentionPeriod, Versioning};
use crate::request::Request;
use crate::meta::{LockMode, ObjectSummary, Retention};
use crate::response::Response;
use crate::server::Ctx;

/// Longest default retention accepted (S3's limits: 100 years / 36500 days).
pub const MAX_RETENTION_DAYS: i64 = 36_500;
pub const MAX_RETENTION_YEARS: i64 = 100;
/// Largest lock, retention or legal-hold document read.
pub const MAX_LOCK_BODY_BYTES: usize = 16 * 1024;

fn malformed() -> S3Error {
    S3Error::new(S3ErrorCode::MalformedXML)
}

fn missing_lock_config() -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, "Bucket is missing Object Lock Configuration")
}

fn invalid_arg(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

// ---- bucket configuration ------------------------------------------------------

pub fn get_config(b: &BucketInfo) -> S3Result<Response> {
    let cfg = b.object_lock.ok_or_else(|| S3Error::new(S3ErrorCode::ObjectLockConfigurationNotFoundError))?;
    let mut w = XmlWriter::new().root("ObjectLockConfiguration");
    w.elem("ObjectLockEnabled", "Enabled");
    if let Some(d) = cfg.default_retention {
        w.open("Rule").open("DefaultRetention").elem("Mode", d.mode.as_str());
        match d.period {
            RetentionPeriod::Days(n) => w.elem("Days", &n.to_string()),
            RetentionPeriod::Years(n) => w.elem("Years", &n.to_string()),
        };
        w.close("DefaultRetention").close("Rule");
    }
    w.close("ObjectLockConfiguration");
    Ok(Response::xml(200, w.finish()))
}

/// A period of `Days` or `Years`: a positive integer within S3's limits.
fn period(text: &str, max: i64) -> S3Result<u32> {
    let n: i64 = text.parse().map_err(|_| malformed())?;
    if n <= 0 || n > max {
        return Err(S3Error::new(S3ErrorCode::InvalidRetentionPeriod));
    }
    u32::try_from(n).map_err(|_| S3Error::new(S3ErrorCode::InvalidRetentionPeriod))
}

/// The configuration a PutObjectLockConfiguration document asks for.
fn parse_config(body: &[u8]) -> S3Result<LockConfig> {
    let req = xml::parse_object_lock(body)?;
    if req.enabled.as_deref() != Some("Enabled") {
        return Err(malformed());
    }
    let default_retention = match req.rule {
        None => None,
        Some((mode, days, years)) => {
            let mode = mode.as_deref().and_then(LockMode::parse).ok_or_else(malformed)?;
            let period = match (days, years) {
                (Some(d), None) => RetentionPeriod::Days(period(&d, MAX_RETENTION_DAYS)?),
                (None, Some(y)) => RetentionPeriod::Years(period(&y, MAX_RETENTION_YEARS)?),
                _ => return Err(malformed()),
            };
            Some(DefaultRetention { mode, period })
        }
    };
    Ok(LockConfig { default_retention })
}

pub async fn put_config(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_LOCK_BODY_BYTES).await?;
    let cfg = parse_config(&body)?;
    require_integrity_check(req)?;
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            // Object lock can be turned on only in a versioning-enabled bucket.
            if info.object_lock.is_none() && info.versioning != Versioning::Enabled {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidBucketState,
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
                ));
            }
            info.object_lock = Some(cfg);
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

// ---- lock headers on writes -----------------------------------------------------

/// The object lock a write asks for with `x-amz-object-lock-*` headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockRequest {
    /// Some lock header was given (S3 then requires an integrity check).
    pub explicit: bool,
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

impl LockRequest {
    /// Sets the new version's lock: as asked, else the bucket's default
    /// retention counted from now.
    pub fn apply(&self, s: &mut ObjectSummary, b: &BucketInfo) {
        s.legal_hold = self.legal_hold;
        s.retention = self.retention.or_else(|| default_retention(b, now_unix_ms()));
    }
}

/// The bucket's default retention for a version written at `now_ms`.
pub fn default_retention(b: &BucketInfo, now_ms: i64) -> Option<Retention> {
    let d = b.object_lock?.default_retention?;
    Some(Retention { mode: d.mode, until_ms: now_ms.saturating_add(d.period.millis()) })
}

/// Reads the `x-amz-object-lock-*` headers of a write to bucket `b`.
pub fn from_headers(req: &Request<'_>, b: &BucketInfo) -> S3Result<LockRequest> {
    let mode = req.header("x-amz-object-lock-mode");
    let until = req.header("x-amz-object-lock-retain-until-date");
    let hold = req.header("x-amz-object-lock-legal-hold");
    if mode.is_none() && until.is_none() && hold.is_none() {
        return Ok(LockRequest::default());
    }
    if b.object_lock.is_none() {
        return Err(missing_lock_config());
    }
    let retention = match (mode, until) {
        (None, None) => None,
        (Some(m), Some(u)) => {
            let mode = LockMode::parse(m.trim()).ok_or_else(|| invalid_arg("Unknown wormMode directive."))?;
            let until_ms = parse_iso8601_ms(u).ok_or_else(|| {
                invalid_arg("The retain until date must be provided in ISO 8601 format")
            })?;
            if until_ms <= now_unix_ms() {
                return Err(invalid_arg("The retain until date must be in the future!"));
            }
            Some(Retention { mode, until_ms })
        }
        _ => {
            return Err(invalid_arg(
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
            ))
        }
    };
    let legal_hold = match hold.map(str::trim) {
        None | Some("OFF") => false,
        Some("ON") => true,
        Some(_) => return Err(invalid_arg("Legal Hold must be either of 'ON' or 'OFF'")),
    };
    Ok(LockRequest { explicit: true, retention, legal_hold })
}

// ---- retention -------------------------------------------------------------------

/// Whether replacing retention `old` with `new` weakens it (at `now_ms`):
/// an earlier date, another mode, or none at all, while `old` still holds.
fn weakens(old: Option<Retention>, new: Option<Retention>, now_ms: i64) -> Option<LockMode> {
    let old = old.filter(|r| r.until_ms > now_ms)?;
    let weaker = match new {
        None => true,
        Some(n) => n.mode != old.mode || n.until_ms < old.until_ms,
    };
    weaker.then_some(old.mode)
}

fn parse_retention(body: &[u8]) -> S3Result<Option<Retention>> {
    match xml::parse_retention(body)? {
        (None, None) => Ok(None),
        (Some(m), Some(u)) => {
            let mode = LockMode::parse(&m).ok_or_else(malformed)?;
            let until_ms = parse_iso8601_ms(&u).ok_or_else(malformed)?;
            if until_ms <= now_unix_ms() {
                return Err(invalid_arg("The retain until date must be in the future!"));
            }
            Ok(Some(Retention { mode, until_ms }))
        }
        _ => Err(malformed()),
    }
}

pub async fn put_retention(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    if b.object_lock.is_none() {
        return Err(missing_lock_config());
    }
    let sel = versions::requested(&req.routed.query)?;
    let body = req.read_body_to_vec(MAX_LOCK_BODY_BYTES).await?;
    let new = parse_retention(&body)?;
    require_integrity_check(req)?;
    let bypass = bypass_governance(req);
    let s = update_version(ctx, b, req.key(), sel, move |s, _| {
        match weakens(s.retention, new, now_unix_ms()) {
            Some(LockMode::Compliance) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::AccessDenied,
                    "Access Denied because object protected by object lock.",
                ))
            }
            Some(LockMode::Governance) if !bypass => {
                return Err(S3Error::with_message(
                    S3ErrorCode::AccessDenied,
                    "Access Denied because object protected by object lock.",
                ))
            }
            _ => {}
        }
        s.retention = new;
        Ok(())
    })
    .await?;
    let mut resp = Response::new(200);
    push_read_version(&mut resp, b, &s);
    Ok(resp)
}

pub async fn get_retention(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    if b.object_lock.is_none() {
        return Err(missing_lock_config());
    }
    let sel = versions::requested(&req.routed.query)?;
    let obj = read_version(ctx, b, req.key(), sel).await?;
    obj.refuse_delete_marker(sel)?;
    let r = obj.summary.retention.ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchObjectLockConfiguration))?;
    let mut w = XmlWriter::new().root("Retention");
    w.elem("Mode", r.mode.as_str()).elem("RetainUntilDate", &format_iso8601_ms(r.until_ms)).close("Retention");
    let mut resp = Response::xml(200, w.finish());
    push_read_version(&mut resp, b, &obj.summary);
    Ok(resp)
}

// ---- legal hold ------------------------------------------------------------------

pub async fn put_legal_hold(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    if b.object_lock.is_none() {
        return Err(missing_lock_config());
    }
    let sel = versions::requested(&req.routed.query)?;
    let body = req.read_body_to_vec(MAX_LOCK_BODY_BYTES).await?;
    let on = match xml::parse_legal_hold(&body)?.as_deref() {
        Some("ON") => true,
        Some("OFF") => false,
        _ => return Err(malformed()),
    };
    require_integrity_check(req)?;
    let s = update_version(ctx, b, req.key(), sel, move |s, _| {
        s.legal_hold = on;
        Ok(())
    })
    .await?;
    let mut resp = Response::new(200);
    push_read_version(&mut resp, b, &s);
    Ok(resp)
}

pub async fn get_legal_hold(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    if b.object_lock.is_none() {
        return Err(missing_lock_config());
    }
    let sel = versions::requested(&req.routed.query)?;
    let obj = read_version(ctx, b, req.key(), sel).await?;
    obj.refuse_delete_marker(sel)?;
    let mut w = XmlWriter::new().root("LegalHold");
    w.elem("Status", if obj.summary.legal_hold { "ON" } else { "OFF" }).close("LegalHold");
    let mut resp = Response::xml(200, w.finish());
    push_read_version(&mut resp, b, &obj.summary);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mode: LockMode, until_ms: i64) -> Option<Retention> {
        Some(Retention { mode, until_ms })
    }

    #[test]
    fn what_weakens_a_retention() {
        use LockMode::*;
        let now = 1000;
        // Nothing to weaken: none, or expired.
        assert_eq!(weakens(None, None, now), None);
        assert_eq!(weakens(r(Compliance, 999), None, now), None);
        // Extending in the same mode is always allowed.
        assert_eq!(weakens(r(Compliance, 2000), r(Compliance, 3000), now), None);
        assert_eq!(weakens(r(Governance, 2000), r(Governance, 2000), now), None);
        // Shortening, removing or changing the mode weakens.
        assert_eq!(weakens(r(Compliance, 2000), r(Compliance, 1500), now), Some(Compliance));
        assert_eq!(weakens(r(Compliance, 2000), None, now), Some(Compliance));
        assert_eq!(weakens(r(Compliance, 2000), r(Governance, 9000), now), Some(Compliance));
        assert_eq!(weakens(r(Governance, 2000), r(Compliance, 2000), now), Some(Governance));
        assert_eq!(weakens(r(Governance, 2000), r(Governance, 1999), now), Some(Governance));
    }

    #[test]
    fn lock_configuration_documents() {
        let doc = |inner: &str| format!("<ObjectLockConfiguration>{inner}</ObjectLockConfiguration>");
        let rule = |r: &str| doc(&format!("<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>{r}</DefaultRetention></Rule>"));
        let ok = parse_config(rule("<Mode>GOVERNANCE</Mode><Days>1</Days>").as_bytes()).unwrap();
        assert_eq!(ok.default_retention, Some(DefaultRetention { mode: LockMode::Governance, period: RetentionPeriod::Days(1) }));
        let ok = parse_config(doc("<ObjectLockEnabled>Enabled</ObjectLockEnabled>").as_bytes()).unwrap();
        assert_eq!(ok.default_retention, None);
        let max = parse_config(rule("<Mode>COMPLIANCE</Mode><Years>100</Years>").as_bytes()).unwrap();
        assert_eq!(max.default_retention.map(|d| d.period), Some(RetentionPeriod::Years(100)));
        let cases: &[(String, S3ErrorCode)] = &[
            (doc("<ObjectLockEnabled>Disabled</ObjectLockEnabled>"), S3ErrorCode::MalformedXML),
            (doc(""), S3ErrorCode::MalformedXML),
            (rule("<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>"), S3ErrorCode::MalformedXML),
            (rule("<Mode>GOVERNANCE</Mode>"), S3ErrorCode::MalformedXML),
            (rule("<Mode>governance</Mode><Days>1</Days>"), S3ErrorCode::MalformedXML),
            (rule("<Mode>abc</Mode><Days>1</Days>"), S3ErrorCode::MalformedXML),
            (rule("<Mode>GOVERNANCE</Mode><Days>x</Days>"), S3ErrorCode::MalformedXML),
            (rule("<Mode>GOVERNANCE</Mode><Days>0</Days>"), S3ErrorCode::InvalidRetentionPeriod),
            (rule("<Mode>GOVERNANCE</Mode><Years>-1</Years>"), S3ErrorCode::InvalidRetentionPeriod),
            (rule("<Mode>GOVERNANCE</Mode><Days>36501</Days>"), S3ErrorCode::InvalidRetentionPeriod),
            (rule("<Mode>GOVERNANCE</Mode><Years>101</Years>"), S3ErrorCode::InvalidRetentionPeriod),
        ];
        for (body, code) in cases {
            assert_eq!(parse_config(body.as_bytes()).unwrap_err().code, *code, "{body}");
        }
    }
}
