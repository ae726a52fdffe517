//! Test support: starts the real `standin` binary on an ephemeral port, reads the address from its
//! listening line, captures stdout/stderr, and kills it on `Drop`; also runs it to completion for
//! command-line tests. The raw HTTP client lives in `http`.

mod http;

pub use http::*;

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

/// Path of the binary under test, built by cargo for this test target.
const BIN: &str = env!("CARGO_BIN_EXE_standin");

/// How long the binary may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Shared text buffer filled by a reader thread.
type Captured = Arc<Mutex<String>>;

/// Builds the command line of a server under test.
pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    quiet: bool,
}

/// A running `standin` child process; killed on drop.
pub struct Server {
    child: Child,
    /// Set once a test has collected the exit it caused (a signal), so `Drop` does not call it a crash.
    exit_expected: bool,
    /// The address printed on the listening line.
    pub addr: SocketAddr,
    stderr: Captured,
}

impl ServerBuilder {
    /// Adds command-line arguments after `--listen 127.0.0.1:0`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets an environment variable for the child (all inherited `STANDIN_*` variables are removed).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs without `--quiet`, so the access log is written to stderr.
    pub fn with_access_log(mut self) -> Self {
        self.quiet = false;
        self
    }

    /// Spawns the binary and waits for `standin listening on http://ADDR`.
    pub fn start(self) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0"]);
        if self.quiet {
            cmd.arg("--quiet");
        }
        cmd.args(&self.args);
        clean_env(&mut cmd);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn standin");
        let stderr = capture(child.stderr.take().expect("stderr piped"));
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so a chatty server can never block on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("standin printed no listening line within {START_TIMEOUT:?}");
            }
        };
        let Some(addr) = line
            .trim_end()
            .strip_prefix("standin listening on http://")
            .and_then(|a| a.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            thread::sleep(Duration::from_millis(100));
            panic!(
                "bad listening line {line:?} (args {:?}); stderr:\n{}",
                self.args,
                stderr.lock().unwrap()
            );
        };
        Server {
            child,
            exit_expected: false,
            addr,
            stderr,
        }
    }
}

impl Server {
    /// A builder with `--quiet` and no extra flags.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            quiet: true,
        }
    }

    /// Starts a quiet server with extra flags.
    pub fn start(args: &[&str]) -> Server {
        Server::builder().args(args).start()
    }

    /// Opens a new connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends `request` on a fresh connection and reads one response.
    pub fn send(&self, request: &[u8]) -> Response {
        let mut client = self.connect();
        client.send(request);
        client.read_response()
    }

    /// Asserts the server still answers `GET /health` on a new connection.
    pub fn assert_alive(&self) {
        let resp = self.send(&get("/health", &[]));
        assert_eq!(resp.status, 200, "health after trouble: {resp:?}");
        assert_eq!(resp.json(), json!({"status": "ok"}));
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `done(stderr)` holds, or panics after `timeout` showing stderr.
    pub fn wait_for_stderr(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stderr();
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "stderr condition not met within {timeout:?}; stderr:\n{text}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time the child has used, in clock ticks (Linux only: `/proc/PID/stat` utime + stime).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the parenthesised command name start at field 3 (state); utime and stime
        // are fields 14 and 15.
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    /// `standin_connections_open` from `/metrics` (the scrape's own connection included).
    pub fn open_connections(&self) -> i64 {
        let resp = self.send(&get("/metrics", &[]));
        assert_eq!(resp.status, 200);
        resp.text()
            .lines()
            .find_map(|l| {
                l.strip_prefix("standin_connections_open ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no standin_connections_open in\n{}", resp.text()))
    }

    /// Sends a signal by name (`TERM`, `INT`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit code (`None` if killed by a signal). Panics
    /// if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit_expected = true;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "standin still running after {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The names of the child's threads (Linux only: `/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.child.id());
        let Ok(tasks) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_string())
            .collect()
    }

    /// Number of open file descriptors of the child (Linux only), for leak checks.
    pub fn open_fds(&self) -> Option<usize> {
        let dir = format!("/proc/{}/fd", self.child.id());
        std::fs::read_dir(dir).ok().map(|d| d.count())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A server that died on its own crashed; fail the test that was using it.
        if let Some(status) = exited {
            if !thread::panicking() && !self.exit_expected {
                panic!(
                    "standin exited unexpectedly ({status}); stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }
}

/// Removes inherited `STANDIN_*` variables so the developer's shell cannot change test results.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STANDIN_") {
            cmd.env_remove(key);
        }
    }
}

/// Drains a pipe into a shared string on a background thread.
fn capture(mut pipe: impl Read + Send + 'static) -> Captured {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// The result of running the binary to completion.
#[derive(Debug)]
pub struct Exit {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Runs the binary with `args`/`envs` and waits for it to exit on its own.
///
/// If it prints a listening line instead (it accepted a configuration it should have refused), it is
/// killed and the test fails rather than waiting forever.
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> Exit {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    clean_env(&mut cmd);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn standin");
    let stdout = capture(child.stdout.take().expect("stdout piped"));
    let stderr = capture(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        let started = stdout.lock().unwrap().contains("listening on");
        if started || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            thread::sleep(Duration::from_millis(50));
            panic!(
                "standin {args:?} did not exit by itself; stdout:\n{}\nstderr:\n{}",
                stdout.lock().unwrap(),
                stderr.lock().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    // The reader threads finish at EOF, shortly after exit.
    thread::sleep(Duration::from_millis(50));
    let stdout = stdout.lock().unwrap().clone();
    let stderr = stderr.lock().unwrap().clone();
    Exit {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// A file in the temp directory, removed on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `contents` to a fresh, unique path.
    pub fn new(tag: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("standin-test-{}-{n}-{tag}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile { path }
    }

    /// The path as a `&str` for command lines.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    /// A path next to this one that does not exist.
    pub fn missing_sibling(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap().to_os_string();
        name.push(".does-not-exist");
        self.path.with_file_name(name)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new(&self.path));
    }
}
