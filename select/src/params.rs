//! The request's parameters (InputSerialization, OutputSerialization,
//! ScanRange, RequestProgress), validated with AWS's error codes.

use crate::error::{err, Code, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderInfo {
    Use,
    Ignore,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvInput {
    pub header: HeaderInfo,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
    pub quote: Option<u8>,
    pub quote_escape: Option<u8>,
    /// One or two bytes.
    pub record_delimiter: Vec<u8>,
    pub field_delimiter: u8,
    pub allow_quoted_record_delimiter: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Document,
    Lines,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFormat {
    Csv(CsvInput),
    Json(JsonType),
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteFields {
    Always,
    AsNeeded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOutput {
    pub quote_fields: QuoteFields,
    pub quote: char,
    pub quote_escape: char,
    pub record_delimiter: String,
    pub field_delimiter: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    Csv(CsvOutput),
    Json { record_delimiter: String },
}

/// `ScanRange`: `end` is inclusive; only `end` means the last `end` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanRange {
    pub start: Option<u64>,
    pub end: Option<u64>,
}

impl ScanRange {
    /// The byte range `[start, end)` of an object of `size` bytes whose
    /// records are selected (a record is selected when it starts inside).
    pub fn resolve(&self, size: u64) -> Result<std::ops::Range<u64>> {
        let r = match (self.start, self.end) {
            (None, None) => 0..size,
            (Some(s), None) => s.min(size)..size,
            (None, Some(e)) => size.saturating_sub(e)..size,
            (Some(s), Some(e)) if e < s => return err(Code::InvalidScanRange, "The ScanRange End is before its Start."),
            (Some(s), Some(e)) => s.min(size)..e.saturating_add(1).min(size),
        };
        Ok(r)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectParams {
    pub expression: String,
    pub input: InputFormat,
    pub compression: Compression,
    pub output: OutputFormat,
    pub scan_range: Option<ScanRange>,
    pub progress: bool,
}

/// One byte from an option that must be a single ASCII character; empty
/// means none.
fn one_byte(name: &str, v: &str) -> Result<Option<u8>> {
    match v.as_bytes() {
        [] => Ok(None),
        [b] if b.is_ascii() => Ok(Some(*b)),
        _ => err(Code::InvalidRequestParameter, format!("{name} must be a single ASCII character.")),
    }
}

fn one_char(name: &str, v: &str) -> Result<char> {
    let mut it = v.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok(c),
        _ => err(Code::InvalidRequestParameter, format!("{name} must be a single character.")),
    }
}

/// The raw option strings of `<CSV>` in InputSerialization.
#[derive(Debug, Default, Clone)]
pub struct CsvInputOptions<'a> {
    pub file_header_info: Option<&'a str>,
    pub comments: Option<&'a str>,
    pub quote_escape_character: Option<&'a str>,
    pub record_delimiter: Option<&'a str>,
    pub field_delimiter: Option<&'a str>,
    pub quote_character: Option<&'a str>,
    pub allow_quoted_record_delimiter: Option<&'a str>,
}

impl CsvInput {
    pub fn from_options(o: &CsvInputOptions<'_>) -> Result<CsvInput> {
        let header = match o.file_header_info.map(str::to_ascii_uppercase).as_deref() {
            None | Some("NONE") => HeaderInfo::None,
            Some("USE") => HeaderInfo::Use,
            Some("IGNORE") => HeaderInfo::Ignore,
            Some(_) => return err(Code::InvalidFileHeaderInfo, "FileHeaderInfo must be USE, IGNORE or NONE."),
        };
        let record_delimiter = o.record_delimiter.unwrap_or("\n").as_bytes().to_vec();
        if record_delimiter.is_empty() || record_delimiter.len() > 2 || !record_delimiter.is_ascii() {
            return err(Code::InvalidRequestParameter, "RecordDelimiter must be one or two ASCII characters.");
        }
        let field_delimiter = one_byte("FieldDelimiter", o.field_delimiter.unwrap_or(","))?
            .ok_or_else(|| crate::error::SelectError::new(Code::InvalidRequestParameter, "FieldDelimiter can't be empty."))?;
        let quote = one_byte("QuoteCharacter", o.quote_character.unwrap_or("\""))?;
        let quote_escape = one_byte("QuoteEscapeCharacter", o.quote_escape_character.unwrap_or("\""))?;
        let comment = one_byte("Comments", o.comments.unwrap_or("#"))?;
        let allow_quoted_record_delimiter = match o.allow_quoted_record_delimiter.map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return err(Code::InvalidRequestParameter, "AllowQuotedRecordDelimiter must be TRUE or FALSE."),
        };
        if record_delimiter.contains(&field_delimiter) || quote.is_some_and(|q| q == field_delimiter || record_delimiter.contains(&q)) {
            return err(Code::InvalidRequestParameter, "The CSV delimiters and quote character must differ.");
        }
        Ok(CsvInput { header, comment, quote, quote_escape, record_delimiter, field_delimiter, allow_quoted_record_delimiter })
    }
}

/// The raw option strings of `<CSV>` in OutputSerialization.
#[derive(Debug, Default, Clone)]
pub struct CsvOutputOptions<'a> {
    pub quote_fields: Option<&'a str>,
    pub quote_escape_character: Option<&'a str>,
    pub record_delimiter: Option<&'a str>,
    pub field_delimiter: Option<&'a str>,
    pub quote_character: Option<&'a str>,
}

impl CsvOutput {
    pub fn from_options(o: &CsvOutputOptions<'_>) -> Result<CsvOutput> {
        let quote_fields = match o.quote_fields.map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASNEEDED") => QuoteFields::AsNeeded,
            Some("ALWAYS") => QuoteFields::Always,
            Some(_) => return err(Code::InvalidQuoteFields, "QuoteFields must be ALWAYS or ASNEEDED."),
        };
        let quote = one_char("QuoteCharacter", o.quote_character.unwrap_or("\""))?;
        let quote_escape = one_char("QuoteEscapeCharacter", o.quote_escape_character.unwrap_or("\""))?;
        let record_delimiter = o.record_delimiter.unwrap_or("\n");
        let field_delimiter = o.field_delimiter.unwrap_or(",");
        if record_delimiter.is_empty() || record_delimiter.chars().count() > 2 || field_delimiter.chars().count() != 1 {
            return err(Code::InvalidRequestParameter, "Output delimiters must be one character (two for records).");
        }
        Ok(CsvOutput {
            quote_fields,
            quote,
            quote_escape,
            record_delimiter: record_delimiter.to_string(),
            field_delimiter: field_delimiter.to_string(),
        })
    }
}

pub fn parse_compression(v: Option<&str>) -> Result<Compression> {
    match v.map(str::to_ascii_uppercase).as_deref() {
        None | Some("NONE") => Ok(Compression::None),
        Some("GZIP") => Ok(Compression::Gzip),
        Some("BZIP2") => Ok(Compression::Bzip2),
        Some(_) => err(Code::InvalidCompressionFormat, "CompressionType must be NONE, GZIP or BZIP2."),
    }
}

pub fn parse_json_type(v: Option<&str>) -> Result<JsonType> {
    match v.map(str::to_ascii_uppercase).as_deref() {
        Some("DOCUMENT") => Ok(JsonType::Document),
        Some("LINES") => Ok(JsonType::Lines),
        None => err(Code::MissingRequiredParameter, "JSON Type is required."),
        Some(_) => err(Code::InvalidJsonType, "JSON Type must be DOCUMENT or LINES."),
    }
}

impl SelectParams {
    /// Checks the combinations AWS refuses.
    pub fn validate(&self) -> Result<()> {
        if self.expression.trim().is_empty() {
            return err(Code::MissingRequiredParameter, "Expression is required.");
        }
        if self.input == InputFormat::Parquet && self.compression != Compression::None {
            return err(Code::ObjectSerializationConflict, "Parquet input can't be compressed with GZIP or BZIP2.");
        }
        if let Some(r) = &self.scan_range {
            let ok = self.compression == Compression::None
                && match &self.input {
                    InputFormat::Csv(c) => !c.allow_quoted_record_delimiter,
                    InputFormat::Json(t) => *t == JsonType::Lines,
                    InputFormat::Parquet => false,
                };
            if !ok {
                return err(
                    Code::UnsupportedScanRangeInput,
                    "ScanRange is supported for uncompressed CSV (without quoted record delimiters) and JSON LINES only.",
                );
            }
            if let (Some(s), Some(e)) = (r.start, r.end) {
                if e < s {
                    return err(Code::InvalidScanRange, "The ScanRange End is before its Start.");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_options() {
        let c = CsvInput::from_options(&CsvInputOptions::default()).unwrap();
        assert_eq!((c.field_delimiter, c.record_delimiter.as_slice(), c.quote, c.comment), (b',', &b"\n"[..], Some(b'"'), Some(b'#')));
        let bad = [
            CsvInputOptions { file_header_info: Some("MAYBE"), ..Default::default() },
            CsvInputOptions { field_delimiter: Some(",,"), ..Default::default() },
            CsvInputOptions { field_delimiter: Some("¦"), ..Default::default() },
            CsvInputOptions { record_delimiter: Some("abc"), ..Default::default() },
            CsvInputOptions { quote_character: Some(","), ..Default::default() },
            CsvInputOptions { allow_quoted_record_delimiter: Some("yes"), ..Default::default() },
        ];
        let codes: Vec<Code> = bad.iter().map(|o| CsvInput::from_options(o).unwrap_err().code).collect();
        assert_eq!(codes[0], Code::InvalidFileHeaderInfo);
        assert!(codes[1..].iter().all(|c| *c == Code::InvalidRequestParameter));
        let o = CsvOutputOptions { quote_fields: Some("sometimes"), ..Default::default() };
        assert_eq!(CsvOutput::from_options(&o).unwrap_err().code, Code::InvalidQuoteFields);
        assert_eq!(parse_compression(Some("zip")).unwrap_err().code, Code::InvalidCompressionFormat);
        assert_eq!(parse_json_type(Some("x")).unwrap_err().code, Code::InvalidJsonType);
    }

    #[test]
    fn scan_ranges() {
        let r = |s, e| ScanRange { start: s, end: e };
        assert_eq!(r(None, None).resolve(100).unwrap(), 0..100);
        assert_eq!(r(Some(10), None).resolve(100).unwrap(), 10..100);
        assert_eq!(r(None, Some(30)).resolve(100).unwrap(), 70..100);
        assert_eq!(r(Some(10), Some(19)).resolve(100).unwrap(), 10..20);
        assert_eq!(r(Some(10), Some(1000)).resolve(100).unwrap(), 10..100);
        assert_eq!(r(Some(500), None).resolve(100).unwrap(), 100..100);
        assert_eq!(r(Some(10), Some(5)).resolve(100).unwrap_err().code, Code::InvalidScanRange);
    }
}
