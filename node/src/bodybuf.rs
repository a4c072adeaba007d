//! Memory for request bodies on their way to a shard: record buffers sized to
//! what the client has actually sent, drawn from a bounded per-reactor budget.
//!
//! A body's first buffer is small (at most [`FIRST_BODY_BUF_BYTES`]); each
//! next one doubles up to the record size, so a client that announces 5 GiB
//! and sends a few bytes holds a few bytes' worth, not a whole record. One
//! exception keeps records few: a body announced longer than its first
//! buffer, once it has filled that buffer, gets up to [`GROWN_BODY_BUF_BYTES`]
//! in one buffer ([`grown_buf_bytes`]; the bytes received are copied over),
//! so a 1 MiB body is two records of 512 KiB, not four of 128, 256, 512 and
//! 128 KiB (each a write, and on cluster lanes a block call to every member;
//! one record of 1 MiB would leave no write in flight while the body arrives:
//! one node's 1 MiB PUTs were 6–20% slower so). That copy (an eighth of a
//! 1 MiB body's bytes, 2.7% of all CPU under 1 MiB PUTs) is skipped while
//! the reactor's budget is mostly unused: then a body announced longer
//! than a first buffer gets its grown buffer from the start
//! ([`first_buf_bytes_roomy`]), so slow clients can hold at most a quarter
//! of the budget that way before everyone is back to small first
//! buffers. Every
//! buffer, while it is filled and while it is written, holds a grant on its
//! reactor's [`BodyBudget`]; when the budget is spent, uploads wait for room
//! (not reading, so the client is held back by TCP) and after
//! [`BODY_BUFFER_WAIT`] answer `503 SlowDown`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tessera_io::DataBuf;
use tessera_proto::{S3Error, S3ErrorCode};

/// Most bytes of body buffers one reactor holds at once (buffers being filled
/// plus records being written).
pub const BODY_BUFFER_BYTES_PER_CORE: usize = 64 * 1024 * 1024;
/// How long an upload waits for room in the budget before `503 SlowDown`.
pub const BODY_BUFFER_WAIT: Duration = Duration::from_secs(10);
/// Largest first buffer of a body; also the largest body kept inline, so a
/// body that fits stays in one buffer and in its commit record.
pub const FIRST_BODY_BUF_BYTES: usize = 128 * 1024;
/// Size of a full data record (the buffers stop doubling there).
pub const MAX_BODY_BUF_BYTES: usize = 1024 * 1024;
/// Most a full first buffer of an announced body grows to at once.
pub const GROWN_BODY_BUF_BYTES: usize = 512 * 1024;
/// What a buffer of `n` data bytes costs the budget: its allocation (the
/// record header block plus the data rounded up to blocks).
fn cost(data_bytes: usize) -> usize {
    4096 + data_bytes.div_ceil(4096) * 4096
}

/// One reactor's budget of body-buffer bytes.
pub struct BodyBudget {
    total: usize,
    free: Cell<usize>,
    waiters: RefCell<Vec<Waker>>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Rc<Self> {
        Rc::new(BodyBudget { total: bytes, free: Cell::new(bytes), waiters: RefCell::new(Vec::new()) })
    }

    /// Bytes not granted now.
    pub fn free(&self) -> usize {
        self.free.get()
    }

    /// Whether at most a quarter of the budget is granted.
    pub fn roomy(&self) -> bool {
        self.free.get() >= self.total - self.total / 4
    }

    /// Takes `bytes`, waiting up to [`BODY_BUFFER_WAIT`] for them.
    pub async fn take(self: &Rc<Self>, bytes: usize) -> Result<Grant, S3Error> {
        let wait = Wait { budget: self, bytes };
        match monoio::time::timeout(BODY_BUFFER_WAIT, wait).await {
            Ok(()) => Ok(Grant { budget: self.clone(), bytes }),
            Err(_) => Err(S3Error::new(S3ErrorCode::SlowDown)),
        }
    }

