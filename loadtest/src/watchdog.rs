//! Request deadlines for connections that wait with `may`'s `wait_io`, which has no timeout of its own.
//!
//! A read with a socket timeout costs a `recv` that finds nothing (may tries before it waits) and a timer
//! set and removed per read. Instead a connection waits for its socket (to send or to read), and one
//! coroutine looks over the armed deadlines every [`TICK`] and wakes the waits that are past theirs: a
//! timeout is noticed at most one tick late.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use may::io::{WaitIo, WaitIoWaker};
use may::net::TcpStream;

/// How often deadlines are checked.
pub const TICK: Duration = Duration::from_millis(10);

/// No deadline armed.
const UNARMED: u64 = u64::MAX;

/// One connection's deadline (nanoseconds on `CLOCK_MONOTONIC`, as [`crate::clock`] reads) and the means to
/// wake its wait.
pub struct Deadline {
    at_ns: AtomicU64,
    waker: WaitIoWaker,
}

static WATCHED: Mutex<Vec<Arc<Deadline>>> = Mutex::new(Vec::new());
static START: Once = Once::new();

/// Watches `stream`: the deadline it returns, once armed, wakes a [`wait`] on the stream when it passes.
pub fn watch(stream: &TcpStream) -> Arc<Deadline> {
    let deadline = Arc::new(Deadline {
        at_ns: AtomicU64::new(UNARMED),
        waker: stream.waker(),
    });
    if let Ok(mut watched) = WATCHED.lock() {
        watched.push(Arc::clone(&deadline));
    }
    START.call_once(|| {
        may::go!(|| loop {
            may::coroutine::sleep(TICK);
            wake_the_late(crate::clock::now_ns());
        });
    });
    deadline
}

/// Waits until `stream` may be readable or `deadline` (nanoseconds, as [`crate::clock::now_ns`]) passes;
/// returns without waiting if an event came since the last wait. Wake-ups without either happen (a
/// write's event, the deadline of an earlier request): callers read, and check the time, after each.
/// Returns whether the events said the peer closed or reset the connection.
pub fn wait(stream: &TcpStream, watch: &Deadline, deadline: u64) -> bool {
    // Armed before every wait: the watchdog disarms what it wakes.
    watch.at_ns.store(deadline, Ordering::Release);
    closing(stream.wait_io())
}

/// Whether epoll flags (as may accumulates them) include the peer's close or a reset.
fn closing(flags: usize) -> bool {
    flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as usize != 0
}

impl Deadline {
    /// No deadline until the next wait: an idle connection is not woken.
    pub fn disarm(&self) {
        self.at_ns.store(UNARMED, Ordering::Release);
    }
}

/// Wakes every wait whose deadline is at or before `now`, and forgets connections that are gone.
fn wake_the_late(now: u64) {
    let Ok(mut watched) = WATCHED.lock() else {
        return;
    };
    watched.retain(|d| Arc::strong_count(d) > 1);
    for d in watched.iter() {
        let at = d.at_ns.load(Ordering::Acquire);
        // Disarmed only if not re-armed meanwhile, so a later request's deadline is never lost.
        if at <= now
            && d.at_ns
                .compare_exchange(at, UNARMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            d.waker.wakeup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ns;

    /// A connection to a listener that never answers.
    fn silent() -> (std::net::TcpListener, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener, stream)
    }

    /// Whether the watchdog woke the stream's wait since the last look (the waker's flag).
    fn woken(stream: &TcpStream) -> bool {
        #[allow(deprecated)]
        let flags = stream.reset_io();
        flags & 0x8000_0000 != 0
    }

    /// A wait on a silent socket ends once its deadline has passed.
    #[test]
    fn a_wait_ends_at_its_deadline() {
        let (_listener, stream) = silent();
        let (tx, rx) = std::sync::mpsc::channel();
        may::go!(move || {
            let watch = watch(&stream);
            let deadline = now_ns() + 50_000_000;
            let mut waits = 0;
            while now_ns() < deadline {
                wait(&stream, &watch, deadline);
                waits += 1;
            }
            let _ = tx.send(waits);
        });
        let waits = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the wait was never woken");
        assert!(waits >= 1);
    }

    /// Only an armed deadline that has passed is woken, and it is disarmed as it is; a disarmed or future
    /// one is left alone.
    #[test]
    fn only_late_armed_deadlines_are_woken() {
        let (_listener, stream) = silent();
        let watch = watch(&stream);
        woken(&stream);
        let past = now_ns() - 1;
        watch.at_ns.store(past, Ordering::Release);
        watch.disarm();
        wake_the_late(now_ns());
        assert!(!woken(&stream), "a disarmed deadline was woken");

        let later = now_ns() + 60_000_000_000;
        watch.at_ns.store(later, Ordering::Release);
        wake_the_late(now_ns());
        assert!(!woken(&stream), "a future deadline was woken");
        assert_eq!(watch.at_ns.load(Ordering::Acquire), later);

        watch.at_ns.store(past, Ordering::Release);
        wake_the_late(now_ns());
        assert!(woken(&stream), "a late deadline was not woken");
        assert_eq!(watch.at_ns.load(Ordering::Acquire), UNARMED);
    }

    /// Dropped connections leave the watch list at the next check.
    #[test]
    fn dropped_connections_are_forgotten() {
        let (_listener, stream) = silent();
        let watch = watch(&stream);
        let weak = Arc::downgrade(&watch);
        drop(watch);
        wake_the_late(0);
        assert!(weak.upgrade().is_none());
    }
}
