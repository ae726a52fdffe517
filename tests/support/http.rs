//! Raw HTTP/1.1 over `std::net::TcpStream`: one connection, reading exactly one response at a time
//! (Content-Length, chunked or read-to-EOF bodies), request builders and response assertions.
//!
//! Every socket has a read timeout, so no test can hang on a silent server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

/// Default per-read timeout: long enough for a debug build on a loaded 2-core box, short enough
/// that a hung server fails one test instead of the whole run.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The model every request uses unless a test needs another.
pub const MODEL: &str = "mock-gpt-model";

/// The echo model's fixed reply prefix (12 tokens).
pub const ECHO_PREFIX: &str = "As a mock AI Assistant, I can only echo your last message: ";

/// Why reading a response failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed (or reset) the connection before the first byte of a response.
    Closed,
    /// Timed out, reset mid-response or any other I/O error.
    Io(io::Error),
    /// Bytes that are not an HTTP/1.x response.
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed before a response"),
            ReadError::Io(e) => write!(f, "I/O error: {e}"),
            ReadError::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

/// One raw connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes read from the socket and not yet consumed by a response.
    buf: Vec<u8>,
}

impl Client {
    /// Connects with `READ_TIMEOUT` and `TCP_NODELAY` (so separate writes stay separate segments).
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to standin");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes all of `bytes`, panicking on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Writes all of `bytes`, returning the error (for peers that may have closed already).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` in `piece`-sized writes with a short pause between them.
    pub fn send_in_pieces(&mut self, bytes: &[u8], piece: usize) {
        for part in bytes.chunks(piece) {
            self.send(part);
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Changes the read timeout.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// One `read` from the socket into the pending bytes; `Ok(0)` at EOF.
    pub fn read_some(&mut self) -> io::Result<usize> {
        self.fill()
    }

    /// Bytes received so far but not consumed by a response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Reads one response, panicking with context on failure.
    pub fn read_response(&mut self) -> Response {
        match self.try_read_response() {
            Ok(resp) => resp,
            Err(e) => panic!(
                "reading response: {e}; unconsumed bytes: {:?}",
                self.pending_text()
            ),
        }
    }

    /// Reads one response.
    pub fn try_read_response(&mut self) -> Result<Response, ReadError> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            match self.fill() {
                Ok(0) if self.buf.is_empty() => return Err(ReadError::Closed),
                Ok(0) => {
                    return Err(ReadError::Malformed(format!(
                        "EOF inside head: {:?}",
                        self.pending_text()
                    )))
                }
                Ok(_) => {}
                Err(e) if self.buf.is_empty() && is_reset(&e) => return Err(ReadError::Closed),
                Err(e) => return Err(ReadError::Io(e)),
            }
        };
        let raw_head = String::from_utf8(self.buf.drain(..head_end).collect())
            .map_err(|e| ReadError::Malformed(format!("non-UTF-8 head: {e}")))?;
        let mut lines = raw_head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Malformed(format!("bad status line {status_line:?}")))?;
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::Malformed(format!(
                "bad status line {status_line:?}"
            )));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Malformed(format!("bad header line {line:?}")))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut resp = Response {
            version,
            status,
            headers,
            body: Vec::new(),
            raw_head,
            chunk_sizes: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        if chunked {
            self.read_chunked(&mut resp)?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| ReadError::Malformed(format!("bad Content-Length {len:?}")))?;
            self.fill_to(len)?;
            resp.body = self.buf.drain(..len).collect();
        } else {
            loop {
                match self.fill() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(ReadError::Io(e)),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Decodes a chunked body into `resp.body`, recording each chunk's size.
    fn read_chunked(&mut self, resp: &mut Response) -> Result<(), ReadError> {
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadError::Malformed(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            resp.chunk_sizes.push(size);
            self.fill_to(size + 2)?;
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(ReadError::Malformed(
                    "chunk data not followed by CRLF".into(),
                ));
            }
            resp.body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    fn read_line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return String::from_utf8(line).map_err(|e| ReadError::Malformed(e.to_string()));
            }
            self.fill_more()?;
        }
    }

    /// Reads until at least `n` bytes are buffered.
    fn fill_to(&mut self, n: usize) -> Result<(), ReadError> {
        while self.buf.len() < n {
            self.fill_more()?;
        }
        Ok(())
    }

    /// Reads more bytes; EOF is an error here because a response is incomplete.
    fn fill_more(&mut self) -> Result<(), ReadError> {
        match self.fill() {
            Ok(0) => Err(ReadError::Malformed("EOF inside a response".into())),
            Ok(_) => Ok(()),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    /// One `read` into the buffer.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn pending_text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Asserts the server closes the connection without sending anything more.
    pub fn assert_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            self.pending_text()
        );
        match self.fill() {
            Ok(0) => {}
            Ok(_) => panic!("expected close, got bytes: {:?}", self.pending_text()),
            Err(e) if is_reset(&e) => {}
            Err(e) => panic!("expected close, got {e} (connection still open?)"),
        }
    }
}

