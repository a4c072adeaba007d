//! XML bodies: a small escaping writer for responses and a bounded mini-DOM
//! for the request bodies S3 takes (Delete, CompleteMultipartUpload,
//! CreateBucketConfiguration).

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::checksum::ChecksumAlgo;
use crate::{S3Error, S3ErrorCode, S3Result};

/// Largest XML request body accepted (CompleteMultipartUpload with 10,000
/// parts is about 1 MiB).
pub const MAX_XML_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_XML_DEPTH: usize = 16;
/// Most elements in one document.
pub const MAX_XML_ELEMENTS: usize = 100_000;

pub const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Appends `s` to `out` with XML special characters escaped. Control
/// characters that XML 1.0 cannot carry are written as character references
/// (the way S3 does for keys that contain them).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => {
                out.push_str(&format!("&#x{:X};", c as u32));
            }
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// A tiny streaming XML writer; callers nest `open`/`close` correctly.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        let mut out = String::with_capacity(512);
        out.push_str(XML_DECL);
        XmlWriter { out }
    }

    /// Opens the root element with the S3 namespace.
    pub fn root(mut self, name: &str) -> Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xmlns=\"");
        self.out.push_str(S3_NS);
        self.out.push_str("\">");
        self
    }

    /// Opens a root element without a namespace, for the documents S3
    /// itself sends bare (POST Object's `PostResponse`).
    pub fn root_bare(mut self, name: &str) -> Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name>escaped text</name>`
    pub fn elem(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name);
        escape_into(&mut self.out, text);
        self.close(name)
    }

    pub fn elem_opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.elem(name, t);
        }
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Error body as S3 sends it.
pub fn error_body(code: &str, message: &str, resource: &str, request_id: &str, extra: &[(&str, &str)]) -> String {
    let mut w = XmlWriter::new();
    w.open("Error").elem("Code", code).elem("Message", message);
    for (n, v) in extra {
        w.elem(n, v);
    }
    w.elem("Resource", resource).elem("RequestId", request_id).elem("HostId", request_id);
    w.close("Error");
    w.finish()
}

/// An element of a parsed request document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

fn malformed() -> S3Error {
    S3Error::new(S3ErrorCode::MalformedXML)
}

/// Parses a whole document into its root element, namespaces stripped from
/// names. Bounded in size, depth and element count.
pub fn parse(body: &[u8]) -> S3Result<Element> {
    if body.len() > MAX_XML_BODY_BYTES {
        return Err(malformed());
    }
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut elements = 0usize;
    let mut root: Option<Element> = None;
    let mut buf = Vec::new();
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|_| malformed())?;
        match ev {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return Err(malformed());
            }
            Event::Start(s) => {
                elements += 1;
                if stack.len() >= MAX_XML_DEPTH || elements > MAX_XML_ELEMENTS {
                    return Err(malformed());
                }
                let name = local_name(s.name().as_ref())?;
                stack.push(Element { name, ..Default::default() });
            }
            Event::Empty(s) => {
                elements += 1;
                if elements > MAX_XML_ELEMENTS {
                    return Err(malformed());
                }
                let el = Element { name: local_name(s.name().as_ref())?, ..Default::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(malformed)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    let txt = t.unescape().map_err(|_| malformed())?;
                    cur.text.push_str(&txt);
                } else if !t.iter().all(|b| b.is_ascii_whitespace()) {
                    return Err(malformed());
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(std::str::from_utf8(&t).map_err(|_| malformed())?);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(malformed());
    }
    root.ok_or_else(malformed)
}

fn local_name(raw: &[u8]) -> S3Result<String> {
    let s = std::str::from_utf8(raw).map_err(|_| malformed())?;
    Ok(s.rsplit(':').next().unwrap_or(s).to_string())
}

/// `<Delete>` body of DeleteObjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<(String, Option<String>)>,
}

/// Most keys in one DeleteObjects request.
pub const MAX_DELETE_KEYS: usize = 1000;

pub fn parse_delete(body: &[u8]) -> S3Result<DeleteRequest> {
    let root = parse(body)?;
    if root.name != "Delete" {
        return Err(malformed());
    }
    let quiet = root.child_text("Quiet").is_some_and(|q| q.trim().eq_ignore_ascii_case("true"));
    let mut objects = Vec::new();
    for o in root.children_named("Object") {
        let key = o.child_text("Key").ok_or_else(malformed)?.to_string();
        let vid = o.child_text("VersionId").map(str::to_string);
        objects.push((key, vid));
    }
    if objects.is_empty() || objects.len() > MAX_DELETE_KEYS {
        return Err(malformed());
    }
    Ok(DeleteRequest { quiet, objects })
}

/// One `<Part>` of CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletePart {
    pub part_number: u32,
    pub etag: String,
    /// `<ChecksumCRC32>` and friends: the part's checksum as the client saw it.
    pub checksum: Option<(ChecksumAlgo, String)>,
}

/// The element naming `algo`'s checksum in S3 documents (`ChecksumCRC32`, ...).
pub fn checksum_element(algo: ChecksumAlgo) -> &'static str {
    match algo {
        ChecksumAlgo::Crc32 => "ChecksumCRC32",
        ChecksumAlgo::Crc32c => "ChecksumCRC32C",
        ChecksumAlgo::Crc64Nvme => "ChecksumCRC64NVME",
        ChecksumAlgo::Sha1 => "ChecksumSHA1",
        ChecksumAlgo::Sha256 => "ChecksumSHA256",
    }
}

pub fn parse_complete_multipart(body: &[u8]) -> S3Result<Vec<CompletePart>> {
    let root = parse(body)?;
    if root.name != "CompleteMultipartUpload" {
        return Err(malformed());
    }
    let mut parts = Vec::new();
    for p in root.children_named("Part") {
        let part_number = p
            .child_text("PartNumber")
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or_else(malformed)?;
        let etag = p.child_text("ETag").ok_or_else(malformed)?.trim().to_string();
        let mut checksum = None;
        for algo in ChecksumAlgo::ALL {
            if let Some(v) = p.child_text(checksum_element(algo)) {
                if checksum.is_some() {
                    return Err(malformed());
                }
                checksum = Some((algo, v.trim().to_string()));
            }
        }
        parts.push(CompletePart { part_number, etag, checksum });
    }
    if parts.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "You must specify at least one part",
        ));
    }
    Ok(parts)
}

/// LocationConstraint of a CreateBucket body; an empty body means none.
pub fn parse_create_bucket(body: &[u8]) -> S3Result<Option<String>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let root = parse(body)?;
    if root.name != "CreateBucketConfiguration" {
        return Err(malformed());
    }
    Ok(root.child_text("LocationConstraint").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

fn root_named(body: &[u8], name: &str) -> S3Result<Element> {
    let root = parse(body)?;
    if root.name != name {
        return Err(malformed());
    }
    Ok(root)
}

fn trimmed(e: &Element, name: &str) -> Option<String> {
    e.child_text(name).map(|t| t.trim().to_string())
}

/// `<VersioningConfiguration>` of PutBucketVersioning: `Status` and
/// `MfaDelete` as given (the caller checks their values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersioningRequest {
    pub status: Option<String>,
    pub mfa_delete: Option<String>,
}

pub fn parse_versioning(body: &[u8]) -> S3Result<VersioningRequest> {
    let root = root_named(body, "VersioningConfiguration")?;
    Ok(VersioningRequest { status: trimmed(&root, "Status"), mfa_delete: trimmed(&root, "MfaDelete") })
}

/// Most `<Tag>` elements read from a tagging document (S3 allows 50 on a
/// bucket; more is refused by the caller, this only bounds the work).
pub const MAX_TAGGING_TAGS: usize = 1000;

/// `<Tagging><TagSet><Tag><Key/><Value/></Tag>...` in document order. A tag
/// without a Key is malformed; a missing Value is empty.
pub fn parse_tagging(body: &[u8]) -> S3Result<Vec<(String, String)>> {
    let root = root_named(body, "Tagging")?;
    let set = root.child("TagSet").ok_or_else(malformed)?;
    let mut tags = Vec::new();
    for t in set.children_named("Tag") {
        if tags.len() >= MAX_TAGGING_TAGS {
            return Err(malformed());
        }
        let key = t.child_text("Key").ok_or_else(malformed)?.to_string();
        let value = t.child_text("Value").unwrap_or("").to_string();
        tags.push((key, value));
    }
    Ok(tags)
}

/// `<ObjectLockConfiguration>` of PutObjectLockConfiguration, as given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectLockRequest {
    pub enabled: Option<String>,
    /// `Rule/DefaultRetention`: (Mode, Days, Years), when a Rule is given.
    pub rule: Option<(Option<String>, Option<String>, Option<String>)>,
}

pub fn parse_object_lock(body: &[u8]) -> S3Result<ObjectLockRequest> {
    let root = root_named(body, "ObjectLockConfiguration")?;
    let rule = match root.child("Rule") {
        None => None,
        Some(r) => {
            let d = r.child("DefaultRetention").ok_or_else(malformed)?;
            Some((trimmed(d, "Mode"), trimmed(d, "Days"), trimmed(d, "Years")))
        }
    };
    Ok(ObjectLockRequest { enabled: trimmed(&root, "ObjectLockEnabled"), rule })
}

/// `<Retention><Mode/><RetainUntilDate/></Retention>`, as given.
pub fn parse_retention(body: &[u8]) -> S3Result<(Option<String>, Option<String>)> {
    let root = root_named(body, "Retention")?;
    Ok((trimmed(&root, "Mode"), trimmed(&root, "RetainUntilDate")))
}

/// `<LegalHold><Status/></LegalHold>`, as given.
pub fn parse_legal_hold(body: &[u8]) -> S3Result<Option<String>> {
    let root = root_named(body, "LegalHold")?;
    Ok(trimmed(&root, "Status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"'\u{1}\r");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;&apos;&#x1;&#xD;");
    }

    #[test]
    fn delete_body() {
        let body = br#"<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object><Object><Key>c</Key><VersionId>v</VersionId></Object></Delete>"#;
        let d = parse_delete(body).unwrap();
        assert!(d.quiet);
        assert_eq!(d.objects, vec![("a&b".into(), None), ("c".into(), Some("v".into()))]);
    }

    #[test]
    fn complete_body() {
        let body = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag></Part><Part><ETag>y</ETag><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>";
        let p = parse_complete_multipart(body).unwrap();
        assert_eq!(p, vec![
            CompletePart { part_number: 1, etag: "\"x\"".into(), checksum: None },
            CompletePart { part_number: 2, etag: "y".into(), checksum: None },
        ]);
        let body = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag><ChecksumCRC32C>AAAAAA==</ChecksumCRC32C></Part></CompleteMultipartUpload>";
        let p = parse_complete_multipart(body).unwrap();
        assert_eq!(p[0].checksum, Some((ChecksumAlgo::Crc32c, "AAAAAA==".into())));
        let two = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag><ChecksumCRC32>A</ChecksumCRC32><ChecksumSHA1>B</ChecksumSHA1></Part></CompleteMultipartUpload>";
        assert!(parse_complete_multipart(two).is_err());
    }

    #[test]
    fn rejects_bad_documents() {
        let bad: &[&[u8]] = &[
            b"",
            b"<Delete>",
            b"<Delete></Wrong>",
            b"<Delete><Object><Key>a</Key></Object></Delete><Extra/>",
            b"<Delete></Delete>",
            b"not xml",
        ];
        for b in bad {
            assert!(parse_delete(b).is_err(), "{}", String::from_utf8_lossy(b));
        }
        let deep = format!("{}{}", "<a>".repeat(MAX_XML_DEPTH + 1), "</a>".repeat(MAX_XML_DEPTH + 1));
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn configuration_bodies() {
        let v = parse_versioning(b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>").unwrap();
        assert_eq!((v.status.as_deref(), v.mfa_delete.as_deref()), (Some("Enabled"), Some("Disabled")));
        assert!(parse_versioning(b"<Versioning/>").is_err());
        let t = parse_tagging(b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key></Tag></TagSet></Tagging>").unwrap();
        assert_eq!(t, vec![("a".into(), "1".into()), ("b".into(), String::new())]);
        assert!(parse_tagging(b"<Tagging><TagSet><Tag><Value>1</Value></Tag></TagSet></Tagging>").is_err());
        assert!(parse_tagging(b"<Tagging></Tagging>").is_err());
        let many = format!("<Tagging><TagSet>{}</TagSet></Tagging>", "<Tag><Key>k</Key></Tag>".repeat(MAX_TAGGING_TAGS + 1));
        assert!(parse_tagging(many.as_bytes()).is_err());
        let l = parse_object_lock(b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>").unwrap();
        assert_eq!(l.enabled.as_deref(), Some("Enabled"));
        assert_eq!(l.rule, Some((Some("GOVERNANCE".into()), Some("1".into()), None)));
        assert!(parse_object_lock(b"<ObjectLockConfiguration><Rule/></ObjectLockConfiguration>").is_err());
        let r = parse_retention(b"<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate></Retention>").unwrap();
        assert_eq!(r, (Some("COMPLIANCE".into()), Some("2030-01-01T00:00:00Z".into())));
        assert_eq!(parse_legal_hold(b"<LegalHold><Status>ON</Status></LegalHold>").unwrap().as_deref(), Some("ON"));
        assert!(parse_legal_hold(b"<Retention/>").is_err());
    }

    #[test]
    fn create_bucket_body() {
        assert_eq!(parse_create_bucket(b"").unwrap(), None);
        let b = b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
        assert_eq!(parse_create_bucket(b).unwrap().as_deref(), Some("eu-west-1"));
    }
}
