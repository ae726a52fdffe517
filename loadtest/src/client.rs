//! A minimal HTTP/1.1 + SSE client on `may::net`: one request at a time per connection, keep-alive reuse,
//! and a timestamp for every milestone of the response (head, first byte, each event, `[DONE]`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use may::net::TcpStream;
use serde::Deserialize;

use crate::record::{Failure, Record};
use crate::sse::{drain_events, parse_head, BodyDecoder, Framing, Head, Progress};

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
}

/// One kept-alive connection and its reused buffers.
pub struct Connection {
    stream: TcpStream,
    rbuf: Vec<u8>,
    scratch: Vec<u8>,
    /// The socket timeouts currently set.
    timeout: Option<Duration>,
    body: Vec<u8>,
    events: Vec<u8>,
    /// Served at least one response: a failed write may just mean the server closed an idle connection.
    reused: bool,
}

/// Opens a connection, optionally from a given local address (to spread ports over 127.0.0.x).
pub fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<Connection> {
    let stream = match source {
        None => TcpStream::connect_timeout(&addr, timeout)?,
        Some(ip) => connect_from(addr, ip)?,
    };
    stream.set_nodelay(true)?;
    Ok(Connection {
        stream,
        rbuf: Vec::with_capacity(READ_SIZE),
        scratch: vec![0; READ_SIZE],
        timeout: None,
        body: Vec::new(),
        events: Vec::new(),
        reused: false,
    })
}

#[allow(unsafe_code)]
fn connect_from(addr: SocketAddr, ip: IpAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a socket this function just created and owns; ownership moves into the stream.
    // The connect may still be in progress: the first write waits for writability, which is completion.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// The parts of a response or chunk the harness needs, read without allocating.
#[derive(Deserialize)]
struct ChunkView {
    #[serde(default)]
    choices: Option<Choices>,
    #[serde(default)]
    usage: Option<UsageView>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// Whether `choices` had any member, and whether any carried non-empty content (`delta.content`,
/// `message.content` or legacy `text`). Visited element by element: no Vec per event.
#[derive(Default)]
struct Choices {
    any: bool,
    content: bool,
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Choices;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Choices, A::Error> {
                let mut out = Choices::default();
                while let Some(choice) = seq.next_element::<ChoiceView>()? {
                    out.any = true;
                    let delta = choice.delta.and_then(|d| d.content);
                    let message = choice.message.and_then(|m| m.content);
                    out.content |= delta.or(message).or(choice.text).is_some_and(|t| t.0);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Visitor)
    }
}

#[derive(Deserialize)]
struct ChoiceView {
    #[serde(default)]
    delta: Option<DeltaView>,
    #[serde(default)]
    text: Option<NonEmpty>,
    #[serde(default)]
    message: Option<DeltaView>,
}

#[derive(Deserialize)]
struct DeltaView {
    #[serde(default)]
    content: Option<NonEmpty>,
}

/// A string value reduced to "is it non-empty", so escaped text needs no owned copy.
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[derive(Deserialize)]
struct UsageView {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl Connection {
    /// Whether a response was already read on this connection (so the server may have closed it idle).
    pub fn is_reused(&self) -> bool {
        self.reused
    }
}

/// Sends `request` (a whole HTTP request) on `conn` and measures the answer into `rec`. With
/// `abandon_after = Some(k)` the client hangs up once it has seen `k` milestones (see
/// [`abandon_point`](crate::workload::abandon_point)) and the answer is still incomplete: `rec.abandoned` is
/// set and the socket is reset (`SO_LINGER` 0), so the server notices at its next write.
/// Returns whether the connection may be reused.
pub fn exchange(
    conn: &mut Connection,
    request: &[u8],
    clock: Instant,
    timeout: Duration,
    abandon_after: Option<u32>,
    rec: &mut Record,
) -> bool {
    let deadline = Instant::now() + timeout;
    if conn.timeout != Some(timeout) {
        // Set once per connection, not per request: each is a setsockopt call.
        let _ = conn.stream.set_read_timeout(Some(timeout));
        let _ = conn.stream.set_write_timeout(Some(timeout));
        conn.timeout = Some(timeout);
    }
    rec.sent = clock.elapsed();
    if let Err(e) = conn.stream.write_all(request) {
        rec.failure = Some(if conn.reused {
            Failure::Io
        } else {
            classify_connect(&e)
        });
        rec.end = clock.elapsed();
        return false;
    }
    conn.rbuf.clear();
    conn.body.clear();
    conn.events.clear();
    let result = read_response(conn, clock, deadline, abandon_after, rec);
    rec.end = clock.elapsed();
    match result {
        Ok(Ended::Complete { keep }) => {
            conn.reused = true;
            keep
        }
        Ok(Ended::Abandoned) => {
            rec.abandoned = true;
            reset_on_close(&conn.stream);
            false
        }
        Err(failure) => {
            rec.failure = Some(failure);
            false
        }
    }
}

/// Makes the coming close send a reset rather than a FIN, as a killed client or a proxy giving up does:
/// the server's next write fails at once instead of succeeding into a half-closed connection.
#[allow(unsafe_code)]
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor belongs to `stream`, which outlives this borrow; socket2 only calls setsockopt.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
}

/// How a response read ended, short of a failure.
enum Ended {
    /// The whole response arrived; `keep` says whether the connection may carry another.
    Complete { keep: bool },
    /// The client hung up on purpose before the end.
    Abandoned,
}

fn classify_connect(e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected => Failure::Connect,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::Timeout,
        _ => Failure::Io,
    }
}

fn read_more(conn: &mut Connection, deadline: Instant) -> Result<usize, Failure> {
    let now = Instant::now();
    if now >= deadline {
        return Err(Failure::Timeout);
    }
    // Shorten the socket timeout when the deadline is near, so a trickling server cannot stretch it.
    let left = deadline - now;
    if conn.timeout.is_some_and(|t| left < t / 2) {
        let _ = conn.stream.set_read_timeout(Some(left));
        conn.timeout = Some(left);
    }
    // Read into zeroed-once scratch and copy what arrived: cheaper than zeroing READ_SIZE per read.
    let result = conn.stream.read(&mut conn.scratch);
    let n = *result.as_ref().unwrap_or(&0);
    conn.rbuf.extend_from_slice(&conn.scratch[..n]);
    match result {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(Failure::Timeout)
        }
        Err(_) => Err(Failure::Io),
    }
}

