//! Bucket CORS: the `CORSConfiguration` document (parse, validate, render)
//! and the matching of preflight and actual requests against its rules.
//!
//! Response headers never reflect an origin with credentials allowed unless
//! a rule names that exact origin: a rule `*` answers
//! `Access-Control-Allow-Origin: *` (no credentials), a wildcard pattern
//! (`https://*.example.com`) reflects the origin it matched without
//! `Access-Control-Allow-Credentials`.

use crate::error::{S3Error, S3ErrorCode};
use crate::xml::{self, XmlWriter};

/// Most rules in one configuration (S3's limit).
pub const MAX_CORS_RULES: usize = 100;
/// Largest CORS document accepted (S3's limit).
pub const MAX_CORS_BODY_BYTES: usize = 64 * 1024;
/// Longest rule ID.
pub const MAX_RULE_ID_BYTES: usize = 255;
/// Methods a rule may allow.
pub const CORS_METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "DELETE"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsRule {
    pub id: Option<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: Option<u32>,
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, msg)
}

/// Parses and validates a `CORSConfiguration` body.
pub fn parse_config(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    if body.len() > MAX_CORS_BODY_BYTES {
        return Err(S3Error::with_message(S3ErrorCode::MalformedXML, "The CORS configuration is too large"));
    }
    let root = xml::parse(body)?;
    if root.name != "CORSConfiguration" {
        return Err(S3Error::new(S3ErrorCode::MalformedXML));
    }
    let mut rules = Vec::new();
    for r in root.children_named("CORSRule") {
        let texts = |name: &str| r.children_named(name).map(|c| c.text.trim().to_string()).collect::<Vec<_>>();
        let rule = CorsRule {
            id: r.child_text("ID").map(str::to_string),
            allowed_methods: texts("AllowedMethod"),
            allowed_origins: texts("AllowedOrigin"),
            allowed_headers: texts("AllowedHeader"),
            expose_headers: texts("ExposeHeader"),
            max_age_secs: match r.child_text("MaxAgeSeconds") {
                None => None,
                Some(v) => Some(v.trim().parse::<u32>().map_err(|_| S3Error::new(S3ErrorCode::MalformedXML))?),
            },
        };
        validate_rule(&rule)?;
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(S3Error::new(S3ErrorCode::MalformedXML));
    }
    if rules.len() > MAX_CORS_RULES {
        return Err(invalid(format!("A CORS configuration may hold at most {MAX_CORS_RULES} rules")));
    }
    Ok(rules)
}

fn validate_rule(r: &CorsRule) -> Result<(), S3Error> {
    if r.allowed_methods.is_empty() || r.allowed_origins.is_empty() {
        return Err(S3Error::new(S3ErrorCode::MalformedXML));
    }
    for m in &r.allowed_methods {
        if !CORS_METHODS.contains(&m.as_str()) {
            return Err(invalid(format!("Found unsupported HTTP method in CORS config. Unsupported method is {m}")));
        }
    }
    for o in &r.allowed_origins {
        if o.matches('*').count() > 1 {
            return Err(invalid(format!("AllowedOrigin \"{o}\" can not have more than one wildcard.")));
        }
    }
    for h in &r.allowed_headers {
        if h.matches('*').count() > 1 {
            return Err(invalid(format!("AllowedHeader \"{h}\" can not have more than one wildcard.")));
        }
    }
    if r.id.as_ref().is_some_and(|id| id.len() > MAX_RULE_ID_BYTES) {
        return Err(invalid("The ID of a CORS rule is too long"));
    }
    Ok(())
}

/// The configuration as GetBucketCors returns it.
pub fn render_config(rules: &[CorsRule]) -> String {
    let mut w = XmlWriter::new().root("CORSConfiguration");
    for r in rules {
        w.open("CORSRule");
        w.elem_opt("ID", r.id.as_deref());
        for (name, list) in [
            ("AllowedHeader", &r.allowed_headers),
            ("AllowedMethod", &r.allowed_methods),
            ("AllowedOrigin", &r.allowed_origins),
            ("ExposeHeader", &r.expose_headers),
        ] {
            for v in list {
                w.elem(name, v);
            }
        }
        if let Some(age) = r.max_age_secs {
            w.elem("MaxAgeSeconds", &age.to_string());
        }
        w.close("CORSRule");
    }
    w.close("CORSConfiguration");
    w.finish()
}

/// `pattern` with at most one `*` matching any run of characters.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((pre, post)) => value.len() >= pre.len() + post.len() && value.starts_with(pre) && value.ends_with(post),
    }
}

