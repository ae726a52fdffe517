//! One connection's life: read heads and bodies under limits and deadlines, hand each request to the
//! handler (panics caught), answer pipelined requests in order, and close on errors, `Connection: close` or
//! idle. Buffers live as long as the connection and are reused by every request on it.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use may::net::TcpStream;

use super::arrival;
use super::body::ChunkedDecoder;
use super::buffer::ReadBuf;
use super::lifecycle::LIFECYCLE;
use super::request::{parse_head, Framing, Head, HeaderSpan, Request, Status};
use super::response::{write_head, HeadOptions, Output, Responder, State};
use super::{ArrivalStamps, Exchange, Handler, HttpError, Limits, Method};
use crate::ids;

/// Smallest read: a typical SDK chat request (a 522-byte head and a short body) fits, and 10,000 open
/// connections hold 10 MB of read buffer (measured: 4 KiB here cost 30 MB more at 10,000 streams). Reads
/// grow with what is pending, doubling up to `MAX_READ_SIZE`.
const READ_SIZE: usize = 1024;
/// Largest single read, for big bodies.
const MAX_READ_SIZE: usize = 64 * 1024;
/// Buffers that grew past this for one large request are shrunk back afterwards, so an idle keep-alive
/// connection holds kilobytes, not the megabytes its largest request needed.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Longest client-supplied `x-request-id` echoed back; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Serves one accepted connection until it closes.
pub fn serve<H: Handler>(stream: TcpStream, handler: &H, limits: &Limits) {
    let _ = stream.set_nodelay(true);
    // A peer that stops reading is dropped after the idle timeout instead of pinning a coroutine forever.
    let _ = stream.set_write_timeout(Some(limits.idle_timeout));
    let stamped =
        limits.arrival_stamps == ArrivalStamps::Always && arrival::enable(&stream).is_ok();
    let mut conn = Conn::new(stream);
    conn.stamped = stamped;
    conn.run(handler, limits);
}

/// Answers a connection past `max_connections` with a 503 without reading its request, then closes it. The
/// request is read and dropped for a moment first, so closing does not turn into a reset that would hide
/// the answer from the client.
pub fn refuse<H: Handler>(stream: TcpStream, handler: &H) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(REFUSE_LINGER));
    let mut conn = Conn::new(stream);
    conn.fail(handler, HttpError::Overloaded, Instant::now());
    let _ = conn.out.stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + REFUSE_LINGER;
    let mut drained = 0;
    while drained < MAX_READ_SIZE {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.read_more(left, false) {
            Ok(_) => {
                drained += conn.rbuf.len();
                conn.rbuf.remove(0..conn.rbuf.len());
            }
            Err(_) => break,
        }
    }
}

/// How long a refused connection's request is read and dropped before the close.
const REFUSE_LINGER: Duration = Duration::from_millis(200);

struct Conn {
    out: Output,
    rbuf: ReadBuf,
    spans: Vec<HeaderSpan>,
    chunked_body: Vec<u8>,
    /// The socket's current read timeout, to avoid a setsockopt per read.
    read_timeout: Option<Duration>,
    /// The kernel stamps arrivals on this socket: a request's first read asks when its bytes came.
    stamped: bool,
}

