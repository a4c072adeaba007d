//! A lane whose members live on two nodes: real shards (O_DIRECT files in
//! temp dirs), real sockets, the cluster's authenticated RPC; both nodes
//! run on one test thread (each has its own `ClusterNode`, RPC listener
//! and shards).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tessera_erasure::Params;
use tessera_io::{Body, DataBuf, Extent, IoError, Mutation, Shard, ShardOptions};

use super::host::CoreHost;
use super::{Holder, RemoteShard};
use crate::cluster::ClusterNode;
use crate::cluster_pool::RpcPool;
use crate::sets_open::DiskHealth;

const SECRET: &str = "the holder test's cluster secret";

fn node(dir: &Path) -> Arc<ClusterNode> {
    crate::cluster::test_node(dir, SECRET)
}

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn open(dir: &Path, id: u32) -> Shard {
    Shard::open(dir, id, ShardOptions::default()).await.expect("open a shard")
}

struct Cluster {
    a: Arc<ClusterNode>,
    b: Arc<ClusterNode>,
    primary: Shard,
    /// Node B's shards, as B opened them.
    b_shards: Vec<Shard>,
    pool: Rc<RpcPool>,
    health: Arc<DiskHealth>,
    mirrors: Rc<crate::lanes::Mirrors>,
}

/// Node A holds positions 0 (the primary) and 1 of a 2+2 lane, node B
/// positions 2 and 3, served by B's RPC listener.
async fn cluster(root: &Path) -> Cluster {
    let a = node(&root.join("a"));
    let b = node(&root.join("b"));
    let dirs: Vec<PathBuf> = ["a/d0", "a/d1", "b/d2", "b/d3"].iter().map(|d| root.join(d)).collect();
    let mut host = CoreHost::default();
    let mut b_shards = Vec::new();
    for d in [2u8, 3] {
        let s = open(&dirs[d as usize], 100 + u32::from(d)).await;
        host.insert(id(d), 0, s.clone());
        b_shards.push(s);
    }
    let listener = b.take_rpc_listener_for_test();
    monoio::spawn(crate::cluster_rpc::serve(b.clone(), listener, Some(Rc::new(host))));
    let primary = open(&dirs[0], 0).await;
    let member = open(&dirs[1], 1).await;
    let pool = RpcPool::new(a.clone());
    let remote = |d: u8| Holder::Remote(Rc::new(RemoteShard::new(pool.clone(), b.identity.clone(), id(d), 0)));
    let health = DiskHealth::for_test(vec![
        (id(0), Some(dirs[0].clone()), false),
        (id(1), Some(dirs[1].clone()), false),
        (id(2), None, true),
        (id(3), None, true),
    ]);
    let params = Params::new(2, 2, 64 * 1024).unwrap();
    let mirrors = crate::lanes::mirrors_of(
        Some(0),
        vec![(1, Holder::Local(member)), (2, remote(2)), (3, remote(3))],
        3,
        Some(health.clone()),
        Some(params),
    )
    .unwrap();
    crate::lanes::register(&primary, &mirrors);
    Cluster { a, b, primary, b_shards, pool, health, mirrors }
}

async fn put(c: &Cluster, key: &[u8], data: &[u8]) -> Result<u64, IoError> {
    let mut buf = DataBuf::new(data.len().max(1));
    buf.extend_from_slice(data);
    let e = crate::lanes::write_data(&c.primary, Some(&c.mirrors), buf).await?;
    let m = Mutation::Put { table: 1, key: key.to_vec(), summary: b"s".to_vec(), meta: b"m".to_vec(), body: Body::Extents(vec![e]) };
    crate::lanes::commit(&c.primary, Some(&c.mirrors), vec![m]).await
}

