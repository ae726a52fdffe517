//! `--processes N`: one test run as N child processes of this binary, each with its own descriptor table
//! (a process holds at most `RLIMIT_NOFILE` connections, and where the hard limit cannot be raised that is
//! the ceiling of one harness), then merged into one report exactly as `standin-load merge` would.
//!
//! The load asked for is the total: `--concurrency`, `--max-concurrency`, `--requests` and a Poisson
//! `--rate` are split between the children (two Poisson streams at R/2 are one at R; constant and gamma
//! arrivals do not add up that way, so they are refused). Child `i` runs as instance `i` of N, so its seed
//! is `--seed + i` and the children send different work. Their progress lines are summed into one.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::{Options, INDEX_ENV};
use crate::{merge, raw};

/// Flags the parent rewrites or keeps for itself; each takes a value.
const NOT_PASSED_ON: &[&str] = &[
    "--processes",
    "--json",
    "--svg",
    "--concurrency",
    "--rate",
    "--max-concurrency",
    "--requests",
];

/// Flags without a value (every other flag takes one).
const SWITCHES: &[&str] = &["--stream", "--quiet", "-h", "--help"];

/// Checks what `--processes` can split; called by the flag parser.
pub fn check(o: &Options) -> Result<(), String> {
    let n = o.processes;
    if n == 0 {
        return Err("--processes must be positive".into());
    }
    if n == 1 {
        return Ok(());
    }
    if o.instances.is_some() {
        return Err("--processes runs its own instances; use it or --instances, not both".into());
    }
    if o.raw.is_some() {
        return Err("--raw with --processes: each process writes its own; use --instances".into());
    }
    if o.rate.is_some() && o.arrival != crate::workload::Arrival::Poisson {
        return Err(
            "--processes splits an open loop only for --arrival poisson (two Poisson streams at R/2 \
             make one at R; constant and gamma ones do not)"
                .into(),
        );
    }
    let too_few = |what: &str, v: Option<usize>| match v {
        Some(v) if v < n => Err(format!("{what} {v} cannot be split over {n} processes")),
        _ => Ok(()),
    };
    too_few("--concurrency", o.concurrency)?;
    too_few("--max-concurrency", o.max_concurrency)?;
    too_few("--requests", o.requests)
}

/// Process `i`'s share of `total` split `n` ways: the first `total % n` get one more.
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

/// The command line of child `i`: the parent's, without the flags it keeps or splits, plus this child's
/// share, instance index and raw file.
fn child_args(args: &[String], o: &Options, i: usize, raw: &Path) -> Vec<String> {
    let n = o.processes;
    let mut out = Vec::with_capacity(args.len() + 12);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if NOT_PASSED_ON.contains(&arg.as_str()) {
            it.next();
        } else if SWITCHES.contains(&arg.as_str()) {
            out.push(arg.clone());
        } else {
            out.push(arg.clone());
            out.extend(it.next().cloned());
        }
    }
    let mut add = |flag: &str, value: String| out.extend([flag.to_string(), value]);
    if let Some(c) = o.concurrency {
        add("--concurrency", share(c, n, i).to_string());
    }
    if let Some(rate) = o.rate {
        add("--rate", (rate / n as f64).to_string());
    }
    if let Some(m) = o.max_concurrency {
        add("--max-concurrency", share(m, n, i).to_string());
    }
    if let Some(r) = o.requests {
        add("--requests", share(r, n, i).to_string());
    }
    add("--instances", n.to_string());
    add("--instance-index", i.to_string());
    add("--raw", raw.display().to_string());
    out
}

/// One child's last progress line, as numbers: done, in flight, errors, abandoned.
type Progress = [u64; 4];

/// Every child's last progress line, and how many lines have come in (the parent prints after new ones).
#[derive(Default)]
struct Latest {
    lines: Vec<Progress>,
    seen: u64,
}

