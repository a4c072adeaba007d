//! Which nodes make each owner's lane past four nodes (issue 12,
//! `owners::LaneOrder::lanes`): lanes of four named per owner, chosen when
//! a cluster without objects is laid out (`fresh_sets`), when a node joins
//! (`grow_sets`) and when one leaves (`shrink_sets`). A change moves as
//! few positions as it can, keeps every node a member of as many lanes as
//! the others where it can, and keeps each lane's zones under the cap
//! (`zone_cap`) first. Pure functions of the registered nodes and the
//! lanes now; `owners::next_layout` commits what they return.

use std::collections::BTreeMap;

use tessera_raft::state::ConfigState;

use crate::owners::{registered, DEFAULT_WIDTH};

/// Node id -> its zone (`NodeRecord::zone`), for the registered nodes.
pub(crate) type Zones = BTreeMap<String, String>;

pub(crate) fn zones_of(state: &ConfigState) -> Zones {
    registered(state).into_iter().map(|(id, r)| (id, r.zone)).collect()
}

/// Most nodes of one zone in a lane of four when the nodes span `zones`
/// zones: as even as four positions allow (2 with two or three zones, 1
/// with four or more; no limit with one zone, or none named).
fn zone_cap(zones: usize) -> usize {
    DEFAULT_WIDTH.div_ceil(zones.max(1))
}

/// The zone cap for the nodes `ids`.
fn cap_for<'a>(zones: &Zones, ids: impl IntoIterator<Item = &'a String>) -> usize {
    let distinct: std::collections::BTreeSet<&str> = ids.into_iter().map(|id| zones.get(id).map_or("", String::as_str)).collect();
    zone_cap(distinct.len())
}

/// How many nodes of lane `o` + `ms` are past the zone cap.
fn zone_excess(zones: &Zones, cap: usize, o: &str, ms: &[String]) -> usize {
    let mut c: BTreeMap<&str, usize> = BTreeMap::new();
    for n in std::iter::once(o).chain(ms.iter().map(String::as_str)) {
        *c.entry(zones.get(n).map_or("", String::as_str)).or_insert(0) += 1;
    }
    c.values().map(|&k| k.saturating_sub(cap)).sum()
}

/// Lanes of four over nodes that hold no object yet: the nodes taken one
/// zone after another (by id within a zone), and each node's lane is it
/// and the next three round that ring that keep its zones under the cap
/// (`zone_cap`), then the next ones if too few do. Without zones each
/// lane is its node and the next three by id: every node a member of
/// three lanes.
pub(crate) fn fresh_sets(order: &[String], zones: &Zones) -> BTreeMap<String, Vec<String>> {
    let zone = |id: &String| zones.get(id).map_or("", String::as_str);
    let mut by_zone: BTreeMap<&str, std::collections::VecDeque<&String>> = BTreeMap::new();
    for id in order {
        by_zone.entry(zone(id)).or_default().push_back(id);
    }
    let mut ring: Vec<String> = Vec::with_capacity(order.len());
    while ring.len() < order.len() {
        for q in by_zone.values_mut() {
            if let Some(id) = q.pop_front() {
                ring.push(id.clone());
            }
        }
    }
    let cap = cap_for(zones, order);
    let n = ring.len();
    let mut out = BTreeMap::new();
    for (i, o) in ring.iter().enumerate() {
        let mut ms: Vec<String> = Vec::with_capacity(DEFAULT_WIDTH - 1);
        let mut count: BTreeMap<&str, usize> = BTreeMap::from([(zone(o), 1)]);
        for pass in 0..2 {
            for d in 1..n {
                let c = &ring[(i + d) % n];
                if ms.len() == DEFAULT_WIDTH - 1 {
                    break;
                }
                if ms.contains(c) || (pass == 0 && count.get(zone(c)).copied().unwrap_or(0) >= cap) {
                    continue;
                }
                *count.entry(zone(c)).or_insert(0) += 1;
                ms.push(c.clone());
            }
        }
        out.insert(o.clone(), ms);
    }
    out
}

