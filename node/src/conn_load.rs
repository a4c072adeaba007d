//! How many S3 connections each reactor serves, so that a connection can
//! move to a less loaded reactor between two requests (`server`, `conn`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// S3 connections each reactor serves, so that a connection can move to a
/// less loaded reactor. The kernel spreads `SO_REUSEPORT` connections by a
/// hash of their addresses, which leaves reactors uneven: 16 connections
/// came out 6 and 10 on 2 reactors, and k connections over n reactors leave
/// about n(1 - 1/n)^k of them with none (16 over 16: 5.7 cores idle while
/// others serve 3 or 4). A connection moves between two requests (after
/// its first), never at accept: a client that opens a connection per
/// request pays nothing (handing every other one over at accept cost such
/// clients 3-8% of their rate).
pub struct ConnLoad(Box<[AtomicUsize]>, std::sync::Mutex<()>);

impl ConnLoad {
    pub fn new(reactors: usize) -> ConnLoad {
        ConnLoad((0..reactors.max(1)).map(|_| AtomicUsize::new(0)).collect(), std::sync::Mutex::new(()))
    }

    /// Reactor `core` took a connection.
    pub fn opened(&self, core: usize) {
        self.0[core].fetch_add(1, Ordering::SeqCst);
    }

    /// Where one of reactor `here`'s connections should move: the least
    /// loaded reactor, when `here` serves two or more connections more
    /// (a move never makes the two trade places, so none moves back).
    /// Counts the move.
    ///
    /// Every request boundary asks, so the first look takes no lock; a
    /// move looks again under the lock. Without it two reactors moving at
    /// once could both see one reactor least and both move there, leaving
    /// it two above another (`concurrent_moves_leave_the_reactors_even` saw
    /// it within a few hundred rounds).
    pub fn rebalance(&self, here: usize) -> Option<usize> {
        self.target(here)?;
        let _moving = self.1.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let to = self.target(here)?;
        self.done(here);
        self.opened(to);
        Some(to)
    }

    /// The least loaded reactor, when `here` serves two or more more.
    fn target(&self, here: usize) -> Option<usize> {
        let load = |i: usize| self.0[i].load(Ordering::SeqCst);
        let mine = load(here);
        let (to, least) = (0..self.0.len()).map(|i| (i, load(i))).min_by_key(|&(_, n)| n)?;
        (least + 2 <= mine).then_some(to)
    }

    /// A connection reactor `core` was counted for has ended.
    pub fn done(&self, core: usize) {
        let _ = self.0[core].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::ConnLoad;

    /// A connection moves to the reactor serving fewest only when its own
    /// serves two more, so a move never invites one back; an ended one
    /// leaves its count (never below zero).
    #[test]
    fn connections_move_to_the_least_loaded_reactor() {
        let load = ConnLoad::new(3);
        let count = |i: usize| load.0[i].load(std::sync::atomic::Ordering::Relaxed);
        load.opened(1);
        assert_eq!(load.rebalance(1), None, "one more than the others: stays");
        load.opened(1);
        assert_eq!(load.rebalance(1), Some(0));
        assert_eq!((count(0), count(1), count(2)), (1, 1, 0));
        assert_eq!(load.rebalance(0), None);
        assert_eq!(load.rebalance(1), None);
        for _ in 0..4 {
            load.opened(2);
        }
        assert_eq!(load.rebalance(2), Some(0), "the least loaded, the lowest first");
        assert_eq!(load.rebalance(2), Some(1));
        assert_eq!(load.rebalance(2), None);
        assert_eq!((count(0), count(1), count(2)), (2, 2, 2));
        load.done(0);
        load.done(0);
        load.done(0);
        assert_eq!(count(0), 0);
        let one = ConnLoad::new(1);
        one.opened(0);
        one.opened(0);
        assert_eq!(one.rebalance(0), None, "a single reactor keeps everything");
    }

    /// Reactors moving connections at the same time never pick one target
    /// both (each would have seen it least): however two heavy reactors'
    /// moves interleave, the reactors end within one of each other.
    #[test]
    fn concurrent_moves_leave_the_reactors_even() {
        use std::sync::{Arc, Barrier};
        for round in 0..20000 {
            let load = Arc::new(ConnLoad::new(8));
            for _ in 0..6 {
                for h in 0..4 {
                    load.opened(h);
                }
            }
            let start = Arc::new(Barrier::new(4));
            let movers: Vec<_> = (0..4)
                .map(|here| {
                    let (load, start) = (load.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        while load.rebalance(here).is_some() {}
                    })
                })
                .collect();
            for m in movers {
                m.join().unwrap();
            }
            let counts: Vec<usize> = (0..8).map(|i| load.0[i].load(std::sync::atomic::Ordering::SeqCst)).collect();
            assert_eq!(counts.iter().sum::<usize>(), 24, "round {round}: {counts:?}");
            let (max, min) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
            assert!(max - min <= 1, "round {round}: {counts:?}");
        }
    }
}
