//! Bucket notifications: the `NotificationConfiguration` document (parse,
//! validate as S3 does, render back), event names and which configurations
//! an event of a key matches. The node stores the parsed form, records
//! matching events in a durable queue and delivers them (`node/src/notify`).

use crate::error::{S3Error, S3ErrorCode};
use crate::xml::{self, Element, XmlWriter};

/// Largest notification document accepted.
pub const MAX_NOTIFICATION_BODY_BYTES: usize = 256 * 1024;
/// Most configurations (Queue + Topic + CloudFunction) in one document.
pub const MAX_NOTIFICATION_CONFIGS: usize = 1000;
/// Longest configuration Id, prefix or suffix value (S3 key length).
pub const MAX_NOTIFICATION_VALUE_BYTES: usize = 1024;
/// Characters of a generated configuration Id.
const GENERATED_ID_CHARS: usize = 20;

/// Every event type S3 accepts in a configuration (`s3:` names). Those the
/// node emits are listed in [`EMITTED_EVENTS`]; the others are accepted
/// and stored as S3 does, and simply never fire here.
pub const EVENT_TYPES: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectRestore:*",
    "s3:ObjectRestore:Post",
    "s3:ObjectRestore:Completed",
    "s3:ObjectRestore:Delete",
    "s3:ReducedRedundancyLostObject",
    "s3:Replication:*",
    "s3:Replication:OperationFailedReplication",
    "s3:Replication:OperationMissedThreshold",
    "s3:Replication:OperationReplicatedAfterThreshold",
    "s3:Replication:OperationNotTracked",
    "s3:LifecycleExpiration:*",
    "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated",
    "s3:LifecycleTransition",
    "s3:IntelligentTiering",
    "s3:ObjectTagging:*",
    "s3:ObjectTagging:Put",
    "s3:ObjectTagging:Delete",
    "s3:ObjectAcl:Put",
];

/// The events this store produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Put,
    Post,
    Copy,
    CompleteMultipartUpload,
    Delete,
    DeleteMarkerCreated,
    LifecycleDelete,
    LifecycleDeleteMarkerCreated,
    LifecycleTransition,
    RestorePost,
    RestoreCompleted,
    RestoreDelete,
}

/// Events the node emits (the rest of [`EVENT_TYPES`] never fire).
pub const EMITTED_EVENTS: &[EventName] = &[
    EventName::Put,
    EventName::Post,
    EventName::Copy,
    EventName::CompleteMultipartUpload,
    EventName::Delete,
    EventName::DeleteMarkerCreated,
    EventName::LifecycleDelete,
    EventName::LifecycleDeleteMarkerCreated,
    EventName::LifecycleTransition,
    EventName::RestorePost,
    EventName::RestoreCompleted,
    EventName::RestoreDelete,
];

