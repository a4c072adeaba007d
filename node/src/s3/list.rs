//! ListObjects (V1 and V2): a k-way merge of every shard's sorted index of
//! current versions (`T_OBJECTS`, delete markers skipped), with delimiter
//! grouping that skips whole common prefixes at once. ListObjectVersions
//! merges that with the noncurrent versions (`T_VERSIONS`), which sort by
//! key the same way and newest first within a key.

use std::collections::VecDeque;
use std::rc::Rc;

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tessera_proto::router::Query;
use tessera_proto::time::format_iso8601_ms;
use tessera_proto::xml::XmlWriter;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::{io_error, shard_of, versions};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::meta::{
    bucket_prefix, object_key, parse_version_key, past_versions_of, versions_prefix, versions_scan_prefix,
    ObjectSummary, VersionSel, T_OBJECTS, T_VERSIONS,
};
use crate::response::Response;
use crate::server::Ctx;

/// Default and largest page size.
pub const MAX_KEYS: usize = 1000;

/// Characters left as-is by `encoding-type=url`: the unreserved set and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// What a listing reads of an index entry.
#[derive(Clone, Debug)]
pub struct Item {
    pub summary: Box<[u8]>,
}

/// Where a cursor's entries come from.
enum Source {
    Shard(u32),
    /// Another node of the cluster, which merges its own shards (`fanout`).
    Peer(tessera_cluster::NodeIdentity),
}

struct Cursor {
    source: Source,
    buf: VecDeque<(Vec<u8>, Item)>,
    /// Last key fetched from the source (the next fetch starts after it).
    after: Option<Vec<u8>>,
    exhausted: bool,
}

/// Merges the sorted `table` ranges of every shard under `prefix`; in a
/// cluster, of every placed node's shards.
pub struct MergedRange<'a> {
    ctx: &'a Ctx,
    table: u8,
    prefix: Vec<u8>,
    batch: usize,
    cursors: Vec<Cursor>,
    /// The last key taken (`settle`).
    last: Option<Vec<u8>>,
}

impl<'a> MergedRange<'a> {
    pub fn new(ctx: &'a Ctx, table: u8, prefix: Vec<u8>, after: Option<Vec<u8>>, batch: usize) -> Self {
        let mut r = Self::local(ctx, table, prefix, after.clone(), batch);
        r.cursors.extend(crate::fanout::peers(ctx).into_iter().map(|p| Cursor {
            source: Source::Peer(p),
            buf: VecDeque::new(),
            after: after.clone(),
            exhausted: false,
        }));
        r
    }

    /// This node's shards only (what a peer's range call reads).
    pub fn local(ctx: &'a Ctx, table: u8, prefix: Vec<u8>, after: Option<Vec<u8>>, batch: usize) -> Self {
        let cursors = crate::takeover::listed_shards(ctx)
            .into_iter()
            .map(|shard| Cursor { source: Source::Shard(shard), buf: VecDeque::new(), after: after.clone(), exhausted: false })
            .collect();
        MergedRange { ctx, table, prefix, batch: batch.max(1), cursors, last: None }
    }

    async fn refill(&mut self) -> S3Result<()> {
        // Peers are asked at once; local shards one after another (their
        // calls are cheap and mostly on this core).
        let (ctx, table, batch) = (self.ctx, self.table, self.batch);
        let prefix = &self.prefix;
        let remote: Vec<_> = self
            .cursors
            .iter()
            .enumerate()
            .filter(|(_, c)| c.buf.is_empty() && !c.exhausted)
            .filter_map(|(i, c)| match &c.source {
                Source::Peer(p) => Some(async move {
                    (i, crate::fanout::range(ctx, p, table, prefix, c.after.as_deref(), batch).await)
                }),
                Source::Shard(_) => None,
            })
            .collect();
        let answers = futures_util::future::join_all(remote).await;
        for (i, got) in answers {
            Self::take_page(&mut self.cursors[i], got?, batch);
        }
        for i in 0..self.cursors.len() {
            let c = &self.cursors[i];
            let Source::Shard(shard) = c.source else { continue };
            if !c.buf.is_empty() || c.exhausted {
                continue;
            }
            let got = ctx
                .shards
                .range(shard, table, self.prefix.clone(), c.after.clone(), batch)
                .await
                .map_err(io_error)?
                .into_iter()
                .map(|(k, e)| (k, Item { summary: e.summary }))
                .collect();
            Self::take_page(&mut self.cursors[i], got, batch);
        }
        Ok(())
    }

