//! What every fuzz target asserts, one function per target, over the real library entry points. Shared by
//! the libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and the `fuzz_regressions` integration test, which
//! replays `fuzz/corpus/**` and `fuzz/regressions/**` in plain `cargo test`; so this file must build
//! against the root package's own dependencies alone (`standin`, `serde`, `serde_json`).
//!
//! Each input is used whole (a request head, a body, an SSE stream), so the seeds stay real traffic. Where a
//! target needs a choice (where to split the input, which limit), it comes from [`Knobs`], a hash of the
//! input: any mutation moves it, and every choice stays reproducible from the file alone.
//!
//! Incremental decoders are fed twice, whole and in pieces, and must agree: the socket decides the pieces.

use std::time::Instant;

use serde_json::Value;
use standin::http::body::ChunkedDecoder;
use standin::http::request::{self, Framing, Status};
use standin::http::{HttpError, Limits, Request};
use standin::models::echo::Echo;
use standin::openai::response::{self, Meta};
use standin::openai::{completions, embeddings as wire, json, ApiError};
use standin::upstream::framing::{self, BodyDecoder};
use standin::upstream::normalize::MAX_MESSAGE_CHARS;
use standin::upstream::sse::{EventTooLarge, SseParser, DEFAULT_MAX_EVENT_BYTES};
use standin::upstream::{error_envelope, fix_completion, Endpoint, StreamFixer};

/// The server's default `--max-json-depth`.
const MAX_DEPTH: usize = standin::config::DEFAULT_MAX_JSON_DEPTH;

/// Above this many output choices (or embedding floats) a reply is generated but not serialized: the
/// serializer is the same for every choice, and a 20 MB reply per input would stall the fuzzer.
const MAX_WRITTEN_ITEMS: usize = 4096;

/// Pseudo-random choices derived from the input (FNV-1a), so a corpus file replays exactly.
struct Knobs(u64);

impl Knobs {
    fn new(data: &[u8]) -> Self {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for &b in data {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Knobs(hash)
    }

    /// A value in `0..n` (n > 0); each call uses fresh bits.
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        self.0 = self.0.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (self.0 >> 11) as usize % n
    }

    /// Cut points splitting `len` bytes into up to `pieces` pieces, ascending, ends excluded.
    fn cuts(&mut self, len: usize, pieces: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (1..pieces).map(|_| self.below(len + 1)).collect();
        cuts.sort_unstable();
        cuts
    }
}

/// `data` cut at `cuts` (ascending offsets).
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        out.push(&data[start..cut]);
        start = cut;
    }
    out.push(&data[start..]);
    out
}

/// `standin::http::request::parse_head` with the default limits: never panics; a complete head lies inside
/// the input, parses the same from exactly its own bytes, and its spans slice the buffer.
pub fn request_head(data: &[u8]) {
    let limits = Limits::default();
    let mut spans = Vec::new();
    let Ok(Status::Complete(head)) = request::parse_head(data, &limits, &mut spans) else {
        return;
    };
    assert!(head.len <= data.len() && head.len <= limits.max_header_bytes);
    assert!(spans.len() <= limits.max_headers);
    assert!(head.minor_version <= 1);
    if head.framing == Framing::Chunked {
        assert_eq!(head.minor_version, 1, "chunked needs HTTP/1.1");
    }
    let own = &data[..head.len];
    let mut again = Vec::new();
    match request::parse_head(own, &limits, &mut again) {
        Ok(Status::Complete(h)) => assert_eq!((h.len, h.framing), (head.len, head.framing)),
        other => panic!("head parses from the whole input but not from its own bytes: {other:?}"),
    }
    // Request's accessors slice the buffer by the recorded spans: out of range would panic here. A name no
    // header can have makes `header` slice every header name.
    let req = Request::new(own, &head, &spans, b"", Instant::now());
    assert!(!req.method_str().is_empty());
    assert!(req.target().starts_with('/') || req.target() == "*");
    assert!(req.path().len() <= req.target().len());
    assert_eq!(req.header("\u{0}"), None);
    for name in [
        "content-length",
        "transfer-encoding",
        "connection",
        "host",
        "authorization",
    ] {
        if let Some(value) = req.header(name) {
            assert!(value.len() < own.len());
        }
    }
}

