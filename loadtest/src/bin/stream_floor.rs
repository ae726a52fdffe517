//! `standin-stream-floor`: the floor for paced streams. One thread, no runtime, no JSON: an epoll loop that
//! answers every `POST /v1/chat/completions` with the same fixed stream, the shape and size of standin's
//! echo of "Hello" (13 content events, then finish, usage and `[DONE]`), one `write` per token, each token
//! due `--itl-ms` after the one before it, counted from the request's arrival as standin counts. What it
//! costs per token is about what the kernel charges for the write (on loopback, also the receiver's side),
//! the wake-ups and one timer: what standin spends beyond it is its runtime's and its own.
//!
//! What it leaves out, on purpose: parsing the body (every chat request streams, whatever it asks), chunked
//! request bodies, limits, timeouts, other routes (404 and close). Point only `standin-load --stream` at it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "common/flags.rs"]
mod flags;

/// Two up from standin's 8000, beside standin-floor's 8001.
const DEFAULT_LISTEN: &str = "127.0.0.1:8002";

/// The longest `--itl-ms`, the same bound as standin's header override.
const MAX_ITL_MS: u64 = 600_000;

/// standin's echo of "Hello", token by token as its tokenizer splits it.
const TOKENS: [&str; 13] = [
    "As",
    " a",
    " mock",
    " AI",
    " Assistant,",
    " I",
    " can",
    " only",
    " echo",
    " your",
    " last",
    " message:",
    " Hello",
];

/// A token that is this close to due goes out now, as standin's half sleep grid.
const EARLY: Duration = Duration::from_micros(50);

/// Events taken from epoll per wait.
const EVENTS: usize = 256;

/// The epoll key of the listener; connections use their slot index.
const LISTENER_KEY: u64 = u64::MAX;

const HELP: &str = "\
standin-stream-floor: one thread and epoll, answering every POST /v1/chat/completions with a fixed stream
(the shape and size of standin's echo of \"Hello\": 13 tokens), one write per token, --itl-ms apart; the
floor for standin's paced streams.

usage: standin-stream-floor [--listen ADDR] [--itl-ms MS]

  --listen ADDR   address to listen on; port 0 picks a free one (default 127.0.0.1:8002)
  --itl-ms MS     time between tokens, 0 to 600000 (default 100)
  --help          this text
";

/// What the command line asked for.
#[derive(Debug, PartialEq)]
struct Options {
    /// Address to bind.
    listen: SocketAddr,
    /// Time between tokens.
    itl: Duration,
}

/// Reads `--listen` and `--itl-ms` (as `--flag value` or `--flag=value`); `Ok(None)` means `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut itl_ms = 100;
    let Some(pairs) = flags::pairs(args, &["--listen", "--itl-ms"])? else {
        return Ok(None);
    };
    for (flag, value) in pairs {
        if flag == "--listen" {
            listen = value;
        } else {
            itl_ms = match value.parse() {
                Ok(ms) if ms <= MAX_ITL_MS => ms,
                _ => return Err(format!("`--itl-ms` must be between 0 and {MAX_ITL_MS}")),
            };
        }
    }
    let listen = listen
        .parse()
        .map_err(|_| format!("`--listen` must be IP:PORT, got `{listen}`"))?;
    Ok(Some(Options {
        listen,
        itl: Duration::from_millis(itl_ms),
    }))
}

