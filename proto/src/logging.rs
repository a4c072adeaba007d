//! Server access logging: the `BucketLoggingStatus` document and the log
//! record format (AWS's server access log: space-separated fields, `-` for
//! none, quoted strings, bracketed time).

use crate::error::{S3Error, S3ErrorCode};
use crate::xml::{self, XmlWriter};

/// Longest target prefix accepted.
pub const MAX_TARGET_PREFIX_BYTES: usize = 512;

/// How log object keys are formed under the target prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    /// `[prefix]YYYY-mm-DD-HH-MM-SS-UniqueString`.
    #[default]
    Simple,
    /// `[prefix]owner/region/bucket/YYYY/mm/DD/YYYY-mm-DD-HH-MM-SS-Unique`,
    /// dated by the events (`true`) or by the delivery.
    Partitioned { event_time: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    pub target_bucket: String,
    pub target_prefix: String,
    pub key_format: KeyFormat,
}

fn malformed(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, msg.to_string())
}

/// Parses a PutBucketLogging body: `Ok(None)` turns logging off.
pub fn parse_status(body: &[u8]) -> Result<Option<LoggingConfig>, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "BucketLoggingStatus" {
        return Err(S3Error::new(S3ErrorCode::MalformedXML));
    }
    let Some(en) = root.child("LoggingEnabled") else { return Ok(None) };
    let target_bucket = en.child_text("TargetBucket").map(str::trim).filter(|b| !b.is_empty());
    let target_bucket = target_bucket.ok_or_else(|| malformed("LoggingEnabled needs a TargetBucket"))?.to_string();
    let target_prefix = en.child_text("TargetPrefix").unwrap_or("").to_string();
    if target_prefix.len() > MAX_TARGET_PREFIX_BYTES {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "The TargetPrefix is too long"));
    }
    if en.child("TargetGrants").is_some_and(|g| !g.children.is_empty()) {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "TargetGrants are not supported: grant access to the target bucket instead",
        ));
    }
    let key_format = match en.child("TargetObjectKeyFormat") {
        None => KeyFormat::Simple,
        Some(f) => match (f.child("SimplePrefix"), f.child("PartitionedPrefix")) {
            (Some(_), None) => KeyFormat::Simple,
            (None, Some(p)) => match p.child_text("PartitionDateSource").map(str::trim) {
                None | Some("EventTime") => KeyFormat::Partitioned { event_time: true },
                Some("DeliveryTime") => KeyFormat::Partitioned { event_time: false },
                Some(other) => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        format!("Invalid PartitionDateSource: {other}"),
                    ))
                }
            },
            _ => return Err(malformed("TargetObjectKeyFormat needs exactly one of SimplePrefix, PartitionedPrefix")),
        },
    };
    Ok(Some(LoggingConfig { target_bucket, target_prefix, key_format }))
}

/// The GetBucketLogging body.
pub fn render_status(cfg: Option<&LoggingConfig>) -> String {
    let mut w = XmlWriter::new().root("BucketLoggingStatus");
    if let Some(c) = cfg {
        w.open("LoggingEnabled").elem("TargetBucket", &c.target_bucket).elem("TargetPrefix", &c.target_prefix);
        w.open("TargetObjectKeyFormat");
        match c.key_format {
            KeyFormat::Simple => {
                w.open("SimplePrefix").close("SimplePrefix");
            }
            KeyFormat::Partitioned { event_time } => {
                w.open("PartitionedPrefix")
                    .elem("PartitionDateSource", if event_time { "EventTime" } else { "DeliveryTime" })
                    .close("PartitionedPrefix");
            }
        }
        w.close("TargetObjectKeyFormat").close("LoggingEnabled");
    }
    w.close("BucketLoggingStatus");
    w.finish()
}

/// One request as the access log records it.
#[derive(Debug, Clone, Default)]
pub struct LogRecord<'a> {
    pub bucket_owner: &'a str,
    pub bucket: &'a str,
    pub time_unix_secs: i64,
    pub remote_ip: &'a str,
    /// The requester's user id, `-` for anonymous.
    pub requester: Option<&'a str>,
    pub request_id: &'a str,
    /// `REST.GET.OBJECT` and the like.
    pub operation: &'a str,
    pub key: Option<&'a str>,
    /// `GET /bucket/key?query HTTP/1.1`.
    pub request_uri: &'a str,
    pub status: u16,
    pub error_code: Option<&'a str>,
    pub bytes_sent: u64,
    pub object_size: Option<u64>,
    pub total_time_ms: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub version_id: Option<&'a str>,
    /// `SigV4`, `SigV2` or none.
    pub signature_version: Option<&'a str>,
    /// `AuthHeader`, `QueryString` or none.
    pub auth_type: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// Keys are URL-encoded once in the log, keeping the unreserved characters and `/`.
