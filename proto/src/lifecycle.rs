//! Bucket lifecycle: the `LifecycleConfiguration` document (parse, validate
//! as S3 does, render back in the form it came in) and the evaluation of its
//! rules against one object.
//!
//! Transitions name a storage class; which classes exist (the operator's
//! remote tiers) is the server's to check, after parsing.

use crate::error::{S3Error, S3ErrorCode};
use crate::xml::{self, Element, XmlWriter};

/// Most rules in one configuration (S3's limit).
pub const MAX_LIFECYCLE_RULES: usize = 1000;
/// Largest lifecycle document accepted.
pub const MAX_LIFECYCLE_BODY_BYTES: usize = 1024 * 1024;
/// Longest rule ID (S3's limit).
pub const MAX_RULE_ID_BYTES: usize = 255;
/// Largest `NewerNoncurrentVersions` (S3's limit).
pub const MAX_NEWER_NONCURRENT: u32 = 100;
/// Characters of a generated rule ID (for rules submitted without one).
const GENERATED_ID_CHARS: usize = 20;
const DAY_MS: i64 = 86_400_000;

/// What a rule's filter selects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub prefix: String,
    pub tags: Vec<(String, String)>,
    pub size_greater_than: Option<u64>,
    pub size_less_than: Option<u64>,
}

/// How the filter was written, so that GET gives back the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterForm {
    /// `<Prefix>` directly in the rule (the legacy form).
    RulePrefix,
    /// No filter at all.
    Absent,
    /// `<Filter/>`.
    Empty,
    FilterPrefix,
    Tag,
    SizeGreater,
    SizeLess,
    And,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiration {
    Days(u32),
    /// Unix milliseconds of a midnight UTC.
    Date(i64),
    /// Removes a delete marker that has no other version left.
    ExpiredObjectDeleteMarker,
}

/// When a `Transition` applies to a current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionWhen {
    /// Days after the write (0: at the next pass).
    Days(u32),
    /// Unix milliseconds of a midnight UTC.
    Date(i64),
}

/// A `Transition` action: the current version moves to `storage_class`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub when: TransitionWhen,
    pub storage_class: String,
}

/// A `NoncurrentVersionTransition` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoncurrentTransition {
    /// Days since the version became noncurrent.
    pub days: u32,
    pub newer_noncurrent: Option<u32>,
    pub storage_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub filter: Filter,
    pub form: FilterForm,
    pub expiration: Option<Expiration>,
    /// Days after a version becomes noncurrent, and how many newer
    /// noncurrent versions to keep regardless.
    pub noncurrent_days: Option<u32>,
    pub newer_noncurrent: Option<u32>,
    pub abort_multipart_days: Option<u32>,
    pub transitions: Vec<Transition>,
    pub noncurrent_transitions: Vec<NoncurrentTransition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub rules: Vec<Rule>,
}

fn malformed(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, msg)
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

fn positive_days(text: &str, what: &str) -> Result<u32, S3Error> {
    match text.trim().parse::<i64>() {
        Ok(d) if d > 0 && d <= i64::from(u32::MAX) => Ok(d as u32),
        Ok(_) => Err(invalid(format!("'{what}' for Expiration action must be a positive integer"))),
        Err(_) => Err(malformed("Days must be an integer")),
    }
}

/// `2030-01-01` or `2030-01-01T00:00:00(.000)Z`: a midnight UTC.
fn parse_date(text: &str) -> Result<i64, S3Error> {
    let t = text.trim();
    let full = if t.len() == 10 { format!("{t}T00:00:00Z") } else { t.to_string() };
    let ms = crate::time::parse_iso8601_ms(&full).ok_or_else(|| invalid("Date must be in ISO 8601 format"))?;
    if ms.rem_euclid(DAY_MS) != 0 {
        return Err(invalid("'Date' must be at midnight GMT"));
    }
    Ok(ms)
}

