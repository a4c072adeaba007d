//! Sans-io decoder of `Content-Encoding: aws-chunked` bodies (after any HTTP-level
//! framing is removed):
//!
//! ```text
//! hex-size[;chunk-signature=<64 hex>]\r\n<data>\r\n      ... repeated
//! 0[;chunk-signature=<64 hex>]\r\n                       final chunk
//! name:value\r\n ...                                     trailers, if announced
//! [x-amz-trailer-signature:<64 hex>\r\n]                 signed-trailer mode
//! \r\n
//! ```
//!
//! In signed mode every chunk signature is verified, each chaining on the previous
//! one from the request's seed signature, and so is the trailer signature.
//!
//! **Data is handed out before its chunk's signature is checked** (the signature
//! covers the whole chunk and is checked at its end). A caller must not commit
//! anything it decoded until [`AwsChunkedDecoder::is_done`] is true (or
//! [`AwsChunkedDecoder::finish`] returned `Ok`) and the trailers have been checked.
//!
//! Leniency, for what real writers send: chunk sizes in either hex case; trailer lines
//! ending in LF or CRLF, with spaces around `:`; an empty line between the final chunk
//! and the trailers; the final empty line missing at the end of the input. The last
//! two are only known at the end, so the caller's protocol is: feed every body byte,
//! then call [`AwsChunkedDecoder::finish`] at the end of the input.
//!
//! Errors, chosen after what S3 answers: broken framing is `IncompleteBody`
//! ("The request body terminated unexpectedly"); exceeding a limit or sending
//! trailers nobody announced is `InvalidRequest`; any chunk or trailer signature that
//! is missing, malformed or wrong is `SignatureDoesNotMatch`.

use std::ops::Range;

use ring::digest;

use crate::error::{S3Error, S3ErrorCode};
use crate::sigv4::ChunkSigner;

/// Longest chunk header line (`hex;chunk-signature=...`), without its CRLF. A signed
/// header is 81 bytes; the slack is for other chunk extensions.
pub const MAX_CHUNK_HEADER_LINE_BYTES: usize = 4096;
/// Largest chunk. SDKs send 64 KiB (Java v1: 128 KiB); data is never buffered here,
/// so the bound only limits how much unverified data one signature covers.
pub const MAX_CHUNK_SIZE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest trailer section, all lines with their line ends.
pub const MAX_TRAILER_SECTION_BYTES: usize = 16 * 1024;
/// Most trailer lines (the trailer signature included).
pub const MAX_TRAILER_LINES: usize = 16;

const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";
const CHUNK_SIGNATURE: &str = "chunk-signature";

#[derive(Debug)]
enum State {
    /// Reading a chunk header line into `line`.
    Header,
    /// Inside a chunk's data.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after a chunk's data; `seen` bytes of it so far.
    DataEnd {
        seen: usize,
    },
    /// After the final chunk: trailer lines, then an empty line.
    Trailer,
    Done,
}

fn incomplete(detail: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::IncompleteBody,
        format!("The request body terminated unexpectedly: {detail}"),
    )
}

fn invalid(detail: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, detail)
}

fn signature_mismatch() -> S3Error {
    S3Error::new(S3ErrorCode::SignatureDoesNotMatch)
}

fn parse_hex_signature(value: &[u8]) -> Result<[u8; 32], S3Error> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|_| signature_mismatch())?;
    Ok(out)
}

/// Decoder of one aws-chunked body. See the module documentation.
pub struct AwsChunkedDecoder {
    signer: Option<ChunkSigner>,
    trailer_expected: bool,
    expected_len: Option<u64>,
    state: State,
    /// Partial header or trailer line.
    line: Vec<u8>,
    /// Signature of the chunk being read, and the hash of its data so far.
    chunk_signature: Option<[u8; 32]>,
    chunk_hash: Option<digest::Context>,
    /// Hex of the last verified signature (the seed at first).
    previous_signature: String,
    trailers: Vec<(String, String)>,
    trailer_signature: Option<[u8; 32]>,
    trailer_bytes: usize,
    decoded_len: u64,
    /// The section ended at an empty line before any trailer: some writers put one
    /// between the final chunk and the trailers, so trailer lines may still follow.
    reopenable: bool,
    /// Once an error is returned, every later call returns it again.
    error: Option<S3Error>,
}

