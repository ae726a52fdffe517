//! Waiting for tokens: when generation started and how tokens are paced, and a sleep that parks only the
//! coroutine. Shared by the chat and legacy completion endpoints.

use std::time::{Duration, Instant};

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

    /// Parks until token `k` is ready. Without any delay it returns at once, without reading the clock.
    pub fn wait_for(&self, k: usize) {
        if !self.pace.is_instant() {
            sleep_until(self.ready_at(k));
        }
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
    /// Moves on to the next token; returns when it is ready.
    pub fn next_at(&mut self) -> Instant {
        self.at += self.pace.gap(self.next);
        self.next += 1;
        self.at
    }
}

/// Whether `at` has come, to within the sleep grid: a token this close is written without a wait, together
/// with what is already queued (one write instead of two; and a stream that fell behind catches up in one).
pub fn is_due(at: Instant) -> bool {
    at <= Instant::now() + SLEEP_GRID / 2
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

/// Sleep lengths are rounded to this grid. may files sleeping coroutines in one queue per distinct length
/// (to the nanosecond), and each new queue costs a write lock, an allocation and a wake-up of may's timer
/// thread; on the grid, thousands of paced streams share a few queues (measured at 10,000 streams: see the
/// README's Performance section). Rounding to the nearest step keeps the mean error at zero and every error
/// under 50 µs; deadlines stay absolute, so errors never add up.
pub const SLEEP_GRID: Duration = Duration::from_micros(100);

/// Parks the coroutine (never the worker thread) until about `at` (within half a [`SLEEP_GRID`]).
pub fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        let length = on_grid(at - now);
        if !length.is_zero() {
            may::coroutine::sleep(length);
        }
    }
}

/// `length` rounded to the nearest multiple of [`SLEEP_GRID`].
fn on_grid(length: Duration) -> Duration {
    let step = SLEEP_GRID.as_nanos();
    let steps = (length.as_nanos() + step / 2) / step;
    SLEEP_GRID * u32::try_from(steps).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_waits_for_a_delayed_token() {
        // Only a schedule with a delay waits (one-sided: a busy machine can only make it later).
        let start = Instant::now();
        let schedule = Schedule {
            pace: Pace::fixed(Duration::from_millis(15), Duration::from_millis(5)),
            start,
        };
        schedule.wait_for(2);
        assert!(start.elapsed() + SLEEP_GRID >= Duration::from_millis(25));
        let instant = Schedule {
            pace: Pace::default(),
            start,
        };
        assert!(instant.pace.is_instant());
        instant.wait_for(1_000);
    }

    #[test]
    fn sleeps_round_to_the_nearest_grid_step() {
        let us = Duration::from_micros;
        assert_eq!(on_grid(us(0)), us(0));
        assert_eq!(on_grid(us(49)), us(0));
        assert_eq!(on_grid(us(50)), us(100));
        assert_eq!(on_grid(us(149)), us(100));
        assert_eq!(on_grid(Duration::from_nanos(99_950_001)), us(100_000));
        assert_eq!(
            on_grid(Duration::from_millis(20)),
            Duration::from_millis(20)
        );
        // Lengths far past any pacing delay saturate instead of wrapping.
        assert_eq!(on_grid(Duration::MAX), SLEEP_GRID * u32::MAX);
    }
}
