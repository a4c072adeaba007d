//! Random and mutated input into the decoder, `authenticate`, the body verifier and the
//! date parsers: nothing may panic. Deterministic (fixed seeds) so a failure replays.

mod common;

use common::{example_secrets, parse_request, RawRequest, S3_AKID, S3_SECRET};
use tessera_proto::aws_chunked::AwsChunkedDecoder;
use tessera_proto::checksum::BodyVerifier;
use tessera_proto::sigv4::{
    authenticate, authenticate_vhost, signing_key, ChunkSigner, PayloadMode, SigRequest, DEFAULT_REGION,
};
use tessera_proto::time::{parse_amz_date, parse_http_date};
use tessera_proto::Headers;

/// Iterations scale with `TESSERA_FUZZ_SCALE` (default 1) for longer local runs.
fn scaled(n: usize) -> usize {
    n * std::env::var("TESSERA_FUZZ_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// xorshift64*: enough randomness for a smoke fuzzer, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Text built from pieces that matter to the parsers.
    fn text(&mut self, max_parts: usize) -> String {
        const PIECES: &[&str] = &[
            "AWS4-HMAC-SHA256",
            "AWS",
            " ",
            ",",
            "=",
            ";",
            "/",
            ":",
            "%",
            "%2",
            "%2F",
            "%zz",
            "+",
            "&",
            "?",
            "Credential",
            "SignedHeaders",
            "Signature",
            "host",
            "x-amz-date",
            "aws4_request",
            "s3",
            "us-east-1",
            "20130524",
            "T000000Z",
            S3_AKID,
            "0",
            "9",
            "a",
            "f",
            "\r\n",
            "\t",
            "é",
            "ሴ",
            "\u{0}",
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Expires",
            "X-Amz-Date",
            "X-Amz-Signature",
            "X-Amz-SignedHeaders",
            "AWSAccessKeyId",
            "Expires",
            "Signature",
            "UNSIGNED-PAYLOAD",
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "GMT",
            "+0000",
            "Mon",
            "May",
        ];
        let parts = self.below(max_parts + 1);
        (0..parts).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }
}

fn signer() -> ChunkSigner {
    let key = signing_key(S3_SECRET, "20130524", "us-east-1", "s3");
    ChunkSigner::new(&key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", &"a".repeat(64))
}

/// Feeds `body` in random pieces; returns whether it ended well. Never panics.
fn feed_randomly(rng: &mut Rng, dec: &mut AwsChunkedDecoder, body: &[u8]) -> bool {
    let mut rest = body;
    let mut rounds = 0usize;
    while !rest.is_empty() {
        rounds += 1;
        assert!(rounds <= body.len() + 1, "no progress");
        let take = 1 + rng.below(rest.len().min(300));
        let (mut part, tail) = rest.split_at(take);
        rest = tail;
        while !part.is_empty() {
            match dec.feed(part) {
                Ok((n, range)) => {
                    assert!(n > 0 && n <= part.len() && range.end <= n && range.start <= range.end);
                    part = &part[n..];
                }
                Err(_) => return false,
            }
        }
    }
    dec.finish().is_ok()
}

fn valid_bodies() -> Vec<Vec<u8>> {
    let mut v = vec![
        b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n".to_vec(),
        b"5;chunk-signature=00\r\nhello\r\n0\r\n\r\n".to_vec(),
    ];
    for name in ["put-unsigned-trailer-crc32", "upload-part-unsigned-trailer", "put-unsigned-trailer-empty"] {
        v.push(parse_request(&common::read(&format!("botocore/{name}.http"))).body);
    }
    v
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            2 => {
                let i = rng.below(out.len() + 1);
                let b = [b'\r', b'\n', b';', b':', b'0', b'f', b'=', rng.next() as u8][rng.below(8)];
                out.insert(i, b);
            }
            _ => {
                let i = rng.below(out.len() + 1);
                out.truncate(i);
            }
        }
    }
    out
}

#[test]
fn decoder_survives_garbage_and_mutations() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let bodies = valid_bodies();
    for i in 0..scaled(6000) {
        let input = if i % 2 == 0 {
            rng.bytes(400)
        } else {
            let pick = rng.below(bodies.len());
            mutate(&mut rng, &bodies[pick])
        };
        for (signed, trailer) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut dec = AwsChunkedDecoder::new(signed.then(signer), trailer);
            if rng.below(2) == 0 {
                dec = dec.with_decoded_len(rng.below(100_000) as u64);
            }
            let _ = feed_randomly(&mut rng, &mut dec, &input);
            let _ = dec.trailers();
            let _ = dec.decoded_len();
        }
    }
}

fn random_request(rng: &mut Rng) -> RawRequest {
    let mut headers = Headers::new();
    for _ in 0..rng.below(6) {
        const NAMES: &[&str] = &[
            "authorization",
            "host",
            "x-amz-date",
            "date",
            "x-amz-content-sha256",
            "content-md5",
            "x-amz-checksum-crc32",
            "x-amz-trailer",
            "x-amz-sdk-checksum-algorithm",
            "range",
        ];
        let name = NAMES[rng.below(NAMES.len())];
        let value = rng.text(12);
        headers.push(name, &value);
    }
    RawRequest { method: rng.text(2), path: rng.text(8), query: rng.text(16), headers, body: Vec::new() }
}

