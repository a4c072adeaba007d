//! Bucket replication: the `ReplicationConfiguration` document (parse,
//! validate as S3 does, render back) and which rule selects a key.
//!
//! Both schemas are accepted: V1 (a rule `Prefix`, no priority) and V2 (a
//! `Filter`, with `Priority` and `DeleteMarkerReplication` required). Each
//! rule has one `Destination`; which remote it means is the node's business
//! (`arn:aws:s3:::bucket` or `arn:tessera:s3::TARGET:bucket`).

use crate::error::{S3Error, S3ErrorCode};
use crate::xml::{self, Element, XmlWriter};

/// Most rules in one configuration (S3's limit).
pub const MAX_REPLICATION_RULES: usize = 1000;
/// Largest replication document accepted.
pub const MAX_REPLICATION_BODY_BYTES: usize = 1024 * 1024;
/// Longest rule ID (S3's limit).
pub const MAX_RULE_ID_BYTES: usize = 255;
/// Storage classes a destination may name.
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER",
    "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR",
];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub prefix: String,
    pub tags: Vec<(String, String)>,
}

/// How the rule's filter was written, so GET gives back the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterForm {
    /// V1: `<Prefix>` in the rule.
    RulePrefix,
    /// `<Filter/>` or `<Filter><Prefix>..`.
    Prefix,
    Tag,
    And,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub priority: Option<u32>,
    pub enabled: bool,
    pub filter: Filter,
    pub form: FilterForm,
    /// `None`: not given (V1 rules; delete markers are not replicated).
    pub delete_markers: Option<bool>,
    pub existing_objects: Option<bool>,
    /// `arn:...:bucket` as given.
    pub destination: String,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    pub role: String,
    pub rules: Vec<Rule>,
}

fn malformed(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, msg)
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

fn parse_tag(e: &Element) -> Result<(String, String), S3Error> {
    let k = e.child_text("Key").ok_or_else(|| malformed("Tag without Key"))?;
    let v = e.child_text("Value").unwrap_or("");
    if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
        return Err(S3Error::new(S3ErrorCode::InvalidTag));
    }
    Ok((k.to_string(), v.to_string()))
}

fn status(e: Option<&Element>, what: &str) -> Result<Option<bool>, S3Error> {
    let Some(e) = e else { return Ok(None) };
    match e.child_text("Status") {
        Some("Enabled") => Ok(Some(true)),
        Some("Disabled") => Ok(Some(false)),
        _ => Err(malformed(&format!("{what} Status must be Enabled or Disabled"))),
    }
}

/// The bucket name of a destination ARN: `arn:aws:s3:::NAME` or
/// `arn:tessera:s3::TARGET:NAME`; (target, bucket).
pub fn parse_destination(arn: &str) -> Option<(Option<&str>, &str)> {
    if let Some(b) = arn.strip_prefix("arn:aws:s3:::") {
        return (!b.is_empty() && !b.contains(['/', ':'])).then_some((None, b));
    }
    let rest = arn.strip_prefix("arn:tessera:s3::")?;
    let (target, b) = rest.split_once(':')?;
    (!target.is_empty() && !b.is_empty() && !b.contains(['/', ':'])).then_some((Some(target), b))
}

fn parse_filter(f: &Element) -> Result<(Filter, FilterForm), S3Error> {
    let mut out = Filter::default();
    let present: Vec<&Element> = f.children.iter().filter(|c| ["Prefix", "Tag", "And"].contains(&c.name.as_str())).collect();
    if present.len() > 1 {
        return Err(malformed("Filter holds exactly one of Prefix, Tag or And"));
    }
    let Some(one) = present.first() else { return Ok((out, FilterForm::Prefix)) };
    let form = match one.name.as_str() {
        "Prefix" => {
            out.prefix = one.text.clone();
            FilterForm::Prefix
        }
        "Tag" => {
            out.tags.push(parse_tag(one)?);
            FilterForm::Tag
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
            FilterForm::And
        }
    };
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
        (None, None) => return Err(malformed("A rule holds a Filter (or a Prefix)")),
    };
    let priority = match r.child_text("Priority") {
        None => None,
        Some(p) => Some(p.trim().parse::<u32>().map_err(|_| invalid("Priority must be a non-negative integer"))?),
    };
    let delete_markers = status(r.child("DeleteMarkerReplication"), "DeleteMarkerReplication")?;
    let existing_objects = status(r.child("ExistingObjectReplication"), "ExistingObjectReplication")?;
    if form != FilterForm::RulePrefix {
        if priority.is_none() {
            return Err(invalid("Priority must be specified for this version of Cross Region Replication configuration schema."));
        }
        if delete_markers.is_none() {
            return Err(invalid("DeleteMarkerReplication must be specified for this version of Cross Region Replication configuration schema."));
        }
    }
    if delete_markers == Some(true) && !filter.tags.is_empty() {
        return Err(invalid("Delete marker replication is not supported if any Tag filter is specified."));
    }
    let d = r.child("Destination").ok_or_else(|| malformed("A rule holds a Destination"))?;
    let destination = d.child_text("Bucket").ok_or_else(|| malformed("Destination holds a Bucket"))?.trim().to_string();
    if parse_destination(&destination).is_none() {
        return Err(invalid("Invalid bucket ARN."));
    }
    let storage_class = match d.child_text("StorageClass") {
        None => None,
        Some(c) if STORAGE_CLASSES.contains(&c.trim()) => Some(c.trim().to_string()),
        Some(_) => return Err(S3Error::new(S3ErrorCode::InvalidStorageClass)),
    };
    for unsupported in ["SourceSelectionCriteria", "AccessControlTranslation", "EncryptionConfiguration", "ReplicationTime", "Metrics"] {
        let here = if unsupported == "SourceSelectionCriteria" { r.child(unsupported) } else { d.child(unsupported) };
        if here.is_some() {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, format!("{unsupported} is not supported")));
        }
    }
    Ok(Rule { id, priority, enabled, filter, form, delete_markers, existing_objects, destination, storage_class })
}