/// A decoder fed whole and in pieces must accept or refuse alike, and decode the same when it accepts. Which
/// refusal may differ: a long trailer with a bare LF further on is "too large" read in pieces and "bare LF"
/// read whole, and both are right.
pub fn same_outcome<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    whole: &Result<T, E>,
    split: &Result<T, E>,
) {
    match (whole, split) {
        (Ok(whole), Ok(split)) => assert_eq!(whole, split, "decoding depends on the split"),
        (Err(_), Err(_)) => {}
        _ => panic!("accepted one way, refused the other: whole {whole:?}, split {split:?}"),
    }
}

/// What a chunked decoder produced: the decoded bytes, bytes consumed, whether the body ended, or the error.
type Dechunked = Result<(Vec<u8>, usize, bool), HttpError>;

/// Feeds `parts` in order as `conn.rs` does: unconsumed bytes are kept and offered again with the next part.
fn dechunk(parts: &[&[u8]], limits: &Limits) -> Dechunked {
    let mut decoder = ChunkedDecoder::default();
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for part in parts {
        pending.extend_from_slice(part);
        let used = decoder.decode(&pending, &mut out, limits);
        assert!(out.len() <= limits.max_body_bytes, "body limit passed");
        let used = used?;
        assert!(used <= pending.len());
        pending.drain(..used);
        consumed += used;
        if decoder.is_done() {
            break;
        }
    }
    Ok((out, consumed, decoder.is_done()))
}

/// `standin::http::body::ChunkedDecoder`, the input split in two at an input-derived point and fed in two
/// calls, under the default limits and tight ones: never panics, never decodes more than it was given nor
/// past the limit, and agrees with the same input fed whole.
pub fn chunked_body(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let tight = Limits {
        max_body_bytes: 64,
        max_header_bytes: 256,
        ..Limits::default()
    };
    for limits in [Limits::default(), tight] {
        let whole = dechunk(&[data], &limits);
        let split = dechunk(&pieces(data, &knobs.cuts(data.len(), 2)), &limits);
        if let Ok((out, consumed, _)) = &whole {
            assert!(out.len() <= *consumed && *consumed <= data.len());
        }
        same_outcome(&whole, &split);
    }
}

/// The envelope every client-visible error is rendered as.
fn check_api_error(error: &ApiError) {
    let mut out = Vec::new();
    error.write_json(&mut out);
    check_envelope(&out);
}

/// `{"error":{"message": non-empty string, "type": non-empty string, "param","code": string or null}}`.
fn check_envelope(bytes: &[u8]) -> String {
    let value: Value = serde_json::from_slice(bytes).expect("error envelope is JSON");
    let error = value
        .get("error")
        .and_then(Value::as_object)
        .expect("an `error` object");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .expect("a string message");
    assert!(!message.is_empty(), "empty error message");
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .expect("a string type");
    assert!(!kind.is_empty(), "empty error type");
    for field in ["param", "code"] {
        let field = error.get(field).expect("param and code present");
        assert!(
            field.is_string() || field.is_null(),
            "{field} not string or null"
        );
    }
    message.to_string()
}

/// How deep a JSON text nests arrays and objects, counted as `check_depth` counts: every member, duplicate
/// keys included (a `Value` keeps only the last of them, so it can be shallower than the text).
struct Depth(usize);

impl<'de> serde::Deserialize<'de> for Depth {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DepthVisitor)
    }
}

struct DepthVisitor;

