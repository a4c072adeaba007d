//! DeleteObject and DeleteObjects. Deleting a missing key succeeds, as in S3.

use std::collections::HashMap;
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

pub async fn delete_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let key = req.key();
    delete_many(ctx, b, shard_of(ctx, &b.name, key), &[key]).await?;
    Ok(Response::new(204))
}

pub async fn delete_objects(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(xml::MAX_XML_BODY_BYTES).await?;
    let del = xml::parse_delete(&body)?;
    // Every key that can be deleted, grouped by shard: one commit (one sync)
    // per shard instead of one per key, the shards' commits in parallel.
    let mut results: Vec<S3Result<()>> = Vec::with_capacity(del.objects.len());
    let mut by_shard: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, (key, version)) in del.objects.iter().enumerate() {
        results.push(if key.len() > MAX_KEY_BYTES {
            Err(S3Error::new(S3ErrorCode::KeyTooLongError))
        } else if version.as_deref().is_some_and(|v| v != "null") {
            Err(S3Error::new(S3ErrorCode::NoSuchVersion))
        } else {
            by_shard.entry(shard_of(ctx, &b.name, key)).or_default().push(i);
            Ok(())
        });
    }
    let commits = by_shard.into_iter().map(|(shard, idx)| {
        let keys: Vec<&str> = idx.iter().map(|&i| del.objects[i].0.as_str()).collect();
        async move { (idx, delete_many(ctx, b, shard, &keys).await) }
    });
    for (idx, r) in futures_util::future::join_all(commits).await {
        if let Err(e) = r {
            for i in idx {
                results[i] = Err(e.clone());
            }
        }
    }
    let mut w = XmlWriter::new().root("DeleteResult");
    for ((key, version), result) in del.objects.iter().zip(results) {
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

/// Deletes `keys` (all of one shard) in one commit; keys that do not exist
/// add nothing to it.
async fn delete_many(ctx: &Ctx, b: &BucketInfo, shard: u32, keys: &[&str]) -> S3Result<()> {
    let mut muts = Vec::new();
    for key in keys {
        let k = object_key(b.id, key);
        if ctx.shards.get(shard, T_OBJECTS, k.clone()).await.map_err(io_error)?.is_some() {
            muts.push(Mutation::Delete { table: T_OBJECTS, key: k });
        }
    }
    if muts.is_empty() {
        return Ok(());
    }
    ctx.shards.commit(shard, muts).await.map_err(io_error)?;
    Ok(())
}