/// Reads one response. `abandon_after`: hang up, instead of reading on, once this many milestones (the
/// head, then each SSE event) have been seen.
fn read_response(
    conn: &mut Connection,
    clock: Instant,
    deadline: Instant,
    abandon_after: Option<u32>,
    rec: &mut Record,
) -> Result<Ended, Failure> {
    // Checked only where the client would otherwise wait for more bytes: a response already complete in
    // what arrived is never abandoned.
    let hang_up = |seen: u32| abandon_after.is_some_and(|k| seen >= k);
    let head: Head = loop {
        if let Some(head) = parse_head(&conn.rbuf).map_err(|_| Failure::MalformedHttp)? {
            break head;
        }
        if hang_up(0) {
            return Ok(Ended::Abandoned);
        }
        if read_more(conn, deadline)? == 0 {
            return Err(if conn.reused && conn.rbuf.is_empty() {
                Failure::Io
            } else {
                Failure::MalformedHttp
            });
        }
    };
    rec.head = Some(clock.elapsed());
    rec.bytes += head.len as u64;
    conn.rbuf.drain(..head.len);
    let mut seen = 1u32;
    let mut decoder = BodyDecoder::new(head.framing);
    let mut stream_state = StreamState::default();
    let empty_body = head.framing == Framing::Length(0);
    loop {
        if empty_body {
            break;
        }
        if !conn.rbuf.is_empty() {
            rec.first_byte.get_or_insert_with(|| clock.elapsed());
            let before = conn.body.len();
            let progress = decoder
                .feed(&conn.rbuf, &mut conn.body)
                .map_err(|_| Failure::MalformedHttp)?;
            let used = match progress {
                Progress::More(n) | Progress::Done(n) => n,
            };
            rec.bytes += used as u64;
            // Unused bytes are a partial chunk line: kept and fed again with the next read.
            conn.rbuf.drain(..used);
            if head.event_stream && head.status == 200 {
                conn.events.extend_from_slice(&conn.body[before..]);
                conn.body.clear();
                let now = clock.elapsed();
                let mut events = 0u32;
                drain_events(&mut conn.events, |data| {
                    events += 1;
                    stream_state.on_event(data, now, rec);
                });
                rec.coalesced_events += events.saturating_sub(1);
                seen = seen.saturating_add(events);
            }
            if let Progress::Done(_) = progress {
                break;
            }
        }
        if hang_up(seen) {
            // What already went wrong is the answer's fault, and is not hidden by the hang-up.
            if head.status != 200 {
                return Err(Failure::Status(head.status));
            }
            if let Some(failure) = stream_state.failure.take() {
                return Err(failure);
            }
            return Ok(Ended::Abandoned);
        }
        match read_more(conn, deadline)? {
            0 if head.framing == Framing::Close => break,
            0 => return Err(Failure::Io),
            _ => {}
        }
    }
    if head.status != 200 {
        return Err(Failure::Status(head.status));
    }
    if head.event_stream {
        stream_state.finish(rec)?;
    } else {
        finish_json(&conn.body, clock.elapsed(), rec)?;
    }
    Ok(Ended::Complete {
        keep: !head.close && head.framing != Framing::Close,
    })
}

