//! Object and bucket tagging: Put/Get/DeleteObjectTagging (by version),
//! Put/Get/DeleteBucketTagging, and the `x-amz-tagging` header of PUT,
//! CopyObject and CreateMultipartUpload. Tags live in the object's meta
//! (`ObjectMeta::tags`) and in the bucket record.

use std::rc::Rc;

use tessera_proto::router::Query;
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::get::read_version;
use super::{push_read_version, require_integrity_check, update_version, versions};
use crate::buckets::{BucketInfo, MAX_BUCKET_TAGS};
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

/// Most tags on an object (S3's limit).
pub const MAX_OBJECT_TAGS: usize = 10;
/// Longest tag key and value, in Unicode characters (S3's limits).
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Largest tagging document read.
pub const MAX_TAGGING_BODY_BYTES: usize = 64 * 1024;

pub type Tags = Vec<(String, String)>;

fn invalid_tag(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidTag, msg)
}

/// Letters and digits of any script, white space, and `_ . : / = + - @`.
fn allowed_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

/// Checks a tag set against S3's rules; `max` is 10 for objects, 50 for buckets.
pub fn validate(tags: &[(String, String)], max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(invalid_tag(if max == MAX_OBJECT_TAGS {
            "Object tags cannot be greater than 10"
        } else {
            "Bucket tag count cannot be greater than 50"
        }));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        let klen = k.chars().count();
        if klen == 0 || klen > MAX_TAG_KEY_CHARS {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        if v.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(invalid_tag("The TagValue you have provided is too long, max 256"));
        }
        if !k.chars().all(allowed_tag_char) {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        if !v.chars().all(allowed_tag_char) {
            return Err(invalid_tag("The TagValue you have provided is invalid"));
        }
        if k.len() >= 4 && k[..4].eq_ignore_ascii_case("aws:") {
            return Err(invalid_tag("Your TagKey cannot be prefixed with aws:"));
        }
        if tags[..i].iter().any(|(o, _)| o == k) {
            return Err(invalid_tag("Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

/// The tags of an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded),
/// validated as object tags; empty when the header is absent.
pub fn from_header(req: &Request<'_>) -> S3Result<Tags> {
    let Some(v) = req.header("x-amz-tagging") else { return Ok(Vec::new()) };
    let q = Query::parse(v.trim()).map_err(|_| invalid_tag("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."))?;
    let mut tags: Tags = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    validate(&tags, MAX_OBJECT_TAGS)?;
    // S3 returns tag sets ordered by key.
    tags.sort();
    Ok(tags)
}

fn tagging_xml(tags: &[(String, String)]) -> String {
    let mut w = XmlWriter::new().root("Tagging");
    w.open("TagSet");
    for (k, v) in tags {
        w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
    }
    w.close("TagSet").close("Tagging");
    w.finish()
}

async fn read_tags(req: &mut Request<'_>, max: usize) -> S3Result<Tags> {
    let body = req.read_body_to_vec(MAX_TAGGING_BODY_BYTES).await?;
    let mut tags = xml::parse_tagging(&body)?;
    validate(&tags, max)?;
    tags.sort();
    Ok(tags)
}

pub async fn get_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let obj = read_version(ctx, b, req.key(), sel).await?;
    obj.refuse_delete_marker(sel)?;
    let mut resp = Response::xml(200, tagging_xml(&obj.meta.tags));
    push_read_version(&mut resp, b, &obj.summary);
    Ok(resp)
}

pub async fn put_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let tags = read_tags(req, MAX_OBJECT_TAGS).await?;
    set_object_tags(ctx, req, b, sel, tags, 200).await
}

pub async fn delete_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    set_object_tags(ctx, req, b, sel, Vec::new(), 204).await
}

async fn set_object_tags(
    ctx: &Rc<Ctx>,
    req: &Request<'_>,
    b: &BucketInfo,
    sel: Option<crate::meta::VersionSel>,
    tags: Tags,
    status: u16,
) -> S3Result<Response> {
    let s = update_version(ctx, b, req.key(), sel, move |_, meta| {
        meta.tags = tags;
        Ok(())
    })
    .await?;
    let mut resp = Response::new(status);
    push_read_version(&mut resp, b, &s);
    Ok(resp)
}

pub fn get_bucket(b: &BucketInfo) -> S3Result<Response> {
    if b.tags.is_empty() {
        return Err(S3Error::new(S3ErrorCode::NoSuchTagSet));
    }
    Ok(Response::xml(200, tagging_xml(&b.tags)))
}

pub async fn put_bucket(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let tags = read_tags(req, MAX_BUCKET_TAGS).await?;
    require_integrity_check(req)?;
    ctx.shared.buckets.update(&ctx.shards, &b.name, |info| {
        info.tags = tags.clone();
        Ok(())
    })
    .await?;
    Ok(Response::new(204))
}

pub async fn delete_bucket(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared.buckets.update(&ctx.shards, &b.name, |info| {
        info.tags.clear();
        Ok(())
    })
    .await?;
    Ok(Response::new(204))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn tag_rules() {
        let ok: &[Tags] = &[
            t(&[]),
            t(&[("k", "")]),
            t(&[("a b_c.d:e/f=g+h-i@j", "ü 日本 9")]),
            t(&[(&"k".repeat(MAX_TAG_KEY_CHARS), &"v".repeat(MAX_TAG_VALUE_CHARS))]),
            t(&[(&"é".repeat(MAX_TAG_KEY_CHARS), &"é".repeat(MAX_TAG_VALUE_CHARS))]),
        ];
        for tags in ok {
            assert!(validate(tags, MAX_OBJECT_TAGS).is_ok(), "{tags:?}");
        }
        let ten: Tags = (0..10).map(|i| (i.to_string(), i.to_string())).collect();
        assert!(validate(&ten, MAX_OBJECT_TAGS).is_ok());
        let eleven: Tags = (0..11).map(|i| (i.to_string(), i.to_string())).collect();
        assert!(validate(&eleven, MAX_OBJECT_TAGS).is_err());
        assert!(validate(&eleven, MAX_BUCKET_TAGS).is_ok());
        let bad: &[Tags] = &[
            t(&[("", "v")]),
            t(&[(&"k".repeat(MAX_TAG_KEY_CHARS + 1), "v")]),
            t(&[("k", &"v".repeat(MAX_TAG_VALUE_CHARS + 1))]),
            t(&[("k<", "v")]),
            t(&[("k", "v*")]),
            t(&[("aws:x", "v")]),
            t(&[("k", "1"), ("k", "2")]),
        ];
        for tags in bad {
            let e = validate(tags, MAX_OBJECT_TAGS).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidTag, "{tags:?}");
        }
    }
}