/// Reads `done=… in_flight=… req/s=… errors=… abandoned=…` (the progress line `main` prints).
fn parse_progress(line: &str) -> Option<Progress> {
    let field = |name: &str| -> Option<u64> {
        let rest = line.split_once(&format!(" {name}="))?.1;
        rest.split(' ').next()?.parse().ok()
    };
    Some([
        field("done")?,
        field("in_flight")?,
        field("errors")?,
        field("abandoned")?,
    ])
}

/// Runs the test as `o.processes` children of this binary and prints one merged report. `args` is the
/// command line as given (without the program name).
pub fn run(args: &[String], o: &Options) -> ExitCode {
    let n = o.processes;
    let dir = std::env::temp_dir().join(format!("standin-load-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("standin-load: {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    let code = run_in(args, o, &dir, n);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn run_in(args: &[String], o: &Options, dir: &Path, n: usize) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("standin-load: cannot find my own binary to start --processes: {e}");
            return ExitCode::from(1);
        }
    };
    let latest = Arc::new(Mutex::new(Latest {
        lines: vec![[0u64; 4]; n],
        seen: 0,
    }));
    let mut children: Vec<(Child, PathBuf)> = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        let raw = dir.join(format!("process-{i}.jsonl"));
        let spawned = Command::new(&exe)
            .args(child_args(args, o, i, &raw))
            .env_remove(INDEX_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("standin-load: cannot start process {i}: {e}");
                for (mut c, _) in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return ExitCode::from(1);
            }
        };
        let stderr = child.stderr.take().expect("stderr is piped");
        let latest = Arc::clone(&latest);
        // Progress lines are summed by the parent; anything else a child says is passed on, marked.
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match parse_progress(&line) {
                    Some(p) => {
                        let mut latest = latest.lock().unwrap();
                        latest.lines[i] = p;
                        latest.seen += 1;
                    }
                    None => eprintln!("[process {i}] {line}"),
                }
            }
        }));
        children.push((child, raw));
    }
    let codes = wait_all(&mut children, &latest, o.quiet);
    for reader in readers {
        let _ = reader.join();
    }
    if codes.contains(&Some(2)) {
        // A usage error the parent's own parse did not catch: the child said why.
        return ExitCode::from(2);
    }
    let mut files = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    for (i, (_, path)) in children.iter().enumerate() {
        match raw::read(path) {
            Ok(file) => files.push(file),
            Err(e) => {
                eprintln!(
                    "standin-load: process {i} (exit {:?}) left no report: {e}",
                    codes[i]
                );
                return ExitCode::from(1);
            }
        }
        names.push(format!("process {i}"));
    }
    let mut merged = match merge::merge(files, &names) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("standin-load: {e}");
            return ExitCode::from(1);
        }
    };
    // Uneven shares differ in load shape by design; the report names the whole run's shape instead.
    for warning in merged.warnings.iter().filter(|w| !w.contains("load shape")) {
        eprintln!("standin-load: warning: {warning}");
    }
    for info in &mut merged.infos {
        info.mode = format!("{}, {n} processes", o.mode());
    }
    merged.extra.remove("merged_files");
    merged.extra.insert("processes".into(), json!(n));
    let out = crate::Output {
        json: o.json.as_deref(),
        svg: o.svg.as_deref(),
        extra: &merged.extra,
    };
    crate::emit(&merged.records, &merged.infos, &out)
}

