//! The holders of a lane's blocks and records (issue 12: a lane whose
//! members live on several nodes). A lane's primary reaches each other
//! member through a `Holder`: a shard opened on this core, or a shard of
//! another node reached over the cluster's authenticated RPC. The lane
//! code (`lanes`, `stripes_io`) makes exactly four calls of a member,
//! and a remote member answers each the way the local one would:
//! `write_data`, `commit`, `load`, `read_extent` (see `wire` for the
//! payloads); a whole-lane heal also asks for its keys (`keys`). Errors keep their meaning across the wire (`Moved` makes a
//! reader load again, `NoSpace` is not a failed disk); an RPC that fails
//! (connection lost, deadline passed) is an I/O error of that member, as
//! a failing local disk is: the lane takes it out of service and records
//! it stale.
//!
//! The serving side (`host`) runs a call on the shard it names, by disk
//! id and shard index, on the core that owns it.

pub mod host;
pub mod wire;

use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use tessera_cluster::rpc::MAX_PAYLOAD_BYTES;
use tessera_cluster::NodeIdentity;
use tessera_io::{DataBuf, Extent, IoError, Mutation, Shard, Stored};

use crate::cluster_pool::{RpcError, RpcPool};
use wire::Target;

/// How long a member call may take before the member counts as failed.
/// Long enough for a 16 MiB frame on a slow link; a member that cannot
/// answer in it is out of service for the lane (stale, healed later).
/// A call is given up sooner when the gossip comes to hold the member's
/// node down (`RpcPool::call_unless_down`).
pub const MEMBER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A shard of another node, as a lane member.
pub struct RemoteShard {
    pool: Rc<RpcPool>,
    peer: NodeIdentity,
    target: Target,
}

impl RemoteShard {
    pub fn new(pool: Rc<RpcPool>, peer: NodeIdentity, disk: [u8; 16], shard: u32) -> Self {
        RemoteShard { pool, peer, target: Target { disk, shard } }
    }

    async fn call(&self, method: u16, payload: Vec<u8>) -> Result<Vec<u8>, IoError> {
        if payload.len() > MAX_PAYLOAD_BYTES as usize {
            return Err(IoError::TooLarge);
        }
        match self.pool.call_unless_down(&self.peer, method, payload, MEMBER_CALL_TIMEOUT).await {
            Ok(answer) => Ok(answer),
            // The member answered: its error, as it meant it.
            Err(RpcError::Remote(e)) => Err(wire::decode_error(e.as_bytes())),
            Err(e) => Err(IoError::Io(std::io::Error::other(format!("remote member at {}: {e}", self.peer.addr)))),
        }
    }

    fn malformed(&self, e: wire::Malformed) -> IoError {
        IoError::Io(std::io::Error::other(format!("remote member at {}: {e}", self.peer.addr)))
    }

    pub async fn write_data(&self, buf: DataBuf) -> Result<Extent, IoError> {
        let payload = wire::encode_write(self.target, buf.data());
        drop(buf);
        let a = self.call(wire::METHOD_SHARD_WRITE, payload).await?;
        wire::decode_extent(&a).map_err(|e| self.malformed(e))
    }

    pub async fn commit(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        let a = self.call(wire::METHOD_SHARD_COMMIT, wire::encode_commit(self.target, &muts)?).await?;
        wire::decode_seq(&a).map_err(|e| self.malformed(e))
    }

    pub async fn load(&self, table: u8, key: &[u8]) -> Result<Option<Stored>, IoError> {
        let a = self.call(wire::METHOD_SHARD_LOAD, wire::encode_load(self.target, table, key)?).await?;
        wire::decode_stored(&a).map_err(|e| self.malformed(e))
    }