    fn take_page(c: &mut Cursor, got: Vec<(Vec<u8>, Item)>, batch: usize) {
        c.exhausted = got.len() < batch;
        if let Some((k, _)) = got.last() {
            c.after = Some(k.clone());
        }
        c.buf.extend(got);
    }

    /// Refills, then drops every buffered key at or before the last one
    /// taken: a key two nodes hold for a moment while it moves between
    /// them (`handover`) is listed once (the same rows on both).
    async fn settle(&mut self) -> S3Result<()> {
        loop {
            self.refill().await?;
            let Some(last) = &self.last else { return Ok(()) };
            let mut again = false;
            for c in &mut self.cursors {
                while c.buf.front().is_some_and(|(k, _)| k <= last) {
                    c.buf.pop_front();
                }
                again |= c.buf.is_empty() && !c.exhausted;
            }
            if !again {
                return Ok(());
            }
        }
    }

    fn best(&self) -> Option<usize> {
        self.cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.buf.front().map(|e| (i, &e.0)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i)
    }

    /// The smallest next key without taking it.
    pub async fn peek(&mut self) -> S3Result<Option<&(Vec<u8>, Item)>> {
        self.settle().await?;
        Ok(self.best().and_then(|i| self.cursors[i].buf.front()))
    }

    pub async fn next(&mut self) -> S3Result<Option<(Vec<u8>, Item)>> {
        self.settle().await?;
        let item = self.best().and_then(|i| self.cursors[i].buf.pop_front());
        if let Some((k, _)) = &item {
            self.last = Some(k.clone());
        }
        Ok(item)
    }

    /// Drops every key `<= bound` (used to jump over a common prefix).
    pub fn skip_through(&mut self, bound: &[u8]) {
        for c in &mut self.cursors {
            while c.buf.front().is_some_and(|(k, _)| k.as_slice() <= bound) {
                c.buf.pop_front();
            }
            if c.buf.is_empty() && c.after.as_deref().is_none_or(|a| a < bound) {
                c.after = Some(bound.to_vec());
            }
        }
    }
}

struct Listing {
    contents: Vec<(String, ObjectSummary)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Last key or common prefix returned (the next marker).
    last: Option<String>,
}

