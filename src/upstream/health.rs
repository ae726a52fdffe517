//! Per-upstream health: a failure takes the upstream out of rotation for a cool-down, after which it is
//! tried again; a success brings it back at once. Lock-free, so every request can ask without contention.
//! What counts as a failure (connect errors, timeouts, 5xx — not a client's 4xx) is the caller's choice.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cool-down after a failure: long enough not to hammer an upstream that is restarting, short enough that
/// a blip costs little capacity.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(5);

/// Health of one upstream.
#[derive(Debug)]
pub struct Health {
    cool_down: Duration,
    /// The reference point that `down_until` counts from.
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the upstream is down; 0 when it is up.
    down_until: AtomicU64,
    /// Failures since the last success, for logs and metrics.
    failures: AtomicU32,
}

impl Health {
    /// A healthy upstream that stays down for `cool_down` after each failure.
    pub fn new(cool_down: Duration) -> Self {
        Health {
            cool_down,
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        // Saturates after 584 years of uptime; at or before the epoch counts as 1 so it is never "up" (0).
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
    }

    /// Whether requests should go to this upstream at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        until == 0 || self.nanos(now) >= until
    }

    /// Marks the upstream down until `now + cool_down`. A later deadline already set is kept, so racing
    /// reports of the same outage cannot shorten it.
    pub fn record_failure(&self, now: Instant) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let until = self.nanos(now + self.cool_down);
        self.down_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Marks the upstream up again.
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.down_until.store(0, Ordering::Release);
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new(DEFAULT_COOL_DOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    #[test]
    fn failure_takes_the_upstream_down_for_the_cool_down() {
        let health = Health::new(COOL);
        let t = Instant::now();
        assert!(health.is_available(t));
        health.record_failure(t);
        assert!(!health.is_available(t));
        assert!(!health.is_available(t + COOL - Duration::from_millis(1)));
        assert!(health.is_available(t + COOL));
        assert_eq!(health.consecutive_failures(), 1);
    }

    #[test]
    fn success_brings_it_back_at_once() {
        let health = Health::new(COOL);
        let t = Instant::now();
        health.record_failure(t);
        health.record_failure(t);
        assert_eq!(health.consecutive_failures(), 2);
        health.record_success();
        assert!(health.is_available(t));
        assert_eq!(health.consecutive_failures(), 0);
    }

    #[test]
    fn an_earlier_failure_report_does_not_shorten_the_outage() {
        let health = Health::new(COOL);
        let t = Instant::now();
        health.record_failure(t + Duration::from_secs(5));
        health.record_failure(t);
        assert!(!health.is_available(t + COOL + Duration::from_secs(1)));
        assert!(health.is_available(t + COOL + Duration::from_secs(5)));
    }

    #[test]
    fn failure_before_the_epoch_still_counts() {
        let early = Instant::now();
        let health = Health::new(Duration::ZERO);
        health.record_failure(early);
        // Zero cool-down: down only "at" the failure instant, which clamps to the epoch.
        assert!(health.is_available(Instant::now() + Duration::from_millis(1)));
        let health = Health::new(COOL);
        health.record_failure(early);
        assert!(!health.is_available(Instant::now()));
    }

    #[test]
    fn shared_across_threads() {
        let health = std::sync::Arc::new(Health::new(COOL));
        let t = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let health = std::sync::Arc::clone(&health);
                std::thread::spawn(move || (0..100).for_each(|_| health.record_failure(t)))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(health.consecutive_failures(), 400);
        assert!(!health.is_available(t));
    }
}
