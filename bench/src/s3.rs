//! S3 requests as bytes: the endpoint, signed request heads (SigV4 through
//! `tessera_proto::sigv4`, the project's one signer), object paths and keys, and
//! the ListObjectsV2 answer.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tessera_proto::sigv4::{
    canonical_query, canonical_request, canonical_uri, credential_scope, presign_query, signature_hex, signing_key,
    string_to_sign, UNSIGNED_PAYLOAD,
};
use tessera_proto::time::format_amz_date;
use tessera_proto::Headers;

/// RFC 3986 unreserved bytes stay, everything else is `%XX` (what S3 expects in a query).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// As `QUERY_VALUE`, keeping the `/` of key paths.
const KEY_PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// Where to send requests: `http(s)://host[:port]`, path-style addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://`: requests go over TLS.
    pub tls: bool,
    /// `host[:port]` exactly as given: the `Host` header, and what is signed.
    pub authority: String,
    /// `host:port` for name resolution.
    pub connect_to: String,
}

impl Endpoint {
    /// The host without the port (`[v6]` keeps its brackets).
    pub fn host(&self) -> &str {
        let a = self.authority.as_str();
        match a.find(']') {
            Some(close) if a.starts_with('[') => &a[..=close],
            _ => a.split(':').next().unwrap_or(a),
        }
    }
}

/// Parses an endpoint URL: `http://` or `https://`, no base path.
pub fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if url.contains("://") {
        return Err(format!("endpoint {url:?}: only http:// and https:// are supported"));
    } else {
        (false, url)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("endpoint {url:?}: expected http://host[:port] (path-style, no base path)"));
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => match v6.find(']') {
            Some(close) => v6[close + 1..].starts_with(':'),
            None => return Err(format!("endpoint {url:?}: unclosed '['")),
        },
        None if authority.matches(':').count() > 1 => {
            return Err(format!("endpoint {url:?}: write IPv6 addresses in brackets, e.g. http://[::1]:9000"))
        }
        None => authority.contains(':'),
    };
    let default_port = if tls { 443 } else { 80 };
    let connect_to = if has_port { authority.to_string() } else { format!("{authority}:{default_port}") };
    let port_ok = connect_to.rsplit(':').next().is_some_and(|p| p.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("endpoint {url:?}: bad port"));
    }
    Ok(Endpoint { tls, authority: authority.to_string(), connect_to })
}

/// The headers every request signs, sorted as SigV4 wants them.
const SIGNED_HEADERS: [&str; 3] = ["host", "x-amz-content-sha256", "x-amz-date"];

/// The day's signing key: deriving it takes four HMACs, so a worker derives it
/// once a day instead of once a request (what SDKs do too).
#[derive(Default)]
pub struct KeyCache {
    date: String,
    key: [u8; 32],
}

impl KeyCache {
    fn get(&mut self, signer: &Signer, date: &str) -> [u8; 32] {
        if self.date != date {
            self.key = signing_key(&signer.secret_key, date, &signer.region, "s3");
            self.date = date.to_string();
        }
        self.key
    }
}

/// Credentials and scope for signing.
#[derive(Clone)]
pub struct Signer {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub host: String,
}

