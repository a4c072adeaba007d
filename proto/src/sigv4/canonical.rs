//! Canonicalization: the canonical URI, query and headers, the canonical request
//! and the string to sign (S3's rules: the path is decoded once, never normalized).

use std::borrow::Cow;

use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::digest;

use super::ALGORITHM;
use crate::headers::Headers;

/// Every byte but the unreserved ones is encoded (RFC 3986, as S3 canonicalizes).
pub(super) const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// As `STRICT`, keeping the path separators.
pub(super) const STRICT_PATH: &AsciiSet = &STRICT.remove(b'/');

/// S3's canonical URI: the wire path decoded once and re-encoded with the strict
/// rule (`/` kept). `%20` stays `%20`, a raw `+` becomes `%2B`, a raw space `%20`.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    // Unreserved bytes and `/` decode and re-encode to themselves.
    if raw_path.bytes().all(|b| b == b'/' || is_unreserved(b)) {
        return raw_path.to_string();
    }
    let bytes: Cow<'_, [u8]> = percent_decode(raw_path.as_bytes()).into();
    percent_encode(&bytes, STRICT_PATH).to_string()
}

/// Decodes a query component: `%XX` only (`+` is a literal plus); invalid UTF-8 is
/// replaced, which can only make a signature fail.
pub(crate) fn decode_component(raw: &str) -> Cow<'_, str> {
    // Without a `%` it is itself, and UTF-8 already: no scan of its bytes.
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    percent_decode(raw.as_bytes()).decode_utf8_lossy()
}

/// Splits a raw query into decoded `(name, value)` pairs, in order; a parameter
/// without `=` has an empty value. Empty segments (`a=1&&b=2`) are skipped.
pub(crate) fn parse_query(raw_query: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    crate::router::raw_pairs(raw_query).map(|(n, v)| (decode_component(n), decode_component(v))).collect()
}

/// The canonical query string: parameters decoded, re-encoded strictly, sorted by
/// name then value. With `drop_signature`, `X-Amz-Signature` is left out (presigned).
pub fn canonical_query(raw_query: &str, drop_signature: bool) -> String {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = crate::router::raw_pairs(raw_query)
        .filter_map(|(n, v)| {
            let name = canonical_component(n);
            if drop_signature && name == "X-Amz-Signature" {
                return None;
            }
            Some((name, canonical_component(v)))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len() + 16);
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// RFC 3986's unreserved bytes: the only ones `STRICT` leaves as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One query name or value, decoded and re-encoded strictly; borrowed as it
/// is when it holds unreserved bytes only, which decode and re-encode to
/// themselves (most of a presigned URL's parameters: the two allocations
/// and the formatting per component were an eighth of its instructions).
fn canonical_component(raw: &str) -> Cow<'_, str> {
    if raw.bytes().all(is_unreserved) {
        return Cow::Borrowed(raw);
    }
    let bytes: Cow<'_, [u8]> = percent_decode(raw.as_bytes()).into();
    Cow::Owned(percent_encode(&bytes, STRICT).to_string())
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of spaces collapsed
/// to one. Only spaces, as S3 does (tabs are kept).
fn push_trimmed_value(out: &mut String, value: &str) {
    let mut previous_space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
}

/// The canonical headers block: `name:value\n` for each signed header, in the order
/// given; repeated headers are joined with `,`. An absent header has an empty value.
pub fn canonical_headers(headers: &Headers, signed_headers: &[&str]) -> String {
    let mut out = String::with_capacity(signed_headers.len() * 48);
    push_canonical_headers(&mut out, headers, signed_headers);
    out
}

fn push_canonical_headers(out: &mut String, headers: &Headers, signed_headers: &[&str]) {
    for name in signed_headers {
        let lower: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        out.push_str(&lower);
        out.push(':');
        for (i, value) in headers.get_all(&lower).enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_trimmed_value(out, value);
        }
        out.push('\n');
    }
}

/// The canonical request from already-canonical URI and query.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &Headers,
    signed_headers: &[&str],
    payload_hash: &str,
) -> String {
    // Built in one buffer (no `format!`, no temporaries): every signed request.
    let mut out = String::with_capacity(
        method.len() + canonical_uri.len() + canonical_query.len() + payload_hash.len() + signed_headers.len() * 64 + 8,
    );
    out.push_str(method);
    out.push('\n');
    out.push_str(canonical_uri);
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    push_canonical_headers(&mut out, headers, signed_headers);
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    let mut out = String::with_capacity(ALGORITHM.len() + amz_date.len() + scope.len() + 3 + 64);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(amz_date);
    out.push('\n');
    out.push_str(scope);
    out.push('\n');
    crate::checksum::push_hex_lower(&mut out, hash.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast paths (unreserved text borrowed or copied as it is) give
    /// exactly what decoding and re-encoding every component gave, over
    /// every short string of the bytes that matter.
    #[test]
    fn fast_paths_match_decode_then_encode() {
        fn old_query(raw_query: &str, drop_signature: bool) -> String {
            let mut pairs: Vec<(String, String)> = raw_query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    let name: Cow<'_, [u8]> = percent_decode(n.as_bytes()).into();
                    if drop_signature && name.as_ref() == b"X-Amz-Signature" {
                        return None;
                    }
                    let value: Cow<'_, [u8]> = percent_decode(v.as_bytes()).into();
                    Some((percent_encode(&name, STRICT).to_string(), percent_encode(&value, STRICT).to_string()))
                })
                .collect();
            pairs.sort_unstable();
            pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
        }
        fn old_uri(raw_path: &str) -> String {
            if raw_path.is_empty() {
                return "/".to_string();
            }
            let bytes: Cow<'_, [u8]> = percent_decode(raw_path.as_bytes()).into();
            percent_encode(&bytes, STRICT_PATH).to_string()
        }
        let alphabet = ["a", "Z", "0", "-", "~", "%", "2", "F", "%2F", "%41", "%7e", "+", "/", " ", "=", "&", "é", "*", "X-Amz-Signature"];
        let mut n = 0;
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            for drop in [false, true] {
                assert_eq!(canonical_query(&s, drop), old_query(&s, drop), "query {s:?}");
            }
            assert_eq!(canonical_uri(&s), old_uri(&s), "path {s:?}");
            n += 1;
            if s.len() < 5 {
                for a in alphabet {
                    stack.push(format!("{s}{a}"));
                }
            }
        }
        assert!(n > 20_000, "{n} strings");
        // decode_component's shortcut: what percent_decode gave, for all of them.
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            assert_eq!(decode_component(&s), percent_decode(s.as_bytes()).decode_utf8_lossy(), "{s:?}");
            if s.len() < 5 {
                for a in alphabet {
                    stack.push(format!("{s}{a}"));
                }
            }
        }
        // A presigned URL's query, in AWS's documented example form.
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        assert_eq!(canonical_query(q, true), old_query(q, true));
    }
}
