//! The load-test harness's response side (`loadtest/src/sse.rs`, `heads.rs` and `chunk.rs`, compiled here
//! from their source because `standin-load` is binary-only): head parsing (the comparing head reader held
//! to httparse's answers), the body decoder, the SSE event splitter, and the chunk reader (held to
//! serde_json's answers).

#[allow(dead_code)]
#[path = "../../loadtest/src/sse.rs"]
mod sse;

#[allow(dead_code)]
#[path = "../../loadtest/src/heads.rs"]
mod heads;

#[allow(dead_code)]
#[path = "../../loadtest/src/chunk.rs"]
mod chunk;

use sse::{BodyDecoder, Framing, Progress};

/// Pseudo-random choices from the input (FNV-1a), as in [`crate::checks`].
fn knob(data: &[u8], salt: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for &b in data {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Every event's data after feeding `parts` in order, as the client does (a buffer keeps partial events).
fn events(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let mut pieces = sse::Events::default();
    let mut from_pieces = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        let before = seen.len();
        let n = sse::drain_events(&mut buf, |data| seen.push(data.to_vec()));
        assert_eq!(n, seen.len() - before, "drain_events miscounts");
        let before = from_pieces.len();
        let n = pieces.push(part, |data| from_pieces.push(data.to_vec()));
        assert_eq!(n, from_pieces.len() - before, "Events::push miscounts");
    }
    assert_eq!(
        seen, from_pieces,
        "events read in place differ from the buffered ones"
    );
    seen
}

/// A body decoder's result over `parts`: body bytes, bytes consumed, done.
fn decode(framing: Framing, parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), sse::Malformed> {
    let mut decoder = BodyDecoder::new(framing);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for part in parts {
        pending.extend_from_slice(part);
        let (used, done) = match decoder.feed(&pending, &mut out)? {
            Progress::More(used) => (used, false),
            Progress::Done(used) => (used, true),
        };
        assert!(used <= pending.len());
        pending.drain(..used);
        consumed += used;
        if done {
            return Ok((out, consumed, true));
        }
    }
    Ok((out, consumed, false))
}

/// The input as a response the harness reads: its head parses without panicking and lies inside the input;
/// the body decodes the same whole and split in two, never to more bytes than given nor past a
/// Content-Length; the SSE splitter yields the same events whatever the split.
pub fn sse(data: &[u8]) {
    let cut = (knob(data, 1) % (data.len() as u64 + 1)) as usize;
    let (framing, body) = match sse::parse_head(data) {
        Ok(Some(head)) => {
            assert!(head.len <= data.len());
            (head.framing, &data[head.len..])
        }
        Ok(None) | Err(_) => (Framing::Chunked, data),
    };
    let body_cut = cut.min(body.len());
    let whole = decode(framing, &[body]);
    let split = decode(framing, &[&body[..body_cut], &body[body_cut..]]);
    crate::checks::same_outcome(&whole, &split);
    if let Ok((out, consumed, _)) = &whole {
        assert!(out.len() <= *consumed && *consumed <= body.len());
        if let Framing::Length(n) = framing {
            assert!(out.len() <= n);
        }
    }
    let all = events(&[data]);
    assert_eq!(
        all,
        events(&[&data[..cut], &data[cut..]]),
        "events depend on the split"
    );
    if data.len() <= 512 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(all, events(&bytes), "events differ when fed byte by byte");
    }
    chunks(data, &all);
    whole_events(data, cut);
    heads(data);
}

/// A head the connection's head reader remembers before each check, so its comparison is exercised.
const HEAD: &str = "HTTP/1.1 200 OK\r\nDate: Thu, 26 Nov 2026 10:01:30 GMT\r\nContent-Type: application/json\r\n\
Content-Length: 396\r\nx-request-id: req_1\r\n\r\n";

