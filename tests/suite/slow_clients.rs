//! Slow clients: a thousand connections dripping their request heads a byte at a time must not hold up a
//! normal client, and `--header-timeout-ms` must cut them (408, then close) and release their connections.
//!
//! One driver thread owns every dripping socket (non-blocking) and visits them round-robin: read whatever
//! the server sent, then write the next byte, then a short sleep per round. Timing bounds are generous
//! (seconds, not milliseconds): they catch a server that serialises behind slow clients, not a slow box.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{assert_echo, chat, chat_body, Server};

/// How many connections drip; fewer if the descriptor limit is tight (see `trickler_count`).
const TRICKLERS: usize = 1000;

/// The head every trickler sends, a byte at a time, followed by an endless header value.
const HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ";

/// Pause between rounds; each connection gets one byte per round.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

/// A normal request during the trickle must complete within this.
const NORMAL_BOUND: Duration = Duration::from_secs(2);

/// What one dripping connection saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Bytes of the head written.
    sent: usize,
    /// Everything the server sent.
    received: Vec<u8>,
    /// When it saw EOF, a reset or a failed write, from the start of the trickle.
    closed_after: Option<Duration>,
}

/// A running driver thread.
struct Trickle {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Outcome>>,
    started: Instant,
}

impl Trickle {
    /// Connects `n` sockets to `addr`, then drips on all of them until stopped, until every one is closed,
    /// or for at most `max_run`.
    fn start(addr: SocketAddr, n: usize, max_run: Duration) -> Trickle {
        let streams: Vec<TcpStream> = (0..n)
            .map(|i| {
                let s = TcpStream::connect(addr)
                    .unwrap_or_else(|e| panic!("trickler {i} could not connect: {e}"));
                s.set_nodelay(true).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let started = Instant::now();
        let handle = thread::spawn(move || drip(streams, &flag, started, max_run));
        Trickle {
            stop,
            handle,
            started,
        }
    }

    /// Stops the driver (if still running) and returns every connection's outcome; sockets are closed.
    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("trickle driver panicked")
    }

    /// Waits for the driver to end by itself (every connection closed, or `max_run` passed).
    fn wait(self) -> Vec<Outcome> {
        self.handle.join().expect("trickle driver panicked")
    }

    fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }
}

/// The driver loop: one byte per open connection per round, reading first so a close is seen promptly.
fn drip(
    mut streams: Vec<TcpStream>,
    stop: &AtomicBool,
    started: Instant,
    max_run: Duration,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = streams.iter().map(|_| Outcome::default()).collect();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < max_run {
        let mut open = 0;
        for (stream, out) in streams.iter_mut().zip(outcomes.iter_mut()) {
            if out.closed_after.is_some() {
                continue;
            }
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        out.closed_after = Some(started.elapsed());
                        break;
                    }
                    Ok(n) => out.received.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        out.closed_after = Some(started.elapsed());
                        break;
                    }
                }
            }
            if out.closed_after.is_some() {
                continue;
            }
            let byte = HEAD.get(out.sent).copied().unwrap_or(b's');
            match stream.write(&[byte]) {
                Ok(1) => out.sent += 1,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    out.closed_after = Some(started.elapsed());
                    continue;
                }
            }
            open += 1;
        }
        if open == 0 {
            break;
        }
        thread::sleep(ROUND_PAUSE);
    }
    outcomes
}

/// `TRICKLERS`, or fewer when this process's open-file limit could not hold them with room to spare
/// (the server, a child, inherits the same limit).
fn trickler_count() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let n = TRICKLERS.min(soft.saturating_sub(256));
    if n < TRICKLERS {
        eprintln!("open-file limit {soft}: using {n} tricklers instead of {TRICKLERS}");
    }
    assert!(n >= 100, "open-file limit {soft} is too low for this test");
    n
}

