//! Drives the load: closed loop (N virtual users, each on its own kept-alive connection) or open loop (a
//! dispatcher that releases each request at its scheduled time, on pooled connections, optionally capped).
//! With a second target, the same indices (so the same bodies and schedule) go to both, interleaved.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use may::sync::{Mutex, Semphore};

use crate::chunk;
use crate::cli::Options;
use crate::client::{self, Connection, Target};
use crate::clock::Clock;
use crate::record::{Failure, Record};
use crate::workload::{self, Prompts, Rng};

/// What a run produced.
pub struct Outcome {
    /// Every request, warm-up included (flagged).
    pub records: Vec<Record>,
    /// From the end of warm-up to the end of the last request.
    pub measured: Duration,
    /// Most requests in flight at once, from the records' `[began, end]` intervals.
    pub peak_in_flight: usize,
    /// Wall-clock time of the run's origin (offset 0 of every record), nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Requests taken up (each becomes exactly one record).
    pub sent: usize,
    /// Connections opened.
    pub connections: usize,
    /// Every late wake-up of the core probes, warm-up included (`stalls.rs`).
    pub stalls: Vec<crate::stalls::Stall>,
}

/// One server under test.
struct Server {
    target: Target,
    path: String,
    pool: Mutex<Vec<Connection>>,
    /// Whole requests built once when they do not depend on the index (fixed prompt, JSONL bodies).
    prebuilt: Vec<Vec<u8>>,
    /// The answer shapes its connections learn and share.
    shapes: Arc<chunk::Shapes>,
}

/// Live counters shared with the progress line.
#[derive(Default)]
pub struct Counters {
    /// Requests finished (all targets, warm-up included).
    pub done: AtomicUsize,
    /// Requests in flight now.
    pub in_flight: AtomicUsize,
    /// Requests that failed.
    pub errors: AtomicUsize,
    /// Requests the client abandoned on purpose (`--disconnect`).
    pub abandoned: AtomicUsize,
    /// Requests taken up.
    pub sent: AtomicUsize,
    /// Connections opened.
    pub connections: AtomicUsize,
    /// Set when the run is over.
    pub finished: AtomicBool,
}

struct Run {
    opts: Options,
    servers: Vec<Server>,
    counters: Arc<Counters>,
    records: Mutex<Vec<Record>>,
    clock: Clock,
    warmup_end: Duration,
    next_source: AtomicUsize,
    /// Connection attempts in progress are capped: 10,000 users connecting at once overflow the server's
    /// SYN backlog, and the kernel's 1 s and 3 s SYN retries would then pass for server latency.
    connecting: Semphore,
}

/// Most connection attempts in flight at once.
const MAX_CONNECTING: usize = 256;

