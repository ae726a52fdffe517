//! An incremental server-sent-events parser for relaying an upstream stream: bytes go in as they arrive,
//! each complete event's `data` comes out (WHATWG HTML "event stream interpretation"). Only `data` matters
//! to a relay: `event`, `id`, `retry` and `:` comments are read and dropped. What the payload means is
//! [`super::normalize`]'s business.

use std::fmt;

/// Event size bound: an OpenAI chunk is well under 10 KiB even with 20 top logprobs, so 1 MiB only stops
/// an upstream that never ends its event from growing our buffer without limit.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// An event (its data plus the line being read) grew past the parser's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTooLarge {
    /// The bound that was passed, in bytes.
    pub limit: usize,
}

impl fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for EventTooLarge {}

/// Splits a byte stream into events. Feed bytes with [`SseParser::feed`], then call
/// [`SseParser::next_event`] until it returns `None`.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes not yet parsed into lines, from `pos` on.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes after `pos` already searched for a line end without finding one.
    scanned: usize,
    /// The current event's data lines, joined with `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// `data` holds an event already handed out; cleared on the next call.
    dispatched: bool,
    /// The last line ended with CR: an LF right after it belongs to that line end, even across feeds.
    after_cr: bool,
    max_event: usize,
}

impl SseParser {
    /// A parser that fails on events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            dispatched: false,
            after_cr: false,
            max_event: max_event_bytes,
        }
    }

    /// Adds bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event's data (multi-line data joined with `\n`), or `None` until more bytes come.
    /// An error means the stream should be abandoned.
    pub fn next_event(&mut self) -> Result<Option<&[u8]>, EventTooLarge> {
        if self.dispatched {
            self.data.clear();
            self.has_data = false;
            self.dispatched = false;
        }
        loop {
            if self.after_cr {
                match self.buf.get(self.pos) {
                    None => return self.need_more(),
                    Some(b'\n') => self.pos += 1,
                    Some(_) => {}
                }
                self.after_cr = false;
            }
            let rest = &self.buf[self.pos..];
            let Some(end) = rest[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            else {
                self.scanned = rest.len();
                return self.need_more();
            };
            let end = self.scanned + end;
            self.scanned = 0;
            self.after_cr = rest[end] == b'\r';
            let line_start = self.pos;
            self.pos += end + 1;
            if end == 0 {
                if self.has_data {
                    self.dispatched = true;
                    return Ok(Some(&self.data));
                }
                continue;
            }
            self.line(line_start, line_start + end)?;
        }
    }

    /// At the end of the stream: the event still being read, if it has data. The spec drops such an event;
    /// a relay hands it on, because upstreams that close right after `data: [DONE]` (without the blank
    /// line) exist, and a truncated payload is caught by whoever parses it.
    pub fn finish(&mut self) -> Result<Option<&[u8]>, EventTooLarge> {
        if self.dispatched {
            self.data.clear();
            self.has_data = false;
            self.dispatched = false;
        }
        let (start, end) = (self.pos, self.buf.len());
        self.pos = end;
        self.scanned = 0;
        if start < end {
            self.line(start, end)?;
        }
        if !self.has_data {
            return Ok(None);
        }
        self.dispatched = true;
        Ok(Some(&self.data))
    }

    /// Handles one non-empty line `buf[start..end]`.
    fn line(&mut self, start: usize, end: usize) -> Result<(), EventTooLarge> {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        if name != b"data" {
            return Ok(());
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
        self.check_size(0)
    }

    fn need_more(&mut self) -> Result<Option<&[u8]>, EventTooLarge> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.check_size(self.buf.len())?;
        Ok(None)
    }

    fn check_size(&self, pending: usize) -> Result<(), EventTooLarge> {
        if self.data.len() + pending > self.max_event {
            return Err(EventTooLarge {
                limit: self.max_event,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_in(pieces: &[&[u8]]) -> Result<Vec<String>, EventTooLarge> {
        let mut parser = SseParser::new(64);
        let mut seen = Vec::new();
        for piece in pieces {
            parser.feed(piece);
            while let Some(data) = parser.next_event()? {
                seen.push(String::from_utf8(data.to_vec()).unwrap());
            }
        }
        Ok(seen)
    }

    const STREAM: &[u8] = b": keep-alive\n\nevent: message\nid: 7\nretry: 10\ndata: {\"a\":1}\n\ndata:x\r\ndata:  y\r\n\r\ndata: cr\rdata\r\rdata: [DONE]\n\n";
    const EXPECTED: [&str; 4] = ["{\"a\":1}", "x\n y", "cr\n", "[DONE]"];

    #[test]
    fn fields_comments_and_line_ends() {
        assert_eq!(events_in(&[STREAM]).unwrap(), EXPECTED);
    }

    #[test]
    fn events_split_at_every_boundary() {
        for i in 0..=STREAM.len() {
            assert_eq!(
                events_in(&[&STREAM[..i], &STREAM[i..]]).unwrap(),
                EXPECTED,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(events_in(&bytes).unwrap(), EXPECTED);
    }

    #[test]
    fn cr_then_lf_across_feeds_is_one_line_end() {
        assert_eq!(
            events_in(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]).unwrap(),
            ["a\nb"]
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert_eq!(
            events_in(&[b"event: ping\n\n: c\n\nid: 1\n\n"]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(events_in(&[b"data\n\n"]).unwrap(), [""]);
    }

    #[test]
    fn oversized_events_fail() {
        let big = format!("data: {}\n\n", "x".repeat(65));
        assert_eq!(
            events_in(&[big.as_bytes()]),
            Err(EventTooLarge { limit: 64 })
        );
        let unterminated = "x".repeat(100);
        assert_eq!(
            events_in(&[unterminated.as_bytes()]),
            Err(EventTooLarge { limit: 64 })
        );
        let many_lines = "data: 0123456789\n".repeat(6);
        assert_eq!(
            events_in(&[many_lines.as_bytes()]),
            Err(EventTooLarge { limit: 64 })
        );
        // Bytes of events already handed out do not count against the next one.
        assert_eq!(
            events_in(&["data: 0123456789\n\n".repeat(20).as_bytes()])
                .unwrap()
                .len(),
            20
        );
    }

    #[test]
    fn finish_hands_on_an_unterminated_event() {
        let mut parser = SseParser::new(64);
        parser.feed(b"data: {\"a\":1}\n\ndata: [DONE]");
        assert_eq!(parser.next_event().unwrap(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(parser.next_event().unwrap(), None);
        assert_eq!(parser.finish().unwrap(), Some(&b"[DONE]"[..]));
        assert_eq!(parser.finish().unwrap(), None);
        let mut parser = SseParser::new(64);
        parser.feed(b": only a comment");
        assert_eq!(parser.finish().unwrap(), None);
    }
}
