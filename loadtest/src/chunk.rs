//! What the harness reads from a stream chunk or a JSON response: whether it has choices, whether one
//! carries content, its usage, and whether it is an error object. A one-pass scanner reads the common shape
//! without building anything; whatever it is not sure of goes to serde_json, which defines the answer (the
//! differential tests below hold the scanner to it). At 20,000 events/s per core the parse is most of the
//! harness's user time, and the harness must never be the bottleneck.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

// The JSON cursor the server's one-pass request reader uses too (the harness does not link the server).
#[path = "../../src/openai/cursor.rs"]
mod cursor;
use cursor::{plain_run_end, Cursor};

/// The facts the harness needs from one chunk or response body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// `choices` had at least one member.
    pub choices: bool,
    /// A choice carried non-empty content: of `delta.content`, `message.content` and `text`, the first
    /// present (not null) one is non-empty.
    pub content: bool,
    /// `(prompt_tokens, completion_tokens)` when `usage` was an object.
    pub usage: Option<(u64, u64)>,
    /// `error` was present and not null.
    pub error: bool,
}

/// The body was not JSON of the expected shape.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

/// Reads `data`: the scanner when it is sure, serde_json otherwise.
// The binary reads through `Reader`; the read_stream bench and the fuzz target, which include this file, call
// this too.
#[allow(dead_code)]
pub fn read(data: &[u8]) -> Result<Facts, Invalid> {
    match scan(data, None) {
        Some((facts, _)) => Ok(facts),
        None => by_serde(data),
    }
}

/// Chunk shapes a run's readers share. A server's streams have a handful (role, content, finish, usage
/// chunks, and one answer shape without a stream); the slots fill with the first ones seen and stay.
const SLOTS: usize = 16;

/// The shapes every connection to one server learns into and reads from. Kept once, not per connection:
/// per-connection copies cost about 2.6 KB each (the harness's peak RSS at 10,000 streams fell from 267 to
/// 242 MB). A slot is written once and then only read, so readers on different workers share it without
/// locks.
#[derive(Debug, Default)]
pub struct Shapes {
    slots: [OnceLock<Shape>; SLOTS],
    /// Slots filled so far (a hint: a slot below it is always filled).
    filled: AtomicUsize,
}

impl Shapes {
    fn get(&self, i: usize) -> Option<&Shape> {
        self.slots.get(i)?.get()
    }

    /// Learns a scanned chunk's shape into the first free slot, unless all are taken.
    fn learn(&self, shape: Shape) -> Option<usize> {
        let mut shape = shape;
        for i in self.filled.load(Ordering::Acquire)..SLOTS {
            match self.slots[i].set(shape) {
                Ok(()) => {
                    self.filled.fetch_max(i + 1, Ordering::AcqRel);
                    return Some(i);
                }
                // Another reader filled it first: ours goes to the next.
                Err(back) => shape = back,
            }
        }
        None
    }
}

/// Reads the chunks of one connection's streams through a run's [`Shapes`]. A chunk that differs from a
/// shape only inside value strings and numbers (the id, `created`, the content text, the token counts) is
/// answered by comparing the bytes between those and reading just the ones a fact depends on: whether the
/// content text is empty, and the counts. A chunk that differs from the connection's previous one only in
/// its content text is answered by two comparisons. Everything else is scanned.
#[derive(Debug)]
pub struct Reader {
    shapes: Arc<Shapes>,
    /// The slot the last chunk matched or was learned into.
    last: Option<usize>,
    /// Per slot, the slot matched right after it last time (`NONE` when unknown).
    next: [u8; SLOTS],
    /// The previous chunk, its facts and its content text's span, for the comparison around the content.
    prev: Vec<u8>,
    prev_facts: Facts,
    prev_content: Option<(usize, usize)>,
    /// `prev` has no line feed and does not end with a carriage return: it could be the data of a one-line
    /// event exactly as sent, which [`Reader::read_event`] relies on. Found out on its first call after
    /// `prev` changes (`None` until then), so JSON answers never pay for it.
    prev_one_line: Option<bool>,
    /// Scratch: the free parts of the chunk being read.
    spans: Vec<Span>,
}

const NONE: u8 = u8::MAX;

/// Where a chunk's content text lies (between its quotes), when that one string decides `content`.
type ContentAt = Option<(usize, usize)>;

/// A scanned chunk and where its free parts lie, in order.
#[derive(Debug, Default)]
struct Shape {
    bytes: Vec<u8>,
    facts: Facts,
    spans: Vec<Span>,
}

