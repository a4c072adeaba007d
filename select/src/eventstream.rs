//! AWS's event-stream framing (application/vnd.amazon.eventstream):
//!
//! ```text
//! total length u32 | headers length u32 | prelude CRC32 u32 |
//! headers | payload | message CRC32 u32
//! ```
//! Headers are `name length u8, name, type 7 (string), value length u16,
//! value`. The CRCs are IEEE CRC32 (the prelude's over its 8 bytes, the
//! message's over everything before it).

/// Largest payload of one Records message.
pub const MAX_RECORDS_PAYLOAD_BYTES: usize = 1024 * 1024;

const STRING_HEADER: u8 = 7;

/// Appends one message to `out`.
pub fn message(out: &mut Vec<u8>, headers: &[(&str, &str)], payload: &[u8]) {
    let headers_len: usize = headers.iter().map(|(n, v)| 1 + n.len() + 1 + 2 + v.len()).sum();
    let total = 12 + headers_len + payload.len() + 4;
    let start = out.len();
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers_len as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    for (n, v) in headers {
        debug_assert!(n.len() <= u8::MAX as usize && v.len() <= u16::MAX as usize);
        out.push(n.len() as u8);
        out.extend_from_slice(n.as_bytes());
        out.push(STRING_HEADER);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn event(out: &mut Vec<u8>, kind: &str, content_type: Option<&str>, payload: &[u8]) {
    let mut h = vec![(":message-type", "event"), (":event-type", kind)];
    if let Some(ct) = content_type {
        h.push((":content-type", ct));
    }
    message(out, &h, payload);
}

pub fn records(out: &mut Vec<u8>, payload: &[u8]) {
    for chunk in payload.chunks(MAX_RECORDS_PAYLOAD_BYTES) {
        event(out, "Records", Some("application/octet-stream"), chunk);
    }
}

/// Counters reported by Stats and Progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub scanned: u64,
    pub processed: u64,
    pub returned: u64,
}

/// The payload is the Details structure itself (the event's payload member).
fn details(root: &str, c: Counters) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root} xmlns=\"\"><BytesScanned>{}</BytesScanned><BytesProcessed>{}</BytesProcessed><BytesReturned>{}</BytesReturned></{root}>",
        c.scanned, c.processed, c.returned
    )
}

pub fn stats(out: &mut Vec<u8>, c: Counters) {
    event(out, "Stats", Some("text/xml"), details("Stats", c).as_bytes());
}

pub fn progress(out: &mut Vec<u8>, c: Counters) {
    event(out, "Progress", Some("text/xml"), details("Progress", c).as_bytes());
}

/// A keep-alive while a long scan has nothing to send.
pub fn cont(out: &mut Vec<u8>) {
    event(out, "Cont", None, &[]);
}

pub fn end(out: &mut Vec<u8>) {
    event(out, "End", None, &[]);
}

/// An error after the response began: the stream ends with it.
pub fn error(out: &mut Vec<u8>, code: &str, msg: &str) {
    // Header values are at most u16::MAX bytes; messages are far shorter.
    let mut end = msg.len().min(4096);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    message(out, &[(":message-type", "error"), (":error-code", code), (":error-message", &msg[..end])], &[]);
}

/// Decodes one message (tests and tools): headers, payload and the bytes
/// used, or `None` when the frame or a CRC is wrong.
pub fn decode(b: &[u8]) -> Option<(Vec<(String, String)>, Vec<u8>, usize)> {
    let be = |i: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?)) };
    let (total, hlen) = (be(0)? as usize, be(4)? as usize);
    if total < 16 || b.len() < total || be(8)? != crc32fast::hash(&b[..8]) || be(total - 4)? != crc32fast::hash(&b[..total - 4]) {
        return None;
    }
    let mut headers = Vec::new();
    let mut i = 12;
    while i < 12 + hlen {
        let n = *b.get(i)? as usize;
        let name = std::str::from_utf8(b.get(i + 1..i + 1 + n)?).ok()?.to_string();
        i += 1 + n;
        if *b.get(i)? != STRING_HEADER {
            return None;
        }
        let vl = u16::from_be_bytes(b.get(i + 1..i + 3)?.try_into().ok()?) as usize;
        let value = std::str::from_utf8(b.get(i + 3..i + 3 + vl)?).ok()?.to_string();
        i += 3 + vl;
        headers.push((name, value));
    }
    Some((headers, b.get(12 + hlen..total - 4)?.to_vec(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        records(&mut out, b"a,b\n");
        stats(&mut out, Counters { scanned: 10, processed: 10, returned: 4 });
        end(&mut out);
        let (h, p, n) = decode(&out).unwrap();
        assert_eq!(h[1], (":event-type".into(), "Records".into()));
        assert_eq!(p, b"a,b\n");
        let (h, p, m) = decode(&out[n..]).unwrap();
        assert_eq!(h[1].1, "Stats");
        assert!(String::from_utf8(p).unwrap().contains("<BytesReturned>4</BytesReturned>"));
        let (h, p, _) = decode(&out[n + m..]).unwrap();
        assert_eq!((h[1].1.as_str(), p.len()), ("End", 0));
        let mut bad = out.clone();
        bad[20] ^= 1;
        assert!(decode(&bad).is_none());
        let mut e = Vec::new();
        error(&mut e, "CastFailed", "no");
        let (h, _, _) = decode(&e).unwrap();
        assert_eq!(h, vec![(":message-type".into(), "error".into()), (":error-code".into(), "CastFailed".into()), (":error-message".into(), "no".into())]);
        let mut big = Vec::new();
        records(&mut big, &vec![b'x'; MAX_RECORDS_PAYLOAD_BYTES + 1]);
        let (_, p, n) = decode(&big).unwrap();
        assert_eq!(p.len(), MAX_RECORDS_PAYLOAD_BYTES);
        assert_eq!(decode(&big[n..]).unwrap().1.len(), 1);
    }
}