impl<'de> serde::de::Visitor<'de> for DepthVisitor {
    type Value = Depth;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_str<E>(self, _: &str) -> Result<Depth, E> {
        Ok(Depth(0))
    }
    fn visit_unit<E>(self) -> Result<Depth, E> {
        Ok(Depth(0))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Depth, A::Error> {
        let mut deepest = 0;
        while let Some(Depth(d)) = seq.next_element()? {
            deepest = deepest.max(d);
        }
        Ok(Depth(deepest + 1))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Depth, A::Error> {
        let mut deepest = 0;
        while let Some((serde::de::IgnoredAny, Depth(d))) = map.next_entry()? {
            deepest = deepest.max(d);
        }
        Ok(Depth(deepest + 1))
    }
}

/// `standin::openai::json::check_depth` on valid JSON agrees with the real nesting depth.
fn check_depth_consistency(data: &[u8]) {
    // serde_json refuses nesting past 128 itself, so this parse is bounded. `Value` first: it checks UTF-8
    // everywhere, where a visitor that ignores keys would not.
    if serde_json::from_slice::<Value>(data).is_err() {
        return;
    }
    let Ok(Depth(real)) = serde_json::from_slice::<Depth>(data) else {
        return;
    };
    assert!(
        json::check_depth(data, real).is_ok(),
        "check_depth over-counts"
    );
    if real > 0 {
        assert!(
            json::check_depth(data, real - 1).is_err(),
            "check_depth under-counts"
        );
    }
}

/// `standin::openai::chat::parse` at depth 64: never panics; gives what the full parser gives (its one-pass
/// reader for the common shape included); an error renders as the envelope; a request it accepts runs
/// through the echo model, tool calls and the reply writer without panicking, and the reply is JSON with
/// `n` choices.
pub fn chat_request(data: &[u8]) {
    check_depth_consistency(data);
    assert_eq!(
        format!("{:?}", standin::openai::chat::parse(data, MAX_DEPTH)),
        format!("{:?}", standin::openai::chat::parse_full(data, MAX_DEPTH)),
        "the one-pass reader disagrees with the full parser"
    );
    let req = match standin::openai::chat::parse(data, MAX_DEPTH) {
        Ok(req) => req,
        Err(error) => return check_api_error(&error),
    };
    assert!(!req.messages.is_empty() && req.n >= 1);
    let (generation, usage) = standin::completion::generate(&Echo, &req, None);
    let _ = standin::completion::generate(&Echo, &req, Some(7));
    if let Some(max) = req.max_tokens {
        assert!(generation.tokens <= max as usize, "max_tokens not applied");
    }
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    let _ = standin::completion::tool_calls(&req);
    if req.n as usize <= MAX_WRITTEN_ITEMS {
        let meta = Meta {
            id: "chatcmpl-fuzz",
            created: 0,
            model: &req.model,
        };
        let mut out = Vec::new();
        let finish = generation.finish.as_str();
        response::write_completion(&mut out, &meta, req.n, &generation.text, finish, usage);
        let reply: Value = serde_json::from_slice(&out).expect("chat reply is JSON");
        assert_eq!(
            reply["choices"].as_array().map(Vec::len),
            Some(req.n as usize)
        );
        assert_eq!(reply["model"].as_str(), Some(&*req.model));
    }
}

/// `standin::openai::completions::parse` at depth 64: as [`chat_request`], through `legacy::generate` and
/// the `text_completion` writer (one choice per prompt and `n`).
pub fn completions_request(data: &[u8]) {
    let req = match completions::parse(data, MAX_DEPTH) {
        Ok(req) => req,
        Err(error) => return check_api_error(&error),
    };
    assert!(!req.prompts.is_empty() && req.n >= 1);
    let (generations, usage) = standin::legacy::generate(&Echo, &req, None);
    assert_eq!(generations.len(), req.prompts.len());
    for generation in &generations {
        assert!(
            generation.tokens <= req.max_tokens as usize,
            "max_tokens not applied"
        );
    }
    assert_eq!(usage.prompt_tokens, standin::legacy::prompt_tokens(&req));
    let choices = req.prompts.len() * req.n as usize;
    if choices <= MAX_WRITTEN_ITEMS {
        let answers: Vec<completions::Answer<'_>> = (req.prompts.iter().zip(&generations))
            .map(|(prompt, generation)| completions::Answer {
                echo: if req.echo { &prompt.text } else { "" },
                text: &generation.text,
                finish_reason: generation.finish.as_str(),
            })
            .collect();
        let meta = Meta {
            id: "cmpl-fuzz",
            created: 0,
            model: &req.model,
        };
        let mut out = Vec::new();
        completions::write_completion(&mut out, &meta, &answers, req.n, usage);
        let reply: Value = serde_json::from_slice(&out).expect("text_completion is JSON");
        assert_eq!(reply["choices"].as_array().map(Vec::len), Some(choices));
    }
}

/// `standin::openai::embeddings::parse` at depth 64: as [`chat_request`], through `embeddings::write`; the
/// reply is JSON with one embedding per input.
pub fn embeddings_request(data: &[u8]) {
    let req = match wire::parse(data, MAX_DEPTH) {
        Ok(req) => req,
        Err(error) => return check_api_error(&error),
    };
    assert!(!req.inputs.is_empty());
    let _ = standin::embeddings::usage(&req);
    if req.inputs.len() * req.dimensions as usize <= MAX_WRITTEN_ITEMS * 64 {
        let mut out = Vec::new();
        standin::embeddings::write(&req, &mut out);
        let reply: Value = serde_json::from_slice(&out).expect("embeddings reply is JSON");
        assert_eq!(
            reply["data"].as_array().map(Vec::len),
            Some(req.inputs.len())
        );
    }
}

/// Every event's data from `parts` fed in order, then `finish`.
fn sse_events(parts: &[&[u8]], max_event: usize) -> Result<Vec<Vec<u8>>, EventTooLarge> {
    let mut parser = SseParser::new(max_event);
    let mut events = Vec::new();
    for part in parts {
        parser.feed(part);
        while let Some(data) = parser.next_event()? {
            assert!(data.len() <= max_event, "event data past the bound");
            events.push(data.to_vec());
        }
    }
    if let Some(data) = parser.finish()? {
        events.push(data.to_vec());
    }
    assert_eq!(parser.finish(), Ok(None), "finish hands an event on twice");
    Ok(events)
}

/// One payload a [`StreamFixer`] forwards: `[DONE]`, or a JSON object (an error one in envelope shape).
fn check_forwarded(payload: &[u8]) {
    if payload == b"[DONE]" {
        return;
    }
    let value: Value = serde_json::from_slice(payload).expect("forwarded payload is JSON");
    let object = value.as_object().expect("forwarded payload is an object");
    if object.contains_key("error") && !object.contains_key("choices") {
        check_envelope(payload);
    }
}

/// `standin::upstream::sse::SseParser` over the input as an upstream stream, fed whole and in up to four
/// pieces (the pieces may fail earlier, on a long line in flight, but never yield other events), then every
/// event through `StreamFixer` (chat and legacy), `error_envelope` and `fix_completion`.
pub fn upstream_sse(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let max_event = [64, 1024, DEFAULT_MAX_EVENT_BYTES][knobs.below(3)];
    let whole = sse_events(&[data], max_event);
    let cuts = knobs.cuts(data.len(), 4);
    let split = sse_events(&pieces(data, &cuts), max_event);
    if let Ok(split) = &split {
        assert_eq!(
            whole.as_ref(),
            Ok(split),
            "events depend on where the stream was split"
        );
    }
    let events = whole.unwrap_or_default();
    let include_usage = knobs.below(2) == 0;
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        let mut fixer = StreamFixer::new(endpoint, include_usage, 3);
        let mut out = Vec::new();
        for event in &events {
            let before = out.len();
            fixer.push(event, &mut out);
            out[before..].iter().for_each(|p| check_forwarded(p));
            let _ = fixer.counted_tokens();
        }
        let before = out.len();
        fixer.finish(&mut out);
        out[before..].iter().for_each(|p| check_forwarded(p));
        assert!(fixer.is_finished());
        let done = out.iter().filter(|p| p.as_slice() == b"[DONE]").count();
        assert!(done <= 1, "[DONE] sent twice");
        if done == 1 {
            assert_eq!(
                out.last().map(Vec::as_slice),
                Some(&b"[DONE]"[..]),
                "data after [DONE]"
            );
        }
    }
    let status = [400, 401, 404, 422, 429, 500, 502, 503][knobs.below(8)];
    check_upstream_body(status, data);
    for event in events.iter().take(8) {
        check_upstream_body(status, event);
    }
}

/// `error_envelope` and `fix_completion` over one upstream body.
fn check_upstream_body(status: u16, body: &[u8]) {
    let message = check_envelope(&error_envelope(status, body));
    // The cut keeps MAX_MESSAGE_CHARS characters and adds an ellipsis.
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS + 1,
        "message not cut"
    );
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        let Some(fixed) = fix_completion(endpoint, body, 5) else {
            continue;
        };
        let value: Value = serde_json::from_slice(&fixed).expect("fixed completion is JSON");
        assert!(value["object"].as_str().is_some_and(|s| !s.is_empty()));
        let choices = value["choices"].as_array().expect("choices array");
        for choice in choices.iter().filter_map(Value::as_object) {
            assert!(choice.contains_key("index") && choice.contains_key("finish_reason"));
            assert_ne!(choice["finish_reason"].as_str(), Some(""));
        }
        assert!(
            value.get("usage").is_some_and(|u| !u.is_null()),
            "usage missing"
        );
    }
}

