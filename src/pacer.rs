//! Paced streams' tokens, written back to back by pacer threads. A stream that has to wait for its next token
//! hands its step (a closure on its own stack) to a pacer and parks its coroutine; the pacer runs each due
//! step in turn, so the tokens of one moment leave in one burst of writes instead of one coroutine resume each.
//! On loopback that burst is what keeps the reader's core awake between writes (measured at 10,000 paced
//! streams: see the README's Performance section), and no per-token timer, stack switch or wake-up is paid.
//!
//! A step runs on the pacer's thread with the stream's socket in non-blocking mode: a write the socket will
//! not take whole, an error or the end of the stream hands the stream back to its own coroutine.
//!
//! The pacer is a thread of its own, not a coroutine. It must wake at the next due time or earlier when a
//! stream queues an earlier one, and may's `park_timeout` cannot be trusted for that (in may 0.3.51 a
//! coroutine's second timed park returned early and its third never); std's can. It blocks on nothing but
//! its sleep: streams queue through a channel, so a worker never waits for it, and the queue is its own.
//!
//! `--pacer-threads` sets how many pacers there are ([`set_threads`], 1 by default), each started when first
//! needed; streams are dealt to them in turn. One pacer's writes cap the paced tokens of the whole server
//! (about 170,000 a second on loopback here), and a second one on a host with cores to spare lifts the cap;
//! on a 2-core host shared with the load it only competes with the workers (README, Performance).

// The pacer holds parked coroutines' steps by raw pointer; each use says why it is sound.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use may::coroutine::Coroutine;

use crate::http::sse::SseWriter;
use crate::pacing::{is_due, sleep_until, Ticker, SLEEP_GRID};

/// What a stream's step did.
#[derive(Debug)]
pub enum Turn<E> {
    /// Its next token is due then; what was ready has been written.
    Wait(Instant),
    /// Its next token is due then, and the socket did not take all that was ready (it is still queued).
    Blocked(Instant),
    /// The stream's token loop is over.
    End(E),
}

/// Who runs a turn, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The stream's own coroutine: writes may wait for room.
    Own,
    /// The pacer: writes must not wait.
    Pacer,
    /// Only send what a full socket left queued, waiting for room (the result is ignored).
    Flush,
}

/// One turn of a stream: called when its token is due (or, with [`Mode::Flush`], to empty its queue).
type Step<'a, E> = dyn FnMut(Mode) -> io::Result<Turn<E>> + 'a;

/// A stream handed to the pacer, on its coroutine's stack while that coroutine is parked.
struct Slot<E> {
    step: *mut Step<'static, E>,
    owner: Coroutine,
    /// The step's last result, for the owner.
    result: UnsafeCell<Option<io::Result<Turn<E>>>>,
    /// Set (after `result`) when the pacer is done with the slot.
    done: AtomicBool,
}

/// The type-erased part of a slot the pacer needs.
trait Run {
    /// Runs the step; `Some(at)` means "again at `at`", `None` that the slot was handed back.
    fn run(&self) -> Option<Instant>;
}

impl<E> Run for Slot<E> {
    fn run(&self) -> Option<Instant> {
        // SAFETY: the owner is parked until `done` is set, so the step and everything it borrows are alive
        // and used by this thread alone.
        let step = unsafe { &mut *self.step };
        let result = catch_unwind(AssertUnwindSafe(|| step(Mode::Pacer)))
            .unwrap_or_else(|_| Err(io::Error::other("a stream step panicked")));
        if let Ok(Turn::Wait(at)) = result {
            return Some(at);
        }
        // SAFETY: as above; the owner reads `result` only after `done`.
        unsafe { *self.result.get() = Some(result) };
        let owner = self.owner.clone();
        // After this store the owner may return and free the slot: nothing of it is touched again.
        self.done.store(true, Ordering::Release);
        owner.unpark();
        None
    }
}