/// The CORS headers of a matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsMatch {
    pub headers: Vec<(&'static str, String)>,
}

impl CorsRule {
    /// Which way this rule admits `origin`: `Some(true)` by an exact name.
    fn origin_match(&self, origin: &str) -> Option<bool> {
        if self.allowed_origins.iter().any(|o| o == origin) {
            return Some(true);
        }
        self.allowed_origins.iter().any(|o| wildcard_match(o, origin)).then_some(false)
    }

    fn header_allowed(&self, header: &str) -> bool {
        let h = header.to_ascii_lowercase();
        self.allowed_headers.iter().any(|p| wildcard_match(&p.to_ascii_lowercase(), &h))
    }

    fn response(&self, origin: &str, exact: bool, preflight_headers: Option<&[&str]>) -> CorsMatch {
        let mut headers = Vec::new();
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && !exact {
            headers.push(("Access-Control-Allow-Origin", "*".to_string()));
        } else {
            headers.push(("Access-Control-Allow-Origin", origin.to_string()));
            if exact {
                headers.push(("Access-Control-Allow-Credentials", "true".to_string()));
            }
        }
        headers.push(("Access-Control-Allow-Methods", self.allowed_methods.join(", ")));
        if let Some(requested) = preflight_headers.filter(|h| !h.is_empty()) {
            headers.push(("Access-Control-Allow-Headers", requested.join(", ")));
        }
        if !self.expose_headers.is_empty() {
            headers.push(("Access-Control-Expose-Headers", self.expose_headers.join(", ")));
        }
        if preflight_headers.is_some() {
            if let Some(age) = self.max_age_secs {
                headers.push(("Access-Control-Max-Age", age.to_string()));
            }
        }
        headers.push(("Vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".to_string()));
        CorsMatch { headers }
    }
}

/// The first rule admitting `origin` with `method`, for an actual request.
pub fn match_actual(rules: &[CorsRule], origin: &str, method: &str) -> Option<CorsMatch> {
    rules.iter().find_map(|r| {
        let exact = r.origin_match(origin)?;
        r.allowed_methods.iter().any(|m| m == method).then(|| r.response(origin, exact, None))
    })
}

