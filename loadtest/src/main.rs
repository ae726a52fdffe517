//! standin-load: a load-test harness for any OpenAI-compatible server. Closed or open loop, streaming or
//! not, TTFT/ITL/TPOT/E2EL from exact samples, coordinated-omission corrected figures in open loop, and an
//! interleaved A/B comparison of two servers on the same seeded work.
//!
//! # Layout
//! `cli` (flags) → `workload` (schedule, bodies) → `runner` (coroutines) → `client` + `sse` (wire) →
//! `record` (per-request timings) → `stats` + `report` (figures, table, JSON, SVG).
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;
mod client;
mod record;
mod report;
mod runner;
mod sse;
mod stats;
mod svg;
mod workload;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Coroutine stack for the harness: responses are parsed into small borrowed views, 64 KiB is plenty.
const STACK_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("standin-load: {e}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit();
    // may counts stack sizes in machine words.
    may::config()
        .set_workers(opts.workers)
        .set_stack_size(STACK_SIZE / std::mem::size_of::<usize>());
    let counters = Arc::new(runner::Counters::default());
    let progress = (!opts.quiet).then(|| start_progress(Arc::clone(&counters)));
    let outcome = match runner::run(&opts, Arc::clone(&counters)) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("standin-load: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = progress {
        let _ = p.join();
    }
    let mode = match opts.rate {
        Some(rate) => format!("open rate={rate} {:?}", opts.arrival).to_lowercase(),
        None => format!("closed c={}", opts.concurrency.unwrap_or(1)),
    };
    let urls: Vec<&String> = std::iter::once(&opts.url)
        .chain(opts.compare.as_ref())
        .collect();
    let results: Vec<report::Results> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let info = report::RunInfo {
                label: url.to_string(),
                mode: mode.clone(),
                duration: outcome.measured,
                peak_in_flight: outcome.peak_in_flight,
                stream: opts.body.stream,
                open_loop: opts.rate.is_some(),
            };
            report::compute(&outcome.records, i as u8, &info)
        })
        .collect();
    let mut text = String::new();
    match results.as_slice() {
        [a, b] => report::write_compare(&mut text, a, b),
        [a] => report::write_table(&mut text, a),
        _ => {}
    }
    print!("{text}");
    if let Some(path) = &opts.json {
        let json = match results.as_slice() {
            [a, b] => report::compare_json(a, b),
            [a, ..] => report::to_json(a),
            [] => serde_json::Value::Null,
        };
        if let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("standin-load: --json {path}: {e}");
            return ExitCode::from(1);
        }
    }
    if let Some(path) = &opts.svg {
        if let Some(first) = results.first() {
            if let Err(e) = std::fs::write(path, svg::write_svg(&outcome.records, first, 0)) {
                eprintln!("standin-load: --svg {path}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let measured_ok: usize = results.iter().map(|r| r.completed).sum();
    if measured_ok == 0 {
        eprintln!("standin-load: no request succeeded");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// One line a second on stderr: elapsed, done, in flight, req/s over the last second, errors.
fn start_progress(c: Arc<runner::Counters>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last_done = 0;
        let mut stderr = std::io::stderr();
        while !c.finished.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_secs(1));
            let done = c.done.load(Ordering::Relaxed);
            let _ = writeln!(
                stderr,
                "[{:>5.1}s] done={done} in_flight={} req/s={} errors={}",
                start.elapsed().as_secs_f64(),
                c.in_flight.load(Ordering::Relaxed),
                done - last_done,
                c.errors.load(Ordering::Relaxed),
            );
            last_done = done;
        }
    })
}

/// Lifts the open-file limit as far as allowed: 20,000 streams need 20,000 descriptors.
#[allow(unsafe_code)]
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let want = 1_048_576.max(limit.rlim_max);
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // Root may raise the hard limit; everyone else settles for the soft limit at the hard one.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