impl EventName {
    /// The configuration name (`s3:ObjectCreated:Put`).
    pub fn config_name(self) -> &'static str {
        match self {
            EventName::Put => "s3:ObjectCreated:Put",
            EventName::Post => "s3:ObjectCreated:Post",
            EventName::Copy => "s3:ObjectCreated:Copy",
            EventName::CompleteMultipartUpload => "s3:ObjectCreated:CompleteMultipartUpload",
            EventName::Delete => "s3:ObjectRemoved:Delete",
            EventName::DeleteMarkerCreated => "s3:ObjectRemoved:DeleteMarkerCreated",
            EventName::LifecycleDelete => "s3:LifecycleExpiration:Delete",
            EventName::LifecycleDeleteMarkerCreated => "s3:LifecycleExpiration:DeleteMarkerCreated",
            EventName::LifecycleTransition => "s3:LifecycleTransition",
            EventName::RestorePost => "s3:ObjectRestore:Post",
            EventName::RestoreCompleted => "s3:ObjectRestore:Completed",
            EventName::RestoreDelete => "s3:ObjectRestore:Delete",
        }
    }

    /// The name in an event record (`ObjectCreated:Put`: no `s3:`).
    pub fn record_name(self) -> &'static str {
        &self.config_name()[3..]
    }

    /// A stored code (the queue's record format; never renumber).
    pub fn code(self) -> u8 {
        match self {
            EventName::Put => 1,
            EventName::Post => 2,
            EventName::Copy => 3,
            EventName::CompleteMultipartUpload => 4,
            EventName::Delete => 5,
            EventName::DeleteMarkerCreated => 6,
            EventName::LifecycleDelete => 7,
            EventName::LifecycleDeleteMarkerCreated => 8,
            EventName::LifecycleTransition => 9,
            EventName::RestorePost => 10,
            EventName::RestoreCompleted => 11,
            EventName::RestoreDelete => 12,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        EMITTED_EVENTS.iter().copied().find(|e| e.code() == c)
    }

    /// Whether an object is created (size and ETag go into the record).
    pub fn is_created(self) -> bool {
        matches!(self, EventName::Put | EventName::Post | EventName::Copy | EventName::CompleteMultipartUpload)
    }

    /// Whether the record names the object's size and ETag: creations,
    /// and the events about an existing version's storage (a transition,
    /// a restore started or completed).
    pub fn carries_object(self) -> bool {
        self.is_created() || matches!(self, EventName::LifecycleTransition | EventName::RestorePost | EventName::RestoreCompleted)
    }
}

/// Whether configured event type `pattern` (`s3:ObjectCreated:*` or an
/// exact name) selects `name` (also an `s3:` name).
pub fn event_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(family) => name.starts_with(family),
        None => pattern == name,
    }
}

/// Whether two configured event types can select the same event.
fn events_overlap(a: &str, b: &str) -> bool {
    let family = |e: &str| e.strip_suffix('*').map(str::to_string);
    match (family(a), family(b)) {
        (Some(fa), _) if b.starts_with(&fa) => true,
        (_, Some(fb)) if a.starts_with(&fb) => true,
        _ => a == b,
    }
}

/// Which kind of element a configuration came in (and goes back out as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Queue,
    Topic,
    CloudFunction,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Topic, TargetKind::Queue, TargetKind::CloudFunction];

    /// The configuration element.
    pub fn element(self) -> &'static str {
        match self {
            TargetKind::Queue => "QueueConfiguration",
            TargetKind::Topic => "TopicConfiguration",
            TargetKind::CloudFunction => "CloudFunctionConfiguration",
        }
    }

    /// The element holding the destination ARN.
    pub fn arn_element(self) -> &'static str {
        match self {
            TargetKind::Queue => "Queue",
            TargetKind::Topic => "Topic",
            TargetKind::CloudFunction => "CloudFunction",
        }
    }

    /// A stored code (never renumber).
    pub fn code(self) -> u8 {
        match self {
            TargetKind::Queue => 1,
            TargetKind::Topic => 2,
            TargetKind::CloudFunction => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.code() == c)
    }
}

