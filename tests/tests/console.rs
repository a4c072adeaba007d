//! The web console on the admin listener: its static assets and headers,
//! the S3 forwarding prefix (authenticated exactly like the S3 port), and
//! the whole console driven in headless Chromium through the DevTools
//! protocol (`tessera_tests::cdp`). The browser test FAILS when Chromium is
//! missing: `.ci/run` installs Debian's `chromium`.
//!
//! `CONSOLE_SCREENSHOT=docs/console.png cargo test -p tessera-tests --test
//! console` also writes the screenshot committed in `docs/`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tessera_tests::cdp::{chromium_path, Browser};
use tessera_tests::raw::xml_fields;
use tessera_tests::server::workspace_root;
use tessera_tests::*;

const FORWARD: &str = "/console/s3";
/// Longest wait for one step of the browser flow (uploads included).
const STEP: Duration = Duration::from_secs(60);

fn admin(server: &Server) -> SocketAddr {
    server.admin_addr().expect("admin listener address on stdout")
}

fn send(addr: SocketAddr, req: &RawRequest) -> RawResponse {
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    c.read_response_for(&req.method)
}

fn get(addr: SocketAddr, target: &str) -> RawResponse {
    send(addr, &RawRequest::new("GET", target).header("Host", &addr.to_string()))
}

/// `req` (for an S3 path) signed, then sent under the forwarding prefix:
/// what the console page does.
fn forwarded(addr: SocketAddr, req: RawRequest, access: &str, secret: &str) -> RawRequest {
    let mut signed = req.header("Host", &addr.to_string()).sign(access, secret, SystemTime::now());
    signed.target = format!("{FORWARD}{}", signed.target);
    signed
}

