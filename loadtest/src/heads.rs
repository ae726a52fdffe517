//! Response heads read by comparison with the connection's last one. A server's heads differ from one
//! answer to the next only in a few values (`Date`, a request id, `Content-Length`), so a head that has the
//! last one's bytes outside the values the harness ignores is answered without httparse: the values that
//! differ are checked to be header text, and a changed `Content-Length` is read again. Anything else goes
//! to `sse::parse_head`, whose answer the comparison must always give.

use super::chunk::common_prefix;
use super::sse::{parse_head_noting, Framing, Head, Malformed};

/// The last head httparse read on a connection, with its answer and where its free values lie.
#[derive(Debug, Default)]
pub struct Heads {
    bytes: Vec<u8>,
    head: Option<Head>,
    /// In order of position.
    free: Vec<Value>,
}

/// A header value that may differ from the last head's: one the head's facts ignore, or the
/// `Content-Length` that alone sets the framing.
#[derive(Debug, Clone, Copy)]
struct Value {
    start: usize,
    end: usize,
    length: bool,
}

impl Heads {
    /// Parses a response head, as `sse::parse_head` would.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<Head>, Malformed> {
        if let Some(head) = self.fit(buf) {
            return Ok(Some(head));
        }
        // The last head stays until another complete one replaces it: the first look at a response is
        // often at an empty or partial buffer.
        let kept = self.free.len();
        let mut lengths = 0;
        let base = buf.as_ptr() as usize;
        let parsed = parse_head_noting(buf, |name, value| {
            let named = |known: &str| name.eq_ignore_ascii_case(known);
            let length = named("content-length");
            lengths += usize::from(length);
            if !(named("transfer-encoding") || named("connection") || named("content-type")) {
                let start = (value.as_ptr() as usize).wrapping_sub(base);
                let end = start.wrapping_add(value.len());
                // Always inside `buf` (httparse slices it); a value that were not would stay fixed.
                if start <= end && end <= buf.len() {
                    self.free.push(Value { start, end, length });
                }
            }
        });
        let Ok(Some(head)) = &parsed else {
            self.free.truncate(kept);
            return parsed;
        };
        // Content-Length is read again only where it alone decides the framing (not chunked, a status with
        // a body, one such header).
        let length_free = lengths == 1
            && matches!(head.framing, Framing::Length(_))
            && !(head.status < 200 || head.status == 204 || head.status == 304);
        self.free.drain(..kept);
        self.free.retain(|v| !v.length || length_free);
        self.bytes.clear();
        self.bytes.extend_from_slice(&buf[..head.len]);
        self.head = Some(head.clone());
        parsed
    }

    /// `buf` starts with the last head, other header text in its free values: the same head, with the
    /// length of `buf`'s and its `Content-Length`.
    fn fit(&self, buf: &[u8]) -> Option<Head> {
        let mut head = self.head.clone()?;
        let (mut at, mut from) = (0, 0);
        let mut free = self.free.iter();
        loop {
            let same = common_prefix(&buf[at..], &self.bytes[from..]);
            let differs = from + same;
            if differs == self.bytes.len() {
                head.len = at + same;
                return Some(head);
            }
            let value = loop {
                let value = free.next()?;
                if value.end >= differs {
                    break value;
                }
            };
            if value.start > differs {
                return None;
            }
            at += value.start - from;
            // The value runs to the first byte that is not header text. The shape has `\r` or trailing space
            // next, so anything but its bytes there (a bare `\n`, a control byte) fails the next comparison.
            let end = at + buf[at..].iter().position(|&b| !header_text(b))?;
            if value.length {
                head.framing = Framing::Length(digits(&buf[at..end])?);
            }
            at = end;
            from = value.end;
        }
    }
}

/// A byte httparse accepts in a header value.
fn header_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