impl AwsChunkedDecoder {
    /// `signer`: `Some` for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`, whose chunk
    /// signatures are then required and verified. `trailer_expected`: the request
    /// announced trailers (`x-amz-trailer`); otherwise a trailer is an error.
    pub fn new(signer: Option<ChunkSigner>, trailer_expected: bool) -> Self {
        let previous_signature = signer.as_ref().map(|s| s.seed_signature().to_string()).unwrap_or_default();
        AwsChunkedDecoder {
            signer,
            trailer_expected,
            expected_len: None,
            state: State::Header,
            line: Vec::new(),
            chunk_signature: None,
            chunk_hash: None,
            previous_signature,
            trailers: Vec::new(),
            trailer_signature: None,
            trailer_bytes: 0,
            decoded_len: 0,
            reopenable: false,
            error: None,
        }
    }

    /// Requires the decoded body to be exactly `len` bytes
    /// (`x-amz-decoded-content-length`); checked as chunks arrive.
    pub fn with_decoded_len(mut self, len: u64) -> Self {
        self.expected_len = Some(len);
        self
    }

    /// Consumes a prefix of `input`; returns the bytes consumed and the range within
    /// `input` of payload bytes produced (possibly empty). Call again with the rest
    /// or with more input. Always consumes something when `input` is non-empty and
    /// the body is not done; input after the end of the body is an error.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Range<usize>), S3Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.step(input);
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    /// The body has ended well: every signature verified, trailers read.
    ///
    /// One exception: when trailers were announced and an empty line came before any
    /// of them, `is_done` is true but trailer lines may still follow (a form some
    /// writers use); feeding them reopens the section. Feed the whole body, then call
    /// [`finish`](Self::finish), and check the trailers after that.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Trailers received (lowercased names, trimmed values), the trailer signature
    /// left out. Complete once [`is_done`](Self::is_done).
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Payload bytes produced so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded_len
    }

    /// Call at the end of the input. `Ok` if the body is complete; also `Ok` when only
    /// the final empty line is missing after the final chunk and any trailers (some
    /// clients stop there; every signature is still checked). Otherwise
    /// `IncompleteBody`.
    pub fn finish(&mut self) -> Result<(), S3Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = match self.state {
            State::Done => Ok(()),
            State::Trailer if self.line.is_empty() => self.end_trailers(),
            _ => Err(incomplete("the aws-chunked body ended inside a chunk")),
        };
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Range<usize>), S3Error> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Header => pos += self.read_header(&input[pos..])?,
                State::Data { remaining } => {
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len() - pos);
                    let data = &input[pos..pos + n];
                    if let Some(ctx) = &mut self.chunk_hash {
                        ctx.update(data);
                    }
                    self.decoded_len += n as u64;
                    let remaining = remaining - n as u64;
                    self.state =
                        if remaining == 0 { State::DataEnd { seen: 0 } } else { State::Data { remaining } };
                    return Ok((pos + n, pos..pos + n));
                }
                State::DataEnd { seen } => {
                    if input[pos] != b"\r\n"[seen] {
                        return Err(incomplete("chunk data is not followed by CRLF"));
                    }
                    pos += 1;
                    if seen == 0 {
                        self.state = State::DataEnd { seen: 1 };
                    } else {
                        self.end_chunk()?;
                        self.state = State::Header;
                    }
                }
                State::Trailer => pos += self.read_trailer(&input[pos..])?,
                State::Done if self.reopenable => {
                    self.reopenable = false;
                    self.state = State::Trailer;
                }
                State::Done => return Err(invalid("Data found after the end of the aws-chunked body.")),
            }
        }
        Ok((pos, pos..pos))
    }

    /// Appends to `line` up to and including the next `\n`; returns the bytes taken
    /// and whether the line is complete (its `\n` and an optional `\r` dropped).
    fn take_line(&mut self, input: &[u8], limit: usize, too_long: &str) -> Result<(usize, bool), S3Error> {
        let (taken, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        let content = if complete { &input[..taken - 1] } else { input };
        if self.line.len() + content.len() > limit + 1 {
            return Err(invalid(too_long));
        }
        self.line.extend_from_slice(content);
        if complete && self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.len() > limit {
            return Err(invalid(too_long));
        }
        Ok((taken, complete))
    }

    fn read_header(&mut self, input: &[u8]) -> Result<usize, S3Error> {
        let (taken, complete) = self.take_line(
            input,
            MAX_CHUNK_HEADER_LINE_BYTES,
            "An aws-chunked chunk header line is too long.",
        )?;
        if complete {
            let line = std::mem::take(&mut self.line);
            self.start_chunk(&line)?;
        }
        Ok(taken)
    }

    /// Parses `hex-size[;ext]*` and moves to the chunk's data (or the trailers).
    fn start_chunk(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let mut parts = line.split(|&b| b == b';');
        let size_hex = parts.next().unwrap_or_default();
        if size_hex.is_empty() || size_hex.len() > 16 || !size_hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(incomplete("malformed aws-chunked chunk size"));
        }
        let size = size_hex.iter().fold(0u64, |acc, &b| {
            // Sixteen hex digits fit in a u64.
            (acc << 4) | u64::from(char::from(b).to_digit(16).unwrap_or(0))
        });
        if size > MAX_CHUNK_SIZE_BYTES {
            return Err(invalid("An aws-chunked chunk is larger than 16 MiB."));
        }
        if self.expected_len.is_some_and(|len| self.decoded_len.saturating_add(size) > len) {
            return Err(invalid("The aws-chunked body is longer than x-amz-decoded-content-length."));
        }
        if self.signer.is_some() {
            let sig = parts
                .filter_map(|ext| {
                    let ext = ext.trim_ascii();
                    let eq = ext.iter().position(|&b| b == b'=')?;
                    (ext[..eq].trim_ascii() == CHUNK_SIGNATURE.as_bytes()).then(|| ext[eq + 1..].trim_ascii())
                })
                .next()
                .ok_or_else(signature_mismatch)?;
            self.chunk_signature = Some(parse_hex_signature(sig)?);
            self.chunk_hash = Some(digest::Context::new(&digest::SHA256));
        }
        if size > 0 {
            self.state = State::Data { remaining: size };
            return Ok(());
        }
        self.end_chunk()?;
        if self.expected_len.is_some_and(|len| len != self.decoded_len) {
            return Err(incomplete("the aws-chunked body is shorter than x-amz-decoded-content-length"));
        }
        self.state = State::Trailer;
        Ok(())
    }

    /// Verifies the signature of the chunk just read (signed mode).
    fn end_chunk(&mut self) -> Result<(), S3Error> {
        let Some(signer) = &self.signer else { return Ok(()) };
        let (Some(sig), Some(ctx)) = (self.chunk_signature.take(), self.chunk_hash.take()) else {
            return Err(signature_mismatch());
        };
        if !signer.verify_chunk(&self.previous_signature, ctx.finish().as_ref(), &sig) {
            return Err(signature_mismatch());
        }
        self.previous_signature = hex::encode(sig);
        Ok(())
    }

    fn read_trailer(&mut self, input: &[u8]) -> Result<usize, S3Error> {
        let budget = MAX_TRAILER_SECTION_BYTES.saturating_sub(self.trailer_bytes);
        let too_long = "The aws-chunked trailer section is too large.";
        let (taken, complete) = self.take_line(input, budget, too_long)?;
        if !complete {
            return Ok(taken);
        }
        let line = std::mem::take(&mut self.line);
        self.trailer_bytes += line.len() + 2;
        if self.trailer_bytes > MAX_TRAILER_SECTION_BYTES {
            return Err(invalid(too_long));
        }
        if line.is_empty() {
            self.end_trailers()?;
        } else {
            self.add_trailer(&line)?;
        }
        Ok(taken)
    }

    fn add_trailer(&mut self, line: &[u8]) -> Result<(), S3Error> {
        if !self.trailer_expected {
            return Err(invalid(
                "The aws-chunked body carries trailers that x-amz-trailer did not announce.",
            ));
        }
        let lines = self.trailers.len() + usize::from(self.trailer_signature.is_some());
        if lines >= MAX_TRAILER_LINES {
            return Err(invalid("The aws-chunked body carries too many trailers."));
        }
        let text = std::str::from_utf8(line).map_err(|_| invalid("An aws-chunked trailer is not UTF-8."))?;
        let (name, value) =
            text.split_once(':').ok_or_else(|| incomplete("malformed aws-chunked trailer"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(incomplete("malformed aws-chunked trailer name"));
        }
        if name == TRAILER_SIGNATURE {
            // Unsigned-trailer mode has no trailer signature; one sent anyway is ignored.
            if self.signer.is_some()
                && self.trailer_signature.replace(parse_hex_signature(value.as_bytes())?).is_some()
            {
                return Err(signature_mismatch());
            }
            return Ok(());
        }
        if self.trailers.iter().any(|(n, _)| *n == name) {
            // Whichever copy a checker looked at, the other would go unchecked.
            return Err(invalid("The aws-chunked body repeats a trailer."));
        }
        self.trailers.push((name, value.to_string()));
        Ok(())
    }

    /// The trailer section ended: verify its signature (signed mode), then done.
    fn end_trailers(&mut self) -> Result<(), S3Error> {
        if let Some(signer) = &self.signer {
            if self.trailer_expected && (!self.trailers.is_empty() || self.trailer_signature.is_some()) {
                let sig = self.trailer_signature.ok_or_else(signature_mismatch)?;
                // Signers sort the trailers by name; try the order received too.
                let mut sorted: Vec<&(String, String)> = self.trailers.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let received: Vec<&(String, String)> = self.trailers.iter().collect();
                let ok = [sorted, received].iter().any(|order| {
                    signer.verify_trailer(&self.previous_signature, &canonical_trailers(order), &sig)
                });
                if !ok {
                    return Err(signature_mismatch());
                }
            }
        }
        self.reopenable =
            self.trailer_expected && self.trailers.is_empty() && self.trailer_signature.is_none();
        self.state = State::Done;
        Ok(())
    }
}