fn parse_tag(e: &Element) -> Result<(String, String), S3Error> {
    let k = e.child_text("Key").ok_or_else(|| malformed("Tag without Key"))?;
    let v = e.child_text("Value").unwrap_or("");
    if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
        return Err(S3Error::new(S3ErrorCode::InvalidTag));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_size(text: &str) -> Result<u64, S3Error> {
    text.trim().parse::<u64>().map_err(|_| malformed("Object size must be a non-negative integer"))
}

fn parse_filter(f: &Element) -> Result<(Filter, FilterForm), S3Error> {
    let mut out = Filter::default();
    let kinds = ["Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And"];
    let present: Vec<&Element> = f.children.iter().filter(|c| kinds.contains(&c.name.as_str())).collect();
    if present.len() > 1 {
        return Err(malformed("Filter holds exactly one of Prefix, Tag, ObjectSize* or And"));
    }
    let Some(one) = present.first() else { return Ok((out, FilterForm::Empty)) };
    let form = match one.name.as_str() {
        "Prefix" => {
            out.prefix = one.text.clone();
            FilterForm::FilterPrefix
        }
        "Tag" => {
            out.tags.push(parse_tag(one)?);
            FilterForm::Tag
        }
        "ObjectSizeGreaterThan" => {
            out.size_greater_than = Some(parse_size(&one.text)?);
            FilterForm::SizeGreater
        }
        "ObjectSizeLessThan" => {
            out.size_less_than = Some(parse_size(&one.text)?);
            FilterForm::SizeLess
        }
        _ => {
            if let Some(p) = one.child_text("Prefix") {
                out.prefix = p.to_string();
            }
            for t in one.children_named("Tag") {
                let tag = parse_tag(t)?;
                if out.tags.iter().any(|(k, _)| *k == tag.0) {
                    return Err(invalid("Duplicate Tag Keys are not allowed"));
                }
                out.tags.push(tag);
            }
            if let Some(s) = one.child_text("ObjectSizeGreaterThan") {
                out.size_greater_than = Some(parse_size(s)?);
            }
            if let Some(s) = one.child_text("ObjectSizeLessThan") {
                out.size_less_than = Some(parse_size(s)?);
            }
            FilterForm::And
        }
    };
    if let (Some(g), Some(l)) = (out.size_greater_than, out.size_less_than) {
        if g >= l {
            return Err(invalid("ObjectSizeGreaterThan must be less than ObjectSizeLessThan"));
        }
    }
    Ok((out, form))
}

fn parse_rule(r: &Element, gen_id: &mut dyn FnMut() -> String) -> Result<Rule, S3Error> {
    let id = match r.child_text("ID") {
        Some(id) if id.len() > MAX_RULE_ID_BYTES => return Err(invalid("ID length should not exceed allowed limit of 255")),
        Some(id) if !id.is_empty() => id.to_string(),
        _ => gen_id(),
    };
    let enabled = match r.child_text("Status") {
        Some("Enabled") => true,
        Some("Disabled") => false,
        _ => return Err(malformed("Status must be Enabled or Disabled")),
    };
    let (filter, form) = match (r.child("Filter"), r.child("Prefix")) {
        (Some(_), Some(_)) => return Err(malformed("A rule holds Filter or Prefix, not both")),
        (Some(f), None) => parse_filter(f)?,
        (None, Some(p)) => (Filter { prefix: p.text.clone(), ..Filter::default() }, FilterForm::RulePrefix),
        (None, None) => (Filter::default(), FilterForm::Absent),
    };
    let expiration = match r.child("Expiration") {
        None => None,
        Some(e) => {
            let days = e.child_text("Days");
            let date = e.child_text("Date");
            let marker = e.child_text("ExpiredObjectDeleteMarker").map(str::trim);
            match (days, date, marker) {
                (Some(d), None, None) => Some(Expiration::Days(positive_days(d, "Days")?)),
                (None, Some(d), None) => Some(Expiration::Date(parse_date(d)?)),
                (None, None, Some("true")) => Some(Expiration::ExpiredObjectDeleteMarker),
                (None, None, Some("false")) => None,
                (None, None, None) => return Err(malformed("Expiration holds Days, Date or ExpiredObjectDeleteMarker")),
                _ => return Err(malformed("Expiration holds one of Days, Date or ExpiredObjectDeleteMarker")),
            }
        }
    };
    if matches!(expiration, Some(Expiration::ExpiredObjectDeleteMarker)) && !filter.tags.is_empty() {
        return Err(invalid("ExpiredObjectDeleteMarker cannot be specified with a tag filter"));
    }
    let (mut noncurrent_days, mut newer_noncurrent) = (None, None);
    if let Some(n) = r.child("NoncurrentVersionExpiration") {
        noncurrent_days = Some(positive_days(n.child_text("NoncurrentDays").ok_or_else(|| malformed("NoncurrentDays missing"))?, "NoncurrentDays")?);
        if let Some(k) = n.child_text("NewerNoncurrentVersions") {
            match k.trim().parse::<u32>() {
                Ok(k) if (1..=MAX_NEWER_NONCURRENT).contains(&k) => newer_noncurrent = Some(k),
                _ => return Err(invalid("NewerNoncurrentVersions must be between 1 and 100")),
            }
        }
    }
    let abort_multipart_days = match r.child("AbortIncompleteMultipartUpload") {
        None => None,
        Some(a) => {
            if !filter.tags.is_empty() {
                return Err(invalid("AbortIncompleteMultipartUpload cannot be specified with a tag filter"));
            }
            let d = a.child_text("DaysAfterInitiation").ok_or_else(|| malformed("DaysAfterInitiation missing"))?;
            Some(positive_days(d, "DaysAfterInitiation")?)
        }
    };
    let (transitions, noncurrent_transitions) = parse_transitions(r, expiration.as_ref(), noncurrent_days)?;
    if expiration.is_none()
        && noncurrent_days.is_none()
        && abort_multipart_days.is_none()
        && transitions.is_empty()
        && noncurrent_transitions.is_empty()
    {
        // `ExpiredObjectDeleteMarker false` alone is no action either.
        return Err(malformed("A rule needs at least one action"));
    }
    Ok(Rule {
        id,
        enabled,
        filter,
        form,
        expiration,
        noncurrent_days,
        newer_noncurrent,
        abort_multipart_days,
        transitions,
        noncurrent_transitions,
    })
}

fn non_negative_days(text: &str, what: &str) -> Result<u32, S3Error> {
    match text.trim().parse::<i64>() {
        Ok(d) if (0..=i64::from(u32::MAX)).contains(&d) => Ok(d as u32),
        Ok(_) => Err(invalid(format!("'{what}' in the Transition action must be nonnegative"))),
        Err(_) => Err(malformed("Days must be an integer")),
    }
}

fn storage_class_of(t: &Element) -> Result<String, S3Error> {
    match t.child_text("StorageClass").map(str::trim) {
        Some(c) if !c.is_empty() => Ok(c.to_string()),
        _ => Err(malformed("A transition names its StorageClass")),
    }
}

/// The `Transition` and `NoncurrentVersionTransition` actions of rule `r`,
/// checked as S3 does: Days (nonnegative) or a midnight Date, not both and
/// not mixed between transitions; a StorageClass named once per kind; an
/// expiration of the same kind later than every transition.
fn parse_transitions(
    r: &Element,
    expiration: Option<&Expiration>,
    noncurrent_days: Option<u32>,
) -> Result<(Vec<Transition>, Vec<NoncurrentTransition>), S3Error> {
    let mut out: Vec<Transition> = Vec::new();
    for t in r.children_named("Transition") {
        let when = match (t.child_text("Days"), t.child_text("Date")) {
            (Some(d), None) => TransitionWhen::Days(non_negative_days(d, "Days")?),
            (None, Some(d)) => TransitionWhen::Date(parse_date(d)?),
            (None, None) => return Err(malformed("Transition holds Days or Date")),
            (Some(_), Some(_)) => return Err(malformed("Transition holds Days or Date, not both")),
        };
        let storage_class = storage_class_of(t)?;
        if out.iter().any(|o| o.storage_class == storage_class) {
            return Err(invalid(format!("'StorageClass' must be different for 'Transition' actions in same 'Rule' with filter: {storage_class}")));
        }
        if out.iter().any(|o| matches!(o.when, TransitionWhen::Days(_)) != matches!(when, TransitionWhen::Days(_))) {
            return Err(invalid("Found mixed 'Date' and 'Days' based Transition actions in lifecycle rule"));
        }
        match (expiration, when) {
            (Some(Expiration::Days(e)), TransitionWhen::Days(d)) if *e <= d => {
                return Err(invalid(format!("'Days' in the Expiration action must be greater than 'Days' in the Transition action for StorageClass {storage_class}")));
            }
            (Some(Expiration::Date(e)), TransitionWhen::Date(d)) if *e <= d => {
                return Err(invalid(format!("'Date' in the Expiration action must be later than 'Date' in the Transition action for StorageClass {storage_class}")));
            }
            (Some(Expiration::Days(_)), TransitionWhen::Date(_)) | (Some(Expiration::Date(_)), TransitionWhen::Days(_)) => {
                return Err(invalid("Found mixed 'Date' and 'Days' based Expiration and Transition actions in lifecycle rule"));
            }
            _ => {}
        }
        out.push(Transition { when, storage_class });
    }
    let mut nc: Vec<NoncurrentTransition> = Vec::new();
    for t in r.children_named("NoncurrentVersionTransition") {
        let d = t.child_text("NoncurrentDays").ok_or_else(|| malformed("NoncurrentDays missing"))?;
        let days = non_negative_days(d, "NoncurrentDays")?;
        let newer_noncurrent = match t.child_text("NewerNoncurrentVersions") {
            None => None,
            Some(k) => match k.trim().parse::<u32>() {
                Ok(k) if (1..=MAX_NEWER_NONCURRENT).contains(&k) => Some(k),
                _ => return Err(invalid("NewerNoncurrentVersions must be between 1 and 100")),
            },
        };
        let storage_class = storage_class_of(t)?;
        if nc.iter().any(|o| o.storage_class == storage_class) {
            return Err(invalid(format!("'StorageClass' must be different for 'NoncurrentVersionTransition' actions in same 'Rule' with filter: {storage_class}")));
        }
        if noncurrent_days.is_some_and(|e| e <= days) {
            return Err(invalid(format!("'NoncurrentDays' in the NoncurrentVersionExpiration action must be greater than 'NoncurrentDays' in the NoncurrentVersionTransition action for StorageClass {storage_class}")));
        }
        nc.push(NoncurrentTransition { days, newer_noncurrent, storage_class });
    }
    Ok((out, nc))
}

/// Parses and validates a `LifecycleConfiguration` body. Rules without an
/// ID get one from `gen_id`.
pub fn parse_config(body: &[u8], gen_id: &mut dyn FnMut() -> String) -> Result<Lifecycle, S3Error> {
    if body.len() > MAX_LIFECYCLE_BODY_BYTES {
        return Err(malformed("The lifecycle configuration is too large"));
    }
    let root = xml::parse(body)?;
    if root.name != "LifecycleConfiguration" {
        return Err(malformed("Expected LifecycleConfiguration"));
    }
    let rules: Vec<&Element> = root.children_named("Rule").collect();
    if rules.is_empty() {
        return Err(malformed("A lifecycle configuration holds at least one Rule"));
    }
    if rules.len() > MAX_LIFECYCLE_RULES {
        return Err(invalid("A lifecycle configuration holds at most 1000 rules"));
    }
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let rule = parse_rule(r, gen_id)?;
        if out.iter().any(|o: &Rule| o.id == rule.id) {
            return Err(invalid("Rule ID must be unique. Found same ID for more than one rule"));
        }
        out.push(rule);
    }
    Ok(Lifecycle { rules: out })
}