fn assert_console_headers(r: &RawResponse) {
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn assets_are_a_fixed_list_with_strict_headers() {
    let server = Server::start();
    let addr = admin(&server);

    let page = get(addr, "/console/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert_console_headers(&page);
    let html = page.body_text();
    assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));
    // No inline script anywhere: the CSP would block it anyway.
    assert_eq!(html.matches("<script").count(), 1, "{html}");

    for (path, ty) in [("/console/app.js", "text/javascript"), ("/console/sigv4.js", "text/javascript"), ("/console/style.css", "text/css")] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").is_some_and(|t| t.starts_with(ty)), "{path}");
        assert_console_headers(&r);
    }
    let cfg = get(addr, "/console/config.json");
    assert_eq!(cfg.status, 200);
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.body).expect("config json");
    assert!(cfg["region"].is_string());

    let redirect = get(addr, "/console");
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/console/"));

    // Nothing but the listed files: no traversal, however spelled.
    for path in [
        "/console/nope.js",
        "/console/index.html",
        "/console/../metrics",
        "/console/%2e%2e/metrics",
        "/console/%2E%2E%2Fmetrics",
        "/console/..%2fadmin/v1/info",
        "/console/./app.js",
        "/console//app.js",
        "/console/app.js/",
        "/console/app.js%00",
        "/console/..\\..\\etc\\passwd",
        "/console/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/console/s3",
        "/consoleapp.js",
    ] {
        let r = get(addr, path);
        assert!(r.status == 404 || r.status == 400, "{path}: {} {}", r.status, r.body_text());
        assert!(!r.body_text().contains("tessera_"), "{path} leaked metrics");
    }
    let post = send(addr, &RawRequest::new("POST", "/console/").header("Host", &addr.to_string()).body(""));
    assert_eq!(post.status, 405);
    let head = send(addr, &RawRequest::new("HEAD", "/console/app.js").header("Host", &addr.to_string()));
    assert_eq!(head.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forwarding_prefix_authenticates_like_the_s3_port() {
    let (server, s3) = with_bucket("fwd").await;
    let addr = admin(&server);
    let s3_addr = server.addr();
    let (ak, sk) = (server.access_key.clone(), server.secret_key.clone());

    // Unsigned: the same refusal as the S3 port gives.
    let on_s3 = send(s3_addr, &RawRequest::new("GET", "/").header("Host", &s3_addr.to_string()));
    let via = get(addr, &format!("{FORWARD}/"));
    assert_eq!(via.status, on_s3.status);
    assert_eq!(via.error_code(), on_s3.error_code());
    via.assert_error(403, "AccessDenied");
    let put = send(addr, &RawRequest::new("PUT", &format!("{FORWARD}/made-anonymously")).header("Host", &addr.to_string()).body(""));
    put.assert_error(403, "AccessDenied");
    // Forwarded answers carry the sandbox policy: an HTML object opened
    // from the console's origin runs no script.
    assert!(put.header("content-security-policy").is_some_and(|c| c.starts_with("sandbox")));
    assert_eq!(put.header("x-content-type-options"), Some("nosniff"));

    // A wrong secret, and a signature for the prefixed path, are refused.
    let wrong = send(addr, &forwarded(addr, RawRequest::new("GET", "/"), &ak, "not-the-secret"));
    wrong.assert_error(403, "SignatureDoesNotMatch");
    let prefixed = RawRequest::new("GET", &format!("{FORWARD}/")).header("Host", &addr.to_string()).sign(&ak, &sk, SystemTime::now());
    send(addr, &prefixed).assert_error(403, "SignatureDoesNotMatch");

    // Signed for the S3 path: served, bodies included, keep-alive kept.
    let mut c = RawConn::connect(addr);
    let body = b"through the console prefix".to_vec();
    let put = forwarded(addr, RawRequest::new("PUT", "/fwd/dir/a%20b.txt").body(body.clone()), &ak, &sk);
    c.send(&put.to_bytes()).expect("send");
    let r = c.read_response_for("PUT");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let list = forwarded(addr, RawRequest::new("GET", "/fwd?list-type=2"), &ak, &sk);
    c.send(&list.to_bytes()).expect("send");
    let r = c.read_response_for("GET");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(xml_fields(&r.body_text(), "Key"), vec!["dir/a b.txt".to_string()]);
    let got = ok(s3.get_object().bucket("fwd").key("dir/a b.txt").send().await, "get via S3 port");
    assert_eq!(read_body(got).await, body);

    // A user without permissions gets what the S3 port gives it: no more.
    let (_, user_key, user_secret) = new_user(&server.iam(), "nobody").await;
    let denied = send(addr, &forwarded(addr, RawRequest::new("GET", "/fwd?list-type=2"), &user_key, &user_secret));
    denied.assert_error(403, "AccessDenied");
    let admin_api = send(addr, &forwarded(addr, RawRequest::new("GET", "/admin/v1/info"), &ak, &sk));
    assert_ne!(admin_api.status, 200, "the prefix reaches S3 only: {}", admin_api.body_text());
}

fn js(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_headless_chromium() {
    let chromium = chromium_path().expect(
        "chromium is required for the console test (apt-get install chromium; .ci/run installs it, and the test fails without it)",
    );
    let server = Server::start();
    let s3 = server.client();
    let addr = admin(&server);
    let (ak, sk) = (server.access_key.clone(), server.secret_key.clone());
    let files = tempfile::tempdir().expect("tempdir");
    let small_path = files.path().join("small.txt");
    let small = b"hello from the tessera console\n".to_vec();
    std::fs::write(&small_path, &small).expect("write small");
    // Above the page's 8 MiB multipart threshold: two parts.
    let big_path = files.path().join("big.bin");
    let big: Vec<u8> = (0..(9 * 1024 * 1024 + 123u32)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&big_path, &big).expect("write big");

    let mut b = Browser::launch(&chromium, (1100, 760));
    b.open(&format!("http://{addr}/console/"));
    b.wait_for("the console to load", "document.body.dataset.ready === '1'", STEP);

    // A wrong secret: an error, no sign-in.
    let fill = |b: &mut Browser, secret: &str| {
        b.eval(&format!(
            "document.getElementById('signin-access').value = {}; document.getElementById('signin-secret').value = {}; \
             document.getElementById('signin-btn').click()",
            js(&ak),
            js(secret)
        ));
    };
    fill(&mut b, "wrong-secret");
    b.wait_for("the sign-in error", "document.getElementById('signin-error').textContent !== ''", STEP);
    let err = b.eval("document.getElementById('signin-error').textContent");
    assert!(err.as_str().is_some_and(|e| e.contains("SignatureDoesNotMatch")), "{err}");
    assert_eq!(b.eval("document.getElementById('buckets-view').hidden"), json!(true));

    fill(&mut b, &sk);
    b.wait_for("the buckets view", "!document.getElementById('buckets-view').hidden", STEP);
    assert_eq!(b.eval("document.getElementById('signin-secret').value"), json!(""));
    // The secret is in no storage of the origin.
    assert_eq!(b.eval("localStorage.length + sessionStorage.length"), json!(0));

    // Create a bucket.
    b.eval("document.getElementById('bucket-name').value = 'console-e2e'; document.getElementById('bucket-create-btn').click()");
    b.wait_for("the new bucket listed", "document.querySelector('tr[data-bucket=\"console-e2e\"]')", STEP);
    ok(s3.head_bucket().bucket("console-e2e").send().await, "bucket exists");

    // Objects the page must show as text, and a folder with two pages.
    let evil = "x<img src=x onerror=\"document.title='pwned'\">.txt";
    ok(s3.put_object().bucket("console-e2e").key(evil).metadata("note", "<b>bold</b>").body(b"x".to_vec().into()).send().await, "evil");
    for i in 0..11 {
        ok(s3.put_object().bucket("console-e2e").key(format!("dir/n{i:02}")).body(b"n".to_vec().into()).send().await, "dir");
    }

    b.eval("document.querySelector('tr[data-bucket=\"console-e2e\"] button.folder').click()");
    b.wait_for("the objects view", "document.querySelector('#object-list tr[data-prefix=\"dir/\"]')", STEP);

    // Upload a small file (one PUT) and a big one (multipart, with progress).
    for (path, name) in [(&small_path, "small.txt"), (&big_path, "big.bin")] {
        b.set_files("#upload-file", &[path.as_path()]);
        b.eval("document.getElementById('upload-btn').click()");
        b.wait_for(&format!("{name} uploaded and listed"), &row_with_key(name), STEP);
    }
    assert_eq!(b.eval("document.getElementById('upload-progress').value"), json!(1));
    let big_head = ok(s3.head_object().bucket("console-e2e").key("big.bin").send().await, "head big");
    assert!(big_head.e_tag().is_some_and(|e| e.ends_with("-2\"")), "multipart: {:?}", big_head.e_tag());
    assert_eq!(big_head.content_length(), Some(big.len() as i64));
    let got = ok(s3.get_object().bucket("console-e2e").key("small.txt").send().await, "get small");
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(read_body(got).await, small);

    // Keys and metadata are text: no element was made from them.
    assert_eq!(b.eval("document.querySelectorAll('#object-list img').length"), json!(0));
    assert_eq!(b.eval(&format!("!!{}", row_with_key(evil))), json!(true), "the odd key is listed as text");
    b.eval(&format!("{}.querySelector('button.info').click()", row_with_key(evil)));
    b.wait_for("the odd key's metadata", "document.getElementById('info-list').textContent.includes('<b>bold</b>')", STEP);
    assert_eq!(b.eval("document.querySelectorAll('#info-list b, #object-list img').length"), json!(0));
    assert_ne!(b.eval("document.title"), json!("pwned"));

    // Metadata of the big object, then its presigned download.
    b.eval("document.querySelector('#object-list tr[data-key=\"big.bin\"] button.info').click()");
    b.wait_for("big.bin's metadata", "document.getElementById('info-key').textContent === 'big.bin'", STEP);
    b.wait_for("the presigned link", "document.getElementById('info-download').href.includes('X-Amz-Signature=')", STEP);
    let info = b.eval("document.getElementById('info-list').textContent");
    let info = info.as_str().unwrap_or_default();
    assert!(info.contains(&format!("({} bytes)", big.len())), "{info}");
    assert!(info.contains(big_head.e_tag().unwrap_or("?")), "{info}");
    assert!(info.contains("application/octet-stream"), "{info}");
    if let Ok(path) = std::env::var("CONSOLE_SCREENSHOT") {
        let png = b.screenshot();
        std::fs::write(workspace_root().join(&path), png).expect("write screenshot");
    }
    let href = b.eval("document.getElementById('info-download').href");
    let href = href.as_str().expect("href").to_string();
    let target = href.strip_prefix(&format!("http://{addr}")).expect("same-origin presigned URL");
    assert!(target.starts_with("/console/s3/console-e2e/big.bin?"), "{target}");
    let dl = get(addr, target);
    assert_eq!(dl.status, 200, "{}", dl.body_text());
    assert!(dl.header("content-disposition").is_some_and(|d| d.starts_with("attachment")), "{:?}", dl.header("content-disposition"));
    assert!(dl.body == big, "downloaded bytes differ");
    // The page fetches it too (same origin, connect-src 'self').
    let in_page = b.eval(&format!("fetch({}).then(r => r.arrayBuffer()).then(b => b.byteLength)", js(&href)));
    assert_eq!(in_page, json!(big.len()));

    // Browse the folder: breadcrumb and pagination (10 per page).
    b.eval("document.getElementById('page-size').value = '10'; document.getElementById('page-size').dispatchEvent(new Event('change'))");
    b.wait_for("page size 10", "document.querySelectorAll('#object-list tr').length === 4", STEP);
    b.eval("document.querySelector('#object-list tr[data-prefix=\"dir/\"] button.folder').click()");
    b.wait_for("the folder's first page", "document.querySelectorAll('#object-list tr[data-key^=\"dir/\"]').length === 10", STEP);
    assert!(b.eval("document.getElementById('breadcrumb').textContent").as_str().is_some_and(|t| t.ends_with("dir")));
    b.eval("document.getElementById('page-next').click()");
    b.wait_for("the folder's second page", "document.querySelectorAll('#object-list tr[data-key]').length === 1 && document.querySelector('#object-list tr[data-key=\"dir/n10\"]')", STEP);
    b.eval("document.getElementById('page-prev').click()");
    b.wait_for("back to the first page", "document.querySelector('#object-list tr[data-key=\"dir/n00\"]')", STEP);
    b.eval("[...document.querySelectorAll('#breadcrumb button')].find(x => x.textContent === 'console-e2e').click()");
    b.wait_for("the bucket's root", "document.querySelector('#object-list tr[data-prefix=\"dir/\"]')", STEP);

    // Delete an object.
    b.eval("document.querySelector('#object-list tr[data-key=\"small.txt\"] button.delete-object').click()");
    b.wait_for("small.txt gone", "!document.querySelector('#object-list tr[data-key=\"small.txt\"]')", STEP);
    let gone = s3.head_object().bucket("console-e2e").key("small.txt").send().await;
    assert!(gone.is_err(), "small.txt still exists");

    // Users: create one with a key, attach an inline policy.
    b.eval("document.getElementById('nav-users').click()");
    b.wait_for("the users view", "!document.getElementById('users-view').hidden", STEP);
    b.eval("document.getElementById('user-name').value = 'alice'; document.getElementById('user-create-btn').click()");
    b.wait_for("alice's access key", "document.getElementById('new-key-secret').textContent !== ''", STEP);
    b.wait_for("alice listed", "document.querySelector('#user-list tr[data-user=\"alice\"]')", STEP);
    let alice_key = b.eval("document.getElementById('new-key-access').textContent");
    let alice_secret = b.eval("document.getElementById('new-key-secret').textContent");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::console-e2e/*"]}]}"#;
    b.eval(&format!(
        "document.getElementById('policy-name').value = 'read-e2e'; document.getElementById('policy-doc').value = {}; \
         document.getElementById('policy-btn').click()",
        js(policy)
    ));
    b.wait_for("the policy listed", "document.querySelector('#user-list tr[data-user=\"alice\"]').textContent.includes('read-e2e')", STEP);
    // The key works on the S3 port and the policy is in effect.
    let alice = server.client_for(alice_key.as_str().expect("key"), alice_secret.as_str().expect("secret"));
    let got = ok(alice.get_object().bucket("console-e2e").key("big.bin").send().await, "alice reads");
    assert_eq!(read_body(got).await.len(), big.len());
    assert!(alice.list_buckets().send().await.is_err(), "alice may only read objects");

    // Live metrics: two scrapes make a rate.
    b.eval("document.getElementById('nav-metrics').click()");
    b.wait_for("a requests/s figure", "document.getElementById('requests-now').textContent.includes('req/s')", STEP);

    // Delete the bucket once empty: refused first, then done.
    b.eval("document.getElementById('nav-buckets').click()");
    b.wait_for("the buckets list", "document.querySelector('tr[data-bucket=\"console-e2e\"]')", STEP);
    b.eval("document.querySelector('tr[data-bucket=\"console-e2e\"] button.delete-bucket').click()");
    b.wait_for("BucketNotEmpty shown", "document.getElementById('error').textContent.includes('BucketNotEmpty')", STEP);
    let mut keys = vec![evil.to_string(), "big.bin".to_string()];
    keys.extend((0..11).map(|i| format!("dir/n{i:02}")));
    for k in keys {
        ok(s3.delete_object().bucket("console-e2e").key(k).send().await, "empty the bucket");
    }
    b.eval("document.querySelector('tr[data-bucket=\"console-e2e\"] button.delete-bucket').click()");
    b.wait_for("the bucket gone", "!document.querySelector('tr[data-bucket=\"console-e2e\"]')", STEP);
    assert!(s3.head_bucket().bucket("console-e2e").send().await.is_err());
}

/// JS for the object row of `key` (compared as a string, not as a selector).
fn row_with_key(key: &str) -> String {
    format!("[...document.querySelectorAll('#object-list tr')].find(r => r.dataset.key === {})", js(key))
}