/// A part of a chunk that may differ from its shape's: a string's text (between the quotes) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    free: Free,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Free {
    /// A value string the facts ignore.
    Text,
    /// The string whose emptiness decides `content`.
    Content,
    /// A number the facts ignore.
    Number,
    /// `usage.prompt_tokens` or `usage.completion_tokens`.
    Prompt,
    Completion,
}

impl Default for Reader {
    /// A reader with shapes of its own.
    fn default() -> Self {
        Reader::new(Arc::default())
    }
}

impl Reader {
    /// A reader learning into and reading from `shapes`.
    pub fn new(shapes: Arc<Shapes>) -> Self {
        Reader {
            shapes,
            last: None,
            next: [NONE; SLOTS],
            prev: Vec::new(),
            prev_facts: Facts::default(),
            prev_content: None,
            prev_one_line: None,
            spans: Vec::new(),
        }
    }

    /// Reads one chunk, as [`read`] would.
    pub fn read(&mut self, data: &[u8]) -> Result<Facts, Invalid> {
        if let Some(facts) = self.around_content(data) {
            return Ok(facts);
        }
        if let Some((at, facts, content)) = self.match_shape(data) {
            if let Some(last) = self.last.filter(|&l| l != at) {
                self.next[last] = at as u8;
            }
            self.last = Some(at);
            self.keep(data, facts, content);
            return Ok(facts);
        }
        self.spans.clear();
        match scan(data, Some(&mut self.spans)) {
            Some((facts, content)) => {
                self.learn(data, facts, content);
                self.keep(data, facts, content);
                Ok(facts)
            }
            None => {
                self.last = None;
                self.prev_content = None;
                by_serde(data)
            }
        }
    }

    /// Keeps `data` as the previous chunk, so the next of its stream (same id) compares around the content
    /// text alone.
    fn keep(&mut self, data: &[u8], facts: Facts, content: Option<(usize, usize)>) {
        self.prev.clear();
        self.prev.extend_from_slice(data);
        self.prev_facts = facts;
        self.prev_content = content;
        self.prev_one_line = None;
    }

    /// A whole SSE event at the start of `rest` whose data is the previous chunk with other content text:
    /// `data: `, the previous chunk's bytes before its text, text that needs no escapes, the bytes after, and
    /// the blank line (`\n\n` or `\n\r\n`). Its length and facts, as splitting the event out and calling
    /// [`read`](Self::read) on its data would give; `None` when unsure (the caller then does just that). In
    /// a stream most events are such, and this reads each in one pass: no search for the event's end.
    pub fn read_event(&mut self, rest: &[u8]) -> Option<(usize, Facts)> {
        const DATA: &[u8] = b"data: ";
        let (start, end) = self.prev_content?;
        let prev = &self.prev;
        let one_line = *self.prev_one_line.get_or_insert_with(|| {
            memchr::memchr(b'\n', prev).is_none() && prev.last() != Some(&b'\r')
        });
        if !one_line {
            return None;
        }
        let data = rest.strip_prefix(DATA)?;
        if data.len() < start || data[..start] != self.prev[..start] {
            return None;
        }
        // The text ends at the first quote, backslash or control byte: the tail must start there.
        let text_end = plain_run_end(data, start);
        let tail = &self.prev[end..];
        let after = text_end + tail.len();
        if data.len() < after || data[text_end..after] != *tail {
            return None;
        }
        let blank = match data[after..] {
            [b'\n', b'\n', ..] => 2,
            [b'\n', b'\r', b'\n', ..] => 3,
            _ => return None,
        };
        let text = &data[start..text_end];
        if !is_utf8(text) {
            return None;
        }
        Some((DATA.len() + after + blank, self.with_text(text)))
    }

    /// `data` is the previous chunk with other text in its content string: everything before and after the
    /// string's text is identical, and the new text needs no escapes. The common case within a stream, and
    /// two comparisons.
    fn around_content(&self, data: &[u8]) -> Option<Facts> {
        let (start, end) = self.prev_content?;
        let tail = &self.prev[end..];
        if data.len() < start + tail.len() {
            return None;
        }
        let text_end = data.len() - tail.len();
        if data[..start] != self.prev[..start] || data[text_end..] != *tail {
            return None;
        }
        let text = plain_text(data, start, text_end)?;
        Some(self.with_text(text))
    }

    /// The previous chunk's facts for a chunk like it with content `text`.
    fn with_text(&self, text: &[u8]) -> Facts {
        Facts {
            content: !text.is_empty(),
            ..self.prev_facts
        }
    }

