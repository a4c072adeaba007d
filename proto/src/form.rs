//! Streaming `multipart/form-data` (RFC 7578) for browser POST uploads.
//!
//! Sans-io: [`FormParser::feed`] takes the bytes received so far and returns
//! how many it consumed and at most one [`FormEvent`]. Part bodies come out
//! as ranges of the input, never copied, so the file part of a POST upload
//! streams through at any size; only the bytes that might begin a boundary
//! are held back (the caller keeps them and feeds them again with more).
//! Input may be split at any byte.

use std::ops::Range;

/// Longest boundary (RFC 2046).
pub const MAX_BOUNDARY_BYTES: usize = 70;
/// Longest header block of one part.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines in one part.
pub const MAX_PART_HEADERS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the Content-Type is not multipart/form-data with a valid boundary")]
    BadContentType,
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
    #[error("the multipart body ended early")]
    Truncated,
}

/// The headers of one part that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// The field name (`Content-Disposition: form-data; name="..."`).
    pub name: String,
    /// Present for a file part (possibly empty).
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormEvent {
    PartStart(PartHeaders),
    /// Bytes of the current part's body: this range of the input just fed.
    Data(Range<usize>),
    PartEnd,
    /// The closing boundary was seen; whatever follows is epilogue.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// A streaming multipart/form-data parser for one body.
#[derive(Debug, Clone)]
pub struct FormParser {
    /// `\r\n--` + boundary: what ends a part body.
    delim: Vec<u8>,
    state: State,
}

/// The boundary of a `multipart/form-data; boundary=...` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, FormError> {
    let mut parts = content_type.split(';');
    let mime = parts.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(FormError::BadContentType);
    }
    for p in parts {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        if n.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
            let ok = !v.is_empty()
                && v.len() <= MAX_BOUNDARY_BYTES
                && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                && !v.ends_with(' ');
            return if ok { Ok(v.to_string()) } else { Err(FormError::BadContentType) };
        }
    }
    Err(FormError::BadContentType)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                let at = i + p;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// Length of the longest suffix of `hay` that is a proper prefix of `needle`.
fn partial_suffix(hay: &[u8], needle: &[u8]) -> usize {
    let max = hay.len().min(needle.len().saturating_sub(1));
    (1..=max).rev().find(|&n| hay[hay.len() - n..] == needle[..n]).unwrap_or(0)
}

impl FormParser {
    pub fn new(boundary: &str) -> Self {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        FormParser { delim, state: State::Preamble }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes a prefix of `input`. `(0, None)` asks for more bytes (pass
    /// the unconsumed ones again with what follows); with `eof` set that is
    /// an error instead. After `End` everything is consumed silently.
    pub fn feed(&mut self, input: &[u8], eof: bool) -> Result<(usize, Option<FormEvent>), FormError> {
        let need_more = |eof: bool| if eof { Err(FormError::Truncated) } else { Ok((0, None)) };
        match self.state {
            State::Done => Ok((input.len(), None)),
            State::Preamble => {
                // The first boundary may start the body (no CRLF before it).
                let dash = &self.delim[2..];
                if input.starts_with(dash) {
                    self.state = State::AfterDelimiter;
                    return Ok((dash.len(), None));
                }
                match find(input, &self.delim) {
                    Some(at) => {
                        self.state = State::AfterDelimiter;
                        Ok((at + self.delim.len(), None))
                    }
                    None => {
                        // Preamble text is dropped, keeping what may begin the boundary.
                        let keep = partial_suffix(input, &self.delim).max(partial_suffix(input, dash));
                        let drop = input.len() - keep;
                        if drop > 0 {
                            Ok((drop, None))
                        } else {
                            need_more(eof)
                        }
                    }
                }
            }
            State::AfterDelimiter => {
                // Transport padding (spaces, tabs) may precede the line end.
                let pad = input.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
                if pad > MAX_PART_HEADER_BYTES {
                    return Err(FormError::Malformed("boundary line too long"));
                }
                let rest = &input[pad..];
                if rest.len() < 2 {
                    return need_more(eof);
                }
                if rest.starts_with(b"--") {
                    self.state = State::Done;
                    return Ok((input.len(), Some(FormEvent::End)));
                }
                if rest.starts_with(b"\r\n") {
                    self.state = State::Headers;
                    return Ok((pad + 2, None));
                }
                Err(FormError::Malformed("garbage after a boundary"))
            }
            State::Headers => {
                let end = if input.starts_with(b"\r\n") { Some(0) } else { find(input, b"\r\n\r\n").map(|p| p + 2) };
                let Some(end) = end else {
                    if input.len() > MAX_PART_HEADER_BYTES {
                        return Err(FormError::Malformed("part headers too long"));
                    }
                    return need_more(eof);
                };
                if end > MAX_PART_HEADER_BYTES {
                    return Err(FormError::Malformed("part headers too long"));
                }
                let headers = parse_part_headers(&input[..end])?;
                self.state = State::Body;
                Ok((end + 2, Some(FormEvent::PartStart(headers))))
            }
            State::Body => match find(input, &self.delim) {
                Some(0) => {
                    self.state = State::AfterDelimiter;
                    Ok((self.delim.len(), Some(FormEvent::PartEnd)))
                }
                Some(at) => Ok((at, Some(FormEvent::Data(0..at)))),
                None => {
                    let safe = input.len() - partial_suffix(input, &self.delim);
                    if safe > 0 {
                        Ok((safe, Some(FormEvent::Data(0..safe))))
                    } else {
                        need_more(eof)
                    }
                }
            },
        }
    }
}

/// Parses the header block of a part (each line ending in CRLF).
fn parse_part_headers(block: &[u8]) -> Result<PartHeaders, FormError> {
    let text = std::str::from_utf8(block).map_err(|_| FormError::Malformed("part headers are not UTF-8"))?;
    let mut out = PartHeaders::default();
    let mut disposition = false;
    for (i, line) in text.split("\r\n").filter(|l| !l.is_empty()).enumerate() {
        if i >= MAX_PART_HEADERS {
            return Err(FormError::Malformed("too many part headers"));
        }
        let (name, value) = line.split_once(':').ok_or(FormError::Malformed("part header without a colon"))?;
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err(FormError::Malformed("part is not form-data"));
            }
            for (n, v) in disposition_params(params)? {
                if n.eq_ignore_ascii_case("name") {
                    out.name = v;
                } else if n.eq_ignore_ascii_case("filename") {
                    out.filename = Some(v);
                }
            }
            disposition = true;
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            out.content_type = Some(value.to_string());
        }
    }
    if !disposition {
        return Err(FormError::Malformed("part without Content-Disposition"));
    }
    Ok(out)
}