async fn collect(
    ctx: &Ctx,
    bucket: u64,
    prefix: &str,
    delimiter: &str,
    after: Option<&str>,
    max_keys: usize,
) -> S3Result<Listing> {
    let bprefix = bucket_prefix(bucket);
    let full = |k: &str| [bprefix.as_slice(), k.as_bytes()].concat();
    let mut range = MergedRange::new(ctx, T_OBJECTS, full(prefix), after.map(full), max_keys.min(MAX_KEYS) + 1);
    let mut out = Listing { contents: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    while out.contents.len() + out.prefixes.len() < max_keys {
        let Some((k, e)) = range.next().await? else { break };
        let summary = ObjectSummary::decode(&e.summary).ok_or_else(|| super::internal("corrupt summary"))?;
        if summary.delete_marker {
            continue;
        }
        let key = String::from_utf8_lossy(&k[bprefix.len()..]).into_owned();
        if !delimiter.is_empty() {
            if let Some(i) = key[prefix.len()..].find(delimiter) {
                let cp = key[..prefix.len() + i + delimiter.len()].to_string();
                // Keys are UTF-8, so no key byte is 0xFF: this bound is past every key under cp.
                let mut bound = full(&cp);
                bound.push(0xFF);
                range.skip_through(&bound);
                // A marker equal to a common prefix means that prefix was already returned.
                if after.is_some_and(|a| cp.as_str() <= a) {
                    continue;
                }
                out.last = Some(cp.clone());
                out.prefixes.push(cp);
                continue;
            }
        }
        out.last = Some(key.clone());
        out.contents.push((key, summary));
    }
    // Trailing delete markers are not more to list.
    while let Some((_, e)) = range.peek().await? {
        if !ObjectSummary::decode(&e.summary).is_some_and(|s| s.delete_marker) {
            break;
        }
        range.next().await?;
    }
    out.truncated = max_keys > 0 && range.peek().await?.is_some();
    Ok(out)
}

/// MaxKeys, Delimiter, EncodingType and IsTruncated, as every listing has them.
fn page_fields(w: &mut XmlWriter, max_keys: usize, delimiter: &str, url: bool, truncated: bool) {
    w.elem("MaxKeys", &max_keys.to_string());
    if !delimiter.is_empty() {
        w.elem("Delimiter", &enc(delimiter, url));
    }
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
}

fn enc(s: &str, url: bool) -> String {
    if url { utf8_percent_encode(s, URL_ENCODE).to_string() } else { s.to_string() }
}

/// The parameters every listing shares.
struct ListParams {
    prefix: String,
    delimiter: String,
    /// `max-keys`: a non-negative integer; values above `MAX_KEYS` mean `MAX_KEYS`.
    max_keys: usize,
    /// `encoding-type=url`.
    url: bool,
}

impl ListParams {
    fn parse(q: &Query) -> S3Result<Self> {
        let max_keys = match q.get("max-keys") {
            None => MAX_KEYS,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n >= 0 => (n as u64).min(MAX_KEYS as u64) as usize,
                _ => return Err(bad_arg("Provided max-keys not an integer or within integer range")),
            },
        };
        let url = match q.get("encoding-type") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("url") => true,
            Some(_) => return Err(bad_arg("Invalid Encoding Method specified in Request")),
        };
        Ok(ListParams {
            prefix: q.get("prefix").unwrap_or("").to_string(),
            delimiter: q.get("delimiter").unwrap_or("").to_string(),
            max_keys,
            url,
        })
    }
}

