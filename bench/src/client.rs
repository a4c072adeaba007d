//! One worker's S3 client: a keep-alive connection, signed requests, a timeout
//! on each, and the few S3 calls the workloads make.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::time::now_unix_secs;

use crate::http::{Conn, HttpError, Keep, Response};
use crate::monitor::Live;
use crate::s3::{self, Signer};
use crate::stats::{ErrorKind, ErrorLog, OpKind, WorkerStats, ERROR_BODY_SAMPLE_BYTES};

/// Largest list page body kept (proto's XML parser refuses more anyway).
pub const MAX_LIST_BODY_BYTES: usize = tessera_proto::xml::MAX_XML_BODY_BYTES;
/// Largest body kept from CreateMultipartUpload and CompleteMultipartUpload.
pub const MAX_MULTIPART_REPLY_BYTES: usize = 64 * 1024;
/// Most parts of one upload (S3's limit).
pub const MAX_PARTS: u64 = 10_000;
/// Lifetime of presigned URLs the GETs of `--presigned` use.
pub const PRESIGN_EXPIRES_SECS: i64 = 3600;
/// A presigned URL is reused for this long, as a browser or wrk reuses one.
pub const PRESIGN_REUSE_SECS: i64 = 300;
/// Presigned request heads one worker keeps (the cache is emptied when full).
pub const MAX_PRESIGNED_CACHED: usize = 4096;

/// What every worker of a run shares.
pub struct Shared {
    /// The endpoints; worker `i` talks to `targets[i % len]` (several
    /// spread the load over the nodes of a cluster).
    pub targets: Vec<Target>,
    pub timeout: Duration,
    /// How often progress lines are printed (zero: never).
    pub progress_every: Duration,
    /// Per-thread counts of the current second, for progress lines and the timeline.
    pub live: Live,
    pub errors: ErrorLog,
    /// Set by Ctrl-C: workers finish the request in flight and stop.
    pub stop: AtomicBool,
}

/// One endpoint: where to connect and how to sign for it.
pub struct Target {
    pub addr: SocketAddr,
    /// `https://` endpoints: how to open TLS connections.
    pub tls: Option<crate::http::TlsClient>,
    pub signer: Signer,
}

impl Shared {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts a finished request in `stats` and in its thread's live slot (no
    /// counter is shared between threads: the client must never be the
    /// bottleneck); the first few failures are printed with their bodies.
    /// `slot` is the client thread the worker runs on.
    pub fn account(&self, slot: usize, stats: &mut WorkerStats, op: OpKind, target: &str, started: Instant, result: Result<u64, Failure>) {
        match result {
            Ok(bytes) => {
                let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.op(op).record_ok(latency_us, bytes);
                self.live.record_ok(slot, latency_us, bytes);
            }
            Err(f) => {
                stats.op(op).record_error(f.kind, f.code.as_deref());
                self.live.record_error(slot);
                self.errors.note(op.name(), target, f.kind, &f.detail);
            }
        }
    }
}

/// A request that did not succeed, and what the server or the socket said.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    /// The S3 error code of an error response (`SlowDown`, `NoSuchKey`, ...).
    pub code: Option<String>,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: String) -> Failure {
        Failure { kind, code: None, detail }
    }

    fn status(resp: &Response) -> Failure {
        Failure {
            kind: ErrorKind::Status(resp.status),
            code: s3::error_code(&resp.body),
            detail: s3::describe_error_body(&resp.body),
        }
    }
}

pub struct Client {
    shared: Arc<Shared>,
    /// Index of this client's endpoint in `shared.targets`.
    target: usize,
    conn: Option<Conn>,
    head: Vec<u8>,
    keys: s3::KeyCache,
    /// path -> (signed at, request head) for `--presigned` GETs.
    presigned: HashMap<String, (i64, Vec<u8>)>,
    /// The path of the GET being sent (reused: no allocation per request).
    path: String,
}

