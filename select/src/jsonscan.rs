//! JSON records read in place: a strict check that a record's bytes are
//! "plain" JSON, and field lookups that walk those bytes without building a
//! `serde_json::Value`. The WHERE kernels read fields through this; only
//! the records the filter keeps are parsed into values (`engine.rs`).
//!
//! The row evaluator over serde_json values stays the reference, so what is
//! plain is a subset of what serde_json parses, read exactly as it reads it:
//! - the bytes are UTF-8, the grammar is RFC 8259 with serde_json's
//!   whitespace (space, tab, CR, LF), nesting at most `MAX_DEPTH`;
//! - strings hold no control characters and no `\u` escape of a surrogate
//!   (serde_json refuses lone ones; pairs are left to it);
//! - numbers are at most `MAX_NUMBER_LEN` bytes with at most a two-digit
//!   exponent, so none overflows an f64 (serde_json refuses those).
//!
//! A record that isn't plain sends its batch down the serde_json path,
//! which raises the same error it always did. Lookups follow
//! `eval::json_path`: an object's member is the last one with the exact
//! name, else (unquoted names) the first name equal but for ASCII case,
//! with that name's last value — serde_json's map keeps a duplicate key at
//! its first place with its last value. A lookup that would need a key's
//! escapes decoded, or that ends at an array or object, answers None: the
//! batch then falls back too.

use std::borrow::Cow;

use crate::ast::PathStep;
use crate::value::Value;

/// Deepest nesting read in place (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 64;
/// Longest number read in place.
pub const MAX_NUMBER_LEN: usize = 40;

#[inline]
fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\t' | b'\r') {
        i += 1;
    }
    i
}

/// What is known of a record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// Not plain (or not checked): the record goes to serde_json.
    No,
    Yes,
    /// Plain, and an object whose top-level keys are unescaped and
    /// distinct: a lookup stops at the first exact match.
    UniqueKeys,
}

/// Whether `b` is one plain JSON value (see the module note).
pub fn plain(b: &[u8]) -> Plain {
    let i = ws(b, 0);
    match check(b, i) {
        Some((e, p)) if ws(b, e) == b.len() => p,
        _ => Plain::No,
    }
}

/// The end of the plain value at `i` and what it is; None when it isn't
/// plain (or isn't complete in `b`).
pub fn check(b: &[u8], i: usize) -> Option<(usize, Plain)> {
    let (e, unique) = match b.get(i) {
        Some(b'{') => top_object_end(b, i)?,
        _ => (value_end(b, i, 0)?, false),
    };
    let v = &b[i..e];
    if !v.is_ascii() && std::str::from_utf8(v).is_err() {
        return None;
    }
    Some((e, if unique { Plain::UniqueKeys } else { Plain::Yes }))
}

/// `value_end` of a top-level object, and whether its keys are unescaped
/// and distinct (known for up to 32 keys).
fn top_object_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut keys: [&[u8]; 32] = [&[]; 32];
    let mut n = 0;
    let mut unique = true;
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Some((j + 1, true));
    }
    loop {
        if b.get(j) != Some(&b'"') {
            return None;
        }
        let (ke, escaped) = string_end(b, j)?;
        if unique {
            let key = &b[j + 1..ke - 1];
            if escaped || n == keys.len() || keys[..n].contains(&key) {
                unique = false;
            } else {
                keys[n] = key;
                n += 1;
            }
        }
        j = ws(b, ke);
        if b.get(j) != Some(&b':') {
            return None;
        }
        j = ws(b, value_end(b, ws(b, j + 1), 1)?);
        match *b.get(j)? {
            b',' => j = ws(b, j + 1),
            b'}' => return Some((j + 1, unique)),
            _ => return None,
        }
    }
}

