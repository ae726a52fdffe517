//! The access log: one logfmt line per request on stderr, collected in a shared buffer and written by a
//! background thread every `FLUSH_EVERY`, so a request costs a short lock, never a system call.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use may::sync::Mutex;

use crate::http::Exchange;

/// How often buffered lines reach stderr.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines arriving while this much is already waiting are dropped (and counted): a stalled stderr must not
/// grow memory without bound.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    dropped: u64,
}

/// Handle to the access log; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    pending: Arc<Mutex<Pending>>,
}

impl AccessLog {
    /// Starts the flusher thread.
    pub fn start() -> Self {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let shared = Arc::clone(&pending);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut spare = Vec::new();
                loop {
                    // A plain thread, not a coroutine: sleeping here stalls no worker.
                    std::thread::sleep(FLUSH_EVERY);
                    flush(&shared, &mut spare);
                }
            })
            .expect("spawning the access-log thread at startup");
        AccessLog { pending }
    }

    /// Writes out what is buffered now (at shutdown, so the last lines are not lost).
    pub fn flush_now(&self) {
        flush(&self.pending, &mut Vec::new());
    }

    /// Records one exchange.
    pub fn record(&self, x: &Exchange<'_>) {
        let duration = x.started.elapsed();
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.lines.len() >= MAX_BUFFERED {
            pending.dropped += 1;
            return;
        }
        write_line(&mut pending.lines, x, duration);
    }
}

fn flush(shared: &Mutex<Pending>, spare: &mut Vec<u8>) {
    let dropped = {
        let Ok(mut pending) = shared.lock() else {
            return;
        };
        std::mem::swap(&mut pending.lines, spare);
        std::mem::take(&mut pending.dropped)
    };
    if dropped > 0 {
        let _ = writeln!(spare, "access-log dropped={dropped} reason=stderr-too-slow");
    }
    if !spare.is_empty() {
        let _ = std::io::stderr().write_all(spare);
        spare.clear();
    }
}

/// `access method=POST path=/v1/chat/completions status=200 bytes=123 dur_us=87 id=req_…`
fn write_line(out: &mut Vec<u8>, x: &Exchange<'_>, duration: Duration) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"access method=");
    out.extend_from_slice(x.method.as_bytes());
    out.extend_from_slice(b" path=");
    // The path is client text: keep the line one line.
    out.extend(
        x.path
            .bytes()
            .map(|b| if b.is_ascii_graphic() { b } else { b'?' }),
    );
    out.extend_from_slice(b" status=");
    out.extend_from_slice(num.format(x.status).as_bytes());
    out.extend_from_slice(b" bytes=");
    out.extend_from_slice(num.format(x.bytes).as_bytes());
    out.extend_from_slice(b" dur_us=");
    out.extend_from_slice(num.format(duration.as_micros()).as_bytes());
    out.extend_from_slice(b" id=");
    out.extend_from_slice(x.request_id.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let mut out = Vec::new();
        let x = Exchange {
            method: "POST",
            path: "/v1/x\ny",
            status: 200,
            bytes: 42,
            started: std::time::Instant::now(),
            request_id: "req_1",
        };
        write_line(&mut out, &x, Duration::from_micros(1500));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "access method=POST path=/v1/x?y status=200 bytes=42 dur_us=1500 id=req_1\n"
        );
    }
}