impl Client {
    /// A client of the first endpoint.
    pub fn new(shared: Arc<Shared>) -> Client {
        Client::on(shared, 0)
    }

    /// A client of endpoint `n % endpoints` (worker `n` of a run).
    pub fn on(shared: Arc<Shared>, n: usize) -> Client {
        let target = n % shared.targets.len().max(1);
        Client {
            shared,
            target,
            conn: None,
            head: Vec::with_capacity(1024),
            keys: s3::KeyCache::default(),
            presigned: HashMap::new(),
            path: String::new(),
        }
    }

    /// Opens the connection ahead of time, so the timed phase starts warm.
    pub async fn connect(&mut self) -> Result<(), Failure> {
        if self.conn.is_none() {
            let t = &self.shared.targets[self.target];
            let conn = Conn::connect(t.addr, t.tls.as_ref())
                .await
                .map_err(|e| Failure::new(ErrorKind::Io, format!("connect {}: {e}", t.addr)))?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    /// Sends one signed request and reads the whole response, within the timeout.
    /// A keep-alive connection found dead before any response byte is replaced
    /// and the request sent once more, as SDKs do.
    pub async fn request(&mut self, method: &str, path: &str, query: &str, body: &[u8], keep: Keep) -> Result<Response, Failure> {
        let content_length = matches!(method, "PUT" | "POST").then_some(body.len() as u64);
        self.head.clear();
        self.shared.targets[self.target].signer.write_head(&mut self.keys, &mut self.head, method, path, query, content_length, now_unix_secs());
        self.send_head(method == "HEAD", body, keep).await
    }

    /// Sends the request in `self.head` (and `body`), retrying once on a dead
    /// keep-alive connection.
    async fn send_head(&mut self, request_is_head: bool, body: &[u8], keep: Keep) -> Result<Response, Failure> {
        let timeout = self.shared.timeout;
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            match tokio::time::timeout(timeout, self.exchange(request_is_head, body, keep)).await {
                Err(_) => {
                    self.conn = None;
                    let detail = format!("no whole response within {} ms", timeout.as_millis());
                    return Err(Failure::new(ErrorKind::Timeout, detail));
                }
                Ok(Ok(resp)) => {
                    if !resp.reusable {
                        self.conn = None;
                    }
                    return Ok(resp);
                }
                Ok(Err(e)) => {
                    self.conn = None;
                    if reused && attempt == 0 && matches!(e, HttpError::ClosedIdle) {
                        continue;
                    }
                    return Err(Failure::new(ErrorKind::Io, e.to_string()));
                }
            }
        }
        Err(Failure::new(ErrorKind::Io, "connection closed twice before a response".into()))
    }

    async fn exchange(&mut self, request_is_head: bool, body: &[u8], keep: Keep) -> Result<Response, HttpError> {
        if self.conn.is_none() {
            let t = &self.shared.targets[self.target];
            self.conn = Some(Conn::connect(t.addr, t.tls.as_ref()).await?);
        }
        let Some(conn) = self.conn.as_mut() else { return Err(HttpError::Closed) };
        conn.send(&self.head, body).await?;
        conn.read_response(request_is_head, keep).await
    }

    /// PutObject; the payload bytes on success.
    pub async fn put_object(&mut self, bucket: &str, key: &str, body: &[u8]) -> Result<u64, Failure> {
        let keep = Keep { success_bytes: 0, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let resp = self.request("PUT", &s3::object_path(bucket, key), "", body, keep).await?;
        if resp.status != 200 {
            return Err(Failure::status(&resp));
        }
        Ok(body.len() as u64)
    }

    /// GetObject, checking that the body is `expect_bytes` long; the body bytes on
    /// success. `presigned`: authenticated by a presigned URL (query
    /// parameters, as a browser or `wrk` would send it) instead of headers.
    pub async fn get_object(&mut self, bucket: &str, key: &str, expect_bytes: u64, presigned: bool) -> Result<u64, Failure> {
        let keep = Keep { success_bytes: 0, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let mut path = std::mem::take(&mut self.path);
        s3::set_object_path(&mut path, bucket, key);
        let resp = if presigned {
            self.set_presigned_head(&path);
            self.path = path;
            self.send_head(false, b"", keep).await?
        } else {
            let resp = self.request("GET", &path, "", b"", keep).await;
            self.path = path;
            resp?
        };
        if resp.status != 200 {
            return Err(Failure::status(&resp));
        }
        if resp.body_bytes != expect_bytes {
            let detail = format!("body of {} bytes, expected {expect_bytes}", resp.body_bytes);
            return Err(Failure::new(ErrorKind::LengthMismatch, detail));
        }
        Ok(resp.body_bytes)
    }

    /// Puts the presigned GET of `path` in `self.head`, signed anew only when the
    /// cached one is older than `PRESIGN_REUSE_SECS`.
    fn set_presigned_head(&mut self, path: &str) {
        let now = now_unix_secs();
        let fresh = |signed_at: i64| now >= signed_at && now - signed_at <= PRESIGN_REUSE_SECS;
        self.head.clear();
        match self.presigned.get(path) {
            Some((signed_at, head)) if fresh(*signed_at) => self.head.extend_from_slice(head),
            cached => {
                if cached.is_none() && self.presigned.len() >= MAX_PRESIGNED_CACHED {
                    self.presigned.clear();
                }
                let mut head = Vec::with_capacity(512);
                self.shared.targets[self.target].signer.write_presigned_head(&mut head, "GET", path, now, PRESIGN_EXPIRES_SECS);
                self.head.extend_from_slice(&head);
                self.presigned.insert(path.to_string(), (now, head));
            }
        }
    }

    /// HeadObject, checking the Content-Length it reports; 0 bytes moved.
    pub async fn stat_object(&mut self, bucket: &str, key: &str, expect_bytes: u64) -> Result<u64, Failure> {
        let keep = Keep { success_bytes: 0, error_bytes: 0 };
        let resp = self.request("HEAD", &s3::object_path(bucket, key), "", b"", keep).await?;
        if resp.status != 200 {
            return Err(Failure::status(&resp));
        }
        if resp.content_length != Some(expect_bytes) {
            let detail = format!("Content-Length {:?}, expected {expect_bytes}", resp.content_length);
            return Err(Failure::new(ErrorKind::LengthMismatch, detail));
        }
        Ok(0)
    }

    /// DeleteObject (204 whether or not the key existed, as S3 answers).
    pub async fn delete_object(&mut self, bucket: &str, key: &str) -> Result<u64, Failure> {
        let keep = Keep { success_bytes: 0, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let resp = self.request("DELETE", &s3::object_path(bucket, key), "", b"", keep).await?;
        if resp.status != 204 && resp.status != 200 {
            return Err(Failure::status(&resp));
        }
        Ok(0)
    }

    /// A whole multipart upload of `body` in parts of `part_bytes` (the last may be
    /// shorter); the bytes uploaded on success. A failed upload is aborted.
    pub async fn multipart_upload(&mut self, bucket: &str, key: &str, body: &[u8], part_bytes: u64) -> Result<u64, Failure> {
        assert!(part_bytes > 0);
        let path = s3::object_path(bucket, key);
        let keep = Keep { success_bytes: MAX_MULTIPART_REPLY_BYTES, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let resp = self.request("POST", &path, "uploads=", b"", keep).await?;
        if resp.status != 200 {
            return Err(Failure::status(&resp));
        }
        let upload_id = s3::parse_upload_id(&resp.body).map_err(|d| Failure::new(ErrorKind::BadBody, d))?;
        let result = self.upload_parts(&path, &upload_id, body, part_bytes).await;
        if result.is_err() {
            let query = format!("uploadId={}", s3::query_value(&upload_id));
            let _ = self.request("DELETE", &path, &query, b"", keep).await;
        }
        result
    }

    async fn upload_parts(&mut self, path: &str, upload_id: &str, body: &[u8], part_bytes: u64) -> Result<u64, Failure> {
        let keep = Keep { success_bytes: MAX_MULTIPART_REPLY_BYTES, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let id = s3::query_value(upload_id);
        let parts = (body.len() as u64).div_ceil(part_bytes).max(1);
        if parts > MAX_PARTS {
            return Err(Failure::new(ErrorKind::BadBody, format!("{parts} parts: more than S3's {MAX_PARTS}")));
        }
        let mut etags = Vec::with_capacity(parts as usize);
        for n in 0..parts {
            let start = (n * part_bytes) as usize;
            let end = ((n + 1) * part_bytes).min(body.len() as u64) as usize;
            let query = format!("partNumber={}&uploadId={id}", n + 1);
            let resp = self.request("PUT", path, &query, &body[start.min(end)..end], keep).await?;
            if resp.status != 200 {
                return Err(Failure::status(&resp));
            }
            let etag = resp.etag.ok_or_else(|| Failure::new(ErrorKind::BadBody, format!("UploadPart {}: no ETag", n + 1)))?;
            etags.push(etag);
        }
        let complete = s3::complete_multipart_body(&etags);
        let resp = self.request("POST", path, &format!("uploadId={id}"), complete.as_bytes(), keep).await?;
        // CompleteMultipartUpload may fail after a 200 has started: the body says.
        if resp.status != 200 || s3::error_code(&resp.body).is_some() {
            return Err(Failure::status(&resp));
        }
        Ok(body.len() as u64)
    }

    /// One ListObjectsV2 page, and the bytes of its body.
    pub async fn list_page(&mut self, bucket: &str, query: &str) -> Result<(s3::ListPage, u64), Failure> {
        let keep = Keep { success_bytes: MAX_LIST_BODY_BYTES, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let resp = self.request("GET", &s3::bucket_path(bucket), query, b"", keep).await?;
        if resp.status != 200 {
            return Err(Failure::status(&resp));
        }
        if resp.body_bytes > resp.body.len() as u64 {
            let detail = format!("list page of {} bytes, more than the {MAX_LIST_BODY_BYTES} kept", resp.body_bytes);
            return Err(Failure::new(ErrorKind::BadBody, detail));
        }
        let page = s3::parse_list_page(&resp.body).map_err(|detail| Failure::new(ErrorKind::BadBody, detail))?;
        Ok((page, resp.body_bytes))
    }

    /// Creates `bucket` unless it exists and is ours.
    pub async fn ensure_bucket(&mut self, bucket: &str) -> Result<(), String> {
        let keep = Keep { success_bytes: 0, error_bytes: ERROR_BODY_SAMPLE_BYTES };
        let path = s3::bucket_path(bucket);
        let describe = |what: &str, f: Failure| format!("{what} {bucket}: {} {}", f.kind, f.detail.trim());
        let head = self.request("HEAD", &path, "", b"", keep).await.map_err(|f| describe("HeadBucket", f))?;
        match head.status {
            200 => return Ok(()),
            404 => {}
            s => {
                // HEAD answers carry no body: ask again with a GET to learn the S3 error code.
                let why = match self.request("GET", &path, "list-type=2&max-keys=1", b"", keep).await {
                    Ok(r) if r.status >= 300 => s3::describe_error_body(&r.body),
                    _ => "(no reason given)".to_string(),
                };
                return Err(format!("HeadBucket {bucket}: HTTP {s}: {why}"));
            }
        }
        let body = s3::create_bucket_body(&self.shared.targets[self.target].signer.region);
        let resp = self.request("PUT", &path, "", body.as_bytes(), keep).await.map_err(|f| describe("CreateBucket", f))?;
        let why = s3::describe_error_body(&resp.body);
        match resp.status {
            200 => Ok(()),
            409 if why.starts_with("BucketAlreadyOwnedByYou") => Ok(()),
            s => Err(format!("CreateBucket {bucket}: HTTP {s}: {why}")),
        }
    }
}
