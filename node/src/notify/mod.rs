//! Bucket notifications: the operator's targets, the durable event queue and
//! its records, and AWS's event JSON.
//!
//! An event is a `T_EVENTS` entry committed **in the same commit** as the
//! write that causes it, on the object key's shard (see `Pending`): an
//! acknowledged write always has its event on disk, and a write that failed
//! has none. The key is `target id ++ 00 ++ event id (u64 BE)`: one entry per
//! (event, target), each target's entries contiguous and in event order.
//! Event ids come from the owning core (`CoreQueue::next_id`) inside the
//! transaction that holds the object key's lock, so per key (and per shard)
//! they follow commit order. `worker` delivers them, at least once.
//!
//! The queue is a table of the shard store, not a separate log, so that
//! bucket replication (issue 14) can put its own entries beside the object
//! write the same way (another key space of `T_EVENTS`, another worker).

pub mod target;
pub mod worker;

use std::cell::Cell;

use tessera_io::{Body, Event, Mutation};
use tessera_proto::notification::{EventName, NotificationConfig, TargetConfig, TargetKind, EVENT_TYPES};
use tessera_proto::time::{format_iso8601_ms, now_unix_micros, now_unix_ms};

use crate::buckets::{BucketInfo, Versioning};
use crate::codec::{Dec, Enc};
use crate::request::Request;
use crate::meta::{ObjectSummary, T_EVENTS};

/// FORMAT BOUNDARY: version of an event record (the entry's meta bytes).
pub const EVENT_RECORD_V1: u8 = 1;
/// Longest target id.
pub const MAX_TARGET_ID_BYTES: usize = 64;

