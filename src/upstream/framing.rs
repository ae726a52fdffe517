//! Response framing for the upstream client, as pure byte handling: the response head (httparse, bounded in
//! size and header count) and an incremental body decoder for Content-Length, chunked and close-delimited
//! bodies. No sockets here, so every split of the input can be tested; [`super::client`] does the reading.

use std::fmt;

/// Response head limit. Upstreams behind gateways add a few KiB of headers (tracing, rate-limit, CORS);
/// 64 KiB is four times nginx's default and still bounds what a broken upstream can make us buffer.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header line limit: the same reasoning as [`MAX_HEAD_BYTES`], and it sizes httparse's slot array.
pub const MAX_HEADERS: usize = 100;
/// A chunk-size line (with extensions) longer than this is malformed rather than slow.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer section limit; trailers are read and dropped, so they only need bounding.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Hex digits in a chunk size: 16 fill a `u64`; more would overflow.
const MAX_CHUNK_DIGITS: usize = 16;

/// The upstream broke HTTP/1.1 framing; the text says how, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// How the response body ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`, or no body at all (`Length(0)`) for HEAD, 1xx, 204 and 304.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Header names lowercased, values trimmed (non-UTF-8 bytes replaced), in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body framing.
    pub framing: Framing,
    /// HTTP/1.1, no `connection: close`, and framing that leaves the connection usable afterwards.
    pub keep_alive: bool,
    /// Head length in bytes, so the caller can drop it from its buffer.
    pub len: usize,
}

