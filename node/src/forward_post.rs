//! Browser POST uploads in a cluster (issue 12): `forward::decide` cannot
//! place a `PostObject`, whose key is in its form, so the receiving node
//! reads the form's beginning to find the key and forwards the request to
//! the key's owner (`forward::proxy`) when another node owns it.

use std::net::SocketAddr;

use tessera_proto::http::{BodyFraming, RequestHead};
use tessera_proto::router::{self, Op};

use crate::cluster::ClusterNode;
use crate::conn::{Conn, IO_TIMEOUT};

/// Most bytes of a POST form read ahead to find its key (the fields before
/// the file are at most `s3::post::MAX_POST_FIELDS_BYTES`, plus part headers).
pub const POST_PEEK_BYTES: usize = 64 * 1024;

/// What a form's prefix says about where a browser POST upload belongs.
enum Peeked {
    /// The `key` field (and the file part's name) were found.
    Key(String),
    /// More bytes are needed.
    More,
    /// No key before the file part, or a form this cannot read: served
    /// here, where the full parser answers the error.
    Unknown,
}

fn peek_key(boundary: &str, buf: &[u8], eof: bool) -> Peeked {
    let mut p = tessera_proto::form::FormParser::new(boundary);
    let mut at = 0;
    let mut current: Option<String> = None;
    let mut value: Vec<u8> = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    loop {
        let (n, ev) = match p.feed(&buf[at..], eof) {
            Ok(x) => x,
            Err(_) => return Peeked::Unknown,
        };
        let base = at;
        at += n;
        match ev {
            None if n == 0 => return if eof { Peeked::Unknown } else { Peeked::More },
            None => {}
            Some(tessera_proto::form::FormEvent::PartStart(h)) if h.name.eq_ignore_ascii_case("file") => {
                let Some(k) = key.and_then(|k| String::from_utf8(k).ok()) else { return Peeked::Unknown };
                return Peeked::Key(k.replace("${filename}", h.filename.as_deref().unwrap_or("")));
            }
            Some(tessera_proto::form::FormEvent::PartStart(h)) => {
                current = Some(h.name.to_ascii_lowercase());
                value.clear();
            }
            Some(tessera_proto::form::FormEvent::Data(r)) => {
                value.extend_from_slice(&buf[base + r.start..base + r.end]);
            }
            Some(tessera_proto::form::FormEvent::PartEnd) => {
                // The first `key` field counts, as in `s3::post`.
                let name = current.take();
                if name.as_deref() == Some("key") && key.is_none() {
                    key = Some(std::mem::take(&mut value));
                }
            }
            Some(tessera_proto::form::FormEvent::End) => return Peeked::Unknown,
        }
    }
}

/// A browser POST upload (`PostObject`) names its key in its form, so
/// `decide` cannot place it. For an unsigned-header form POST with a
/// length, this reads the form's beginning into the connection's buffer
/// (at most `POST_PEEK_BYTES`, nothing consumed) up to the file part,
/// takes the `key` field (`${filename}` replaced) and, when another node
/// owns it, answers where to forward the request: the buffered prefix and
/// the rest of the body then go through `proxy`, and the owner checks the
/// form's policy signature itself. Anything else (no key before the
/// file, a bigger prefix, a chunked body, a header-signed POST with
/// `Expect`) is served here as before.
pub async fn post_owner(node: &ClusterNode, conn: &mut Conn, head: &mut RequestHead, vhost_domains: &[String]) -> Option<(SocketAddr, u64)> {
    let routed = router::route(head.method, &head.path, &head.query, head.headers.get("host"), vhost_domains).ok()?;
    if routed.op != Op::PostObject || routed.key.is_some() {
        return None;
    }
    let bucket = routed.bucket?;
    let Ok(BodyFraming::Length(len)) = head.framing() else { return None };
    let boundary = tessera_proto::form::boundary(head.headers.get("content-type").unwrap_or_default()).ok()?;
    if head.expects_continue() {
        // The body comes only after a 100; the owner must not send a
        // second one, so the header goes (it is signed only in a
        // header-signed POST, which is left alone).
        if head.headers.get("authorization").is_some() {
            return None;
        }
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await.ok()?;
        head.headers.remove("expect");
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let key = loop {
        let have = conn.pending().len().min(len);
        let eof = have == len;
        match peek_key(&boundary, &conn.pending()[..have], eof) {
            Peeked::Key(k) => break k,
            Peeked::Unknown => return None,
            Peeked::More if have >= POST_PEEK_BYTES || eof => return None,
            Peeked::More => {
                conn.fill(IO_TIMEOUT).await.ok()?;
            }
        }
    };
    let owners = node.owners.load_full()?;
    let owner = owners.owner_of(crate::layout::partition_of(&bucket, &key))?;
    (owner.id != node.id_hex()).then(|| (owner.s3, owners.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in parts {
            let disp = if *n == "file" { "name=\"file\"; filename=\"pic.png\"".to_string() } else { format!("name=\"{n}\"") };
            out.extend_from_slice(format!("--XyZ\r\nContent-Disposition: form-data; {disp}\r\n\r\n{v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    #[test]
    fn a_forms_key_is_found_before_its_file_and_only_there() {
        let f = form(&[("Key", "up/${filename}"), ("key", "second"), ("policy", "p"), ("file", "DATA"), ("after", "x")]);
        let Peeked::Key(k) = peek_key("XyZ", &f, true) else { panic!("key not found") };
        assert_eq!(k, "up/pic.png", "the first key field, ${{filename}} replaced");
        // Any prefix that reaches the file part's headers is enough; a shorter one asks for more.
        let file_at = f.windows(14).position(|w| w == b"name=\"file\"; f").unwrap();
        for cut in 0..f.len() {
            match peek_key("XyZ", &f[..cut], false) {
                Peeked::Key(k) => assert!(cut > file_at && k == "up/pic.png", "cut {cut}"),
                Peeked::More => assert!(cut < file_at + 60, "cut {cut} should have found the key"),
                Peeked::Unknown => panic!("cut {cut}: a valid prefix refused"),
            }
        }
        // The key only after the file, or no file at all: served where it arrives.
        assert!(matches!(peek_key("XyZ", &form(&[("policy", "p"), ("file", "D"), ("key", "k")]), true), Peeked::Unknown));
        assert!(matches!(peek_key("XyZ", &form(&[("key", "k")]), true), Peeked::Unknown));
        assert!(matches!(peek_key("XyZ", b"garbage", true), Peeked::Unknown));
    }
}
