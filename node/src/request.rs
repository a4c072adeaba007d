//! One request, from its parsed head to its response: routing and
//! authentication (decided from the head alone), the handler
//! (`s3::dispatch`, or the IAM query API, or a health check), then what a
//! bucket's configuration adds to every response (CORS headers) and its
//! access log. `conn` reads heads and writes responses around it; the
//! console's forwarding prefix calls `respond` too.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tessera_proto::http::{self, RequestHead};
use tessera_proto::router::{self, Op, Routed};
use tessera_proto::sigv4::{self, AuthContext, SigRequest};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::authz::principal::{self, Principal};
use crate::authz::Authz;
use crate::body::BodyReader;
use crate::conn::{resource_of, Conn};
use crate::identity::User;
use crate::response::{RespBody, Response};
use crate::server::Ctx;

/// Everything a handler needs about the request in hand.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    pub routed: Routed,
    /// The account the request acts for (`None`: anonymous).
    pub user: Option<Arc<User>>,
    pub auth: Option<AuthContext>,
    /// Who asks and what is left to check (see `authz`).
    pub authz: Authz,
    pub request_id: String,
    pub body: BodyReader,
    pub conn: &'a mut Conn,
}

impl Request<'_> {
    pub fn bucket(&self) -> &str {
        self.routed.bucket.as_deref().unwrap_or("")
    }

    pub fn key(&self) -> &str {
        self.routed.key.as_deref().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)
    }

    /// Reads decoded body bytes into `dst`; `Ok(0)` at the verified end.
    pub async fn read_body(&mut self, dst: &mut [u8]) -> Result<usize, S3Error> {
        self.body.read(self.conn, dst).await
    }

    /// Reads a whole (small) body, e.g. an XML document, up to `limit` bytes.
    pub async fn read_body_to_vec(&mut self, limit: usize) -> Result<Vec<u8>, S3Error> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.read_body(&mut chunk).await?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(S3Error::with_message(S3ErrorCode::MalformedXML, "request body too large"));
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Answers one request whose head has been read: health, the IAM query API
/// or S3. The console's forwarding prefix on the admin listener calls this
/// too (`console::forward`), so a forwarded request is routed, authenticated
/// and authorized by exactly the code that serves the S3 port. The bool says
/// whether the request body was read to its end; the name is the metrics label.
pub(crate) async fn respond(
    ctx: &Rc<Ctx>,
    head: &RequestHead,
    conn: &mut Conn,
    request_id: String,
    peer: std::net::IpAddr,
) -> (Response, bool, &'static str) {
    if let Some(resp) = crate::admin::s3_port_health(ctx, head) {
        let done = matches!(head.framing(), Ok(http::BodyFraming::Length(0)));
        (resp, done, crate::metrics::OP_HEALTH)
    } else if crate::iam::api::is_query_api(ctx, head) {
        let (resp, done) = crate::iam::api::serve(ctx, head, conn, request_id, peer).await;
        (resp, done, crate::metrics::OP_IAM)
    } else {
        handle_request(ctx, head, conn, request_id, peer).await
    }
}

/// Runs one request to a response, then adds what the bucket's
/// configuration asks of every response (CORS headers, errors included)
/// and records the request in its access log.
async fn handle_request(
    ctx: &Rc<Ctx>,
    head: &RequestHead,
    conn: &mut Conn,
    request_id: String,
    peer: std::net::IpAddr,
) -> (Response, bool, &'static str) {
    let started = Instant::now();
    let (mut resp, done, seen, op) = run_request(ctx, head, conn, request_id.clone(), peer).await;
    if let Some(seen) = seen {
        // A preflight's answer is all CORS already; a refused one gets none.
        if seen.op != Op::Options {
            crate::s3::cors_headers(ctx, head, Some(&seen.bucket), &mut resp);
        }
        if let Some(b) = ctx.shared.buckets.get(&seen.bucket).filter(|b| b.logging.is_some()) {
            access_log(ctx, head, &b, &seen, &resp, &request_id, Some(peer), started);
        }
    }
    (resp, done, op)
}

/// What the access log and CORS need of a routed request.
struct Seen {
    bucket: String,
    key: Option<String>,
    op: Op,
    requester: Option<String>,
    auth: Option<tessera_proto::sigv4::AuthKind>,
}