/// Waits for every child; meanwhile prints the summed progress line about once a second, after the
/// children's own lines (unless quiet). Returns each child's exit code (`None`: killed by a signal).
fn wait_all(
    children: &mut [(Child, PathBuf)],
    latest: &Mutex<Latest>,
    quiet: bool,
) -> Vec<Option<i32>> {
    let start = Instant::now();
    let mut codes: Vec<Option<Option<i32>>> = vec![None; children.len()];
    let (mut last_done, mut printed_seen) = (0, 0);
    let mut next_line = start + Duration::from_secs(1);
    let mut stderr = std::io::stderr();
    while codes.iter().any(Option::is_none) {
        for ((child, _), code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                if let Ok(Some(status)) = child.try_wait() {
                    *code = Some(status.code());
                }
            }
        }
        let (sum, seen) = {
            let latest = latest.lock().unwrap();
            let sum = latest.lines.iter().fold([0u64; 4], |mut s, p| {
                s.iter_mut().zip(p).for_each(|(a, b)| *a += b);
                s
            });
            (sum, latest.seen)
        };
        // After a second, once some child has said more: the line then sums fresh counts.
        if !quiet && Instant::now() >= next_line && seen > printed_seen {
            let done = sum[0];
            let line = crate::progress_line(start.elapsed(), sum, done.saturating_sub(last_done));
            let running = codes.iter().filter(|c| c.is_none()).count();
            let _ = writeln!(stderr, "{line} processes={running}");
            last_done = done;
            printed_seen = seen;
            next_line = Instant::now() + Duration::from_millis(900);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    codes.into_iter().map(Option::flatten).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        crate::cli::parse(args.iter().map(|s| s.to_string()))
            .unwrap()
            .unwrap()
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, n) in [(20_000, 2), (7, 3), (3, 3), (64, 5)] {
            let shares: Vec<usize> = (0..n).map(|i| share(total, n, i)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn a_child_gets_its_share_and_instance_and_keeps_the_rest() {
        let args = strings(&[
            "--url",
            "http://127.0.0.1:9",
            "--stream",
            "--concurrency",
            "7",
            "--processes",
            "3",
            "--json",
            "out.json",
            "--prompt",
            "--json",
            "--seed",
            "5",
        ]);
        let o = opts(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.processes, 3);
        let child = child_args(&args, &o, 1, Path::new("/tmp/x/process-1.jsonl"));
        assert_eq!(
            child,
            strings(&[
                "--url",
                "http://127.0.0.1:9",
                "--stream",
                "--prompt",
                "--json",
                "--seed",
                "5",
                "--concurrency",
                "2",
                "--instances",
                "3",
                "--instance-index",
                "1",
                "--raw",
                "/tmp/x/process-1.jsonl",
            ]),
            "a flag's value that looks like a flag stays a value; --json and --processes stay with the parent"
        );
        // The child's own parse sees instance 1 of 3: seed 5 + 1.
        let c = opts(&child.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!((c.seed, c.instance, c.processes), (6, 1, 1));
        assert_eq!(c.concurrency, Some(2));
    }

    #[test]
    fn an_open_loop_splits_rate_requests_and_cap() {
        let args = strings(&[
            "--rate",
            "1000",
            "--requests",
            "10",
            "--max-concurrency",
            "9",
            "--processes",
            "2",
        ]);
        let o = opts(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let child = child_args(&args, &o, 0, Path::new("r"));
        let c = opts(&child.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            (c.rate, c.requests, c.max_concurrency, c.concurrency),
            (Some(500.0), Some(5), Some(5), None)
        );
    }

    #[test]
    fn what_cannot_be_split_is_refused() {
        let parse = |args: &[&str]| crate::cli::parse(args.iter().map(|s| s.to_string()));
        assert!(parse(&["--processes", "0"]).is_err());
        assert!(parse(&["--processes", "3", "--concurrency", "2"]).is_err());
        assert!(parse(&["--processes", "2", "--rate", "5", "--arrival", "constant"]).is_err());
        assert!(parse(&["--processes", "2", "--raw", "x"]).is_err());
        assert!(parse(&[
            "--processes",
            "2",
            "--instances",
            "2",
            "--instance-index",
            "0"
        ])
        .is_err());
        assert!(parse(&["--processes", "2", "--rate", "5"]).is_ok());
        assert!(parse(&["--processes", "1", "--raw", "x"]).is_ok());
    }

    #[test]
    fn progress_lines_are_read_back() {
        let line = crate::progress_line(Duration::from_secs(6), [1_160_277, 12, 3, 4], 218_617);
        assert_eq!(parse_progress(&line), Some([1_160_277, 12, 3, 4]));
        assert_eq!(parse_progress("standin-load: no request succeeded"), None);
    }
}
