//! A single-threaded "something changed" signal for tasks of one reactor.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Tasks wait with `listen().await` and re-check their condition after;
/// `notify_all` wakes every listener. Checking a condition and then calling
/// `listen` cannot miss a notification, because nothing runs in between on
/// a single-threaded reactor.
#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Drops every registered waker without waking it (for a runtime that
    /// is being abandoned: a waker can hold the task that holds this event).
    pub fn forget_listeners(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        drop(wakers);
    }

    pub fn listen(&self) -> Listen<'_> {
        Listen {
            event: self,
            generation: self.generation.get(),
            registered: false,
        }
    }
}

pub struct Listen<'a> {
    event: &'a Event,
    generation: u64,
    registered: bool,
}

impl Future for Listen<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        // One waker per listener: a spurious re-poll must not grow the list.
        if !self.registered {
            self.event.wakers.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        }
        Poll::Pending
    }
}