    /// The first shape `data` fits (the one that followed the last matched, then the others), with where
    /// `data`'s content text lies.
    fn match_shape(&mut self, data: &[u8]) -> Option<(usize, Facts, ContentAt)> {
        let predicted = self
            .last
            .map(|l| usize::from(self.next[l]))
            .filter(|&p| p < SLOTS);
        let filled = self.shapes.filled.load(Ordering::Acquire);
        let rest = (0..filled).filter(|&i| Some(i) != predicted);
        for i in predicted.into_iter().chain(rest) {
            let Some(shape) = self.shapes.get(i) else {
                continue;
            };
            if let Some((facts, content)) = shape.fit(data) {
                return Some((i, facts, content));
            }
        }
        None
    }

    /// Learns a scanned chunk's shape, when a slot is free.
    fn learn(&mut self, data: &[u8], facts: Facts, content: Option<(usize, usize)>) {
        let mut spans = self.spans.clone();
        if let Some((start, end)) = content {
            spans.push(Span {
                start,
                end,
                free: Free::Content,
            });
        }
        spans.sort_unstable_by_key(|s| s.start);
        let shape = Shape {
            bytes: data.to_vec(),
            facts,
            spans,
        };
        let at = self.shapes.learn(shape);
        if let (Some(last), Some(at)) = (self.last, at) {
            if last != at {
                self.next[last] = at as u8;
            }
        }
        self.last = at;
    }
}

impl Shape {
    /// `data` is this chunk with other plain text in free strings and other numbers in free numbers: then
    /// it is the same JSON structure with the same keys, and only the content and counts can differ.
    /// With the facts comes where the content text lies in `data`.
    ///
    /// Most free parts repeat from one answer to the next (`object`, `model`, `role`, `finish_reason`, often
    /// the counts), so the bytes are compared eight at a time up to the first difference, and only a free
    /// part holding a difference is read again. A free part whose bytes and closing delimiter are the
    /// shape's reads as the shape's did.
    fn fit(&self, data: &[u8]) -> Option<(Facts, ContentAt)> {
        // Shapes mostly differ near the end (delta, finish_reason, usage): a cheap early no.
        let tail_from = self.spans.last().map_or(0, |s| s.end);
        if !data.ends_with(&self.bytes[tail_from..]) {
            return None;
        }
        let mut facts = self.facts;
        let mut content = None;
        let (mut at, mut from) = (0, 0);
        let mut spans = self.spans.iter();
        loop {
            let same = common_prefix(&data[at..], &self.bytes[from..]);
            let differs = from + same;
            if at + same == data.len() && differs == self.bytes.len() {
                if let Some(span) = spans.find(|s| s.free == Free::Content) {
                    content = Some((at + span.start - from, at + span.end - from));
                }
                return Some((facts, content));
            }
            // Free parts wholly before the difference, their delimiter included, are the shape's.
            let span = loop {
                let span = spans.next()?;
                if span.end >= differs {
                    break span;
                }
                if span.free == Free::Content {
                    content = Some((at + span.start - from, at + span.end - from));
                }
            };
            if span.start > differs {
                return None;
            }
            at += span.start - from;
            at = match span.free {
                Free::Text | Free::Content => {
                    let end = plain_run_end(data, at);
                    if data.get(end) != Some(&b'"') {
                        return None;
                    }
                    let text = &data[at..end];
                    if !text.is_ascii() {
                        std::str::from_utf8(text).ok()?;
                    }
                    if span.free == Free::Content {
                        facts.content = !text.is_empty();
                        content = Some((at, end));
                    }
                    end
                }
                Free::Number | Free::Prompt | Free::Completion => {
                    let mut s = Scanner {
                        s: data,
                        i: at,
                        spans: None,
                    };
                    if span.free == Free::Number {
                        s.number()?;
                    } else {
                        let n = s.count()?;
                        let usage = facts.usage.as_mut()?;
                        if span.free == Free::Prompt {
                            usage.0 = n;
                        } else {
                            usage.1 = n;
                        }
                    }
                    s.i
                }
            };
            from = span.end;
        }
    }
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let mut i = 0;
    while i + 8 <= n {
        let x = word(a, i) ^ word(b, i);
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// `data[start..end]` when it is string text that needs no escapes: no quote, backslash or control
/// character, and valid UTF-8.
fn plain_text(data: &[u8], start: usize, end: usize) -> Option<&[u8]> {
    let text = &data[start..end];
    if plain_run_end(text, 0) != text.len() || !is_utf8(text) {
        return None;
    }
    Some(text)
}

fn is_utf8(text: &[u8]) -> bool {
    text.is_ascii() || std::str::from_utf8(text).is_ok()
}

/// Nesting the scanner follows before leaving a body to serde_json (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// The fast path. `None` means "not sure": invalid JSON, an unusual shape, escaped keys, duplicate fields,
/// lone surrogates, deep nesting. Never `Some` where serde_json would answer differently. With the facts
/// comes the span of the content string's text when it alone decides `content` (one choice) and has no
/// escapes.
fn scan(data: &[u8], spans: Option<&mut Vec<Span>>) -> Option<(Facts, Option<(usize, usize)>)> {
    // serde_json checks UTF-8 in the strings it reads; checking all of it up front is stricter and cheap.
    std::str::from_utf8(data).ok()?;
    let mut spans = spans;
    // The scanner borrows the caller's list (and its allocation) and hands it back.
    let mut s = Scanner {
        s: data,
        i: 0,
        spans: spans.as_deref_mut().map(std::mem::take),
    };
    let found = s.top();
    if let (Some(out), Some(kept)) = (spans, s.spans) {
        *out = kept;
    }
    found
}

impl Scanner<'_> {
    /// The whole body: an object, then only whitespace.
    fn top(&mut self) -> Option<(Facts, Option<(usize, usize)>)> {
        let mut facts = Facts::default();
        let mut span = None;
        let (mut seen_choices, mut seen_usage, mut seen_error) = (false, false, false);
        self.object(|s, key| {
            match key {
                b"choices" => {
                    once(&mut seen_choices)?;
                    if !s.null() {
                        (facts.choices, facts.content, span) = s.choices()?;
                    }
                }
                b"usage" => {
                    once(&mut seen_usage)?;
                    if !s.null() {
                        facts.usage = Some(s.usage()?);
                    }
                }
                b"error" => {
                    once(&mut seen_error)?;
                    facts.error = !s.null();
                    if facts.error {
                        s.value(1)?;
                    }
                }
                _ => s.value(1)?,
            }
            Some(())
        })?;
        self.ws();
        (self.i == self.s.len()).then_some((facts, span))
    }
}

/// serde_json rejects a struct field given twice.
fn once(seen: &mut bool) -> Option<()> {
    if std::mem::replace(seen, true) {
        None
    } else {
        Some(())
    }
}

/// A string as it stands in the body: its raw text (escapes not decoded), where that starts, and whether it
/// has escapes.
#[derive(Clone, Copy)]
struct Text<'a> {
    raw: &'a [u8],
    start: usize,
    escaped: bool,
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
    /// Where the value strings and numbers the facts ignore lie, when a [`Reader`] asks.
    spans: Option<Vec<Span>>,
}