    pub async fn read_extent(&self, e: &Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        if range.end.saturating_sub(range.start) > u64::from(MAX_PAYLOAD_BYTES) {
            return Err(IoError::TooLarge);
        }
        let want = range.end.saturating_sub(range.start);
        let a = self.call(wire::METHOD_SHARD_READ, wire::encode_read(self.target, e, range.start, range.end)).await?;
        if a.len() as u64 != want {
            return Err(self.malformed(wire::Malformed("read answer of another length")));
        }
        Ok(a)
    }

    /// `keys_from` of the member's shard; `None` from a node of an older
    /// build, which does not know the call.
    pub async fn keys(&self, table: u8, after: Option<&[u8]>, limit: u32) -> Result<Option<Vec<wire::TableKey>>, IoError> {
        let payload = wire::encode_range(self.target, table, after, limit)?;
        let a = match self.pool.call_unless_down(&self.peer, wire::METHOD_SHARD_RANGE, payload, MEMBER_CALL_TIMEOUT).await {
            Ok(a) => a,
            // What `cluster_rpc::serve` of a build before the call answers.
            Err(RpcError::Remote(e)) if e == "unknown method" => return Ok(None),
            Err(RpcError::Remote(e)) => return Err(wire::decode_error(e.as_bytes())),
            Err(e) => return Err(IoError::Io(std::io::Error::other(format!("remote member at {}: {e}", self.peer.addr)))),
        };
        let keys = wire::decode_keys(&a).map_err(|e| self.malformed(e))?;
        if keys.len() > limit as usize {
            return Err(self.malformed(wire::Malformed("more keys than asked for")));
        }
        Ok(Some(keys))
    }
}

/// The next keys of `shard` in (table, key) order: from `table`'s keys
/// after `after` (its first without it) on through the later tables,
/// empty tables skipped, at most `limit`. Fewer than `limit`: the end.
pub fn keys_from(shard: &Shard, table: u8, after: Option<&[u8]>, limit: usize) -> Vec<wire::TableKey> {
    let mut out = Vec::new();
    for t in table..=u8::MAX {
        if out.len() >= limit {
            break;
        }
        if shard.is_empty(t) {
            continue;
        }
        let from = if t == table { after } else { None };
        out.extend(shard.range(t, b"", from, limit - out.len()).into_iter().map(|(k, _)| (t, k)));
    }
    out
}

/// A lane member: a shard of this core, or of another node.
#[derive(Clone)]
pub enum Holder {
    Local(Shard),
    Remote(Rc<RemoteShard>),
}

impl Holder {
    /// The shard, when it is on this core (healing, scrubbing and settling
    /// walk local shards only, for now).
    pub fn local(&self) -> Option<&Shard> {
        match self {
            Holder::Local(s) => Some(s),
            Holder::Remote(_) => None,
        }
    }

    pub async fn write_data(&self, buf: DataBuf) -> Result<Extent, IoError> {
        match self {
            Holder::Local(s) => s.write_data(buf).await,
            Holder::Remote(r) => r.write_data(buf).await,
        }
    }

    pub async fn commit(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        match self {
            Holder::Local(s) => s.commit(muts).await,
            Holder::Remote(r) => r.commit(muts).await,
        }
    }

    pub async fn load(&self, table: u8, key: &[u8]) -> Result<Option<Stored>, IoError> {
        match self {
            Holder::Local(s) => s.load(table, key).await,
            Holder::Remote(r) => r.load(table, key).await,
        }
    }

    pub async fn read_extent(&self, e: &Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        match self {
            Holder::Local(s) => s.read_extent(e, range).await,
            Holder::Remote(r) => r.read_extent(e, range).await,
        }
    }

    /// `keys_from` of the member's shard (`None`: a remote member of an
    /// older build, which cannot list them).
    pub async fn keys(&self, table: u8, after: Option<&[u8]>, limit: u32) -> Result<Option<Vec<wire::TableKey>>, IoError> {
        match self {
            Holder::Local(s) => Ok(Some(keys_from(s, table, after, limit as usize))),
            Holder::Remote(r) => r.keys(table, after, limit).await,
        }
    }
}

#[cfg(test)]
mod tests;