/// Parses a response head from the start of `buf`; `Ok(None)` while incomplete. `head_request` says the
/// request was HEAD, whose response has no body whatever its headers say.
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, Malformed> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(Malformed("response head too large"))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Malformed("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many response headers")),
        Err(_) => return Err(Malformed("invalid response head")),
    };
    let status = resp.code.ok_or(Malformed("invalid response head"))?;
    let mut headers = Vec::with_capacity(resp.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked_last = false;
    let mut has_transfer_encoding = false;
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        match name.as_str() {
            "content-length" => {
                // A list of equal values is allowed (RFC 9110 8.6); differing values are a smuggling risk.
                for part in value.split(',') {
                    let n =
                        parse_decimal(part.trim()).ok_or(Malformed("invalid content-length"))?;
                    if length.is_some_and(|old| old != n) {
                        return Err(Malformed("conflicting content-length"));
                    }
                    length = Some(n);
                }
            }
            "transfer-encoding" => {
                has_transfer_encoding = true;
                for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    chunked_last = coding.eq_ignore_ascii_case("chunked");
                }
            }
            "connection" => {
                close |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"));
            }
            _ => {}
        }
        headers.push((name, value));
    }
    if status == 101 {
        return Err(Malformed("unexpected protocol switch"));
    }
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Length(0)
    } else if has_transfer_encoding {
        // Transfer-Encoding overrides Content-Length, and a sender of both must not be trusted with the
        // connection afterwards (RFC 9112 6.3 item 3).
        close |= length.is_some();
        if chunked_last {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        length.map_or(Framing::Close, Framing::Length)
    };
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive: !close && framing != Framing::Close,
        len,
    }))
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Where a chunked decoder is between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Incremental body decoder: raw bytes in, body bytes out. Bytes it does not consume (a partial size or
/// trailer line) must be passed again, with more appended, on the next call.
#[derive(Debug)]
pub struct BodyDecoder {
    framing: Framing,
    state: State,
    trailer_bytes: usize,
}

impl BodyDecoder {
    /// A decoder for a body framed by `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Data(n),
            Framing::Chunked => State::Size,
            Framing::Close => State::Data(u64::MAX),
        };
        BodyDecoder {
            framing,
            state,
            trailer_bytes: 0,
        }
    }

    /// The framing this decoder follows.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The upstream closed the connection: the end of a close-delimited body, a truncation otherwise.
    pub fn finish_at_eof(&mut self) -> Result<(), Malformed> {
        match (self.framing, self.state) {
            (_, State::Done) => Ok(()),
            (Framing::Close, _) => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Malformed("connection closed before the end of the body")),
        }
    }

    /// Decodes what it can from `input`, appending body bytes to `out`; returns the bytes consumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Malformed> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    let left = if self.framing == Framing::Close {
                        left
                    } else {
                        left - take as u64
                    };
                    self.state = match (left, self.framing) {
                        (0, Framing::Chunked) => State::DataEnd,
                        (0, _) => State::Done,
                        (left, _) => State::Data(left),
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(Malformed("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = State::Size;
                }
                State::Size => {
                    let Some(end) = find_crlf(rest) else {
                        return if rest.len() > MAX_CHUNK_LINE {
                            Err(Malformed("chunk size line too long"))
                        } else {
                            Ok(pos)
                        };
                    };
                    if end > MAX_CHUNK_LINE {
                        return Err(Malformed("chunk size line too long"));
                    }
                    let size = parse_chunk_size(&rest[..end])?;
                    pos += end + 2;
                    self.state = if size == 0 {
                        State::Trailer
                    } else {
                        State::Data(size)
                    };
                }
                State::Trailer => {
                    let Some(end) = find_crlf(rest) else {
                        return if self.trailer_bytes + rest.len() > MAX_TRAILER_BYTES {
                            Err(Malformed("trailers too large"))
                        } else {
                            Ok(pos)
                        };
                    };
                    self.trailer_bytes += end + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(Malformed("trailers too large"));
                    }
                    if rest[..end].contains(&b'\n') {
                        return Err(Malformed("bare LF in trailer"));
                    }
                    pos += end + 2;
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

fn find_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

/// `1*HEXDIG [ BWS ";" chunk-ext ]` (RFC 9112 7.1): no sign, no `0x`, no leading space, no bare LF.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_CHUNK_DIGITS {
        return Err(Malformed("invalid chunk size"));
    }
    let after = &line[digits..];
    let ext = after.iter().position(|&b| b != b' ' && b != b'\t');
    if let Some(i) = ext {
        if after[i] != b';' {
            return Err(Malformed("invalid chunk size"));
        }
    }
    if after.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(Malformed("bare CR or LF in chunk size line"));
    }
    Ok(line[..digits].iter().fold(0u64, |n, &d| {
        (n << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, Malformed> {
        parse_head(raw.as_bytes(), false)
    }

    #[test]
    fn head_lowercases_names_and_decides_framing() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (200, Framing::Chunked, true)
        );
        assert_eq!(
            h.headers[0],
            ("content-type".into(), "text/event-stream".into())
        );
        assert_eq!(h.len, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".len());
        let h = head(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (404, Framing::Length(5), false)
        );
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
    }

    #[test]
    fn http10_and_both_lengths_are_not_kept_alive() {
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(2), false));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Close);
    }

    #[test]
    fn bodiless_statuses_and_head_requests() {
        for raw in [
            "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\n\r\n",
        ] {
            assert_eq!(
                head(raw).unwrap().unwrap().framing,
                Framing::Length(0),
                "{raw}"
            );
        }
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
    }

    #[test]
    fn bad_heads_are_malformed() {
        assert!(head("garbage\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n")
            .unwrap()
            .is_some());
        assert!(head("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x-{i}: v\r\n"))
            .collect();
        assert_eq!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            Err(Malformed("too many response headers"))
        );
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(head(&huge), Err(Malformed("response head too large")));
    }

    /// Decodes `raw` fed in the given pieces, keeping unconsumed bytes as the client does.
    fn decode_in(
        framing: Framing,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, bool, Vec<u8>), Malformed> {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            let used = d.decode(&pending, &mut out)?;
            pending.drain(..used);
        }
        Ok((out, d.is_done(), pending))
    }

    const CHUNKED: &[u8] =
        b"5;ext=\"v\"\r\nhello\r\n00000006 ; x\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn chunked_split_at_every_pair_of_boundaries() {
        let mut raw = CHUNKED.to_vec();
        raw.extend_from_slice(b"NEXT");
        for i in 0..=raw.len() {
            for j in i..=raw.len() {
                let (out, done, pending) =
                    decode_in(Framing::Chunked, &[&raw[..i], &raw[i..j], &raw[j..]]).unwrap();
                assert_eq!(
                    (out.as_slice(), done),
                    (&b"hello world"[..], true),
                    "split at {i}, {j}"
                );
                assert_eq!(pending, b"NEXT", "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let (out, done, pending) = decode_in(Framing::Length(3), &[b"ab", b"cde"]).unwrap();
        assert_eq!(
            (out.as_slice(), done, pending.as_slice()),
            (&b"abc"[..], true, &b"de"[..])
        );
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
        let mut d = BodyDecoder::new(Framing::Length(3));
        assert!(d.finish_at_eof().is_err());
    }

    #[test]
    fn close_delimited_ends_at_eof() {
        let mut d = BodyDecoder::new(Framing::Close);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"abc", &mut out), Ok(3));
        assert!(!d.is_done());
        d.finish_at_eof().unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn chunked_truncated_at_eof_is_malformed() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        d.decode(b"5\r\nhel", &mut Vec::new()).unwrap();
        assert!(d.finish_at_eof().is_err());
    }

    #[test]
    fn chunk_sizes_are_strict() {
        for bad in [
            &b"zz\r\n"[..],
            b" 5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5 x\r\n",
            b"\r\n",
            b"5\n\r\n",
            b"11111111111111111\r\n",
            b"2\r\nabXY",
        ] {
            assert!(
                decode_in(Framing::Chunked, &[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (out, done, _) = decode_in(Framing::Chunked, &[b"ffffffffffffffff\r\nab"]).unwrap();
        assert_eq!((out.as_slice(), done), (&b"ab"[..], false));
        let endless = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert_eq!(
            decode_in(Framing::Chunked, &[&endless]).unwrap_err(),
            Malformed("chunk size line too long")
        );
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b"x: y\r\n", MAX_TRAILER_BYTES / 6 + 1).flatten());
        assert_eq!(
            decode_in(Framing::Chunked, &[&trailers]).unwrap_err(),
            Malformed("trailers too large")
        );
    }
}