    fn give_back(&self, bytes: usize) {
        self.free.set(self.free.get() + bytes);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct Wait<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let free = self.budget.free.get();
        if free >= self.bytes {
            self.budget.free.set(free - self.bytes);
            return Poll::Ready(());
        }
        self.budget.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// Budget held by one buffer; returned when dropped.
pub struct Grant {
    budget: Rc<BodyBudget>,
    bytes: usize,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A record buffer and the budget it holds. Keep the grant until the buffer
/// is written (or dropped).
pub struct BodyBuf {
    pub buf: DataBuf,
    pub grant: Grant,
}

/// The one place body buffers come from. (When the storage engine has a
/// per-core pool of record buffers, it replaces `DataBuf::new` here.)
pub async fn body_buf(budget: &Rc<BodyBudget>, data_bytes: usize) -> Result<BodyBuf, S3Error> {
    let grant = budget.take(cost(data_bytes)).await?;
    Ok(BodyBuf { buf: DataBuf::new(data_bytes), grant })
}

/// Size of a body's first buffer. A body announced to fit gets one byte more
/// than it needs, so that it never fills: the read that finds its end then
/// happens in the same buffer, and the body can stay inline.
pub fn first_buf_bytes(announced: Option<u64>) -> usize {
    match announced {
        Some(n) if n < FIRST_BODY_BUF_BYTES as u64 => n as usize + 1,
        _ => FIRST_BODY_BUF_BYTES,
    }
}

/// `first_buf_bytes` while the budget is [`BodyBudget::roomy`]: a body
/// announced longer than a first buffer gets the buffer
/// [`grown_buf_bytes`] would grow it to, at once (no copy when it fills).
pub fn first_buf_bytes_roomy(announced: Option<u64>) -> usize {
    match announced {
        Some(n) if n > FIRST_BODY_BUF_BYTES as u64 => n.min(GROWN_BODY_BUF_BYTES as u64) as usize,
        _ => first_buf_bytes(announced),
    }
}

/// Size of the buffer that takes over a full *first* buffer of `filled`
/// bytes and its contents, when the body is announced to go on: room for the
/// whole body, up to [`GROWN_BODY_BUF_BYTES`]. `None` (the buffers go on
/// doubling): the body was not announced, or `filled` is not a full first
/// buffer. It grants 512 KiB once [`FIRST_BODY_BUF_BYTES`] have arrived, so
/// what a slow client holds stays bounded by what it sent (4×; 3× while
/// doubling).
pub fn grown_buf_bytes(filled: usize, announced_left: Option<u64>) -> Option<usize> {
    let left = announced_left?;
    if filled != FIRST_BODY_BUF_BYTES || left == 0 {
        return None;
    }
    Some((filled as u64).saturating_add(left).min(GROWN_BODY_BUF_BYTES as u64) as usize)
}

/// Size of the buffer after a full one of `previous` bytes: double, up to a
/// record, and no more than what is left of an announced body (at least one
/// byte, for the read that finds the end).
pub fn next_buf_bytes(previous: usize, announced_left: Option<u64>) -> usize {
    let doubled = previous.saturating_mul(2).clamp(FIRST_BODY_BUF_BYTES, MAX_BODY_BUF_BYTES);
    match announced_left {
        Some(left) => doubled.min(left.max(1) as usize),
        None => doubled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_with_the_body() {
        assert_eq!(first_buf_bytes(Some(0)), 1);
        assert_eq!(first_buf_bytes(Some(100)), 101);
        assert_eq!(first_buf_bytes(Some(FIRST_BODY_BUF_BYTES as u64 - 1)), FIRST_BODY_BUF_BYTES);
        assert_eq!(first_buf_bytes(Some(5 << 30)), FIRST_BODY_BUF_BYTES);
        assert_eq!(first_buf_bytes(None), FIRST_BODY_BUF_BYTES);
        let mut sizes = vec![FIRST_BODY_BUF_BYTES];
        for _ in 0..5 {
            sizes.push(next_buf_bytes(*sizes.last().unwrap_or(&0), None));
        }
        assert_eq!(sizes, [128 << 10, 256 << 10, 512 << 10, 1 << 20, 1 << 20, 1 << 20]);
        assert_eq!(next_buf_bytes(1 << 20, Some(10)), 10);
        assert_eq!(next_buf_bytes(1 << 20, Some(0)), 1);
    }

    #[test]
    fn an_announced_body_grows_its_first_buffer_to_half_a_record() {
        let first = FIRST_BODY_BUF_BYTES;
        // 1 MiB announced, 128 KiB arrived: half of it in one buffer, and
        // the rest in the next (two records).
        let grown = grown_buf_bytes(first, Some((1 << 20) - first as u64));
        assert_eq!(grown, Some(512 << 10));
        assert_eq!(next_buf_bytes(512 << 10, Some(512 << 10)), 512 << 10);
        // Longer bodies: the same; shorter ones: exactly the body.
        assert_eq!(grown_buf_bytes(first, Some(5 << 30)), Some(GROWN_BODY_BUF_BYTES));
        assert_eq!(grown_buf_bytes(first, Some(10)), Some(first + 10));
        // Not announced, nothing left, or not the first buffer: keep doubling.
        assert_eq!(grown_buf_bytes(first, None), None);
        assert_eq!(grown_buf_bytes(first, Some(0)), None);
        assert_eq!(grown_buf_bytes(first * 2, Some(1 << 20)), None);
        assert_eq!(grown_buf_bytes(MAX_BODY_BUF_BYTES, Some(1 << 20)), None);
    }

    #[test]
    fn a_roomy_budget_gives_an_announced_body_its_grown_buffer_at_once() {
        // What the first buffer would have grown to, with no copy.
        assert_eq!(first_buf_bytes_roomy(Some(1 << 20)), 512 << 10);
        assert_eq!(first_buf_bytes_roomy(Some(5 << 30)), GROWN_BODY_BUF_BYTES);
        let first = FIRST_BODY_BUF_BYTES as u64;
        assert_eq!(first_buf_bytes_roomy(Some(first + 10)), grown_buf_bytes(FIRST_BODY_BUF_BYTES, Some(10)).unwrap());
        // Bodies that fit a first buffer, and unannounced ones: as before.
        for n in [Some(0), Some(100), Some(first - 1), Some(first), None] {
            assert_eq!(first_buf_bytes_roomy(n), first_buf_bytes(n), "{n:?}");
        }
        let budget = BodyBudget::new(4 << 20);
        assert!(budget.roomy());
        budget.free.set(3 << 20);
        assert!(budget.roomy(), "a quarter granted");
        budget.free.set((3 << 20) - 1);
        assert!(!budget.roomy());
    }

    #[test]
    fn budget_is_returned_when_grants_drop() {
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build();
        let Ok(mut rt) = rt else { return };
        rt.block_on(async {
            let budget = BodyBudget::new(cost(8192) * 2);
            let a = body_buf(&budget, 8192).await.map_err(|_| ()).unwrap();
            let b = body_buf(&budget, 8192).await.map_err(|_| ()).unwrap();
            assert_eq!(budget.free(), 0);
            let waiter = {
                let budget = budget.clone();
                monoio::spawn(async move { body_buf(&budget, 8192).await.is_ok() })
            };
            drop(a);
            assert!(waiter.await, "a waiter gets the room a dropped grant returns");
            drop(b);
        });
    }
}
