//! Output records: CSV with AWS's quoting options, or JSON objects.

use crate::params::{CsvOutput, OutputFormat, QuoteFields};
use crate::value::Value;

pub struct Writer {
    format: OutputFormat,
    /// Characters that force quotes in ASNEEDED mode.
    specials: Vec<char>,
    /// The ASCII ones as a table, so a field is checked byte by byte.
    ascii_specials: [bool; 128],
    /// Whether some special is not ASCII (then fields are checked by char).
    wide_specials: bool,
}

impl Writer {
    pub fn new(format: OutputFormat) -> Writer {
        let specials = match &format {
            OutputFormat::Csv(c) => {
                let mut v: Vec<char> = c.field_delimiter.chars().chain(c.record_delimiter.chars()).collect();
                v.extend([c.quote, c.quote_escape, '\n', '\r']);
                v
            }
            OutputFormat::Json { .. } => Vec::new(),
        };
        let mut ascii_specials = [false; 128];
        for c in &specials {
            if c.is_ascii() {
                ascii_specials[*c as usize] = true;
            }
        }
        let wide_specials = specials.iter().any(|c| !c.is_ascii());
        Writer { format, specials, ascii_specials, wide_specials }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.format, OutputFormat::Json { .. })
    }

    /// One record of named values.
    pub fn record<'n>(&self, out: &mut Vec<u8>, items: impl Iterator<Item = (&'n str, Value<'n>)>) {
        match &self.format {
            OutputFormat::Csv(c) => {
                let mut first = true;
                let mut text = String::new();
                for (_, v) in items {
                    if !first {
                        out.extend_from_slice(c.field_delimiter.as_bytes());
                    }
                    first = false;
                    match &v {
                        Value::Str(s) => self.csv_field(c, out, s),
                        other => {
                            text.clear();
                            other.write_text(&mut text);
                            self.csv_field(c, out, &text);
                        }
                    }
                }
                out.extend_from_slice(c.record_delimiter.as_bytes());
            }
            OutputFormat::Json { record_delimiter } => {
                out.push(b'{');
                let mut first = true;
                for (name, v) in items {
                    if matches!(v, Value::Missing) {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    json_string(out, name);
                    out.push(b':');
                    json_value(out, &v);
                }
                out.push(b'}');
                out.extend_from_slice(record_delimiter.as_bytes());
            }
        }
    }

    /// A JSON record written as it came (`SELECT *` of JSON input).
    pub fn json_record(&self, out: &mut Vec<u8>, v: &serde_json::Value) {
        match &self.format {
            OutputFormat::Json { record_delimiter } => {
                if v.is_object() {
                    let _ = serde_json::to_writer(&mut *out, v);
                } else {
                    out.extend_from_slice(b"{\"_1\":");
                    let _ = serde_json::to_writer(&mut *out, v);
                    out.push(b'}');
                }
                out.extend_from_slice(record_delimiter.as_bytes());
            }
            OutputFormat::Csv(_) => match v {
                serde_json::Value::Object(m) => {
                    self.record(out, m.iter().map(|(k, x)| (k.as_str(), Value::from_json(x))));
                }
                other => self.record(out, std::iter::once(("_1", Value::from_json(other)))),
            },
        }
    }

    /// `json_record` of an object record given as its members, without a
    /// serde_json value: the same bytes.
    pub fn json_members(&self, out: &mut Vec<u8>, members: &[crate::jsonscan::Member<'_>]) {
        match &self.format {
            OutputFormat::Json { record_delimiter } => {
                out.push(b'{');
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    // A plain key has no escapes: serde_json writes it as it is.
                    out.push(b'"');
                    out.extend_from_slice(m.key.as_bytes());
                    out.extend_from_slice(b"\":");
                    match &m.value {
                        _ if m.verbatim => out.extend_from_slice(m.bytes),
                        Value::Str(s) => json_string(out, s),
                        _ => match serde_json::from_slice::<serde_json::Number>(m.bytes) {
                            Ok(n) => {
                                let _ = serde_json::to_writer(&mut *out, &n);
                            }
                            Err(_) => json_value(out, &m.value),
                        },
                    }
                }
                out.push(b'}');
                out.extend_from_slice(record_delimiter.as_bytes());
            }
            OutputFormat::Csv(_) => self.record(out, members.iter().map(|m| (m.key, m.value.clone()))),
        }
    }

    fn csv_field(&self, c: &CsvOutput, out: &mut Vec<u8>, text: &str) {
        let quote = match c.quote_fields {
            QuoteFields::Always => true,
            QuoteFields::AsNeeded if self.wide_specials => text.contains(|ch| self.specials.contains(&ch)),
            // Bytes of multi-byte characters are >= 128: never specials.
            QuoteFields::AsNeeded => text.bytes().any(|b| b < 128 && self.ascii_specials[b as usize]),
        };
        if !quote {
            out.extend_from_slice(text.as_bytes());
            return;
        }
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.quote.encode_utf8(&mut buf).as_bytes());
        for ch in text.chars() {
            if ch == c.quote {
                out.extend_from_slice(c.quote_escape.encode_utf8(&mut buf).as_bytes());
            }
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        out.extend_from_slice(c.quote.encode_utf8(&mut buf).as_bytes());
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Missing | Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) if f.is_finite() => {
            let mut s = String::new();
            crate::value::write_float(&mut s, *f);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => json_string(out, s),
        Value::Ts(t) => json_string(out, &t.format()),
        Value::Json(j) => {
            let _ = serde_json::to_writer(&mut *out, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::CsvOutputOptions;

    fn csv(o: CsvOutputOptions<'_>, vals: Vec<Value<'static>>) -> String {
        let w = Writer::new(OutputFormat::Csv(CsvOutput::from_options(&o).unwrap()));
        let mut out = Vec::new();
        w.record(&mut out, vals.into_iter().map(|v| ("x", v)));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_quoting() {
        let d = CsvOutputOptions::default;
        assert_eq!(csv(d(), vec![Value::str("a"), Value::Int(1), Value::Null, Value::Float(2.5)]), "a,1,,2.5\n");
        assert_eq!(csv(d(), vec![Value::str("a,b"), Value::str("say \"x\""), Value::str("l\nm")]), "\"a,b\",\"say \"\"x\"\"\",\"l\nm\"\n");
        assert_eq!(csv(CsvOutputOptions { quote_fields: Some("ALWAYS"), ..d() }, vec![Value::str("a"), Value::Int(1)]), "\"a\",\"1\"\n");
        let o = CsvOutputOptions { field_delimiter: Some("$"), record_delimiter: Some("#"), quote_character: Some("'"), quote_escape_character: Some("\\"), ..d() };
        assert_eq!(csv(o, vec![Value::str("it's"), Value::str("a$b"), Value::str("c")]), "'it\\'s'$'a$b'$c#");
    }

    #[test]
    fn json_records() {
        let w = Writer::new(OutputFormat::Json { record_delimiter: "\n".into() });
        let mut out = Vec::new();
        let vals = vec![("a", Value::str("x\"y")), ("b", Value::Missing), ("c", Value::Null), ("d", Value::Float(1.0)), ("é", Value::Bool(true))];
        w.record(&mut out, vals.into_iter());
        assert_eq!(String::from_utf8(out).unwrap(), "{\"a\":\"x\\\"y\",\"c\":null,\"d\":1.0,\"é\":true}\n");
        let mut out = Vec::new();
        w.json_record(&mut out, &serde_json::json!([1, 2]));
        assert_eq!(String::from_utf8(out).unwrap(), "{\"_1\":[1,2]}\n");
    }
}
