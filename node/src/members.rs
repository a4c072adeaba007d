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
//!
//! **Removed when no lane reads them** (`sweep`): a node that another
//! took the place of in an owner's lanes (a join or leave past four
//! nodes, `lane_sets::grow_sets`), or that held members of a node that left
//! the cluster, removes those member shards once the placement is settled
//! (no keys moving, no stale member, no node acting for another) and has
//! stayed so for two sweeps, and the owner has not called this core for
//! two sweeps either (its placement may be newer than this node's). The
//! core closes them and deletes their dirs;
//! one is opened again only when the placement makes this node a member
//! of that owner's lanes again (it is then stale there and healed).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
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
    /// Lane owners whose member shards this core removed (`sweep`).
    static DROPPED: RefCell<HashSet<[u8; 16]>> = RefCell::new(HashSet::new());
    /// When this core last began a call of each lane owner (`serve`): a
    /// sweep leaves an owner that called lately (its view of the
    /// placement may be newer than this node's, with this node in its
    /// lanes again).
    static LAST_CALL: RefCell<HashMap<[u8; 16], std::time::Instant>> = RefCell::new(HashMap::new());
}

/// How often each reactor looks for member shards no lane reads (`sweep`);
/// tests shorten it with `TESSERA_TEST_MEMBER_SWEEP_MS`.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// `SWEEP_EVERY`, or the test's value.
pub fn sweep_every() -> std::time::Duration {
    std::env::var("TESSERA_TEST_MEMBER_SWEEP_MS").ok().and_then(|v| v.parse().ok()).map_or(SWEEP_EVERY, std::time::Duration::from_millis)
}

/// Where the member shard of `owner`'s lane `s` lives on this node.
pub fn member_dir(ctx: &Ctx, owner: &[u8; 16], s: u32) -> Option<PathBuf> {
    let dirs = &ctx.shared.layout.shard_dirs;
    if dirs.is_empty() {
        return None;
    }
    let mut seed = owner.to_vec();
    seed.extend_from_slice(&s.to_le_bytes());
    let pick = (twox_hash::XxHash3_64::oneshot(&seed) % dirs.len() as u64) as usize;
    let data_dir = dirs[pick].parent()?;
    Some(data_dir.join(MEMBERS_DIR).join(hex::encode(owner)).join(format!("shard-{s:04}")))
}

/// The member shard of `owner`'s lane `s` on this core, opened if needed.
pub(crate) async fn shard(ctx: &Ctx, owner: [u8; 16], s: u32) -> Result<Shard, IoError> {
    if DROPPED.with(|d| d.borrow().contains(&owner)) {
        // Removed as garbage: opened again only for a lane this node is a
        // member of now (a late call of a lane it left is refused).
        let me = ctx.shared.cluster.as_ref().map(|c| c.id_hex());
        let member = ctx.shared.cluster.as_ref().and_then(|c| c.owners.load_full()).is_some_and(|o| {
            crate::cluster_lanes::lane_nodes(&o, &hex::encode(owner)).is_some_and(|l| l.iter().any(|r| Some(&r.id) == me.as_ref()))
        });
        if !member {
            return Err(IoError::Io(std::io::Error::other("this node is no member of that owner's lanes any more")));
        }
        DROPPED.with(|d| d.borrow_mut().remove(&owner));
    }
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
    LAST_CALL.with(|l| l.borrow_mut().insert(owner, std::time::Instant::now()));
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

/// The lane owners among `held` (owners with member shards on this node)
/// whose member shards on node `me` no lane reads any more: owners whose
/// lanes do not hold `me`, owners that left the cluster (decommissioned
/// and placed by no layout), and every owner once fewer than three nodes
/// are placed (no lanes: after a decommission from three to two). None
/// while the placement is unsettled: keys moving, a member stale (a
/// replacement not healed yet), a node acting for another; nor with more
/// than two nodes placed and no lanes (an older layout of five or more).
pub fn garbage(o: &crate::owners::Owners, me: &str, held: &[String]) -> Vec<String> {
    let settled = o.prev.is_none() && o.stale.is_empty() && o.takeovers.iter().all(|(k, (a, _))| k == a);
    if !settled {
        return Vec::new();
    }
    if !o.has_lanes() {
        if o.placed.len() >= crate::cluster_lanes::MIN_NODES {
            return Vec::new();
        }
        return held.iter().filter(|owner| owner.as_str() != me).cloned().collect();
    }
    held.iter()
        .filter(|owner| owner.as_str() != me)
        .filter(|owner| match crate::cluster_lanes::lane_nodes(o, owner) {
            Some(lane) => !lane.iter().any(|r| r.id == me),
            None => o.decommissioned.contains(*owner) && !o.placed.contains(*owner) && !o.prev_placed.contains(*owner),
        })
        .cloned()
        .collect()
}

/// The lane owners with a member dir on this node (hex names under
/// `<data dir>/members/`), each once.
fn held(ctx: &Ctx) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for dir in data_dirs(ctx) {
        let Ok(rd) = std::fs::read_dir(dir.join(MEMBERS_DIR)) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.len() == 32 && name.bytes().all(|c| c.is_ascii_hexdigit()) {
                out.insert(name);
            }
        }
    }
    out.into_iter().collect()
}