/// The lanes after `newcomer` joins lanes of four (`now`: members by
/// position after each owner; `order`: the lane order, the newcomer
/// last), and the lanes it joins ((owner, newcomer): stale there until
/// the whole-lane heal rebuilt its blocks). Three lanes take the newcomer
/// in place of a member, a different one each (unless zones allow no
/// other), the member of the most
/// lanes first (ties: the earliest in the order); the newcomer's own
/// lane takes the members of the fewest lanes, those three when the
/// lanes were balanced, so every node stays a member of three lanes.
/// Every other position keeps its node and its blocks. Zones come first
/// (`zone_cap`): a lane takes the newcomer where that leaves it the
/// fewest nodes past the cap, and the newcomer's lane takes nodes of
/// zones under the cap first.
pub(crate) fn grow_sets(
    now: &BTreeMap<String, Vec<String>>,
    order: &[String],
    newcomer: &str,
    zones: &Zones,
) -> (BTreeMap<String, Vec<String>>, Vec<(String, String)>) {
    let w = DEFAULT_WIDTH - 1;
    let rank = |id: &str| order.iter().position(|o| o == id).unwrap_or(usize::MAX);
    let cap = cap_for(zones, order);
    let zone = |id: &str| zones.get(id).map_or("", String::as_str);
    let mut load: BTreeMap<String, usize> = now.keys().map(|n| (n.clone(), 0)).collect();
    for m in now.values().flatten() {
        *load.entry(m.clone()).or_insert(0) += 1;
    }
    let mut lanes = now.clone();
    let (mut stale, mut replaced) = (Vec::new(), Vec::<String>::new());
    for _ in 0..w {
        let best = lanes
            .iter()
            .filter(|(_, ms)| !ms.iter().any(|m| m == newcomer))
            .flat_map(|(o, ms)| ms.iter().enumerate().map(move |(i, m)| (o, i, m)))
            .max_by_key(|(o, i, m)| {
                let mut after = lanes[*o].clone();
                after[*i] = newcomer.to_string();
                let past = zone_excess(zones, cap, o, &after);
                // Zones first, then a member not replaced yet, then the most loaded.
                let fresh = !replaced.contains(m);
                (std::cmp::Reverse(past), fresh, load.get(*m).copied().unwrap_or(0), std::cmp::Reverse(rank(m)), std::cmp::Reverse(rank(o)))
            })
            .map(|(o, i, m)| (o.clone(), i, m.clone()));
        let Some((o, i, m)) = best else { break };
        if let Some(ms) = lanes.get_mut(&o) {
            ms[i] = newcomer.to_string();
        }
        if let Some(l) = load.get_mut(&m) {
            *l -= 1;
        }
        replaced.push(m);
        stale.push((o, newcomer.to_string()));
    }
    let mut fewest: Vec<&String> = load.keys().collect();
    fewest.sort_by_key(|n| (load[*n], rank(n)));
    // Zones under the cap first, then the fewest lanes.
    let mut own: Vec<String> = Vec::with_capacity(w);
    let mut count: BTreeMap<&str, usize> = BTreeMap::from([(zone(newcomer), 1)]);
    for pass in 0..2 {
        for n in &fewest {
            if own.len() == w {
                break;
            }
            if own.contains(*n) || (pass == 0 && count.get(zone(n)).copied().unwrap_or(0) >= cap) {
                continue;
            }
            *count.entry(zone(n)).or_insert(0) += 1;
            own.push((*n).clone());
        }
    }
    lanes.insert(newcomer.to_string(), own);
    (lanes, stale)
}

