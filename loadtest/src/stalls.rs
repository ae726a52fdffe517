//! Notices when the cores the harness runs on are taken from it. One thread per core in the process's CPU
//! mask sleeps 2 ms at a time and records every wake-up that comes late by `--stall-ms` or more: while a
//! core runs something else (another process, interrupts, the hypervisor), the harness's own reads on it
//! wait too, and every latency spanning that time includes the wait. The probe does not correct anything;
//! it says when a tail may be the client machine's rather than the server's. A stall that begins while a
//! probe sleeps shows as that much shorter, so the lengths are lower bounds, short by up to [`PERIOD`];
//! a shorter period costs more (each wake-up takes the core from the harness for a moment).
//!
//! A probe runs at the harness's own priority, so what delays it would delay a harness thread waking
//! then: a task of higher priority, another busy process on the same core, or a core not running at all.
//! Sharing a core the harness itself keeps busy delays it too, but only by a scheduler slice (up to
//! 1.5 ms, rarely 3 ms, measured on a 2-core Xeon VM), which is why the default threshold is 5 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::Clock;

/// How long each probe sleeps between looks.
pub const PERIOD: Duration = Duration::from_millis(2);

/// Most cores probed: past this many the harness is unlikely to be bound to a few cores anyway.
const MAX_PROBES: usize = 64;

/// One late wake-up: when it was due (on the run's clock) and how late it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// When the probe should have woken, as an offset on the run's clock.
    pub at: Duration,
    /// How much later it woke.
    pub len: Duration,
    /// Which core.
    pub cpu: usize,
}

/// The running probes.
pub struct Probe {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Stall>>>,
}

impl Probe {
    /// Starts one probe per core the process may run on, timing against `clock`. A zero `threshold` starts
    /// none.
    pub fn start(clock: Clock, threshold: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = if threshold.is_zero() {
            Vec::new()
        } else {
            allowed_cpus()
        };
        let threads = cpus
            .into_iter()
            .take(MAX_PROBES)
            .filter_map(|cpu| {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("stall-probe-{cpu}"))
                    .stack_size(64 * 1024)
                    .spawn(move || watch(cpu, clock, threshold, &stop))
                    .ok()
            })
            .collect();
        Probe { stop, threads }
    }

    /// Stops the probes; every stall they saw, in order of time.
    pub fn finish(self) -> Vec<Stall> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Stall> = self
            .threads
            .into_iter()
            .filter_map(|t| t.join().ok())
            .flatten()
            .collect();
        all.sort_by_key(|s| (s.at, s.cpu));
        all
    }
}

/// One core's probe: sleeps [`PERIOD`] at a time until told to stop.
fn watch(cpu: usize, clock: Clock, threshold: Duration, stop: &AtomicBool) -> Vec<Stall> {
    if !pin_to(cpu) {
        return Vec::new();
    }
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let due = clock.elapsed() + PERIOD;
        std::thread::sleep(PERIOD);
        seen.extend(late(due, clock.elapsed(), threshold, cpu));
    }
    seen
}

/// The stall a wake-up at `woke` makes, if it came `threshold` or more after `due`.
fn late(due: Duration, woke: Duration, threshold: Duration, cpu: usize) -> Option<Stall> {
    let len = woke.saturating_sub(due);
    (len >= threshold).then_some(Stall { at: due, len, cpu })
}

/// The cores in this process's CPU mask (`taskset`), in order.
#[allow(unsafe_code)]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the call writes at most that much.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    if !ok {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Binds the calling thread to `cpu`.
#[allow(unsafe_code)]
fn pin_to(cpu: usize) -> bool {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the process's own mask, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0 }
}

/// What the stalls inside a run's measured window add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// The `--stall-ms` threshold; zero when no probe ran.
    pub threshold: Duration,
    /// Stalls at or over the threshold, on any core.
    pub count: usize,
    /// Their lengths added up.
    pub total: Duration,
    /// The longest one.
    pub longest: Duration,
    /// When the longest one was due, as an offset from the start of the measured window.
    pub longest_at: Duration,
}

/// Sums the stalls due within `[from, to]` on the run's clock.
pub fn summarize(stalls: &[Stall], from: Duration, to: Duration, threshold: Duration) -> Summary {
    let mut s = Summary {
        threshold,
        ..Summary::default()
    };
    for stall in stalls
        .iter()
        .filter(|s| s.at >= from && s.at <= to && s.len >= threshold)
    {
        s.count += 1;
        s.total += stall.len;
        if stall.len > s.longest {
            s.longest = stall.len;
            s.longest_at = stall.at - from;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn stall(at_ms: u64, len_ms: u64) -> Stall {
        Stall {
            at: MS * at_ms as u32,
            len: MS * len_ms as u32,
            cpu: 0,
        }
    }

    #[test]
    fn a_wake_up_counts_from_the_threshold_on() {
        let (due, threshold) = (MS * 10, MS * 2);
        assert_eq!(late(due, due + MS, threshold, 3), None);
        assert_eq!(
            late(due, due + threshold, threshold, 3),
            Some(Stall {
                at: due,
                len: threshold,
                cpu: 3
            })
        );
        assert_eq!(late(due, due - MS, threshold, 0), None, "early");
    }

    #[test]
    fn the_summary_keeps_the_window_and_finds_the_longest() {
        let stalls = [
            stall(500, 30),
            stall(1_000, 4),
            stall(1_500, 12),
            stall(1_600, 2),
            stall(2_500, 50),
        ];
        let s = summarize(&stalls, MS * 1_000, MS * 2_000, MS * 3);
        assert_eq!(s.count, 2, "{s:?}");
        assert_eq!(s.total, MS * 16);
        assert_eq!(s.longest, MS * 12);
        assert_eq!(s.longest_at, MS * 500);
        assert_eq!(s.threshold, MS * 3);
        assert_eq!(
            summarize(&[], MS, MS * 2, MS),
            Summary {
                threshold: MS,
                ..Summary::default()
            }
        );
    }

    #[test]
    fn no_threshold_starts_no_probe() {
        let probe = Probe::start(Clock::start(), Duration::ZERO);
        assert!(probe.threads.is_empty());
        assert!(probe.finish().is_empty());
    }

    /// Probes run on every allowed core and stop when told; a quiet 30 ms leaves nothing over a
    /// threshold of a second.
    #[test]
    fn probes_cover_the_allowed_cores_and_stop() {
        let cores = allowed_cpus();
        assert!(!cores.is_empty());
        let probe = Probe::start(Clock::start(), Duration::from_secs(1));
        assert_eq!(probe.threads.len(), cores.len().min(MAX_PROBES));
        std::thread::sleep(MS * 30);
        assert!(probe.finish().is_empty());
    }
}
