//! JSON input: top-level values cut from a stream (DOCUMENT: any
//! whitespace-separated values; LINES: one per line, the same cut works).
//! A batch holds where each value lies in the splitter's buffer; the engine
//! either reads them in place (`jsonscan`) or parses them with serde_json
//! (`parse`) and applies the FROM path.

use std::ops::Range;

use crate::ast::PathStep;
use crate::jsonscan::{self, Plain};
use crate::error::{err, Code, Result, SelectError};

/// Largest top-level JSON value. AWS's records are at most 1 MB; a
/// DOCUMENT can hold its records in one top-level value (`{"root":[...]}`),
/// so whole values up to this size are accepted.
pub const MAX_JSON_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Deepest nesting of a JSON value (serde_json's own recursion limit is 128).
pub const MAX_JSON_DEPTH: usize = 128;

#[derive(Default)]
pub struct JsonSplitter {
    pending: Vec<u8>,
    offset: u64,
    /// Resumable scan state inside `pending`.
    scan: usize,
    depth: usize,
    in_str: bool,
    escaped: bool,
    started: Option<usize>,
    /// Bytes of `pending` cut into the last batch, dropped at the next push
    /// (the batch's spans point into them until then).
    used: usize,
}

/// The complete top-level values of a piece of input.
#[derive(Default)]
pub struct JsonBatch {
    /// Where each value lies in `JsonSplitter::text`.
    pub spans: Vec<Range<usize>>,
    /// Object offset where each value starts.
    pub offsets: Vec<u64>,
    /// Whether each value can be read in place (`jsonscan`).
    pub plain: Vec<Plain>,
}

impl JsonSplitter {
    pub fn new(start_offset: u64) -> JsonSplitter {
        JsonSplitter { offset: start_offset, ..Default::default() }
    }

    /// Input dropped before the first record (a scan range's start).
    pub fn skip(&mut self, n: u64) {
        self.release();
        self.offset += n;
    }

    /// Drops the bytes of the last batch.
    fn release(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.pending.drain(..used);
        self.offset += used as u64;
        self.scan -= used;
        if let Some(s) = self.started.as_mut() {
            *s -= used;
        }
    }

    /// The buffer the spans of the last batch point into.
    pub fn text(&self) -> &[u8] {
        &self.pending
    }

    /// Cuts the complete values of the input so far into `batch`. Errors
    /// come in input order: a value before a cutting error that serde_json
    /// refuses raises its own error first.
    pub fn push(&mut self, input: &[u8], eof: bool, batch: &mut JsonBatch) -> Result<()> {
        self.release();
        batch.spans.clear();
        batch.offsets.clear();
        batch.plain.clear();
        self.pending.extend_from_slice(input);
        let mut consumed = 0usize;
        loop {
            match self.next_value(consumed, eof) {
                Ok(Some((s, e, plain))) => {
                    batch.spans.push(s..e);
                    batch.offsets.push(self.offset + s as u64);
                    batch.plain.push(plain.unwrap_or_else(|| jsonscan::plain(&self.pending[s..e])));
                    consumed = e;
                }
                Ok(None) => break,
                Err(e) => {
                    self.parse_all(batch, &mut Vec::new())?;
                    return Err(e);
                }
            }
        }
        self.used = consumed;
        if self.pending.len() - consumed > MAX_JSON_VALUE_BYTES {
            self.parse_all(batch, &mut Vec::new())?;
            return err(Code::OverMaxRecordSize, "A JSON value is larger than 16 MB.");
        }
        Ok(())
    }

    /// Value `i` of the last batch, parsed.
    pub fn parse(&self, batch: &JsonBatch, i: usize) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.pending[batch.spans[i].clone()]).map_err(|x| {
            SelectError::new(Code::JSONParsingError, format!("Invalid JSON at offset {}: {x}.", batch.offsets[i]))
        })
    }

    /// Every value of the last batch, parsed, into `out`.
    pub fn parse_all(&self, batch: &JsonBatch, out: &mut Vec<serde_json::Value>) -> Result<()> {
        out.clear();
        for i in 0..batch.spans.len() {
            out.push(self.parse(batch, i)?);
        }
        Ok(())
    }

    /// The next complete value at or after `from`, resuming the scan, and
    /// whether it is plain when that was found on the way.
    fn next_value(&mut self, from: usize, eof: bool) -> Result<Option<(usize, usize, Option<Plain>)>> {
        let b = &self.pending;
        if self.started.is_none() {
            let mut i = self.scan.max(from);
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                i += 1;
            }
            // A leading byte-order mark.
            if b[i..].starts_with(&[0xEF, 0xBB, 0xBF]) && self.offset + i as u64 == 0 {
                i += 3;
            }
            self.scan = i;
            if i == b.len() {
                return Ok(None);
            }
            // A plain container or string ends where the cut below would
            // end it (its brackets balance): checked and cut in one pass.
            if matches!(b[i], b'{' | b'[' | b'"') {
                if let Some((e, plain)) = jsonscan::check(b, i) {
                    self.scan = e;
                    return Ok(Some((i, e, Some(plain))));
                }
            }
            self.started = Some(i);
            self.depth = 0;
            self.in_str = false;
            self.escaped = false;
        }
        let start = self.started.unwrap_or(0);
        let mut i = self.scan;
        let scalar = !matches!(b[start], b'{' | b'[' | b'"');
        while i < b.len() {
            let c = b[i];
            if self.in_str {
                if self.escaped {
                    self.escaped = false;
                } else if c == b'\\' {
                    self.escaped = true;
                } else if c == b'"' {
                    self.in_str = false;
                    if self.depth == 0 {
                        i += 1;
                        return Ok(Some(self.finish(start, i, None)));
                    }
                }
                i += 1;
                continue;
            }
            if scalar {
                if c.is_ascii_whitespace() || matches!(c, b'{' | b'[' | b'"' | b',') {
                    return Ok(Some(self.finish(start, i, None)));
                }
                i += 1;
                continue;
            }
            match c {
                b'"' => self.in_str = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > MAX_JSON_DEPTH {
                        return err(Code::JSONParsingError, "JSON nests too deeply.");
                    }
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return err(Code::JSONParsingError, "Unbalanced JSON brackets.");
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        i += 1;
                        return Ok(Some(self.finish(start, i, None)));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.scan = i;
        if eof {
            if scalar && !self.in_str {
                return Ok(Some(self.finish(start, i, None)));
            }
            return err(Code::JSONParsingError, "The JSON input ends inside a value.");
        }
        Ok(None)
    }

    fn finish(&mut self, s: usize, e: usize, plain: Option<Plain>) -> (usize, usize, Option<Plain>) {
        self.started = None;
        self.scan = e;
        (s, e, plain)
    }
}

