//! Output records: CSV with AWS's quoting options, or JSON objects.

use crate::params::{CsvOutput, OutputFormat, QuoteFields};
use crate::value::{write_float_to, StackText, Value};

pub struct Writer {
    format: OutputFormat,
    /// Characters that force quotes in ASNEEDED mode.
    specials: Vec<char>,
    /// The ASCII ones as a table, so a field is checked byte by byte.
    ascii_specials: [bool; 128],
    /// Whether some special is not ASCII (then fields are checked by char).
    wide_specials: bool,
    /// Whether number text never needs quotes (no special is a character
    /// of it, and quotes are as needed).
    plain_numbers: bool,
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
        let plain_numbers = match &format {
            OutputFormat::Csv(c) => c.quote_fields == QuoteFields::AsNeeded && !specials.iter().any(|&c| NUMBER_CHARS.contains(c)),
            OutputFormat::Json { .. } => true,
        };
        Writer { format, specials, ascii_specials, wide_specials, plain_numbers }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.format, OutputFormat::Json { .. })
    }

    /// One record of named values.
    pub fn record<'n>(&self, out: &mut Vec<u8>, items: impl Iterator<Item = (&'n str, Value<'n>)>) {
        let mut first = true;
        self.begin(out);
        for (name, v) in items {
            self.item(out, &mut first, name, &v);
        }
        self.end(out);
    }

    /// Starts a record written value by value (`item`, then `end`): the
    /// same bytes as `record` of those values.
    #[inline]
    pub fn begin(&self, out: &mut Vec<u8>) {
        if self.is_json() {
            out.push(b'{');
        }
    }

    /// One value of the record `begin` started; `first` is true before the
    /// first value and kept up to date.
    #[inline]
    pub fn item(&self, out: &mut Vec<u8>, first: &mut bool, name: &str, v: &Value<'_>) {
        match &self.format {
            OutputFormat::Csv(c) => {
                if !*first {
                    out.extend_from_slice(c.field_delimiter.as_bytes());
                }
                *first = false;
            }
            OutputFormat::Json { .. } => {
                if matches!(v, Value::Missing) {
                    return;
                }
                if !*first {
                    out.push(b',');
                }
                *first = false;
                json_string(out, name);
                out.push(b':');
            }
        }
        self.value(out, v);
    }

    /// The text of a value in a record, without separator or name (a
    /// MISSING one only in CSV, where it is an empty field).
    #[inline]
    pub fn value(&self, out: &mut Vec<u8>, v: &Value<'_>) {
        match v {
            Value::Str(s) => self.text(out, s),
            Value::Int(i) => self.int(out, *i),
            Value::Float(f) => self.float(out, *f),
            other => match &self.format {
                OutputFormat::Csv(c) => {
                    let mut text = String::new();
                    other.write_text(&mut text);
                    self.csv_field(c, out, &text);
                }
                OutputFormat::Json { .. } => json_value(out, other),
            },
        }
    }

    /// `value` of `Value::Str`.
    #[inline]
    pub fn text(&self, out: &mut Vec<u8>, s: &str) {
        match &self.format {
            OutputFormat::Csv(c) => self.csv_field(c, out, s),
            OutputFormat::Json { .. } => json_string(out, s),
        }
    }

    /// `value` of `Value::Int`.
    #[inline]
    pub fn int(&self, out: &mut Vec<u8>, i: i64) {
        let mut b = itoa::Buffer::new();
        let t = b.format(i);
        match &self.format {
            OutputFormat::Csv(c) if !self.plain_numbers => self.csv_field(c, out, t),
            _ => out.extend_from_slice(t.as_bytes()),
        }
    }

    /// `value` of `Value::Float`.
    #[inline]
    pub fn float(&self, out: &mut Vec<u8>, f: f64) {
        if !f.is_finite() && self.is_json() {
            out.extend_from_slice(b"null");
            return;
        }
        let mut t = StackText::<FLOAT_TEXT>::new();
        let long;
        let text = match write_float_to(&mut t, f) {
            Ok(()) => t.as_str(),
            Err(_) => {
                long = Value::Float(f).to_text();
                &long
            }
        };
        match &self.format {
            OutputFormat::Csv(c) if !self.plain_numbers => self.csv_field(c, out, text),
            _ => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// For `SELECT *` of CSV input whose field delimiter is `delim`: the
    /// check that a record's text (fields and delimiters as they came) is
    /// what `record` writes for its fields, less the record delimiter —
    /// when output is CSV with the same field delimiter, quoted as needed.
    pub fn verbatim(&self, delim: u8) -> Option<Verbatim> {
        let OutputFormat::Csv(c) = &self.format else { return None };
        if c.quote_fields != QuoteFields::AsNeeded || c.field_delimiter.as_bytes() != [delim] || self.wide_specials {
            return None;
        }
        // A field never holds the delimiter; any other special means quotes.
        let others: Vec<u8> = (0..128u8).filter(|&b| self.ascii_specials[b as usize] && b != delim).collect();
        Some(Verbatim { others })
    }

    /// The constant bytes of records whose values are all present and
    /// named `names`, in order: `head`, then before each value its
    /// separator (and name), then `tail` — with `value`s between, the bytes
    /// `begin`, `item`s and `end` write.
    pub fn shape(&self, names: &[&str]) -> (Vec<u8>, Vec<Vec<u8>>, Vec<u8>) {
        let mut head = Vec::new();
        self.begin(&mut head);
        let mut seps = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let mut sep = Vec::new();
            match &self.format {
                OutputFormat::Csv(c) if i > 0 => sep.extend_from_slice(c.field_delimiter.as_bytes()),
                OutputFormat::Csv(_) => {}
                OutputFormat::Json { .. } => {
                    if i > 0 {
                        sep.push(b',');
                    }
                    json_string(&mut sep, name);
                    sep.push(b':');
                }
            }
            seps.push(sep);
        }
        let mut tail = Vec::new();
        self.end(&mut tail);
        (head, seps, tail)
    }

    /// Ends the record `begin` started.
    #[inline]
    pub fn end(&self, out: &mut Vec<u8>) {
        match &self.format {
            OutputFormat::Csv(c) => out.extend_from_slice(c.record_delimiter.as_bytes()),
            OutputFormat::Json { record_delimiter } => {
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

/// `Writer::verbatim`: the specials a record's text may not contain.
pub struct Verbatim {
    others: Vec<u8>,
}

impl Verbatim {
    /// Whether no field of a record whose text is `span` needs quotes.
    #[inline]
    pub fn plain(&self, span: &[u8]) -> bool {
        match self.others[..] {
            [] => true,
            [a] => memchr::memchr(a, span).is_none(),
            [a, b] => memchr::memchr2(a, b, span).is_none(),
            [a, b, c] => memchr::memchr3(a, b, c, span).is_none(),
            _ => !span.iter().any(|b| self.others.contains(b)),
        }
    }
}

/// Every character of an integer's or a float's text (`value::write_float`).
const NUMBER_CHARS: &str = "0123456789-.NaInfity";

/// Floats whose text is longer are written through a `String`.
const FLOAT_TEXT: usize = 40;

/// A JSON string as serde_json writes it: text without characters it
/// escapes (controls, `"` and `\\`) is copied as it is.
#[inline]
fn json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Missing | Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            let mut t = StackText::<FLOAT_TEXT>::new();
            match write_float_to(&mut t, *f) {
                Ok(()) => out.extend_from_slice(t.as_str().as_bytes()),
                Err(_) => out.extend_from_slice(v.to_text().as_bytes()),
            }
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