#[allow(clippy::too_many_arguments)]
fn access_log(
    ctx: &Rc<Ctx>,
    head: &RequestHead,
    b: &crate::buckets::BucketInfo,
    seen: &Seen,
    resp: &Response,
    request_id: &str,
    peer: Option<std::net::IpAddr>,
    started: Instant,
) {
    use tessera_proto::sigv4::AuthKind;
    let error_code = (resp.status >= 300).then(|| error_code_of(resp)).flatten();
    let uri = if head.query.is_empty() {
        format!("{} {} HTTP/1.{}", head.method_raw, head.path, head.minor_version)
    } else {
        format!("{} {}?{} HTTP/1.{}", head.method_raw, head.path, head.query, head.minor_version)
    };
    let (sig, auth_type) = match seen.auth {
        Some(AuthKind::HeaderV4) => (Some("SigV4"), Some("AuthHeader")),
        Some(AuthKind::PresignedV4) => (Some("SigV4"), Some("QueryString")),
        Some(AuthKind::HeaderV2) => (Some("SigV2"), Some("AuthHeader")),
        Some(AuthKind::PresignedV2) => (Some("SigV2"), Some("QueryString")),
        None => (None, None),
    };
    let header = |n: &str| resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let op = crate::s3::logging::operation_name(head.method.as_str(), &seen.op);
    let rec = tessera_proto::logging::LogRecord {
        bucket_owner: &b.owner_id,
        bucket: &b.name,
        time_unix_secs: tessera_proto::time::now_unix_secs(),
        remote_ip: &peer,
        requester: seen.requester.as_deref(),
        request_id,
        operation: &op,
        key: seen.key.as_deref(),
        request_uri: &uri,
        status: resp.status,
        error_code: error_code.as_deref(),
        bytes_sent: if head.method == http::Method::Head { 0 } else { resp.body.len() },
        object_size: None,
        total_time_ms: started.elapsed().as_millis() as u64,
        referer: head.headers.get("referer"),
        user_agent: head.headers.get("user-agent"),
        version_id: header("x-amz-version-id"),
        signature_version: sig,
        auth_type,
        host: head.headers.get("host"),
    };
    crate::s3::logging::record(ctx, b, &rec);
}

/// The `<Code>` of an error response's body.
fn error_code_of(resp: &Response) -> Option<String> {
    let RespBody::Bytes(b) = &resp.body else { return None };
    let text = std::str::from_utf8(b).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_string())
}

/// Runs one request to a response. The bool says whether the request body
/// was consumed to its end (so the connection can carry another request);
/// the name is the operation's metrics label.
async fn run_request(
    ctx: &Rc<Ctx>,
    head: &RequestHead,
    conn: &mut Conn,
    request_id: String,
    peer: std::net::IpAddr,
) -> (Response, bool, Option<Seen>, &'static str) {
    let resource = resource_of(head);
    let routed = route(ctx, head);
    let op_name = routed.as_ref().map_or(crate::metrics::OP_UNROUTED, |r| r.op.name());
    let mut seen = routed.as_ref().ok().and_then(|r| {
        let bucket = r.bucket.clone()?;
        let wanted = ctx
            .shared
            .buckets
            .get(&bucket)
            .is_some_and(|b| b.logging.is_some() || (!b.cors.is_empty() && head.headers.contains("origin")));
        wanted.then(|| Seen { bucket, key: r.key.clone(), op: r.op.clone(), requester: None, auth: None })
    });
    let mut prepared = routed.and_then(|r| authenticate(ctx, head, r));
    // In a cluster, an access key (or a session's role or user) created a
    // moment ago through another node may not be applied here yet: looked
    // up again once this node has applied the leader's read index.
    if matches!(&prepared, Err(e) if e.code == tessera_proto::S3ErrorCode::InvalidAccessKeyId)
        && ctx.shared.iam.catch_up().await
    {
        prepared = route(ctx, head).and_then(|r| authenticate(ctx, head, r));
    }
    let (routed, principal, auth) = match prepared {
        Ok(x) => x,
        Err(e) => {
            let done = matches!(head.framing(), Ok(http::BodyFraming::Length(0)));
            return (Response::error(&e, &resource, &request_id), done, seen, op_name);
        }
    };
    if let Some(s) = seen.as_mut() {
        s.requester = principal.account.as_ref().map(|u| u.user_id.clone());
        s.auth = auth.as_ref().map(|a| a.kind);
    }
    let payload = auth.as_ref().map(|a| a.payload.clone());
    // CompleteMultipartUpload's x-amz-checksum-* headers carry the object's
    // checksum (COMPOSITE ones end in -N), not its XML body's: the handler checks them.
    let complete_head;
    let body_head = if matches!(routed.op, Op::CompleteMultipartUpload { .. }) {
        complete_head = without_checksum_headers(head);
        &complete_head
    } else {
        head
    };
    let body = match BodyReader::new(body_head, payload.as_ref()) {
        Ok(b) => b.with_md5_pool(&ctx.md5_pool),
        Err(e) => {
            let done = matches!(head.framing(), Ok(http::BodyFraming::Length(0)));
            return (Response::error(&e, &resource, &request_id), done, seen, op_name);
        }
    };
    let user = principal.account.clone();
    let authz = Authz::new(principal, peer, tessera_proto::time::now_unix_secs());
    let mut req = Request { head, routed, user, auth, authz, request_id: request_id.clone(), body, conn };
    let result = crate::s3::dispatch(ctx, &mut req).await;
    let done = req.body.is_complete();
    match result {
        Ok(resp) => (resp.header("x-amz-request-id", request_id), done, seen, op_name),
        Err(e) => {
            if e.code == S3ErrorCode::InternalError {
                if ctx.error_log.allow() {
                    tracing::error!(op = op_name, request_id, "internal error: {}", e.message);
                }
            } else {
                tracing::debug!(op = op_name, request_id, "{}: {}", e.code, e.message);
            }
            let mut extra = Vec::new();
            match e.code {
                S3ErrorCode::NoSuchKey => extra.push(("Key", req.key())),
                S3ErrorCode::NoSuchBucket | S3ErrorCode::BucketNotEmpty => extra.push(("BucketName", req.bucket())),
                S3ErrorCode::NoSuchUpload => extra.extend(req.routed.query.get("uploadId").map(|u| ("UploadId", u))),
                _ => {}
            }
            (Response::error_with(&e, &resource, &request_id, &extra), done, seen, op_name)
        }
    }
}