/// A queued slot, earliest first.
struct Entry {
    at: Instant,
    seq: u64,
    slot: *const (dyn Run + 'static),
}

// SAFETY: a slot is used by one thread at a time: its owner until it queues it, then the pacer alone until
// `done`.
unsafe impl Send for Entry {}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: BinaryHeap pops the largest, the pacer wants the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Pacer {
    /// Streams queue here without a lock, so a worker never waits for the pacer.
    inbox: Sender<Entry>,
    /// When the pacer wakes next, in ns since `epoch`: [`RUNNING`] while it runs steps (it reads the inbox
    /// when done), `u64::MAX` while nothing is queued.
    wakes_at: AtomicU64,
    epoch: Instant,
    thread: std::thread::Thread,
}

/// `wakes_at` while the pacer is running steps.
const RUNNING: u64 = 0;

/// At most this many pacers, whatever the worker count.
const MAX_PACERS: usize = 64;

static PACERS: [OnceLock<Pacer>; MAX_PACERS] = [const { OnceLock::new() }; MAX_PACERS];

/// How many pacers streams are dealt to (see [`set_threads`]).
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// The next pacer to get a stream, modulo `THREADS`.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Tokens this close to due are written now (half the sleep grid, as `pacing::is_due`).
const EARLY: Duration = Duration::from_nanos(SLEEP_GRID.as_nanos() as u64 / 2);

/// Deals streams to `n` pacers (1 to 64); each starts when it gets its first stream.
pub fn set_threads(n: usize) {
    THREADS.store(n.clamp(1, MAX_PACERS), Ordering::Relaxed);
}

/// The pacer for the next stream, started if need be.
fn pacer() -> &'static Pacer {
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % THREADS.load(Ordering::Relaxed);
    PACERS[i].get_or_init(|| {
        let (inbox, queued) = channel();
        let thread = std::thread::Builder::new()
            .name(format!("standin-pacer-{i}"))
            .spawn(move || run(i, queued))
            .expect("start a pacer thread");
        Pacer {
            inbox,
            wakes_at: AtomicU64::new(RUNNING),
            epoch: Instant::now(),
            thread: thread.thread().clone(),
        }
    })
}

impl Pacer {
    fn nanos(&self, at: Instant) -> u64 {
        // At least 1, so that no time reads as RUNNING.
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .max(1)
    }
}