fn captured_requests() -> Vec<RawRequest> {
    let mut v: Vec<RawRequest> =
        ["put-unsigned-trailer-crc32", "get-special-key", "list-objects-v2", "v2-get-acl", "v2-put"]
            .iter()
            .map(|n| parse_request(&common::read(&format!("botocore/{n}.http"))))
            .collect();
    for url in ["presigned-v4-get.url", "presigned-get.url"] {
        let text = String::from_utf8(common::read(&format!("botocore/{url}"))).expect("UTF-8");
        let rest = text.trim().trim_start_matches("https://localhost:9000");
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut headers = Headers::new();
        headers.push("host", "localhost:9000");
        v.push(RawRequest {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers,
            body: vec![],
        });
    }
    v
}

fn mutate_text(rng: &mut Rng, s: &str) -> String {
    String::from_utf8_lossy(&mutate(rng, s.as_bytes())).into_owned()
}

#[test]
fn authenticate_survives_garbage_and_mutations() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let captured = captured_requests();
    let now = 1_795_000_000;
    for i in 0..scaled(20_000) {
        let req = if i % 2 == 0 {
            random_request(&mut rng)
        } else {
            let base = &captured[rng.below(captured.len())];
            let mut req = base.clone();
            match rng.below(4) {
                0 => req.path = mutate_text(&mut rng, &req.path),
                1 => req.query = mutate_text(&mut rng, &req.query),
                2 => {
                    let names: Vec<String> = req.headers.iter().map(|(n, _)| n.to_string()).collect();
                    if let Some(name) = names.get(rng.below(names.len())) {
                        let value = mutate_text(&mut rng, req.headers.get(name).unwrap_or(""));
                        req = req.with_header(name, Some(&value));
                    }
                }
                _ => req.method = mutate_text(&mut rng, &req.method),
            }
            req
        };
        let sig =
            SigRequest { method: &req.method, path: &req.path, query: &req.query, headers: &req.headers };
        let r = if rng.below(3) == 0 {
            authenticate_vhost(&sig, Some("bucket"), DEFAULT_REGION, now + rng.below(10_000_000) as i64, &example_secrets)
        } else {
            authenticate(&sig, now, &example_secrets)
        };
        if let Ok(Some(ctx)) = r {
            // Mutations that still verify must be ones that do not change what was signed.
            assert_eq!(ctx.access_key, S3_AKID);
        }
        let payload =
            [PayloadMode::Unsigned, PayloadMode::Sha256([0; 32]), PayloadMode::StreamingUnsignedTrailer]
                [rng.below(3)]
            .clone();
        if let Ok(mut v) = BodyVerifier::from_request(&req.headers, &payload) {
            v.update(&rng.bytes(64));
            let trailers = vec![(rng.text(3), rng.text(4))];
            let _ = v.finish(&trailers);
        }
    }
}

#[test]
fn date_parsers_survive_garbage() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for _ in 0..scaled(20_000) {
        let s = String::from_utf8_lossy(&rng.bytes(40)).into_owned();
        let _ = parse_amz_date(&s);
        let _ = parse_http_date(&s);
        let t = rng.text(10);
        let _ = parse_amz_date(&t);
        let _ = parse_http_date(&t);
        let d = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            rng.below(10_000),
            rng.below(100),
            rng.below(100),
            rng.below(100),
            rng.below(100),
            rng.below(100)
        );
        let _ = parse_amz_date(&d);
    }
}

/// POST policies, CORS and logging documents, and form fields: random and
/// mutated input never panics.
#[test]
fn browser_documents_never_panic() {
    use base64::Engine as _;
    let mut rng = Rng(0xB0B5_1E55);
    let valid_policy = r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[{"bucket":"b"},["starts-with","$key",""],["content-length-range",0,10]]}"#;
    let valid_cors = b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>".to_vec();
    for _ in 0..scaled(3000) {
        let mut doc = valid_policy.as_bytes().to_vec();
        for _ in 0..rng.below(4) {
            if doc.is_empty() {
                break;
            }
            let at = rng.below(doc.len());
            doc[at] = rng.next() as u8;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&doc);
        if let Ok(p) = tessera_proto::post_policy::PostPolicy::parse(&b64) {
            let _ = p.check(&[("key".into(), rng.text(3)), ("bucket".into(), "b".into())], 0);
        }
        let _ = tessera_proto::post_policy::PostPolicy::parse(&rng.text(8));
        let mut cors = valid_cors.clone();
        let at = rng.below(cors.len());
        cors[at] = rng.next() as u8;
        if let Ok(rules) = tessera_proto::cors::parse_config(&cors) {
            let _ = tessera_proto::cors::match_actual(&rules, &rng.text(3), "GET");
            let _ = tessera_proto::cors::preflight(Some(&rules), Some(&rng.text(3)), Some("GET"), Some(&rng.text(4)));
        }
        let _ = tessera_proto::logging::parse_status(&rng.bytes(200));
        let fields: Vec<(String, String)> = (0..rng.below(6)).map(|_| (rng.text(2).to_ascii_lowercase(), rng.text(3))).collect();
        let _ = tessera_proto::post_policy::authenticate(
            &|n| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
            DEFAULT_REGION,
            &|_| Some("secret".to_string()),
        );
    }
}
