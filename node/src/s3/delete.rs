//! DeleteObject and DeleteObjects. Deleting a missing key succeeds, as in S3.

use std::rc::Rc;

use tessera_io::Mutation;
use tessera_proto::router::MAX_KEY_BYTES;
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::{io_error, shard_of};
use crate::buckets::BucketInfo;
use crate::conn::Request;
use crate::meta::{object_key, T_OBJECTS};
use crate::response::Response;
use crate::server::Ctx;

async fn delete_one(ctx: &Ctx, b: &BucketInfo, key: &str) -> S3Result<()> {
    let shard = shard_of(ctx, &b.name, key);
    let k = object_key(b.id, key);
    // Skip the log record when there is nothing to delete.
    if ctx.shards.get(shard, T_OBJECTS, k.clone()).await.map_err(io_error)?.is_none() {
        return Ok(());
    }
    ctx.shards.commit(shard, vec![Mutation::Delete { table: T_OBJECTS, key: k }]).await.map_err(io_error)?;
    Ok(())
}

pub async fn delete_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    delete_one(ctx, b, req.key()).await?;
    Ok(Response::new(204))
}

pub async fn delete_objects(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(xml::MAX_XML_BODY_BYTES).await?;
    let del = xml::parse_delete(&body)?;
    let mut w = XmlWriter::new().root("DeleteResult");
    for (key, version) in &del.objects {
        let result = if key.len() > MAX_KEY_BYTES {
            Err(S3Error::new(S3ErrorCode::KeyTooLongError))
        } else if version.as_deref().is_some_and(|v| v != "null") {
            Err(S3Error::new(S3ErrorCode::NoSuchVersion))
        } else {
            delete_one(ctx, b, key).await
        };
        match result {
            Ok(()) if del.quiet => {}
            Ok(()) => {
                w.open("Deleted").elem("Key", key).elem_opt("VersionId", version.as_deref()).close("Deleted");
            }
            Err(e) => {
                w.open("Error").elem("Key", key).elem("Code", e.code.as_str()).elem("Message", &e.message).close("Error");
            }
        }
    }
    w.close("DeleteResult");
    Ok(Response::xml(200, w.finish()))
}
