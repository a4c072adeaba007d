//! The web console, served by the admin listener (see `admin`):
//!
//! - `/console/` and a fixed list of assets (`node/console/*`, embedded in
//!   the binary): looked up by exact path in `ASSETS`, never mapped to a
//!   file, so no path (`..`, encoded dots, backslashes) can reach anything
//!   else; anything else under `/console/` is 404.
//! - `/console/s3/...`: the forwarding prefix. The page signs S3 and IAM
//!   requests itself (SigV4 with the secret it holds in memory) for the path
//!   without the prefix; the request, minus the prefix, is answered by
//!   `request::respond`, the very function that serves the S3 port: same
//!   routing, same signature check (with the `Host` as received), same
//!   authorization, same limits. The admin listener adds no privilege, so
//!   the prefix reaches nothing the S3 port does not.
//!
//! Every console answer, forwarded ones included, carries strict headers: an
//! object fetched through the prefix is same-origin with the console, so
//! `Content-Security-Policy: sandbox` keeps an HTML object from running
//! script with the console's origin.

use std::rc::Rc;
use std::time::Instant;

use tessera_proto::http::{Method, RequestHead};

use crate::conn::{self, Conn};
use crate::response::Response;
use crate::server::Ctx;

/// The console's root; `/console` redirects here.
pub const CONSOLE_PATH: &str = "/console/";
/// Requests under this prefix are S3 (and IAM) requests for the path after
/// it: `/console/s3/bucket/key` is `/bucket/key`.
pub const FORWARD_PREFIX: &str = "/console/s3/";

/// The console page's policy: scripts and styles only from the listener's
/// own files (no inline script), requests only to the same origin.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
/// Forwarded S3 responses: a document opened from them (a presigned
/// download of an HTML object) gets a unique origin and runs nothing.
pub const FORWARDED_CSP: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the console serves. Adding a file means adding it here.
const ASSETS: &[Asset] = &[
    Asset { path: "/console/", content_type: "text/html; charset=utf-8", body: include_bytes!("../console/index.html") },
    Asset { path: "/console/style.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../console/style.css") },
    Asset { path: "/console/app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/app.js") },
    Asset { path: "/console/views.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/views.js") },
    Asset { path: "/console/sigv4.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/sigv4.js") },
    Asset { path: "/console/s3.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/s3.js") },
    Asset { path: "/console/metrics.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/metrics.js") },
];

/// Whether the admin listener should hand `path` to the console.
pub fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with(CONSOLE_PATH)
}

/// Headers on every console answer.
fn hardened(resp: Response, csp: &str) -> Response {
    resp.header("Content-Security-Policy", csp.to_string())
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "no-referrer")
}

fn plain(status: u16, body: &str) -> Response {
    Response::new(status).header("Content-Type", "text/plain; charset=utf-8").with_body(body.as_bytes().to_vec())
}

/// What the page needs to know before sign-in: the region its signatures
/// are scoped to (public: every S3 error about a wrong region names it).
pub const CONFIG_PATH: &str = "/console/config.json";

/// A console asset (a request with no body, not under the forwarding prefix).
pub fn asset(ctx: &Ctx, head: &RequestHead) -> Response {
    let resp = if !matches!(head.method, Method::Get | Method::Head) {
        plain(405, "method not allowed\n").header("Allow", "GET, HEAD")
    } else if head.path == "/console" {
        plain(308, "see /console/\n").header("Location", CONSOLE_PATH)
    } else if head.path == CONFIG_PATH {
        let body = serde_json::json!({ "region": ctx.shared.config.region, "version": env!("CARGO_PKG_VERSION") });
        Response::new(200).header("Content-Type", "application/json").with_body(body.to_string().into_bytes())
    } else {
        match ASSETS.iter().find(|a| a.path == head.path) {
            Some(a) => Response::new(200).header("Content-Type", a.content_type).with_body(a.body.to_vec()),
            None => plain(404, "not found\n"),
        }
    };
    // Assets change with the binary: never reuse a stale copy.
    hardened(resp.header("Cache-Control", "no-store"), PAGE_CSP)
}