/// The end of the plain value at `i`; None when it isn't plain.
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i).map(|(e, _)| e),
        b'{' => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Some(j + 1);
            }
            loop {
                if b.get(j) != Some(&b'"') {
                    return None;
                }
                j = ws(b, string_end(b, j)?.0);
                if b.get(j) != Some(&b':') {
                    return None;
                }
                j = ws(b, value_end(b, ws(b, j + 1), depth + 1)?);
                match *b.get(j)? {
                    b',' => j = ws(b, j + 1),
                    b'}' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b'[' => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b']') {
                return Some(j + 1);
            }
            loop {
                j = ws(b, value_end(b, j, depth + 1)?);
                match *b.get(j)? {
                    b',' => j = ws(b, j + 1),
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        b'-' | b'0'..=b'9' => number_end(b, i),
        _ => None,
    }
}

#[inline]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b[i..].starts_with(word).then_some(i + word.len())
}

/// Bytes that end a run of plain string characters: the quote, the
/// backslash and the control characters.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The end of the string opening at `i`, and whether it has escapes.
#[inline]
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        // Plain characters in a tight loop; the rest below.
        while j < b.len() && !STRING_STOP[b[j] as usize] {
            j += 1;
        }
        match *b.get(j)? {
            b'"' => return Some((j + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(j + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                    b'u' => {
                        let hex = b.get(j + 2..j + 6)?;
                        let mut v = 0u32;
                        for &h in hex {
                            v = v * 16 + (h as char).to_digit(16)?;
                        }
                        if (0xD800..0xE000).contains(&v) {
                            return None;
                        }
                        j += 6;
                    }
                    _ => return None,
                }
            }
            0..=0x1F => return None,
            _ => j += 1,
        }
    }
}

#[inline]
fn digits(b: &[u8], mut j: usize) -> usize {
    while matches!(b.get(j), Some(b'0'..=b'9')) {
        j += 1;
    }
    j
}

fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + (b[i] == b'-') as usize;
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(b, j),
        _ => return None,
    }
    if b.get(j) == Some(&b'.') {
        let s = j + 1;
        j = digits(b, s);
        if j == s {
            return None;
        }
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let s = j;
        j = digits(b, s);
        if j == s || j - s > 2 {
            return None;
        }
    }
    (j - i <= MAX_NUMBER_LEN).then_some(j)
}

/// `eval::json_path(record, steps, true)` over a plain record's bytes;
/// None when it can't be answered in place.
pub fn lookup<'a>(rec: &'a [u8], plain: Plain, steps: &[PathStep]) -> Option<Value<'a>> {
    let mut at = ws(rec, 0);
    for (i, step) in steps.iter().enumerate() {
        match (step, *rec.get(at)?) {
            (PathStep::Name { name, quoted }, b'{') => match member(rec, at, name, *quoted, i == 0 && plain == Plain::UniqueKeys)? {
                Some(v) => at = v,
                // eval's `_1`: the record itself when it has no such member.
                None if i == 0 && !quoted && name == "_1" => {}
                None => return Some(Value::Missing),
            },
            (PathStep::Index(n), b'[') => match usize::try_from(*n).ok().and_then(|n| element(rec, at, n)) {
                Some(v) => at = v,
                None => return Some(Value::Missing),
            },
            _ => return Some(Value::Missing),
        }
    }
    scalar(rec, at)
}

/// The start of the member `name` of the object at `at` (see the module
/// note); Some(None) when absent, None when a key has escapes. With
/// `unique` keys the first exact match is the one.
fn member(b: &[u8], at: usize, name: &str, quoted: bool, unique: bool) -> Option<Option<usize>> {
    let name = name.as_bytes();
    let mut exact = None;
    let mut folded: Option<(&[u8], usize)> = None;
    let mut j = ws(b, at + 1);
    if b.get(j) == Some(&b'}') {
        return Some(None);
    }
    loop {
        let (ke, escaped) = string_end(b, j)?;
        if escaped {
            return None;
        }
        let key = &b[j + 1..ke - 1];
        let v = ws(b, ws(b, ke) + 1);
        if key == name {
            if unique {
                return Some(Some(v));
            }
            exact = Some(v);
        }
        if !quoted {
            match folded {
                Some((k, _)) if k == key => folded = Some((k, v)),
                None if key.eq_ignore_ascii_case(name) => folded = Some((key, v)),
                _ => {}
            }
        }
        let e = ws(b, value_end(b, v, 0)?);
        match *b.get(e)? {
            b',' => j = ws(b, e + 1),
            _ => return Some(exact.or(folded.map(|(_, v)| v))),
        }
    }
}