fn bad_arg(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

pub async fn list_objects(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, v2: bool) -> S3Result<Response> {
    let q = &req.routed.query;
    let ListParams { prefix, delimiter, max_keys, url } = ListParams::parse(q)?;
    if q.get("allow-unordered").is_some_and(|v| v == "true") && !delimiter.is_empty() {
        return Err(bad_arg("allow-unordered cannot be used with a delimiter"));
    }
    let token = q.get("continuation-token").map(str::to_string);
    let start_after = q.get("start-after").map(str::to_string);
    let marker = q.get("marker").map(str::to_string);
    let after: Option<String> = if v2 {
        match &token {
            Some(t) => Some(decode_token(t)?),
            None => start_after.clone(),
        }
    } else {
        marker.clone()
    };
    let l = collect(ctx, b.id, &prefix, &delimiter, after.as_deref(), max_keys).await?;
    let fetch_owner = !v2 || q.get("fetch-owner").is_some_and(|v| v == "true");

    let mut w = XmlWriter::new().root("ListBucketResult");
    // V1 never encodes Prefix (clients do not decode it there); V2 does.
    w.elem("Name", &b.name).elem("Prefix", &enc(&prefix, url && v2));
    if v2 {
        w.elem("KeyCount", &(l.contents.len() + l.prefixes.len()).to_string());
        w.elem_opt("ContinuationToken", token.as_deref());
        w.elem_opt("StartAfter", start_after.as_deref().map(|s| enc(s, url)).as_deref());
        if l.truncated {
            if let Some(last) = &l.last {
                w.elem("NextContinuationToken", &encode_token(last));
            }
        }
    } else {
        w.elem("Marker", &enc(marker.as_deref().unwrap_or(""), url));
        if l.truncated && !delimiter.is_empty() {
            w.elem_opt("NextMarker", l.last.as_deref().map(|s| enc(s, url)).as_deref());
        }
    }
    page_fields(&mut w, max_keys, &delimiter, url, l.truncated);
    for (key, s) in &l.contents {
        w.open("Contents")
            .elem("Key", &enc(key, url))
            .elem("LastModified", &format_iso8601_ms(s.mtime_ms))
            .elem("ETag", &s.etag())
            .elem("Size", &s.size.to_string())
            .elem("StorageClass", s.storage_class());
        if fetch_owner {
            w.open("Owner").elem("ID", &b.owner_id).elem("DisplayName", &b.owner_display).close("Owner");
        }
        w.close("Contents");
    }
    for p in &l.prefixes {
        w.open("CommonPrefixes").elem("Prefix", &enc(p, url)).close("CommonPrefixes");
    }
    w.close("ListBucketResult");
    Ok(Response::xml(200, w.finish()))
}

/// Continuation tokens are opaque to clients: base64 of the last key returned.
fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(last.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    base64::engine::general_purpose::STANDARD
        .decode(t.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad_arg("The continuation token provided is incorrect"))
}

/// One element of a versions listing.
enum Listed {
    Version { key: String, summary: ObjectSummary, latest: bool },
    Prefix(String),
}

/// The next key of a `T_OBJECTS` range (bucket prefix stripped).
async fn peek_current(r: &mut MergedRange<'_>, bp: usize) -> S3Result<Option<Vec<u8>>> {
    Ok(r.peek().await?.map(|(k, _)| k[bp..].to_vec()))
}

/// The object key of the next entry of a `T_VERSIONS` range.
async fn peek_noncurrent(r: &mut MergedRange<'_>) -> S3Result<Option<Vec<u8>>> {
    match r.peek().await? {
        None => Ok(None),
        Some((k, _)) => Ok(Some(parse_version_key(k).ok_or_else(|| super::internal("corrupt version key"))?.1)),
    }
}

/// Where a versions listing starts: exclusive start keys in `T_OBJECTS`
/// and `T_VERSIONS`, after `key-marker` (and `version-id-marker`).
async fn version_starts(
    ctx: &Ctx,
    b: &BucketInfo,
    key_marker: Option<&str>,
    vid_marker: Option<VersionSel>,
) -> S3Result<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let Some(km) = key_marker else { return Ok((None, None)) };
    let past_key = (Some(object_key(b.id, km)), Some(past_versions_of(b.id, km)));
    let Some(sel) = vid_marker else { return Ok(past_key) };
    let shard = shard_of(ctx, &b.name, km);
    let (bid, k) = (b.id, km.to_string());
    let found = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move { versions::find(&local.shard, bid, &k, sel) })
        .await
        .map_err(io_error)??;
    Ok(match found {
        // After the current version: every noncurrent version of the key follows.
        Some(l) if l.table == T_OBJECTS => (Some(object_key(b.id, km)), Some(versions_prefix(b.id, km))),
        Some(l) => (Some(object_key(b.id, km)), Some(l.key)),
        // A marker naming no version: continue after the key.
        None => past_key,
    })
}

struct VersionsPage {
    items: Vec<Listed>,
    truncated: bool,
}

async fn collect_versions(
    ctx: &Ctx,
    b: &BucketInfo,
    params: &ListParams,
    key_marker: Option<&str>,
    starts: (Option<Vec<u8>>, Option<Vec<u8>>),
) -> S3Result<VersionsPage> {
    let bp = bucket_prefix(b.id);
    let batch = params.max_keys.min(MAX_KEYS) + 1;
    let mut cur = MergedRange::new(ctx, T_OBJECTS, object_key(b.id, &params.prefix), starts.0, batch);
    let mut ver = MergedRange::new(ctx, T_VERSIONS, versions_scan_prefix(b.id, &params.prefix), starts.1, batch);
    let mut items = Vec::new();
    while items.len() < params.max_keys {
        let ck = peek_current(&mut cur, bp.len()).await?;
        let vk = peek_noncurrent(&mut ver).await?;
        let key_bytes = match (&ck, &vk) {
            (None, None) => break,
            (Some(c), None) => c.clone(),
            (None, Some(v)) => v.clone(),
            (Some(c), Some(v)) => c.min(v).clone(),
        };
        let key = String::from_utf8_lossy(&key_bytes).into_owned();
        if !params.delimiter.is_empty() {
            if let Some(i) = key.get(params.prefix.len()..).and_then(|rest| rest.find(&params.delimiter)) {
                let cp = key[..params.prefix.len() + i + params.delimiter.len()].to_string();
                // Keys are UTF-8, so no key byte is 0xFF: these bounds are past every key under cp.
                let mut bound = object_key(b.id, &cp);
                bound.push(0xFF);
                cur.skip_through(&bound);
                let mut vbound = versions_scan_prefix(b.id, &cp);
                vbound.push(0xFF);
                ver.skip_through(&vbound);
                if key_marker.is_none_or(|m| cp.as_str() > m) {
                    items.push(Listed::Prefix(cp));
                }
                continue;
            }
        }
        if ck.as_deref() == Some(key_bytes.as_slice()) {
            if let Some((_, e)) = cur.next().await? {
                let summary = ObjectSummary::decode(&e.summary).ok_or_else(|| super::internal("corrupt summary"))?;
                items.push(Listed::Version { key: key.clone(), summary, latest: true });
            }
        }
        while items.len() < params.max_keys && peek_noncurrent(&mut ver).await?.as_deref() == Some(key_bytes.as_slice()) {
            if let Some((_, e)) = ver.next().await? {
                let summary = ObjectSummary::decode(&e.summary).ok_or_else(|| super::internal("corrupt summary"))?;
                items.push(Listed::Version { key: key.clone(), summary, latest: false });
            }
        }
    }
    let truncated = params.max_keys > 0 && (cur.peek().await?.is_some() || ver.peek().await?.is_some());
    Ok(VersionsPage { items, truncated })
}