async fn get(c: &Cluster, key: &[u8], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, IoError> {
    let s = crate::stripes_io::load(&c.primary, 1, key).await?.ok_or(IoError::Moved)?;
    assert_eq!(s.meta, b"m", "the lane answers the inner meta");
    let Body::Extents(ex) = s.body else { panic!("an extent body") };
    let r = range.unwrap_or(0..ex[0].len);
    Ok(crate::stripes_io::read_extent(&c.primary, &ex[0], r).await?.0)
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(f)
}

/// Striped writes reach the members on the other node (their own block
/// streams and records, as a local member's), reads come back whole and
/// in ranges, and with the primary's local partner out of service a
/// read decodes from the other node's blocks.
#[test]
fn a_lane_stripes_over_members_on_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let c = cluster(tmp.path()).await;
        let big = body(300 * 1024 + 17, 1);
        put(&c, "ключ/🦀".as_bytes(), &big).await.expect("a striped PUT over two nodes");
        put(&c, b"empty", b"").await.expect("an empty body");
        // Many writes at once over the one connection (the server runs
        // them concurrently and answers as they finish).
        let writes: Vec<_> = (0..40u8)
            .map(|i| {
                let data = body(5000 + usize::from(i) * 100, i);
                let key = format!("many/{i}");
                let c = &c;
                async move { put(c, key.as_bytes(), &data).await }
            })
            .collect();
        for r in futures_util::future::join_all(writes).await {
            r.expect("a concurrent PUT");
        }
        assert_eq!(c.pool.open_connections(), 1);
        // Node B's shards hold the records, each its own form (its own
        // block extents, the v5 envelope).
        for s in &c.b_shards {
            let rec = s.load(1, "ключ/🦀".as_bytes()).await.unwrap().expect("node B holds the record");
            assert_ne!(rec.meta, b"m", "a member's record carries the erasure envelope");
            let Body::Extents(ex) = rec.body else { panic!("extents") };
            assert!(ex[0].len > 0 && ex[0].len < big.len() as u64, "a block stream, not a copy");
            assert!(s.get(1, b"many/39").is_some());
        }
        assert_eq!(get(&c, "ключ/🦀".as_bytes(), None).await.unwrap(), big);
        assert_eq!(get(&c, "ключ/🦀".as_bytes(), Some(70_000..200_001)).await.unwrap(), big[70_000..200_001]);
        assert_eq!(get(&c, b"empty", None).await.unwrap(), b"");
        for i in 0..40u8 {
            assert_eq!(get(&c, format!("many/{i}").as_bytes(), None).await.unwrap(), body(5000 + usize::from(i) * 100, i));
        }
        // A healthy read touches only the members whose data blocks it
        // reads: one record load and one block read per data block on
        // node B, nothing for its parity (the piece's rotation, from the
        // envelope, says where the k data blocks are).
        let before = c.b.rpc_served.load(Relaxed);
        let mut expected = 0;
        for i in 0..40u8 {
            let key = format!("many/{i}");
            let rec = c.b_shards[0].load(1, key.as_bytes()).await.unwrap().unwrap();
            let (env, _) = crate::stripes::Envelope::unwrap(&rec.meta).unwrap().unwrap();
            let crate::stripes::PieceInfo::Striped { rot, .. } = env.pieces[0] else { panic!("a striped piece") };
            expected += (0..2).filter(|&b| crate::stripes::position_of(b, rot, 4) >= 2).count() as u64 * 2;
            get(&c, key.as_bytes(), None).await.unwrap();
        }
        assert_eq!(c.b.rpc_served.load(Relaxed) - before, expected, "calls on node B for 40 healthy reads");
        // Position 1 out of service: every read needs node B's blocks.
        let served = c.b.rpc_served.load(Relaxed);
        c.health.fail(1);
        assert_eq!(get(&c, "ключ/🦀".as_bytes(), None).await.unwrap(), big, "a degraded read from the other node's blocks");
        assert!(c.b.rpc_served.load(Relaxed) > served, "node B served the blocks");
        assert!(c.a.rpc_refused.load(Relaxed) == 0 && c.b.rpc_refused.load(Relaxed) == 0);
    });
}

/// The other node unreachable: reads decode from the local blocks, a
/// write below the quorum is refused (never acknowledged) and the
/// unreachable members are taken out of service; a member's errors keep
/// their meaning across the wire.
#[test]
fn members_on_an_unreachable_node_fail_like_failed_disks() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let c = cluster(tmp.path()).await;
        let data = body(200 * 1024, 7);
        put(&c, b"k", &data).await.unwrap();
        // Errors of the remote shard, as the lane sees them.
        let r = RemoteShard::new(c.pool.clone(), c.b.identity.clone(), id(2), 0);
        let bad = Extent { segment: 99, offset: 0, len: 10 };
        assert!(matches!(r.read_extent(&bad, 0..10).await, Err(IoError::InvalidExtent(_) | IoError::Corrupt { .. } | IoError::Moved)));
        let stranger = RemoteShard::new(c.pool.clone(), c.b.identity.clone(), id(9), 0);
        match stranger.load(1, b"k").await {
            Err(IoError::Io(e)) => assert!(e.to_string().contains("no such shard"), "{e}"),
            r => panic!("{:?}", r.map(|_| ())),
        }
        assert!(r.load(1, b"absent").await.unwrap().is_none());
        // The same lane, with node B's address now leading nowhere.
        let mut gone = c.b.identity.clone();
        gone.addr = crate::cluster::free_test_port();
        let far = |d: u8| Holder::Remote(Rc::new(RemoteShard::new(c.pool.clone(), gone.clone(), id(d), 0)));
        let local_member = c.mirrors.members[0].1.clone();
        let params = Params::new(2, 2, 64 * 1024).unwrap();
        let cut = crate::lanes::mirrors_of(
            Some(0),
            vec![(1, local_member), (2, far(2)), (3, far(3))],
            3,
            Some(c.health.clone()),
            Some(params),
        )
        .unwrap();
        crate::lanes::register(&c.primary, &cut);
        let c = Cluster { mirrors: cut, ..c };
        assert_eq!(get(&c, b"k", None).await.unwrap(), data, "read from the two local blocks");
        match put(&c, b"k2", &body(100_000, 3)).await {
            Err(IoError::BelowQuorum) => {}
            r => panic!("a write reaching 2 of 4 members with W = 3 was answered {r:?}"),
        }
        assert!(!c.health.online(2) && !c.health.online(3), "the unreachable members are out of service");
        assert!(c.health.online(0) && c.health.online(1));
        // Below the quorum now: refused before anything is written.
        assert!(matches!(put(&c, b"k3", b"x").await, Err(IoError::BelowQuorum)));
        assert!(c.primary.get(1, b"k2").is_none() && c.primary.get(1, b"k3").is_none());
        assert_eq!(get(&c, b"k", None).await.unwrap(), data, "the acknowledged object is intact");
    });
}