/// One chunk of a chunked body, framed as standin frames it (eight hex digits).
fn chunk(out: &mut Vec<u8>, payload: &str) {
    out.extend_from_slice(format!("{:08x}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One `chat.completion.chunk` event with the given `delta`, `finish_reason` and `usage` JSON.
fn event(delta: &str, finish: &str, usage: &str) -> String {
    format!(
        concat!(
            r#"data: {{"id":"chatcmpl-0000000000000000","object":"chat.completion.chunk","created":0,"#,
            r#""model":"mock-gpt-model","system_fingerprint":"fp_standin","choices":[{{"index":0,"#,
            r#""delta":{{{delta}}},"logprobs":null,"finish_reason":{finish}}}],"usage":{usage}}}"#,
            "\n\n"
        ),
        delta = delta,
        finish = finish,
        usage = usage,
    )
}

/// A content event for one token.
fn content(token: &str) -> String {
    event(&format!(r#""content":"{token}""#), "null", "null")
}

/// The bytes of each write: the head, role and first token; one token each; the last token with the finish,
/// usage and `[DONE]` events and the end of the chunked body.
fn writes() -> Vec<Vec<u8>> {
    let last = TOKENS.len() - 1;
    let mut out = Vec::with_capacity(TOKENS.len());
    for (k, token) in TOKENS.iter().enumerate() {
        let mut bytes = Vec::new();
        let mut payload = String::new();
        if k == 0 {
            bytes.extend_from_slice(
                concat!(
                    "HTTP/1.1 200 OK\r\nServer: standin\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
                    "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n",
                    "x-request-id: req_0000000000000000\r\nCache-Control: no-cache\r\n\r\n"
                )
                .as_bytes(),
            );
            payload += &event(r#""role":"assistant","content":"""#, "null", "null");
        }
        payload += &content(token);
        if k == last {
            let tokens = TOKENS.len();
            payload += &event("", r#""stop""#, "null");
            payload += &format!(
                concat!(
                    r#"data: {{"id":"chatcmpl-0000000000000000","object":"chat.completion.chunk","created":0,"#,
                    r#""model":"mock-gpt-model","system_fingerprint":"fp_standin","choices":[],"#,
                    r#""usage":{{"prompt_tokens":1,"completion_tokens":{n},"total_tokens":{t}}}}}"#,
                    "\n\ndata: [DONE]\n\n"
                ),
                n = tokens,
                t = tokens + 1,
            );
        }
        chunk(&mut bytes, &payload);
        if k == last {
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
        out.push(bytes);
    }
    out
}

/// What a request head asks for, once the whole request (head and `Content-Length` body) is buffered.
#[derive(Debug, PartialEq)]
enum Ask {
    /// More bytes needed.
    Partial,
    /// A chat completion: stream it; the request is this many bytes.
    Stream(usize),
    /// Anything else (or a malformed head): answer 404 and close.
    Other,
}

/// Reads one request from the front of `input`.
fn ask(input: &[u8]) -> Ask {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ask::Partial,
        Err(_) => return Ask::Other,
    };
    let mut length = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => length = n,
                None => return Ask::Other,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Ask::Other;
        }
    }
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if req.method != Some("POST") || path != "/v1/chat/completions" {
        return Ask::Other;
    }
    if input.len() < head + length {
        return Ask::Partial;
    }
    Ask::Stream(head + length)
}

const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"error\":{\"message\":\"Invalid URL\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"unknown_url\"}}";

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// Request bytes not yet answered.
    input: Vec<u8>,
    /// Bytes the socket did not take yet.
    out: Vec<u8>,
    /// Whether a stream is being written (a pipelined request waits for it).
    streaming: bool,
}

/// A token due: when, on which slot (and which connection in it), which write.
type Due = Reverse<(Instant, usize, u32, usize)>;

/// The server: connections by slot, the next write of every stream by due time.
struct Floor {
    epoll: RawFd,
    listener: TcpListener,
    itl: Duration,
    writes: Vec<Vec<u8>>,
    conns: Vec<Option<Conn>>,
    /// Bumped when a slot's connection closes, so its pending writes are dropped.
    generations: Vec<u32>,
    free: Vec<usize>,
    due: BinaryHeap<Due>,
}

#[allow(unsafe_code)]
fn epoll_add(epoll: RawFd, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: key };
    // SAFETY: `ev` lives across the call; the kernel copies it.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for events until `until` (or forever); returns how many were written to `events`.
#[allow(unsafe_code)]
fn wait(epoll: RawFd, events: &mut [libc::epoll_event], until: Option<Duration>) -> usize {
    let ts = until.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: epoll_pwait2 writes at most `events.len()` entries into `events` and reads `ts` if not null;
    // a null signal mask means "do not change it".
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            epoll,
            events.as_mut_ptr(),
            events.len() as libc::c_int,
            ts_ptr,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    usize::try_from(n).unwrap_or(0)
}

impl Floor {
    #[allow(unsafe_code)]
    fn new(listener: TcpListener, itl: Duration) -> io::Result<Floor> {
        listener.set_nonblocking(true)?;
        // SAFETY: plain syscall; the descriptor is owned by `Floor` and never closed (the process ends).
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        epoll_add(
            epoll,
            listener.as_raw_fd(),
            libc::EPOLLIN as u32,
            LISTENER_KEY,
        )?;
        Ok(Floor {
            epoll,
            listener,
            itl,
            writes: writes(),
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            due: BinaryHeap::new(),
        })
    }

    fn run(&mut self) -> ! {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let until = self
                .due
                .peek()
                .map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()));
            let n = wait(self.epoll, &mut events, until);
            for ev in &events[..n] {
                let (flags, key) = (ev.events, ev.u64);
                if key == LISTENER_KEY {
                    self.accept();
                } else {
                    self.ready(key as usize, flags);
                }
            }
            self.write_due();
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            // As standin: one token per write must leave at once, not wait for the last one's ACK.
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.generations.push(0);
                self.conns.len() - 1
            });
            let flags = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if epoll_add(self.epoll, stream.as_raw_fd(), flags, slot as u64).is_err() {
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                input: Vec::new(),
                out: Vec::new(),
                streaming: false,
            });
        }
    }

    /// Reads and flushes what the socket allows, then starts a stream if a request is complete.
    fn ready(&mut self, slot: usize, flags: u32) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let mut open = flush(conn);
        if open
            && flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                != 0
        {
            let mut buf = [0u8; 4096];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            }
        }
        if open {
            self.next_request(slot);
        } else {
            self.close(slot);
        }
    }

    /// Starts the stream of the request at the front of the slot's input, if it is complete and no stream
    /// is running.
    fn next_request(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.streaming {
            return;
        }
        match ask(&conn.input) {
            Ask::Partial => {}
            Ask::Other => {
                let _ = conn.stream.write_all(NOT_FOUND);
                self.close(slot);
            }
            Ask::Stream(len) => {
                conn.input.drain(..len);
                conn.streaming = true;
                let start = Instant::now();
                let generation = self.generations[slot];
                self.due.push(Reverse((start, slot, generation, 0)));
            }
        }
    }

    /// Writes every token that is due (or within [`EARLY`] of it).
    fn write_due(&mut self) {
        let horizon = Instant::now() + EARLY;
        while let Some(&Reverse((at, slot, generation, k))) = self.due.peek() {
            if at > horizon {
                break;
            }
            self.due.pop();
            if self.generations[slot] != generation {
                continue;
            }
            let Some(conn) = self.conns[slot].as_mut() else {
                continue;
            };
            let last = k + 1 == self.writes.len();
            if !send(conn, &self.writes[k]) {
                self.close(slot);
                continue;
            }
            if last {
                conn.streaming = false;
                self.next_request(slot);
            } else {
                self.due
                    .push(Reverse((at + self.itl, slot, generation, k + 1)));
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if self.conns[slot].take().is_some() {
            // Closing the socket removes it from the epoll set.
            self.generations[slot] = self.generations[slot].wrapping_add(1);
            self.free.push(slot);
        }
    }
}

/// Writes `bytes` after anything still queued; what the socket does not take waits for EPOLLOUT. Returns
/// false when the connection is gone.
fn send(conn: &mut Conn, bytes: &[u8]) -> bool {
    if !conn.out.is_empty() {
        conn.out.extend_from_slice(bytes);
        return flush(conn);
    }
    match write_some(&mut conn.stream, bytes) {
        Ok(n) => {
            conn.out.extend_from_slice(&bytes[n..]);
            true
        }
        Err(_) => false,
    }
}

/// Writes what the socket takes of the queued bytes; false when the connection is gone.
fn flush(conn: &mut Conn) -> bool {
    if conn.out.is_empty() {
        return true;
    }
    match write_some(&mut conn.stream, &conn.out) {
        Ok(n) => {
            conn.out.drain(..n);
            true
        }
        Err(_) => false,
    }
}

/// Writes until done or the socket is full; returns how much went.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Lifts the open-file limit to its hard limit, so 20,000 connections fit.
#[allow(unsafe_code)]
fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("standin-stream-floor: {e}");
            return ExitCode::from(2);
        }
    };
    raise_nofile();
    let started = TcpListener::bind(opts.listen).and_then(|listener| {
        let addr = listener.local_addr()?;
        let floor = Floor::new(listener, opts.itl)?;
        let mut stdout = io::stdout();
        writeln!(stdout, "standin-stream-floor listening on http://{addr}")?;
        stdout.flush()?;
        Ok(floor)
    });
    match started {
        Ok(mut floor) => floor.run(),
        Err(e) => {
            eprintln!("standin-stream-floor: cannot serve on {}: {e}", opts.listen);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags() {
        let opts = args(&["--listen", "127.0.0.1:0", "--itl-ms=20"])
            .unwrap()
            .unwrap();
        assert_eq!(opts.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(opts.itl, Duration::from_millis(20));
        let opts = args(&[]).unwrap().unwrap();
        assert_eq!(opts.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(opts.itl, Duration::from_millis(100));
        assert_eq!(args(&["--help"]).unwrap(), None);
        assert!(args(&["--itl-ms", "600001"])
            .unwrap_err()
            .contains("--itl-ms"));
        assert!(args(&["--itl-ms", "-1"]).is_err());
        assert!(args(&["--listen", "nowhere"])
            .unwrap_err()
            .contains("IP:PORT"));
        assert!(args(&["--listen"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--workers", "1"])
            .unwrap_err()
            .contains("unknown flag"));
    }

    /// Undoes the chunked framing; returns the head and the body.
    fn unchunk(wire: &[u8]) -> (String, String) {
        let text = std::str::from_utf8(wire).unwrap();
        let (head, mut rest) = text.split_once("\r\n\r\n").unwrap();
        let mut body = String::new();
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                assert_eq!(after, "\r\n", "nothing after the last chunk");
                return (head.to_string(), body);
            }
            body += &after[..size];
            rest = after[size..].strip_prefix("\r\n").unwrap();
        }
    }

    #[test]
    fn the_stream_is_standins_echo_of_hello_one_write_per_token() {
        let writes = writes();
        assert_eq!(writes.len(), 13);
        let wire: Vec<u8> = writes.concat();
        let (head, body) = unchunk(&wire);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/event-stream"), "{head}");
        let events: Vec<&str> = body
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap())
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let parsed: Vec<serde_json::Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let text: String = parsed
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            text,
            "As a mock AI Assistant, I can only echo your last message: Hello"
        );
        assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
        let finish = &parsed[parsed.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = &parsed[parsed.len() - 1]["usage"];
        assert_eq!(usage["completion_tokens"], 13);
        assert_eq!(usage["total_tokens"], 14);
        // Each write after the first carries exactly one token's content event.
        for w in &writes[1..12] {
            let (_, one) = unchunk(&[b"H\r\n\r\n".as_slice(), w, b"0\r\n\r\n"].concat());
            assert_eq!(one.matches("data: ").count(), 1, "{one}");
        }
    }

    #[test]
    fn requests_are_read_whole_and_only_chat_streams() {
        let req =
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(ask(req), Ask::Stream(req.len()));
        assert_eq!(ask(&req[..req.len() - 1]), Ask::Partial);
        assert_eq!(ask(&req[..20]), Ask::Partial);
        let two = [req.as_slice(), req.as_slice()].concat();
        assert_eq!(ask(&two), Ask::Stream(req.len()));
        assert_eq!(ask(b"GET /v1/models HTTP/1.1\r\n\r\n"), Ask::Other);
        assert_eq!(
            ask(b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ask::Other
        );
        assert_eq!(ask(b"\x00\x01 nonsense\r\n\r\n"), Ask::Other);
        assert_eq!(
            ask(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Ask::Other
        );
    }

    #[test]
    fn the_404_says_how_long_it_is() {
        let text = std::str::from_utf8(NOT_FOUND).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["error"]["code"], "unknown_url");
    }
}