impl Cursor for Scanner<'_> {
    fn text(&self) -> &[u8] {
        self.s
    }

    fn at(&self) -> usize {
        self.i
    }

    fn set_at(&mut self, at: usize) {
        self.i = at;
    }
}

impl<'a> Scanner<'a> {
    /// Consumes `null` if it is next.
    fn null(&mut self) -> bool {
        self.ws();
        self.literal(b"null").is_some()
    }

    /// An object whose members are handed to `member` (positioned at the value) by raw key.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.list(b'{', b'}', |s| {
            s.ws();
            let key = s.string()?;
            if key.escaped {
                return None;
            }
            s.eat(b':')?;
            member(s, key.raw)
        })
    }

    /// An array whose elements are handed to `element` (positioned at the element).
    fn array(&mut self, element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.list(b'[', b']', element)
    }

    /// A string at the cursor. Control characters and escapes serde_json might judge differently (any
    /// surrogate) are "not sure".
    fn string(&mut self) -> Option<Text<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = plain_run_end(self.s, self.i);
            match *self.s.get(self.i)? {
                b'"' => {
                    let text = Text {
                        raw: &self.s[start..self.i],
                        start,
                        escaped,
                    };
                    self.i += 1;
                    return Some(text);
                }
                b'\\' => {
                    escaped = true;
                    match *self.s.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.s.get(self.i + 2..self.i + 6)?;
                            let hex = std::str::from_utf8(hex).ok()?;
                            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return None;
                            }
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            if (0xD800..0xE000).contains(&unit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// A string value (after whitespace); `None` unless it is one.
    fn text(&mut self) -> Option<Text<'a>> {
        self.ws();
        self.string()
    }

    /// Any value, checked and skipped.
    fn value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => self.object(|s, _| s.value(depth + 1)),
            b'[' => self.array(|s| s.value(depth + 1)),
            b'"' => {
                let text = self.string()?;
                self.note(text.start, text.start + text.raw.len(), Free::Text);
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                let (start, end) = self.number()?;
                self.note(start, end, Free::Number);
                Some(())
            }
        }
    }

    fn note(&mut self, start: usize, end: usize, free: Free) {
        if let Some(spans) = &mut self.spans {
            spans.push(Span { start, end, free });
        }
    }

    /// `choices`: (any member, any member with content, the deciding text's span when there is one
    /// member and its text has no escapes). Members must be objects.
    #[allow(clippy::type_complexity)]
    fn choices(&mut self) -> Option<(bool, bool, Option<(usize, usize)>)> {
        let (mut count, mut content, mut span) = (0, false, None);
        self.array(|s| {
            count += 1;
            let text = s.choice()?;
            content |= text.is_some_and(|t| !t.raw.is_empty());
            span = text
                .filter(|t| !t.escaped)
                .map(|t| (t.start, t.start + t.raw.len()));
            Some(())
        })?;
        Some((count > 0, content, span.filter(|_| count == 1)))
    }

    /// One choice: the first present of `delta.content`, `message.content`, `text`, which decides.
    fn choice(&mut self) -> Option<Option<Text<'a>>> {
        let (mut delta, mut message, mut text) = (None, None, None);
        let (mut seen_delta, mut seen_message, mut seen_text) = (false, false, false);
        self.ws();
        if self.peek()? != b'{' {
            return None;
        }
        self.object(|s, key| {
            match key {
                b"delta" => {
                    once(&mut seen_delta)?;
                    delta = s.message()?;
                }
                b"message" => {
                    once(&mut seen_message)?;
                    message = s.message()?;
                }
                b"text" => {
                    once(&mut seen_text)?;
                    if !s.null() {
                        text = Some(s.text()?);
                    }
                }
                _ => s.value(3)?,
            }
            Some(())
        })?;
        Some(delta.or(message).or(text))
    }

    /// A `delta` or `message`: `Some(Some(text))` when it has a string `content`, `Some(None)` when it is
    /// null or has none.
    fn message(&mut self) -> Option<Option<Text<'a>>> {
        if self.null() {
            return Some(None);
        }
        if self.peek()? != b'{' {
            return None;
        }
        let mut content = None;
        let mut seen = false;
        self.object(|s, key| {
            if key == b"content" {
                once(&mut seen)?;
                if !s.null() {
                    content = Some(s.text()?);
                }
            } else {
                s.value(4)?;
            }
            Some(())
        })?;
        Some(content)
    }

    /// `usage`: (prompt_tokens, completion_tokens), each 0 when absent.
    fn usage(&mut self) -> Option<(u64, u64)> {
        self.ws();
        if self.peek()? != b'{' {
            return None;
        }
        let (mut prompt, mut completion) = (None, None);
        self.object(|s, key| {
            match key {
                b"prompt_tokens" if prompt.is_none() => prompt = Some(s.noted_count(Free::Prompt)?),
                b"completion_tokens" if completion.is_none() => {
                    completion = Some(s.noted_count(Free::Completion)?)
                }
                b"prompt_tokens" | b"completion_tokens" => return None,
                _ => s.value(2)?,
            }
            Some(())
        })?;
        Some((prompt.unwrap_or(0), completion.unwrap_or(0)))
    }

    fn noted_count(&mut self, free: Free) -> Option<u64> {
        self.ws();
        let start = self.i;
        let n = self.count()?;
        self.note(start, self.i, free);
        Some(n)
    }

    /// A token count: plain digits that fit u64 (anything else is serde_json's to judge).
    fn count(&mut self) -> Option<u64> {
        self.ws();
        let (start, end) = self.number()?;
        let n = &self.s[start..end];
        // As serde_json reads a u64: digits only, and `None` past u64::MAX.
        n.iter().try_fold(0u64, |total, &d| {
            d.is_ascii_digit()
                .then(|| total.checked_mul(10)?.checked_add(u64::from(d - b'0')))?
        })
    }
}