/// One `QueueConfiguration` (or Topic, CloudFunction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub kind: TargetKind,
    pub id: String,
    pub arn: String,
    /// `s3:` event types, as submitted (duplicates removed).
    pub events: Vec<String>,
    /// `S3Key` filter rules (`None`: no rule of that name).
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl TargetConfig {
    /// Whether an event `name` (an `s3:` name) of `key` selects this configuration.
    pub fn matches(&self, name: &str, key: &str) -> bool {
        self.events.iter().any(|p| event_matches(p, name))
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationConfig {
    pub configs: Vec<TargetConfig>,
}

impl NotificationConfig {
    /// The configurations an event `name` of `key` selects.
    pub fn matching<'a>(&'a self, name: EventName, key: &'a str) -> impl Iterator<Item = &'a TargetConfig> + 'a {
        self.configs.iter().filter(move |c| c.matches(name.config_name(), key))
    }
}

fn malformed(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, msg)
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

fn parse_filter(f: &Element) -> Result<(Option<String>, Option<String>), S3Error> {
    let Some(key) = f.child("S3Key") else {
        return if f.children.is_empty() { Ok((None, None)) } else { Err(malformed("Filter holds S3Key only")) };
    };
    let (mut prefix, mut suffix) = (None, None);
    for rule in key.children_named("FilterRule") {
        let name = rule.child_text("Name").ok_or_else(|| malformed("FilterRule without Name"))?;
        let value = rule.child_text("Value").unwrap_or("").to_string();
        if value.len() > MAX_NOTIFICATION_VALUE_BYTES {
            return Err(invalid("The filter rule value is too long"));
        }
        // S3 takes the names in any case and answers them lower case.
        match name.to_ascii_lowercase().as_str() {
            "prefix" if prefix.is_some() => return Err(invalid("Cannot specify more than one prefix rule in a filter.")),
            "prefix" => prefix = Some(value),
            "suffix" if suffix.is_some() => return Err(invalid("Cannot specify more than one suffix rule in a filter.")),
            "suffix" => suffix = Some(value),
            _ => return Err(invalid("filter rule name must be either prefix or suffix")),
        }
    }
    Ok((prefix, suffix))
}

fn parse_one(
    e: &Element,
    kind: TargetKind,
    known_arn: &dyn Fn(&str) -> bool,
    gen_id: &mut dyn FnMut() -> String,
) -> Result<TargetConfig, S3Error> {
    let arn = e.child_text(kind.arn_element()).ok_or_else(|| malformed("A configuration names its destination"))?.trim();
    let mut events: Vec<String> = Vec::new();
    for ev in e.children_named("Event") {
        let name = ev.text.trim();
        if !EVENT_TYPES.contains(&name) {
            return Err(invalid("The event is not supported for notifications"));
        }
        if !events.iter().any(|x| x == name) {
            events.push(name.to_string());
        }
    }
    if events.is_empty() {
        return Err(malformed("A configuration holds at least one Event"));
    }
    if !known_arn(arn) {
        return Err(invalid("Unable to validate the following destination configurations"));
    }
    let (prefix, suffix) = match e.child("Filter") {
        Some(f) => parse_filter(f)?,
        None => (None, None),
    };
    let id = match e.child_text("Id").map(str::trim) {
        Some(id) if id.len() > MAX_NOTIFICATION_VALUE_BYTES => return Err(invalid("The configuration Id is too long")),
        Some(id) if !id.is_empty() => id.to_string(),
        _ => gen_id(),
    };
    Ok(TargetConfig { kind, id, arn: arn.to_string(), events, prefix, suffix })
}

/// Two strings "overlap" as filters when one is a prefix (or, for
/// suffixes, a suffix) of the other; an absent rule matches everything.
fn prefixes_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
        _ => true,
    }
}

fn suffixes_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.ends_with(b) || b.ends_with(a),
        _ => true,
    }
}

/// Parses and validates a PutBucketNotificationConfiguration body.
/// `known_arn` says whether a destination ARN names a configured target;
/// `gen_id` makes an Id for a configuration submitted without one. An
/// empty document is valid: it turns notifications off.
pub fn parse_config(
    body: &[u8],
    known_arn: &dyn Fn(&str) -> bool,
    gen_id: &mut dyn FnMut() -> String,
) -> Result<NotificationConfig, S3Error> {
    if body.len() > MAX_NOTIFICATION_BODY_BYTES {
        return Err(malformed("The notification configuration is too large"));
    }
    let root = xml::parse(body)?;
    if root.name != "NotificationConfiguration" {
        return Err(malformed("Expected NotificationConfiguration"));
    }
    let mut configs: Vec<TargetConfig> = Vec::new();
    for c in &root.children {
        let kind = match c.name.as_str() {
            "QueueConfiguration" => TargetKind::Queue,
            "TopicConfiguration" => TargetKind::Topic,
            "CloudFunctionConfiguration" => TargetKind::CloudFunction,
            "EventBridgeConfiguration" => {
                return Err(invalid("EventBridge is not a destination of this store"));
            }
            _ => return Err(malformed("Unexpected element in NotificationConfiguration")),
        };
        if configs.len() >= MAX_NOTIFICATION_CONFIGS {
            return Err(invalid("Too many notification configurations"));
        }
        let new = parse_one(c, kind, known_arn, gen_id)?;
        if configs.iter().any(|o| o.id == new.id) {
            return Err(invalid("Configurations overlap. Configurations on the same bucket cannot share a common event type."));
        }
        for o in &configs {
            let same_event = o.events.iter().any(|a| new.events.iter().any(|b| events_overlap(a, b)));
            if same_event
                && prefixes_overlap(o.prefix.as_deref(), new.prefix.as_deref())
                && suffixes_overlap(o.suffix.as_deref(), new.suffix.as_deref())
            {
                return Err(invalid(
                    "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type.",
                ));
            }
        }
        configs.push(new);
    }
    Ok(NotificationConfig { configs })
}