/// Runs the load described by `opts`; `counters` feed the progress line.
pub fn run(opts: &Options, counters: Arc<Counters>) -> Result<Outcome, String> {
    let mut servers = Vec::new();
    for url in std::iter::once(&opts.url).chain(opts.compare.as_ref()) {
        let (addr, host, prefix) = crate::cli::split_url(url)?;
        let endpoint = if opts.body.chat {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let mut server = Server {
            target: Target { addr, host },
            path: format!("{prefix}{endpoint}"),
            pool: Mutex::new(Vec::new()),
            prebuilt: Vec::new(),
            shapes: Arc::default(),
        };
        server.prebuilt = match &opts.prompts {
            Prompts::Fixed(_) => vec![build_request(opts, &server, 0)],
            Prompts::Bodies(bodies) => (0..bodies.len())
                .map(|i| build_request(opts, &server, i))
                .collect(),
            Prompts::Words { .. } => Vec::new(),
        };
        servers.push(server);
    }
    let (clock, wall) = (Clock::start(), std::time::SystemTime::now());
    let start_unix_ns = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let probe = crate::stalls::Probe::start(clock, opts.stall_threshold);
    let run = Arc::new(Run {
        opts: opts.clone(),
        servers,
        counters,
        records: Mutex::new(Vec::new()),
        clock,
        warmup_end: opts.warmup,
        next_source: AtomicUsize::new(0),
        connecting: Semphore::new(MAX_CONNECTING),
    });
    if opts.rate.is_some() {
        open_loop(&run);
    } else {
        closed_loop(&run);
    }
    run.counters.finished.store(true, Ordering::Release);
    let stalls = probe.finish();
    let records = std::mem::take(&mut *run.records.lock().map_err(|_| "record lock poisoned")?);
    let last_end = records
        .iter()
        .filter(|r| !r.warmup)
        .map(|r| r.end)
        .max()
        .unwrap_or(run.warmup_end);
    Ok(Outcome {
        measured: last_end.saturating_sub(run.warmup_end),
        peak_in_flight: crate::stats::peak_in_flight(&records),
        start_unix_ns,
        sent: run.counters.sent.load(Ordering::Relaxed),
        connections: run.counters.connections.load(Ordering::Relaxed),
        stalls,
        records,
    })
}

impl Run {
    fn request_bytes<'s>(&self, server: &'s Server, index: usize) -> std::borrow::Cow<'s, [u8]> {
        if !server.prebuilt.is_empty() {
            return std::borrow::Cow::Borrowed(&server.prebuilt[index % server.prebuilt.len()]);
        }
        std::borrow::Cow::Owned(build_request(&self.opts, server, index))
    }

    fn connect(&self, server: &Server) -> std::io::Result<Connection> {
        self.connecting.wait();
        let conn = client::connect(
            server.target.addr,
            self.source(),
            self.opts.timeout,
            &server.shapes,
        );
        self.connecting.post();
        if conn.is_ok() {
            self.counters.connections.fetch_add(1, Ordering::Relaxed);
        }
        conn
    }

    fn source(&self) -> Option<IpAddr> {
        let n = self.opts.sources as usize;
        (n > 0).then(|| {
            let k = self.next_source.fetch_add(1, Ordering::Relaxed) % n;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8))
        })
    }

    /// One request on `conn` (opened if needed), intended at `intended` and taken up at `now`; returns the
    /// connection if it can be reused.
    fn one(
        &self,
        target: u8,
        index: usize,
        intended: Duration,
        now: Duration,
        conn: Option<Connection>,
    ) -> Option<Connection> {
        let server = &self.servers[target as usize];
        let request = self.request_bytes(server, index);
        let abandon = workload::abandon_point(self.opts.seed, index, self.opts.disconnect);
        let mut rec = Record {
            target,
            warmup: intended < self.warmup_end,
            began: now,
            intended,
            sent: now,
            ..Record::default()
        };
        let c = &self.counters;
        c.sent.fetch_add(1, Ordering::Relaxed);
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut conn = match conn {
            Some(conn) => Some(conn),
            None => match self.connect(server) {
                Ok(conn) => Some(conn),
                Err(_) => {
                    rec.failure = Some(Failure::Connect);
                    rec.end = self.clock.elapsed();
                    None
                }
            },
        };
        let mut keep = false;
        if let Some(c) = conn.as_mut() {
            let reused = c.is_reused();
            let timeout = self.opts.timeout;
            keep = client::exchange(c, &request, self.clock, timeout, abandon, &mut rec);
            // A kept-alive connection the server closed while idle fails before any byte comes back (uvicorn
            // closes after 5 s): that is not the request's fault, so it is sent once more on a new connection.
            if reused && rec.failure == Some(Failure::Io) && rec.bytes == 0 {
                conn = self.connect(server).ok();
                rec.failure = Some(Failure::Connect);
                if let Some(c) = conn.as_mut() {
                    rec.failure = None;
                    keep = client::exchange(c, &request, self.clock, timeout, abandon, &mut rec);
                }
            }
        }
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.done.fetch_add(1, Ordering::Relaxed);
        if rec.failure.is_some() {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        if rec.abandoned {
            c.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut records) = self.records.lock() {
            records.push(rec);
        }
        conn.filter(|_| keep)
    }

    fn measuring_over(&self, measured_started: usize, now: Duration) -> bool {
        match (self.opts.requests, self.opts.duration) {
            (Some(n), _) => measured_started >= n,
            (None, Some(d)) => now >= self.warmup_end + d,
            (None, None) => true,
        }
    }
}