/// `head` as the S3 port would see it, when it is under the forwarding prefix.
pub fn forwarded(head: &RequestHead) -> Option<RequestHead> {
    let rest = head.path.strip_prefix(FORWARD_PREFIX)?;
    let mut h = head.clone();
    h.path = format!("/{rest}");
    Some(h)
}

/// What the connection does after a forwarded request.
pub enum After {
    /// Read the next request.
    Next,
    Close,
    /// The body was not read to its end: close, draining (`conn::linger`).
    Linger,
}

/// The console's headers on a response relayed from another node.
const HARDENING: [(&str, &str); 4] = [
    ("Content-Security-Policy", FORWARDED_CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// Answers one forwarded request (`head` already without the prefix) and
/// writes the response, as `conn::serve` does on the S3 port: in a
/// cluster, an object request whose key another node owns is proxied to
/// that node's S3 port (`forward::proxy`; the owner checks the signature,
/// made for the `Host` the console was reached at), its response relayed
/// with the console's headers added.
pub async fn forward(ctx: &Rc<Ctx>, head: &RequestHead, conn: &mut Conn, peer: std::net::IpAddr) -> After {
    let started = Instant::now();
    let request_id = ctx.next_request_id();
    // Held until this request is answered (`handover::Busy`).
    let mut busy: Option<crate::handover::Busy> = None;
    if let Some(node) = ctx.shared.cluster.as_ref().filter(|_| !head.path.starts_with("/_tessera/")) {
        let early = match crate::forward::decide(node, head, peer, &ctx.shared.config.vhost_domains, &mut busy).await {
            // A request from the console's page is never a node's forward
            // (it carries no valid forward header): served here.
            crate::forward::Decision::Local(_, false, _) => None,
            crate::forward::Decision::Local(_, true, _) => Some((
                tessera_proto::S3Error::with_message(tessera_proto::S3ErrorCode::AccessDenied, "A forwarded request is not taken through the console."),
                matches!(head.framing(), Ok(tessera_proto::http::BodyFraming::Length(0))),
            )),
            crate::forward::Decision::Forward { to, version } => {
                let config = ctx.shared.buckets.published_index().max(ctx.shared.iam.published_index());
                let o = crate::forward::proxy(node, conn, head, peer, to, version, config, &HARDENING).await;
                match o.error {
                    None => {
                        conn::account(ctx, conn, Some((crate::metrics::OP_FORWARDED, o.status, started)));
                        return match (o.keep && !ctx.shared.metrics.stopping(), o.body_done) {
                            (true, _) => After::Next,
                            (false, false) if o.status != 499 => After::Linger,
                            _ => After::Close,
                        };
                    }
                    Some(e) => Some((e, o.body_done)),
                }
            }
            crate::forward::Decision::Refuse(e) => Some((e, matches!(head.framing(), Ok(tessera_proto::http::BodyFraming::Length(0))))),
        };
        if let Some((e, body_done)) = early {
            let resp = hardened(Response::error(&e, &head.path, &request_id), FORWARDED_CSP);
            let keep = head.keep_alive() && body_done && !ctx.shared.metrics.stopping();
            let status = resp.status;
            let written = conn::write_response(conn, resp, head.method == Method::Head, keep, head.minor_version == 0).await;
            conn::account(ctx, conn, Some((crate::metrics::OP_FORWARDED, status, started)));
            return match written {
                Ok(()) if keep => After::Next,
                Ok(()) if !body_done => After::Linger,
                _ => After::Close,
            };
        }
    }
    let (resp, body_done, op) = crate::request::respond(ctx, head, conn, request_id, peer).await;
    let resp = hardened(resp, FORWARDED_CSP);
    let keep = head.keep_alive() && body_done && !ctx.shared.metrics.stopping();
    let status = resp.status;
    let is_head = head.method == Method::Head;
    let written = conn::write_response(conn, resp, is_head, keep, head.minor_version == 0).await;
    conn::account(ctx, conn, Some((op, status, started)));
    match written {
        Ok(()) if keep => After::Next,
        Ok(()) if !body_done => After::Linger,
        _ => After::Close,
    }
}
