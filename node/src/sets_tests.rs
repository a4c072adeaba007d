use super::*;

fn id(n: u8) -> DiskId {
    [n; ID_BYTES]
}

fn fresh(disks: usize, parity: Option<usize>) -> Vec<SetsFormat> {
    let ids: Vec<DiskId> = (1..=disks as u8).map(id).collect();
    SetsFormat::fresh(id(0xEE), &ids, 4, parity, 1 << 20).unwrap()
}

#[test]
fn set_sizes_table() {
    let cases: &[(usize, Option<&[usize]>)] = &[
        (0, None),
        (1, Some(&[1])),
        (4, Some(&[4])),
        (16, Some(&[16])),
        (17, None),
        (18, Some(&[9, 9])),
        (20, Some(&[10, 10])),
        (32, Some(&[16, 16])),
        (33, Some(&[11, 11, 11])),
        // 2 x 17 is too big a set; the fewest equal sets are 17 of 2.
        (34, Some(&[2; 17])),
    ];
    for &(n, want) in cases {
        assert_eq!(set_sizes(n).ok().as_deref(), want, "{n}");
    }
}

#[test]
fn format_round_trips_and_names_everything() {
    let fs = fresh(6, None);
    assert_eq!(fs.len(), 6);
    assert_eq!(fs[0].parity, 3);
    assert_eq!(fs[2].disk, id(3));
    let text = fs[2].to_text();
    assert!(text.starts_with("tessera-format 2\n"), "{text}");
    assert_eq!(SetsFormat::parse(&text).unwrap(), fs[2]);
    assert_eq!(fs[2].position_of(&id(3)), Some((0, 2)));
    let two_sets = fresh(20, Some(2));
    assert_eq!(two_sets[15].position_of(&id(16)), Some((1, 5)));
    assert_eq!(
        SetsFormat::parse(&two_sets[15].to_text()).unwrap(),
        two_sets[15]
    );
}

#[test]
fn fresh_refuses_bad_parity() {
    let ids: Vec<DiskId> = (1..=4).map(id).collect();
    assert!(matches!(
        SetsFormat::fresh(id(0), &ids, 4, Some(3), 1 << 20),
        Err(SetsError::Parity(_))
    ));
    assert!(matches!(
        SetsFormat::fresh(id(0), &ids[..1], 4, Some(1), 1 << 20),
        Err(SetsError::Parity(_))
    ));
    assert!(matches!(
        SetsFormat::fresh(id(0), &ids, 0, None, 1 << 20),
        Err(SetsError::Malformed(_))
    ));
}