/// The start of element `n` of the array at `at`.
fn element(b: &[u8], at: usize, n: usize) -> Option<usize> {
    let mut j = ws(b, at + 1);
    if b.get(j) == Some(&b']') {
        return None;
    }
    for _ in 0..n {
        j = ws(b, value_end(b, j, 0)?);
        if b.get(j) != Some(&b',') {
            return None;
        }
        j = ws(b, j + 1);
    }
    Some(j)
}

/// A top-level member of a plain object record.
pub struct Member<'a> {
    pub key: &'a str,
    pub value: Value<'a>,
    /// The value's bytes.
    pub bytes: &'a [u8],
    /// Whether serde_json writes the value back as exactly `bytes` (a
    /// string without escapes, a literal, an integer `fast_int` reads).
    pub verbatim: bool,
}

/// The members of a plain record, in order, when serde_json reads it as an
/// object of exactly these members: no key is escaped or repeated and no
/// value is an array or object. False otherwise (`out` is then unusable).
pub fn members<'a>(b: &'a [u8], out: &mut Vec<Member<'a>>) -> bool {
    out.clear();
    let at = ws(b, 0);
    if b.get(at) != Some(&b'{') {
        return false;
    }
    let mut j = ws(b, at + 1);
    if b.get(j) == Some(&b'}') {
        return true;
    }
    loop {
        let Some((ke, false)) = string_end(b, j) else { return false };
        let Ok(key) = std::str::from_utf8(&b[j + 1..ke - 1]) else { return false };
        if out.len() >= 64 || out.iter().any(|m| m.key == key) {
            return false;
        }
        let v = ws(b, ws(b, ke) + 1);
        let Some(e) = value_end(b, v, 0) else { return false };
        let bytes = &b[v..e];
        let Some(value) = scalar(b, v) else { return false };
        let verbatim = match bytes[0] {
            b'"' => !bytes.contains(&b'\\'),
            b't' | b'f' | b'n' => true,
            _ => fast_int(bytes).is_some(),
        };
        out.push(Member { key, value, bytes, verbatim });
        let e = ws(b, e);
        match b.get(e) {
            Some(b',') => j = ws(b, e + 1),
            _ => return true,
        }
    }
}

/// `Value::from_json` of the scalar at `at`; None for arrays and objects.
fn scalar(b: &[u8], at: usize) -> Option<Value<'_>> {
    Some(match *b.get(at)? {
        b'"' => {
            let (e, escaped) = string_end(b, at)?;
            if escaped {
                Value::Str(Cow::Owned(serde_json::from_slice::<String>(&b[at..e]).ok()?))
            } else {
                Value::str(std::str::from_utf8(&b[at + 1..e - 1]).ok()?)
            }
        }
        b't' => Value::Bool(true),
        b'f' => Value::Bool(false),
        b'n' => Value::Null,
        b'{' | b'[' => return None,
        _ => {
            let e = number_end(b, at)?;
            let s = &b[at..e];
            match fast_int(s) {
                Some(i) => Value::Int(i),
                None => {
                    let n = serde_json::from_slice::<serde_json::Number>(s).ok()?;
                    match n.as_i64() {
                        Some(i) => Value::Int(i),
                        None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                    }
                }
            }
        }
    })
}