/// Parses and validates a `ReplicationConfiguration` body. Rules without an
/// ID get one from `gen_id`.
pub fn parse_config(body: &[u8], gen_id: &mut dyn FnMut() -> String) -> Result<ReplicationConfig, S3Error> {
    if body.len() > MAX_REPLICATION_BODY_BYTES {
        return Err(malformed("The replication configuration is too large"));
    }
    let root = xml::parse(body)?;
    if root.name != "ReplicationConfiguration" {
        return Err(malformed("Expected ReplicationConfiguration"));
    }
    let role = root.child_text("Role").ok_or_else(|| malformed("A replication configuration holds a Role"))?.trim().to_string();
    let rules: Vec<&Element> = root.children_named("Rule").collect();
    if rules.is_empty() {
        return Err(malformed("A replication configuration holds at least one Rule"));
    }
    if rules.len() > MAX_REPLICATION_RULES {
        return Err(invalid("A replication configuration holds at most 1000 rules"));
    }
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    for r in rules {
        let rule = parse_rule(r, gen_id)?;
        if out.iter().any(|o| o.id == rule.id) {
            return Err(invalid("Rule Id must be unique. Found same ID for more than one rule"));
        }
        if rule.priority.is_some() && out.iter().any(|o| o.priority == rule.priority) {
            return Err(invalid("Found duplicate priority in the replication configuration"));
        }
        out.push(rule);
    }
    let v1 = out.iter().filter(|r| r.form == FilterForm::RulePrefix).count();
    if v1 != 0 && v1 != out.len() {
        return Err(invalid("Rules of the two schema versions (Prefix and Filter) cannot be mixed"));
    }
    if v1 > 0 {
        // V1: prefixes must not overlap (one rule per key).
        for (i, a) in out.iter().enumerate() {
            if out[..i].iter().any(|b| a.filter.prefix.starts_with(&b.filter.prefix) || b.filter.prefix.starts_with(&a.filter.prefix)) {
                return Err(invalid("Found overlapping prefixes in the replication configuration"));
            }
        }
    }
    Ok(ReplicationConfig { role, rules: out })
}

impl ReplicationConfig {
    /// The enabled rule that governs `key`: of those whose prefix matches
    /// (and whose tags are all among `tags`, when given; `None` skips the
    /// tag test), the one of highest priority.
    pub fn rule_for(&self, key: &str, tags: Option<&[(String, String)]>) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.enabled && key.starts_with(&r.filter.prefix))
            .filter(|r| tags.is_none_or(|t| r.filter.tags.iter().all(|tag| t.contains(tag))))
            .max_by_key(|r| (r.priority.unwrap_or(0), std::cmp::Reverse(r.id.clone())))
    }
}

fn render_tag(w: &mut XmlWriter, k: &str, v: &str) {
    w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
}

fn render_status(w: &mut XmlWriter, name: &str, s: Option<bool>) {
    if let Some(on) = s {
        w.open(name).elem("Status", if on { "Enabled" } else { "Disabled" }).close(name);
    }
}

