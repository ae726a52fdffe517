//! A minimal HTTP/1.1 client on `may::net`: one request at a time per connection, the response head read
//! with a first-byte deadline, the body handed out incrementally as it arrives (so SSE can be relayed), and
//! an answer to "may this connection be reused?". Framing is [`super::framing`]'s; pooling is
//! [`super::pool`]'s; what the bytes mean is left to the caller.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use may::net::TcpStream;

use super::error::UpstreamError;
use super::framing::{parse_head, BodyDecoder, Framing, Head};
use super::request::Request;

/// Bytes asked of the socket per read: one SSE burst or a small JSON body in one call.
const READ_SIZE: usize = 16 * 1024;
/// Connect timeout: a reachable upstream answers a SYN in milliseconds; seconds mean it is down.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to the response head. A non-streaming completion's head comes only after the whole generation, so
/// this matches the OpenAI SDK's own default request timeout (600 s).
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest silence between body reads (and the write timeout): long enough for a slow token under load.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The client's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From the end of the request to a complete response head.
    pub first_byte: Duration,
    /// Between two reads of the body, and for each write.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            first_byte: DEFAULT_FIRST_BYTE_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

fn read_error(e: &io::Error) -> UpstreamError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => UpstreamError::Timeout,
        _ => UpstreamError::Closed,
    }
}

/// A failed exchange, and whether it failed the way a connection the upstream closed while idle does.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) error: UpstreamError,
    /// Reused connection, not a timeout, and not one response byte: safe to retry on a fresh connection.
    pub(super) stale: bool,
}

/// An open connection between exchanges.
pub struct Connection {
    stream: TcpStream,
    timeouts: Timeouts,
    /// Bytes read from the socket and not yet consumed (a partial head, size line or body).
    buf: Vec<u8>,
    /// Read target, zeroed once: cheaper than zeroing [`READ_SIZE`] of `buf` per read.
    scratch: Box<[u8]>,
    wbuf: Vec<u8>,
    /// The socket read timeout last set, to skip redundant `setsockopt` calls.
    read_timeout: Option<Duration>,
    /// Responses fully read on this connection; above zero, a failure may only mean it went stale.
    served: u32,
    /// When it was last returned to a pool, to drop connections the upstream is about to close.
    idle_since: Instant,
}

