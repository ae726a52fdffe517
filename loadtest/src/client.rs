//! A minimal HTTP/1.1 + SSE client on `may::net`: one request at a time per connection, keep-alive reuse,
//! and a timestamp for every milestone of the response (head, first byte, each event, `[DONE]`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use may::net::TcpStream;

use crate::chunk;
use crate::clock::Clock;
use crate::heads::Heads;
use crate::readbuf::ReadBuf;
use crate::record::{Failure, Record};
use crate::sse::{BodyDecoder, Events, Framing, Head, Progress, Sink};
use crate::watchdog::{self, Deadline};

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
    rbuf: ReadBuf,
    /// Wakes a wait (to send or to read) when the request's deadline passes.
    deadline: Arc<Deadline>,
    /// The first read of the answer waits for the socket rather than trying it first (set by `exchange`
    /// only where no event can have been missed).
    just_sent: bool,
    /// A wait's events said the peer closed: the next request's first read tries the socket (where the
    /// end already is) rather than waiting for an event that will not come again.
    peer_closed: bool,
    body: Vec<u8>,
    events: Events,
    /// Reads the chunks of this connection's streams.
    chunks: chunk::Reader,
    /// Reads this connection's response heads, mostly by comparison with the last.
    heads: Heads,
    /// Content events of the last stream: the next stream's list is sized for as many, so it is allocated
    /// once rather than grown event by event.
    last_events: usize,
    /// Served at least one response: a failed write may just mean the server closed an idle connection.
    reused: bool,
}

/// Opens a connection, optionally from a given local address (to spread ports over 127.0.0.x), whose
/// answers are read through `shapes` (shared by the connections to one server).
pub fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    shapes: &Arc<chunk::Shapes>,
) -> io::Result<Connection> {
    let stream = match source {
        None => TcpStream::connect_timeout(&addr, timeout)?,
        Some(ip) => connect_from(addr, ip)?,
    };
    stream.set_nodelay(true)?;
    Ok(Connection {
        deadline: watchdog::watch(&stream),
        stream,
        rbuf: ReadBuf::new(),
        just_sent: false,
        peer_closed: false,
        body: Vec::new(),
        events: Events::default(),
        chunks: chunk::Reader::new(Arc::clone(shapes)),
        heads: Heads::default(),
        last_events: 0,
        reused: false,
    })
}

