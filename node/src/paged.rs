//! Resumable walks over a local shard's tables, a page at a time: the
//! shape the lifecycle index backfill and the replication backfill share.
//! The caller's step gets each page with the position past it and commits
//! its work **and** that position in one commit, so a restart resumes
//! where the last commit left off (a page is at most done twice, never
//! skipped); the walk yields to the reactor between pages.

use std::future::Future;

use tessera_io::{Entry, Shard};

/// Where a walk over some tables is: in `table`, after key `after`
/// (exclusive; from the start of the walk's prefix when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub table: u8,
    pub after: Option<Vec<u8>>,
}

impl Cursor {
    pub fn start(table: u8) -> Self {
        Cursor { table, after: None }
    }
}

/// Walks `tables` in order (their entries under `prefix`) from `at`,
/// `page_len` entries at a time. `step(table, page, next)` receives each
/// page and the cursor past it (`None`: the walk ends with this page) and
/// must make both durable together; an error stops the walk there (the
/// last committed cursor is where the next walk resumes).
pub async fn walk<E, F, Fut>(shard: &Shard, tables: &[u8], prefix: &[u8], at: Cursor, page_len: usize, mut step: F) -> Result<(), E>
where
    F: FnMut(u8, Vec<(Vec<u8>, Entry)>, Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    assert!(page_len > 0, "a walk reads at least one entry per page");
    let mut at = Some(at);
    while let Some(c) = at {
        let page = shard.range(c.table, prefix, c.after.as_deref(), page_len);
        let next = match page.last() {
            Some((k, _)) if page.len() == page_len => Some(Cursor { table: c.table, after: Some(k.clone()) }),
            _ => tables.iter().position(|t| *t == c.table).and_then(|i| tables.get(i + 1)).map(|t| Cursor::start(*t)),
        };
        step(c.table, page, next.clone()).await?;
        at = next;
        tessera_io::sim::yield_now().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_io::{Body, Mutation, ShardOptions};

    fn put(table: u8, key: &[u8]) -> Mutation {
        Mutation::Put { table, key: key.to_vec(), summary: vec![1], meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }

    #[test]
    fn walks_every_entry_of_each_table_under_the_prefix_once_and_resumes_from_a_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(async {
            let shard = Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open");
            let mut muts: Vec<Mutation> = (0..5u8).map(|i| put(1, &[b'p', i])).collect();
            muts.extend((0..3u8).map(|i| put(2, &[b'p', i])));
            muts.extend([put(1, b"q0"), put(2, b"a0"), put(3, b"p0")]);
            shard.commit(muts).await.expect("commit");

            // Pages of 2: table 1 gives 2, 2, 1 (then on to table 2), table 2 gives 2, 1.
            let mut seen = Vec::new();
            let mut cursors = Vec::new();
            let r: Result<(), ()> = walk(&shard, &[1, 2], b"p", Cursor::start(1), 2, |table, page, next| {
                seen.extend(page.into_iter().map(|(k, _)| (table, k)));
                cursors.push(next);
                async { Ok(()) }
            })
            .await;
            r.expect("walk");
            let want: Vec<(u8, Vec<u8>)> = (0..5u8).map(|i| (1, vec![b'p', i])).chain((0..3u8).map(|i| (2, vec![b'p', i]))).collect();
            assert_eq!(seen, want);
            assert_eq!(cursors.len(), 5);
            assert_eq!(cursors[0], Some(Cursor { table: 1, after: Some(b"p\x01".to_vec()) }));
            assert_eq!(cursors[2], Some(Cursor::start(2)), "a short page moves to the next table");
            assert_eq!(cursors[4], None, "the last table's short page ends the walk");

            // Resumed from a saved cursor: only what follows it; a step's
            // error stops the walk there.
            let mut resumed = Vec::new();
            let r = walk(&shard, &[1, 2], b"p", Cursor { table: 1, after: Some(b"p\x03".to_vec()) }, 2, |table, page, _| {
                resumed.extend(page.into_iter().map(|(k, _)| (table, k)));
                async move { if table == 2 { Err("stop") } else { Ok(()) } }
            })
            .await;
            assert_eq!(r, Err("stop"));
            assert_eq!(resumed, [(1, b"p\x04".to_vec()), (2, b"p\x00".to_vec()), (2, b"p\x01".to_vec())]);
        });
    }
}
