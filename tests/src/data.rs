//! Test data, digests and checks on SDK results.

use std::fmt::Debug;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use md5::{Digest, Md5};
use rand::{RngCore, SeedableRng};

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;
/// S3's smallest part except the last one.
pub const MIN_PART_SIZE: usize = 5 * MIB;

/// The CreateMultipartUpload request `put_multipart` makes, before it is sent.
pub type CreateUpload = aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;

/// Writes `parts` as a multipart upload of `key` (with `extra` applied to
/// the create), one part after another: the Complete's answer.
pub async fn put_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
    extra: impl FnOnce(CreateUpload) -> CreateUpload,
) -> aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let up = ok(extra(s3.create_multipart_upload().bucket(bucket).key(key)).send().await, "create upload");
    let id = up.upload_id().expect("an upload id");
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = ok(s3.upload_part().bucket(bucket).key(key).upload_id(id).part_number(n).body(bytestream(p)).send().await, "part");
        done.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().expect("a part ETag")).build());
    }
    let mpu = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    ok(s3.complete_multipart_upload().bucket(bucket).key(key).upload_id(id).multipart_upload(mpu).send().await, "complete")
}

/// `len` pseudo-random bytes, the same for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

pub fn md5_bytes(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5_bytes(data))
}

/// The ETag S3 gives a single-PUT object: the quoted hex MD5.
pub fn etag(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The ETag of a multipart object: the quoted MD5 of the concatenated
/// binary part MD5s, a dash, the number of parts.
pub fn multipart_etag<P: AsRef<[u8]>>(parts: &[P]) -> String {
    let mut all = Vec::with_capacity(16 * parts.len());
    for p in parts {
        all.extend_from_slice(&md5_bytes(p.as_ref()));
    }
    format!("\"{}-{}\"", md5_hex(&all), parts.len())
}

/// The Content-MD5 header value: base64 of the binary MD5.
pub fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5_bytes(data))
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn bytestream(data: &[u8]) -> ByteStream {
    ByteStream::from(data.to_vec())
}

/// Reads the whole body of a GetObject response.
pub async fn read_body(out: GetObjectOutput) -> Vec<u8> {
    out.body
        .collect()
        .await
        .expect("read object body")
        .into_bytes()
        .to_vec()
}

/// Streams a body through MD5 without keeping it: (hex MD5, length).
pub async fn stream_md5(out: GetObjectOutput) -> (String, u64) {
    let mut body = out.body;
    let mut hasher = Md5::new();
    let mut len = 0u64;
    while let Some(chunk) = body.try_next().await.expect("read object body") {
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hex::encode(hasher.finalize()), len)
}

/// What an SDK call that failed said.
#[derive(Debug, Clone)]
pub struct SdkFailure {
    /// HTTP status, `None` when no response arrived.
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub debug: String,
}

/// The failure of `result`; panics if it succeeded.
#[track_caller]
pub fn sdk_failure<T: Debug, E>(result: Result<T, SdkError<E, HttpResponse>>) -> SdkFailure
where
    E: ProvideErrorMetadata + Debug,
{
    match result {
        Ok(v) => panic!("expected an error, got success: {v:?}"),
        Err(e) => failure_of(&e),
    }
}

pub fn failure_of<E>(e: &SdkError<E, HttpResponse>) -> SdkFailure
where
    E: ProvideErrorMetadata + Debug,
{
    SdkFailure {
        status: e.raw_response().map(|r| r.status().as_u16()),
        code: e.code().map(str::to_string),
        message: e.message().map(str::to_string),
        debug: format!("{e:?}"),
    }
}

/// Asserts that `result` failed with this HTTP status and S3 error code.
#[track_caller]
pub fn assert_s3_error<T: Debug, E>(result: Result<T, SdkError<E, HttpResponse>>, status: u16, code: &str)
where
    E: ProvideErrorMetadata + Debug,
{
    let f = sdk_failure(result);
    assert_eq!(
        (f.status, f.code.as_deref()),
        (Some(status), Some(code)),
        "expected {status} {code}; got {f:#?}"
    );
}

/// Asserts that `result` failed with this HTTP status (for HEAD, 304, ...).
#[track_caller]
pub fn assert_status<T: Debug, E>(result: Result<T, SdkError<E, HttpResponse>>, status: u16)
where
    E: ProvideErrorMetadata + Debug,
{
    let f = sdk_failure(result);
    assert_eq!(f.status, Some(status), "expected status {status}; got {f:#?}");
}

/// Unwraps an SDK result, printing the whole error (code, message, status)
/// on failure.
#[track_caller]
pub fn ok<T, E>(result: Result<T, SdkError<E, HttpResponse>>, what: &str) -> T
where
    E: ProvideErrorMetadata + Debug,
{
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: {:#?}", failure_of(&e)),
    }
}

/// Percent-encodes a key for a path the way the SDKs do (every byte but
/// unreserved characters and '/').
pub fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-decodes (for `encoding-type=url` answers).
pub fn decode_url(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).expect("decoded key is UTF-8")
}

/// PUTs `keys` (body: the key's bytes) with up to `concurrency` requests in
/// flight.
pub async fn put_keys(s3: &aws_sdk_s3::Client, bucket: &str, keys: &[String], concurrency: usize) {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (s3, bucket, key) = (s3.clone(), bucket.to_string(), key.clone());
        tasks.spawn(async move {
            let r = s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(bytestream(key.as_bytes()))
                .send()
                .await;
            drop(permit);
            ok(r, &format!("put {key:?}"));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("put task");
    }
}

/// PutBucketLifecycleConfiguration with `rules`; the S3 error code when refused.
pub async fn put_lifecycle_rules(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    rules: Vec<aws_sdk_s3::types::LifecycleRule>,
) -> Result<(), String> {
    let cfg = aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(|e| e.to_string())?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(cfg)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| failure_of(&e).code.unwrap_or_default())
}

/// Polls `f` every 200 ms until it holds; fails the test once `deadline`
/// has passed (for background workers: lifecycle, tiering).
pub async fn wait_until_within<F, Fut>(deadline: std::time::Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !f().await {
        assert!(start.elapsed() < deadline, "not within {deadline:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
