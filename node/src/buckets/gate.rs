//! The write gate: orders a bucket's object writes against its
//! DeleteBucket (see [`WriteGate`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Orders object writes against DeleteBucket. A write enters the gate right
/// before it commits and leaves once the commit is acknowledged; DeleteBucket
/// closes the gate, waits until no write is inside, and only then checks
/// that the bucket is empty. Either the write gets in first (and DeleteBucket
/// then sees its object) or it finds the gate closed and answers
/// NoSuchBucket: no write is acknowledged into a bucket that is then deleted.
/// (Both sides use SeqCst: each sees the other's flag or counter.)
#[derive(Debug, Default)]
pub struct WriteGate {
    inside: AtomicU64,
    closed: AtomicBool,
}

/// A write inside the gate; leaving is dropping it.
pub struct GateGuard(Arc<WriteGate>);

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WriteGate {
    pub(super) fn enter(self: &Arc<Self>) -> Option<GateGuard> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        let guard = GateGuard(self.clone());
        (!self.closed.load(Ordering::SeqCst)).then_some(guard)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(super) fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    pub(super) fn writes_inside(&self) -> u64 {
        self.inside.load(Ordering::SeqCst)
    }
}

/// The gate carries no stored state: two infos are equal when their stored fields are.
impl PartialEq for WriteGate {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WriteGate {}