/// Why reading stopped.
enum ReadEnd {
    Closed,
    TimedOut,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            out: Output::new(stream),
            rbuf: ReadBuf::default(),
            spans: Vec::new(),
            chunked_body: Vec::new(),
            read_timeout: None,
            stamped: false,
        }
    }

    fn run<H: Handler>(&mut self, handler: &H, limits: &Limits) {
        loop {
            // When the request's first byte arrived: the start of its access-log duration and of any pacing.
            // Read from the clock here only for a request already buffered; otherwise its first read says.
            let mut started = (!self.rbuf.is_empty()).then(Instant::now);
            let head = self.read_head(limits, &mut started);
            let started = started.unwrap_or_else(Instant::now);
            let head = match head {
                Ok(head) => head,
                Err(Some(error)) => return self.fail(handler, error, started),
                Err(None) => return,
            };
            let body_len = match self.read_body(&head, limits) {
                Ok(n) => n,
                Err(Some(error)) => return self.fail(handler, error, started),
                Err(None) => return,
            };
            // Past the in-flight limit the request is refused before the handler sees it.
            let Some(active) = LIFECYCLE.enter(limits.max_in_flight) else {
                return self.fail(handler, HttpError::Overloaded, started);
            };
            if self.stamped {
                // Timed requests hold their connection for seconds while they wait: keep only their bytes, not
                // the whole read buffer (measured: 700 bytes a stream less for a short request).
                self.rbuf.shrink(self.rbuf.len());
            }
            let keep_alive = self.answer(handler, &head, body_len, started);
            drop(active);
            if std::mem::take(&mut self.out.wants_stamps) && !self.stamped {
                self.stamped = limits.arrival_stamps == ArrivalStamps::OnRequest
                    && arrival::enable(&self.out.stream).is_ok();
            }
            let consumed = head.len
                + if head.framing == Framing::Chunked {
                    0
                } else {
                    body_len
                };
            self.rbuf.remove(0..consumed);
            self.rbuf.shrink(KEEP_CAPACITY);
            if self.stamped {
                // Between timed requests the next one is read onto the stack (`read_onto_stack`).
                self.rbuf.release();
            }
            shrink(&mut self.chunked_body);
            shrink(&mut self.out.body);
            if !keep_alive || self.out.broken {
                let _ = self.out.flush();
                return;
            }
        }
    }

    /// Waits for a whole head. `Err(None)` means the connection ended quietly (EOF or idle timeout).
    /// `started` is set to when the first byte arrives (it stays put for an already-buffered request).
    fn read_head(
        &mut self,
        limits: &Limits,
        started: &mut Option<Instant>,
    ) -> Result<Head, Option<HttpError>> {
        let mut deadline = started.map(|at| at + limits.header_timeout);
        loop {
            if !self.rbuf.is_empty() {
                if let Status::Complete(head) =
                    parse_head(self.rbuf.data(), limits, &mut self.spans)?
                {
                    return Ok(head);
                }
            }
            // Nothing more to parse: send what pipelined answers are queued before blocking.
            self.out.flush().map_err(|_| None)?;
            let timeout = match deadline {
                None => limits.idle_timeout,
                Some(at) => at.saturating_duration_since(Instant::now()),
            };
            let first = deadline.is_none();
            match self.read_more(timeout, first && self.stamped) {
                Ok(arrived) => {
                    if first {
                        let at = arrived.unwrap_or_else(Instant::now);
                        *started = Some(at);
                        deadline = Some(at + limits.header_timeout);
                        // Parse what came before any deadline check: a complete head is served even when its
                        // arrival stamp is older than the header timeout; an incomplete one gets the next
                        // read's time left, and times out there if none is.
                        continue;
                    }
                }
                Err(ReadEnd::TimedOut) if deadline.is_some() => {
                    return Err(Some(HttpError::Timeout))
                }
                Err(_) => return Err(None),
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(Some(HttpError::Timeout));
            }
        }
    }

    /// Reads the body that `head` announces; returns its length.
    fn read_body(&mut self, head: &Head, limits: &Limits) -> Result<usize, Option<HttpError>> {
        // Set when the first read is needed: a body that came with its head costs no clock reading.
        let mut deadline = None;
        let mut deadline = || *deadline.get_or_insert_with(|| Instant::now() + limits.body_timeout);
        match head.framing {
            Framing::Empty => Ok(0),
            Framing::Length(n) => {
                if n > limits.max_body_bytes {
                    return Err(Some(HttpError::BodyTooLarge));
                }
                if head.expect_continue && self.rbuf.len() < head.len + n {
                    self.send_continue()?;
                }
                while self.rbuf.len() < head.len + n {
                    self.read_body_bytes(deadline())?;
                }
                Ok(n)
            }
            Framing::Chunked => {
                if head.expect_continue && self.rbuf.len() == head.len {
                    self.send_continue()?;
                }
                let mut decoder = ChunkedDecoder::default();
                self.chunked_body.clear();
                loop {
                    let used = decoder.decode(
                        &self.rbuf.data()[head.len..],
                        &mut self.chunked_body,
                        limits,
                    )?;
                    // Raw chunk framing is dropped as it is decoded; the head stays where it was parsed.
                    self.rbuf.remove(head.len..head.len + used);
                    if decoder.is_done() {
                        return Ok(self.chunked_body.len());
                    }
                    self.read_body_bytes(deadline())?;
                }
            }
        }
    }

    fn send_continue(&mut self) -> Result<(), Option<HttpError>> {
        self.out
            .wbuf
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.out.flush().map_err(|_| None)
    }

    fn read_body_bytes(&mut self, deadline: Instant) -> Result<(), Option<HttpError>> {
        let now = Instant::now();
        if now >= deadline {
            return Err(Some(HttpError::Timeout));
        }
        match self.read_more(deadline - now, false) {
            Ok(_) => Ok(()),
            Err(ReadEnd::TimedOut) => Err(Some(HttpError::Timeout)),
            Err(ReadEnd::Closed) => Err(None),
        }
    }

    /// One read into the buffer, waiting at most about `timeout`. With `stamp`, also says when the bytes
    /// arrived (when the kernel knows).
    fn read_more(&mut self, timeout: Duration, stamp: bool) -> Result<Option<Instant>, ReadEnd> {
        if timeout.is_zero() {
            return Err(ReadEnd::TimedOut);
        }
        // Re-arm only when the wanted timeout is much shorter or longer than the armed one: deadlines stay
        // within a factor of two while a steady keep-alive connection makes no setsockopt call at all.
        let rearm = match self.read_timeout {
            None => true,
            Some(current) => timeout < current / 2 || timeout > current,
        };
        if rearm {
            let _ = self.out.stream.set_read_timeout(Some(timeout));
            self.read_timeout = Some(timeout);
        }
        let result = if self.rbuf.is_unallocated() {
            read_onto_stack(&mut self.out.stream, &mut self.rbuf, stamp)
        } else {
            let want = self.rbuf.len().clamp(READ_SIZE, MAX_READ_SIZE);
            let result = read_stream(&mut self.out.stream, self.rbuf.spare(want), stamp);
            self.rbuf.advance(result.as_ref().map_or(0, |r| r.0));
            result
        };
        match result {
            Ok((0, _)) => Err(ReadEnd::Closed),
            Ok((_, arrived)) => Ok(arrived),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Err(ReadEnd::TimedOut)
            }
            Err(_) => Err(ReadEnd::Closed),
        }
    }

    /// Runs the handler for one request; returns whether the connection stays open.
    fn answer<H: Handler>(
        &mut self,
        handler: &H,
        head: &Head,
        body_len: usize,
        started: Instant,
    ) -> bool {
        let Conn {
            out,
            rbuf,
            spans,
            chunked_body,
            ..
        } = self;
        let body = match head.framing {
            Framing::Chunked => &chunked_body[..],
            _ => &rbuf.data()[head.len..head.len + body_len],
        };
        let req = Request::new(rbuf.data(), head, spans, body, started);
        let mut id_buf = [0u8; 32];
        let request_id = match req.header_str("x-request-id") {
            Some(id) if valid_request_id(id) => id,
            _ => ids::write_hex_id("req_", ids::next(), &mut id_buf),
        };
        let written_before = out.written + out.wbuf.len();
        let mut res = Responder::new(
            out,
            request_id,
            head.minor_version,
            head.keep_alive,
            head.method == Method::Head,
        );
        if LIFECYCLE.is_draining() {
            // Draining: answer, then close, so the client takes its next request elsewhere.
            res.close_after();
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(&req, &mut res)));
        // A stream that did not end properly leaves the connection unusable for another response.
        let mut keep_alive = res.keep_alive() && !res.out.open_stream;
        if outcome.is_err() || res.state == State::Pending {
            keep_alive = false;
            if res.state == State::Pending {
                res.out.body.clear();
                let content_type = handler.error_body(HttpError::Panic, &mut res.out.body);
                res.close_after();
                res.send(500, content_type, &[]);
            }
        }
        let status = match res.state {
            State::Sent(s) | State::Streaming(s) => s,
            State::Pending => 500,
            // No status went out; the access log shows 0.
            State::Aborted => 0,
        };
        let bytes = out.written + out.wbuf.len() - written_before;
        handler.finished(&Exchange {
            method: req.method_str(),
            path: req.path(),
            status,
            bytes,
            started,
            request_id,
        });
        keep_alive
    }

    /// Answers an error the HTTP layer found, then the connection closes.
    fn fail<H: Handler>(&mut self, handler: &H, error: HttpError, started: Instant) {
        let mut id_buf = [0u8; 32];
        let request_id = ids::write_hex_id("req_", ids::next(), &mut id_buf);
        let out = &mut self.out;
        out.body.clear();
        let content_type = handler.error_body(error, &mut out.body);
        let head = HeadOptions {
            status: error.status(),
            content_type,
            length: Some(out.body.len()),
            chunked: false,
            keep_alive: false,
            minor_version: 1,
            request_id,
        };
        let before = out.written + out.wbuf.len();
        let extra: &[(&str, &str)] = if error == HttpError::Overloaded {
            &[("retry-after", "1")]
        } else {
            &[]
        };
        write_head(&mut out.wbuf, out.date.now(), &head, extra);
        out.wbuf.extend_from_slice(&out.body);
        let bytes = out.written + out.wbuf.len() - before;
        let _ = out.flush();
        handler.finished(&Exchange {
            method: "-",
            path: "-",
            status: error.status(),
            bytes,
            started,
            request_id,
        });
    }
}

/// One read, with the arrival stamp when `stamp`.
fn read_stream(
    stream: &mut TcpStream,
    buf: &mut [u8],
    stamp: bool,
) -> io::Result<(usize, Option<Instant>)> {
    if stamp {
        arrival::read(stream, buf)
    } else {
        stream.read(buf).map(|n| (n, None))
    }
}

/// A connection without a read buffer waits with the read landing on the stack, then keeps only the bytes
/// that came: 10,000 connections waiting for a request hold no buffers. Out of line, so the array is not in
/// the frame of every read.
#[inline(never)]
fn read_onto_stack(
    stream: &mut TcpStream,
    rbuf: &mut ReadBuf,
    stamp: bool,
) -> io::Result<(usize, Option<Instant>)> {
    let mut landing = [0u8; READ_SIZE];
    let result = read_stream(stream, &mut landing, stamp);
    if let Ok((n, _)) = result {
        rbuf.push(&landing[..n]);
    }
    result
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY && buf.len() <= KEEP_CAPACITY {
        buf.shrink_to(KEEP_CAPACITY);
    }
}