/// A configuration Id for one submitted without, from random bytes.
pub fn generated_id(random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random.iter().take(GENERATED_ID_CHARS).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Renders the configuration as GetBucketNotificationConfiguration answers
/// it (an empty `NotificationConfiguration` when there is none).
pub fn render_config(nc: Option<&NotificationConfig>) -> String {
    let mut w = XmlWriter::new().root("NotificationConfiguration");
    for kind in TargetKind::ALL {
        for c in nc.iter().flat_map(|nc| nc.configs.iter()).filter(|c| c.kind == kind) {
            w.open(kind.element()).elem("Id", &c.id).elem(kind.arn_element(), &c.arn);
            for e in &c.events {
                w.elem("Event", e);
            }
            if c.prefix.is_some() || c.suffix.is_some() {
                w.open("Filter").open("S3Key");
                for (name, v) in [("prefix", &c.prefix), ("suffix", &c.suffix)] {
                    if let Some(v) = v {
                        w.open("FilterRule").elem("Name", name).elem("Value", v).close("FilterRule");
                    }
                }
                w.close("S3Key").close("Filter");
            }
            w.close(kind.element());
        }
    }
    w.close("NotificationConfiguration");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:tessera:sqs::hook:webhook";

    fn parse(body: &str) -> Result<NotificationConfig, S3Error> {
        let mut n = 0;
        let mut gen = || {
            n += 1;
            format!("gen{n}")
        };
        parse_config(body.as_bytes(), &|a| a == ARN, &mut gen)
    }

    fn queue(id: &str, events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> String {
        let mut s = format!("<QueueConfiguration><Id>{id}</Id><Queue>{ARN}</Queue>");
        for e in events {
            s += &format!("<Event>{e}</Event>");
        }
        if prefix.is_some() || suffix.is_some() {
            s += "<Filter><S3Key>";
            if let Some(p) = prefix {
                s += &format!("<FilterRule><Name>Prefix</Name><Value>{p}</Value></FilterRule>");
            }
            if let Some(x) = suffix {
                s += &format!("<FilterRule><Name>suffix</Name><Value>{x}</Value></FilterRule>");
            }
            s += "</S3Key></Filter>";
        }
        s + "</QueueConfiguration>"
    }

    fn doc(parts: &[String]) -> String {
        format!("<NotificationConfiguration>{}</NotificationConfiguration>", parts.concat())
    }

    #[test]
    fn parses_matches_and_renders_back() {
        let nc = parse(&doc(&[queue("a", &["s3:ObjectCreated:*"], Some("img/"), Some(".jpg"))])).unwrap();
        assert!(nc.matching(EventName::Put, "img/x.jpg").next().is_some());
        assert!(nc.matching(EventName::Copy, "img/x.jpg").next().is_some());
        assert!(nc.matching(EventName::Put, "img/x.png").next().is_none());
        assert!(nc.matching(EventName::Put, "doc/x.jpg").next().is_none());
        assert!(nc.matching(EventName::Delete, "img/x.jpg").next().is_none());
        let text = render_config(Some(&nc));
        assert!(text.contains("<Name>prefix</Name><Value>img/</Value>"), "{text}");
        assert_eq!(parse(&text).unwrap(), nc, "renders to what parses back the same");
        assert_eq!(parse("<NotificationConfiguration/>").unwrap(), NotificationConfig::default());
        let nc = parse(&doc(&[queue("", &["s3:ObjectRemoved:Delete"], None, None)])).unwrap();
        assert_eq!(nc.configs[0].id, "gen1", "an Id is generated when absent");
    }

    #[test]
    fn refuses_what_s3_refuses() {
        let code = |b: &str| parse(b).unwrap_err().code;
        assert_eq!(code(&doc(&[queue("a", &["s3:ObjectCreated:Nope"], None, None)])), S3ErrorCode::InvalidArgument);
        let other = "<NotificationConfiguration><QueueConfiguration><Queue>arn:aws:sqs:us-east-1:1:q</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>";
        assert_eq!(code(other), S3ErrorCode::InvalidArgument, "unknown destination");
        // Overlapping events and filters.
        let ab = [queue("a", &["s3:ObjectCreated:*"], Some("a/"), None), queue("b", &["s3:ObjectCreated:Put"], Some("a/b"), None)];
        assert_eq!(code(&doc(&ab)), S3ErrorCode::InvalidArgument);
        // Disjoint prefixes, or disjoint suffixes, or other events: fine.
        parse(&doc(&[queue("a", &["s3:ObjectCreated:*"], Some("a/"), None), queue("b", &["s3:ObjectCreated:*"], Some("b/"), None)])).unwrap();
        parse(&doc(&[queue("a", &["s3:ObjectCreated:*"], None, Some(".jpg")), queue("b", &["s3:ObjectCreated:*"], None, Some(".png"))])).unwrap();
        parse(&doc(&[queue("a", &["s3:ObjectCreated:*"], None, None), queue("b", &["s3:ObjectRemoved:*"], None, None)])).unwrap();
        let two_prefixes = "<NotificationConfiguration><QueueConfiguration><Queue>arn:tessera:sqs::hook:webhook</Queue><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>a</Value></FilterRule><FilterRule><Name>prefix</Name><Value>b</Value></FilterRule></S3Key></Filter></QueueConfiguration></NotificationConfiguration>";
        assert_eq!(code(two_prefixes), S3ErrorCode::InvalidArgument);
        let bad_name = two_prefixes.replacen("<Name>prefix</Name><Value>b", "<Name>middle</Name><Value>b", 1);
        assert_eq!(code(&bad_name), S3ErrorCode::InvalidArgument);
        assert_eq!(code("<NotificationConfiguration><QueueConfiguration><Queue>arn:tessera:sqs::hook:webhook</Queue></QueueConfiguration></NotificationConfiguration>"), S3ErrorCode::MalformedXML);
        assert_eq!(code("<Other/>"), S3ErrorCode::MalformedXML);
        assert_eq!(code(&doc(&[queue("a", &["s3:ObjectCreated:Put"], None, None), queue("a", &["s3:ObjectRemoved:*"], None, None)])), S3ErrorCode::InvalidArgument);
    }

    #[test]
    fn event_patterns() {
        assert!(event_matches("s3:ObjectCreated:*", "s3:ObjectCreated:CompleteMultipartUpload"));
        assert!(!event_matches("s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"));
        assert!(event_matches("s3:ObjectRemoved:DeleteMarkerCreated", "s3:ObjectRemoved:DeleteMarkerCreated"));
        assert!(events_overlap("s3:ObjectCreated:Put", "s3:ObjectCreated:*"));
        assert!(!events_overlap("s3:ObjectCreated:Put", "s3:ObjectCreated:Post"));
        for e in EMITTED_EVENTS {
            assert_eq!(EventName::from_code(e.code()), Some(*e));
            assert!(EVENT_TYPES.contains(&e.config_name()));
        }
    }
}
