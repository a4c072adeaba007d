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