#[test]
fn malformed_formats_are_refused() {
    let good = fresh(4, None)[1].to_text();
    let edits: Vec<(&str, String)> = vec![
        (
            "version 1",
            good.replace("tessera-format 2", "tessera-format 1"),
        ),
        (
            "no node",
            good.lines()
                .filter(|l| !l.starts_with("node"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("repeated field", format!("{good}shards 4\n")),
        ("unknown field", format!("{good}colour blue\n")),
        (
            "short id",
            good.replace(&format!("disk {}", hex::encode(id(2))), "disk abcd"),
        ),
        (
            "not hex",
            good.replace(
                &format!("disk {}", hex::encode(id(2))),
                &format!("disk {}", "zz".repeat(16)),
            ),
        ),
        (
            "foreign disk",
            good.replace(
                &format!("disk {}", hex::encode(id(2))),
                &format!("disk {}", hex::encode(id(9))),
            ),
        ),
        ("parity too high", good.replace("parity 2", "parity 3")),
        ("zero shards", good.replace("shards 4", "shards 0")),
        (
            "huge stripe",
            good.replace("stripe 1048576", "stripe 999999999999"),
        ),
        ("set 1 without set 0", good.replace("set 0 ", "set 1 ")),
        (
            "duplicate member",
            good.replace(&hex::encode(id(4)), &hex::encode(id(3))),
        ),
        ("line without value", format!("{good}parity\n")),
        ("empty", String::new()),
    ];
    for (name, text) in edits {
        assert!(
            matches!(
                SetsFormat::parse(&text),
                Err(SetsError::Malformed(_) | SetsError::Parity(_))
            ),
            "{name}"
        );
    }
}

#[test]
fn placement_spreads_lanes_cores_and_parity() {
    let p = fresh(4, None)[0].placement();
    assert_eq!(p.lanes(), 4);
    let mut per_lane = [0u32; 4];
    let mut per_disk_parity = [0u32; 4];
    for part in 0..PARTITIONS {
        let lane = p.lane_of(part);
        per_lane[lane.shard as usize] += 1;
        let rot = p.rotation(part);
        // 2+2: blocks 2 and 3 are parity.
        for b in 2..4 {
            per_disk_parity[p.disk_of_block(rot, b) as usize] += 1;
        }
    }
    assert_eq!(per_lane, [1024; 4]);
    assert_eq!(per_disk_parity, [2048; 4]);
    // Within one lane, rotation still takes every value.
    let rots: std::collections::BTreeSet<u32> = (0..PARTITIONS)
        .filter(|&x| x % 4 == 1)
        .map(|x| p.rotation(x))
        .collect();
    assert_eq!(rots.len(), 4);
    // A block per disk: the positions of one object's blocks are distinct.
    for rot in 0..4 {
        let d: std::collections::BTreeSet<u32> = (0..4).map(|b| p.disk_of_block(rot, b)).collect();
        assert_eq!(d.len(), 4);
    }
    let two = fresh(20, None)[0].placement();
    assert_eq!(two.lanes(), 8);
    assert_eq!(two.lane_of(13), Lane { set: 1, shard: 1 });
    assert_eq!(two.owner(Lane { set: 1, shard: 1 }, 2), 1);
    assert_eq!(two.owner(Lane { set: 1, shard: 2 }, 3), 0);
}

fn formatted(fs: &[SetsFormat], which: &[usize]) -> Vec<DirState> {
    which
        .iter()
        .map(|&i| DirState::Formatted(fs[i].clone()))
        .collect()
}

#[test]
fn start_with_every_dir() {
    let fs = fresh(4, None);
    // Given in another order than formatted: positions come from the files.
    let plan = plan_start(&formatted(&fs, &[2, 0, 3, 1])).unwrap().unwrap();
    assert_eq!(
        plan.online,
        vec![(1, 0, 0), (3, 0, 1), (0, 0, 2), (2, 0, 3)]
    );
    assert!(plan.offline.is_empty() && plan.adopt.is_empty());
}

#[test]
fn start_fresh_or_refuse_unreadable_only() {
    assert_eq!(
        plan_start(&[DirState::Empty, DirState::Empty]).unwrap(),
        None
    );
    assert!(matches!(
        plan_start(&[DirState::Empty, DirState::Unreadable]),
        Err(SetsError::Refused(_))
    ));
}

#[test]
fn start_with_a_missing_dir_serves_degraded() {
    let fs = fresh(4, None);
    let mut dirs = formatted(&fs, &[0, 1, 3]);
    dirs.insert(2, DirState::Unreadable);
    let plan = plan_start(&dirs).unwrap().unwrap();
    assert_eq!(plan.offline, vec![(0, 2)]);
    assert!(plan.adopt.is_empty());
    // The dir left off the command line altogether: the same.
    let plan = plan_start(&formatted(&fs, &[0, 1, 3])).unwrap().unwrap();
    assert_eq!(plan.offline, vec![(0, 2)]);
}

#[test]
fn start_with_an_empty_dir_adopts_the_lost_position() {
    let fs = fresh(6, None);
    let mut dirs = formatted(&fs, &[0, 2, 3, 5]);
    dirs.push(DirState::Empty);
    let plan = plan_start(&dirs).unwrap().unwrap();
    assert_eq!(plan.adopt, vec![(4, 0, 1)]);
    assert_eq!(plan.offline, vec![(0, 4)]);
    // Beside an unreadable dir, adopting could shadow it: refused.
    dirs.push(DirState::Unreadable);
    assert!(matches!(plan_start(&dirs), Err(SetsError::Refused(_))));
    // More empty dirs than lost disks: adding disks is not supported.
    let mut dirs = formatted(&fs, &[0, 1, 2, 3, 4]);
    dirs.extend([DirState::Empty, DirState::Empty]);
    assert!(matches!(plan_start(&dirs), Err(SetsError::Refused(_))));
}

#[test]
fn start_refuses_copies_and_strangers() {
    let fs = fresh(4, None);
    assert!(matches!(
        plan_start(&formatted(&fs, &[0, 1, 1, 3])),
        Err(SetsError::Refused(_))
    ));
    let other = fresh(4, Some(1));
    let mut dirs = formatted(&fs, &[0, 1, 2]);
    dirs.push(DirState::Formatted(other[3].clone()));
    assert!(matches!(plan_start(&dirs), Err(SetsError::Disagree(_))));
    let mut stranger = fs[3].clone();
    stranger.node = id(0x77);
    let mut dirs = formatted(&fs, &[0, 1, 2]);
    dirs.push(DirState::Formatted(stranger));
    assert!(matches!(plan_start(&dirs), Err(SetsError::Disagree(_))));
}

#[test]
fn an_adoption_cut_short_is_finished_by_the_served_id() {
    // Disk 2 was lost; its replacement (id 0x99) got its format and dir 0's
    // was rewritten before the crash; dirs 1 and 3 still name the lost id.
    let fs = fresh(4, None);
    let mut new = fs[2].clone();
    new.disk = id(0x99);
    new.sets[0][2] = id(0x99);
    let mut d0 = fs[0].clone();
    d0.sets[0][2] = id(0x99);
    let dirs = vec![
        DirState::Formatted(d0),
        DirState::Formatted(fs[1].clone()),
        DirState::Formatted(new),
        DirState::Formatted(fs[3].clone()),
    ];
    let plan = plan_start(&dirs).unwrap().unwrap();
    assert_eq!(plan.layout.sets[0][2], id(0x99));
    assert_eq!(plan.online.len(), 4);
    assert!(plan.offline.is_empty() && plan.adopt.is_empty());
    // Without the new dir nothing says which id serves: the two layouts
    // cannot both be right, refused rather than guessed.
    let mut d0 = fs[0].clone();
    d0.sets[0][2] = id(0x99);
    let dirs = vec![DirState::Formatted(d0), DirState::Formatted(fs[1].clone()), DirState::Formatted(fs[3].clone())];
    assert!(matches!(plan_start(&dirs), Err(SetsError::Disagree(_))));
}