/// Pacer thread `index`: runs what is due, then sleeps until the next due time or until a stream queues one
/// earlier. Its queue is its own; streams reach it through the inbox.
fn run(index: usize, queued: Receiver<Entry>) {
    // Spawned from `pacer()`'s initializer: wait until it is set.
    let pacer = loop {
        match PACERS[index].get() {
            Some(p) => break p,
            None => std::thread::park_timeout(Duration::from_millis(1)),
        }
    };
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    let mut due: Vec<Entry> = Vec::new();
    let mut seq = 0u64;
    loop {
        pacer.wakes_at.store(RUNNING, Ordering::SeqCst);
        heap.extend(queued.try_iter());
        let now = Instant::now();
        while heap.peek().is_some_and(|e| e.at <= now + EARLY) {
            due.extend(heap.pop());
        }
        if !due.is_empty() {
            for entry in due.drain(..) {
                // SAFETY: see `Entry`; the slot stays alive until its `run` hands it back.
                if let Some(at) = unsafe { &*entry.slot }.run() {
                    seq += 1;
                    heap.push(Entry {
                        at,
                        seq,
                        slot: entry.slot,
                    });
                }
            }
            continue;
        }
        let next = heap.peek().map(|e| e.at);
        pacer.wakes_at.store(
            next.map_or(u64::MAX, |at| pacer.nanos(at)),
            Ordering::SeqCst,
        );
        // A stream that queued before the store above may not have seen it: look once more.
        if let Ok(entry) = queued.try_recv() {
            heap.push(entry);
            continue;
        }
        match next {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// Runs a stream's turns until its token loop ends: the first now if `wait` is `None`, else handed to the
/// pacer at `wait`; after a turn the socket did not take whole, the stream's own coroutine sends the rest,
/// waiting for room, and waits for the next time itself.
pub fn drive<'a, E: 'a>(mut wait: Option<Instant>, turn: &mut Step<'a, E>) -> io::Result<E> {
    loop {
        let done = match wait.take() {
            None => turn(Mode::Own)?,
            Some(at) => hand(at, turn)?,
        };
        match done {
            Turn::Wait(at) => wait = Some(at),
            Turn::Blocked(at) => {
                // What the socket did not take goes out now, waiting for room, then the next turn waits.
                turn(Mode::Flush)?;
                sleep_until(at);
            }
            Turn::End(ending) => return Ok(ending),
        }
    }
}

/// A stream's first wait: `Some(at)` when its first token is not due yet, once what is ready (the head) has
/// been sent; `None` for an unpaced stream or a token due now.
pub fn first_wait(
    paced: bool,
    ticker: &mut Ticker,
    sse: &mut SseWriter<'_>,
) -> io::Result<Option<Instant>> {
    match paced.then(|| ticker.next_at()) {
        Some(at) if !is_due(at) => {
            sse.rest()?;
            Ok(Some(at))
        }
        _ => Ok(None),
    }
}

/// After a token: `Some` ends the turn when the next token is not due yet, once what is ready has been sent
/// (`Blocked` if a full socket took only part of it, in the pacer); `None` goes on to the next token now.
pub fn after_token<E>(
    paced: bool,
    ticker: &mut Ticker,
    sse: &mut SseWriter<'_>,
) -> Option<io::Result<Turn<E>>> {
    let at = paced.then(|| ticker.next_at()).filter(|&at| !is_due(at))?;
    Some(match sse.rest() {
        Ok(()) => Ok(Turn::Wait(at)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Turn::Blocked(at)),
        Err(e) => Err(e),
    })
}

/// Waits until `at`, then runs `step` there and at every time it asks for, from the pacer, until it ends,
/// fails or blocks; returns that last result. Outside a coroutine (tests) it sleeps and steps in place.
pub fn hand<'a, E: 'a>(at: Instant, step: &mut Step<'a, E>) -> io::Result<Turn<E>> {
    if !may::coroutine::is_coroutine() {
        sleep_until(at);
        return step(Mode::Own);
    }
    let pacer = pacer();
    // SAFETY: the lifetime is erased only while this function keeps the borrow alive: it returns only after
    // the pacer has set `done`, and touches nothing of the slot afterwards.
    let step: *mut Step<'static, E> = unsafe { std::mem::transmute(step as *mut Step<'a, E>) };
    let slot = Slot {
        step,
        owner: may::coroutine::current(),
        result: UnsafeCell::new(None),
        done: AtomicBool::new(false),
    };
    let run: &(dyn Run + 'a) = &slot;
    // SAFETY: as above, for the slot itself.
    let run: *const (dyn Run + 'static) =
        unsafe { std::mem::transmute(run as *const (dyn Run + 'a)) };
    // The sequence number only orders equal times; streams queued at once may take any order.
    let entry = Entry {
        at,
        seq: 0,
        slot: run,
    };
    if pacer.inbox.send(entry).is_err() {
        // The pacer thread is gone (it cannot panic: steps are caught); wait here instead.
        sleep_until(at);
        // SAFETY: the slot was never queued.
        return unsafe { &mut *step }(Mode::Own);
    }
    let at_ns = pacer.nanos(at);
    if pacer.wakes_at.fetch_min(at_ns, Ordering::SeqCst) > at_ns {
        pacer.thread.unpark();
    }
    while !slot.done.load(Ordering::Acquire) {
        may::coroutine::park();
    }
    // SAFETY: `done` is set, so the pacer wrote `result` and let go of the slot.
    unsafe { (*slot.result.get()).take() }
        .unwrap_or_else(|| Err(io::Error::other("pacer lost a stream")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: Instant, seq: u64) -> Entry {
        struct Nothing;
        impl Run for Nothing {
            fn run(&self) -> Option<Instant> {
                None
            }
        }
        static NOTHING: Nothing = Nothing;
        Entry {
            at,
            seq,
            slot: &NOTHING as *const dyn Run,
        }
    }

    #[test]
    fn the_queue_pops_the_earliest_and_keeps_order_among_equals() {
        let now = Instant::now();
        let mut heap = BinaryHeap::new();
        heap.push(entry(now + Duration::from_millis(5), 0));
        heap.push(entry(now + Duration::from_millis(1), 1));
        heap.push(entry(now + Duration::from_millis(1), 2));
        heap.push(entry(now + Duration::from_millis(3), 3));
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|e| e.seq)).collect();
        assert_eq!(order, [1, 2, 3, 0]);
    }

    #[test]
    fn outside_a_coroutine_the_step_runs_in_place_after_the_wait() {
        let at = Instant::now() + Duration::from_millis(2);
        let mut calls = Vec::new();
        let mut step = |mode: Mode| -> io::Result<Turn<()>> {
            calls.push((mode, Instant::now() >= at - EARLY));
            Ok(Turn::End(()))
        };
        assert!(matches!(hand(at, &mut step), Ok(Turn::End(()))));
        assert_eq!(calls, [(Mode::Own, true)]);
    }

    #[test]
    fn streams_handed_to_the_pacer_run_at_their_times_and_come_back() {
        // Three streams of four steps each, 3 ms apart, in coroutines: no step runs before its time, each
        // stream gets its end back, and the pacer ran the steps.
        let handles: Vec<_> = (0..3u32)
            .map(|id| {
                let stream = move || {
                    let mut times = Vec::new();
                    let mut next = Instant::now() + Duration::from_millis(3);
                    let first = next;
                    let mut steps = 0;
                    let ended = {
                        let mut step = |mode: Mode| -> io::Result<Turn<u32>> {
                            times.push((next, Instant::now(), mode == Mode::Pacer));
                            steps += 1;
                            if steps == 4 {
                                return Ok(Turn::End(id));
                            }
                            next += Duration::from_millis(3);
                            Ok(Turn::Wait(next))
                        };
                        match hand(first, &mut step) {
                            Ok(Turn::End(id)) => id,
                            other => panic!("{other:?}"),
                        }
                    };
                    (ended, times)
                };
                // SAFETY: the test coroutine uses no thread-locals and never blocks its worker.
                unsafe { may::coroutine::spawn(stream) }
            })
            .collect();
        let mut in_pacer = 0;
        for (id, handle) in handles.into_iter().enumerate() {
            let (ended, times) = handle.join().unwrap();
            assert_eq!(ended, id as u32);
            assert_eq!(times.len(), 4);
            for (due, ran, paced) in times {
                assert!(ran + EARLY >= due, "ran {:?} early", due - ran);
                in_pacer += usize::from(paced);
            }
        }
        // Every step after the hand-over is the pacer's.
        assert_eq!(in_pacer, 12);
    }

    #[test]
    fn streams_are_dealt_to_every_pacer() {
        // With two pacers, streams handed over one after another alternate between them. The other test
        // here hands 3 streams, which may come in between; of 8 of ours, some land on each pacer anyway.
        set_threads(2);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let stream = || {
                    let mut thread = String::new();
                    let mut step = |_: Mode| -> io::Result<Turn<()>> {
                        thread = std::thread::current().name().unwrap_or("").to_string();
                        Ok(Turn::End(()))
                    };
                    hand(Instant::now() + Duration::from_millis(2), &mut step).unwrap();
                    thread
                };
                // SAFETY: the test coroutine uses no thread-locals and never blocks its worker.
                unsafe { may::coroutine::spawn(stream) }
            })
            .collect();
        let threads: std::collections::BTreeSet<String> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            threads.into_iter().collect::<Vec<_>>(),
            ["standin-pacer-0", "standin-pacer-1"]
        );
    }
}