/// `; name="a"; filename="b"` parameters; quoted strings may hold `;` and
/// backslash escapes.
fn disposition_params(s: &str) -> Result<Vec<(String, String)>, FormError> {
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches([';', ' ', '\t']);
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(FormError::Malformed("disposition parameter without a value"))?;
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or(FormError::Malformed("unterminated quoted parameter"))?;
            value = v;
            rest = &q[end + 1..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
        rest = rest.trim_start_matches([';', ' ', '\t']);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes and collects the parts.
    fn parse_in_steps(body: &[u8], boundary: &str, step: usize) -> Result<Vec<(PartHeaders, Vec<u8>)>, FormError> {
        let mut p = FormParser::new(boundary);
        let mut parts: Vec<(PartHeaders, Vec<u8>)> = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            let eof = fed == body.len();
            let (n, ev) = p.feed(&pending, eof)?;
            let idle = n == 0 && ev.is_none();
            match ev {
                Some(FormEvent::PartStart(h)) => parts.push((h, Vec::new())),
                Some(FormEvent::Data(r)) => parts.last_mut().expect("data in a part").1.extend_from_slice(&pending[r]),
                Some(FormEvent::PartEnd) | None => {}
                Some(FormEvent::End) => return Ok(parts),
            }
            pending.drain(..n);
            if idle {
                let take = step.min(body.len() - fed);
                pending.extend_from_slice(&body[fed..fed + take]);
                fed += take;
            }
        }
    }

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nfoo/${filename}\r\n--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a;b\\\".txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--X world\r\n--XyZ--\r\nepilogue";

    #[test]
    fn parses_split_at_every_size() {
        for step in 1..BODY.len() + 1 {
            let parts = parse_in_steps(BODY, "XyZ", step).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(parts.len(), 2, "step {step}");
            assert_eq!(parts[0].0.name, "key");
            assert_eq!(parts[0].1, b"foo/${filename}");
            assert_eq!(parts[1].0.filename.as_deref(), Some("a;b\".txt"));
            assert_eq!(parts[1].0.content_type.as_deref(), Some("text/plain"));
            assert_eq!(parts[1].1, b"hello\r\n--X world", "step {step}");
        }
    }

    #[test]
    fn boundaries_from_content_type() {
        assert_eq!(boundary("multipart/form-data; boundary=abc").as_deref(), Ok("abc"));
        assert_eq!(boundary("Multipart/Form-Data;boundary=\"a b\"").as_deref(), Ok("a b"));
        for bad in ["text/plain; boundary=a", "multipart/form-data", "multipart/form-data; boundary=", &format!("multipart/form-data; boundary={}", "x".repeat(71))] {
            assert_eq!(boundary(bad), Err(FormError::BadContentType), "{bad}");
        }
    }

    #[test]
    fn errors() {
        let truncated = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue";
        assert_eq!(parse_in_steps(truncated, "b", 7), Err(FormError::Truncated));
        let no_disp = b"--b\r\nContent-Type: x\r\n\r\nv\r\n--b--";
        assert!(matches!(parse_in_steps(no_disp, "b", 100), Err(FormError::Malformed(_))));
        let big = [b"--b\r\nX: ".as_slice(), &vec![b'a'; MAX_PART_HEADER_BYTES + 10]].concat();
        assert!(matches!(parse_in_steps(&big, "b", 4096), Err(FormError::Malformed(_))));
        let garbage = b"--bXX\r\n";
        assert!(matches!(parse_in_steps(garbage, "b", 100), Err(FormError::Malformed(_))));
    }

    /// Arbitrary bytes never panic, whatever the split.
    #[test]
    fn no_panic_on_noise() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"-\r\nb=\";:Content-Disposition form-data name filename";
        for _ in 0..3000 {
            let len = (next() % 300) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            if next() % 2 == 0 {
                body.splice(0..0, b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n".iter().copied());
            }
            let step = 1 + (next() % 40) as usize;
            let _ = parse_in_steps(&body, "b", step);
        }
    }
}
