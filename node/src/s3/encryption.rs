//! Bucket default encryption (Put/Get/DeleteBucketEncryption), and the
//! transport rule of SSE-C.

use std::net::IpAddr;
use std::rc::Rc;

use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::require_integrity_check;
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;
use crate::sse::{kms, BucketEncryption};

/// Largest ServerSideEncryptionConfiguration body accepted.
pub const MAX_ENCRYPTION_CONFIG_BYTES: usize = 16 * 1024;

/// SSE-C sends the key itself in the request: over plain HTTP it would
/// cross the network in clear, so S3 refuses it (400). It is accepted over
/// TLS, and over plain HTTP from loopback clients alone (tests, local
/// tools, a TLS proxy on the same host).
pub fn require_secure_transport(req: &Request<'_>) -> S3Result<()> {
    require_secure_transport_for(&req.head.headers, req.conn.peer, req.conn.is_tls())
}

/// The same rule for headers from elsewhere (a POST form's fields).
pub fn require_secure_transport_for(h: &tessera_proto::Headers, peer: Option<IpAddr>, tls: bool) -> S3Result<()> {
    if tls || !crate::sse::has_customer_headers(h) {
        return Ok(());
    }
    let loopback = match peer {
        Some(IpAddr::V4(a)) => a.is_loopback(),
        Some(IpAddr::V6(a)) => a.to_ipv4_mapped().map_or(a.is_loopback(), |v4| v4.is_loopback()),
        None => false,
    };
    if loopback {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
    ))
}

fn malformed(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, msg)
}

/// Parses a ServerSideEncryptionConfiguration: one rule, AES256 or
/// aws:kms (with an optional key id), BucketKeyEnabled optional.
pub fn parse(body: &[u8]) -> S3Result<BucketEncryption> {
    if body.len() > MAX_ENCRYPTION_CONFIG_BYTES {
        return Err(malformed("The encryption configuration is too large"));
    }
    let root = xml::parse(body)?;
    if root.name != "ServerSideEncryptionConfiguration" {
        return Err(malformed("Expected ServerSideEncryptionConfiguration"));
    }
    let rules: Vec<_> = root.children_named("Rule").collect();
    let [rule] = rules.as_slice() else {
        return Err(malformed("A configuration holds exactly one Rule"));
    };
    let by_default = rule.child("ApplyServerSideEncryptionByDefault").ok_or_else(|| malformed("Missing ApplyServerSideEncryptionByDefault"))?;
    let kms = match by_default.child_text("SSEAlgorithm").map(str::trim) {
        Some("AES256") => false,
        Some("aws:kms" | "aws:kms:dsse") => true,
        _ => return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid SSEAlgorithm")),
    };
    let kms_key_id = by_default.child_text("KMSMasterKeyID").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some(k) = &kms_key_id {
        if !kms {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "KMSMasterKeyID is allowed only with aws:kms"));
        }
        if !kms::valid_client_key_id(k) {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid KMSMasterKeyID"));
        }
    }
    let bucket_key = match rule.child_text("BucketKeyEnabled").map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(malformed("BucketKeyEnabled is true or false")),
    };
    Ok(BucketEncryption { kms, kms_key_id, bucket_key })
}

pub fn render(e: &BucketEncryption) -> String {
    let mut w = XmlWriter::new().root("ServerSideEncryptionConfiguration");
    w.open("Rule").open("ApplyServerSideEncryptionByDefault");
    w.elem("SSEAlgorithm", if e.kms { "aws:kms" } else { "AES256" });
    if let Some(k) = &e.kms_key_id {
        w.elem("KMSMasterKeyID", k);
    }
    w.close("ApplyServerSideEncryptionByDefault");
    w.elem("BucketKeyEnabled", if e.bucket_key { "true" } else { "false" });
    w.close("Rule").close("ServerSideEncryptionConfiguration");
    w.finish()
}

pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    require_integrity_check(req)?;
    let body = req.read_body_to_vec(MAX_ENCRYPTION_CONFIG_BYTES).await?;
    let config = parse(&body)?;
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.encryption = Some(config.clone());
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    let e = b.encryption.as_ref().ok_or_else(|| S3Error::new(S3ErrorCode::ServerSideEncryptionConfigurationNotFoundError))?;
    Ok(Response::xml(200, render(e)))
}

pub async fn delete(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            info.encryption = None;
            Ok(())
        })
        .await?;
    Ok(Response::new(204))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs() {
        let kms = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>testkey-1</KMSMasterKeyID></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"#;
        let e = parse(kms).unwrap();
        assert_eq!(e, BucketEncryption { kms: true, kms_key_id: Some("testkey-1".into()), bucket_key: true });
        assert_eq!(parse(render(&e).as_bytes()).unwrap(), e);
        let s3 = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(parse(s3).unwrap(), BucketEncryption { kms: false, kms_key_id: None, bucket_key: false });
        for bad in [
            &br#"<ServerSideEncryptionConfiguration/>"#[..],
            br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES128</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#,
            br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#,
            br#"<Other/>"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
