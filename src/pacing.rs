//! Waiting for tokens: when generation started and how tokens are paced, and a sleep that parks only the
//! coroutine. Shared by the chat and legacy completion endpoints.

use std::time::Instant;

use crate::models::Pace;

/// When generation started and how tokens are paced.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Token timing.
    pub pace: Pace,
    /// When the request arrived; every deadline counts from here, so delays never drift.
    pub start: Instant,
}

/// Parks the coroutine (never the worker thread) until `at`.
pub fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        may::coroutine::sleep(at - now);
    }
}