impl Connection {
    /// Connects to `addr` with `timeouts.connect`, with Nagle off (small requests and SSE want no delay).
    pub fn connect(addr: SocketAddr, timeouts: Timeouts) -> Result<Connection, UpstreamError> {
        let stream =
            TcpStream::connect_timeout(&addr, timeouts.connect).map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => UpstreamError::Timeout,
                kind => UpstreamError::Connect(kind),
            })?;
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(timeouts.idle)));
        setup.map_err(|e| UpstreamError::Connect(e.kind()))?;
        Ok(Connection {
            stream,
            timeouts,
            buf: Vec::with_capacity(READ_SIZE),
            scratch: vec![0; READ_SIZE].into_boxed_slice(),
            wbuf: Vec::new(),
            read_timeout: None,
            served: 0,
            idle_since: Instant::now(),
        })
    }

    /// Whether a response was already read on this connection.
    pub fn is_reused(&self) -> bool {
        self.served > 0
    }

    /// How long the connection has sat unused since its last response.
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.idle_since)
    }

    /// Whether an idle connection can still carry a request: the peer has not closed it and sent nothing
    /// unasked. Checked without blocking (may's sockets are non-blocking underneath).
    pub fn is_open(&self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.inner().peek(&mut byte) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// Sends `req` and reads the response head.
    pub fn exchange(self, req: &Request<'_>) -> Result<Response, UpstreamError> {
        self.try_exchange(req).map_err(|f| f.error)
    }

    pub(super) fn try_exchange(mut self, req: &Request<'_>) -> Result<Response, Failure> {
        let reused = self.is_reused();
        let fail = |error: UpstreamError, stale: bool| Failure { error, stale };
        self.wbuf.clear();
        req.encode(&mut self.wbuf).map_err(|e| fail(e, false))?;
        if let Err(e) = self.stream.write_all(&self.wbuf) {
            let error = read_error(&e);
            return Err(fail(
                error.clone(),
                reused && error != UpstreamError::Timeout,
            ));
        }
        let deadline = Instant::now() + self.timeouts.first_byte;
        let mut received = false;
        let head = loop {
            match parse_head(&self.buf, req.method == "HEAD") {
                Ok(Some(head)) if (100..200).contains(&head.status) => {
                    // 100 Continue and 103 Early Hints precede the real answer.
                    self.buf.drain(..head.len);
                    continue;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Err(fail(UpstreamError::Protocol(e.0.into()), false)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.fill(left) {
                Ok(0) if received => {
                    return Err(fail(
                        UpstreamError::Protocol("closed inside the response head".into()),
                        false,
                    ))
                }
                Ok(0) => return Err(fail(UpstreamError::Closed, reused)),
                Ok(_) => received = true,
                Err(e) => {
                    let error = read_error(&e);
                    let stale = reused && !received && error == UpstreamError::Closed;
                    return Err(fail(error, stale));
                }
            }
        };
        self.buf.drain(..head.len);
        Ok(Response {
            decoder: BodyDecoder::new(head.framing),
            keep_alive: head.keep_alive && !req.asks_to_close(),
            head,
            conn: self,
            failed: false,
        })
    }

    /// One socket read into `buf`, waiting at most `timeout`.
    fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        if timeout.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        loop {
            match self.stream.read(&mut self.scratch) {
                Ok(n) => {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A response whose head has been read; the body is read through it, then the connection handed back.
pub struct Response {
    head: Head,
    conn: Connection,
    decoder: BodyDecoder,
    /// The upstream's keep-alive verdict, and the request did not ask to close either.
    keep_alive: bool,
    /// A body read failed: the connection is in an unknown state.
    failed: bool,
}

impl Response {
    /// Status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// All headers, names lowercased.
    pub fn headers(&self) -> &[(String, String)] {
        &self.head.headers
    }

    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// Reads the next body bytes as they arrive, appending them to `out`. Returns how many were appended;
    /// 0 means the body is complete. Waits at most the idle timeout for each socket read.
    pub fn read_some(&mut self, out: &mut Vec<u8>) -> Result<usize, UpstreamError> {
        let result = self.read_inner(out);
        self.failed |= result.is_err();
        result
    }

    fn read_inner(&mut self, out: &mut Vec<u8>) -> Result<usize, UpstreamError> {
        let before = out.len();
        let protocol = |e: super::framing::Malformed| UpstreamError::Protocol(e.0.into());
        loop {
            if self.decoder.is_done() {
                return Ok(0);
            }
            if !self.conn.buf.is_empty() {
                let used = self.decoder.decode(&self.conn.buf, out).map_err(protocol)?;
                self.conn.buf.drain(..used);
                if out.len() > before {
                    return Ok(out.len() - before);
                }
                if self.decoder.is_done() {
                    return Ok(0);
                }
            }
            match self.conn.fill(self.conn.timeouts.idle) {
                Ok(0) => {
                    self.decoder
                        .finish_at_eof()
                        .map_err(|_| UpstreamError::Closed)?;
                    return Ok(0);
                }
                Ok(_) => {}
                Err(e) => return Err(read_error(&e)),
            }
        }
    }

    /// Reads the rest of the body into `out`; more than `limit` bytes is a protocol error.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), UpstreamError> {
        let start = out.len();
        while self.read_some(out)? > 0 {
            if out.len() - start > limit {
                self.failed = true;
                return Err(UpstreamError::Protocol("response body too large".into()));
            }
        }
        Ok(())
    }

    /// Reads up to `limit` bytes of an error response's body into [`UpstreamError::Status`]; a transport
    /// failure while reading wins over the status. The connection is dropped.
    pub fn into_error(mut self, limit: usize) -> UpstreamError {
        let mut body = Vec::new();
        loop {
            match self.read_some(&mut body) {
                Ok(0) => break,
                Ok(_) if body.len() >= limit => {
                    body.truncate(limit);
                    break;
                }
                Ok(_) => {}
                Err(e) if body.is_empty() => return e,
                Err(_) => break,
            }
        }
        UpstreamError::Status(self.head.status, body)
    }

    /// The connection, if it can carry another request: the body was read to its end, nothing extra
    /// arrived, no read failed, and neither side asked to close (HTTP/1.1 only).
    pub fn into_connection(mut self) -> Option<Connection> {
        let reusable = self.decoder.is_done()
            && self.decoder.framing() != Framing::Close
            && self.keep_alive
            && !self.failed
            && self.conn.buf.is_empty();
        if !reusable {
            return None;
        }
        self.conn.served += 1;
        self.conn.idle_since = Instant::now();
        Some(self.conn)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Instant;

    use super::*;
    use crate::upstream::test_server::{read_request, serve};

    use crate::upstream::request::tests::POST;

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        }
    }

    /// Sends POST to a server that answers with `raw` written in `piece`-byte writes; returns the response
    /// status, body, and whether the connection is reusable.
    fn fetch(raw: &'static [u8], piece: usize) -> (u16, Vec<u8>, bool) {
        let (addr, _) = serve(move |_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.set_nodelay(true).unwrap();
            for part in raw.chunks(piece) {
                stream.write_all(part).unwrap();
                if piece < raw.len() {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let mut resp = Connection::connect(addr, quick())
            .unwrap()
            .exchange(&POST)
            .unwrap();
        let mut body = Vec::new();
        resp.read_to_end(&mut body, 1 << 20).unwrap();
        (resp.status(), body, resp.into_connection().is_some())
    }

    #[test]
    fn content_length_body() {
        let (status, body, reusable) = fetch(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            1 << 10,
        );
        assert_eq!(
            (status, body.as_slice(), reusable),
            (200, &b"hello"[..], true)
        );
    }

    #[test]
    fn chunked_body_written_byte_by_byte() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n";
        let (status, body, reusable) = fetch(raw, 1);
        assert_eq!(
            (status, body.as_slice(), reusable),
            (200, &b"hello world"[..], true)
        );
    }

    #[test]
    fn close_delimited_body_is_not_reusable() {
        let (status, body, reusable) = fetch(b"HTTP/1.1 200 OK\r\n\r\nuntil close", 4);
        assert_eq!(
            (status, body.as_slice(), reusable),
            (200, &b"until close"[..], false)
        );
    }

    #[test]
    fn connection_close_and_extra_bytes_prevent_reuse() {
        assert!(
            !fetch(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
                64
            )
            .2
        );
        assert!(!fetch(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 64).2);
        assert!(!fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1", 64).2);
    }

    #[test]
    fn early_hints_are_skipped() {
        let (status, body, _) = fetch(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 7);
        assert_eq!((status, body.as_slice()), (201, &b"ok"[..]));
    }

    #[test]
    fn read_some_hands_out_bytes_as_they_arrive() {
        let (addr, _) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndata: 1\r\n")
                .unwrap();
            // The second event is only sent once the client has seen the first.
            let mut ack = [0u8; 1];
            std::io::Read::read_exact(&mut stream, &mut ack).unwrap();
            stream.write_all(b"7\r\ndata: 2\r\n0\r\n\r\n").unwrap();
        });
        let conn = Connection::connect(addr, quick()).unwrap();
        let mut resp = conn.exchange(&POST).unwrap();
        let mut out = Vec::new();
        assert_eq!(resp.read_some(&mut out).unwrap(), 7);
        assert_eq!(out, b"data: 1");
        resp.conn.stream.write_all(b"!").unwrap();
        assert_eq!(resp.read_some(&mut out).unwrap(), 7);
        assert_eq!(resp.read_some(&mut out).unwrap(), 0);
        assert_eq!(out, b"data: 1data: 2");
    }

    #[test]
    fn truncated_body_is_closed() {
        let (addr, _) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .unwrap();
        });
        let mut resp = Connection::connect(addr, quick())
            .unwrap()
            .exchange(&POST)
            .unwrap();
        assert_eq!(
            resp.read_to_end(&mut Vec::new(), 100),
            Err(UpstreamError::Closed)
        );
        assert!(resp.into_connection().is_none());
    }

    #[test]
    fn garbage_head_is_a_protocol_error() {
        let (addr, _) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap();
        });
        let result = Connection::connect(addr, quick()).unwrap().exchange(&POST);
        assert!(matches!(result, Err(UpstreamError::Protocol(_))));
    }

    #[test]
    fn first_byte_timeout() {
        let (addr, _) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            // Say nothing until the client gives up and closes.
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        });
        let timeouts = Timeouts {
            first_byte: Duration::from_millis(150),
            ..quick()
        };
        let start = Instant::now();
        let result = Connection::connect(addr, timeouts).unwrap().exchange(&POST);
        assert_eq!(result.err(), Some(UpstreamError::Timeout));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(140) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[test]
    fn idle_timeout_between_body_reads() {
        let (addr, _) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .unwrap();
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        });
        let timeouts = Timeouts {
            idle: Duration::from_millis(150),
            ..quick()
        };
        let mut resp = Connection::connect(addr, timeouts)
            .unwrap()
            .exchange(&POST)
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(resp.read_some(&mut out), Ok(3));
        assert_eq!(resp.read_some(&mut out), Err(UpstreamError::Timeout));
    }

    #[test]
    fn connect_refused() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: nothing listens on `addr` any more.
        let result = Connection::connect(addr, quick());
        assert_eq!(
            result.err(),
            Some(UpstreamError::Connect(io::ErrorKind::ConnectionRefused))
        );
    }

    #[test]
    fn error_status_keeps_a_bounded_body() {
        let (addr, _) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream
                .write_all(
                    b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 12\r\n\r\n{\"error\":{}}",
                )
                .unwrap();
        });
        let resp = Connection::connect(addr, quick())
            .unwrap()
            .exchange(&POST)
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.into_error(5),
            UpstreamError::Status(429, b"{\"err".to_vec())
        );
    }
}