/// True for errors that mean "the peer closed the connection".
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Decoded body.
    pub body: Vec<u8>,
    /// The status line and headers exactly as received, including the final CRLFCRLF.
    pub raw_head: String,
    /// Sizes of the chunks of a chunked body, in order.
    pub chunk_sizes: Vec<usize>,
}

impl Response {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// True if the `Connection` header lists `token`.
    pub fn connection_has(&self, token: &str) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Asserts the headers every response carries: `x-request-id`, `Date`, `Server: standin`.
    pub fn assert_common_headers(&self) {
        let id = self
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id: {self:?}"));
        assert!(!id.is_empty());
        // IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 section 5.6.7).
        let date = self
            .header("date")
            .unwrap_or_else(|| panic!("no Date: {}", self.raw_head));
        assert!(
            date.len() == 29 && date.ends_with(" GMT"),
            "bad Date {date:?}"
        );
        assert_eq!(self.header("server"), Some("standin"), "{}", self.raw_head);
    }

    /// Asserts a JSON 200 with `Content-Length` and the common headers, and returns the body.
    pub fn assert_ok_json(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected 200: {} {}",
            self.raw_head,
            String::from_utf8_lossy(&self.body)
        );
        self.assert_common_headers();
        assert!(
            self.header("content-length").is_some(),
            "no Content-Length: {}",
            self.raw_head
        );
        self.json()
    }

    /// Asserts an OpenAI error envelope with `status` and `code` (None: any code), returning `error`.
    pub fn assert_error(&self, status: u16, code: Option<&str>) -> Value {
        assert_eq!(
            self.status,
            status,
            "{} {}",
            self.raw_head,
            String::from_utf8_lossy(&self.body)
        );
        self.assert_common_headers();
        assert!(
            self.header("content-length").is_some(),
            "no Content-Length: {}",
            self.raw_head
        );
        let body = self.json();
        let obj = body.as_object().expect("envelope is an object");
        assert_eq!(obj.len(), 1, "envelope has only `error`: {body}");
        let error = &body["error"];
        let fields = error
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {body}"));
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(
            error["param"].is_null() || error["param"].is_string(),
            "{body}"
        );
        assert!(
            error["code"].is_null() || error["code"].is_string(),
            "{body}"
        );
        let kind = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(error["type"], kind, "{body}");
        if let Some(code) = code {
            assert_eq!(error["code"], code, "{body}");
        }
        error.clone()
    }
}

/// A `GET` request with `Host` and extra headers.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: standin.test\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// `GET path` with `count` extra headers `X-H0: v`, `X-H1: v`, … (for header-count limits).
pub fn get_with_numbered_headers(path: &str, count: usize) -> Vec<u8> {
    let names: Vec<String> = (0..count).map(|i| format!("X-H{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    get(path, &headers)
}

/// A `POST` with a JSON body and `Content-Length`.
pub fn post(path: &str, body: &[u8], headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: standin.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `POST /v1/chat/completions` with `body`.
pub fn chat(body: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    post("/v1/chat/completions", body.as_bytes(), headers)
}

/// A minimal valid chat request whose single user message is `text`.
pub fn chat_body(text: &str) -> String {
    json!({"model": MODEL, "messages": [{"role": "user", "content": text}]}).to_string()
}

/// Like `chat_body` with `"stream": true`.
pub fn stream_body(text: &str) -> String {
    json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": text}]})
        .to_string()
}

/// The echo model's reply to `text`.
pub fn echo(text: &str) -> String {
    format!("{ECHO_PREFIX}{text}")
}

/// Asserts a non-streaming chat completion whose reply echoes `text`.
pub fn assert_echo(resp: &Response, text: &str) {
    let body = resp.assert_ok_json();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        echo(text),
        "{body}"
    );
}

/// Splits an SSE body into its `data:` payloads, asserting the `data: X\n\n` framing.
pub fn sse_events(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body[..body.len() - 2]
        .split("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without `data: `: {event:?}"))
                .to_string()
        })
        .collect()
}