/// The definition: serde_json into views that allocate nothing.
pub(crate) fn by_serde(data: &[u8]) -> Result<Facts, Invalid> {
    let chunk: ChunkView = serde_json::from_slice(data).map_err(|_| Invalid)?;
    let choices = chunk.choices.unwrap_or_default();
    Ok(Facts {
        choices: choices.any,
        content: choices.content,
        usage: chunk.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        error: chunk.error.is_some(),
    })
}

#[derive(Deserialize)]
struct ChunkView {
    #[serde(default)]
    choices: Option<Choices>,
    #[serde(default)]
    usage: Option<UsageView>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// Whether `choices` had any member, and whether any carried non-empty content. Visited element by
/// element: no Vec per event.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, local so the fuzz crate can compile these tests with the module.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed)
        }

        fn range(&mut self, lo: u64, hi: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            lo + (z ^ (z >> 31)) % (hi - lo + 1)
        }
    }

    /// Real shapes: standin's and vLLM's chunks, legacy text, usage, errors, a whole chat.completion.
    const SAMPLES: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" wor\u00e9ld\n","logprobs":null,"finish_reason":null}]}"#,
        r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#,
        r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"你好 \"there\"","tool_calls":[]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        r#" { "choices" : [ { "delta" : { "content" : null } , "text" : "x" } ] , "usage" : null , "error" : null } "#,
        r#"{"choices":[{"delta":{"content":""},"text":"x"}],"x":[1,-2.5e+3,0.0,true,false,null,{"a":[]}]}"#,
    ];

    #[test]
    fn scanner_reads_real_shapes_without_serde() {
        for sample in SAMPLES {
            let fast = scan(sample.as_bytes(), None);
            assert!(fast.is_some(), "scanner gave up on {sample}");
            assert_eq!(
                fast.map(|f| Ok(f.0)),
                Some(by_serde(sample.as_bytes())),
                "{sample}"
            );
        }
        let content = read(SAMPLES[1].as_bytes()).unwrap();
        assert_eq!((content.choices, content.content), (true, true));
        let role = read(SAMPLES[0].as_bytes()).unwrap();
        assert_eq!((role.choices, role.content), (true, false));
        assert_eq!(read(SAMPLES[3].as_bytes()).unwrap().usage, Some((9, 12)));
        assert!(read(SAMPLES[5].as_bytes()).unwrap().error);
        // The first present of delta.content, message.content, text decides, as the serde views do.
        assert!(read(SAMPLES[7].as_bytes()).unwrap().content);
        assert!(!read(SAMPLES[8].as_bytes()).unwrap().content);
    }

    #[test]
    fn doubtful_bodies_go_to_serde() {
        for body in [
            r#"{"choices":[],"choices":[]}"#,
            r#"{"cho\u0069ces":[{"text":"x"}]}"#,
            r#"{"usage":{"prompt_tokens":1.0}}"#,
            r#"{"usage":{"prompt_tokens":-0}}"#,
            r#"{"choices":[{"text":"\ud83d\ude00"}]}"#,
            r#"{"choices":[["x"]]}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{} x"#,
            r#"[]"#,
            "",
        ] {
            assert_eq!(scan(body.as_bytes(), None), None, "{body}");
        }
        // serde_json still answers them: escaped keys and surrogate pairs are fine, the rest invalid.
        assert!(read(br#"{"cho\u0069ces":[{"text":"x"}]}"#).unwrap().content);
        assert!(
            read(br#"{"choices":[{"text":"\ud83d\ude00"}]}"#)
                .unwrap()
                .content
        );
        assert_eq!(read(br#"{"choices":[],"choices":[]}"#), Err(Invalid));
        assert_eq!(read(br#"{"a":1,}"#), Err(Invalid));
    }

    /// Mutations of the samples (byte flips, deletions, insertions of JSON's own characters, cuts): wherever
    /// the scanner answers, it answers as serde_json does.
    #[test]
    fn scanner_agrees_with_serde_on_mutations() {
        const ALPHABET: &[u8] = b"{}[]:,\"\\ 0123456789.eE+-tfnulsr\tx\xc3\xa9\x00u";
        let mut rng = Rng::new(7);
        let (mut answered, mut total) = (0, 0);
        for round in 0..60_000 {
            let mut body = SAMPLES[round % SAMPLES.len()].as_bytes().to_vec();
            for _ in 0..rng.range(1, 3) {
                let at = rng.range(0, body.len() as u64) as usize;
                let byte = ALPHABET[rng.range(0, ALPHABET.len() as u64 - 1) as usize];
                match rng.range(0, 3) {
                    0 if at < body.len() => body[at] = byte,
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    2 => body.truncate(at),
                    _ => body.insert(at, byte),
                }
            }
            total += 1;
            if let Some((fast, _)) = scan(&body, None) {
                answered += 1;
                assert_eq!(
                    Ok(fast),
                    by_serde(&body),
                    "{:?}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        // The comparison means something only if the scanner answered a good share itself.
        assert!(
            answered * 10 > total,
            "scanner answered {answered} of {total}"
        );
    }

    /// Every pair of lengths to 40, with one byte changed at each position: the first difference, as a
    /// byte-by-byte search finds it.
    #[test]
    fn common_prefix_finds_the_first_difference() {
        let naive = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            for m in 0..=n {
                assert_eq!(common_prefix(&a, &a[..m]), m);
                assert_eq!(common_prefix(&a[..m], &a), m);
            }
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert_eq!(common_prefix(&a, &b), at, "{n} {at}");
                assert_eq!(common_prefix(&a, &b), naive(&a, &b));
                b[n - 1] ^= 0x01;
                assert_eq!(
                    common_prefix(&a, &b),
                    naive(&a, &b),
                    "{n} {at} and the last"
                );
            }
        }
    }

    impl Reader {
        /// Whether a remembered shape answers `data` (no scan).
        pub(super) fn knows(&self, data: &[u8]) -> bool {
            self.around_content(data).is_some()
                || (0..SLOTS)
                    .filter_map(|i| self.shapes.get(i))
                    .any(|s| s.fit(data).is_some())
        }
    }

    /// A stream's chunks through one [`Reader`]: the same answers as serde_json, and the content chunks after
    /// the first are answered by the byte comparison.
    #[test]
    fn reader_answers_a_stream_as_serde_does() {
        let chunk = |content: &str| {
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":{content}}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        };
        let stream = [
            chunk(r#""""#),
            chunk(r#""Hello""#),
            chunk(r#"" world, é""#),
            chunk(r#""è""#),
            chunk(r#""""#),
            chunk(r#""a \"quoted\" word""#),
            chunk(r#""after an escape""#),
            chunk(r#""tab	inside""#),
            chunk(r#""x"}}]}}"#),
            chunk(r#"null"#),
            chunk(r#""last""#),
            SAMPLES[3].to_string(),
        ];
        let mut reader = Reader::default();
        let mut compared = 0;
        for event in &stream {
            compared += usize::from(reader.knows(event.as_bytes()));
            assert_eq!(
                reader.read(event.as_bytes()),
                by_serde(event.as_bytes()),
                "{event}"
            );
        }
        // "Hello", " world, é", "è", "", "after an escape", and "last" after "null" was scanned again.
        assert!(compared >= 6, "byte comparison answered {compared}");
        assert!(!reader.read(stream[1].as_bytes()).unwrap().error);
    }

    /// standin's stream shape, twice with another id, `created`, text and token counts: the second stream is
    /// answered entirely by the shapes the first left, with the facts of its own bytes, on the same
    /// connection and on another sharing the shapes.
    #[test]
    fn shapes_carry_over_to_the_next_stream() {
        let stream = |id: &str, created: u64, words: &[&str], prompt: u64| {
            let head = format!(
                r#"{{"id":"chatcmpl-{id}","object":"chat.completion.chunk","created":{created},"model":"m","system_fingerprint":"fp","choices":"#
            );
            let mut chunks = vec![format!(
                r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )];
            for word in words {
                chunks.push(format!(
                    r#"{head}[{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
                ));
            }
            chunks.push(format!(
                r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
            ));
            chunks.push(format!(
                r#"{head}[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{},"total_tokens":{}}}}}"#,
                words.len(),
                prompt + words.len() as u64
            ));
            chunks
        };
        let shapes = Arc::new(Shapes::default());
        let mut reader = Reader::new(Arc::clone(&shapes));
        for chunk in stream("a1", 1_700_000_000, &["Hi", " there", "!"], 9) {
            assert_eq!(reader.read(chunk.as_bytes()), by_serde(chunk.as_bytes()));
        }
        let next = stream(
            "b22",
            1_700_000_001,
            &["One", "", " two", " three", " four"],
            123,
        );
        for mut reader in [reader, Reader::new(Arc::clone(&shapes))] {
            for chunk in &next {
                assert!(reader.knows(chunk.as_bytes()), "scanned again: {chunk}");
                assert_eq!(
                    reader.read(chunk.as_bytes()),
                    by_serde(chunk.as_bytes()),
                    "{chunk}"
                );
            }
            let usage = reader.read(next.last().unwrap().as_bytes()).unwrap();
            assert_eq!(usage.usage, Some((123, 5)));
            assert!(!reader.read(next[2].as_bytes()).unwrap().content);
        }
        // Role, content, finish and usage: four shapes, whoever learned them.
        assert_eq!(shapes.filled.load(Ordering::Relaxed), 4);
    }

    /// A shape matched where the id or a later number differs (with another length) and the content text is
    /// the shape's: the content's place in the new bytes, not the shape's, so the next chunk of that stream
    /// compares around it.
    #[test]
    fn unchanged_content_is_placed_in_the_new_bytes() {
        let chunk = |id: &str, text: &str, created: u64| {
            format!(
                r#"{{"id":"{id}","object":"chat.completion.chunk","model":"m","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}],"created":{created}}}"#
            )
        };
        let mut reader = Reader::default();
        reader.read(chunk("a", "same", 7).as_bytes()).unwrap();
        for (id, created) in [
            ("b", 7),
            ("a-longer-id", 7),
            ("", 7),
            ("a", 12345),
            ("ab", 8),
        ] {
            let data = chunk(id, "same", created);
            let shape = reader.shapes.get(0).unwrap();
            let (facts, content) = shape.fit(data.as_bytes()).unwrap();
            let at = data.find("same").unwrap();
            assert_eq!(content, Some((at, at + 4)), "{data}");
            assert!(facts.content);
        }
        // Then the next chunk of the stream answers by the content alone, right about an empty one.
        reader
            .read(chunk("a-longer-id", "same", 9).as_bytes())
            .unwrap();
        let next = chunk("a-longer-id", "", 9);
        assert!(reader.around_content(next.as_bytes()).is_some());
        assert_eq!(reader.read(next.as_bytes()), by_serde(next.as_bytes()));
        assert!(!reader.read(next.as_bytes()).unwrap().content);
    }

    /// Once every slot is taken, a new shape is scanned each time, answers as serde_json does, and does not
    /// displace the shapes learned first.
    #[test]
    fn full_slots_scan_new_shapes() {
        let mut reader = Reader::default();
        let odd = |k: usize| format!(r#"{{"choices":[{{"text":"x"}}],"k{k}":1}}"#);
        for k in 0..SLOTS + 3 {
            let chunk = odd(k);
            assert!(!reader.knows(chunk.as_bytes()));
            assert_eq!(reader.read(chunk.as_bytes()), by_serde(chunk.as_bytes()));
        }
        assert_eq!(reader.shapes.filled.load(Ordering::Relaxed), SLOTS);
        let late = odd(SLOTS + 1);
        reader.read(SAMPLES[0].as_bytes()).unwrap();
        assert!(!reader.knows(late.as_bytes()));
        assert_eq!(reader.read(late.as_bytes()), by_serde(late.as_bytes()));
        let first = odd(0).replace(r#""x""#, r#""yz""#);
        assert!(reader.knows(first.as_bytes()));
        assert_eq!(reader.read(first.as_bytes()), by_serde(first.as_bytes()));
    }

    /// Mutations of chunks the reader has seen, mostly inside and next to the parts its shapes leave free:
    /// whatever a shape answers, serde_json reads the same way.
    #[test]
    fn reader_agrees_with_serde_on_mutations() {
        const ALPHABET: &[u8] = b"\"\\ {}[],:aZ0123456789.eE+-\xc3\xa9\xa8\x01\t";
        let seen: Vec<&[u8]> = SAMPLES.iter().map(|s| s.as_bytes()).collect();
        let mut rng = Rng::new(11);
        let mut by_shape = 0;
        for round in 0..60_000 {
            let base = seen[round % 4 + usize::from(round % 9 == 0) * 4];
            let mut reader = Reader::default();
            for sample in &seen[..4] {
                reader.read(sample).unwrap();
            }
            let mut spans = Vec::new();
            scan(base, Some(&mut spans)).unwrap();
            let mut body = base.to_vec();
            for _ in 0..rng.range(1, 3) {
                // Mostly in and next to a free part, sometimes anywhere.
                let pos = match spans.get(rng.range(0, spans.len() as u64) as usize) {
                    Some(span) if rng.range(0, 4) > 0 => (span.start
                        + rng.range(0, (span.end - span.start) as u64 + 2) as usize)
                        .saturating_sub(1),
                    _ => rng.range(0, body.len() as u64 - 1) as usize,
                }
                .min(body.len() - 1);
                let byte = ALPHABET[rng.range(0, ALPHABET.len() as u64 - 1) as usize];
                match rng.range(0, 2) {
                    0 => body[pos] = byte,
                    1 => {
                        body.remove(pos);
                    }
                    _ => body.insert(pos, byte),
                }
            }
            by_shape += usize::from(reader.knows(&body));
            assert_eq!(
                reader.read(&body),
                by_serde(&body),
                "{:?}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!(by_shape > 5_000, "shapes answered {by_shape}");
    }

    /// The fuzz corpus and regressions of `loadtest_sse` (`fuzz/src/loadtest.rs` runs the same comparison
    /// under libFuzzer): every `data:` line, through a reader that remembers a content chunk, and through
    /// the scanner alone, answers as serde_json does.
    #[test]
    fn fuzz_inputs_answer_as_serde_does() {
        let mut lines = 0;
        for (file, data) in super::super::sse::fuzz_inputs() {
            for line in data.split(|&b| b == b'\n') {
                let Some(body) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let body = body.strip_suffix(b"\r").unwrap_or(body).trim_ascii_start();
                let expected = by_serde(body);
                assert_eq!(read(body), expected, "{file:?}");
                let mut reader = Reader::default();
                reader.read(SAMPLES[1].as_bytes()).unwrap();
                assert_eq!(reader.read(body), expected, "{file:?}");
                lines += 1;
            }
        }
        assert!(lines > 20, "only {lines} data lines");
    }
}
