//! HTTP/1.1 on `may::net`, written by hand: request heads parsed with httparse, bodies framed by
//! Content-Length or chunked encoding, responses buffered per connection, SSE streamed with chunked encoding.
//!
//! This layer knows sockets, framing, limits and timeouts, and nothing of OpenAI: what a request means is the
//! [`Handler`]'s business, including how an error the HTTP layer detects is worded.

pub mod arrival;
pub mod body;
pub mod buffer;
pub mod conn;
pub mod date;
pub mod lifecycle;
pub mod request;
pub mod response;
pub mod sse;

use std::time::{Duration, Instant};

pub use request::{Method, Request};
pub use response::Responder;
pub use sse::SseWriter;

/// Request head limit: 16 KiB, about what nginx and Node accept by default.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Header count limit: browsers and SDKs send about 15; 64 leaves room for gateways that add their own.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Request body limit: 8 MiB holds a long chat history with room to spare.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Size and time limits applied to every connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Request line plus headers, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Number of header lines (431 past it).
    pub max_headers: usize,
    /// Body bytes after de-chunking (413 past it).
    pub max_body_bytes: usize,
    /// From the first byte of a head to its end (408).
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body (408).
    pub body_timeout: Duration,
    /// Keep-alive wait for the next request's first byte (silent close).
    pub idle_timeout: Duration,
    /// Open connections past which new ones get a 503 and are closed; 0: no limit.
    pub max_connections: usize,
    /// Requests answered at once past which new ones get a 503; 0: no limit.
    pub max_in_flight: usize,
    /// When a request's start is taken from the kernel's arrival stamp rather than from when it was read.
    pub arrival_stamps: ArrivalStamps,
}

/// Which connections read requests with the kernel's arrival stamp. A stamped read costs a peek and a
/// `recvmsg` where a plain one costs a `read` (measured: about 1.7 µs more CPU per request), so only
/// connections whose requests are timed pay for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalStamps {
    /// Every connection, from its first request.
    Always,
    /// A connection from the request after one whose handler asked ([`Responder::want_arrival_stamps`]).
    OnRequest,
    /// None: every start is when the request was read.
    Never,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
            max_in_flight: 0,
            arrival_stamps: ArrivalStamps::OnRequest,
        }
    }
}

/// A failure the HTTP layer answers by itself, always followed by closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line, header, framing or chunk (400); the text says which.
    BadRequest(&'static str),
    /// Head larger than the limit or too many headers (431).
    HeaderTooLarge,
    /// Body larger than the limit (413).
    BodyTooLarge,
    /// Head or body did not arrive in time (408).
    Timeout,
    /// The handler panicked (500).
    Panic,
    /// Past `max_connections` or `max_in_flight` (503).
    Overloaded,
    /// The request line alone is past the head limit (414).
    UriTooLong,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
}

impl HttpError {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeaderTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::Timeout => 408,
            HttpError::Panic => 500,
            HttpError::Overloaded => 503,
            HttpError::UriTooLong => 414,
            HttpError::VersionNotSupported => 505,
        }
    }
}

/// The application on top of HTTP. Shared by every connection, so it must be `Sync`.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request through `res`, either with [`Responder::send`] or by streaming
    /// with [`Responder::start_sse`]. A handler that answers nothing gets a 500.
    fn handle(&self, req: &Request<'_>, res: &mut Responder<'_>);

    /// Writes the body for an error found by the HTTP layer into `body` and returns its content type.
    fn error_body(&self, error: HttpError, body: &mut Vec<u8>) -> &'static str;

    /// Called once per answered request, after the response was written (for the access log).
    fn finished(&self, _record: &Exchange<'_>) {}
}

/// What happened to one request, for logging and metrics.
pub struct Exchange<'a> {
    /// Request method, as sent.
    pub method: &'a str,
    /// Request target, as sent.
    pub path: &'a str,
    /// Status sent.
    pub status: u16,
    /// Response bytes written, head included.
    pub bytes: usize,
    /// When the request's first byte arrived: the access log's duration runs from here to when it writes
    /// the line (read from the clock only then, so a quiet server does not read it).
    pub started: Instant,
    /// The `x-request-id` sent back.
    pub request_id: &'a str,
}