/// One webhook target as the operator configured it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub id: String,
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN` (as is if it holds a space).
    pub auth_token: Option<String>,
    /// PEM CA certificates for an `https` URL (else the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl WebhookSpec {
    /// `arn:tessera:sqs::<id>:webhook`, the ARN bucket configurations name.
    pub fn arn(&self) -> String {
        webhook_arn(&self.id)
    }
}

pub fn webhook_arn(id: &str) -> String {
    format!("arn:tessera:sqs::{id}:webhook")
}

fn valid_target_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TARGET_ID_BYTES
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// `ID=URL[,auth-token=TOKEN][,auth-token-file=PATH][,ca-file=PATH]`
/// (`--notify-webhook`, repeatable; `notify-webhook = [...]` in the file).
pub fn parse_webhook_spec(s: &str) -> Result<WebhookSpec, String> {
    let (id, rest) = s.split_once('=').ok_or_else(|| format!("--notify-webhook {s:?}: expected ID=URL"))?;
    let id = id.trim();
    if !valid_target_id(id) {
        return Err(format!("--notify-webhook: target id {id:?} must be 1 to 64 of A-Z a-z 0-9 - _"));
    }
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or("").trim().to_string();
    target::parse_url(&url).map_err(|e| format!("--notify-webhook {id}: {e}"))?;
    let mut spec = WebhookSpec { id: id.to_string(), url, auth_token: None, ca_file: None };
    for p in parts {
        let (k, v) = p.split_once('=').ok_or_else(|| format!("--notify-webhook {id}: option {p:?} is not KEY=VALUE"))?;
        match k.trim() {
            "auth-token" => spec.auth_token = Some(v.to_string()),
            "auth-token-file" => {
                let t = std::fs::read_to_string(v.trim()).map_err(|e| format!("--notify-webhook {id}: auth-token-file {v}: {e}"))?;
                spec.auth_token = Some(t.trim().to_string());
            }
            "ca-file" => spec.ca_file = Some(v.trim().into()),
            other => return Err(format!("--notify-webhook {id}: unknown option {other:?}")),
        }
    }
    Ok(spec)
}

/// Checks a node's list of targets (unique ids).
pub fn check_targets(specs: &[WebhookSpec]) -> Result<(), String> {
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.id == s.id) {
            return Err(format!("--notify-webhook: target id {:?} given twice", s.id));
        }
    }
    Ok(())
}

/// The prefix of target `id`'s entries in `T_EVENTS`.
pub fn queue_prefix(target_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(target_id.len() + 1);
    k.extend_from_slice(target_id.as_bytes());
    k.push(0);
    k
}

pub fn queue_key(target_id: &str, event_id: u64) -> Vec<u8> {
    let mut k = queue_prefix(target_id);
    k.extend_from_slice(&event_id.to_be_bytes());
    k
}

/// The event id of a queue key.
pub fn event_id_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// What one reactor keeps for its shards' queues: the event id clock and
/// the wake-up of its delivery worker.
#[derive(Default)]
pub struct CoreQueue {
    last_id: Cell<u64>,
    /// Notified after events are committed on one of this core's shards.
    pub wake: Event,
}

impl CoreQueue {
    /// A new event id: microseconds since the epoch times 1024, or one
    /// more than the last, whichever is larger, so ids grow on this core
    /// and a restart starts above every id of the previous run (unless
    /// the clock went back; the worker also raises the clock to every id
    /// it reads, see `observe`).
    pub fn next_id(&self) -> u64 {
        let id = (now_unix_micros() << 10).max(self.last_id.get() + 1);
        self.last_id.set(id);
        id
    }

    pub fn observe(&self, id: u64) {
        if id > self.last_id.get() {
            self.last_id.set(id);
        }
    }
}

/// Who caused an event (from the request).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub principal: String,
    pub source_ip: String,
    pub request_id: String,
    /// The request is a replica write (`replication::ReplicaWrite`): what
    /// it asks the version to keep; it is never replicated again.
    pub replica: Option<crate::replication::ReplicaWrite>,
}

impl Origin {
    pub fn of(req: &Request<'_>) -> Self {
        Origin {
            principal: req.user.as_ref().map(|u| u.user_id.clone()).unwrap_or_else(|| "anonymous".to_string()),
            source_ip: req.conn.peer.map(|p| p.to_string()).unwrap_or_default(),
            request_id: req.request_id.clone(),
            replica: None,
        }
    }
}

/// An event about to happen: built on the request's core before the write,
/// turned into mutations inside the write's commit on the owning core.
#[derive(Debug, Clone)]
pub struct Pending {
    name: EventName,
    bucket: String,
    owner: String,
    key: String,
    versioned: bool,
    /// (target id, configuration id) of every configuration it selects.
    targets: Vec<(String, String)>,
    origin: Origin,
    bucket_id: u64,
    /// The replication entry it causes (`replication::plan`).
    repl: Option<crate::replication::Plan>,
}

/// The event `name` of `key` in bucket `b`, when the bucket's configuration
/// selects it for a target the node has (a configuration naming a target
/// the operator has since removed selects nothing; logged).
pub fn prepare(targets: &[WebhookSpec], b: &BucketInfo, key: &str, name: EventName, origin: Origin) -> Option<Pending> {
    prepare_with(targets, &[], b, key, name, origin)
}

/// [`prepare`], and the replication entry the write causes (none for a
/// replica write), and the replica's stamp: one `Pending` carries all
/// the queue entries committed with the write.
pub fn prepare_with(
    targets: &[WebhookSpec],
    remotes: &[crate::replication::TargetSpec],
    b: &BucketInfo,
    key: &str,
    name: EventName,
    origin: Origin,
) -> Option<Pending> {
    let repl = if origin.replica.is_none() { crate::replication::plan(remotes, b, key, name) } else { None };
    let mut out = Vec::new();
    for c in b.notification.iter().flat_map(|nc| nc.matching(name, key)) {
        match targets.iter().find(|t| t.arn() == c.arn) {
            Some(t) => out.push((t.id.clone(), c.id.clone())),
            None => tracing::warn!(bucket = %b.name, arn = %c.arn, "notification target no longer configured; event not queued"),
        }
    }
    if out.is_empty() && repl.is_none() && origin.replica.is_none() {
        return None;
    }
    Some(Pending {
        name,
        bucket: b.name.clone(),
        owner: b.owner_id.clone(),
        key: key.to_string(),
        versioned: b.versioning != Versioning::Unversioned,
        targets: out,
        origin,
        bucket_id: b.id,
        repl,
    })
}

impl Pending {
    pub fn name(&self) -> EventName {
        self.name
    }

    /// Marks the version about to be written: REPLICA (with the source's
    /// id, mtime and ETag) for a replica write, PENDING when it will be
    /// replicated.
    pub fn stamp(&self, s: &mut ObjectSummary) {
        if let Some(r) = &self.origin.replica {
            r.stamp(s);
        } else if let Some(p) = &self.repl {
            p.stamp(s);
        }
    }

    /// The queue entries of this event, `summary` being the version written
    /// (or removed, or the delete marker placed). Call on the owning core,
    /// right before the commit that carries them.
    pub fn mutations(&self, q: &CoreQueue, summary: Option<&ObjectSummary>) -> Vec<Mutation> {
        let id = q.next_id();
        let created = self.name.carries_object();
        let rec = EventRecord {
            name: self.name,
            time_ms: now_unix_ms(),
            bucket: self.bucket.clone(),
            owner: self.owner.clone(),
            key: self.key.clone(),
            size: summary.filter(|_| created).map_or(0, |s| s.size),
            etag: summary.filter(|_| created).map(|s| s.etag().trim_matches('"').to_string()),
            version_id: summary.filter(|_| self.versioned).map(|s| s.version_id()),
            config_id: String::new(),
            principal: self.origin.principal.clone(),
            source_ip: self.origin.source_ip.clone(),
            request_id: self.origin.request_id.clone(),
            sequencer: id,
        };
        let repl = self.repl.as_ref().zip(summary).map(|(p, s)| p.mutation(id, &self.bucket, self.bucket_id, &self.key, s));
        self.targets
            .iter()
            .map(|(target, config)| {
                let rec = EventRecord { config_id: config.clone(), ..rec.clone() };
                Mutation::Put {
                    table: T_EVENTS,
                    key: queue_key(target, id),
                    summary: vec![EVENT_RECORD_V1],
                    meta: rec.encode(),
                    body: Body::Inline(Vec::new()),
                }
            })
            .chain(repl)
            .collect()
    }
}

/// One queued event (FORMAT BOUNDARY: the meta bytes of a `T_EVENTS` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub name: EventName,
    pub time_ms: i64,
    pub bucket: String,
    pub owner: String,
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub config_id: String,
    pub principal: String,
    pub source_ip: String,
    pub request_id: String,
    /// The event id: orders a key's events (`s3.object.sequencer`).
    pub sequencer: u64,
}

impl EventRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(EVENT_RECORD_V1);
        e.u8(self.name.code()).i64(self.time_ms).str(&self.bucket).str(&self.owner).str(&self.key);
        e.u64(self.size).opt_str(self.etag.as_deref()).opt_str(self.version_id.as_deref());
        e.str(&self.config_id).str(&self.principal).str(&self.source_ip).str(&self.request_id);
        e.u64(self.sequencer);
        e.finish()
    }

    /// `None` for bytes of another version or damaged ones.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, EVENT_RECORD_V1)?;
        let rec = EventRecord {
            name: EventName::from_code(d.u8()?)?,
            time_ms: d.i64()?,
            bucket: d.str()?,
            owner: d.str()?,
            key: d.str()?,
            size: d.u64()?,
            etag: d.opt_str()?,
            version_id: d.opt_str()?,
            config_id: d.str()?,
            principal: d.str()?,
            source_ip: d.str()?,
            request_id: d.str()?,
            sequencer: d.u64()?,
        };
        d.end()?;
        Some(rec)
    }

    /// AWS's event message: `{"Records":[...]}` with one record.
    pub fn to_json(&self, region: &str) -> Vec<u8> {
        let mut object = serde_json::json!({
            "key": encode_key(&self.key),
            "sequencer": format!("{:016X}", self.sequencer),
        });
        if self.name.carries_object() {
            object["size"] = self.size.into();
            object["eTag"] = self.etag.clone().unwrap_or_default().into();
        }
        if let Some(v) = &self.version_id {
            object["versionId"] = v.clone().into();
        }
        let record = serde_json::json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": region,
            "eventTime": format_iso8601_ms(self.time_ms),
            "eventName": self.name.record_name(),
            "userIdentity": { "principalId": self.principal },
            "requestParameters": { "sourceIPAddress": self.source_ip },
            "responseElements": { "x-amz-request-id": self.request_id, "x-amz-id-2": self.request_id },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": self.config_id,
                "bucket": {
                    "name": self.bucket,
                    "ownerIdentity": { "principalId": self.owner },
                    "arn": format!("arn:aws:s3:::{}", self.bucket),
                },
                "object": object,
            },
        });
        serde_json::to_vec(&serde_json::json!({ "Records": [record] })).unwrap_or_default()
    }
}

/// FORMAT BOUNDARY: version of a bucket's notification configuration
/// (section 8 of the bucket record's meta bytes, see `buckets`).
pub const NOTIFICATION_CONFIG_V1: u8 = 1;

/// The bucket record section of a notification configuration.
pub fn encode_config(nc: &NotificationConfig) -> Vec<u8> {
    let mut c = Enc::default();
    c.u8(NOTIFICATION_CONFIG_V1).u32(nc.configs.len() as u32);
    for t in &nc.configs {
        c.u8(t.kind.code()).str(&t.id).str(&t.arn).u32(t.events.len() as u32);
        for e in &t.events {
            c.str(e);
        }
        c.opt_str(t.prefix.as_deref()).opt_str(t.suffix.as_deref());
    }
    c.buf
}

/// A stored configuration; an event type or kind this build does not know
/// makes the record unreadable rather than silently narrower.
pub fn decode_config(d: &mut Dec<'_>) -> Option<NotificationConfig> {
    if d.u8()? != NOTIFICATION_CONFIG_V1 {
        return None;
    }
    let n = d.count(tessera_proto::notification::MAX_NOTIFICATION_CONFIGS)?;
    let mut configs = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = TargetKind::from_code(d.u8()?)?;
        let id = d.str()?;
        let arn = d.str()?;
        let ne = d.count(EVENT_TYPES.len())?;
        let mut events = Vec::with_capacity(ne);
        for _ in 0..ne {
            let e = d.str()?;
            if !EVENT_TYPES.contains(&e.as_str()) {
                return None;
            }
            events.push(e);
        }
        configs.push(TargetConfig { kind, id, arn, events, prefix: d.opt_str()?, suffix: d.opt_str()? });
    }
    Some(NotificationConfig { configs })
}

/// An object key as S3 puts it in event records: URL-encoded as a form
/// value (space as `+`), `/` kept.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &c in key.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => out.push(c as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> EventRecord {
        EventRecord {
            name: EventName::CompleteMultipartUpload,
            time_ms: 1_700_000_000_123,
            bucket: "b".into(),
            owner: "o".into(),
            key: "a b/c+d.txt".into(),
            size: 42,
            etag: Some("abc-2".into()),
            version_id: None,
            config_id: "cfg".into(),
            principal: "p".into(),
            source_ip: "127.0.0.1".into(),
            request_id: "r".into(),
            sequencer: 0x1234,
        }
    }

    #[test]
    fn records_round_trip_and_refuse_other_versions() {
        let r = rec();
        let b = r.encode();
        assert_eq!(EventRecord::decode(&b), Some(r));
        let mut other = b.clone();
        other[0] = 2;
        assert_eq!(EventRecord::decode(&other), None);
        assert_eq!(EventRecord::decode(&b[..b.len() - 1]), None);
    }

    #[test]
    fn json_is_aws_shaped() {
        let v: serde_json::Value = serde_json::from_slice(&rec().to_json("us-east-1")).unwrap();
        let r = &v["Records"][0];
        assert_eq!(r["eventName"], "ObjectCreated:CompleteMultipartUpload");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["s3"]["object"]["key"], "a+b/c%2Bd.txt");
        assert_eq!(r["s3"]["object"]["size"], 42);
        assert_eq!(r["s3"]["object"]["sequencer"], "0000000000001234");
        assert_eq!(r["eventTime"], "2023-11-14T22:13:20.123Z");
        assert!(r["s3"]["object"].get("versionId").is_none());
    }

    #[test]
    fn webhook_specs() {
        let s = parse_webhook_spec("hook-1=http://127.0.0.1:9/x,auth-token=abc").unwrap();
        assert_eq!((s.id.as_str(), s.url.as_str(), s.auth_token.as_deref()), ("hook-1", "http://127.0.0.1:9/x", Some("abc")));
        assert_eq!(s.arn(), "arn:tessera:sqs::hook-1:webhook");
        assert!(!format!("{s:?}").contains("abc"), "the token stays out of Debug");
        assert!(parse_webhook_spec("bad id=http://x").is_err());
        assert!(parse_webhook_spec("a=ftp://x").is_err());
        assert!(parse_webhook_spec("a=http://x,what=1").is_err());
        let a = parse_webhook_spec("a=http://x").unwrap();
        assert!(check_targets(&[a.clone(), a]).is_err());
    }

    #[test]
    fn queue_keys_order_by_event_within_a_target() {
        let q = CoreQueue::default();
        let (a, b) = (q.next_id(), q.next_id());
        assert!(b > a);
        let (ka, kb) = (queue_key("t", a), queue_key("t", b));
        assert!(ka < kb && ka.starts_with(&queue_prefix("t")));
        assert_eq!(event_id_of(&kb), Some(b));
        assert!(!queue_key("t2", 0).starts_with(&queue_prefix("t")));
    }
}