#[derive(Default)]
struct StreamState {
    failure: Option<Failure>,
    usage_tokens: Option<u64>,
    after_done: bool,
}

impl StreamState {
    fn on_event(&mut self, data: &[u8], now: Duration, rec: &mut Record) {
        if self.failure.is_some() {
            return;
        }
        if data == b"[DONE]" {
            rec.done = Some(now);
            return;
        }
        if rec.done.is_some() {
            self.after_done = true;
        }
        let Ok(chunk) = serde_json::from_slice::<ChunkView>(data) else {
            self.failure = Some(Failure::MalformedSse);
            return;
        };
        if chunk.error.is_some() {
            self.failure = Some(Failure::StreamError);
            return;
        }
        if let Some(usage) = chunk.usage {
            self.usage_tokens = Some(usage.completion_tokens);
            rec.prompt_tokens = usage.prompt_tokens;
        }
        let choices = chunk.choices.unwrap_or_default();
        if !choices.any {
            return;
        }
        rec.first_choice.get_or_insert(now);
        let content = choices.content;
        if content {
            rec.first_content.get_or_insert(now);
            rec.content_events.push(now);
            rec.last_token = Some(now);
        }
    }

    fn finish(self, rec: &mut Record) -> Result<(), Failure> {
        if let Some(f) = self.failure {
            return Err(f);
        }
        if self.after_done {
            return Err(Failure::MalformedSse);
        }
        if rec.content_events.is_empty() {
            return Err(Failure::NoContent);
        }
        if rec.done.is_none() {
            return Err(Failure::NoDone);
        }
        let events = rec.content_events.len() as u64;
        match self.usage_tokens {
            // One event may carry several tokens, never fewer than one.
            Some(tokens) if tokens < events => return Err(Failure::UsageMismatch),
            Some(tokens) => {
                rec.output_tokens = tokens;
                rec.usage_reported = true;
            }
            None => rec.output_tokens = events,
        }
        Ok(())
    }
}

fn finish_json(body: &[u8], now: Duration, rec: &mut Record) -> Result<(), Failure> {
    let chunk: ChunkView = serde_json::from_slice(body).map_err(|_| Failure::MalformedHttp)?;
    if chunk.error.is_some() {
        return Err(Failure::StreamError);
    }
    let content = chunk.choices.unwrap_or_default().content;
    if !content {
        return Err(Failure::NoContent);
    }
    // Without a stream there is no first token to time: only E2EL (to the end of the body) is reported.
    rec.last_token = Some(now);
    if let Some(usage) = chunk.usage {
        rec.output_tokens = usage.completion_tokens;
        rec.prompt_tokens = usage.prompt_tokens;
        rec.usage_reported = true;
    } else {
        rec.output_tokens = 1;
    }
    Ok(())
}
