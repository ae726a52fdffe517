//! standin-load: a load-test harness for any OpenAI-compatible server. Closed or open loop, streaming or
//! not, TTFT/ITL/TPOT/E2EL from exact samples, coordinated-omission corrected figures in open loop, and an
//! interleaved A/B comparison of two servers on the same seeded work. Several instances (`--instances`,
//! `--raw`) can share one test and `standin-load merge` their raw files into one exact report.
//!
//! # Layout
//! `cli` (flags) → `workload` (schedule, bodies, disconnects) → `runner` (coroutines) → `client` + `sse`
//! (wire) → `record` (per-request timings) → `stats` + `report` (figures, table, JSON, SVG); `raw` (the
//! `--raw` file) and `merge` (several runs as one); `processes` (`--processes`: one run as several child
//! processes, merged).
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod chunk;
mod cli;
mod client;
mod clock;
mod heads;
mod merge;
mod processes;
mod raw;
mod readbuf;
mod record;
mod report;
mod runner;
mod sse;
mod stalls;
mod stats;
mod svg;
mod watchdog;
mod workload;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Coroutine stack for the harness: responses are parsed into small borrowed views, 64 KiB is plenty.
const STACK_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("merge") {
        return merge::main(args.into_iter().skip(1));
    }
    let opts = match cli::parse(args.iter().cloned()) {
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
    if opts.processes > 1 {
        return processes::run(&args, &opts);
    }
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
    let mode = opts.mode();
    if let Some(path) = &opts.raw {
        let header = raw_header(&opts, &outcome, &mode);
        let trailer = raw::Trailer {
            trailer: true,
            records: outcome.records.len() as u64,
            sent: outcome.sent as u64,
            connections: outcome.connections as u64,
            peak_in_flight: outcome.peak_in_flight as u64,
            measured_ns: outcome.measured.as_nanos() as u64,
            stall_threshold_ns: opts.stall_threshold.as_nanos() as u64,
            stalls: outcome.stalls.iter().map(raw::stall_entry).collect(),
        };
        if let Err(e) = raw::write(Path::new(path), &header, &outcome.records, &trailer) {
            eprintln!("standin-load: --raw {path}: {e}");
            return ExitCode::from(1);
        }
    }
    let stalls = stalls::summarize(
        &outcome.stalls,
        opts.warmup,
        opts.warmup + outcome.measured,
        opts.stall_threshold,
    );
    let infos: Vec<report::RunInfo> = std::iter::once(&opts.url)
        .chain(opts.compare.as_ref())
        .map(|url| report::RunInfo {
            label: url.to_string(),
            mode: mode.clone(),
            duration: outcome.measured,
            peak_in_flight: outcome.peak_in_flight,
            stream: opts.body.stream,
            open_loop: opts.rate.is_some(),
            stalls,
        })
        .collect();
    let out = Output {
        json: opts.json.as_deref(),
        svg: opts.svg.as_deref(),
        extra: &Map::new(),
    };
    emit(&outcome.records, &infos, &out)
}

/// The `--raw` header of this run.
fn raw_header(opts: &cli::Options, outcome: &runner::Outcome, mode: &str) -> raw::Header {
    raw::Header {
        format: raw::FORMAT.into(),
        version: raw::VERSION,
        harness: format!("standin-load {}", env!("CARGO_PKG_VERSION")),
        start_unix_ns: outcome.start_unix_ns,
        url: opts.url.clone(),
        compare: opts.compare.clone(),
        endpoint: if opts.body.chat {
            "chat"
        } else {
            "completions"
        }
        .into(),
        stream: opts.body.stream,
        model: opts.body.model.clone(),
        max_tokens: opts.body.max_tokens,
        open_loop: opts.rate.is_some(),
        mode: mode.to_string(),
        concurrency: opts.concurrency,
        rate: opts.rate,
        arrival: format!("{:?}", opts.arrival).to_lowercase(),
        max_concurrency: opts.max_concurrency,
        duration_s: opts.duration.map(|d| d.as_secs_f64()),
        requests: opts.requests,
        warmup_ns: opts.warmup.as_nanos() as u64,
        seed: opts.base_seed,
        effective_seed: opts.seed,
        instance: opts.instance,
        instances: opts.instances,
        disconnect: opts.disconnect,
        timeout_s: opts.timeout.as_secs_f64(),
    }
}

/// Where a report goes besides stdout.
pub(crate) struct Output<'a> {
    /// `--json` path.
    pub json: Option<&'a str>,
    /// `--svg` path.
    pub svg: Option<&'a str>,
    /// Fields added at the top of the JSON document.
    pub extra: &'a Map<String, Value>,
}

/// Computes one result per `infos` entry (target 0, then 1 with `--compare`) from `records`, prints the
/// table (or the A/B comparison), writes the JSON and SVG asked for. Exit 1 when nothing succeeded or a
/// file could not be written. Shared by a run and by `merge`, so both report alike.
pub(crate) fn emit(
    records: &[record::Record],
    infos: &[report::RunInfo],
    out: &Output,
) -> ExitCode {
    let results: Vec<report::Results> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| report::compute(records, i as u8, info))
        .collect();
    let mut text = String::new();
    match results.as_slice() {
        [a, b] => report::write_compare(&mut text, a, b),
        [a] => report::write_table(&mut text, a),
        _ => {}
    }
    print!("{text}");
    if let Some(path) = out.json {
        let mut json = match results.as_slice() {
            [a, b] => report::compare_json(a, b),
            [a, ..] => report::to_json(a),
            [] => Value::Null,
        };
        if let Value::Object(doc) = &mut json {
            doc.extend(out.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("standin-load: --json {path}: {e}");
            return ExitCode::from(1);
        }
    }
    if let Some(path) = out.svg {
        if let Some(first) = results.first() {
            if let Err(e) = std::fs::write(path, svg::write_svg(records, first, 0)) {
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
            let counts = [
                done,
                c.in_flight.load(Ordering::Relaxed),
                c.errors.load(Ordering::Relaxed),
                c.abandoned.load(Ordering::Relaxed),
            ]
            .map(|n| n as u64);
            let line = progress_line(start.elapsed(), counts, (done - last_done) as u64);
            let _ = writeln!(stderr, "{line}");
            last_done = done;
        }
    })
}

/// The progress line: elapsed time, then `counts` (done, in flight, errors, abandoned) and the requests
/// done in the last second. `processes` reads these lines back from its children.
pub(crate) fn progress_line(elapsed: Duration, counts: [u64; 4], per_second: u64) -> String {
    let [done, in_flight, errors, abandoned] = counts;
    format!(
        "[{:>5.1}s] done={done} in_flight={in_flight} req/s={per_second} errors={errors} abandoned={abandoned}",
        elapsed.as_secs_f64()
    )
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
