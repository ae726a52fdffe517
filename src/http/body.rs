//! Chunked request bodies: an incremental `Transfer-Encoding: chunked` decoder that consumes whatever has
//! arrived, enforces the body limit on the decoded size, and bounds size lines and trailers.

use super::request::trim;
use super::{HttpError, Limits};

/// A chunk-size line (with extensions) longer than this is malformed rather than slow.
const MAX_CHUNK_LINE: usize = 4096;

/// Where a chunked decoder is between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

/// Incremental `Transfer-Encoding: chunked` decoder: feed it whatever has arrived, it consumes what it can.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            trailer_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Decodes from `input` into `out`; returns bytes consumed. `is_done` tells when the body ended.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<usize, HttpError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Size => {
                    let Some(line_end) = find_crlf(rest)? else {
                        return if rest.len() > MAX_CHUNK_LINE {
                            Err(HttpError::BadRequest("chunk size line too long"))
                        } else {
                            Ok(pos)
                        };
                    };
                    if line_end > MAX_CHUNK_LINE {
                        // The same limit whether the line came in one read or many.
                        return Err(HttpError::BadRequest("chunk size line too long"));
                    }
                    let line = &rest[..line_end];
                    let digits = line
                        .split(|&b| b == b';')
                        .next()
                        .map(trim)
                        .unwrap_or_default();
                    let size =
                        parse_hex(digits).ok_or(HttpError::BadRequest("invalid chunk size"))?;
                    if size > limits.max_body_bytes.saturating_sub(out.len()) {
                        return Err(HttpError::BodyTooLarge);
                    }
                    pos += line_end + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = left.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::BadRequest("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line_end) = find_crlf(rest)? else {
                        return if self.trailer_bytes + rest.len() > limits.max_header_bytes {
                            Err(HttpError::HeaderTooLarge)
                        } else {
                            Ok(pos)
                        };
                    };
                    self.trailer_bytes += line_end + 2;
                    if self.trailer_bytes > limits.max_header_bytes {
                        return Err(HttpError::HeaderTooLarge);
                    }
                    pos += line_end + 2;
                    if line_end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }

    /// Whether the terminating chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Where the line's CRLF starts. A bare LF is refused at once rather than waited past: proxies disagree on
/// it, which makes it a smuggling shape (RFC 9112 7.1 ends chunk lines with CRLF).
fn find_crlf(s: &[u8]) -> Result<Option<usize>, HttpError> {
    match s.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && s[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err(HttpError::BadRequest("chunk line not ended by CRLF")),
        None => Ok(None),
    }
}

fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &d| {
        Some(n * 16 + (d as char).to_digit(16)? as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk(input: &[u8], limits: &Limits) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let used = d.decode(input, &mut out, limits)?;
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn bare_lf_and_long_lines_are_refused_however_they_arrive() {
        let limits = Limits::default();
        for input in [&b"3\nabc\r\n0\r\n\r\n"[..], b"3\r\nabc\r\n0\r\nX: y\n\r\n"] {
            assert!(
                matches!(dechunk(input, &limits), Err(HttpError::BadRequest(_))),
                "{input:?}"
            );
        }
        // A 5 KB extension in one read is refused like one that arrives in pieces.
        let long = format!("3;{}\r\nabc\r\n0\r\n\r\n", "x".repeat(5000));
        assert!(matches!(
            dechunk(long.as_bytes(), &limits),
            Err(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn chunked_decodes_extensions_and_trailers() {
        let input = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (out, used, done) = dechunk(input, &Limits::default()).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&input[used..], b"NEXT");
    }

    #[test]
    fn chunked_resumes_byte_by_byte() {
        let input = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for &b in input {
            pending.push(b);
            let used = d.decode(&pending, &mut out, &Limits::default()).unwrap();
            pending.drain(..used);
        }
        assert!(d.is_done());
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn chunked_rejects_bad_input() {
        let limits = Limits {
            max_body_bytes: 8,
            ..Limits::default()
        };
        assert_eq!(
            dechunk(b"zz\r\n", &limits).unwrap_err(),
            HttpError::BadRequest("invalid chunk size")
        );
        assert_eq!(
            dechunk(b"9\r\n", &limits).unwrap_err(),
            HttpError::BodyTooLarge
        );
        assert_eq!(
            dechunk(b"5\r\n12345\r\n5\r\n", &limits).unwrap_err(),
            HttpError::BodyTooLarge
        );
        assert!(matches!(
            dechunk(b"2\r\nabXY", &limits),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            dechunk(b"ffffffffffffffffff\r\n", &limits),
            Err(HttpError::BadRequest(_))
        ));
        let endless = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(matches!(
            dechunk(&endless, &limits),
            Err(HttpError::BadRequest(_))
        ));
    }
}