/// Polls `/metrics` until `done(open)` holds; panics after `timeout` with the last value.
fn wait_for_connections(
    server: &Server,
    timeout: Duration,
    what: &str,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let open = server.open_connections();
        if done(open) {
            return open;
        }
        assert!(
            Instant::now() < deadline,
            "standin_connections_open is {open} after {timeout:?}; want {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// One chat request on a new connection; returns how long it took.
fn timed_chat(server: &Server, text: &str) -> Duration {
    let start = Instant::now();
    let resp = server.send(&chat(&chat_body(text), &[]));
    let took = start.elapsed();
    assert_echo(&resp, text);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn trickling_heads_do_not_delay_a_normal_client() {
    let n = trickler_count();
    let server = Server::start(&[]);
    // Warm up, then the latency of the same request with nobody else around.
    timed_chat(&server, "warm-up");
    let quiet: Vec<Duration> = (0..5)
        .map(|i| timed_chat(&server, &format!("q{i}")))
        .collect();

    // Default header timeout (10 s): nobody is cut while we measure.
    let trickle = Trickle::start(server.addr, n, Duration::from_secs(60));
    // Every trickler is accepted and held by the server, not waiting in the backlog.
    wait_for_connections(&server, Duration::from_secs(10), "all tricklers", |open| {
        open > n as i64
    });
    // Let every connection get a few rounds of bytes in.
    thread::sleep(Duration::from_millis(300));

    let mut busy = Vec::new();
    for i in 0..5 {
        let took = timed_chat(&server, &format!("b{i}"));
        assert!(
            took < NORMAL_BOUND,
            "a normal request took {took:?} behind {n} slow clients"
        );
        busy.push(took);
        // And the metrics scrape, another normal request.
        let start = Instant::now();
        assert!(server.open_connections() > n as i64);
        let took = start.elapsed();
        assert!(took < NORMAL_BOUND, "a /metrics scrape took {took:?}");
        thread::sleep(Duration::from_millis(300));
    }
    assert!(
        trickle.is_running(),
        "the tricklers stopped early (all closed?)"
    );
    let dripped_for = trickle.started.elapsed();
    let outcomes = trickle.finish();

    let min_sent = outcomes.iter().map(|o| o.sent).min().unwrap();
    // Loose comparison with the quiet latency: the same order of magnitude plus a second of slack.
    let (quiet, busy) = (median(quiet), median(busy));
    eprintln!(
        "{n} tricklers for {dripped_for:?} ({min_sent}+ bytes each): chat median {quiet:?} alone, {busy:?} during the trickle"
    );
    assert!(
        busy < quiet * 10 + Duration::from_secs(1),
        "median {busy:?} during the trickle vs {quiet:?} alone"
    );

    // Nobody was answered or cut: the head timer (10 s) had not run out, and no head was complete.
    let cut: Vec<_> = outcomes
        .iter()
        .filter(|o| o.closed_after.is_some() || !o.received.is_empty())
        .collect();
    assert!(
        cut.is_empty(),
        "{} tricklers were answered or closed early: {:?}",
        cut.len(),
        cut.first()
    );
    assert!(min_sent >= 3, "a trickler sent only {min_sent} bytes");

    // Closing them on our side releases every connection.
    wait_for_connections(&server, Duration::from_secs(10), "1 (the scrape)", |open| {
        open == 1
    });
    server.assert_alive();
}

#[test]
fn trickling_heads_are_cut_at_the_header_timeout() {
    let n = trickler_count();
    let server = Server::start(&["--header-timeout-ms", "1000"]);
    let baseline = server.open_connections();
    assert_eq!(baseline, 1, "only the scrape is open before the trickle");

    // Stop at 10 s at the latest; every trickler should be gone long before.
    let trickle = Trickle::start(server.addr, n, Duration::from_secs(10));
    // While they drip, a normal client is served; its head arrives at once, well within the timeout.
    thread::sleep(Duration::from_millis(300));
    let took = timed_chat(&server, "meanwhile");
    assert!(
        took < NORMAL_BOUND,
        "a normal request took {took:?} behind {n} slow clients"
    );
    let outcomes = trickle.wait();

    let still_open = outcomes.iter().filter(|o| o.closed_after.is_none()).count();
    assert_eq!(
        still_open, 0,
        "{still_open} of {n} tricklers were still open 10 s into a 1 s header timeout"
    );
    // Cut after the timeout, not before (each one's timer starts at its first byte, in the first round).
    let earliest = outcomes
        .iter()
        .filter_map(|o| o.closed_after)
        .min()
        .unwrap();
    let latest = outcomes
        .iter()
        .filter_map(|o| o.closed_after)
        .max()
        .unwrap();
    assert!(
        earliest >= Duration::from_millis(900),
        "a trickler was closed after only {earliest:?}"
    );
    // The documented answer is a 408 with the envelope; a connection the server reset after writing it
    // may have lost it, but nothing else may arrive.
    let mut answered = 0;
    for o in &outcomes {
        if o.received.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(&o.received);
        assert!(
            text.starts_with("HTTP/1.1 408 ") && text.contains("\"code\":\"request_timeout\""),
            "a trickler got {text:?}"
        );
        answered += 1;
    }
    eprintln!(
        "{n} tricklers cut between {earliest:?} and {latest:?}; {answered} saw the 408 before the close"
    );
    assert!(
        answered * 10 >= n * 9,
        "only {answered} of {n} tricklers saw a 408 before their connection closed"
    );

    // The server let go of every one of them.
    wait_for_connections(
        &server,
        Duration::from_secs(10),
        &format!("the baseline {baseline}"),
        |open| open == baseline,
    );
    server.assert_alive();
}
