//! What the SDK in its default configuration sends, checked on the wire,
//! and that tessera takes each form.
//!
//! aws-sdk-s3 (Rust, 1.157) over plain HTTP sends an in-memory body with a
//! signed payload hash and the CRC32 as an `x-amz-checksum-crc32` header,
//! and a streaming body (file) as `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`
//! (signed chunks, signed CRC32 trailer). It sends
//! `STREAMING-UNSIGNED-PAYLOAD-TRAILER` only over HTTPS; the raw tests in
//! auth.rs cover that mode.

use aws_sdk_s3::primitives::ByteStream;
use tessera_tests::proxy::RecordingProxy;
use tessera_tests::*;

fn lower_lines(wire: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(wire)
        .lines()
        .map(|l| l.to_ascii_lowercase())
        .collect()
}

fn head_of(wire: &[u8]) -> String {
    let end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(wire.len().min(2000));
    String::from_utf8_lossy(&wire[..end]).into_owned()
}

async fn setup() -> (Server, RecordingProxy, aws_sdk_s3::Client) {
    let server = Server::start();
    let proxy = RecordingProxy::start(server.addr()).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        server
            .config_builder(&server.access_key, &server.secret_key)
            .endpoint_url(proxy.endpoint())
            .build(),
    );
    ok(s3.create_bucket().bucket("wire").send().await, "create");
    proxy.clear();
    (server, proxy, s3)
}

#[tokio::test(flavor = "multi_thread")]
async fn default_sdk_put_of_bytes_sends_crc32_header() {
    let (_server, proxy, s3) = setup().await;
    let data = random_bytes(300_000, 1);
    let crc = b64(&crc32fast::hash(&data).to_be_bytes());
    let put = ok(
        s3.put_object()
            .bucket("wire")
            .key("k")
            .body(bytestream(&data))
            .send()
            .await,
        "put",
    );
    let wire = proxy.recorded();
    let lines = lower_lines(&wire);
    assert!(
        lines.contains(&format!("x-amz-checksum-crc32: {}", crc.to_ascii_lowercase())),
        "expected a CRC32 header: {}",
        head_of(&wire)
    );
    assert_eq!(
        put.checksum_crc32(),
        Some(crc.as_str()),
        "x-amz-checksum-crc32 in the PutObject response"
    );
    assert_eq!(put.e_tag(), Some(etag(&data).as_str()));
    let got = read_body(ok(s3.get_object().bucket("wire").key("k").send().await, "get")).await;
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_sdk_put_of_a_file_sends_signed_chunks_with_signed_trailer() {
    let (server, proxy, s3) = setup().await;
    let data = random_bytes(1_500_000, 2);
    let path = server.temp_dir().join("upload.bin");
    std::fs::write(&path, &data).unwrap();
    let crc = b64(&crc32fast::hash(&data).to_be_bytes());

    let body = ByteStream::from_path(&path).await.expect("file body");
    let put = ok(
        s3.put_object().bucket("wire").key("file").body(body).send().await,
        "put from file",
    );
    let wire = proxy.recorded();
    let lines = lower_lines(&wire);
    assert!(
        lines.contains(&"x-amz-content-sha256: streaming-aws4-hmac-sha256-payload-trailer".to_string()),
        "expected signed aws-chunked with trailer: {}",
        head_of(&wire)
    );
    assert!(
        lines.contains(&"x-amz-trailer: x-amz-checksum-crc32".to_string()),
        "{}",
        head_of(&wire)
    );
    assert!(
        lines.iter().any(|l| l.starts_with("x-amz-trailer-signature:")),
        "no trailer signature on the wire"
    );
    assert!(String::from_utf8_lossy(&wire).contains(&format!("x-amz-checksum-crc32:{crc}")));
    assert_eq!(put.e_tag(), Some(etag(&data).as_str()));
    assert_eq!(put.checksum_crc32(), Some(crc.as_str()));
    let got = read_body(ok(s3.get_object().bucket("wire").key("file").send().await, "get")).await;
    assert!(got == data, "stored bytes are not the decoded payload");

    // UploadPart from a file goes the same way.
    let id = ok(
        s3.create_multipart_upload().bucket("wire").key("mp").send().await,
        "create mpu",
    )
    .upload_id()
    .unwrap()
    .to_string();
    proxy.clear();
    let body = ByteStream::from_path(&path).await.expect("file body");
    let out = ok(
        s3.upload_part()
            .bucket("wire")
            .key("mp")
            .upload_id(&id)
            .part_number(1)
            .body(body)
            .send()
            .await,
        "upload part from file",
    );
    let lines = lower_lines(&proxy.recorded());
    assert!(lines.contains(&"x-amz-content-sha256: streaming-aws4-hmac-sha256-payload-trailer".to_string()));
    assert_eq!(out.e_tag(), Some(etag(&data).as_str()));
}
