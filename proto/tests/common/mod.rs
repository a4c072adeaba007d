//! Helpers shared by the integration tests: raw request transcripts and example keys.
#![allow(dead_code)]

use tessera_proto::Headers;

/// The S3 documentation's example credentials.
pub const S3_AKID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 20130524T000000Z, the time of every S3 documentation example.
pub const S3_EXAMPLE_TIME: i64 = 1_369_353_600;

/// Secret lookup knowing only the S3 example key.
pub fn example_secrets(akid: &str) -> Option<String> {
    (akid == S3_AKID).then(|| S3_SECRET.to_string())
}

/// A request read from a transcript.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn sig_request(&self) -> tessera_proto::sigv4::SigRequest<'_> {
        tessera_proto::sigv4::SigRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
        }
    }

    /// A copy with header `name` replaced (or removed when `value` is None).
    pub fn with_header(&self, name: &str, value: Option<&str>) -> RawRequest {
        let mut headers = Headers::new();
        for (n, v) in self.headers.iter() {
            if n != name {
                headers.push(n, v);
            }
        }
        if let Some(v) = value {
            headers.push(name, v);
        }
        RawRequest { headers, ..self.clone() }
    }
}

/// Parses `METHOD target HTTP/1.1`, `Name: value` lines (CRLF or LF), a blank line, body.
pub fn parse_request(raw: &[u8]) -> RawRequest {
    let (head_end, body_start) = find_head_end(raw);
    let head = std::str::from_utf8(&raw[..head_end]).expect("head is UTF-8");
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().expect("request line");
    // The target may hold raw spaces (the suite's get-space cases): cut the version off the end.
    let request_line = request_line.rsplit_once(' ').map_or(request_line, |(l, _)| l);
    let (method, target) = request_line.split_once(' ').expect("method and target");
    let method = method.to_string();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Headers::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push(name, value);
    }
    RawRequest {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: raw[body_start..].to_vec(),
    }
}

fn find_head_end(raw: &[u8]) -> (usize, usize) {
    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return (i, i + 4);
    }
    if let Some(i) = raw.windows(2).position(|w| w == b"\n\n") {
        return (i, i + 2);
    }
    (raw.len(), raw.len())
}

/// Path of a file under `tests/testdata`.
pub fn testdata(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata").join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Decodes a whole aws-chunked body fed in pieces of `piece` bytes; returns the payload.
pub fn decode_in_pieces(
    decoder: &mut tessera_proto::aws_chunked::AwsChunkedDecoder,
    body: &[u8],
    piece: usize,
) -> Result<Vec<u8>, tessera_proto::S3Error> {
    let mut out = Vec::new();
    for mut part in body.chunks(piece.max(1)) {
        while !part.is_empty() {
            let (n, range) = decoder.feed(part)?;
            assert!(n > 0, "the decoder must make progress");
            out.extend_from_slice(&part[range]);
            part = &part[n..];
        }
    }
    decoder.finish()?;
    Ok(out)
}
