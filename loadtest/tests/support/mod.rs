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
    run_raw_env(args, &[])
}

/// [`run_raw`] with environment variables set for the child (`JOB_COMPLETION_INDEX` is always cleared
/// first, so a test run inside a Kubernetes Indexed Job is not confused by the real one).
pub fn run_raw_env(args: &[&str], env: &[(&str, &str)]) -> Exit {
    finish(spawn(args, env), args)
}

/// [`run_raw`], with the whole process stopped (`SIGSTOP`, as when its cores are taken from it) from
/// `after` into the run for `pause`.
pub fn run_paused(args: &[&str], after: Duration, pause: Duration) -> Exit {
    let child = spawn(args, &[]);
    let pid = child.id().to_string();
    thread::sleep(after);
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    };
    signal("-STOP");
    thread::sleep(pause);
    signal("-CONT");
    finish(child, args)
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(LOAD_BIN);
    cmd.env_remove("JOB_COMPLETION_INDEX");
    cmd.envs(env.iter().copied());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn standin-load")
}

/// Collects a spawned harness's output and exit, killing it after [`RUN_TIMEOUT`].
fn finish(mut child: Child, args: &[&str]) -> Exit {
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
    load_env(args, &[])
}

/// [`load`] with environment variables set for the harness.
pub fn load_env(args: &[&str], env: &[(&str, &str)]) -> Load {
    let scratch = Scratch::new();
    let json = scratch.path("report.json");
    let mut full = vec!["--quiet", "--workers", WORKERS, "--json", path_str(&json)];
    full.extend_from_slice(args);
    let exit = run_raw_env(&full, env);
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

/// `np.percentile(sorted, p)` (method "linear"), written out again here from numpy's source rather than
/// borrowed from the harness, so the merge test checks the harness against an independent copy.
pub fn numpy_percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    assert!(n > 0, "percentile of nothing");
    let index = (n - 1) as f64 * (p / 100.0);
    let below = index.floor();
    let t = index - below;
    let (a, b) = (
        sorted[below as usize],
        sorted[(below as usize + 1).min(n - 1)],
    );
    // numpy's `_lerp`: a + (b - a) t, or from b's side when t >= 0.5.
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// A `--raw` file: its header, its record lines, its trailer, each as parsed JSON.
pub struct RawLines {
    /// The first line.
    pub header: Value,
    /// Every record line.
    pub records: Vec<Value>,
    /// The last line.
    pub trailer: Value,
}

/// Reads a `--raw` file line by line with plain JSON parsing (not the harness's reader).
pub fn read_raw(path: &Path) -> RawLines {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(lines.len() >= 2, "header and trailer at least");
    let trailer = lines.pop().expect("trailer");
    let header = lines.remove(0);
    assert_eq!(header["format"], "standin-load-raw", "{header}");
    assert_eq!(trailer["trailer"], true, "{trailer}");
    assert_eq!(trailer["records"].as_u64(), Some(lines.len() as u64));
    RawLines {
        header,
        records: lines,
        trailer,
    }
}

/// E2EL in milliseconds of every raw record that counts in latencies (target 0, not warm-up, not failed,
/// not abandoned), recomputed from the documented keys: the last token (`l`, else the end `e`) after `s`.
pub fn raw_e2el_ms(records: &[Value]) -> Vec<f64> {
    records
        .iter()
        .filter(|r| r.get("t").is_none() && r.get("w").is_none())
        .filter(|r| r.get("f").is_none() && r.get("a").is_none())
        .map(|r| {
            let ns = r.get("l").unwrap_or(&r["e"]).as_i64().expect("ns");
            ns as f64 / 1e6
        })
        .collect()
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
        Standin::start_with(&[])
    }

    /// [`Standin::start`] with more flags, e.g. `--itl-ms 20`.
    pub fn start_with(extra: &[&str]) -> Standin {
        let bin = standin_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--quiet", "--workers", WORKERS]);
        cmd.args(extra);
        // The server reads STANDIN_* settings from the environment; the tests want its defaults.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STANDIN_") {
                cmd.env_remove(key);
            }
        }
        Standin::spawn(cmd, "standin")
    }

    /// `standin-stream-floor --listen 127.0.0.1:0` with more flags (e.g. `--itl-ms 5`): the floor for paced
    /// streams, which prints the same kind of listening line.
    pub fn stream_floor(extra: &[&str]) -> Standin {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_standin-stream-floor"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(extra);
        Standin::spawn(cmd, "standin-stream-floor")
    }

    /// Spawns `cmd` and waits for `NAME listening on http://ADDR`.
    fn spawn(mut cmd: Command, name: &str) -> Standin {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
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
            .strip_prefix(&format!("{name} listening on http://"))
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Standin { child, addr },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} printed no listening line within {START_TIMEOUT:?}: {line:?}");
            }
        }
    }

    /// `http://ADDR`, for `--url` and `--compare`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /metrics`, as `series → value` (`name{labels}` exactly as written); panics on any error.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(self.addr).expect("connect for /metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).expect("send /metrics");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(series, value)| Some((series.to_string(), value.parse().ok()?)))
            .collect()
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