/// A non-empty run of ASCII digits as a number, `None` on anything else or overflow.
fn digits(text: &[u8]) -> Option<usize> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0usize, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(usize::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::super::sse::parse_head;
    use super::*;

    const JSON: &[u8] = b"HTTP/1.1 200 OK\r\nServer: standin\r\nDate: Thu, 26 Nov 2026 10:01:30 GMT\r\n\
Content-Type: application/json\r\nContent-Length: 396\r\nx-request-id: req_98386085af4caf6e\r\n\r\n{\"id\"";
    const SSE: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Thu, 26 Nov 2026 10:01:30 GMT\r\n\
Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n1a\r\n";

    /// Pseudo-random numbers (xorshift), so failures repeat.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A head with another date, request id and length (of other digit counts) is answered by the
    /// comparison, with its own length and framing.
    #[test]
    fn heads_differing_in_free_values_are_compared() {
        let mut heads = Heads::default();
        assert_eq!(heads.parse(JSON), parse_head(JSON));
        let next = String::from_utf8_lossy(JSON)
            .replace("10:01:30", "10:01:31")
            .replace("req_98386085af4caf6e", "req_1")
            .replace("396", "12345")
            .into_bytes();
        // Values that grow at their end.
        let longer = String::from_utf8_lossy(JSON)
            .replace("af4caf6e", "af4caf6e7")
            .replace("396", "3960")
            .into_bytes();
        let grown = heads.fit(&longer).expect("compared");
        assert_eq!(Ok(Some(grown.clone())), parse_head(&longer));
        assert_eq!(grown.framing, Framing::Length(3960));
        // Looks at an empty, a partial and a malformed buffer keep the last head.
        assert_eq!(heads.parse(b""), Ok(None));
        assert_eq!(heads.parse(&next[..40]), Ok(None));
        assert_eq!(heads.parse(&next[..60]), Ok(None));
        assert_eq!(
            heads.parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(Malformed)
        );
        let fitted = heads.fit(&next).expect("compared");
        assert_eq!(Ok(Some(fitted.clone())), parse_head(&next));
        assert_eq!(fitted.framing, Framing::Length(12345));
        assert_eq!(fitted.len, JSON.len() - 6 - 19 + 5 + 2);
        assert!(
            heads.fit(SSE).is_none(),
            "another content type is read by httparse"
        );
    }

    /// Heads that differ where the facts are read (status, framing, content type, connection) or with bytes
    /// httparse refuses go to httparse.
    #[test]
    fn other_heads_go_to_httparse() {
        let mut heads = Heads::default();
        heads.parse(JSON).unwrap();
        let text = String::from_utf8_lossy(JSON).into_owned();
        for (from, to) in [
            ("200 OK", "500 OK"),
            ("application/json", "text/event-stream"),
            ("Content-Length: 396", "Content-Length: +96"),
            ("Content-Length: 396", "Content-Length: 3 6"),
            (
                "Content-Length: 396",
                "Content-Length: 99999999999999999999999",
            ),
            ("x-request-id: req_", "x-request-id: r\x01q_"),
            ("x-request-id: req_", "x-request-id: r\x7fq_"),
            ("Server: standin\r\n", "Server: standin\n"),
            (
                "Server: standin\r\n",
                "Server: standin\r\nConnection: close\r\n",
            ),
        ] {
            let next = text.replacen(from, to, 1).into_bytes();
            assert!(heads.fit(&next).is_none(), "{to:?}");
            assert_eq!(heads.parse(&next), parse_head(&next), "{to:?}");
            heads.parse(JSON).unwrap();
        }
    }

    /// Where Content-Length does not alone decide the framing (two of them, or a status without a body), a
    /// changed value is not read by the comparison.
    #[test]
    fn lengths_that_do_not_decide_stay_fixed() {
        let text = String::from_utf8_lossy(JSON).into_owned();
        let twice = text.replace(
            "Content-Length: 396\r\n",
            "Content-Length: 396\r\nContent-Length: 396\r\n",
        );
        let no_body = text.replace("200 OK", "204 No Content");
        for (head, changed) in [
            (&twice, twice.replacen("396", "397", 1)),
            (&no_body, no_body.replace("396", "5")),
        ] {
            let mut heads = Heads::default();
            assert_eq!(heads.parse(head.as_bytes()), parse_head(head.as_bytes()));
            assert_eq!(
                heads.parse(changed.as_bytes()),
                parse_head(changed.as_bytes()),
                "{changed}"
            );
        }
    }

    /// Standin's heads and mutations of them (bytes changed, inserted, removed; half of them in and next to
    /// the free values), with the connection's last head any of them: always `parse_head`'s answer.
    #[test]
    fn agrees_with_parse_head_on_mutations() {
        let alphabet = b"0123456789 \t\r\n:;-+aZ\x01\x7f\xc3\xa9\"";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut heads = Heads::default();
        let mut compared = 0;
        for round in 0..60_000 {
            let base = if (round / 100) % 2 == 0 { JSON } else { SSE };
            let mut bytes = base.to_vec();
            // Half the changes land within a few bytes of a free value's ends.
            let near: Vec<usize> = [&b"10:01"[..], b"GMT\r", b"396", b"req_", b"e\r\n\r"]
                .iter()
                .filter_map(|part| bytes.windows(part.len()).position(|w| w == *part))
                .collect();
            for _ in 0..1 + rng.below(3) {
                let at = if rng.below(2) == 0 {
                    (near[rng.below(near.len())] + rng.below(8)).min(bytes.len() - 1)
                } else {
                    rng.below(bytes.len())
                };
                let b = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            compared += usize::from(heads.fit(&bytes).is_some());
            assert_eq!(
                heads.parse(&bytes),
                parse_head(&bytes),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert!(compared > 2_000, "compared {compared}");
    }

    /// The `loadtest_sse` fuzz corpus, each input read after standin's head and spliced into its request id
    /// and length: `parse_head`'s answer (the fuzz target checks the same).
    #[test]
    fn fuzz_inputs_answer_as_parse_head_does() {
        for (file, data) in super::super::sse::fuzz_inputs() {
            let splice = |part: &[u8]| {
                let at = JSON.windows(part.len()).position(|w| w == part).unwrap();
                [&JSON[..at], &data[..], &JSON[at + part.len()..]].concat()
            };
            for input in [data.clone(), splice(b"req_9838"), splice(b"396")] {
                let mut heads = Heads::default();
                heads.parse(JSON).unwrap();
                assert_eq!(heads.parse(&input), parse_head(&input), "{file:?}");
            }
        }
    }

    #[test]
    fn digits_read_plain_numbers_only() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"396"), Some(396));
        assert_eq!(digits(b""), None);
        assert_eq!(digits(b"3a"), None);
        assert_eq!(digits(b"-1"), None);
        assert_eq!(digits(b"18446744073709551616"), None);
        assert_eq!(digits(b"18446744073709551615"), Some(usize::MAX));
    }
}
