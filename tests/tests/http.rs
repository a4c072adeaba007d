//! HTTP/1.1 behaviour over raw TCP: persistent connections, pipelining,
//! chunked bodies, Expect: 100-continue, HEAD framing, malformed input,
//! truncated bodies and clients that vanish.

use std::time::Duration;

use tessera_tests::sign::Payload;
use tessera_tests::*;

async fn with_objects(objects: &[(&str, &[u8])]) -> (Server, aws_sdk_s3::Client) {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("web").send().await, "create bucket");
    for (key, data) in objects {
        ok(
            s3.put_object()
                .bucket("web")
                .key(*key)
                .body(bytestream(data))
                .send()
                .await,
            "put",
        );
    }
    (server, s3)
}

async fn content_of(s3: &aws_sdk_s3::Client, key: &str) -> Option<Vec<u8>> {
    match s3.get_object().bucket("web").key(key).send().await {
        Ok(out) => Some(read_body(out).await),
        Err(e) => {
            let f = failure_of(&e);
            assert_eq!(f.status, Some(404), "GET {key}: {f:#?}");
            None
        }
    }
}

const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (server, _s3) = with_objects(&[("a", b"first"), ("b", b"second")]).await;
    let mut conn = server.connect();
    for (key, want) in [("a", b"first".as_slice()), ("b", b"second"), ("a", b"first")] {
        let req = server.sign(server.raw_request("GET", &format!("/web/{key}")));
        conn.send(&req.to_bytes()).expect("send on kept-alive connection");
        let resp = conn.read_response();
        assert_eq!((resp.status, resp.body.as_slice()), (200, want), "{resp:?}");
        assert_ne!(
            resp.header("connection").map(str::to_ascii_lowercase).as_deref(),
            Some("close")
        );
    }
    // An error response does not end the connection either.
    conn.send(&server.sign(server.raw_request("GET", "/web/missing")).to_bytes())
        .unwrap();
    conn.read_response().assert_error(404, "NoSuchKey");
    let put = server.sign(server.raw_request("PUT", "/web/c").body(b"third".to_vec()));
    conn.send(&put.to_bytes()).unwrap();
    assert_eq!(conn.read_response().status, 200);
    conn.send(&server.sign(server.raw_request("GET", "/web/c")).to_bytes())
        .unwrap();
    assert_eq!(conn.read_response().body, b"third");
    // Connection: close is honoured.
    let last = server.sign(server.raw_request("GET", "/web/a").header("Connection", "close"));
    conn.send(&last.to_bytes()).unwrap();
    assert_eq!(conn.read_response().status, 200);
    assert!(
        conn.is_closed_within(CLOSE_WAIT),
        "server kept the connection open after Connection: close"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_get_responses_in_order() {
    let big = random_bytes(300_000, 1);
    let (server, _s3) = with_objects(&[("one", b"one"), ("two", b"two-two"), ("big", &big)]).await;
    let reqs = [
        server.sign(server.raw_request("GET", "/web/big")),
        server.sign(server.raw_request("GET", "/web/one")),
        server.sign(server.raw_request("HEAD", "/web/two")),
        server.sign(server.raw_request("GET", "/web/missing")),
        server.sign(server.raw_request("PUT", "/web/three").body(b"333".to_vec())),
        server.sign(server.raw_request("GET", "/web/two")),
    ];
    let mut all = Vec::new();
    for r in &reqs {
        all.extend(r.to_bytes());
    }
    let mut conn = server.connect();
    conn.send(&all).expect("send pipelined requests in one write");
    let r = conn.read_response_for("GET");
    assert_eq!((r.status, r.body.len()), (200, big.len()));
    assert!(r.body == big, "pipelined response 1 body");
    let r = conn.read_response_for("GET");
    assert_eq!((r.status, r.body.as_slice()), (200, b"one".as_slice()));
    let r = conn.read_response_for("HEAD");
    assert_eq!((r.status, r.header("content-length")), (200, Some("7")));
    conn.read_response_for("GET").assert_error(404, "NoSuchKey");
    assert_eq!(conn.read_response_for("PUT").status, 200);
    let r = conn.read_response_for("GET");
    assert_eq!((r.status, r.body.as_slice()), (200, b"two-two".as_slice()));
    assert!(
        conn.pending().is_empty(),
        "bytes after the last response: {:?}",
        conn.pending()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_transfer_encoding_body_is_decoded() {
    let (server, s3) = with_objects(&[]).await;
    let data = random_bytes(100_000, 2);
    let mut body = Vec::new();
    for chunk in data.chunks(7_000) {
        body.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let req = server
        .raw_request("PUT", "/web/chunked")
        .header("Transfer-Encoding", "chunked")
        .sign_payload(
            &server.access_key,
            &server.secret_key,
            std::time::SystemTime::now(),
            Payload::Bytes(&data),
        )
        .raw_body(body);
    let mut conn = server.connect();
    conn.send(&req.to_bytes()).unwrap();
    let resp = conn.read_response_for("PUT");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("etag"), Some(etag(&data).as_str()));
    assert!(
        content_of(&s3, "chunked").await == Some(data),
        "stored content differs from the de-chunked body"
    );
    // The connection is still in sync after the chunked body.
    conn.send(&server.sign(server.raw_request("GET", "/web/chunked")).to_bytes())
        .unwrap();
    assert_eq!(conn.read_response().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_is_answered_before_the_body() {
    let (server, s3) = with_objects(&[]).await;
    let data = random_bytes(2 * MIB, 3);
    let req = server.sign(
        server
            .raw_request("PUT", "/web/expect")
            .header("Expect", "100-continue")
            .body(data.clone()),
    );
    let mut conn = server.connect();
    conn.send(&req.head_bytes()).unwrap();
    let interim = conn.try_read_head().expect("a response to the head alone");
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before the body, got {interim:?}"
    );
    conn.send(&req.body).unwrap();
    let resp = conn.read_response_for("PUT");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(content_of(&s3, "expect").await == Some(data));

    // A request that will fail is answered at once, without waiting for the
    // body (or with 100 first and the error after it).
    for (target, status) in [("/no-such-bucket/k", 404), ("/web/bad-sig", 403)] {
        let mut req = server
            .raw_request("PUT", target)
            .header("Expect", "100-continue")
            .body(vec![7u8; 1_000_000]);
        req = if status == 403 {
            req.sign(&server.access_key, "wrong", std::time::SystemTime::now())
        } else {
            server.sign(req)
        };
        let mut conn = server.connect();
        conn.send(&req.head_bytes()).unwrap();
        let first = conn.try_read_head().expect("a response to the head alone");
        let final_status = if first.status == 100 {
            let _ = conn.send(&req.body);
            conn.read_response_for("PUT").status
        } else {
            first.status
        };
        assert_eq!(final_status, status, "PUT {target} with Expect");
    }
    assert!(content_of(&s3, "bad-sig").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn head_has_content_length_and_no_body() {
    let data = random_bytes(54_321, 4);
    let (server, _s3) = with_objects(&[("obj", &data)]).await;
    let mut conn = server.connect();
    conn.send(&server.sign(server.raw_request("HEAD", "/web/obj")).to_bytes())
        .unwrap();
    let head = conn.read_response_for("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("54321"));
    assert_eq!(head.header("etag"), Some(etag(&data).as_str()));
    // If the server had sent a body after HEAD, the next response would not parse.
    conn.send(&server.sign(server.raw_request("GET", "/web/obj")).to_bytes())
        .unwrap();
    let get = conn.read_response();
    assert_eq!(get.status, 200, "response after HEAD: {get:?}");
    assert!(get.body == data);
    // Ranged HEAD.
    conn.send(
        &server
            .sign(server.raw_request("HEAD", "/web/obj").header("Range", "bytes=0-99"))
            .to_bytes(),
    )
    .unwrap();
    let head = conn.read_response_for("HEAD");
    assert_eq!((head.status, head.header("content-length")), (206, Some("100")));
    conn.send(
        &server
            .sign(server.raw_request("GET", "/web/obj").header("Range", "bytes=0-0"))
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(conn.read_response().body, &data[..1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_gets_400_and_connection_closed() {
    let (server, s3) = with_objects(&[("ok", b"fine")]).await;
    let host = server.host();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage line", b"GARBAGE\r\n\r\n".to_vec()),
        ("no target or version", b"GET\r\n\r\n".to_vec()),
        (
            "no version",
            format!("GET /web/ok\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        (
            "bad version",
            format!("GET /web/ok HTTP/1.x\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        (
            "header without colon",
            format!("GET /web/ok HTTP/1.1\r\nHost: {host}\r\nNoColonHere\r\n\r\n").into_bytes(),
        ),
        (
            "space in target",
            format!("GET /web/o k HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        (
            "control byte",
            format!("GET /web/ok HTTP/1.1\r\nHost: {host}\r\nX: a\u{0}b\r\n\r\n").into_bytes(),
        ),
        (
            "bad content-length",
            format!("PUT /web/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 12abc\r\n\r\n").into_bytes(),
        ),
        (
            "two content-lengths",
            format!("PUT /web/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
                .into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let mut conn = server.connect();
        conn.send(&bytes).unwrap();
        let resp = conn
            .try_read_message("GET")
            .unwrap_or_else(|e| panic!("{what}: no HTTP response to a malformed request: {e}"));
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        assert!(
            conn.is_closed_within(CLOSE_WAIT),
            "{what}: connection left open after 400"
        );
    }
    assert_eq!(
        content_of(&s3, "ok").await.as_deref(),
        Some(b"fine".as_slice()),
        "server healthy afterwards"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_headers_get_400_or_431_and_connection_closed() {
    let (server, s3) = with_objects(&[("ok", b"fine")]).await;
    let cases: Vec<(&str, RawRequest)> = vec![
        (
            "one huge header",
            server
                .raw_request("GET", "/web/ok")
                .header("X-Big", &"a".repeat(256 * KIB)),
        ),
        ("many headers", {
            let mut r = server.raw_request("GET", "/web/ok");
            for i in 0..10_000 {
                r = r.header(&format!("x-h-{i}"), "v");
            }
            r
        }),
        (
            "huge request line",
            server.raw_request("GET", &format!("/web/{}", "k".repeat(256 * KIB))),
        ),
    ];
    for (what, req) in cases {
        let mut conn = server.connect();
        let _ = conn.send(&req.to_bytes()); // the server may stop reading early
        let resp = conn
            .try_read_message("GET")
            .unwrap_or_else(|e| panic!("{what}: no HTTP response: {e}"));
        assert!(
            resp.status == 400 || resp.status == 431 || (what == "huge request line" && resp.status == 414),
            "{what}: {resp:?}"
        );
        assert!(conn.is_closed_within(CLOSE_WAIT), "{what}: connection left open");
    }
    assert_eq!(
        content_of(&s3, "ok").await.as_deref(),
        Some(b"fine".as_slice()),
        "server healthy afterwards"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn body_shorter_than_content_length_stores_nothing() {
    let old = random_bytes(50_000, 5);
    let (server, s3) = with_objects(&[("existing", &old)]).await;
    let new = random_bytes(1_000_000, 6);
    for key in ["fresh", "existing"] {
        let req = server.sign(server.raw_request("PUT", &format!("/web/{key}")).body(new.clone()));
        let mut conn = server.connect();
        conn.send(&req.head_bytes()).unwrap();
        conn.send(&req.body[..300_000]).unwrap();
        conn.shutdown_write();
        // The server may answer (400) or just close; either way nothing commits.
        let _ = conn.try_read_message("PUT");
        drop(conn);
    }
    // Give the server time to notice, then look twice.
    for _ in 0..2 {
        assert!(
            content_of(&s3, "fresh").await.is_none(),
            "a truncated PUT created the key"
        );
        let got = content_of(&s3, "existing").await.expect("old content must stay");
        assert!(
            got == old,
            "a truncated PUT replaced the old content ({} bytes now)",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listed = ok(s3.list_objects_v2().bucket("web").send().await, "list");
    let keys: Vec<&str> = listed.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, vec!["existing"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_vanishing_mid_upload_leave_the_server_healthy() {
    let (server, s3) = with_objects(&[("keep", b"kept")]).await;
    let payload = random_bytes(8 * MIB, 7);
    let mut conns = Vec::new();
    for i in 0..16 {
        let req = server.sign(
            server
                .raw_request("PUT", &format!("/web/vanish-{i}"))
                .body(payload.clone()),
        );
        let mut conn = server.connect();
        conn.send(&req.head_bytes()).unwrap();
        conn.send(&req.body[..(i + 1) * 100_000]).unwrap();
        conns.push(conn);
    }
    // Half disappear with RST, half with FIN.
    for (i, conn) in conns.into_iter().enumerate() {
        if i % 2 == 0 {
            conn.reset();
        } else {
            drop(conn);
        }
    }
    // A client that sends only half a head.
    let mut half = server.connect();
    half.send(b"PUT /web/half HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
    half.reset();

    let fresh = random_bytes(3 * MIB, 8);
    ok(
        s3.put_object()
            .bucket("web")
            .key("after")
            .body(bytestream(&fresh))
            .send()
            .await,
        "PUT after disconnects",
    );
    assert!(content_of(&s3, "after").await == Some(fresh));
    assert_eq!(content_of(&s3, "keep").await.as_deref(), Some(b"kept".as_slice()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = ok(s3.list_objects_v2().bucket("web").send().await, "list");
    let keys: Vec<&str> = listed.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, vec!["after", "keep"], "aborted uploads left keys behind");
}

/// Connections end up on the reactors evenly whatever the kernel's
/// `SO_REUSEPORT` hash picks (between two requests a connection moves from a
/// reactor serving two more than another), and a moved connection serves
/// like any other: uploads, reads, and pipelined requests on it.
#[test]
fn connections_spread_evenly_over_the_reactors_and_serve_there() {
    const REACTORS: usize = 4;
    const CONNS: usize = 40;
    let server = Server::start_with(ServerOpts { threads: Some(REACTORS), ..Default::default() });
    let mut conns: Vec<RawConn> = Vec::new();
    for i in 0..CONNS {
        let mut c = server.connect();
        if i == 0 {
            let req = server.sign(server.raw_request("PUT", "/spread"));
            c.send(&req.to_bytes()).expect("send");
            assert_eq!(c.read_response_for("PUT").status, 200, "create bucket");
        }
        // Each connection is answered (and may move) before the next opens.
        let body = format!("object {i} of the spread test").into_bytes();
        let req = server.sign(server.raw_request("PUT", &format!("/spread/k{i}")).body(body));
        c.send(&req.to_bytes()).expect("send");
        let r = c.read_response_for("PUT");
        assert_eq!(r.status, 200, "PUT on connection {i}: {}", r.body_text());
        conns.push(c);
    }
    // A connection decides whether to move after its response is sent, so
    // the last ones may not have decided when the client reads it, or may
    // be on their way (a move is counted by the reactor taking it when
    // that one starts serving it): wait for the counts to settle.
    let per_core = || {
        let m = server.scrape_metrics();
        (0..REACTORS).map(|c| m[&format!("tessera_core_open_connections{{core=\"{c}\"}}")]).collect::<Vec<f64>>()
    };
    let even = vec![(CONNS / REACTORS) as f64; REACTORS];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut counts = per_core();
    while counts != even && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        counts = per_core();
    }
    assert_eq!(counts, even, "connections per reactor");
    // Two pipelined GETs on every connection: each reads back its own object.
    for (i, c) in conns.iter_mut().enumerate() {
        let get = server.sign(server.raw_request("GET", &format!("/spread/k{i}")));
        let mut both = get.to_bytes();
        both.extend_from_slice(&get.to_bytes());
        c.send(&both).expect("send");
        for _ in 0..2 {
            let r = c.read_response_for("GET");
            assert_eq!(r.status, 200, "GET on connection {i}: {}", r.body_text());
            assert_eq!(r.body, format!("object {i} of the spread test").into_bytes());
        }
    }
    drop(conns);
    // Closed connections leave their reactors' counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.scrape_metrics();
        let open: f64 = (0..REACTORS).map(|c| m[&format!("tessera_core_open_connections{{core=\"{c}\"}}")]).sum();
        if open == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{open} connections still counted after all closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
