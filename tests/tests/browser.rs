//! A real browser: headless Chromium (Debian's `chromium`) loads an HTML
//! page from another origin and uploads a file to a CORS-configured bucket
//! with a signed POST form, once by submitting the form (the 303 redirect
//! comes back to the page's server) and once with `fetch` (reading the
//! response needs the CORS headers). The object is then checked with the
//! SDK. Skipped, saying so, when Chromium is not installed (`.ci/run`
//! installs it).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use tessera_tests::form::{expiration, v4_fields};
use tessera_tests::*;

/// How long one browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var("CHROMIUM").ok(), Some("/usr/bin/chromium".into()), Some("/usr/bin/chromium-browser".into())];
    candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.exists())
}

fn bind() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind page server");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// A one-page web server on loopback: serves `page` at `/`, and sends the
/// path of every other request it gets into the channel.
fn serve_page(listener: TcpListener, page: String) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            let body = if path == "/" { page.clone() } else { "<html><body>done</body></html>".to_string() };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if path != "/" && !path.starts_with("/favicon") && tx.send(path).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs Chromium on `url` until the page reports (or the timeout).
fn browse(chromium: &Path, url: &str, reports: &mpsc::Receiver<String>) -> Option<String> {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child: Child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = std::time::Instant::now();
    let got = reports.recv_timeout(BROWSER_TIMEOUT).ok();
    eprintln!("browser reported after {:?}", started.elapsed());
    let _ = child.kill();
    let _ = child.wait();
    got
}

fn hidden_inputs(fields: &[(String, String)]) -> String {
    fields.iter().map(|(n, v)| format!("<input type=\"hidden\" name=\"{n}\" value=\"{v}\">\n")).collect()
}

const CONTENT: &str = "hello from a real browser form";

#[tokio::test(flavor = "multi_thread")]
async fn chromium_uploads_with_a_post_form_to_a_cors_bucket() {
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium; .ci/run does it)");
        return;
    };
    let (server, s3) = with_bucket("browser").await;
    let endpoint = server.endpoint();

    // Each page's origin is another port on loopback.
    let policy = |redirect: Option<&str>| {
        let cond = redirect.map_or(String::new(), |r| format!(r#",{{"success_action_redirect":"{r}"}}"#));
        format!(
            r#"{{"expiration":"{}","conditions":[{{"bucket":"browser"}},["starts-with","$key","uploads/"],["starts-with","$Content-Type","text/"],["content-length-range",1,1048576],{{"x-amz-algorithm":"AWS4-HMAC-SHA256"}},["starts-with","$x-amz-credential",""],["starts-with","$x-amz-date",""]{cond}]}}"#,
            expiration(Duration::from_secs(600))
        )
    };

    // 1. A plain form submission; the 303 brings the browser back to the page's server.
    let (listener, page_port) = bind();
    let done_url = format!("http://127.0.0.1:{page_port}/done");
    let mut fields = vec![
        ("key".to_string(), "uploads/${filename}".to_string()),
        ("Content-Type".to_string(), "text/plain".to_string()),
        ("success_action_redirect".to_string(), done_url.clone()),
    ];
    fields.extend(v4_fields(&server, &policy(Some(&done_url))));
    let page = format!(
        r#"<!doctype html><html><body>
<form id="f" action="{endpoint}/browser" method="post" enctype="multipart/form-data">
{inputs}<input type="file" name="file">
</form>
<script>
const input = document.querySelector('input[type=file]');
const dt = new DataTransfer();
dt.items.add(new File([{content:?}], 'submitted.txt', {{type: 'text/plain'}}));
input.files = dt.files;
document.getElementById('f').submit();
</script></body></html>"#,
        inputs = hidden_inputs(&fields),
        content = CONTENT,
    );
    let rx = serve_page(listener, page);
    let report = browse(&chromium, &format!("http://127.0.0.1:{page_port}/"), &rx).expect("the browser came back from the upload");
    assert!(report.starts_with("/done?bucket=browser&key=uploads%2Fsubmitted.txt&etag=%22"), "{report}");
    let got = ok(s3.get_object().bucket("browser").key("uploads/submitted.txt").send().await, "get submitted");
    assert_eq!(got.content_type(), Some("text/plain"));
    let etag = got.e_tag().unwrap_or_default().to_string();
    assert_eq!(read_body(got).await, CONTENT.as_bytes());
    assert!(report.contains(&etag.trim_matches('"').to_string()), "{report} vs {etag}");

    // 2. fetch() from the page's origin: reading the status and the ETag needs CORS.
    let (listener, port) = bind();
    let rule = CorsRule::builder()
        .allowed_methods("POST")
        .allowed_methods("GET")
        .allowed_origins(format!("http://127.0.0.1:{port}"))
        .expose_headers("ETag")
        .build()
        .expect("rule");
    let cfg = CorsConfiguration::builder().cors_rules(rule).build().expect("cors");
    ok(s3.put_bucket_cors().bucket("browser").cors_configuration(cfg).send().await, "put cors");
    let mut fields = vec![
        ("key".to_string(), "uploads/${filename}".to_string()),
        ("Content-Type".to_string(), "text/plain".to_string()),
    ];
    fields.extend(v4_fields(&server, &policy(None)));
    let page = format!(
        r#"<!doctype html><html><body>
<form id="f" action="{endpoint}/browser" method="post" enctype="multipart/form-data">
{inputs}<input type="file" name="file">
</form>
<script>
const input = document.querySelector('input[type=file]');
const dt = new DataTransfer();
dt.items.add(new File([{content:?}], 'fetched.txt', {{type: 'text/plain'}}));
input.files = dt.files;
const form = document.getElementById('f');
fetch(form.action, {{method: 'POST', body: new FormData(form)}})
  .then(r => location = '/result?status=' + r.status + '&etag=' + encodeURIComponent(r.headers.get('ETag')))
  .catch(e => location = '/result?error=' + encodeURIComponent(String(e)));
</script></body></html>"#,
        inputs = hidden_inputs(&fields),
        content = CONTENT,
    );
    let rx2 = serve_page(listener, page);
    let report = browse(&chromium, &format!("http://127.0.0.1:{port}/"), &rx2).expect("the page reported the fetch");
    let got = ok(s3.get_object().bucket("browser").key("uploads/fetched.txt").send().await, "get fetched");
    let etag = got.e_tag().unwrap_or_default().to_string();
    assert_eq!(read_body(got).await, CONTENT.as_bytes());
    let want = format!("/result?status=204&etag={}", etag.replace('"', "%22"));
    assert_eq!(report, want, "the page could not read the response (CORS)");
}
