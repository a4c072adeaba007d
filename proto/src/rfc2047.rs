//! RFC 2047 encoded words in header values, as S3 uses them for user
//! metadata: values sent as `=?UTF-8?B?...?=` (or `Q`) are decoded before
//! they are stored, and stored values with non-ASCII characters are sent
//! back encoded (HTTP header values are ASCII on the wire).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Longest header value decoded (metadata is capped far below this).
pub const MAX_ENCODED_VALUE_BYTES: usize = 8 * 1024;

/// Decodes a value made of RFC 2047 encoded words (charset UTF-8,
/// ISO-8859-1 or US-ASCII; encoding B or Q), white space between encoded
/// words dropped as the RFC says. A value that is not entirely encoded
/// words, or that does not decode, is returned unchanged.
pub fn decode(value: &str) -> String {
    if value.len() > MAX_ENCODED_VALUE_BYTES || !value.trim_start().starts_with("=?") {
        return value.to_string();
    }
    let mut out = String::new();
    for word in value.split_ascii_whitespace() {
        match decode_word(word) {
            Some(text) => out.push_str(&text),
            None => return value.to_string(),
        }
    }
    out
}

fn decode_word(word: &str) -> Option<String> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = match encoding {
        "B" | "b" => BASE64.decode(text).ok()?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    match charset.to_ascii_uppercase().as_str() {
        "UTF-8" => String::from_utf8(bytes).ok(),
        "ISO-8859-1" | "LATIN1" => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        "US-ASCII" if bytes.is_ascii() => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// The value to send in a header: as is when it is printable ASCII, else
/// one RFC 2047 `B` encoded word of its UTF-8 bytes.
pub fn encode(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7F).contains(&b) || b == b'\t') {
        return value.to_string();
    }
    format!("=?UTF-8?B?{}?=", BASE64.encode(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?=", "Hello Worldé"),
            ("=?utf-8?q?Hello_World=C3=A9?=", "Hello Worldé"),
            ("=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?=", "éé"),
            ("=?ISO-8859-1?Q?caf=E9?=", "café"),
            ("=?UTF-8?B?not base64?=", "=?UTF-8?B?not base64?="),
            ("=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="),
            ("=?UTF-8?Q?bad=Z?=", "=?UTF-8?Q?bad=Z?="),
            ("=?UTF-8?B?/w==?=", "=?UTF-8?B?/w==?="),
            ("=?KOI8-R?B?w6k=?=", "=?KOI8-R?B?w6k=?="),
            ("=?UTF-8?B?w6k=?= trailing", "=?UTF-8?B?w6k=?= trailing"),
            ("=?", "=?"),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input), *want, "{input}");
        }
    }

    #[test]
    fn encode_round_trips() {
        for v in ["ascii only", "Hello Worldé", "日本語", "line\nbreak", ""] {
            let e = encode(v);
            assert!(e.bytes().all(|b| (0x20..0x7F).contains(&b)), "{e}");
            assert_eq!(decode(&e), v);
        }
        assert_eq!(encode("plain value"), "plain value");
        assert_eq!(encode("Hello Worldé"), "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?=");
    }
}
