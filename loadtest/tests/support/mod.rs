//! Test support for `standin-load`: runs the real binary with `--quiet --json FILE` in a scratch
//! directory, parses the report and checks the invariants every report must keep; starts the real
//! `standin` server on port 0 and kills it on `Drop`. The scripted fake server lives in `fake`.

pub mod fake;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The harness under test, built by cargo for this test target.
const LOAD_BIN: &str = env!("CARGO_BIN_EXE_standin-load");

/// Longest a single harness run may take before the test kills it: every run here is meant to take
/// a second or two, so this only turns a hang into a readable failure.
const RUN_TIMEOUT: Duration = Duration::from_secs(40);

/// How long `standin` may take to print its listening line (a debug build on a shared machine).
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Harness threads per run: the tests run side by side on a small machine, and two are plenty here.
const WORKERS: &str = "2";

/// A directory of its own for one test, removed on `Drop`.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory under cargo's per-target temp dir.
    pub fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("standin-load-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a process ended and what it printed.
#[derive(Debug)]
pub struct Exit {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// A harness run that wrote a JSON report.
#[derive(Debug)]
pub struct Load {
    /// How the process ended.
    pub exit: Exit,
    /// The parsed `--json` report.
    pub report: Value,
}

/// Runs `standin-load ARGS` to completion (killing it after [`RUN_TIMEOUT`]), with no flags added.
pub fn run_raw(args: &[&str]) -> Exit {
    let mut child = Command::new(LOAD_BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn standin-load");
    let stdout = drain(child.stdout.take().expect("stdout piped"));
    let stderr = drain(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for standin-load") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "standin-load {args:?} still running after {RUN_TIMEOUT:?}; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Exit {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `standin-load --quiet --workers 2 --json FILE ARGS`, parses the report and checks
/// [`check_report`]. `ARGS` come last, so they may override the defaults.
pub fn load(args: &[&str]) -> Load {
    let scratch = Scratch::new();
    let json = scratch.path("report.json");
    let mut full = vec!["--quiet", "--workers", WORKERS, "--json", path_str(&json)];
    full.extend_from_slice(args);
    let exit = run_raw(&full);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON report from {args:?} ({e}): {exit:?}"));
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{text}"));
    match report.get("a") {
        Some(a) => {
            check_report(a);
            check_report(&report["b"]);
        }
        None => check_report(&report),
    }
    Load { exit, report }
}

/// Runs [`load`] against `url` with `flags` split on whitespace (for flags without paths in them).
pub fn load_at(url: &str, flags: &str) -> Load {
    let mut args = vec!["--url", url];
    args.extend(flags.split_whitespace());
    load(&args)
}

/// Asserts a run where all `n` measured requests succeeded: exit 0, `n` completed, no errors.
pub fn assert_clean(run: &Load, n: u64) {
    let r = &run.report;
    assert_eq!(run.exit.code, Some(0), "{:?}", run.exit);
    assert!(errors(r).is_empty(), "{r:#}");
    assert_eq!((count(r, "completed"), count(r, "failed")), (n, 0), "{r:#}");
}

/// A path as `&str` for an argument list (the scratch dir is cargo's, so it is UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// What every single-target report must satisfy, whatever the run: numbers are finite, `failed` is the
/// sum of `errors`, and only completed requests enter latencies (one E2EL sample each, at most one TTFT).
pub fn check_report(doc: &Value) {
    let fields = doc.as_object().expect("report is an object");
    for (key, value) in fields {
        assert!(value.as_f64().is_none_or(f64::is_finite), "{key} = {value}");
    }
    let errors: u64 = errors(doc).values().sum();
    assert_eq!(count(doc, "failed"), errors, "failed vs errors in {doc:#}");
    let completed = count(doc, "completed");
    assert_eq!(
        count(doc, "e2el_samples"),
        completed,
        "one E2EL sample per completed request, none from failures: {doc:#}"
    );
    assert!(count(doc, "ttft_samples") <= completed, "{doc:#}");
}

/// The report's `errors` object as a map.
pub fn errors(doc: &Value) -> BTreeMap<String, u64> {
    doc["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors object in {doc:#}"))
        .iter()
        .map(|(kind, n)| (kind.clone(), n.as_u64().expect("error count")))
        .collect()
}

/// An integer field of a report.
pub fn count(doc: &Value, key: &str) -> u64 {
    doc[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {doc:#}"))
}

/// A numeric field of a report.
pub fn number(doc: &Value, key: &str) -> f64 {
    doc[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {doc:#}"))
}

/// Reads a pipe to its end on a thread of its own, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A running `standin` server; killed on `Drop`.
pub struct Standin {
    child: Child,
    /// The address from its listening line.
    pub addr: SocketAddr,
}

impl Standin {
    /// Starts `standin --listen 127.0.0.1:0 --quiet` and waits for `standin listening on http://ADDR`.
    pub fn start() -> Standin {
        let bin = standin_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--quiet", "--workers", WORKERS]);
        // The server reads STANDIN_* settings from the environment; the tests want its defaults.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STANDIN_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let addr = line
            .trim_end()
            .strip_prefix("standin listening on http://")
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Standin { child, addr },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("standin printed no listening line within {START_TIMEOUT:?}: {line:?}");
            }
        }
    }

    /// `http://ADDR`, for `--url` and `--compare`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `standin` sits next to `standin-load` in the workspace's target directory, but cargo builds only
/// this package's binaries for this test, so the workspace build must have made it.
fn standin_bin() -> PathBuf {
    let dir = Path::new(LOAD_BIN)
        .parent()
        .expect("binary has a directory");
    let bin = dir.join(format!("standin{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first (tests/run.sh does)",
        bin.display()
    );
    bin
}