impl Signer {
    /// Appends a whole signed request head (through the blank line) to `out`.
    /// `path` and `query` are raw, as sent; the payload is `UNSIGNED-PAYLOAD`.
    #[allow(clippy::too_many_arguments)]
    pub fn write_head(
        &self,
        keys: &mut KeyCache,
        out: &mut Vec<u8>,
        method: &str,
        path: &str,
        query: &str,
        content_length: Option<u64>,
        unix_secs: i64,
    ) {
        let amz_date = format_amz_date(unix_secs);
        let mut headers = Headers::new();
        headers.push("host", &self.host);
        headers.push("x-amz-content-sha256", UNSIGNED_PAYLOAD);
        headers.push("x-amz-date", &amz_date);
        // proto's sign_request, with the day's key from the cache.
        let date = &amz_date[..8];
        let scope = credential_scope(date, &self.region, "s3");
        let creq = canonical_request(
            method,
            &canonical_uri(path),
            &canonical_query(query, false),
            &headers,
            &SIGNED_HEADERS,
            UNSIGNED_PAYLOAD,
        );
        let signature = signature_hex(&keys.get(self, date), &string_to_sign(&amz_date, &scope, &creq));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            self.access_key,
            SIGNED_HEADERS.join(";")
        );
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        if !query.is_empty() {
            out.push(b'?');
            out.extend_from_slice(query.as_bytes());
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers.iter() {
            push_header(out, name, value);
        }
        push_header(out, "authorization", &authorization);
        if let Some(n) = content_length {
            push_header(out, "content-length", &n.to_string());
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl Signer {
    /// The query of a presigned URL for `method path` (only `host` signed).
    pub fn presign(&self, method: &str, path: &str, unix_secs: i64, expires_secs: i64) -> String {
        let mut headers = Headers::new();
        headers.push("host", &self.host);
        presign_query(method, path, "", &headers, &self.access_key, &self.secret_key, &self.region, unix_secs, expires_secs)
    }

    /// A whole request head for a presigned URL, as a browser or `wrk` sends it.
    pub fn write_presigned_head(&self, out: &mut Vec<u8>, method: &str, path: &str, unix_secs: i64, expires_secs: i64) {
        let query = self.presign(method, path, unix_secs, expires_secs);
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(out, "host", &self.host);
        out.extend_from_slice(b"\r\n");
    }
}

/// A query parameter value, percent-encoded as S3 expects.
pub fn query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// The UploadId of a CreateMultipartUpload answer.
pub fn parse_upload_id(body: &[u8]) -> Result<String, String> {
    let root = tessera_proto::xml::parse(body).map_err(|_| "CreateMultipartUpload: malformed XML".to_string())?;
    root.child_text("UploadId")
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "CreateMultipartUpload: no UploadId".to_string())
}

/// CompleteMultipartUpload's body for parts 1..=n with these ETags.
pub fn complete_multipart_body(etags: &[String]) -> String {
    let mut x = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        let etag = etag.replace('&', "&amp;").replace('<', "&lt;");
        x.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>", i + 1));
    }
    x.push_str("</CompleteMultipartUpload>");
    x
}

/// The `Code` of an S3 XML error body.
pub fn error_code(body: &[u8]) -> Option<String> {
    let root = tessera_proto::xml::parse(body).ok()?;
    (root.name == "Error").then(|| root.child_text("Code").map(str::to_string)).flatten()
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The key of object number `index`: zero-padded so keys list in index order.
pub fn object_key(prefix: &str, index: u64) -> String {
    let mut key = String::new();
    set_object_key(&mut key, prefix, index);
    key
}

/// Makes `key` `<prefix><index, zero-padded to 10 digits>` (as
/// [`object_key`]) without formatting machinery or a new allocation: a
/// worker reuses one buffer for every request's key.
pub fn set_object_key(key: &mut String, prefix: &str, index: u64) {
    let mut digits = [b'0'; 20];
    let mut n = index;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    key.clear();
    key.push_str(prefix);
    for &d in &digits[i.min(digits.len() - 10)..] {
        key.push(d as char);
    }
}

/// `/bucket/key`, the key percent-encoded (slashes kept).
pub fn object_path(bucket: &str, key: &str) -> String {
    let mut path = String::new();
    set_object_path(&mut path, bucket, key);
    path
}

/// Makes `path` [`object_path`]`(bucket, key)`, reusing its allocation.
pub fn set_object_path(path: &mut String, bucket: &str, key: &str) {
    path.clear();
    path.push('/');
    path.push_str(bucket);
    path.push('/');
    path.extend(utf8_percent_encode(key, KEY_PATH));
}

pub fn bucket_path(bucket: &str) -> String {
    format!("/{bucket}")
}

/// A bucket name S3 would accept (3-63 of `a-z0-9.-`), so it can go in a path raw.
pub fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let ok_chars = bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if (3..=63).contains(&bucket.len()) && ok_chars {
        Ok(())
    } else {
        Err(format!("bucket {bucket:?}: names are 3-63 characters of a-z, 0-9, '.', '-'"))
    }
}

/// CreateBucket's body: empty in us-east-1, a LocationConstraint elsewhere (AWS insists).
pub fn create_bucket_body(region: &str) -> String {
    if region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
    }
}

/// The query of a ListObjectsV2 page.
pub fn list_query(max_keys: u32, prefix: &str, continuation_token: Option<&str>) -> String {
    let mut q = String::new();
    if let Some(token) = continuation_token {
        q.push_str("continuation-token=");
        q.extend(utf8_percent_encode(token, QUERY_VALUE));
        q.push('&');
    }
    q.push_str(&format!("list-type=2&max-keys={max_keys}"));
    if !prefix.is_empty() {
        q.push_str("&prefix=");
        q.extend(utf8_percent_encode(prefix, QUERY_VALUE));
    }
    q
}