/// A rule ID for a rule submitted without one, from random bytes.
pub fn generated_id(random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random.iter().take(GENERATED_ID_CHARS).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn render_tag(w: &mut XmlWriter, k: &str, v: &str) {
    w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
}

/// Renders the configuration as GetBucketLifecycleConfiguration answers it:
/// each rule's filter in the form it was submitted in.
pub fn render_config(lc: &Lifecycle) -> String {
    let mut w = XmlWriter::new().root("LifecycleConfiguration");
    for r in &lc.rules {
        w.open("Rule").elem("ID", &r.id);
        let f = &r.filter;
        match r.form {
            FilterForm::RulePrefix => {
                w.elem("Prefix", &f.prefix);
            }
            FilterForm::Absent => {}
            FilterForm::Empty => {
                w.open("Filter").close("Filter");
            }
            FilterForm::FilterPrefix => {
                w.open("Filter").elem("Prefix", &f.prefix).close("Filter");
            }
            FilterForm::Tag => {
                w.open("Filter");
                if let Some((k, v)) = f.tags.first() {
                    render_tag(&mut w, k, v);
                }
                w.close("Filter");
            }
            FilterForm::SizeGreater => {
                w.open("Filter").elem("ObjectSizeGreaterThan", &f.size_greater_than.unwrap_or(0).to_string()).close("Filter");
            }
            FilterForm::SizeLess => {
                w.open("Filter").elem("ObjectSizeLessThan", &f.size_less_than.unwrap_or(0).to_string()).close("Filter");
            }
            FilterForm::And => {
                w.open("Filter").open("And");
                if !f.prefix.is_empty() {
                    w.elem("Prefix", &f.prefix);
                }
                for (k, v) in &f.tags {
                    render_tag(&mut w, k, v);
                }
                if let Some(g) = f.size_greater_than {
                    w.elem("ObjectSizeGreaterThan", &g.to_string());
                }
                if let Some(l) = f.size_less_than {
                    w.elem("ObjectSizeLessThan", &l.to_string());
                }
                w.close("And").close("Filter");
            }
        }
        w.elem("Status", if r.enabled { "Enabled" } else { "Disabled" });
        match &r.expiration {
            None => {}
            Some(Expiration::Days(d)) => {
                w.open("Expiration").elem("Days", &d.to_string()).close("Expiration");
            }
            Some(Expiration::Date(ms)) => {
                w.open("Expiration").elem("Date", &crate::time::format_iso8601_ms(*ms)).close("Expiration");
            }
            Some(Expiration::ExpiredObjectDeleteMarker) => {
                w.open("Expiration").elem("ExpiredObjectDeleteMarker", "true").close("Expiration");
            }
        }
        if let Some(d) = r.noncurrent_days {
            w.open("NoncurrentVersionExpiration").elem("NoncurrentDays", &d.to_string());
            if let Some(k) = r.newer_noncurrent {
                w.elem("NewerNoncurrentVersions", &k.to_string());
            }
            w.close("NoncurrentVersionExpiration");
        }
        for t in &r.transitions {
            w.open("Transition");
            match t.when {
                TransitionWhen::Days(d) => w.elem("Days", &d.to_string()),
                TransitionWhen::Date(ms) => w.elem("Date", &crate::time::format_iso8601_ms(ms)),
            };
            w.elem("StorageClass", &t.storage_class).close("Transition");
        }
        for t in &r.noncurrent_transitions {
            w.open("NoncurrentVersionTransition").elem("NoncurrentDays", &t.days.to_string());
            if let Some(k) = t.newer_noncurrent {
                w.elem("NewerNoncurrentVersions", &k.to_string());
            }
            w.elem("StorageClass", &t.storage_class).close("NoncurrentVersionTransition");
        }
        if let Some(d) = r.abort_multipart_days {
            w.open("AbortIncompleteMultipartUpload").elem("DaysAfterInitiation", &d.to_string()).close("AbortIncompleteMultipartUpload");
        }
        w.close("Rule");
    }
    w.close("LifecycleConfiguration");
    w.finish()
}

impl Filter {
    /// Whether an object (key, tags, size) is selected.
    pub fn matches(&self, key: &str, tags: &[(String, String)], size: u64) -> bool {
        key.starts_with(self.prefix.as_str())
            && self.tags.iter().all(|t| tags.contains(t))
            && self.size_greater_than.is_none_or(|g| size > g)
            && self.size_less_than.is_none_or(|l| size < l)
    }

    /// Whether the filter can select objects by key alone (no tags).
    pub fn needs_tags(&self) -> bool {
        !self.tags.is_empty()
    }
}

/// When a current version written at `mtime_ms` expires under an
/// `Expiration` action: `Days` counts `day_ms`-long days from the write and,
/// with real days, rounds up to the next midnight UTC as S3 does; `Date` is
/// that date.
pub fn expiry_ms(exp: &Expiration, mtime_ms: i64, day_ms: i64) -> Option<i64> {
    match exp {
        Expiration::Days(d) => {
            let t = mtime_ms.saturating_add(i64::from(*d).saturating_mul(day_ms));
            if day_ms == DAY_MS {
                Some(t.saturating_add(DAY_MS - 1).div_euclid(DAY_MS).saturating_mul(DAY_MS))
            } else {
                Some(t)
            }
        }
        Expiration::Date(ms) => Some(*ms),
        Expiration::ExpiredObjectDeleteMarker => None,
    }
}

/// When a current version written at `mtime_ms` is due to move under a
/// `Transition` (days counted as [`expiry_ms`] counts them).
pub fn transition_ms(when: TransitionWhen, mtime_ms: i64, day_ms: i64) -> i64 {
    match when {
        TransitionWhen::Days(0) => mtime_ms,
        TransitionWhen::Days(d) => expiry_ms(&Expiration::Days(d), mtime_ms, day_ms).unwrap_or(i64::MAX),
        TransitionWhen::Date(ms) => ms,
    }
}

impl Lifecycle {
    /// Every storage class the rules transition to.
    pub fn storage_classes(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().flat_map(|r| {
            r.transitions.iter().map(|t| t.storage_class.as_str()).chain(r.noncurrent_transitions.iter().map(|t| t.storage_class.as_str()))
        })
    }

    /// Whether any enabled rule transitions (current or noncurrent) versions.
    pub fn has_transitions(&self) -> bool {
        self.rules.iter().any(|r| r.enabled && (!r.transitions.is_empty() || !r.noncurrent_transitions.is_empty()))
    }

    /// The earliest expiry among enabled rules selecting this object, with
    /// the rule's ID: what `x-amz-expiration` reports (real days).
    pub fn expiration_of(&self, key: &str, tags: &[(String, String)], size: u64, mtime_ms: i64) -> Option<(i64, &str)> {
        self.rules
            .iter()
            .filter(|r| r.enabled && r.filter.matches(key, tags, size))
            .filter_map(|r| Some((expiry_ms(r.expiration.as_ref()?, mtime_ms, DAY_MS)?, r.id.as_str())))
            .min_by_key(|(t, _)| *t)
    }

    /// Whether any enabled rule has an action at all.
    pub fn has_enabled_rules(&self) -> bool {
        self.rules.iter().any(|r| r.enabled)
    }
}

/// The `x-amz-expiration` header value for an expiry.
pub fn expiration_header(expiry_ms: i64, rule_id: &str) -> String {
    let date = crate::time::format_http_date(expiry_ms.div_euclid(1000));
    let id = rule_id.replace('\\', "\\\\").replace('"', "\\\"");
    format!("expiry-date=\"{date}\", rule-id=\"{id}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Lifecycle, S3Error> {
        let mut n = 0;
        parse_config(xml.as_bytes(), &mut || {
            n += 1;
            format!("gen{n}")
        })
    }

    fn rule(body: &str) -> String {
        format!("<LifecycleConfiguration><Rule>{body}</Rule></LifecycleConfiguration>")
    }

    #[test]
    fn validation_matches_s3() {
        let code = |x: &str| parse(x).err().map(|e| e.code);
        assert_eq!(code(&rule("<ID>a</ID><Prefix>p/</Prefix><Status>Enabled</Status><Expiration><Days>0</Days></Expiration>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Prefix>p/</Prefix><Status>enabled</Status><Expiration><Days>1</Days></Expiration>")), Some(S3ErrorCode::MalformedXML));
        assert_eq!(code(&rule(&format!("<ID>{}</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>", "a".repeat(256)))), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Expiration><Date>20200101</Date></Expiration>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Expiration><Date>2020-01-01T10:00:00Z</Date></Expiration>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status>")), Some(S3ErrorCode::MalformedXML));
        assert_eq!(code(&rule("<ID>a</ID><Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>")), Some(S3ErrorCode::MalformedXML));
        assert_eq!(code(&rule("<ID>a</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Transition><Days>1</Days></Transition>")), Some(S3ErrorCode::MalformedXML));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Transition><Days>-1</Days><StorageClass>COLD</StorageClass></Transition>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Transition><Days>1</Days><Date>2030-01-01</Date><StorageClass>COLD</StorageClass></Transition>")), Some(S3ErrorCode::MalformedXML));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Expiration><Days>2</Days></Expiration><Transition><Days>2</Days><StorageClass>COLD</StorageClass></Transition>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Transition><Days>1</Days><StorageClass>COLD</StorageClass></Transition><Transition><Days>2</Days><StorageClass>COLD</StorageClass></Transition>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays></NoncurrentVersionExpiration><NoncurrentVersionTransition><NoncurrentDays>3</NoncurrentDays><StorageClass>COLD</StorageClass></NoncurrentVersionTransition>")), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Transition><Days>0</Days><StorageClass>COLD</StorageClass></Transition>")), None);
        assert_eq!(code(&rule("<ID>a</ID><Status>Enabled</Status><Transition><Date>20220927</Date><StorageClass>GLACIER</StorageClass></Transition>")), Some(S3ErrorCode::InvalidArgument));
        let two = "<LifecycleConfiguration><Rule><ID>a</ID><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule><Rule><ID>a</ID><Status>Enabled</Status><Expiration><Days>2</Days></Expiration></Rule></LifecycleConfiguration>";
        assert_eq!(code(two), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code("<LifecycleConfiguration/>"), Some(S3ErrorCode::MalformedXML));
    }

    #[test]
    fn renders_back_in_the_submitted_form() {
        for body in [
            "<ID>r1</ID><Prefix>test1/</Prefix><Status>Enabled</Status><Expiration><Days>31</Days></Expiration>",
            "<ID>r2</ID><Filter></Filter><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
            "<ID>r3</ID><Filter><And><Prefix>p</Prefix><Tag><Key>k</Key><Value>v</Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter><Status>Disabled</Status><NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays><NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration>",
            "<ID>r4</ID><Filter><Prefix>x</Prefix></Filter><Status>Enabled</Status><Expiration><Date>2017-09-27T00:00:00.000Z</Date></Expiration><AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
            "<ID>r5</ID><Filter><Prefix>t/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>9</Days></Expiration><Transition><Days>1</Days><StorageClass>COLD</StorageClass></Transition><NoncurrentVersionTransition><NoncurrentDays>2</NoncurrentDays><NewerNoncurrentVersions>1</NewerNoncurrentVersions><StorageClass>COLD</StorageClass></NoncurrentVersionTransition>",
        ] {
            let lc = parse(&rule(body)).expect(body);
            let again = parse(&render_config(&lc)).expect("rendered parses");
            assert_eq!(lc, again, "{body}");
            let rendered = render_config(&lc);
            assert!(rendered.contains(&body[..body.find("<Status>").unwrap_or(0)]), "{rendered}");
        }
        let lc = parse(&rule("<Prefix>a</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>")).expect("no id");
        assert_eq!(lc.rules[0].id, "gen1");
    }

    #[test]
    fn expiry_rounds_to_midnight_and_filters_select() {
        let lc = parse("<LifecycleConfiguration><Rule><ID>tags</ID><Filter><And><Tag><Key>k1</Key><Value>v1</Value></Tag><Tag><Key>k5</Key><Value>v6</Value></Tag></And></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule><Rule><ID>pre</ID><Prefix>days1/</Prefix><Status>Enabled</Status><Expiration><Days>2</Days></Expiration></Rule></LifecycleConfiguration>").expect("parse");
        let mtime = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        let (t, id) = lc.expiration_of("days1/foo", &[], 3, mtime).expect("prefix rule");
        assert_eq!((t, id), (1_700_179_200_000, "pre")); // 2023-11-17T00:00:00Z
        let tags = vec![("k1".to_string(), "v1".to_string()), ("k5".to_string(), "v5".to_string())];
        assert!(lc.expiration_of("other", &tags, 3, mtime).is_none(), "And needs every tag");
        let both = vec![("k1".to_string(), "v1".to_string()), ("k5".to_string(), "v6".to_string())];
        assert_eq!(lc.expiration_of("other", &both, 3, mtime).map(|(_, id)| id), Some("tags"));
        assert_eq!(expiry_ms(&Expiration::Days(3), 1000, 10_000), Some(31_000), "debug days are not rounded");
        assert_eq!(expiration_header(1_700_179_200_000, "pre"), "expiry-date=\"Fri, 17 Nov 2023 00:00:00 GMT\", rule-id=\"pre\"");
    }
}
