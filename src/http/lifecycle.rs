//! The server's lifecycle as the HTTP layer enforces it: how many requests are being answered (for the
//! in-flight limit and for the drain), and whether the server is draining (every answer then closes its
//! connection, and the drain waits for the count to reach zero).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Process-wide state; one server per process.
pub struct Lifecycle {
    draining: AtomicBool,
    active: AtomicUsize,
}

/// The process's lifecycle.
pub static LIFECYCLE: Lifecycle = Lifecycle::new();

/// A request being answered; counted until dropped (also on a panic or a client leaving).
pub struct Active<'a>(&'a Lifecycle);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

impl Lifecycle {
    /// Serving, nothing in flight.
    pub const fn new() -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        }
    }

    /// Counts a request in, unless `max` (0: no limit) are already being answered.
    pub fn enter(&self, max: usize) -> Option<Active<'_>> {
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        let active = Active(self);
        (max == 0 || before < max).then_some(active)
    }

    /// Requests being answered now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Stop taking new work: answers close their connections from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_past_max_and_frees_on_drop() {
        let life = Lifecycle::new();
        let a = life.enter(2).unwrap();
        let b = life.enter(2).unwrap();
        assert!(life.enter(2).is_none());
        // A refused entry is not left counted.
        assert_eq!(life.active(), 2);
        drop(a);
        assert!(life.enter(2).is_some());
        drop(b);
        assert_eq!(life.active(), 0);
        assert!(life.enter(0).is_some(), "0 means no limit");
    }

    #[test]
    fn draining_is_one_way() {
        let life = Lifecycle::new();
        assert!(!life.is_draining());
        life.start_draining();
        assert!(life.is_draining());
    }
}
