//! Gives freed heap back to the OS once the server has gone quiet. glibc's malloc keeps what a burst of
//! connections freed (10,000 streams leave tens of MiB resident after they close); `malloc_trim` hands the free
//! pages back. It runs only after a whole quiet interval with no request in flight, so the walk over the heap
//! (a few milliseconds on the worker it runs on) never competes with traffic.

use std::time::Duration;

use crate::http::lifecycle::LIFECYCLE;
use crate::metrics::METRICS;

/// How long the server must be quiet (no request in flight, no connection opened or closed, no response)
/// before a trim.
pub const QUIET: Duration = Duration::from_secs(1);

/// Decides when to trim from samples of the server's activity, one per [`QUIET`] interval.
#[derive(Debug, Default)]
pub struct Quiet {
    last_sample: u64,
    trimmed_at: u64,
}

impl Quiet {
    /// One sample: `activity` only ever grows (connections and responses so far); `in_flight` is the
    /// requests being answered. True when a trim is due: nothing happened since the last sample, something
    /// happened since the last trim, and nothing is in flight.
    pub fn due(&mut self, activity: u64, in_flight: usize) -> bool {
        let still = activity == self.last_sample;
        self.last_sample = activity;
        if still && in_flight == 0 && activity != self.trimmed_at {
            self.trimmed_at = activity;
            return true;
        }
        false
    }
}

/// Starts the coroutine that trims after each busy spell.
pub fn start() -> std::io::Result<()> {
    crate::server::spawn("reclaim", || {
        let mut quiet = Quiet::default();
        loop {
            may::coroutine::sleep(QUIET);
            if quiet.due(METRICS.activity(), LIFECYCLE.active()) {
                trim();
            }
        }
    })
    .map(drop)
}

/// Returns free heap pages to the OS (glibc); other allocators return memory on their own.
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free memory; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_quiet_interval() {
        let mut quiet = Quiet::default();
        // Nothing has happened yet: no trim.
        assert!(!quiet.due(0, 0));
        // Busy: activity moves.
        assert!(!quiet.due(10, 0));
        assert!(!quiet.due(25, 3));
        // Still requests in flight (long streams): no trim even though nothing new happened.
        assert!(!quiet.due(25, 2));
        // Quiet for a whole interval with nothing in flight: trim, once.
        assert!(quiet.due(25, 0));
        assert!(!quiet.due(25, 0));
        // New work, then quiet again: one more trim.
        assert!(!quiet.due(30, 0));
        assert!(quiet.due(30, 0));
    }
}
