//! GZIP and BZIP2 input, decoded in bounded steps: every call produces at
//! most the output space it is given, whatever the compression ratio.

use flate2::{Decompress, FlushDecompress, Status};

use crate::error::{err, Code, Result, SelectError};
use crate::params::Compression;

/// Largest gzip member header (with FEXTRA, FNAME, FCOMMENT) accepted.
pub const MAX_GZIP_HEADER_BYTES: usize = 64 * 1024 + 1024;

enum Gz {
    Header(Vec<u8>),
    Body { z: Box<Decompress>, crc: crc32fast::Hasher, size: u32 },
    Trailer { want_crc: u32, want_size: u32, got: Vec<u8> },
}

enum Kind {
    None,
    Gzip(Gz),
    Bzip2(Box<bzip2::Decompress>),
}

pub struct Decoder {
    kind: Kind,
    /// A stream (member) is complete: input may end here.
    at_boundary: bool,
}

fn corrupt(what: &str) -> SelectError {
    SelectError::new(Code::InvalidCompressionFormat, format!("The object is not valid {what} data."))
}

/// Parses a gzip member header; `Ok(None)` when more bytes are needed.
fn gzip_header(h: &[u8]) -> Result<Option<usize>> {
    if h.len() < 10 {
        if h.iter().zip([0x1f, 0x8b, 8]).any(|(a, b)| *a != b) {
            return Err(corrupt("GZIP"));
        }
        return Ok(None);
    }
    if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3] & 0xE0 != 0 {
        return Err(corrupt("GZIP"));
    }
    let flags = h[3];
    let mut i = 10;
    if flags & 4 != 0 {
        let Some(x) = h.get(i..i + 2) else { return Ok(None) };
        i += 2 + u16::from_le_bytes([x[0], x[1]]) as usize;
        if i > h.len() {
            return Ok(None);
        }
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            match memchr::memchr(0, &h[i..]) {
                Some(z) => i += z + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 2 != 0 {
        i += 2;
        if i > h.len() {
            return Ok(None);
        }
    }
    Ok(Some(i))
}

impl Decoder {
    pub fn new(c: Compression) -> Decoder {
        let kind = match c {
            Compression::None => Kind::None,
            Compression::Gzip => Kind::Gzip(Gz::Header(Vec::new())),
            Compression::Bzip2 => Kind::Bzip2(Box::new(bzip2::Decompress::new(false))),
        };
        Decoder { kind, at_boundary: true }
    }

    pub fn is_identity(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// Decodes from `input` into `out` (appending at most `space` bytes).
    /// Returns the input bytes consumed. Call again with the rest (or an
    /// empty slice) while it makes progress.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, space: usize) -> Result<usize> {
        match &mut self.kind {
            Kind::None => {
                let n = input.len().min(space);
                out.extend_from_slice(&input[..n]);
                Ok(n)
            }
            Kind::Bzip2(z) => {
                if input.is_empty() && self.at_boundary {
                    return Ok(0);
                }
                let (in0, out0) = (z.total_in(), z.total_out());
                let start = out.len();
                out.resize(start + space, 0);
                let r = z.decompress(input, &mut out[start..]);
                let produced = (z.total_out() - out0) as usize;
                out.truncate(start + produced);
                let used = (z.total_in() - in0) as usize;
                self.at_boundary = false;
                match r {
                    Ok(bzip2::Status::StreamEnd) => {
                        // Concatenated streams (pbzip2) continue with a new one.
                        **z = bzip2::Decompress::new(false);
                        self.at_boundary = true;
                    }
                    Ok(_) => {}
                    Err(_) => return Err(corrupt("BZIP2")),
                }
                Ok(used)
            }
            Kind::Gzip(gz) => {
                let mut used = 0;
                loop {
                    match gz {
                        Gz::Header(h) => {
                            if used == input.len() {
                                return Ok(used);
                            }
                            let before = h.len();
                            let take = (input.len() - used).min(MAX_GZIP_HEADER_BYTES + 1 - before);
                            h.extend_from_slice(&input[used..used + take]);
                            match gzip_header(h)? {
                                Some(n) => {
                                    used += n - before;
                                    self.at_boundary = false;
                                    *gz = Gz::Body {
                                        z: Box::new(Decompress::new(false)),
                                        crc: crc32fast::Hasher::new(),
                                        size: 0,
                                    };
                                }
                                None if h.len() > MAX_GZIP_HEADER_BYTES => return Err(corrupt("GZIP")),
                                None => {
                                    used += take;
                                    self.at_boundary = false;
                                    return Ok(used);
                                }
                            }
                        }
                        Gz::Body { z, crc, size } => {
                            let (in0, out0) = (z.total_in(), z.total_out());
                            let start = out.len();
                            out.resize(start + space, 0);
                            let r = z.decompress(&input[used..], &mut out[start..], FlushDecompress::None);
                            let produced = (z.total_out() - out0) as usize;
                            out.truncate(start + produced);
                            crc.update(&out[start..]);
                            *size = size.wrapping_add(produced as u32);
                            used += (z.total_in() - in0) as usize;
                            match r {
                                Ok(Status::StreamEnd) => {
                                    let want_crc = crc.clone().finalize();
                                    *gz = Gz::Trailer { want_crc, want_size: *size, got: Vec::new() };
                                    if produced == space {
                                        return Ok(used);
                                    }
                                }
                                Ok(_) => return Ok(used),
                                Err(_) => return Err(corrupt("GZIP")),
                            }
                        }
                        Gz::Trailer { want_crc, want_size, got } => {
                            let take = (8 - got.len()).min(input.len() - used);
                            got.extend_from_slice(&input[used..used + take]);
                            used += take;
                            if got.len() < 8 {
                                return Ok(used);
                            }
                            let crc = u32::from_le_bytes([got[0], got[1], got[2], got[3]]);
                            let size = u32::from_le_bytes([got[4], got[5], got[6], got[7]]);
                            if crc != *want_crc || size != *want_size {
                                return err(Code::InvalidCompressionFormat, "The GZIP data fails its checksum.");
                            }
                            *gz = Gz::Header(Vec::new());
                            self.at_boundary = true;
                            return Ok(used);
                        }
                    }
                }
            }
        }
    }

    /// At the end of the input: whether it ended on a stream boundary.
    pub fn finish(&self) -> Result<()> {
        if self.at_boundary {
            return Ok(());
        }
        err(Code::TruncatedInput, "The compressed object ends in the middle of a stream.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn decode_all(c: Compression, data: &[u8], piece: usize, space: usize) -> Result<Vec<u8>> {
        let mut d = Decoder::new(c);
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            let mut off = 0;
            loop {
                let before = out.len();
                let n = d.decode(&chunk[off..], &mut out, space)?;
                off += n;
                if off == chunk.len() && out.len() == before {
                    break;
                }
                assert!(out.len() - before <= space);
            }
        }
        loop {
            let before = out.len();
            d.decode(&[], &mut out, space)?;
            if out.len() == before {
                break;
            }
        }
        d.finish()?;
        Ok(out)
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn bz(data: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trips() {
        let plain: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{i},{}\n", i % 7).into_bytes()).collect();
        for (c, enc) in [(Compression::Gzip, gz(&plain)), (Compression::Bzip2, bz(&plain))] {
            for (piece, space) in [(1, 7), (100, 1000), (65536, 1 << 20)] {
                if piece == 1 && c == Compression::Bzip2 {
                    continue;
                }
                assert_eq!(decode_all(c, &enc, piece, space).unwrap(), plain, "{c:?} {piece} {space}");
            }
            // Two concatenated streams read as one.
            let mut two = enc.clone();
            two.extend_from_slice(&enc);
            assert_eq!(decode_all(c, &two, 4096, 4096).unwrap().len(), plain.len() * 2);
            // Cut short.
            assert_eq!(decode_all(c, &enc[..enc.len() / 2], 4096, 4096).unwrap_err().code, Code::TruncatedInput);
        }
        let mut bad = gz(b"hello");
        let n = bad.len();
        bad[n - 8] ^= 1;
        assert_eq!(decode_all(Compression::Gzip, &bad, 10, 10).unwrap_err().code, Code::InvalidCompressionFormat);
        assert_eq!(decode_all(Compression::Gzip, b"plain text", 10, 10).unwrap_err().code, Code::InvalidCompressionFormat);
        assert_eq!(decode_all(Compression::Bzip2, b"plain text", 10, 10).unwrap_err().code, Code::InvalidCompressionFormat);
    }

    #[test]
    fn bounded_output() {
        // A highly compressible input never yields more than the space given.
        let zeros = vec![0u8; 50 << 20];
        let enc = gz(&zeros);
        let mut d = Decoder::new(Compression::Gzip);
        let mut out = Vec::new();
        d.decode(&enc, &mut out, 64 * 1024).unwrap();
        assert!(out.len() <= 64 * 1024);
    }
}