/// An integer of at most 18 digits, as serde_json reads it (not `-0`,
/// which it reads as a float).
#[inline]
fn fast_int(s: &[u8]) -> Option<i64> {
    let (neg, d) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if d.is_empty() || d.len() > 18 || (neg && d == b"0") {
        return None;
    }
    let mut v = 0i64;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything plain parses with serde_json, and each lookup agrees
    /// with `json_path` over the parsed value.
    fn agrees(text: &str, steps: &[PathStep]) {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let want = crate::eval::json_path(&v, steps, true);
        let p = plain(text.as_bytes());
        assert_ne!(p, Plain::No, "{text}");
        for got in [lookup(text.as_bytes(), p, steps), lookup(text.as_bytes(), Plain::Yes, steps)].into_iter().flatten() {
            assert_eq!(got, want, "{text} {steps:?}");
        }
        if lookup(text.as_bytes(), p, steps).is_none() {
            assert!(matches!(want, Value::Json(_)) || text.contains('\\'), "{text} {steps:?}");
        }
    }

    #[test]
    fn plain_is_a_subset_of_serde() {
        let cases = [
            ("{\"a\":1}", true),
            (" [1, 2.5e-3, -0, \"x\\n\", true, false, null, {}] ", true),
            ("{\"a\":01}", false),
            ("{\"a\":1,}", false),
            ("[1,]", false),
            ("{\"a\" 1}", false),
            ("\"\\ud83d\\ude00\"", false),
            ("\"\\u00e9\"", true),
            ("\"\u{1}\"", false),
            ("1e400", false),
            ("1e99", true),
            ("1.", false),
            ("-", false),
            ("tru", false),
            ("{\"a\":1}x", false),
            ("\u{c}1", false),
            ("\"é\"", true),
        ];
        for (text, want) in cases {
            assert_eq!(plain(text.as_bytes()) != Plain::No, want, "{text}");
            if want {
                assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{text}");
            }
        }
        assert_eq!(plain(b"\"\xff\""), Plain::No);
        assert_eq!(plain(br#"{"a":1,"b":{"a":2,"a":3}}"#), Plain::UniqueKeys);
        assert_eq!(plain(br#"{"a":1,"b":2,"a":3}"#), Plain::Yes);
        assert_eq!(plain(br#"{"a":1,"\u0062":2}"#), Plain::Yes);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(plain(deep.as_bytes()), Plain::No);
    }

    #[test]
    fn lookups_follow_json_path() {
        let name = |n: &str, quoted| PathStep::Name { name: n.into(), quoted };
        let recs = [
            r#"{"a":1,"b":"x","A":2,"a":3,"n":{"x":[5,{"y":-0}],"X":7},"s":"h\u00e9","f":1e2,"big":18446744073709551615,"neg":-12}"#,
            r#"{"B":1,"b":2,"B":3}"#,
            r#"[1,2]"#,
            r#"{"_1":4}"#,
            r#"{"q":{}}"#,
            r#"12"#,
        ];
        let paths = vec![
            vec![name("a", false)],
            vec![name("a", true)],
            vec![name("A", true)],
            vec![name("b", false)],
            vec![name("B", false)],
            vec![name("n", false), name("x", false), PathStep::Index(1), name("y", false)],
            vec![name("n", false), name("x", false), PathStep::Index(2)],
            vec![name("n", false), name("x", false), PathStep::Index(-1)],
            vec![name("n", false), name("x", true)],
            vec![name("s", false)],
            vec![name("f", false)],
            vec![name("big", false)],
            vec![name("neg", false)],
            vec![name("_1", false), name("a", false)],
            vec![name("_1", false)],
            vec![name("q", false)],
            vec![name("zz", false)],
            vec![PathStep::Index(0)],
            vec![PathStep::Wildcard],
            vec![],
        ];
        for r in recs {
            assert_ne!(plain(r.as_bytes()), Plain::No, "{r}");
            for p in &paths {
                agrees(r, p);
            }
        }
        assert_eq!(lookup(br#"{"a\"":1}"#, Plain::Yes, &[name("b", false)]), None);
    }
}
