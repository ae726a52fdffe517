//! The response side of the client: HTTP/1.1 response heads (httparse), Content-Length and chunked bodies
//! decoded incrementally, and server-sent events split out of the body as they complete. Pure byte
//! handling, no sockets, so it can be tested and fuzzed alone.

use std::mem::MaybeUninit;

/// Outcome of feeding bytes to a [`BodyDecoder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed; the value is how many input bytes were used (the rest must be fed again).
    More(usize),
    /// The body is complete; the value is how many input bytes belonged to it.
    Done(usize),
}

/// Malformed framing from the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Head length in bytes.
    pub len: usize,
    /// Body framing.
    pub framing: Framing,
    /// The server will close after this response.
    pub close: bool,
    /// `Content-Type: text/event-stream`.
    pub event_stream: bool,
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// Parses a response head; `Ok(None)` when incomplete. The client reads heads through `heads::Heads`;
/// this plain form is what the tests and the fuzz target hold that to.
#[allow(dead_code)]
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Malformed> {
    parse_head_noting(buf, |_, _| {})
}

/// [`parse_head`], showing `note` each header's name and value (slices of `buf`) of a complete head.
pub fn parse_head_noting<'b>(
    buf: &'b [u8],
    mut note: impl FnMut(&str, &'b [u8]),
) -> Result<Option<Head>, Malformed> {
    // Left uninitialised: httparse writes the slots it fills (64 × 32 bytes not zeroed per answer).
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); 64];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > 64 * 1024 {
                Err(Malformed)
            } else {
                Ok(None)
            }
        }
        Err(_) => return Err(Malformed),
    };
    let status = resp.code.ok_or(Malformed)?;
    let mut framing = Framing::Close;
    let mut close = resp.version == Some(0);
    let mut event_stream = false;
    for h in resp.headers.iter() {
        note(h.name, h.value);
        // Only the headers read here need their value as text.
        let value = || {
            std::str::from_utf8(h.value)
                .map(str::trim)
                .map_err(|_| Malformed)
        };
        if h.name.eq_ignore_ascii_case("content-length") {
            if framing != Framing::Chunked {
                framing = Framing::Length(value()?.parse().map_err(|_| Malformed)?);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value()?.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= value()?.eq_ignore_ascii_case("close");
        } else if h.name.eq_ignore_ascii_case("content-type") {
            // Bytes, not a str slice: a multi-byte character at byte 17 must not panic.
            event_stream = (h.value.trim_ascii().get(..17))
                .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"));
        }
    }
    // 1xx, 204 and 304 have no body.
    if status < 200 || status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
        event_stream,
    }))
}

/// Incremental body decoder: raw bytes in, body bytes out.
#[derive(Debug)]
pub struct BodyDecoder {
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or the body (length).
    left: usize,
    state: ChunkState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data,
    DataEnd,
    Trailer,
    Done,
}

impl BodyDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        BodyDecoder {
            framing,
            left,
            state: ChunkState::Size,
        }
    }

    /// Decodes from `input`, appending body bytes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, Malformed> {
        self.feed_pieces(input, |piece| out.extend_from_slice(piece))
    }

    /// As [`feed`](Self::feed), handing over the body bytes found in `input` as they lie there, one
    /// contiguous piece at a time, instead of copying them out.
    pub fn feed_pieces(
        &mut self,
        input: &[u8],
        mut piece: impl FnMut(&[u8]),
    ) -> Result<Progress, Malformed> {
        match self.framing {
            Framing::Close => {
                piece(input);
                Ok(Progress::More(input.len()))
            }
            Framing::Length(_) => {
                let take = self.left.min(input.len());
                piece(&input[..take]);
                self.left -= take;
                Ok(if self.left == 0 {
                    Progress::Done(take)
                } else {
                    Progress::More(take)
                })
            }
            Framing::Chunked => self.feed_chunked(input, piece),
        }
    }

    fn feed_chunked(
        &mut self,
        input: &[u8],
        mut piece: impl FnMut(&[u8]),
    ) -> Result<Progress, Malformed> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Done => return Ok(Progress::Done(pos)),
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(end) = find_crlf(rest) else {
                        return if rest.len() > 4096 {
                            Err(Malformed)
                        } else {
                            Ok(Progress::More(pos))
                        };
                    };
                    let line = &rest[..end];
                    pos += end + 2;
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let digits = std::str::from_utf8(digits).map_err(|_| Malformed)?.trim();
                    let size = usize::from_str_radix(digits, 16).map_err(|_| Malformed)?;
                    self.left = size;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::Data => {
                    if rest.is_empty() {
                        return Ok(Progress::More(pos));
                    }
                    let take = self.left.min(rest.len());
                    piece(&rest[..take]);
                    pos += take;
                    self.left -= take;
                    if self.left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(Progress::More(pos));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(Malformed);
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
            }
        }
    }
}