/// Renders the configuration as GetBucketReplication answers it.
pub fn render_config(c: &ReplicationConfig) -> String {
    let mut w = XmlWriter::new().root("ReplicationConfiguration");
    w.elem("Role", &c.role);
    for r in &c.rules {
        w.open("Rule").elem("ID", &r.id);
        if let Some(p) = r.priority {
            w.elem("Priority", &p.to_string());
        }
        let f = &r.filter;
        match r.form {
            FilterForm::RulePrefix => {
                w.elem("Prefix", &f.prefix);
            }
            FilterForm::Prefix => {
                w.open("Filter").elem("Prefix", &f.prefix).close("Filter");
            }
            FilterForm::Tag => {
                w.open("Filter");
                if let Some((k, v)) = f.tags.first() {
                    render_tag(&mut w, k, v);
                }
                w.close("Filter");
            }
            FilterForm::And => {
                w.open("Filter").open("And");
                if !f.prefix.is_empty() {
                    w.elem("Prefix", &f.prefix);
                }
                for (k, v) in &f.tags {
                    render_tag(&mut w, k, v);
                }
                w.close("And").close("Filter");
            }
        }
        w.elem("Status", if r.enabled { "Enabled" } else { "Disabled" });
        render_status(&mut w, "DeleteMarkerReplication", r.delete_markers);
        render_status(&mut w, "ExistingObjectReplication", r.existing_objects);
        w.open("Destination").elem("Bucket", &r.destination);
        if let Some(c) = &r.storage_class {
            w.elem("StorageClass", c);
        }
        w.close("Destination");
        w.close("Rule");
    }
    w.close("ReplicationConfiguration");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(x: &str) -> Result<ReplicationConfig, S3Error> {
        parse_config(x.as_bytes(), &mut || "gen".to_string())
    }

    const DEST: &str = "<Destination><Bucket>arn:aws:s3:::dst</Bucket></Destination>";

    fn v2(rules: &str) -> String {
        format!("<ReplicationConfiguration><Role>arn:aws:iam::1:role/r</Role>{rules}</ReplicationConfiguration>")
    }

    fn rule(id: &str, prio: u32, filter: &str) -> String {
        format!("<Rule><ID>{id}</ID><Priority>{prio}</Priority><Status>Enabled</Status>{filter}<DeleteMarkerReplication><Status>Enabled</Status></DeleteMarkerReplication>{DEST}</Rule>")
    }

    #[test]
    fn round_trips_and_selects_by_priority() {
        let x = v2(&(rule("a", 1, "<Filter><Prefix>logs/</Prefix></Filter>") + &rule("b", 2, "<Filter/>")));
        let c = parse(&x).unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rule_for("logs/x", None).unwrap().id, "b");
        assert_eq!(parse(&render_config(&c)).unwrap(), c);
        let x = v2(&rule("a", 1, "<Filter><Prefix>logs/</Prefix></Filter>"));
        assert!(parse(&x).unwrap().rule_for("data/x", None).is_none());
    }

    #[test]
    fn validates_as_s3() {
        let no_prio = "<Rule><Status>Enabled</Status><Filter/><DeleteMarkerReplication><Status>Disabled</Status></DeleteMarkerReplication><Destination><Bucket>arn:aws:s3:::d</Bucket></Destination></Rule>";
        assert_eq!(parse(&v2(no_prio)).unwrap_err().code, S3ErrorCode::InvalidArgument);
        let dup = rule("a", 1, "<Filter/>") + &rule("b", 1, "<Filter/>");
        assert_eq!(parse(&v2(&dup)).unwrap_err().code, S3ErrorCode::InvalidArgument);
        let dup_id = rule("a", 1, "<Filter/>") + &rule("a", 2, "<Filter/>");
        assert_eq!(parse(&v2(&dup_id)).unwrap_err().code, S3ErrorCode::InvalidArgument);
        let tag_dm = rule("a", 1, "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>");
        assert_eq!(parse(&v2(&tag_dm)).unwrap_err().code, S3ErrorCode::InvalidArgument);
        let bad_arn = rule("a", 1, "<Filter/>").replace("arn:aws:s3:::dst", "dst");
        assert_eq!(parse(&v2(&bad_arn)).unwrap_err().code, S3ErrorCode::InvalidArgument);
        let bad_class = rule("a", 1, "<Filter/>").replace("</Bucket>", "</Bucket><StorageClass>NOPE</StorageClass>");
        assert_eq!(parse(&v2(&bad_class)).unwrap_err().code, S3ErrorCode::InvalidStorageClass);
        let no_role = "<ReplicationConfiguration>".to_string() + &rule("a", 1, "<Filter/>") + "</ReplicationConfiguration>";
        assert_eq!(parse(&no_role).unwrap_err().code, S3ErrorCode::MalformedXML);
        let v1 = format!("<Rule><Prefix>a</Prefix><Status>Enabled</Status>{DEST}</Rule>");
        let c = parse(&v2(&v1)).unwrap();
        assert_eq!((c.rules[0].id.as_str(), c.rules[0].delete_markers), ("gen", None));
        let overlap = format!("<Rule><ID>x</ID><Prefix>a</Prefix><Status>Enabled</Status>{DEST}</Rule><Rule><ID>y</ID><Prefix>ab</Prefix><Status>Enabled</Status>{DEST}</Rule>");
        assert!(parse(&v2(&overlap)).is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(parse_destination("arn:aws:s3:::b"), Some((None, "b")));
        assert_eq!(parse_destination("arn:tessera:s3::site2:b"), Some((Some("site2"), "b")));
        assert_eq!(parse_destination("arn:aws:s3:::"), None);
        assert_eq!(parse_destination("b"), None);
    }

    #[test]
    fn tags_narrow_the_match() {
        let x = v2(&rule("a", 1, "<Filter><And><Prefix>p</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter>").replace(
            "<DeleteMarkerReplication><Status>Enabled",
            "<DeleteMarkerReplication><Status>Disabled",
        ));
        let c = parse(&x).unwrap();
        assert!(c.rule_for("px", None).is_some());
        assert!(c.rule_for("px", Some(&[])).is_none());
        assert!(c.rule_for("px", Some(&[("k".into(), "v".into())])).is_some());
    }
}
