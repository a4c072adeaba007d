//! A streaming CSV tokenizer with AWS's rules: a record ends at the record
//! delimiter (inside quotes too, unless AllowQuotedRecordDelimiter); a
//! field that starts with the quote character is quoted, where a doubled
//! quote or the escape character followed by a character stands for that
//! character; lines starting with the comment character are skipped.
//!
//! Records are found with `memchr` (SIMD) and unquoted fields are ranges of
//! the input, never copied; only fields with quotes are rewritten.

use memchr::{memchr, memchr2, memchr3, memchr_iter};

use crate::error::{err, Code, Result};
use crate::params::CsvInput;

/// Longest record (AWS's limit is 1 MB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Most fields in one record.
pub const MAX_FIELDS: usize = 100_000;

/// Where a field's bytes are: the batch's input, or text rewritten from a
/// quoted field.
const IN_EXTRA: u32 = 1 << 31;

/// Complete records of one piece of input.
#[derive(Default)]
pub struct CsvBatch {
    /// The input bytes the records were cut from.
    pub data: Vec<u8>,
    /// Bytes of `data` the records cover (the rest went back to pending).
    pub used: usize,
    /// Unquoted text of quoted fields.
    pub extra: Vec<u8>,
    /// Field ranges (start with `IN_EXTRA` set: in `extra`).
    fields: Vec<(u32, u32)>,
    /// Per record: end index into `fields` and the object offset it starts at.
    records: Vec<(u32, u64)>,
}

impl CsvBatch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.used = 0;
        self.extra.clear();
        self.fields.clear();
        self.records.clear();
    }

    /// The batch's text, checked to be UTF-8.
    pub fn texts(&self) -> Result<(&str, &str)> {
        let bad = || crate::error::SelectError::new(Code::InvalidTextEncoding, "The object is not valid UTF-8.");
        let data = std::str::from_utf8(&self.data[..self.used]).map_err(|_| bad())?;
        let extra = std::str::from_utf8(&self.extra).map_err(|_| bad())?;
        Ok((data, extra))
    }

    /// The object offset record `r` starts at.
    pub fn offset(&self, r: usize) -> u64 {
        self.records[r].1
    }

    fn field_range(&self, r: usize) -> std::ops::Range<usize> {
        let from = if r == 0 { 0 } else { self.records[r - 1].0 as usize };
        from..self.records[r].0 as usize
    }

    /// Field `i` of record `r`: `Some(None)` when the record is shorter,
    /// None when the field's bounds split a UTF-8 sequence (`record` fails).
    #[inline]
    pub fn field<'a>(&self, texts: (&'a str, &'a str), r: usize, i: usize) -> Option<Option<&'a str>> {
        let fr = self.field_range(r);
        let Some(&(s, e)) = self.fields[fr].get(i) else { return Some(None) };
        let src = if s & IN_EXTRA != 0 { texts.1 } else { texts.0 };
        src.get((s & !IN_EXTRA) as usize..(e & !IN_EXTRA) as usize).map(Some)
    }

    /// How many fields record `r` has.
    #[inline]
    pub fn field_count(&self, r: usize) -> usize {
        self.field_range(r).len()
    }

    /// Where record `r`'s fields are in `data`, when they all are there
    /// (none was quoted) and each follows the one before after a one-byte
    /// delimiter: the record's text from its first field's start to its
    /// last field's end, fields and delimiters as they came.
    #[inline]
    pub fn verbatim(&self, r: usize) -> Option<std::ops::Range<usize>> {
        let f = &self.fields[self.field_range(r)];
        let (&(s, _), &(_, e)) = (f.first()?, f.last()?);
        let ok = f.iter().all(|&(s, _)| s & IN_EXTRA == 0) && f.windows(2).all(|w| w[1].0 == w[0].1 + 1);
        ok.then_some(s as usize..e as usize)
    }

    /// The fields of record `r`, for a batch whose fields are valid
    /// (`fields_valid`; a field that isn't reads as empty).
    #[inline]
    pub fn record_fields<'a>(&'a self, texts: (&'a str, &'a str), r: usize) -> impl Iterator<Item = &'a str> + 'a {
        self.fields[self.field_range(r)].iter().map(move |&(s, e)| {
            let src = if s & IN_EXTRA != 0 { texts.1 } else { texts.0 };
            src.get((s & !IN_EXTRA) as usize..(e & !IN_EXTRA) as usize).unwrap_or("")
        })
    }

    /// Whether `record` succeeds for every record in `rows` (each field
    /// starts and ends on a character boundary).
    pub fn fields_valid(&self, texts: (&str, &str), rows: std::ops::Range<usize>) -> bool {
        if rows.is_empty() {
            return true;
        }
        let from = self.field_range(rows.start).start;
        let to = self.records[rows.end - 1].0 as usize;
        self.fields[from..to].iter().all(|&(s, e)| {
            let src = if s & IN_EXTRA != 0 { texts.1 } else { texts.0 };
            src.is_char_boundary((s & !IN_EXTRA) as usize) && src.is_char_boundary((e & !IN_EXTRA) as usize)
        })
    }

    /// Fills `out` with the fields of record `r`; returns its object offset.
    pub fn record<'a>(&self, texts: (&'a str, &'a str), r: usize, out: &mut Vec<&'a str>) -> Result<u64> {
        out.clear();
        let from = if r == 0 { 0 } else { self.records[r - 1].0 as usize };
        let (to, offset) = self.records[r];
        for &(s, e) in &self.fields[from..to as usize] {
            let src = if s & IN_EXTRA != 0 { texts.1 } else { texts.0 };
            let (s, e) = ((s & !IN_EXTRA) as usize, (e & !IN_EXTRA) as usize);
            // A field boundary inside a UTF-8 sequence means the bytes
            // around it were not valid text.
            let f = src
                .get(s..e)
                .ok_or_else(|| crate::error::SelectError::new(Code::InvalidTextEncoding, "The object is not valid UTF-8."))?;
            out.push(f);
        }
        Ok(offset)
    }
}