/// The first `\r\n` in `s`.
fn find_crlf(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'\n', &s[from..]) {
        let at = from + at;
        if at > 0 && s[at - 1] == b'\r' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// Receives the events of a stream (a closure taking each event's data goes in through [`Events::push`]
/// and [`drain_events`]).
pub trait Sink {
    /// Takes the whole event at the start of `rest` (a complete event with its blank line) when it can tell
    /// it apart without a search, with the same effect as [`data`](Self::data) on that event's data; its
    /// length, or `None` to have it split out and passed to `data`.
    fn whole(&mut self, _rest: &[u8]) -> Option<usize> {
        None
    }

    /// The data of one event.
    fn data(&mut self, data: &[u8]);
}

/// A closure taking each event's data, as a [`Sink`].
// The binary reads through its own sink; the tests, the read_stream bench and the fuzz target, which
// include this file, pass closures.
#[allow(dead_code)]
struct Each<F>(F);

impl<F: FnMut(&[u8])> Sink for Each<F> {
    fn data(&mut self, data: &[u8]) {
        (self.0)(data)
    }
}

/// Splits complete SSE events out of `buf` (which keeps any partial event), calling `on_data` with each
/// event's `data` payload. Returns the number of events. Comments (`:`) and other fields are skipped;
/// multi-line data is joined with `\n` as the SSE spec says.
#[allow(dead_code)]
pub fn drain_events(buf: &mut Vec<u8>, on_data: impl FnMut(&[u8])) -> usize {
    drain_into(buf, &mut Each(on_data))
}

/// [`drain_events`] into a [`Sink`].
fn drain_into(buf: &mut Vec<u8>, sink: &mut impl Sink) -> usize {
    let (used, events) = split_events(buf, sink);
    buf.drain(..used);
    events
}

/// The body of an event stream arriving in pieces: complete events are read straight from each piece, and
/// only a partial event is kept (and copied) until its end arrives.
#[derive(Debug, Default)]
pub struct Events {
    partial: Vec<u8>,
}

impl Events {
    pub fn clear(&mut self) {
        self.partial.clear();
    }

    /// Calls `on_data` with the data of each event completed by `piece`; returns how many there were.
    #[allow(dead_code)]
    pub fn push(&mut self, piece: &[u8], on_data: impl FnMut(&[u8])) -> usize {
        self.push_to(piece, &mut Each(on_data))
    }

    /// [`push`](Self::push) into a [`Sink`].
    pub fn push_to(&mut self, piece: &[u8], sink: &mut impl Sink) -> usize {
        if self.partial.is_empty() {
            let (used, events) = split_events(piece, sink);
            self.partial.extend_from_slice(&piece[used..]);
            events
        } else {
            self.partial.extend_from_slice(piece);
            drain_into(&mut self.partial, sink)
        }
    }
}

/// The events complete in `buf`, as [`drain_events`]: (bytes they take, how many had data).
fn split_events(buf: &[u8], sink: &mut impl Sink) -> (usize, usize) {
    let mut start = 0;
    let mut events = 0;
    // Only an event of several lines needs its data joined; the usual single `data:` line is lent as is.
    let mut joined: Vec<u8> = Vec::new();
    loop {
        if let Some(n) = sink.whole(&buf[start..]) {
            start += n;
            events += 1;
            continue;
        }
        let Some((end, next, one_line)) = find_event_end(&buf[start..]) else {
            break;
        };
        let event = &buf[start..start + end];
        start += next;
        if one_line {
            let line = event.strip_suffix(b"\r").unwrap_or(event);
            if let Some(value) = line.strip_prefix(b"data:") {
                sink.data(value.strip_prefix(b" ").unwrap_or(value));
                events += 1;
            }
            continue;
        }
        joined.clear();
        let mut has_data = false;
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if has_data {
                    joined.push(b'\n');
                }
                joined.extend_from_slice(value);
                has_data = true;
            }
        }
        if has_data {
            sink.data(&joined);
            events += 1;
        }
    }
    (start, events)
}

/// (length of the event, length including its blank-line terminator, whether the event is one line).
/// Servers end events with `\n\n`
/// (standin, vLLM, OpenAI) or `\r\n\r\n` (some proxies): the first line feed followed by `\n` or `\r\n`
/// ends the event. A JSON event has no raw line feed inside, so this is usually one SIMD search.
fn find_event_end(s: &[u8]) -> Option<(usize, usize, bool)> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'\n', &s[from..]) {
        let at = from + at;
        match s.get(at + 1) {
            Some(b'\n') => return Some((at, at + 2, from == 0)),
            Some(b'\r') if s.get(at + 2) == Some(&b'\n') => return Some((at, at + 3, from == 0)),
            _ => from = at + 1,
        }
    }
    None
}