/// Applies the FROM path to a top-level value: the records it names.
pub fn from_path<'a>(v: &'a serde_json::Value, steps: &[PathStep], out: &mut Vec<&'a serde_json::Value>) {
    // `S3Object[*]` is the stream of top-level values itself.
    let steps = match steps.first() {
        Some(PathStep::Wildcard) => &steps[1..],
        _ => steps,
    };
    walk(v, steps, out);
}

fn walk<'a>(v: &'a serde_json::Value, steps: &[PathStep], out: &mut Vec<&'a serde_json::Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match (step, v) {
        (PathStep::Name { name, quoted }, serde_json::Value::Object(m)) => {
            let found = m.get(name.as_str()).or_else(|| {
                if *quoted {
                    None
                } else {
                    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
                }
            });
            if let Some(x) = found {
                walk(x, rest, out);
            }
        }
        (PathStep::Index(n), serde_json::Value::Array(a)) => {
            if let Some(x) = usize::try_from(*n).ok().and_then(|n| a.get(n)) {
                walk(x, rest, out);
            }
        }
        (PathStep::Wildcard, serde_json::Value::Array(a)) => a.iter().for_each(|x| walk(x, rest, out)),
        (PathStep::Wildcard, serde_json::Value::Object(m)) => m.values().for_each(|x| walk(x, rest, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &str, piece: usize) -> Result<Vec<String>> {
        let mut s = JsonSplitter::new(0);
        let mut b = JsonBatch::default();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = input.as_bytes().chunks(piece).collect();
        let mut values = Vec::new();
        for (n, c) in chunks.iter().enumerate() {
            s.push(c, n + 1 == chunks.len(), &mut b)?;
            s.parse_all(&b, &mut values)?;
            out.extend(values.iter().map(|v| v.to_string()));
        }
        Ok(out)
    }

    #[test]
    fn values() {
        let input = "{\"a\":1}\n{\"b\":\"}\\\"{\"} [1,[2]] \"s\" 12 true\n{\"c\":{}}";
        let want = vec!["{\"a\":1}", "{\"b\":\"}\\\"{\"}", "[1,[2]]", "\"s\"", "12", "true", "{\"c\":{}}"];
        for piece in [1, 2, 5, 100] {
            assert_eq!(split(input, piece).unwrap(), want, "{piece}");
        }
        assert_eq!(split("{\"a\":1", 3).unwrap_err().code, Code::JSONParsingError);
        assert_eq!(split("{\"a\":1}}", 3).unwrap_err().code, Code::JSONParsingError);
        assert_eq!(split("{\"a\":tru}", 3).unwrap_err().code, Code::JSONParsingError);
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert_eq!(split(&deep, 1000).unwrap_err().code, Code::JSONParsingError);
    }

    #[test]
    fn paths() {
        let v: serde_json::Value = serde_json::from_str(r#"{"root":[{"x":1},{"x":2}],"Other":{"k":[5,6]}}"#).unwrap();
        let mut out = Vec::new();
        let name = |n: &str| PathStep::Name { name: n.into(), quoted: false };
        from_path(&v, &[PathStep::Wildcard, name("root"), PathStep::Wildcard], &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        from_path(&v, &[PathStep::Wildcard, name("other"), name("k"), PathStep::Index(1)], &mut out);
        assert_eq!(out, vec![&serde_json::json!(6)]);
        out.clear();
        from_path(&v, &[name("nope")], &mut out);
        assert!(out.is_empty());
    }
}
