//! Waiting for tokens: when generation started and how tokens are paced, and a sleep that parks only the
//! coroutine. Shared by the chat and legacy completion endpoints.

use std::time::Instant;

use crate::ids;
use crate::models::profile::{Overrides, Profile};
use crate::models::Pace;

/// When generation started and how tokens are paced.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Token timing.
    pub pace: Pace,
    /// When the request arrived; every deadline counts from here, so delays never drift.
    pub start: Instant,
}

impl Schedule {
    /// Deadlines token after token, for a stream.
    pub fn ticker(&self) -> Ticker {
        Ticker {
            pace: self.pace,
            at: self.start,
            next: 0,
        }
    }

    /// When token `k` (0-based) is ready.
    pub fn ready_at(&self, k: usize) -> Instant {
        self.start + self.pace.ready_at(k)
    }
}

/// Walks a schedule one token at a time, so jittered gaps cost one draw each.
#[derive(Debug, Clone)]
pub struct Ticker {
    pace: Pace,
    at: Instant,
    next: usize,
}

impl Ticker {
    /// Waits until the next token is ready.
    pub fn wait_next(&mut self) {
        self.at += self.pace.gap(self.next);
        self.next += 1;
        sleep_until(self.at);
    }
}

/// The timing the server settled for one request before its prompt is counted: the model's profile, the
/// request's header overrides, how busy the model was when the request was admitted, and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The model's latency profile.
    pub profile: Profile,
    /// `x-standin-ttft-ms` / `x-standin-itl-ms`.
    pub overrides: Overrides,
    /// Requests in flight on the model at admission, this one included.
    pub in_flight: usize,
    /// When the request arrived.
    pub start: Instant,
}

impl Plan {
    /// Instant tokens from now, as in unit tests and benches.
    pub fn instant() -> Self {
        Plan {
            profile: Profile::default(),
            overrides: Overrides::default(),
            in_flight: 1,
            start: Instant::now(),
        }
    }

    /// The schedule once the prompt is counted; jitter gets a fresh seed per request.
    pub fn schedule(&self, prompt_tokens: u64) -> Schedule {
        let noise = if self.profile.jitter.is_zero() {
            0
        } else {
            ids::next()
        };
        Schedule {
            pace: self
                .profile
                .pace(self.overrides, prompt_tokens, self.in_flight, noise),
            start: self.start,
        }
    }
}

/// Parks the coroutine (never the worker thread) until `at`.
pub fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        may::coroutine::sleep(at - now);
    }
}