/// Every input of the `loadtest_sse` fuzz corpus and regressions, with its path: the readers' tests replay
/// them.
#[cfg(test)]
pub fn fuzz_inputs() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join("loadtest_sse")) else {
            continue;
        };
        for file in dir.filter_map(Result::ok).map(|e| e.path()) {
            let data = std::fs::read(&file).unwrap();
            inputs.push((file, data));
        }
    }
    assert!(!inputs.is_empty(), "no fuzz inputs under {root:?}");
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz corpus and regressions of `fuzz/fuzz_targets/loadtest_sse.rs`, replayed so `cargo test`
    /// catches a parser change that would crash on an input the fuzzer (or a reader) once found.
    #[test]
    fn fuzz_inputs_never_panic() {
        for (file, data) in fuzz_inputs() {
            let body = match parse_head(&data) {
                Ok(Some(head)) => {
                    assert!(head.len <= data.len(), "{file:?}");
                    let mut decoder = BodyDecoder::new(head.framing);
                    let _ = decoder.feed(&data[head.len..], &mut Vec::new());
                    &data[head.len..]
                }
                _ => &data[..],
            };
            drain_events(&mut body.to_vec(), |_| {});
        }
    }

    #[test]
    fn head_framing() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (h.status, h.framing, h.close, h.event_stream),
            (200, Framing::Chunked, false, true)
        );
        let h =
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.status, h.framing, h.close),
            (404, Framing::Length(5), true)
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(Malformed));
    }

    #[test]
    fn chunked_body_in_pieces() {
        let raw = b"5\r\nhello\r\n00000006\r\n world\r\n0\r\n\r\nNEXT";
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut out = Vec::new();
        // Feed three bytes at a time, keeping what the decoder did not use, as the client does.
        let mut pending = Vec::new();
        let mut offset = 0;
        let mut done = false;
        for piece in raw.chunks(3) {
            pending.extend_from_slice(piece);
            match d.feed(&pending, &mut out).unwrap() {
                Progress::More(used) => {
                    offset += used;
                    pending.drain(..used);
                }
                Progress::Done(used) => {
                    offset += used;
                    done = true;
                    break;
                }
            }
        }
        assert!(done);
        assert_eq!(out, b"hello world");
        assert_eq!(&raw[offset..], b"NEXT");
    }

    /// Events read from the pieces a chunked body arrives in, cut at every pair of places: the same events
    /// as from the whole body at once.
    #[test]
    fn events_from_pieces_match_the_whole_body() {
        let events = "data: {\"a\":1}\n\n: comment\n\ndata: two\ndata: lines\n\ndata: x\r\n\r\ndata: [DONE]\n\n";
        let mut whole = Vec::new();
        drain_events(&mut events.as_bytes().to_vec(), |d| whole.push(d.to_vec()));
        assert_eq!(whole.len(), 4);
        let raw = format!(
            "{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            20,
            &events[..20],
            events.len() - 20,
            &events[20..]
        );
        let raw = raw.as_bytes();
        for a in 0..raw.len() {
            for b in a..raw.len() {
                let mut decoder = BodyDecoder::new(Framing::Chunked);
                let mut buffer = Events::default();
                let mut seen = Vec::new();
                let mut pending = Vec::new();
                let mut counted = 0;
                for part in [&raw[..a], &raw[a..b], &raw[b..]] {
                    pending.extend_from_slice(part);
                    let progress = decoder
                        .feed_pieces(&pending, |piece| {
                            counted += buffer.push(piece, |d| seen.push(d.to_vec()));
                        })
                        .unwrap();
                    let (Progress::More(used) | Progress::Done(used)) = progress;
                    pending.drain(..used);
                }
                assert_eq!(seen, whole, "cut at {a} and {b}");
                assert_eq!(counted, whole.len());
            }
        }
    }

    #[test]
    fn length_body_stops_at_length() {
        let mut d = BodyDecoder::new(Framing::Length(3));
        let mut out = Vec::new();
        assert_eq!(d.feed(b"ab", &mut out), Ok(Progress::More(2)));
        assert_eq!(d.feed(b"cde", &mut out), Ok(Progress::Done(1)));
        assert_eq!(out, b"abc");
    }

    #[test]
    fn events_split_and_keep_partial() {
        let mut buf = b"data: {\"a\":1}\n\n: comment\n\ndata: x\r\n\r\ndata: [DO".to_vec();
        let mut seen = Vec::new();
        let n = drain_events(&mut buf, |d| {
            seen.push(String::from_utf8(d.to_vec()).unwrap())
        });
        assert_eq!(n, 2);
        assert_eq!(seen, vec!["{\"a\":1}", "x"]);
        assert_eq!(buf, b"data: [DO");
        buf.extend_from_slice(b"NE]\n\n");
        drain_events(&mut buf, |d| assert_eq!(d, b"[DONE]"));
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_chunk_is_malformed() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(d.feed(b"zz\r\n", &mut Vec::new()), Err(Malformed));
    }
}