/// The lanes after `leaving` leaves lanes of four named per owner
/// (`now`; `order`: the staying nodes' lane order), and the lanes it
/// leaves ((owner, replacement): stale there until healed): in each
/// lane that holds it, a staying node the lane lacks takes its position,
/// chosen so that the nodes' memberships stay as even as they can (the
/// least sum of squares of each node's lane count, searched exhaustively
/// up to `SHRINK_SEARCH` choices, the fewest-loaded candidates first).
/// Its own lane stays named: it exports its keys through it while they move.
pub(crate) fn shrink_sets(
    now: &BTreeMap<String, Vec<String>>,
    order: &[String],
    leaving: &str,
    zones: &Zones,
) -> Result<(BTreeMap<String, Vec<String>>, Vec<(String, String)>), String> {
    let rank = |id: &str| order.iter().position(|o| o == id).unwrap_or(usize::MAX);
    let cap = cap_for(zones, order);
    let zone = |id: &str| zones.get(id).map_or("", String::as_str);
    let mut load: BTreeMap<&str, usize> = order.iter().map(|n| (n.as_str(), 0)).collect();
    for (_, ms) in now.iter().filter(|(o, _)| o.as_str() != leaving) {
        for m in ms {
            if let Some(l) = load.get_mut(m.as_str()) {
                *l += 1;
            }
        }
    }
    let mut owners: Vec<&String> = now.keys().filter(|o| o.as_str() != leaving && now[*o].iter().any(|m| m == leaving)).collect();
    owners.sort_by_key(|o| rank(o));
    // Per lane to fill: its position of the leaving node, and the
    // staying nodes it lacks, fewest-loaded first.
    let mut slots = Vec::new();
    for o in &owners {
        let ms = &now[*o];
        let i = ms.iter().position(|m| m == leaving).unwrap_or(0);
        let mut cands: Vec<&str> = order.iter().map(String::as_str).filter(|n| *n != o.as_str() && !ms.iter().any(|m| m == n)).collect();
        if cands.is_empty() {
            return Err(format!("no staying node can take {leaving}'s place in the lane of {o}"));
        }
        cands.sort_by_key(|n| (load[n], rank(n)));
        // A candidate of a zone the lane holds `cap` nodes of already
        // would put it past the cap.
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for n in std::iter::once(o.as_str()).chain(ms.iter().map(String::as_str).filter(|m| *m != leaving)) {
            *count.entry(zone(n)).or_insert(0) += 1;
        }
        let cands: Vec<(&str, usize)> =
            cands.into_iter().map(|c| (c, usize::from(count.get(zone(c)).copied().unwrap_or(0) >= cap))).collect();
        slots.push((*o, i, cands));
    }
    let mut best: Option<((usize, usize), Vec<&str>)> = None;
    let mut pick = Vec::new();
    let mut budget = SHRINK_SEARCH;
    search(&slots, &mut load, &mut pick, 0, &mut best, &mut budget);
    let (_, chosen) = best.ok_or_else(|| format!("no staying node can take {leaving}'s place"))?;
    let mut lanes = now.clone();
    let mut stale = Vec::new();
    for ((o, i, _), r) in slots.iter().zip(chosen) {
        if let Some(m) = lanes.get_mut(*o) {
            m[*i] = r.to_string();
        }
        stale.push((o.to_string(), r.to_string()));
    }
    Ok((lanes, stale))
}

/// Most assignments `shrink_sets` weighs (a lane count per node of each
/// is summed; lanes to fill are the leaving node's memberships, 3 when
/// balanced, so this bounds large clusters only).
const SHRINK_SEARCH: usize = 20_000;

/// Depth-first over `slots` (owner, position, candidates with their zone
/// penalty): the choice of one candidate per slot with the fewest lanes
/// put past their zone cap, then the least sum of squared loads, the
/// first found on ties.
fn search<'a>(
    slots: &[(&String, usize, Vec<(&'a str, usize)>)],
    load: &mut BTreeMap<&'a str, usize>,
    pick: &mut Vec<&'a str>,
    penalty: usize,
    best: &mut Option<((usize, usize), Vec<&'a str>)>,
    budget: &mut usize,
) {
    if *budget == 0 {
        return;
    }
    let Some((_, _, cands)) = slots.get(pick.len()) else {
        *budget -= 1;
        let cost = (penalty, load.values().map(|l| l * l).sum());
        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
            *best = Some((cost, pick.clone()));
        }
        return;
    };
    for &(c, p) in cands {
        // A node fills at most one slot of a lane (slots are distinct lanes).
        if let Some(l) = load.get_mut(c) {
            *l += 1;
        }
        pick.push(c);
        search(slots, load, pick, penalty + p, best, budget);
        pick.pop();
        if let Some(l) = load.get_mut(c) {
            *l -= 1;
        }
    }
}
