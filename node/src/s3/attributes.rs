//! GetObjectAttributes: ETag, Checksum, ObjectParts (paged), StorageClass
//! and ObjectSize of a version, without its body.

use std::rc::Rc;

use tessera_proto::checksum::ChecksumAlgo;
use tessera_proto::time::format_http_date;
use tessera_proto::xml::{checksum_element, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::get::read_version;
use super::{push_read_version, unquote, versions};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

/// Default and largest `x-amz-max-parts`.
pub const MAX_ATTRIBUTE_PARTS: usize = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    etag: bool,
    checksum: bool,
    parts: bool,
    storage_class: bool,
    size: bool,
}

fn invalid(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

/// `x-amz-object-attributes`: a comma-separated list, at least one.
fn wanted(req: &Request<'_>) -> S3Result<Wanted> {
    let mut w = Wanted::default();
    let mut any = false;
    for v in req.head.headers.get_all("x-amz-object-attributes") {
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            any = true;
            match name {
                "ETag" => w.etag = true,
                "Checksum" => w.checksum = true,
                "ObjectParts" => w.parts = true,
                "StorageClass" => w.storage_class = true,
                "ObjectSize" => w.size = true,
                _ => return Err(invalid("Invalid attribute name specified.")),
            }
        }
    }
    if !any {
        return Err(invalid("x-amz-object-attributes header is required"));
    }
    Ok(w)
}

fn number_header(req: &Request<'_>, name: &str, default: usize) -> S3Result<usize> {
    match req.header(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<usize>().map_err(|_| invalid(&format!("{name} must be a non-negative integer"))),
    }
}

pub async fn get(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let want = wanted(req)?;
    let max_parts = number_header(req, "x-amz-max-parts", MAX_ATTRIBUTE_PARTS)?.min(MAX_ATTRIBUTE_PARTS);
    let marker = number_header(req, "x-amz-part-number-marker", 0)?;
    let sel = versions::requested(&req.routed.query)?;
    let obj = read_version(ctx, b, req.key(), sel).await?;
    if obj.summary.delete_marker {
        return Ok(obj.delete_marker_response(req, sel));
    }
    // An SSE-C object's attributes need its key, as its HEAD does.
    let customer = crate::sse::customer_key(&req.head.headers, crate::sse::CUSTOMER)?;
    crate::sse::open(&*ctx.shared.kms, obj.meta.sse.as_ref(), customer.as_ref())?;
    let (s, m) = (&obj.summary, &obj.meta);
    let mut w = XmlWriter::new().root("GetObjectAttributesResponse");
    if want.etag {
        w.elem("ETag", unquote(&s.etag()));
    }
    let algo = m.checksum.as_ref().and_then(|(n, _)| ChecksumAlgo::from_header_name(n));
    if want.checksum {
        if let (Some(a), Some((_, v))) = (algo, &m.checksum) {
            w.open("Checksum").elem(checksum_element(a), v);
            w.elem("ChecksumType", m.effective_checksum_type().as_str()).close("Checksum");
        }
    }
    if want.parts && !m.part_sizes.is_empty() {
        let total = m.part_sizes.len();
        let shown: Vec<usize> = (marker.saturating_add(1)..=total).take(max_parts).collect();
        let truncated = shown.last().is_some_and(|&n| n < total);
        w.open("ObjectParts").elem("PartsCount", &total.to_string());
        w.elem("PartNumberMarker", &marker.to_string());
        if let Some(last) = shown.last() {
            w.elem("NextPartNumberMarker", &last.to_string());
        }
        w.elem("MaxParts", &max_parts.to_string()).elem("IsTruncated", if truncated { "true" } else { "false" });
        for n in shown {
            w.open("Part").elem("PartNumber", &n.to_string()).elem("Size", &m.part_sizes[n - 1].to_string());
            if let (Some(a), Some(v)) = (algo, m.part_checksums.get(n - 1)) {
                w.elem(checksum_element(a), v);
            }
            w.close("Part");
        }
        w.close("ObjectParts");
    }
    if want.storage_class {
        w.elem("StorageClass", s.storage_class());
    }
    if want.size {
        w.elem("ObjectSize", &s.size.to_string());
    }
    w.close("GetObjectAttributesResponse");
    let mut resp = Response::xml(200, w.finish());
    resp.push_header("Last-Modified", format_http_date(s.mtime_ms.div_euclid(1000)));
    push_read_version(&mut resp, b, s);
    Ok(resp)
}