pub struct CsvTokenizer {
    opts: CsvInput,
    /// Bytes of an unfinished record carried to the next piece.
    pending: Vec<u8>,
    /// Object offset of `pending[0]`.
    offset: u64,
    /// The "\n" delimiter also ends "\r\n" records.
    strip_cr: bool,
}

impl CsvTokenizer {
    pub fn new(opts: CsvInput, start_offset: u64) -> CsvTokenizer {
        let strip_cr = opts.record_delimiter == b"\n";
        CsvTokenizer { opts, pending: Vec::new(), offset: start_offset, strip_cr }
    }

    pub fn field_delimiter(&self) -> u8 {
        self.opts.field_delimiter
    }

    /// Input dropped before the first record (a scan range's start).
    pub fn skip(&mut self, n: u64) {
        self.offset += n;
    }

    /// Cuts the records completed by `input` into `batch` (cleared first).
    /// At `eof` an unterminated last record counts too.
    pub fn push(&mut self, input: &[u8], eof: bool, batch: &mut CsvBatch) -> Result<()> {
        batch.clear();
        let mut data = std::mem::take(&mut batch.data);
        data.clear();
        data.extend_from_slice(&self.pending);
        data.extend_from_slice(input);
        self.pending.clear();
        let base = self.offset;
        let mut pos = 0usize;
        while pos < data.len() {
            let Some(end) = self.record_end(&data, pos)? else { break };
            let (rec_end, next) = match end {
                Some((e, n)) => (e, n),
                None if eof => (data.len(), data.len()),
                None => break,
            };
            if rec_end - pos > MAX_RECORD_BYTES {
                return err(Code::OverMaxRecordSize, "A record is longer than 1 MB.");
            }
            let mut e = rec_end;
            if self.strip_cr && e > pos && data[e - 1] == b'\r' {
                e -= 1;
            }
            let skip = self.opts.comment.is_some_and(|c| data.get(pos) == Some(&c));
            if !skip {
                self.split(&data, pos, e, batch)?;
                batch.records.push((batch.fields.len() as u32, base + pos as u64));
            }
            pos = next;
        }
        if data.len() - pos > MAX_RECORD_BYTES {
            return err(Code::OverMaxRecordSize, "A record is longer than 1 MB.");
        }
        self.pending.extend_from_slice(&data[pos..]);
        self.offset = base + pos as u64;
        batch.used = pos;
        batch.data = data;
        Ok(())
    }

    /// The end of the record starting at `pos`: `Some(Some((end, next)))`
    /// with the delimiter at `end..next`, `Some(None)` when it isn't in
    /// `data` yet.
    fn record_end(&self, data: &[u8], pos: usize) -> Result<Option<Option<(usize, usize)>>> {
        let rd = &self.opts.record_delimiter;
        let first = rd[0];
        let mut i = pos;
        let quote = self.opts.quote.filter(|_| self.opts.allow_quoted_record_delimiter);
        loop {
            let hit = match quote {
                None => memchr(first, &data[i..]),
                Some(q) => memchr2(first, q, &data[i..]),
            };
            let Some(off) = hit else { return Ok(Some(None)) };
            let at = i + off;
            // Only a quote that starts a field opens a quoted section.
            let field_start = at == pos || data[at - 1] == self.opts.field_delimiter;
            if Some(data[at]) == quote && data[at] != first && !field_start {
                i = at + 1;
                continue;
            }
            if Some(data[at]) == quote && data[at] != first {
                // A quoted field: skip to its closing quote.
                match self.quoted_end(data, at + 1) {
                    Some(close) => {
                        i = close + 1;
                        continue;
                    }
                    None => return Ok(Some(None)),
                }
            }
            if rd.len() == 2 {
                match data.get(at + 1) {
                    Some(&b) if b == rd[1] => return Ok(Some(Some((at, at + 2)))),
                    Some(_) => {
                        i = at + 1;
                        continue;
                    }
                    None => return Ok(Some(None)),
                }
            }
            return Ok(Some(Some((at, at + 1))));
        }
    }