/// ListObjectVersions: every version and delete marker, by key, newest
/// first, paged by `key-marker` and `version-id-marker`.
pub async fn list_versions(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let q = &req.routed.query;
    let params = ListParams::parse(q)?;
    let url = params.url;
    let key_marker = q.get("key-marker").filter(|m| !m.is_empty()).map(str::to_string);
    let vid_marker_text = q.get("version-id-marker").filter(|m| !m.is_empty()).map(str::to_string);
    if vid_marker_text.is_some() && key_marker.is_none() {
        return Err(bad_arg("A version-id marker cannot be specified without a key marker."));
    }
    let vid_marker = vid_marker_text.as_deref().map(VersionSel::parse).transpose()?;
    let starts = version_starts(ctx, b, key_marker.as_deref(), vid_marker).await?;
    let page = collect_versions(ctx, b, &params, key_marker.as_deref(), starts).await?;

    let mut w = XmlWriter::new().root("ListVersionsResult");
    w.elem("Name", &b.name).elem("Prefix", &enc(&params.prefix, url));
    w.elem("KeyMarker", &enc(key_marker.as_deref().unwrap_or(""), url));
    w.elem("VersionIdMarker", vid_marker_text.as_deref().unwrap_or(""));
    if page.truncated {
        match page.items.last() {
            Some(Listed::Version { key, summary, .. }) => {
                w.elem("NextKeyMarker", &enc(key, url)).elem("NextVersionIdMarker", &summary.version_id());
            }
            Some(Listed::Prefix(p)) => {
                w.elem("NextKeyMarker", &enc(p, url));
            }
            None => {}
        }
    }
    page_fields(&mut w, params.max_keys, &params.delimiter, url, page.truncated);
    for item in &page.items {
        let Listed::Version { key, summary: s, latest } = item else { continue };
        let tag = if s.delete_marker { "DeleteMarker" } else { "Version" };
        w.open(tag)
            .elem("Key", &enc(key, url))
            .elem("VersionId", &s.version_id())
            .elem("IsLatest", if *latest { "true" } else { "false" })
            .elem("LastModified", &format_iso8601_ms(s.mtime_ms));
        if !s.delete_marker {
            w.elem("ETag", &s.etag()).elem("Size", &s.size.to_string()).elem("StorageClass", s.storage_class());
        }
        w.open("Owner").elem("ID", &b.owner_id).elem("DisplayName", &b.owner_display).close("Owner");
        w.close(tag);
    }
    for item in &page.items {
        if let Listed::Prefix(p) = item {
            w.open("CommonPrefixes").elem("Prefix", &enc(p, url)).close("CommonPrefixes");
        }
    }
    w.close("ListVersionsResult");
    Ok(Response::xml(200, w.finish()))
}