fn data_dirs(ctx: &Ctx) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ctx.shared.layout.shard_dirs.iter().filter_map(|d| d.parent().map(PathBuf::from)).collect();
    v.sort();
    v.dedup();
    v
}

/// What a reactor's sweeps remember: the garbage the last one found,
/// with the configuration versions it was found under.
#[derive(Default)]
pub struct Sweep {
    last: Option<(u64, u64, Vec<String>)>,
}

/// One sweep on this core (`SWEEP_EVERY`, from `cluster_lanes::run`):
/// the member shards of owners found garbage (`garbage`) by this sweep
/// and the one before under the same layout and lane order are closed
/// and their dirs deleted, those of this core's lanes (`index % shards`
/// local here). The number of member shards removed.
pub fn sweep(ctx: &Ctx, o: &crate::owners::Owners, me: &str, state: &mut Sweep) -> usize {
    let found = garbage(o, me, &held(ctx));
    let now = (o.version, o.lane_order_version, found);
    let confirmed = state.last.as_ref() == Some(&now);
    state.last = Some(now.clone());
    if !confirmed || now.2.is_empty() {
        return 0;
    }
    let count = ctx.shards.count().max(1);
    let mut removed = 0;
    let quiet = sweep_every() * 2;
    for owner_hex in &now.2 {
        let Some(owner) = hex::decode(owner_hex).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()) else { continue };
        // An owner that called lately still takes this node for a member
        // (its placement may be newer): left for a later sweep. No call
        // runs between this check and the removal (one core, no await),
        // and none opens the shards after it (`DROPPED`).
        if LAST_CALL.with(|l| l.borrow().get(&owner).is_some_and(|t| t.elapsed() < quiet)) {
            continue;
        }
        DROPPED.with(|d| d.borrow_mut().insert(owner));
        for dir in data_dirs(ctx) {
            let owner_dir = dir.join(MEMBERS_DIR).join(owner_hex);
            let Ok(rd) = std::fs::read_dir(&owner_dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(s) = name.strip_prefix("shard-").and_then(|n| n.parse::<u32>().ok()) else { continue };
                if ctx.shards.local(s % count).is_none() {
                    continue;
                }
                // Being opened by a call in flight: left for the next sweep.
                let opening = HOSTED.with(|h| matches!(h.borrow().get(&(owner, s)), Some(Slot::Opening(_))));
                if opening {
                    continue;
                }
                // Closed once the calls in flight that hold it end (its
                // background tasks hold it weakly).
                let was_open = HOSTED.with(|h| matches!(h.borrow_mut().remove(&(owner, s)), Some(Slot::Open(_))));
                if was_open {
                    if let Some(c) = &ctx.shared.cluster {
                        c.lane_member_shards.fetch_sub(1, Relaxed);
                    }
                }
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => {
                        removed += 1;
                        tracing::info!(owner = %owner_hex, lane = s, "removed a member shard no lane reads any more");
                    }
                    Err(err) => tracing::warn!(owner = %owner_hex, lane = s, error = %err, "cannot remove a member shard no lane reads any more"),
                }
            }
            // The last core to empty it removes the owner's dir.
            let _ = std::fs::remove_dir(&owner_dir);
        }
    }
    if removed > 0 {
        if let Some(c) = &ctx.shared.cluster {
            c.lane_member_shards_removed.fetch_add(removed as u64, Relaxed);
        }
    }
    removed
}