    /// The closing quote of a quoted field whose text starts at `i`.
    fn quoted_end(&self, data: &[u8], mut i: usize) -> Option<usize> {
        let q = self.opts.quote?;
        let esc = self.opts.quote_escape.filter(|e| *e != q);
        loop {
            let off = match esc {
                Some(e) => memchr2(q, e, &data[i..])?,
                None => memchr(q, &data[i..])?,
            };
            let at = i + off;
            if Some(data[at]) == esc {
                i = at + 2;
                if i > data.len() {
                    return None;
                }
                continue;
            }
            if data.get(at + 1) == Some(&q) {
                i = at + 2;
                continue;
            }
            if at + 1 == data.len() {
                // Can't tell yet whether a doubled quote follows.
                return None;
            }
            return Some(at);
        }
    }

    fn push_field(&self, batch: &mut CsvBatch, s: usize, e: usize) -> Result<()> {
        if batch.fields.len() - batch.records.last().map_or(0, |r| r.0 as usize) >= MAX_FIELDS {
            return err(Code::OverMaxColumn, "A record has too many fields.");
        }
        batch.fields.push((s as u32, e as u32));
        Ok(())
    }

    /// Splits the record `data[s..e]` into fields.
    fn split(&self, data: &[u8], s: usize, e: usize, batch: &mut CsvBatch) -> Result<()> {
        let rec = &data[s..e];
        let fd = self.opts.field_delimiter;
        let has_quote = self.opts.quote.is_some_and(|q| memchr(q, rec).is_some());
        if !has_quote {
            let mut start = s;
            for off in memchr_iter(fd, rec) {
                self.push_field(batch, start, s + off)?;
                start = s + off + 1;
            }
            return self.push_field(batch, start, e);
        }
        let q = self.opts.quote.unwrap_or(0);
        let esc = self.opts.quote_escape;
        let mut i = s;
        loop {
            if i < e && data[i] == q {
                // Quoted: unquote into `extra`, then take what follows the
                // closing quote up to the delimiter as it is.
                let start = batch.extra.len();
                let mut j = i + 1;
                let mut closed = false;
                while j < e {
                    let Some(off) = memchr3(q, esc.unwrap_or(q), q, &data[j..e]) else {
                        batch.extra.extend_from_slice(&data[j..e]);
                        j = e;
                        break;
                    };
                    let at = j + off;
                    batch.extra.extend_from_slice(&data[j..at]);
                    if esc.is_some_and(|x| x != q && data[at] == x) {
                        match data.get(at + 1).filter(|_| at + 1 < e) {
                            Some(&c) => batch.extra.push(c),
                            None => batch.extra.push(data[at]),
                        }
                        j = at + 2;
                    } else if at + 1 < e && data[at + 1] == q {
                        batch.extra.push(q);
                        j = at + 2;
                    } else {
                        j = at + 1;
                        closed = true;
                        break;
                    }
                }
                let _ = closed;
                let stop = memchr(fd, &data[j.min(e)..e]).map_or(e, |o| j + o);
                batch.extra.extend_from_slice(&data[j.min(e)..stop]);
                let end = batch.extra.len();
                if end >= IN_EXTRA as usize {
                    return err(Code::OverMaxRecordSize, "A batch of records is too large.");
                }
                self.push_field(batch, start | IN_EXTRA as usize, end | IN_EXTRA as usize)?;
                if stop >= e {
                    return Ok(());
                }
                i = stop + 1;
            } else {
                let stop = memchr(fd, &data[i..e]).map_or(e, |o| i + o);
                self.push_field(batch, i, stop)?;
                if stop >= e {
                    return Ok(());
                }
                i = stop + 1;
            }
            if i == e {
                // The record ends with a delimiter: one more, empty field.
                return self.push_field(batch, e, e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::CsvInputOptions;

    fn parse_with(opts: CsvInputOptions<'_>, input: &[u8], piece: usize) -> Result<Vec<Vec<String>>> {
        let mut t = CsvTokenizer::new(CsvInput::from_options(&opts)?, 0);
        let mut out = Vec::new();
        let mut batch = CsvBatch::default();
        let chunks: Vec<&[u8]> = if input.is_empty() { vec![] } else { input.chunks(piece).collect() };
        for (n, c) in chunks.iter().enumerate() {
            t.push(c, n + 1 == chunks.len(), &mut batch)?;
            let texts = batch.texts()?;
            let mut fields = Vec::new();
            for r in 0..batch.len() {
                batch.record(texts, r, &mut fields)?;
                out.push(fields.iter().map(|s| s.to_string()).collect());
            }
        }
        Ok(out)
    }

    fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
    }

    #[test]
    fn table() {
        let d = CsvInputOptions::default;
        let cases: Vec<(CsvInputOptions<'_>, &str, Vec<Vec<String>>)> = vec![
            (d(), "a,b\nc,d\n", rows(&[&["a", "b"], &["c", "d"]])),
            (d(), "a,b\nc,d", rows(&[&["a", "b"], &["c", "d"]])),
            (d(), "a,b\r\nc,\r\n", rows(&[&["a", "b"], &["c", ""]])),
            (d(), ",first,,\n", rows(&[&["", "first", "", ""]])),
            (d(), "\"x,y\",\"say \"\"hi\"\"\",z\n", rows(&[&["x,y", "say \"hi\"", "z"]])),
            (d(), "\"a\nb\",c\n", rows(&[&["a"], &["b\"", "c"]])),
            (CsvInputOptions { allow_quoted_record_delimiter: Some("TRUE"), ..d() }, "\"a\nb\",c\nd\n", rows(&[&["a\nb", "c"], &["d"]])),
            (d(), "#comment\na\n", rows(&[&["a"]])),
            (CsvInputOptions { comments: Some(""), ..d() }, "#x\n", rows(&[&["#x"]])),
            (CsvInputOptions { field_delimiter: Some("|"), record_delimiter: Some("\t"), ..d() }, "1|2\t3|4\t", rows(&[&["1", "2"], &["3", "4"]])),
            (CsvInputOptions { record_delimiter: Some("\r\n"), ..d() }, "a\rb,c\r\nd\r\n", rows(&[&["a\rb", "c"], &["d"]])),
            (CsvInputOptions { quote_escape_character: Some("\\"), ..d() }, "\"a\\\"b\",c\n", rows(&[&["a\"b", "c"]])),
            (CsvInputOptions { quote_character: Some("'"), ..d() }, "'a,b',\"c\n", rows(&[&["a,b", "\"c"]])),
            (d(), "\"ab\"cd,e\n", rows(&[&["abcd", "e"]])),
            (d(), "\"unterminated,x\n", rows(&[&["unterminated,x"]])),
            (d(), "héllo,wörld\n", rows(&[&["héllo", "wörld"]])),
            (d(), "\n\n", rows(&[&[""], &[""]])),
            (d(), "", rows(&[])),
        ];
        for (opts, input, want) in cases {
            for piece in [1, 2, 3, 7, 1000] {
                let got = parse_with(opts.clone(), input.as_bytes(), piece).unwrap();
                assert_eq!(got, want, "{input:?} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn limits_and_encoding() {
        let long = format!("{}\n", "a".repeat(MAX_RECORD_BYTES + 1));
        let e = parse_with(CsvInputOptions::default(), long.as_bytes(), 64 * 1024).unwrap_err();
        assert_eq!(e.code, Code::OverMaxRecordSize);
        let ok = format!("{}\n", "a".repeat(MAX_RECORD_BYTES));
        assert_eq!(parse_with(CsvInputOptions::default(), ok.as_bytes(), 64 * 1024).unwrap().len(), 1);
        let many = format!("{}\n", ",".repeat(MAX_FIELDS));
        assert_eq!(parse_with(CsvInputOptions::default(), many.as_bytes(), 4096).unwrap_err().code, Code::OverMaxColumn);
        let e = parse_with(CsvInputOptions::default(), b"a,\xff\n", 10).unwrap_err();
        assert_eq!(e.code, Code::InvalidTextEncoding);
        // Valid as a whole once fields are joined, but not field by field.
        let e = parse_with(CsvInputOptions { quote_character: Some("") , ..Default::default() }, b"\xc3,\xa9\n", 10).unwrap_err();
        assert_eq!(e.code, Code::InvalidTextEncoding);
    }

    #[test]
    fn offsets() {
        let opts = CsvInput::from_options(&CsvInputOptions::default()).unwrap();
        let mut t = CsvTokenizer::new(opts, 100);
        let mut b = CsvBatch::default();
        t.push(b"ab\ncd\nef", false, &mut b).unwrap();
        let texts = b.texts().unwrap();
        let mut f = Vec::new();
        assert_eq!(b.record(texts, 0, &mut f).unwrap(), 100);
        assert_eq!(b.record(texts, 1, &mut f).unwrap(), 103);
        t.push(b"\n", false, &mut b).unwrap();
        let texts = b.texts().unwrap();
        let mut f = Vec::new();
        assert_eq!(b.record(texts, 0, &mut f).unwrap(), 106);
        assert_eq!(f, vec!["ef"]);
    }
}
