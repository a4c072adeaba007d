//! The member shards this node holds for other nodes' cluster lanes
//! (`cluster_lanes`, issue 12). The owner of a partition is the primary
//! of the lane that stores it (its own shard `s`); every other node of
//! the lane holds one member shard for it, `members/<owner id>/shard-<s>`
//! in one of its data dirs, which takes the owner's member calls
//! (`holder::host::run`: write a block stream, commit a record, load a
//! record, read an extent) exactly as a local member would.
//!
//! A member shard is opened on first use, on the core that owns this
//! node's shard `s % shards` (so calls for one lane always run on one
//! core), and stays open until the node stops. Which data dir holds it is
//! a function of the owner and `s`, so a restart finds it again.
//!
//! A member shard holds only the lane owner's keys, never this node's
//! own: walks of this node's shards (listing, lifecycle, replication,
//! healing) never meet another node's records.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use tessera_io::{Event, IoError, Shard};

use crate::holder::wire::Call;
use crate::server::Ctx;

/// The dir (under a data dir) holding the member shards of other nodes' lanes.
pub const MEMBERS_DIR: &str = "members";
/// Member shard ids (their shard file names it; never a local shard's).
pub const MEMBER_SHARD_ID_BASE: u32 = 0x4000_0000;

enum Slot {
    Opening(Rc<Event>),
    Open(Shard),
    /// Opening failed: every call answers this until the node restarts.
    Failed(String),
}

thread_local! {
    static HOSTED: RefCell<HashMap<([u8; 16], u32), Slot>> = RefCell::new(HashMap::new());
}

/// Where the member shard of `owner`'s lane `s` lives on this node.
pub fn member_dir(ctx: &Ctx, owner: &[u8; 16], s: u32) -> Option<PathBuf> {
    let dirs = &ctx.shared.layout.shard_dirs;
    if dirs.is_empty() {
        return None;
    }
    let mut seed = owner.to_vec();
    seed.extend_from_slice(&s.to_le_bytes());
    let pick = (xxhash_rust::xxh3::xxh3_64(&seed) % dirs.len() as u64) as usize;
    let data_dir = dirs[pick].parent()?;
    Some(data_dir.join(MEMBERS_DIR).join(hex::encode(owner)).join(format!("shard-{s:04}")))
}

/// The member shard of `owner`'s lane `s` on this core, opened if needed.
pub(crate) async fn shard(ctx: &Ctx, owner: [u8; 16], s: u32) -> Result<Shard, IoError> {
    loop {
        let wait = HOSTED.with(|h| match h.borrow().get(&(owner, s)) {
            Some(Slot::Open(sh)) => Ok(Ok(sh.clone())),
            Some(Slot::Failed(e)) => Ok(Err(IoError::Io(std::io::Error::other(e.clone())))),
            Some(Slot::Opening(ev)) => Err(Some(ev.clone())),
            None => Err(None),
        });
        match wait {
            Ok(r) => return r,
            Err(Some(ev)) => ev.listen().await,
            Err(None) => break,
        }
    }
    let ev = Rc::new(Event::default());
    HOSTED.with(|h| h.borrow_mut().insert((owner, s), Slot::Opening(ev.clone())));
    let opened = match member_dir(ctx, &owner, s) {
        None => Err("this node has no data dir".to_string()),
        Some(dir) => match std::fs::create_dir_all(&dir) {
            Err(e) => Err(format!("{}: {e}", dir.display())),
            Ok(()) => Shard::open(&dir, MEMBER_SHARD_ID_BASE | s, ctx.shared.config.shard_options())
                .await
                .map_err(|e| format!("{}: {e}", dir.display())),
        },
    };
    let slot = match &opened {
        Ok(sh) => {
            if let Some(c) = &ctx.shared.cluster {
                c.lane_member_shards.fetch_add(1, Relaxed);
            }
            tracing::info!(owner = %hex::encode(owner), lane = s, "opened a member shard of another node's lane");
            Slot::Open(sh.clone())
        }
        Err(e) => {
            tracing::error!(owner = %hex::encode(owner), lane = s, error = %e, "cannot open a member shard of another node's lane");
            Slot::Failed(e.clone())
        }
    };
    HOSTED.with(|h| h.borrow_mut().insert((owner, s), slot));
    ev.notify_all();
    opened.map_err(|e| IoError::Io(std::io::Error::other(e)))
}

/// Runs a lane owner's member call on this core's member shard for it.
pub async fn serve(ctx: &Ctx, owner: [u8; 16], s: u32, call: Call) -> Result<Vec<u8>, IoError> {
    let commit = matches!(call, Call::Commit(_));
    // This node's own lane: another node acts for it (`takeover`; the
    // host let only that node's calls through), and this node's shard `s`
    // is a member of that node's foster lane.
    let own = ctx.shared.cluster.as_ref().is_some_and(|n| n.identity.id == owner);
    let sh = if own {
        ctx.shards.local(s).map(|l| l.shard.clone()).ok_or(IoError::ShardFailed)?
    } else {
        shard(ctx, owner, s).await?
    };
    let r = crate::holder::host::run(&sh, call).await;
    if commit && r.is_ok() {
        if let Some(c) = &ctx.shared.cluster {
            c.lane_member_commits.fetch_add(1, Relaxed);
        }
    }
    r
}

/// The member shards open on this core (a clean stop checkpoints them).
pub fn open_here() -> Vec<Shard> {
    HOSTED.with(|h| {
        h.borrow()
            .values()
            .filter_map(|s| match s {
                Slot::Open(sh) => Some(sh.clone()),
                _ => None,
            })
            .collect()
    })
}
