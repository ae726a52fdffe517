//! Writing responses: the per-connection output buffer, status line and headers, and the [`Responder`] a
//! handler answers through. Complete responses are buffered so pipelined answers leave in one write.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use may::net::TcpStream;

use super::date::DateCache;
use super::sse::SseWriter;

/// The write side of one connection: the socket, a reused output buffer and a reused body scratch buffer.
pub struct Output {
    pub(crate) stream: TcpStream,
    /// Bytes waiting to be written; flushed before the connection blocks on a read.
    pub(crate) wbuf: Vec<u8>,
    /// Where a handler builds a response body before its head is written.
    pub(crate) body: Vec<u8>,
    pub(crate) date: DateCache,
    /// Bytes handed to the socket so far, for the access log.
    pub(crate) written: usize,
    /// A write failed: the peer is gone, stop producing.
    pub(crate) broken: bool,
    /// An event stream was started and not properly ended: the connection cannot carry another response.
    pub(crate) open_stream: bool,
    /// The handler timed this request: later ones on the connection should start at their arrival stamp.
    pub(crate) wants_stamps: bool,
    /// Writes must not wait (the stream is being written by the pacer, off its own coroutine): a flush
    /// sends what the socket takes and reports `WouldBlock` for the rest, which stays queued.
    pub(crate) nonblocking: bool,
}

