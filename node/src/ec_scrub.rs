//! Scrub repair of format 2 lanes: what the io scrubber finds, erasure
//! coding mends.
//!
//! Every shard's scrubber (`tessera_io::scrub`) re-reads its sealed
//! segments at a bounded rate and counts the records that fail
//! verification, but on its own it can only report them. On a format 2
//! node each core watches the scrub error counts of the lanes it owns
//! (the primary's and every member's); when a lane's count grows, a
//! repair pass walks every key of the lane and, for the primary and each
//! whole online member, verifies the record and every block it holds for
//! its position (tag, stripe, index, checksum), rebuilding what fails
//! exactly as healing does (`heal::mend_key`, under the key's lock). So a
//! parity block no read ever touches is repaired too, not only blocks a
//! GET meets (read repair).
//!
//! A damaged record stays in its segment after the repair until
//! compaction moves what is live out of it, so each scrub pass over that
//! segment counts it again and runs another repair pass of the lane (one
//! verifying read of the lane per scrub interval, 24 h by default).
//! Healing members are left to the healer. Throttled by the heal rate.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tessera_io::IoError;

use crate::heal::{mend_key, tables, Tally, Target, Throttle};
use crate::lanes::Mirrors;
use crate::sets_open::DiskHealth;
use crate::shards::LocalShard;

/// How often the scrub error counts are looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// Keys per page of a repair pass.
const PAGE: usize = 256;
/// Attempts per key and target (compaction moving an extent mid-read is
/// retried).
const KEY_ATTEMPTS: usize = 3;

/// The scrub repair of one core: runs for the life of the reactor.
pub async fn run(health: Arc<DiskHealth>, local: Vec<Option<Rc<LocalShard>>>, rate_per_core: u64) {
    let lanes: Vec<(usize, Rc<LocalShard>, Rc<Mirrors>)> = local
        .iter()
        .enumerate()
        .filter_map(|(lane, l)| {
            let l = l.as_ref()?;
            let m = l.mirrors()?.clone();
            Some((lane, l.clone(), m))
        })
        .collect();
    if lanes.is_empty() {
        return;
    }
    let mut seen = vec![0u64; lanes.len()];
    let mut throttle = Throttle::new(rate_per_core);
    loop {
        monoio::time::sleep(POLL).await;
        for (i, (lane, l, m)) in lanes.iter().enumerate() {
            let errors = l.shard.scrub_errors() + m.members.iter().filter_map(|(_, h)| h.local()).map(|s| s.scrub_errors()).sum::<u64>();
            if errors <= seen[i] {
                continue;
            }
            tracing::warn!(
                lane,
                errors,
                "the scrubber found damage on a lane's disks; every record of the lane is verified on each member and what fails is rebuilt"
            );
            seen[i] = errors;
            health.ec.scrub_running.fetch_add(1, Relaxed);
            let failed = repair_lane(&health, l, m, &mut throttle).await;
            health.ec.scrub_running.fetch_sub(1, Relaxed);
            health.ec.scrub_passes.fetch_add(1, Relaxed);
            if failed > 0 {
                tracing::error!(lane, failed, "scrub repair left records it could not mend (see the warnings before)");
            } else {
                tracing::info!(lane, "scrub repair pass done: every record of the lane verified");
            }
        }
    }
}

/// One pass over the lane's keys (the primary's); the records that
/// could not be mended.
async fn repair_lane(health: &DiskHealth, l: &Rc<LocalShard>, m: &Mirrors, throttle: &mut Throttle) -> u64 {
    let ec = &health.ec;
    let tally = Tally { removed: &ec.scrub_removed, rebuilt: &ec.scrub_rebuilt, bytes: &ec.scrub_rebuilt_bytes, verified: &ec.scrub_verified };
    let p = &l.shard;
    let mut failed = 0;
    for t in tables(p, p, 0) {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = p.range(t, b"", after.as_deref(), PAGE);
            for (k, _) in &page {
                let mut targets = vec![Target::Primary];
                targets.extend(
                    m.members.iter().enumerate().filter(|(_, (d, h))| health.counts(*d) && h.local().is_some()).map(|(i, _)| Target::Member(i)),
                );
                if !health.counts(m.primary_disk) {
                    targets.remove(0);
                }
                for target in targets {
                    let mut ok = false;
                    for attempt in 0..KEY_ATTEMPTS {
                        match mend_key(l, m, target, t, k, &tally, throttle, &|e: IoError| e).await {
                            Ok(true) => {
                                ok = true;
                                break;
                            }
                            Ok(false) => tracing::warn!(table = t, key = %k.escape_ascii(), ?target, attempt, "a rebuilt record did not verify"),
                            Err(e) => tracing::warn!(table = t, key = %k.escape_ascii(), ?target, attempt, error = %e, "a record could not be mended"),
                        }
                    }
                    if !ok {
                        failed += 1;
                        ec.scrub_failures.fetch_add(1, Relaxed);
                    }
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
                _ => break,
            }
        }
    }
    failed
}