/// `head` without its `x-amz-checksum-<algorithm>` headers.
fn without_checksum_headers(head: &RequestHead) -> RequestHead {
    let mut h = head.clone();
    h.headers = tessera_proto::Headers::new();
    for (n, v) in head.headers.iter() {
        if tessera_proto::checksum::ChecksumAlgo::from_header_name(n).is_none() {
            h.headers.push(n, v);
        }
    }
    h
}

type Prepared = (Routed, Principal, Option<AuthContext>);

/// Routing: decided from the head alone.
fn route(ctx: &Ctx, head: &RequestHead) -> Result<Routed, S3Error> {
    head.framing().map_err(S3Error::from)?;
    let shared = &ctx.shared;
    let mut routed = router::route(
        head.method,
        &head.path,
        &head.query,
        head.headers.get("host"),
        &shared.config.vhost_domains,
    )?;
    if head.headers.contains("x-amz-copy-source") {
        routed.op = match routed.op {
            Op::PutObject => Op::CopyObject,
            Op::UploadPart { part_number, upload_id } => Op::UploadPartCopy { part_number, upload_id },
            other => other,
        };
    }
    Ok(routed)
}

/// Authentication: decided from the head alone. A CORS preflight is never
/// authenticated (browsers send no credentials with it; a presigned URL's
/// signature is for the method that follows, not for OPTIONS).
fn authenticate(ctx: &Ctx, head: &RequestHead, routed: Routed) -> Result<Prepared, S3Error> {
    if routed.op == Op::Options {
        return Ok((routed, Principal::anonymous(ctx.shared.iam.snapshot()), None));
    }
    let shared = &ctx.shared;
    let sig = SigRequest { method: &head.method_raw, path: &head.path, query: &head.query, headers: &head.headers };
    let vhost_bucket = routed.bucket.as_deref().filter(|_| routed.vhost);
    let now = tessera_proto::time::now_unix_secs();
    let region = shared.config.region.as_str();
    let iam = shared.iam.snapshot();
    let session = match principal::security_token(head) {
        Some(t) => Some(principal::open_session(shared, &t, now)?),
        None => None,
    };
    let secret_for = |ak: &str| principal::secret_for(shared, &iam, session.as_ref(), ak);
    let auth = sigv4::authenticate_cached(&sig, vhost_bucket, region, now, &secret_for, Some(&ctx.signing_keys))?;
    let principal = match &auth {
        Some(a) => principal::principal_for(shared, iam, session, &a.access_key)?,
        None => Principal::anonymous(iam),
    };
    Ok((routed, principal, auth))
}
