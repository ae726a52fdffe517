//! A scripted fake server: a `std::net::TcpListener` on port 0 that answers every request on a kept-alive
//! connection with the [`Step`]s its script gives for that request's index (counted across connections,
//! in arrival order). Also the canned pieces scripts are made of: JSON responses, chunked SSE streams,
//! and the chunk payloads of a chat completion stream.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;

/// One thing the server does while answering a request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Writes these bytes in one `write_all` (Nagle is off, so each is its own TCP segment).
    Write(Vec<u8>),
    /// Pauses before the next step.
    Sleep(Duration),
    /// Never answers: reads until the client gives up and closes.
    Hang,
    /// Closes the connection, whatever the response so far.
    Close,
}

/// Maps a request's index to its answer.
type Script = Arc<dyn Fn(usize) -> Vec<Step> + Send + Sync>;

/// A running fake server; its accept loop stops on `Drop`.
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    peers: Arc<Mutex<BTreeSet<IpAddr>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Listens on 127.0.0.1:0 and answers request `i` with `script(i)`.
    pub fn start(script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = FakeServer {
            addr,
            requests: Arc::default(),
            peers: Arc::default(),
            stop: Arc::default(),
        };
        let script: Script = Arc::new(script);
        let (requests, peers, stop) = (
            Arc::clone(&server.requests),
            Arc::clone(&server.peers),
            Arc::clone(&server.stop),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let (Ok(peer), Ok(mut peers)) = (stream.peer_addr(), peers.lock()) {
                    peers.insert(peer.ip());
                }
                let (script, requests) = (Arc::clone(&script), Arc::clone(&requests));
                thread::spawn(move || serve(stream, &script, &requests));
            }
        });
        server
    }

    /// `http://ADDR`, for `--url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Source addresses of the connections accepted so far.
    pub fn peer_ips(&self) -> BTreeSet<IpAddr> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers requests on one connection until the client closes it.
fn serve(mut stream: TcpStream, script: &Script, requests: &AtomicUsize) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while read_request(&mut stream, &mut buf) {
        let index = requests.fetch_add(1, Ordering::AcqRel);
        for step in script(index) {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Step::Sleep(pause) => thread::sleep(pause),
                Step::Hang => {
                    let _ = io::copy(&mut stream, &mut io::sink());
                    return;
                }
                Step::Close => return,
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body) off `buf` + the socket; false on EOF or error.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    let mut fill = |buf: &mut Vec<u8>| match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    };
    let head_len = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if !fill(buf) {
            return false;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + body_len {
        if !fill(buf) {
            return false;
        }
    }
    buf.drain(..head_len + body_len);
    true
}

/// A whole response with a `Content-Length` body, in one write.
pub fn json_response(status: u16, body: &str) -> Vec<Step> {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    vec![Step::Write([head.as_bytes(), body.as_bytes()].concat())]
}

/// The head of a chunked SSE response.
pub const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The `data:` line and blank line of one event.
pub fn event_bytes(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

/// `payload` framed as one HTTP chunk.
pub fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:x}\r\n", payload.len()).into_bytes();
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// One SSE event as one HTTP chunk, in one write.
pub fn event(data: &str) -> Step {
    Step::Write(chunk(&event_bytes(data)))
}

/// The last chunk of a chunked body.
pub fn end() -> Step {
    Step::Write(b"0\r\n\r\n".to_vec())
}

/// A whole chunked SSE response carrying `events` (the `data` payloads), one chunk each, no pauses.
pub fn sse(events: &[String]) -> Vec<Step> {
    let mut steps = vec![Step::Write(SSE_HEAD.as_bytes().to_vec())];
    steps.extend(events.iter().map(|e| event(e)));
    steps.push(end());
    steps
}

/// The first chunk of a chat stream: the assistant role, no content.
pub fn role() -> String {
    json!({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]})
        .to_string()
}

/// A chunk carrying `text` as content.
pub fn content(text: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        .to_string()
}

/// The chunk that ends the choice, without content.
pub fn finish() -> String {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string()
}

/// The `include_usage` chunk: no choices, one prompt token, `completion_tokens` output tokens.
pub fn usage(completion_tokens: u64) -> String {
    json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": completion_tokens}})
        .to_string()
}

/// `[DONE]`.
pub const DONE: &str = "[DONE]";

/// Tokens in every well-formed scripted stream.
pub const TOKENS: u64 = 5;

/// The events of a well-formed stream: role, [`TOKENS`] content chunks, finish, usage, `[DONE]`.
pub fn good_events() -> Vec<String> {
    let mut events = vec![role()];
    events.extend((0..TOKENS).map(|i| content(&format!(" t{i}"))));
    events.extend([finish(), usage(TOKENS), DONE.to_string()]);
    events
}

/// A well-formed stream whose content chunks are written `gap` apart (role and first content together).
pub fn good_stream(gap: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, step) in sse(&good_events()).into_iter().enumerate() {
        // Steps: head, role, content 0, content 1.. — pause before every content chunk but the first.
        if (3..2 + TOKENS as usize).contains(&i) && !gap.is_zero() {
            steps.push(Step::Sleep(gap));
        }
        steps.push(step);
    }
    steps
}

/// A non-streaming chat completion with `completion_tokens` output tokens.
pub fn good_json(completion_tokens: u64) -> Vec<Step> {
    let body = json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": completion_tokens},
    });
    json_response(200, &body.to_string())
}

/// A well-formed stream cut into awkward TCP writes: HTTP chunks of sizes cycling through `sizes`, so
/// chunk boundaries fall inside `data:` lines, and each chunk written in pieces that split its size
/// line between digits and between `\r` and `\n`, its data in the middle, and its closing CRLF.
/// The head itself is split too. `pause` separates the writes so they arrive as separate reads.
pub fn split_stream(sizes: &[usize], pause: Duration) -> Vec<Step> {
    let body: Vec<u8> = good_events().iter().flat_map(|e| event_bytes(e)).collect();
    let (head_a, head_b) = SSE_HEAD.as_bytes().split_at(30);
    let mut writes: Vec<Vec<u8>> = vec![head_a.to_vec(), head_b.to_vec()];
    let mut rest = body.as_slice();
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (data, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let hex = format!("{:x}", data.len());
        let (digit, more_digits) = hex.split_at(1);
        let half = data.len() / 2;
        writes.push(digit.as_bytes().to_vec());
        writes.push(format!("{more_digits}\r").into_bytes());
        writes.push([b"\n", &data[..half]].concat());
        writes.push([&data[half..], b"\r"].concat());
        writes.push(b"\n".to_vec());
    }
    writes.push(b"0\r".to_vec());
    writes.push(b"\n\r\n".to_vec());
    let mut steps = Vec::new();
    for bytes in writes {
        steps.push(Step::Write(bytes));
        steps.push(Step::Sleep(pause));
    }
    steps
}