/// A remote member lists its keys as a local one does: (table, key)
/// order across tables, empty tables skipped, in pages that resume after
/// the last key, the answer never longer than asked.
#[test]
fn a_remote_member_lists_its_keys_like_a_local_one() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let c = cluster(tmp.path()).await;
        let b = &c.b_shards[0];
        let mut muts = Vec::new();
        for (t, n) in [(0u8, 5), (4, 0), (9, 7), (40, 2)] {
            for i in 0..n {
                let key = format!("k-{i:02}-ключ").into_bytes();
                muts.push(Mutation::Put { table: t, key, summary: b"s".to_vec(), meta: vec![], body: Body::Inline(vec![]) });
            }
        }
        b.commit(muts).await.unwrap();
        let remote = RemoteShard::new(c.pool.clone(), c.b.identity.clone(), id(2), 0);
        let all = super::keys_from(b, 0, None, 1000);
        assert_eq!(all.len(), 14);
        assert_eq!(all.iter().map(|(t, _)| *t).collect::<std::collections::BTreeSet<_>>(), [0, 9, 40].into());
        assert_eq!(remote.keys(0, None, 1000).await.unwrap(), Some(all.clone()));
        // Pages of 3 from the start, each resuming after the last key.
        let mut walked = Vec::new();
        let mut from: Option<(u8, Vec<u8>)> = None;
        loop {
            let page = match &from {
                None => remote.keys(0, None, 3).await.unwrap(),
                Some((t, k)) => remote.keys(*t, Some(k), 3).await.unwrap(),
            }
            .expect("a build that lists keys");
            assert!(page.len() <= 3);
            walked.extend(page.iter().cloned());
            if page.len() < 3 {
                break;
            }
            from = page.last().cloned();
        }
        assert_eq!(walked, all);
        // From a later table on; past the last key, nothing.
        assert_eq!(remote.keys(5, None, 1000).await.unwrap(), Some(all[5..].to_vec()));
        assert_eq!(remote.keys(40, Some(&all[13].1), 10).await.unwrap(), Some(vec![]));
        assert_eq!(remote.keys(41, None, 10).await.unwrap(), Some(vec![]));
        // Another shard of the same id (the member shards of two lane
        // owners on one node share theirs) has a lane of its own.
        let twin = open(&tmp.path().join("twin"), c.primary.id()).await;
        let other = crate::lanes::mirrors_of(Some(0), vec![(1, Holder::Local(b.clone()))], 1, Some(c.health.clone()), None).unwrap();
        crate::lanes::register(&twin, &other);
        assert!(Rc::ptr_eq(&crate::lanes::lane_of(&c.primary).unwrap(), &c.mirrors), "the first shard's lane is its own");
        assert!(Rc::ptr_eq(&crate::lanes::lane_of(&twin).unwrap(), &other));
        assert!(Rc::ptr_eq(&crate::lanes::lane_of(&c.primary.clone()).unwrap(), &c.mirrors), "clones share the lane");
        crate::lanes::unregister(&twin);
        assert!(crate::lanes::lane_of(&twin).is_none() && crate::lanes::lane_of(&c.primary).is_some());
        // What a build without the call answers it (`keys` reads this
        // answer as "cannot list", not as a failed member).
        let r = c.pool.call(&c.b.identity, 999, vec![1], std::time::Duration::from_secs(5)).await;
        assert!(matches!(&r, Err(crate::cluster_pool::RpcError::Remote(e)) if e == "unknown method"), "{r:?}");
        let _ = (&c.a, &c.primary, &c.health, &c.mirrors);
    });
}