/// Answers a preflight: the first rule admitting the origin, the requested
/// method and every requested header; `Err` is the error to answer.
pub fn preflight(
    rules: Option<&[CorsRule]>,
    origin: Option<&str>,
    method: Option<&str>,
    request_headers: Option<&str>,
) -> Result<CorsMatch, S3Error> {
    let bad = |m: &str| S3Error::with_message(S3ErrorCode::BadRequest, m.to_string());
    let origin = origin.filter(|o| !o.is_empty()).ok_or_else(|| bad("Insufficient information. Origin request header needed."))?;
    let method = method.ok_or_else(|| bad("Invalid Access-Control-Request-Method: null"))?;
    if !CORS_METHODS.contains(&method) {
        return Err(bad(&format!("Invalid Access-Control-Request-Method: {method}")));
    }
    let rules = rules.ok_or_else(|| S3Error::with_message(S3ErrorCode::CORSForbidden, "CORSResponse: CORS is not enabled for this bucket."))?;
    let requested: Vec<&str> =
        request_headers.unwrap_or("").split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
    rules
        .iter()
        .find_map(|r| {
            let exact = r.origin_match(origin)?;
            let ok = r.allowed_methods.iter().any(|m| m == method) && requested.iter().all(|h| r.header_allowed(h));
            ok.then(|| r.response(origin, exact, Some(&requested)))
        })
        .ok_or_else(|| S3Error::new(S3ErrorCode::CORSForbidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], origins: &[&str]) -> CorsRule {
        CorsRule {
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn header<'a>(m: &'a CorsMatch, name: &str) -> Option<&'a str> {
        m.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn round_trip_and_validation() {
        let doc = b"<CORSConfiguration><CORSRule><ID>a</ID><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>*.get</AllowedOrigin><AllowedHeader>x-amz-*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>30</MaxAgeSeconds></CORSRule></CORSConfiguration>";
        let rules = parse_config(doc).unwrap();
        assert_eq!(rules[0].allowed_methods, ["GET", "PUT"]);
        assert_eq!(parse_config(render_config(&rules).as_bytes()).unwrap(), rules);
        let bad: &[(&[u8], S3ErrorCode)] = &[
            (b"<CORSConfiguration></CORSConfiguration>", S3ErrorCode::MalformedXML),
            (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>", S3ErrorCode::MalformedXML),
            (b"<CORSConfiguration><CORSRule><AllowedMethod>PATCH</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>", S3ErrorCode::InvalidRequest),
            (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*.*</AllowedOrigin></CORSRule></CORSConfiguration>", S3ErrorCode::InvalidRequest),
            (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin><MaxAgeSeconds>x</MaxAgeSeconds></CORSRule></CORSConfiguration>", S3ErrorCode::MalformedXML),
            (b"<Other/>", S3ErrorCode::MalformedXML),
        ];
        for (doc, code) in bad {
            assert_eq!(parse_config(doc).unwrap_err().code, *code, "{}", String::from_utf8_lossy(doc));
        }
        let many = format!(
            "<CORSConfiguration>{}</CORSConfiguration>",
            "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule>".repeat(MAX_CORS_RULES + 1)
        );
        assert_eq!(parse_config(many.as_bytes()).unwrap_err().code, S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn origins_match_as_s3_matches_them() {
        let rules = [rule(&["GET"], &["*suffix"]), rule(&["GET"], &["start*end"]), rule(&["GET"], &["prefix*"]), rule(&["PUT"], &["*.put"])];
        for (origin, method, want) in [
            ("foo.suffix", "GET", true),
            ("foo.bar", "GET", false),
            ("foo.suffix.get", "GET", false),
            ("startend", "GET", true),
            ("start12end", "GET", true),
            ("0start12end", "GET", false),
            ("prefix.suffix", "GET", true),
            ("bla.prefix", "GET", false),
            ("foo.put", "PUT", true),
            ("foo.put", "GET", false),
        ] {
            assert_eq!(match_actual(&rules, origin, method).is_some(), want, "{origin} {method}");
        }
    }

    #[test]
    fn never_reflects_any_origin_with_credentials() {
        let star = [rule(&["GET"], &["*"])];
        let m = match_actual(&star, "https://evil.example", "GET").unwrap();
        assert_eq!(header(&m, "Access-Control-Allow-Origin"), Some("*"));
        assert_eq!(header(&m, "Access-Control-Allow-Credentials"), None);
        let pattern = [rule(&["GET"], &["https://*.example.com"])];
        let m = match_actual(&pattern, "https://a.example.com", "GET").unwrap();
        assert_eq!(header(&m, "Access-Control-Allow-Origin"), Some("https://a.example.com"));
        assert_eq!(header(&m, "Access-Control-Allow-Credentials"), None);
        let exact = [rule(&["GET"], &["https://app.example.com"])];
        let m = match_actual(&exact, "https://app.example.com", "GET").unwrap();
        assert_eq!(header(&m, "Access-Control-Allow-Credentials"), Some("true"));
    }

    #[test]
    fn preflights() {
        let mut r = rule(&["GET", "PUT"], &["https://a"]);
        r.allowed_headers = vec!["x-amz-*".into(), "content-type".into()];
        r.max_age_secs = Some(60);
        r.expose_headers = vec!["ETag".into()];
        let rules = [r];
        let ok = preflight(Some(&rules), Some("https://a"), Some("PUT"), Some("X-Amz-Date, Content-Type")).unwrap();
        assert_eq!(header(&ok, "Access-Control-Allow-Methods"), Some("GET, PUT"));
        assert_eq!(header(&ok, "Access-Control-Allow-Headers"), Some("X-Amz-Date, Content-Type"));
        assert_eq!(header(&ok, "Access-Control-Max-Age"), Some("60"));
        assert_eq!(header(&ok, "Access-Control-Expose-Headers"), Some("ETag"));
        let code = |o, m, h| preflight(Some(&rules), o, m, h).unwrap_err().code;
        assert_eq!(code(None, Some("GET"), None), S3ErrorCode::BadRequest);
        assert_eq!(code(Some("https://a"), None, None), S3ErrorCode::BadRequest);
        assert_eq!(code(Some("https://b"), Some("GET"), None), S3ErrorCode::CORSForbidden);
        assert_eq!(code(Some("https://a"), Some("DELETE"), None), S3ErrorCode::CORSForbidden);
        assert_eq!(code(Some("https://a"), Some("GET"), Some("x-other")), S3ErrorCode::CORSForbidden);
        assert_eq!(preflight(None, Some("https://a"), Some("GET"), None).unwrap_err().code, S3ErrorCode::CORSForbidden);
    }
}