/// What a ListObjectsV2 page says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub keys: u64,
    pub common_prefixes: u64,
    pub next_token: Option<String>,
}

/// Parses a ListObjectsV2 answer; a truncated page without a token is an error
/// (the listing could never finish).
pub fn parse_list_page(body: &[u8]) -> Result<ListPage, String> {
    let root = tessera_proto::xml::parse(body).map_err(|_| "ListObjectsV2: malformed XML".to_string())?;
    if root.name != "ListBucketResult" {
        return Err(format!("ListObjectsV2: root element is {:?}, not ListBucketResult", root.name));
    }
    let keys = root.children_named("Contents").count() as u64;
    let common_prefixes = root.children_named("CommonPrefixes").count() as u64;
    let truncated = root.child_text("IsTruncated").is_some_and(|t| t.trim() == "true");
    let next_token = root.child_text("NextContinuationToken").map(str::to_string).filter(|t| !t.is_empty());
    match (truncated, next_token) {
        (true, None) => Err("ListObjectsV2: IsTruncated without NextContinuationToken".to_string()),
        (true, token) => Ok(ListPage { keys, common_prefixes, next_token: token }),
        (false, _) => Ok(ListPage { keys, common_prefixes, next_token: None }),
    }
}

/// One line about an error response body: `Code: Message (request id ...)` for an
/// S3 XML error, else the body's text on one line.
pub fn describe_error_body(body: &[u8]) -> String {
    if let Ok(root) = tessera_proto::xml::parse(body) {
        if root.name == "Error" {
            let code = root.child_text("Code").unwrap_or("(no Code)");
            let mut line = format!("{code}: {}", root.child_text("Message").unwrap_or(""));
            if let Some(id) = root.child_text("RequestId") {
                line.push_str(&format!(" (request id {id})"));
            }
            return line;
        }
    }
    let text = String::from_utf8_lossy(body);
    let one_line: Vec<&str> = text.split_whitespace().collect();
    if one_line.is_empty() {
        "(empty body)".to_string()
    } else {
        one_line.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for (url, authority, connect_to) in [
            ("http://127.0.0.1:9000", "127.0.0.1:9000", "127.0.0.1:9000"),
            ("http://127.0.0.1:9000/", "127.0.0.1:9000", "127.0.0.1:9000"),
            ("localhost:9300", "localhost:9300", "localhost:9300"),
            ("http://s3.local", "s3.local", "s3.local:80"),
            ("http://[::1]:9000", "[::1]:9000", "[::1]:9000"),
            ("http://[::1]", "[::1]", "[::1]:80"),
        ] {
            let e = parse_endpoint(url).unwrap();
            assert_eq!((e.authority.as_str(), e.connect_to.as_str()), (authority, connect_to), "{url}");
        }
        let e = parse_endpoint("https://localhost:9443").unwrap();
        assert!(e.tls && e.connect_to == "localhost:9443" && e.host() == "localhost");
        assert_eq!(parse_endpoint("http://[::1]:9000").unwrap().host(), "[::1]");
        assert_eq!(parse_endpoint("https://s3.example.com").unwrap().connect_to, "s3.example.com:443");
        for bad in ["ftp://x", "http://", "http://h:9000/base", "http://h:99999", "http://h:x"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_and_queries() {
        assert_eq!(object_key("p/", 42), "p/0000000042");
        for i in [0, 1, 9, 10, 999_999_999, 9_999_999_999, 10_000_000_000, 123_456_789_012, u64::MAX] {
            assert_eq!(object_key("k/", i), format!("k/{i:010}"));
        }
        for key in ["dir/a b+c", "plain", "", "é/ü?x=y&z#", "~-_.!*'()"] {
            let want = format!("/b/{}", utf8_percent_encode(key, KEY_PATH));
            assert_eq!(object_path("b", key), want);
        }
        assert_eq!(object_path("b", "dir/a b+c"), "/b/dir/a%20b%2Bc");
        assert_eq!(list_query(1000, "", None), "list-type=2&max-keys=1000");
        assert_eq!(
            list_query(10, "a/b c", Some("tok+/=")),
            "continuation-token=tok%2B%2F%3D&list-type=2&max-keys=10&prefix=a%2Fb%20c"
        );
        assert!(check_bucket_name("bench-1.x").is_ok());
        for bad in ["ab", "Bench", "a_b", "a/b", &"a".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
        assert_eq!(create_bucket_body("us-east-1"), "");
        assert!(create_bucket_body("eu-west-1").contains("<LocationConstraint>eu-west-1<"));
    }

    #[test]
    fn list_pages() {
        let page = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a</Key><Size>1</Size></Contents><Contents><Key>b</Key><Size>1</Size></Contents>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"#;
        assert_eq!(
            parse_list_page(page),
            Ok(ListPage {
                keys: 2,
                common_prefixes: 0,
                next_token: Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into())
            })
        );
        let last = b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>c</Key></Contents>\
            <CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes></ListBucketResult>";
        assert_eq!(parse_list_page(last), Ok(ListPage { keys: 1, common_prefixes: 1, next_token: None }));
        let empty = b"<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(parse_list_page(empty), Ok(ListPage { keys: 0, common_prefixes: 0, next_token: None }));
        for bad in [
            &b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"[..],
            b"<Error><Code>NoSuchBucket</Code></Error>",
            b"<ListBucketResult>",
            b"not xml",
        ] {
            assert!(parse_list_page(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn multipart_bodies() {
        let init = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u+1/2</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(parse_upload_id(init), Ok("u+1/2".to_string()));
        assert_eq!(query_value("u+1/2"), "u%2B1%2F2");
        assert!(parse_upload_id(b"<InitiateMultipartUploadResult/>").is_err());
        assert!(parse_upload_id(b"<Error><Code>NoSuchBucket</Code></Error>").is_err());
        assert_eq!(
            complete_multipart_body(&["\"a\"".into(), "\"b\"".into()]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>\"b\"</ETag></Part></CompleteMultipartUpload>"
        );
        assert_eq!(error_code(b"<Error><Code>SlowDown</Code></Error>"), Some("SlowDown".into()));
        assert_eq!(error_code(b"<CompleteMultipartUploadResult/>"), None);
        assert_eq!(error_code(b""), None);
    }

    #[test]
    fn presigned_heads() {
        let s = Signer { access_key: "AK".into(), secret_key: "sk".into(), region: "us-east-1".into(), host: "h:1".into() };
        let mut out = Vec::new();
        s.write_presigned_head(&mut out, "GET", "/b/k", 1_369_353_600, 3600);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature="), "{text}");
        assert!(text.ends_with(" HTTP/1.1\r\nhost: h:1\r\n\r\n"), "{text}");
    }

    #[test]
    fn error_bodies() {
        let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
            <Message>The specified key does not exist.</Message><RequestId>R1</RequestId></Error>";
        assert_eq!(describe_error_body(xml), "NoSuchKey: The specified key does not exist. (request id R1)");
        assert_eq!(describe_error_body(b"<Error><Code>SlowDown</Code></Error>"), "SlowDown: ");
        assert_eq!(describe_error_body(b"upstream\n  timed out"), "upstream timed out");
        assert_eq!(describe_error_body(b""), "(empty body)");
    }

    #[test]
    fn signed_heads_carry_the_signature() {
        let s = Signer {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "secret".into(),
            region: "us-east-1".into(),
            host: "127.0.0.1:9000".into(),
        };
        let mut out = Vec::new();
        let mut keys = KeyCache::default();
        s.write_head(&mut keys, &mut out, "PUT", "/b/k", "", Some(5), 1_369_353_600);
        let text = String::from_utf8(out).unwrap();
        // The cached key signs exactly as proto's sign_request, the next day too.
        for (unix_secs, query) in [(1_369_353_600, ""), (1_369_353_600 + 86_400, "uploads="), (1_369_353_601, "a=b&c")] {
            let mut headers = Headers::new();
            headers.push("host", &s.host);
            headers.push("x-amz-content-sha256", UNSIGNED_PAYLOAD);
            headers.push("x-amz-date", &format_amz_date(unix_secs));
            let want = tessera_proto::sigv4::sign_request(
                "PUT", "/b/k", query, &headers, UNSIGNED_PAYLOAD, &s.access_key, &s.secret_key, &s.region, unix_secs,
            );
            let mut out = Vec::new();
            s.write_head(&mut keys, &mut out, "PUT", "/b/k", query, Some(5), unix_secs);
            let got = String::from_utf8(out).unwrap();
            assert!(got.contains(&format!("authorization: {want}\r\n")), "{got}\n{want}");
        }
        assert!(text.starts_with("PUT /b/k HTTP/1.1\r\nhost: 127.0.0.1:9000\r\n"), "{text}");
        assert!(text.contains("x-amz-date: 20130524T000000Z\r\n"), "{text}");
        assert!(text.contains("authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="), "{text}");
        assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
    }
}
