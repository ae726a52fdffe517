//! The run's clock: time since the run began, read from `CLOCK_MONOTONIC` (the clock `Instant` reads) as
//! nanoseconds. `Instant`'s checked subtraction cost about 150 instructions a reading, a few readings per
//! request; this is a subtraction of two integers.

use std::time::Duration;

/// When the run began; [`Clock::elapsed`] is every timestamp of a record.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: u64,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock { start: now_ns() }
    }

    /// The reading of [`now_ns`] at `offset` on this clock.
    pub fn ns_at(&self, offset: Duration) -> u64 {
        self.start.saturating_add(offset.as_nanos() as u64)
    }

    /// Time since the clock started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(now_ns().saturating_sub(self.start))
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`.
#[allow(unsafe_code)]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid place for the result; CLOCK_MONOTONIC exists on every system we build for.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Readings never go back, and agree with `Instant` over a 20 ms sleep to within a millisecond.
    #[test]
    fn elapsed_follows_the_monotonic_clock() {
        let (clock, instant) = (Clock::start(), Instant::now());
        let mut last = clock.elapsed();
        for _ in 0..10_000 {
            let now = clock.elapsed();
            assert!(now >= last);
            last = now;
        }
        std::thread::sleep(Duration::from_millis(20));
        let (ours, std) = (clock.elapsed(), instant.elapsed());
        assert!(ours >= Duration::from_millis(20), "{ours:?}");
        assert!(
            ours.abs_diff(std) < Duration::from_millis(1),
            "{ours:?} against {std:?}"
        );
    }
}