impl Output {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Output {
            stream,
            // Grown by the first response, not reserved up front: 10,000 idle connections should not hold
            // 120 MB of buffers they may never fill.
            wbuf: Vec::new(),
            body: Vec::new(),
            date: DateCache::default(),
            written: 0,
            broken: false,
            open_stream: false,
            wants_stamps: false,
            nonblocking: false,
        }
    }

    /// Sends what is queued, then waits (at most `max`) until the peer closes the connection: how a stalled
    /// server looks to a client. Whatever the peer sends meanwhile is discarded.
    pub(crate) fn wait_for_close(&mut self, max: Duration) {
        let _ = self.flush();
        let deadline = Instant::now() + max;
        let mut scratch = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.broken = true;
    }

    /// Sends what is queued, then makes the close a TCP reset (SO_LINGER 0), as a crashed server would.
    pub(crate) fn reset(&mut self) {
        let _ = self.flush();
        let _ = socket2::SockRef::from(self.stream.inner()).set_linger(Some(Duration::ZERO));
        self.broken = true;
    }

    /// Writes what the socket takes without waiting; what it does not take stays queued (`WouldBlock`).
    fn flush_nonblocking(&mut self) -> io::Result<()> {
        // may's sockets are non-blocking underneath; writing to the std socket skips may's wait.
        let mut socket = self.stream.inner();
        let mut sent = 0;
        let result = loop {
            if sent == self.wbuf.len() {
                break Ok(());
            }
            match socket.write(&self.wbuf[sent..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.written += sent;
        match result {
            Ok(()) => self.wbuf.clear(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.wbuf.drain(..sent);
                return Err(e);
            }
            Err(e) => {
                self.wbuf.clear();
                self.broken = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes everything buffered.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.wbuf.is_empty() {
            return Ok(());
        }
        if self.nonblocking {
            return self.flush_nonblocking();
        }
        let result = self.stream.write_all(&self.wbuf);
        self.written += self.wbuf.len();
        self.wbuf.clear();
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

/// How the response ends the exchange, decided by the request and what the handler asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadOptions<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub length: Option<usize>,
    pub chunked: bool,
    pub keep_alive: bool,
    pub minor_version: u8,
    pub request_id: &'a str,
}

/// Appends a status line and headers (ending with the blank line) to `w`.
pub(crate) fn write_head(
    w: &mut Vec<u8>,
    date: &[u8],
    head: &HeadOptions<'_>,
    extra: &[(&str, &str)],
) {
    let mut num = itoa::Buffer::new();
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(num.format(head.status).as_bytes());
    w.push(b' ');
    w.extend_from_slice(reason(head.status).as_bytes());
    w.extend_from_slice(b"\r\nServer: standin\r\nDate: ");
    w.extend_from_slice(date);
    w.extend_from_slice(b"\r\nContent-Type: ");
    w.extend_from_slice(head.content_type.as_bytes());
    // RFC 9110 8.6: a 204 (or 1xx) must not carry Content-Length.
    if let Some(len) = head
        .length
        .filter(|_| head.status >= 200 && head.status != 204)
    {
        w.extend_from_slice(b"\r\nContent-Length: ");
        w.extend_from_slice(num.format(len).as_bytes());
    }
    if head.chunked {
        w.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
    }
    if !head.keep_alive {
        w.extend_from_slice(b"\r\nConnection: close");
    } else if head.minor_version == 0 {
        w.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    w.extend_from_slice(b"\r\nx-request-id: ");
    w.extend_from_slice(head.request_id.as_bytes());
    for (name, value) in extra {
        w.extend_from_slice(b"\r\n");
        w.extend_from_slice(name.as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value.as_bytes());
    }
    w.extend_from_slice(b"\r\n\r\n");
}

/// Reason phrases for the statuses standin sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        402 => "Payment Required",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Where a response is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    Sent(u16),
    Streaming(u16),
    /// Closed on purpose without a (complete) response: a reset or a stall.
    Aborted,
}

/// The handler's side of one exchange: build a body, then `send` it, or `start_sse` and stream events.
pub struct Responder<'c> {
    pub(crate) out: &'c mut Output,
    pub(crate) state: State,
    request_id: &'c str,
    minor_version: u8,
    keep_alive: bool,
    head_only: bool,
    /// Header lines (`name: value\r\n`) from [`Responder::add_headers`], written after the ones `send` or
    /// `start_sse` are given. Empty, and never allocated, unless the handler adds some.
    added_headers: Vec<u8>,
}

impl<'c> Responder<'c> {
    pub(crate) fn new(
        out: &'c mut Output,
        request_id: &'c str,
        minor_version: u8,
        keep_alive: bool,
        head_only: bool,
    ) -> Self {
        out.body.clear();
        Responder {
            out,
            state: State::Pending,
            request_id,
            minor_version,
            keep_alive,
            head_only,
            added_headers: Vec::new(),
        }
    }

    /// Adds headers to whatever response this exchange sends, through [`Responder::send`] or
    /// [`Responder::start_sse`] and by whichever code sends it: headers that concern every response (CORS,
    /// rate limits) are set once by the application and reach replies written deep inside an endpoint.
    /// A header whose name or value holds CR or LF is dropped, so it can never split the head.
    pub fn add_headers(&mut self, headers: &[(&str, &str)]) {
        for (name, value) in headers {
            if name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
                continue;
            }
            self.added_headers.extend_from_slice(name.as_bytes());
            self.added_headers.extend_from_slice(b": ");
            self.added_headers.extend_from_slice(value.as_bytes());
            self.added_headers.extend_from_slice(b"\r\n");
        }
    }

    /// The `x-request-id` this response carries.
    pub fn request_id(&self) -> &'c str {
        self.request_id
    }

    /// The body scratch buffer (empty at the start of every request); fill it, then call [`Responder::send`].
    pub fn body(&mut self) -> &mut Vec<u8> {
        &mut self.out.body
    }

    /// Ask for the connection to close after this response.
    pub fn close_after(&mut self) {
        self.keep_alive = false;
    }

    /// This request was timed: with [`ArrivalStamps::OnRequest`](super::ArrivalStamps::OnRequest), the
    /// connection's later requests start at the kernel's arrival stamp.
    pub fn want_arrival_stamps(&mut self) {
        self.out.wants_stamps = true;
    }

    /// Whether the connection stays open after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Queues a complete response whose body is what [`Responder::body`] holds.
    pub fn send(&mut self, status: u16, content_type: &str, extra: &[(&str, &str)]) {
        if self.state != State::Pending {
            return;
        }
        let out = &mut *self.out;
        let head = HeadOptions {
            status,
            content_type,
            length: Some(out.body.len()),
            chunked: false,
            keep_alive: self.keep_alive,
            minor_version: self.minor_version,
            request_id: self.request_id,
        };
        write_head(&mut out.wbuf, out.date.now(), &head, extra);
        if !self.added_headers.is_empty() {
            // Before the head's final blank line.
            out.wbuf.truncate(out.wbuf.len() - 2);
            out.wbuf.extend_from_slice(&self.added_headers);
            out.wbuf.extend_from_slice(b"\r\n");
        }
        if !self.head_only {
            out.wbuf.extend_from_slice(&out.body);
        }
        self.state = State::Sent(status);
    }

    /// Answers nothing and resets the connection (failure injection: "the server crashed").
    pub fn reset(&mut self) {
        self.out.reset();
        self.keep_alive = false;
        self.state = State::Aborted;
    }

    /// Answers nothing until the client gives up (or `max` passes), then closes.
    pub fn stall(&mut self, max: Duration) {
        self.out.wait_for_close(max);
        self.keep_alive = false;
        self.state = State::Aborted;
    }

    /// Starts an event stream: headers go out with the first flush of events.
    pub fn start_sse(&mut self, status: u16, extra: &[(&str, &str)]) -> SseWriter<'_> {
        // HTTP/1.0 has no chunked encoding: the stream ends when the connection closes.
        let chunked = self.minor_version == 1;
        if !chunked {
            self.keep_alive = false;
        }
        let out = &mut *self.out;
        let head = HeadOptions {
            status,
            content_type: "text/event-stream",
            length: None,
            chunked,
            keep_alive: self.keep_alive,
            minor_version: self.minor_version,
            request_id: self.request_id,
        };
        let mut headers: [(&str, &str); 8] = [("Cache-Control", "no-cache"); 8];
        let n = extra.len().min(7);
        headers[1..=n].copy_from_slice(&extra[..n]);
        write_head(&mut out.wbuf, out.date.now(), &head, &headers[..=n]);
        if !self.added_headers.is_empty() {
            // Before the head's final blank line.
            out.wbuf.truncate(out.wbuf.len() - 2);
            out.wbuf.extend_from_slice(&self.added_headers);
            out.wbuf.extend_from_slice(b"\r\n");
        }
        self.state = State::Streaming(status);
        out.open_stream = true;
        SseWriter::new(out, chunked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_text(
        keep_alive: bool,
        minor_version: u8,
        length: Option<usize>,
        chunked: bool,
    ) -> String {
        let mut w = Vec::new();
        let head = HeadOptions {
            status: 404,
            content_type: "application/json",
            length,
            chunked,
            keep_alive,
            minor_version,
            request_id: "req_1",
        };
        write_head(
            &mut w,
            b"Thu, 01 Jan 1970 00:00:00 GMT",
            &head,
            &[("Allow", "POST")],
        );
        String::from_utf8(w).unwrap()
    }

    /// An output whose socket's peer does not read until told to.
    fn output_to_a_silent_peer() -> (Output, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (Output::new(stream), peer)
    }

    #[test]
    fn a_nonblocking_flush_keeps_what_the_socket_will_not_take() {
        let (mut out, mut peer) = output_to_a_silent_peer();
        // Far more than loopback's socket buffers hold while the peer reads nothing.
        let bytes: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        out.wbuf.extend_from_slice(&bytes);
        out.nonblocking = true;
        let err = out.flush().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!out.broken, "a full socket is not a gone peer");
        assert!(
            out.written > 0 && out.written < bytes.len(),
            "{}",
            out.written
        );
        assert_eq!(out.written + out.wbuf.len(), bytes.len());
        // The peer reads; a blocking flush sends the rest, in order.
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        out.nonblocking = false;
        out.flush().unwrap();
        assert!(out.wbuf.is_empty());
        drop(out);
        assert!(reader.join().unwrap() == bytes, "bytes lost or reordered");
    }

    #[test]
    fn a_nonblocking_flush_to_a_gone_peer_marks_the_output_broken() {
        let (mut out, peer) = output_to_a_silent_peer();
        drop(peer);
        out.nonblocking = true;
        // The first write may still land in the dead socket; the reset comes back on a later one.
        let mut result = Ok(());
        for _ in 0..100 {
            out.wbuf.extend_from_slice(b"data: x\n\n");
            result = out.flush();
            if result.is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(result.is_err());
        assert!(out.broken);
        assert!(out.wbuf.is_empty());
    }

    #[test]
    fn head_has_status_length_and_request_id() {
        let text = head_text(true, 1, Some(12), false);
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 12\r\n"));
        assert!(text.contains("\r\nx-request-id: req_1\r\n"));
        assert!(text.contains("\r\nAllow: POST\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Connection"));
    }

    #[test]
    fn no_content_length_on_204() {
        let mut w = Vec::new();
        let head = HeadOptions {
            status: 204,
            content_type: "text/plain",
            length: Some(0),
            chunked: false,
            keep_alive: true,
            minor_version: 1,
            request_id: "r",
        };
        write_head(&mut w, b"Thu, 01 Jan 1970 00:00:00 GMT", &head, &[]);
        assert!(!String::from_utf8(w).unwrap().contains("Content-Length"));
    }

    #[test]
    fn head_connection_rules() {
        assert!(head_text(false, 1, Some(0), false).contains("Connection: close"));
        assert!(head_text(true, 0, Some(0), false).contains("Connection: keep-alive"));
        let chunked = head_text(true, 1, None, true);
        assert!(
            chunked.contains("Transfer-Encoding: chunked") && !chunked.contains("Content-Length")
        );
    }
}