/// The head reader answers as `parse_head` does: for the input, and for the input put in place of the
/// remembered head's date, request id or length.
fn heads(data: &[u8]) {
    let splice = |part: &str| {
        let (before, after) = HEAD.split_once(part).unwrap();
        [before.as_bytes(), data, after.as_bytes()].concat()
    };
    let spliced = [splice("10:01:30"), splice("req_1"), splice("396")];
    for input in [data].into_iter().chain(spliced.iter().map(Vec::as_slice)) {
        let mut reader = heads::Heads::default();
        assert!(reader.parse(HEAD.as_bytes()).is_ok());
        assert_eq!(
            reader.parse(input),
            sse::parse_head(input),
            "head reader disagrees with parse_head"
        );
    }
}

/// Chunks the chunk reader remembers before each check, so its comparisons with remembered shapes are
/// exercised: a content chunk, and a usage chunk (its token counts are free parts too).
const CONTENT_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
const USAGE_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;

/// The chunk reader answers as serde_json does: for each event, for the input itself, and for the input
/// put in place of a remembered chunk's content text, id, or completion token count.
fn chunks(data: &[u8], events: &[Vec<u8>]) {
    let splice = |chunk: &str, part: &str| {
        let (before, after) = chunk.split_once(part).unwrap();
        [before.as_bytes(), data, after.as_bytes()].concat()
    };
    let spliced = [
        splice(CONTENT_CHUNK, "Hello"),
        splice(CONTENT_CHUNK, "chatcmpl-1"),
        splice(USAGE_CHUNK, "12"),
    ];
    let bodies = events.iter().map(Vec::as_slice).chain([data]);
    for body in bodies.chain(spliced.iter().map(Vec::as_slice)) {
        let expected = chunk::by_serde(body);
        assert_eq!(
            chunk::read(body),
            expected,
            "scanner disagrees with serde_json"
        );
        let mut reader = chunk::Reader::default();
        assert!(reader.read(USAGE_CHUNK.as_bytes()).is_ok());
        assert!(reader.read(CONTENT_CHUNK.as_bytes()).is_ok());
        assert_eq!(
            reader.read(body),
            expected,
            "chunk reader disagrees with serde_json"
        );
    }
}

/// Facts per event with data (`[DONE]` as `None`), as the client keeps them.
type Seen = Vec<Option<Result<chunk::Facts, chunk::Invalid>>>;

/// Reads events whole where the chunk reader can (`Reader::read_event`), the rest split out.
struct Whole<'a>(&'a mut chunk::Reader, &'a mut Seen);

impl sse::Sink for Whole<'_> {
    fn whole(&mut self, rest: &[u8]) -> Option<usize> {
        let (len, facts) = self.0.read_event(rest)?;
        self.1.push(Some(Ok(facts)));
        Some(len)
    }

    fn data(&mut self, data: &[u8]) {
        self.1.push((data != b"[DONE]").then(|| self.0.read(data)));
    }
}

/// Events read whole give the facts that splitting them out and reading their data gives: for the input
/// after a content chunk's event, and for the input as the text of a second one, whole and cut at `cut`.
fn whole_events(data: &[u8], cut: usize) {
    let lead = format!("data: {CONTENT_CHUNK}\n\n").into_bytes();
    let (before, after) = CONTENT_CHUNK.split_once("Hello").unwrap();
    let as_text = [
        lead.as_slice(),
        b"data: ",
        before.as_bytes(),
        data,
        after.as_bytes(),
        b"\n\n",
    ]
    .concat();
    for stream in [[lead.as_slice(), data].concat(), as_text] {
        let at = (lead.len() + cut).min(stream.len());
        for parts in [vec![stream.as_slice()], vec![&stream[..at], &stream[at..]]] {
            let (mut split, mut whole) = (Seen::new(), Seen::new());
            let (mut reader_a, mut reader_b) = (chunk::Reader::default(), chunk::Reader::default());
            let (mut events_a, mut events_b) = (sse::Events::default(), sse::Events::default());
            for part in &parts {
                events_a.push(part, |data| {
                    split.push((data != b"[DONE]").then(|| reader_a.read(data)));
                });
                events_b.push_to(part, &mut Whole(&mut reader_b, &mut whole));
            }
            assert_eq!(split, whole, "events read whole differ from events split and read");
        }
    }
}