#[allow(unsafe_code)]
fn connect_from(addr: SocketAddr, ip: IpAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if ip.is_ipv4() {
        bind_address_no_port(&socket);
    }
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
    clock: Clock,
    timeout: Duration,
    abandon_after: Option<u32>,
    rec: &mut Record,
) -> bool {
    rec.sent = clock.elapsed();
    let deadline = rec.sent + timeout;
    let sent = send_request(conn, request, clock, deadline);
    conn.deadline.disarm();
    let waited = match sent {
        Ok(waited) => waited,
        Err(failure) => {
            rec.failure = Some(failure);
            rec.end = clock.elapsed();
            return false;
        }
    };
    conn.rbuf.clear();
    // The answer cannot have come before the request left, and no event since the last wait has been
    // cleared (the send does not touch may's flag), so the first read can wait without trying: on a
    // connection that has carried an answer before (a new one's connect cleared the flag, and a reply
    // sent on accept would be missed), when the request left in one `send` (a wait within the send took
    // the events of an early reply), and unless the last wait saw the peer close (that event is spent).
    conn.just_sent = conn.reused && !waited && !std::mem::take(&mut conn.peer_closed);
    conn.body.clear();
    conn.events.clear();
    rec.content_events.reserve(conn.last_events);
    // Milestones are timed by the read that brought them: one clock reading per read, not per milestone.
    // This first one, after the write, lets the deadline check see the time a slow write took.
    let mut read_at = clock.elapsed();
    let result = read_response(conn, clock, deadline, &mut read_at, abandon_after, rec);
    conn.deadline.disarm();
    rec.end = match result {
        Ok(Ended::Complete { .. }) => read_at,
        _ => clock.elapsed(),
    };
    conn.last_events = rec.content_events.len();
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

/// Lets the kernel pick the local port at connect, by the whole address pair, rather than at bind. A bind
/// to port 0 searches for a port free of every socket on that address, TIME_WAIT ones included: after a
/// run of 10,000 connections that search made each bind of the next run slow enough to stall it for
/// seconds. Best effort: on a kernel without the option (before 4.2) the call fails and the bind works as before.
#[allow(unsafe_code)]
fn bind_address_no_port(socket: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a setsockopt on a socket this process owns, with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
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

/// Sends `request` by `send` on the non-blocking socket, waiting for room when the socket is full (or still
/// connecting) until `deadline`. may's own write is not used: it clears the socket's event flag, so a reply
/// that came meanwhile would not wake the read that follows. Returns whether it had to wait.
fn send_request(
    conn: &mut Connection,
    request: &[u8],
    clock: Clock,
    deadline: Duration,
) -> Result<bool, Failure> {
    use std::os::fd::AsRawFd;
    let (mut at, mut waited) = (0, false);
    while at < request.len() {
        match send(conn.stream.as_raw_fd(), &request[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if clock.elapsed() >= deadline {
                    return Err(Failure::Timeout);
                }
                waited = true;
                conn.peer_closed |=
                    watchdog::wait(&conn.stream, &conn.deadline, clock.ns_at(deadline));
            }
            Err(e) => {
                return Err(if conn.reused {
                    Failure::Io
                } else {
                    classify_connect(&e)
                })
            }
        }
    }
    Ok(waited)
}

/// One `send` without `SIGPIPE`: `WouldBlock` when the socket is full or still connecting.
#[allow(unsafe_code)]
fn send(fd: std::os::fd::RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is readable memory of `bytes.len()` bytes, borrowed for the call only.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads more of the answer and sets `read_at` to when the read returned (an offset on `clock`). A read
/// that finds nothing waits for the socket, woken at the latest by the watchdog at `deadline`.
fn read_more(
    conn: &mut Connection,
    clock: Clock,
    deadline: Duration,
    read_at: &mut Duration,
) -> Result<usize, Failure> {
    use std::os::fd::AsRawFd;
    loop {
        // `read_at` is at most one read's processing old: close enough to check the deadline.
        if *read_at >= deadline {
            return Err(Failure::Timeout);
        }
        if !std::mem::take(&mut conn.just_sent) {
            match conn.rbuf.recv(conn.stream.as_raw_fd()) {
                Ok(n) => {
                    *read_at = clock.elapsed();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    *read_at = clock.elapsed();
                    return Err(Failure::Io);
                }
            }
        }
        conn.peer_closed |= watchdog::wait(&conn.stream, &conn.deadline, clock.ns_at(deadline));
        *read_at = clock.elapsed();
    }
}

/// Reads one response. `abandon_after`: hang up, instead of reading on, once this many milestones (the
/// head, then each SSE event) have been seen.
fn read_response(
    conn: &mut Connection,
    clock: Clock,
    deadline: Duration,
    read_at: &mut Duration,
    abandon_after: Option<u32>,
    rec: &mut Record,
) -> Result<Ended, Failure> {
    // Checked only where the client would otherwise wait for more bytes: a response already complete in
    // what arrived is never abandoned.
    let hang_up = |seen: u32| abandon_after.is_some_and(|k| seen >= k);
    let head: Head = loop {
        if let Some(head) = conn
            .heads
            .parse(conn.rbuf.bytes())
            .map_err(|_| Failure::MalformedHttp)?
        {
            break head;
        }
        if hang_up(0) {
            return Ok(Ended::Abandoned);
        }
        if read_more(conn, clock, deadline, read_at)? == 0 {
            return Err(if conn.reused && conn.rbuf.is_empty() {
                Failure::Io
            } else {
                Failure::MalformedHttp
            });
        }
    };
    rec.head = Some(*read_at);
    rec.bytes += head.len as u64;
    conn.rbuf.consume(head.len);
    let mut seen = 1u32;
    let mut decoder = BodyDecoder::new(head.framing);
    let mut stream_state = StreamState::default();
    let empty_body = head.framing == Framing::Length(0);
    loop {
        if empty_body {
            break;
        }
        if !conn.rbuf.is_empty() {
            rec.first_byte.get_or_insert(*read_at);
            // Events are read where they lie in the read buffer; other bodies are collected in `body`.
            let progress = if head.event_stream && head.status == 200 {
                let mut sink = StreamSink {
                    chunks: &mut conn.chunks,
                    state: &mut stream_state,
                    rec,
                    now: *read_at,
                    events: 0,
                };
                let pending = &mut conn.events;
                let progress = decoder.feed_pieces(conn.rbuf.bytes(), |piece| {
                    pending.push_to(piece, &mut sink);
                });
                let events = sink.events;
                rec.coalesced_events += events.saturating_sub(1);
                seen = seen.saturating_add(events);
                progress
            } else {
                decoder.feed(conn.rbuf.bytes(), &mut conn.body)
            }
            .map_err(|_| Failure::MalformedHttp)?;
            let used = match progress {
                Progress::More(n) | Progress::Done(n) => n,
            };
            rec.bytes += used as u64;
            // Unused bytes are a partial chunk line: kept and fed again with the next read.
            conn.rbuf.consume(used);
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
        match read_more(conn, clock, deadline, read_at)? {
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
        finish_json(&mut conn.chunks, &conn.body, *read_at, rec)?;
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
    fn on_event(
        &mut self,
        chunks: &mut chunk::Reader,
        data: &[u8],
        now: Duration,
        rec: &mut Record,
    ) {
        if self.failure.is_some() {
            return;
        }
        if data == b"[DONE]" {
            rec.done = Some(now);
            return;
        }
        self.on_chunk(chunks.read(data), now, rec);
    }

    /// A chunk's facts (or that it was not valid), for a stream not failed so far.
    fn on_chunk(
        &mut self,
        read: Result<chunk::Facts, chunk::Invalid>,
        now: Duration,
        rec: &mut Record,
    ) {
        if rec.done.is_some() {
            self.after_done = true;
        }
        let Ok(chunk) = read else {
            self.failure = Some(Failure::MalformedSse);
            return;
        };
        if chunk.error {
            self.failure = Some(Failure::StreamError);
            return;
        }
        if let Some((prompt, completion)) = chunk.usage {
            self.usage_tokens = Some(completion);
            rec.prompt_tokens = prompt;
        }
        if !chunk.choices {
            return;
        }
        rec.first_choice.get_or_insert(now);
        if chunk.content {
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

/// The events of one read, all timed `now`, counted into `events`.
struct StreamSink<'a> {
    chunks: &'a mut chunk::Reader,
    state: &'a mut StreamState,
    rec: &'a mut Record,
    now: Duration,
    events: u32,
}

impl Sink for StreamSink<'_> {
    fn whole(&mut self, rest: &[u8]) -> Option<usize> {
        // A failed stream's events are only counted, as `on_event` does.
        if self.state.failure.is_some() {
            return None;
        }
        let (len, facts) = self.chunks.read_event(rest)?;
        self.events += 1;
        self.state.on_chunk(Ok(facts), self.now, self.rec);
        Some(len)
    }

    fn data(&mut self, data: &[u8]) {
        self.events += 1;
        self.state.on_event(self.chunks, data, self.now, self.rec);
    }
}

fn finish_json(
    chunks: &mut chunk::Reader,
    body: &[u8],
    now: Duration,
    rec: &mut Record,
) -> Result<(), Failure> {
    // The connection's reader: its last answer's shape usually fits this one.
    let chunk = chunks.read(body).map_err(|_| Failure::MalformedHttp)?;
    if chunk.error {
        return Err(Failure::StreamError);
    }
    if !chunk.content {
        return Err(Failure::NoContent);
    }
    // Without a stream there is no first token to time: only E2EL (to the end of the body) is reported.
    rec.last_token = Some(now);
    if let Some((prompt, completion)) = chunk.usage {
        rec.output_tokens = completion;
        rec.prompt_tokens = prompt;
        rec.usage_reported = true;
    } else {
        rec.output_tokens = 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Facts (or Invalid) per event with data, `[DONE]` as None.
    type Seen = Vec<Option<Result<chunk::Facts, chunk::Invalid>>>;

    /// Reads events whole where the chunk reader can, counting them; the rest split out.
    struct Whole<'a>(&'a mut chunk::Reader, &'a mut Seen, &'a mut usize);

    impl Sink for Whole<'_> {
        fn whole(&mut self, rest: &[u8]) -> Option<usize> {
            let (len, facts) = self.0.read_event(rest)?;
            self.1.push(Some(Ok(facts)));
            *self.2 += 1;
            Some(len)
        }
        fn data(&mut self, data: &[u8]) {
            let read = (data != b"[DONE]").then(|| self.0.read(data));
            self.1.push(read);
        }
    }

    /// Feeds `parts` to two readers, one reading events whole where it can: asserts both saw the same facts,
    /// and returns how many events were read whole.
    fn read_both(parts: &[&[u8]]) -> usize {
        let (mut split, mut whole) = (Seen::new(), Seen::new());
        let (mut reader_a, mut reader_b) = (chunk::Reader::default(), chunk::Reader::default());
        let (mut events_a, mut events_b) = (Events::default(), Events::default());
        let mut taken_whole = 0;
        for part in parts {
            events_a.push(part, |data| {
                split.push((data != b"[DONE]").then(|| reader_a.read(data)));
            });
            events_b.push_to(
                part,
                &mut Whole(&mut reader_b, &mut whole, &mut taken_whole),
            );
        }
        assert_eq!(split, whole, "parts {parts:?}");
        taken_whole
    }

    /// The client's sink records what the closure it replaced did (every data event through
    /// `StreamState::on_event`, counted per read): the same record, state and verdict, for `parts` taken as
    /// successive reads.
    fn sink_records_as_on_event(parts: &[&[u8]]) {
        let (mut reader_a, mut reader_b) = (chunk::Reader::default(), chunk::Reader::default());
        let (mut events_a, mut events_b) = (Events::default(), Events::default());
        let (mut state_a, mut state_b) = (StreamState::default(), StreamState::default());
        let (mut rec_a, mut rec_b) = (Record::default(), Record::default());
        for (i, part) in parts.iter().enumerate() {
            let now = Duration::from_micros(i as u64 + 1);
            let mut n = 0u32;
            events_a.push(part, |data| {
                n += 1;
                state_a.on_event(&mut reader_a, data, now, &mut rec_a);
            });
            rec_a.coalesced_events += n.saturating_sub(1);
            let mut sink = StreamSink {
                chunks: &mut reader_b,
                state: &mut state_b,
                rec: &mut rec_b,
                now,
                events: 0,
            };
            events_b.push_to(part, &mut sink);
            let n = sink.events;
            rec_b.coalesced_events += n.saturating_sub(1);
        }
        let facts = |s: &StreamState| (s.failure.clone(), s.after_done, s.usage_tokens);
        assert_eq!(facts(&state_a), facts(&state_b), "parts {parts:?}");
        let verdict_a = state_a.finish(&mut rec_a);
        let verdict_b = state_b.finish(&mut rec_b);
        assert_eq!(verdict_a, verdict_b, "parts {parts:?}");
        assert_eq!(
            format!("{rec_a:?}"),
            format!("{rec_b:?}"),
            "parts {parts:?}"
        );
    }

    /// The fuzz corpus of `loadtest_sse`, each input after a content chunk's event and as the text of a
    /// second one: events read whole give the facts of events split out and read.
    #[test]
    fn fuzz_inputs_read_whole_as_split_and_read() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
        let lead = format!("data: {chunk}\n\n").into_bytes();
        let (before, after) = chunk.split_once("Hello").unwrap();
        let mut whole = 0;
        for (_, input) in crate::sse::fuzz_inputs() {
            let as_text = [
                &lead[..],
                b"data: ",
                before.as_bytes(),
                &input,
                after.as_bytes(),
                b"\n\n",
            ]
            .concat();
            whole += read_both(&[&lead, &input]);
            whole += read_both(&[&as_text]);
            sink_records_as_on_event(&[&lead, &input]);
        }
        assert!(whole > 0, "no input was read whole");
    }

    /// Events read whole by the chunk reader (`Reader::read_event`) give the same facts, event for event,
    /// as events split out and read from their data: over a stream like the server's, with texts that need
    /// escapes or are not ASCII, and over many copies of it with a byte changed, inserted or removed near a
    /// content text or an event's end, fed in two or three pieces.
    #[test]
    fn events_read_whole_match_events_split_then_read() {
        use crate::workload::Rng;
        let head = r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"m","choices":"#;
        let content = |text: &str| {
            format!(
                r#"{head}[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}]}}"#
            )
        };
        let mut stream = format!(
            "data: {head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"
        );
        let texts = [
            "Hi",
            " there",
            "",
            " caf\u{e9}",
            r#"a\"b"#,
            r#"\n"#,
            "x",
            " \u{1f600}",
            " end",
        ];
        for (i, text) in texts.iter().enumerate() {
            let blank = if i % 3 == 2 { "\n\r\n" } else { "\n\n" };
            stream += &format!("data: {}{blank}", content(text));
        }
        // Data on two lines, joined with a line feed; then an event whose second line is not data, which
        // must not be read as the first one's shape.
        let split = |text: &str, next: &str| {
            content(text).replace(",\"finish_reason\"", &format!(",\n{next}\"finish_reason\""))
        };
        stream += &format!(
            "data: {}\n\ndata: {}\n\n",
            split("m", "data: "),
            split("n", "")
        );
        stream += &format!(
            "data: {head}[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n"
        );
        stream += &format!("data: {head}[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":9,\"total_tokens\":12}}}}\n\ndata: [DONE]\n\n");
        let stream = stream.into_bytes();

        // The unchanged stream: plain content events after a plain content event are read whole.
        assert_eq!(read_both(&[&stream]), 5);
        sink_records_as_on_event(&[&stream]);

        let bytes = [
            b'"', b'\\', b'\n', b'\r', b' ', b'a', b'}', b':', 0xc3, 0xa9, 0x80, 0x01,
        ];
        let targets: Vec<usize> = stream
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == b"\n\n" || w[0] == b'"')
            .map(|(i, _)| i)
            .collect();
        let mut rng = Rng::new(3);
        for _ in 0..20_000 {
            let mut mutated = stream.clone();
            let at = (targets[rng.range(0, targets.len() as u64 - 1) as usize] as i64
                + rng.range(0, 6) as i64
                - 3)
            .clamp(0, mutated.len() as i64 - 1) as usize;
            let byte = bytes[rng.range(0, bytes.len() as u64 - 1) as usize];
            match rng.range(0, 2) {
                0 => mutated[at] = byte,
                1 => mutated.insert(at, byte),
                _ => {
                    mutated.remove(at);
                }
            }
            let a = rng.range(0, mutated.len() as u64) as usize;
            let b = rng.range(a as u64, mutated.len() as u64) as usize;
            read_both(&[&mutated]);
            read_both(&[&mutated[..a], &mutated[a..b], &mutated[b..]]);
            sink_records_as_on_event(&[&mutated[..a], &mutated[a..b], &mutated[b..]]);
        }
    }

    /// The timeout runs from the send: a server slow to take the request and then slow to answer fails
    /// the request, although each wait alone is shorter than the timeout.
    #[test]
    fn a_slow_write_counts_against_the_timeout() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const BODY: usize = 32 << 20;
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The waits start when the request's first bytes come, so a late start of the client's coroutine
            // cannot shorten them.
            let (mut buf, mut total) = (vec![0u8; 1 << 20], 0);
            total += s.read(&mut buf).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(300));
            while total < BODY {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                }
            }
            std::thread::sleep(Duration::from_millis(300));
            let body = br#"{"choices":[{"message":{"content":"x"}}]}"#;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = s.write_all(&[head.as_bytes(), body].concat());
        });
        let timeout = Duration::from_millis(450);
        let mut conn = connect(addr, None, timeout, &Arc::default()).unwrap();
        let mut request = b"POST / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        request.resize(BODY, b'a');
        let clock = Clock::start();
        let rec = may::go!(move || {
            let mut rec = Record::default();
            exchange(&mut conn, &request, clock, timeout, None, &mut rec);
            rec
        })
        .join()
        .unwrap();
        assert_eq!(
            rec.failure,
            Some(Failure::Timeout),
            "ended after {:?}",
            rec.end - rec.sent
        );
        server.join().unwrap();
    }

    /// Runs `exchange` in a coroutine against `addr` for each of `requests`, pausing `pause` between them on
    /// one kept-alive connection; returns the records.
    fn exchanges(
        addr: SocketAddr,
        timeout: Duration,
        pause: Duration,
        requests: usize,
    ) -> Vec<Record> {
        let mut conn = connect(addr, None, timeout, &Arc::default()).unwrap();
        let request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec();
        let clock = Clock::start();
        may::go!(move || {
            let mut recs = Vec::new();
            for i in 0..requests {
                if i > 0 {
                    may::coroutine::sleep(pause);
                }
                let mut rec = Record::default();
                let keep = exchange(&mut conn, &request, clock, timeout, None, &mut rec);
                recs.push(rec);
                if !keep {
                    break;
                }
            }
            recs
        })
        .join()
        .unwrap()
    }

    /// A server that closes a kept-alive connection while it is idle, by half-closing it and holding it
    /// open (so no reset answers the next request), fails that request at once as a broken connection
    /// (which the runner retries), not as a timeout: the close's event, which came with the answer before,
    /// is not waited for again.
    #[test]
    fn a_connection_closed_while_idle_fails_at_once() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            // Late enough that the client waits for it, so one wake-up brings the answer and the close.
            std::thread::sleep(Duration::from_millis(50));
            let body = br#"{"choices":[{"message":{"content":"x"}}]}"#;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            s.write_all(&[head.as_bytes(), body].concat()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let _ = wait_done.recv();
        });
        let recs = exchanges(addr, Duration::from_secs(20), Duration::from_millis(200), 2);
        done.send(()).unwrap();
        assert_eq!(recs[0].failure, None);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].failure, Some(Failure::Io));
        assert_eq!(recs[1].bytes, 0);
        server.join().unwrap();
    }

    /// A server that keeps sending, each piece well within the timeout, cannot stretch the request past
    /// it: the deadline runs from the send, whatever arrives meanwhile.
    #[test]
    fn a_trickling_answer_times_out_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
            let _ = s.write_all(head.as_bytes());
            let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
            let chunk = [format!("{:x}\r\n", event.len()).as_bytes(), event, b"\r\n"].concat();
            // Until the client gives up and closes.
            while s.write_all(&chunk).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let recs = exchanges(addr, Duration::from_millis(400), Duration::ZERO, 1);
        assert_eq!(recs[0].failure, Some(Failure::Timeout));
        assert!(recs[0].content_events.len() >= 2, "{:?}", recs[0]);
        server.join().unwrap();
    }

    /// A 503 written the moment a connection is accepted, as a server at its connection limit does, and
    /// the connection held open: the request sent on it reads the refusal rather than timing out, though
    /// the answer may come before the client's connect has finished.
    #[test]
    fn a_reply_sent_on_accept_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const TRIES: usize = 30;
        let server = std::thread::spawn(move || {
            let mut held = Vec::new();
            for _ in 0..TRIES {
                let (mut s, _) = listener.accept().unwrap();
                let body = br#"{"error":{"message":"busy","type":"server_error","param":null,"code":null}}"#;
                let head = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                s.write_all(&[head.as_bytes(), body].concat()).unwrap();
                held.push(s);
            }
            held
        });
        for _ in 0..TRIES {
            let recs = exchanges(addr, Duration::from_secs(20), Duration::ZERO, 1);
            assert_eq!(recs[0].failure, Some(Failure::Status(503)));
        }
        drop(server.join().unwrap());
    }

    /// A server that answers 401 after the head of a large request and then drains the body, keeping the
    /// connection open: the answer, which came while the client was still sending, is read once the send
    /// is done.
    #[test]
    fn a_reply_during_a_long_send_is_read() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const BODY: usize = 16 << 20;
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let (mut buf, mut total) = (vec![0u8; 1 << 16], 0);
            total += s.read(&mut buf).unwrap_or(0);
            let body = br#"{"error":{"message":"no key","type":"invalid_request_error","param":null,"code":null}}"#;
            let head = format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(&[head.as_bytes(), body].concat()).unwrap();
            while total < BODY {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            let _ = wait_done.recv();
        });
        let mut conn = connect(addr, None, Duration::from_secs(20), &Arc::default()).unwrap();
        let mut request = b"POST / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        request.resize(BODY, b'a');
        let clock = Clock::start();
        let rec = may::go!(move || {
            let mut rec = Record::default();
            exchange(
                &mut conn,
                &request,
                clock,
                Duration::from_secs(20),
                None,
                &mut rec,
            );
            rec
        })
        .join()
        .unwrap();
        done.send(()).unwrap();
        assert_eq!(rec.failure, Some(Failure::Status(401)));
        server.join().unwrap();
    }

    /// A connection from a chosen source address leaves the port to connect (so TIME_WAIT sockets of an
    /// earlier run do not slow its bind) and still comes from that address.
    #[test]
    #[allow(unsafe_code)]
    fn chosen_sources_pick_the_port_at_connect() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let source: IpAddr = "127.0.0.2".parse().unwrap();
        let stream = connect_from(listener.local_addr().unwrap(), source).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source);
        let (mut on, mut len): (libc::c_int, libc::socklen_t) = (0, 4);
        // SAFETY: a getsockopt on a live socket into a c_int and its size.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&mut on as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, on), (0, 1));
        drop(accepted);
    }
}