/// Request `index` for `server`. Each index has its own generator, so a body does not depend on which
/// coroutine got there first, and both servers of a comparison get the same bodies.
fn build_request(opts: &Options, server: &Server, index: usize) -> Vec<u8> {
    let mut rng = Rng::new(opts.seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let body = workload::body(&opts.body, &opts.prompts, index, &mut rng);
    workload::http_request(
        &server.path,
        &server.target.host,
        opts.api_key.as_deref(),
        &body,
    )
}

fn closed_loop(run: &Arc<Run>) {
    let users = run.opts.concurrency.unwrap_or(1);
    let mut handles = Vec::new();
    for target in 0..run.servers.len() as u8 {
        let next = Arc::new(AtomicUsize::new(0));
        let measured = Arc::new(AtomicUsize::new(0));
        for _ in 0..users {
            let (run, next, measured) = (Arc::clone(run), Arc::clone(&next), Arc::clone(&measured));
            handles.push(spawn(move || {
                let mut conn = None;
                loop {
                    let now = run.clock.elapsed();
                    let warm = now < run.warmup_end;
                    if !warm {
                        let started = measured.fetch_add(1, Ordering::Relaxed);
                        if run.measuring_over(started, now) {
                            break;
                        }
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    // Taken up the moment it is intended: one clock reading serves both.
                    conn = run.one(target, index, now, now, conn.take());
                }
            }));
        }
    }
    for h in handles {
        let _ = h.join();
    }
}

fn open_loop(run: &Arc<Run>) {
    let o = &run.opts;
    let rate = o.rate.unwrap_or(1.0);
    let count = match (o.requests, o.duration) {
        (Some(n), _) => n + (rate * o.warmup.as_secs_f64()).ceil() as usize,
        (None, Some(d)) => (rate * (o.warmup + d).as_secs_f64()).ceil() as usize,
        (None, None) => 0,
    };
    let times = workload::schedule(rate, o.arrival, count, &mut Rng::new(o.seed));
    let cap = o.max_concurrency.map(|n| Arc::new(Semphore::new(n)));
    let mut handles = Vec::with_capacity(count * run.servers.len());
    for (index, &at) in times.iter().enumerate() {
        let wait = at.saturating_sub(run.clock.elapsed());
        if !wait.is_zero() {
            may::coroutine::sleep(wait);
        }
        for target in 0..run.servers.len() as u8 {
            if let Some(cap) = &cap {
                // Waiting here delays the send but not `intended`: the lag shows in the corrected figures.
                cap.wait();
            }
            let (run, cap) = (Arc::clone(run), cap.clone());
            handles.push(spawn(move || {
                let server = &run.servers[target as usize];
                let conn = server.pool.lock().ok().and_then(|mut p| p.pop());
                let began = run.clock.elapsed();
                if let Some(conn) = run.one(target, index, at, began, conn) {
                    if let Ok(mut pool) = server.pool.lock() {
                        pool.push(conn);
                    }
                }
                if let Some(cap) = cap {
                    cap.post();
                }
            }));
        }
    }
    for h in handles {
        let _ = h.join();
    }
}

#[allow(unsafe_code)]
fn spawn<F: FnOnce() + Send + 'static>(f: F) -> may::coroutine::JoinHandle<()> {
    // SAFETY: harness coroutines use no thread-locals across yields and block only through may's own
    // net, sync and sleep.
    unsafe { may::coroutine::spawn(f) }
}