/// `name:value\n` for each trailer, in the order given: what the trailer signature covers.
pub fn canonical_trailers(trailers: &[&(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in trailers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut AwsChunkedDecoder, body: &[u8]) -> Result<Vec<u8>, S3Error> {
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (n, range) = dec.feed(rest)?;
            assert!(n > 0 || dec.is_done());
            out.extend_from_slice(&rest[range]);
            rest = &rest[n..];
        }
        Ok(out)
    }

    #[test]
    fn unsigned_body_with_trailer() {
        let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
        let mut dec = AwsChunkedDecoder::new(None, true);
        assert_eq!(decode_all(&mut dec, body).as_deref(), Ok(&b"hello"[..]));
        assert!(dec.is_done());
        assert_eq!(dec.trailers(), &[("x-amz-checksum-crc32".to_string(), "NhCmhg==".to_string())]);
        assert_eq!(dec.decoded_len(), 5);
    }

    #[test]
    fn line_end_variants_in_the_trailer_section() {
        for ending in ["\r\n\r\n", "\n\r\n", "\n\n"] {
            let body = format!("5\r\nhello\r\n0\r\nx-amz-checksum-crc32 : NhCmhg== {ending}");
            let mut dec = AwsChunkedDecoder::new(None, true);
            assert!(decode_all(&mut dec, body.as_bytes()).is_ok(), "{ending:?}");
            assert!(dec.is_done(), "{ending:?}");
            assert_eq!(dec.trailers()[0].1, "NhCmhg==");
        }
    }

    #[test]
    fn missing_final_empty_line_is_accepted_at_eof_only() {
        let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n";
        let mut dec = AwsChunkedDecoder::new(None, true);
        decode_all(&mut dec, body).map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!dec.is_done());
        assert_eq!(dec.finish(), Ok(()));
        let mut cut = AwsChunkedDecoder::new(None, true);
        decode_all(&mut cut, &body[..body.len() - 4]).map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cut.finish().map_err(|e| e.code), Err(S3ErrorCode::IncompleteBody));
        let mut mid = AwsChunkedDecoder::new(None, true);
        decode_all(&mut mid, &body[..6]).map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mid.finish().map_err(|e| e.code), Err(S3ErrorCode::IncompleteBody));
    }

    #[test]
    fn framing_errors() {
        let code = |body: &[u8], trailer: bool| {
            let mut dec = AwsChunkedDecoder::new(None, trailer);
            decode_all(&mut dec, body).err().map(|e| e.code)
        };
        use S3ErrorCode::*;
        assert_eq!(code(b"5\r\nhelloX\r\n", false), Some(IncompleteBody));
        assert_eq!(code(b"zz\r\n", false), Some(IncompleteBody));
        assert_eq!(code(b"\r\n", false), Some(IncompleteBody));
        assert_eq!(code(b"-5\r\n", false), Some(IncompleteBody));
        assert_eq!(code(b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", false), Some(InvalidRequest));
        assert_eq!(code(b"0\r\nno-colon\r\n\r\n", true), Some(IncompleteBody));
        assert_eq!(code(b"0\r\n\r\nextra", false), Some(InvalidRequest));
        assert_eq!(code(b"1000001\r\n", false), Some(InvalidRequest));
        assert_eq!(code(b"1000000\r\n", false), None);
        assert_eq!(code(b"00000000000000001\r\n", false), Some(IncompleteBody));
    }

    #[test]
    fn decoded_length_is_enforced() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        let mut ok = AwsChunkedDecoder::new(None, false).with_decoded_len(5);
        assert!(decode_all(&mut ok, body).is_ok() && ok.is_done());
        let mut short = AwsChunkedDecoder::new(None, false).with_decoded_len(6);
        assert_eq!(decode_all(&mut short, body).map_err(|e| e.code), Err(S3ErrorCode::IncompleteBody));
        let mut long = AwsChunkedDecoder::new(None, false).with_decoded_len(4);
        assert_eq!(decode_all(&mut long, body).map_err(|e| e.code), Err(S3ErrorCode::InvalidRequest));
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = AwsChunkedDecoder::new(None, false);
        assert!(dec.feed(b"xyz\r\n").is_err());
        assert!(dec.feed(b"5\r\nhello\r\n0\r\n\r\n").is_err());
        assert!(dec.finish().is_err());
    }
}