const KEY_SET: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `06/Feb/2019:00:00:38 +0000`.
pub fn log_time(unix_secs: i64) -> String {
    let c = crate::time::civil(unix_secs);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day,
        MONTHS.get(c.month.saturating_sub(1) as usize).unwrap_or(&"Jan"),
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// A field without spaces or quotes (they would split or end it).
fn bare(v: Option<&str>) -> String {
    match v {
        None | Some("") => "-".to_string(),
        Some(s) => s.chars().map(|c| if c.is_whitespace() || c == '"' || c.is_control() { '+' } else { c }).collect(),
    }
}

/// A quoted field; quotes and control characters inside are escaped.
fn quoted(v: Option<&str>) -> String {
    match v {
        None | Some("") => "\"-\"".to_string(),
        Some(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

impl LogRecord<'_> {
    /// The record as one line (with its newline): the 26 fields of AWS's format.
    pub fn line(&self) -> String {
        let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        let key = self.key.map(|k| percent_encoding::utf8_percent_encode(k, KEY_SET).to_string());
        let fields = [
            bare(Some(self.bucket_owner)),
            bare(Some(self.bucket)),
            format!("[{}]", log_time(self.time_unix_secs)),
            bare(Some(self.remote_ip)),
            bare(self.requester),
            bare(Some(self.request_id)),
            bare(Some(self.operation)),
            bare(key.as_deref()),
            quoted(Some(self.request_uri)),
            self.status.to_string(),
            bare(self.error_code),
            if self.bytes_sent == 0 { "-".to_string() } else { self.bytes_sent.to_string() },
            num(self.object_size),
            self.total_time_ms.to_string(),
            "-".to_string(),
            quoted(self.referer),
            quoted(self.user_agent),
            bare(self.version_id),
            bare(Some(self.request_id)),
            bare(self.signature_version),
            "-".to_string(),
            bare(self.auth_type),
            bare(self.host),
            "-".to_string(),
            "-".to_string(),
            "-".to_string(),
        ];
        let mut line = fields.join(" ");
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        let on = b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>logs</TargetBucket><TargetPrefix>a/</TargetPrefix></LoggingEnabled></BucketLoggingStatus>";
        let cfg = parse_status(on).unwrap().unwrap();
        assert_eq!((cfg.target_bucket.as_str(), cfg.target_prefix.as_str(), cfg.key_format), ("logs", "a/", KeyFormat::Simple));
        assert_eq!(parse_status(render_status(Some(&cfg)).as_bytes()).unwrap(), Some(cfg.clone()));
        let part = b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>logs</TargetBucket><TargetPrefix></TargetPrefix><TargetObjectKeyFormat><PartitionedPrefix><PartitionDateSource>DeliveryTime</PartitionDateSource></PartitionedPrefix></TargetObjectKeyFormat></LoggingEnabled></BucketLoggingStatus>";
        let p = parse_status(part).unwrap().unwrap();
        assert_eq!(p.key_format, KeyFormat::Partitioned { event_time: false });
        assert_eq!(parse_status(render_status(Some(&p)).as_bytes()).unwrap(), Some(p));
        assert_eq!(parse_status(b"<BucketLoggingStatus/>").unwrap(), None);
        let bad_source = b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>l</TargetBucket><TargetObjectKeyFormat><PartitionedPrefix><PartitionDateSource>x</PartitionDateSource></PartitionedPrefix></TargetObjectKeyFormat></LoggingEnabled></BucketLoggingStatus>";
        assert_eq!(parse_status(bad_source).unwrap_err().code, S3ErrorCode::InvalidArgument);
        let no_target = b"<BucketLoggingStatus><LoggingEnabled><TargetPrefix>x</TargetPrefix></LoggingEnabled></BucketLoggingStatus>";
        assert_eq!(parse_status(no_target).unwrap_err().code, S3ErrorCode::MalformedXML);
    }

    #[test]
    fn record_has_26_fields() {
        let r = LogRecord {
            bucket_owner: "owner",
            bucket: "b",
            time_unix_secs: 1_549_411_238,
            remote_ip: "127.0.0.1",
            requester: Some("user"),
            request_id: "ID1",
            operation: "REST.PUT.OBJECT",
            key: Some("a b/\"c\""),
            request_uri: "PUT /b/a%20b HTTP/1.1",
            status: 200,
            user_agent: Some("agent \"x\" 1.0"),
            ..Default::default()
        };
        let line = r.line();
        assert!(line.contains("[06/Feb/2019:00:00:38 +0000]"), "{line}");
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        // Split as s3-tests does: brackets to quotes, then shell-like words.
        let mut words = 0;
        let mut in_quote = false;
        let mut cur = false;
        let mut chars = line.trim_end().replace(['[', ']'], "\"").chars().collect::<Vec<_>>().into_iter();
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_quote => {
                    chars.next();
                }
                '"' => {
                    in_quote = !in_quote;
                    cur = true;
                }
                ' ' if !in_quote => {
                    if cur {
                        words += 1;
                    }
                    cur = false;
                }
                _ => cur = true,
            }
        }
        if cur {
            words += 1;
        }
        assert_eq!(words, 26, "{line}");
    }
}