/// A body decoder's result over `parts`: body bytes, bytes consumed, done.
type Decoded = Result<(Vec<u8>, usize, bool), framing::Malformed>;

fn decode_body(framing: framing::Framing, parts: &[&[u8]], eof: bool) -> Decoded {
    let mut decoder = BodyDecoder::new(framing);
    assert_eq!(decoder.framing(), framing);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for part in parts {
        pending.extend_from_slice(part);
        let used = decoder.decode(&pending, &mut out)?;
        assert!(used <= pending.len());
        pending.drain(..used);
        consumed += used;
    }
    if eof && !decoder.is_done() {
        decoder.finish_at_eof()?;
        assert!(decoder.is_done());
    }
    Ok((out, consumed, decoder.is_done()))
}

/// `standin::upstream::framing::{parse_head, BodyDecoder}` over the input as an upstream response: the head
/// lies inside the input; its body (or, without a head, the input as a chunked body) decodes the same whole
/// and in pieces, never to more bytes than given nor past a Content-Length.
pub fn upstream_framing(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let head_request = knobs.below(4) == 0;
    let (framing, body) = match framing::parse_head(data, head_request) {
        Ok(Some(head)) => {
            assert!(head.len <= data.len() && head.len <= framing::MAX_HEAD_BYTES);
            assert!(head.status <= 999);
            assert!(head.headers.len() <= framing::MAX_HEADERS);
            for (name, _) in &head.headers {
                assert_eq!(name, &name.to_ascii_lowercase());
            }
            if head.framing == framing::Framing::Close {
                assert!(!head.keep_alive);
            }
            (head.framing, &data[head.len..])
        }
        Ok(None) | Err(_) => (framing::Framing::Chunked, data),
    };
    let eof = knobs.below(2) == 0;
    let whole = decode_body(framing, &[body], eof);
    let split = decode_body(framing, &pieces(body, &knobs.cuts(body.len(), 3)), eof);
    same_outcome(&whole, &split);
    if let Ok((out, consumed, _)) = &whole {
        assert!(out.len() <= *consumed && *consumed <= body.len());
        if let framing::Framing::Length(n) = framing {
            assert!(out.len() as u64 <= n);
        }
    }
}
