//! Request heads: httparse push-parsing into offsets (so the head survives the buffer growing while the body
//! arrives), the framing rules that decide where a body ends, and the borrowed [`Request`] view handlers get.

use std::mem::MaybeUninit;

use super::{HttpError, Limits};

/// Header slots parsed on the coroutine stack (32 bytes each). The official SDKs send about 17 headers;
/// a request with more is parsed again with slots on the heap, up to `--max-headers`. Keeping this array
/// small keeps the deepest frame of a connection within one stack page (measured with may's stack report:
/// 128 slots made every connection touch an extra 4 KiB page, 40 MB at 10,000 connections).
const STACK_HEADER_SLOTS: usize = 24;

/// The prefix of standin's own request headers (`x-standin-ttft-ms`, …), which most requests lack.
const STANDIN_PREFIX: &str = "x-standin-";

/// Request methods the router cares about; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// OPTIONS
    Options,
    /// Any other method, answered 405 or 404 by the router.
    Other,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Byte ranges of one header inside the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct HeaderSpan {
    name: (u32, u32),
    value: (u32, u32),
}

/// A parsed head, as offsets into the connection's read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// Method, classified.
    pub method: Method,
    method_span: (u32, u32),
    path_span: (u32, u32),
    /// Bytes of the target before any query string.
    path_len: u32,
    /// Some header's name starts with `x-standin-`: without one, lookups of those skip the scan.
    standin_headers: bool,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Bytes of request line and headers, final CRLF included.
    pub len: usize,
    /// Where the body ends.
    pub framing: Framing,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// Outcome of parsing what has arrived so far.
#[derive(Debug)]
pub enum Status {
    /// A whole head.
    Complete(Head),
    /// Need more bytes.
    Partial,
}

/// Parses a head from the start of `buf`, recording header offsets in `spans` (reused per connection).
pub fn parse_head(
    buf: &[u8],
    limits: &Limits,
    spans: &mut Vec<HeaderSpan>,
) -> Result<Status, HttpError> {
    // Left uninitialised: httparse writes the slots it fills (24 × 32 bytes not zeroed per request).
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADER_SLOTS];
    let fast = limits.max_headers.min(STACK_HEADER_SLOTS);
    match parse_with(buf, &mut slots[..fast], limits, spans) {
        Err(HttpError::HeaderTooLarge) if limits.max_headers > STACK_HEADER_SLOTS => {
            let mut slots = vec![MaybeUninit::uninit(); limits.max_headers];
            parse_with(buf, &mut slots, limits, spans)
        }
        other => other,
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
    spans: &mut Vec<HeaderSpan>,
) -> Result<Status, HttpError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_header_bytes {
                Err(too_large(buf, limits))
            } else {
                Ok(Status::Partial)
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeaderTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(httparse::Error::Token) | Err(httparse::Error::Status) => {
            return Err(HttpError::BadRequest("malformed request line"))
        }
        Err(_) => return Err(HttpError::BadRequest("malformed header")),
    };
    if len > limits.max_header_bytes {
        return Err(too_large(buf, limits));
    }
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
    // httparse guarantees method, path and version are present on Complete.
    let method_str = req.method.unwrap_or("");
    let path = origin_form(req.path.unwrap_or(""))?;
    let minor_version = req.version.unwrap_or(1);
    let mut framing = Framing::Empty;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = minor_version == 1;
    let mut expect_continue = false;
    let mut hosts = 0;
    let mut standin_headers = false;
    spans.clear();
    for header in req.headers.iter() {
        spans.push(HeaderSpan {
            name: span(header.name.as_bytes()),
            value: span(header.value),
        });
        let name = header.name;
        let value = trim(header.value);
        standin_headers |= name
            .as_bytes()
            .get(..STANDIN_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(STANDIN_PREFIX.as_bytes()));
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(value).ok_or(HttpError::BadRequest("invalid Content-Length"))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(HttpError::BadRequest("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::BadRequest(
                    "unsupported Transfer-Encoding (only chunked)",
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor_version == 0 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            // RFC 9112 3.2: one Host, a valid authority; the value is not used otherwise.
            hosts += 1;
            if value
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(HttpError::BadRequest("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case(b"100-continue")
        {
            expect_continue = minor_version == 1;
        }
    }
    match hosts {
        0 if minor_version == 1 => return Err(HttpError::BadRequest("missing Host header")),
        0 | 1 => {}
        _ => return Err(HttpError::BadRequest("more than one Host header")),
    }
    if chunked {
        // RFC 9112 6.3: both present is a smuggling shape; refuse rather than pick one.
        if content_length.is_some() {
            return Err(HttpError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if minor_version == 0 {
            return Err(HttpError::BadRequest("chunked encoding needs HTTP/1.1"));
        }
        framing = Framing::Chunked;
    } else if let Some(n) = content_length {
        framing = if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        };
    }
    Ok(Status::Complete(Head {
        method: classify(method_str),
        method_span: span(method_str.as_bytes()),
        path_span: span(path.as_bytes()),
        path_len: path.bytes().position(|b| b == b'?').unwrap_or(path.len()) as u32,
        standin_headers,
        minor_version,
        len,
        framing,
        keep_alive,
        expect_continue: expect_continue && framing != Framing::Empty,
    }))
}

/// The path of a request target: origin-form (`/v1/models`) as is, `*` as is, and absolute-form
/// (`http://host/v1/models`, which RFC 9112 3.2.2 says a server must accept) reduced to its path, `/` when
/// it has none. The result always borrows from `target`.
fn origin_form(target: &str) -> Result<&str, HttpError> {
    if target.starts_with('/') || target == "*" {
        return Ok(target);
    }
    let scheme_end = target.find("://").filter(|&i| {
        let scheme = &target[..i];
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    });
    let Some(i) = scheme_end else {
        return Err(HttpError::BadRequest(
            "request target must be an absolute path",
        ));
    };
    let after = &target[i + 3..];
    if after.is_empty() || after.starts_with('/') {
        return Err(HttpError::BadRequest("absolute-form target without a host"));
    }
    Ok(match after.find(['/', '?']) {
        Some(j) if after.as_bytes()[j] == b'/' => &after[j..],
        // No path: the `/` of `://` stands for it (it borrows from the target like every path).
        _ => &target[i + 2..i + 3],
    })
}

/// A well-formed version other than 1.0 and 1.1 (`HTTP/2.0`) is 505; anything else in its place is 400.
fn version_error(buf: &[u8]) -> HttpError {
    let line = buf
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(buf)
        .trim_ascii_end();
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts[..] {
        [_, _, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HttpError::VersionNotSupported
        }
        _ => HttpError::BadRequest("malformed HTTP version"),
    }
}

/// Past the head limit: 414 when the request line alone is too long (RFC 9112 3), else 431.
fn too_large(buf: &[u8], limits: &Limits) -> HttpError {
    let line = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    if line >= limits.max_header_bytes.min(buf.len()) || line > limits.max_header_bytes / 2 {
        HttpError::UriTooLong
    } else {
        HttpError::HeaderTooLarge
    }
}

fn classify(method: &str) -> Method {
    match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    }
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Digits only (no sign, no spaces inside, no list): anything else is a framing attack or a bug.
fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

/// One request as the handler sees it: everything borrowed from the connection's buffers.
pub struct Request<'a> {
    buf: &'a [u8],
    head: &'a Head,
    spans: &'a [HeaderSpan],
    /// The body, de-chunked.
    pub body: &'a [u8],
    arrived: std::time::Instant,
}

impl<'a> Request<'a> {
    /// Builds the view; `buf` must be the buffer `head` and `spans` were parsed from.
    pub fn new(
        buf: &'a [u8],
        head: &'a Head,
        spans: &'a [HeaderSpan],
        body: &'a [u8],
        arrived: std::time::Instant,
    ) -> Self {
        Request {
            buf,
            head,
            spans,
            arrived,
            body,
        }
    }

    fn slice(&self, (start, len): (u32, u32)) -> &'a [u8] {
        &self.buf[start as usize..(start + len) as usize]
    }

    /// When the request's first byte arrived.
    pub fn arrived(&self) -> std::time::Instant {
        self.arrived
    }

    /// The method, classified.
    pub fn method(&self) -> Method {
        self.head.method
    }

    /// The method as sent (httparse admits only token characters, so it is ASCII).
    pub fn method_str(&self) -> &'a str {
        std::str::from_utf8(self.slice(self.head.method_span)).unwrap_or("?")
    }

    /// The request target with its query string.
    pub fn target(&self) -> &'a str {
        std::str::from_utf8(self.slice(self.head.path_span)).unwrap_or("/")
    }

    /// The path without the query string.
    pub fn path(&self) -> &'a str {
        let (start, _) = self.head.path_span;
        std::str::from_utf8(self.slice((start, self.head.path_len))).unwrap_or("/")
    }

    /// The first header with this name (case-insensitive), as bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        if !self.head.standin_headers && name.starts_with(STANDIN_PREFIX) {
            return None;
        }
        self.spans
            .iter()
            .find(|s| self.slice(s.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(|s| trim(self.slice(s.value)))
    }

    /// The first header with this name, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Status, HttpError> {
        parse_head(raw.as_bytes(), &Limits::default(), &mut Vec::new())
    }

    fn complete(raw: &str) -> Head {
        match head(raw) {
            Ok(Status::Complete(h)) => h,
            other => panic!("expected a complete head for {raw:?}, got {other:?}"),
        }
    }

    macro_rules! bad {
        ($($name:ident: $raw:expr,)*) => {$(
            #[test]
            fn $name() {
                assert!(matches!(head($raw), Err(HttpError::BadRequest(_))), "{:?}", head($raw));
            }
        )*};
    }

    bad! {
        rejects_garbage_request_line: "GARBAGE\r\n\r\n",
        rejects_bad_header_line: "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        rejects_signed_length: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
        rejects_hex_length: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
        rejects_list_length: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
        rejects_conflicting_lengths: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        rejects_length_and_chunked: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        rejects_gzip_encoding: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        rejects_double_chunked: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        rejects_missing_host: "GET / HTTP/1.1\r\n\r\n",
        rejects_two_hosts: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        rejects_host_with_space: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        rejects_other_scheme: "GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        rejects_hostless_absolute_form: "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
        rejects_relative_target: "GET v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
        rejects_chunked_on_http10: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    }

    #[test]
    fn other_versions_are_505_and_http10_needs_no_host() {
        assert_eq!(
            head("GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            HttpError::VersionNotSupported
        );
        assert!(matches!(
            head("GET / HTTP/1.0\r\n\r\n"),
            Ok(Status::Complete(_))
        ));
    }

    #[test]
    fn absolute_form_targets_route_by_their_path() {
        for (target, path) in [
            ("http://h/v1/models?x=1", "/v1/models?x=1"),
            ("HTTPS://h:8000/health", "/health"),
            ("http://h", "/"),
            ("http://h?q", "/"),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let mut spans = Vec::new();
            let Ok(Status::Complete(h)) =
                parse_head(raw.as_bytes(), &Limits::default(), &mut spans)
            else {
                panic!("{target}")
            };
            let req = Request::new(raw.as_bytes(), &h, &spans, b"", std::time::Instant::now());
            assert_eq!(req.target(), path, "{target}");
        }
    }

    #[test]
    fn a_long_request_line_is_414_and_long_headers_431() {
        let limits = Limits {
            max_header_bytes: 300,
            ..Limits::default()
        };
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(400));
        assert_eq!(
            parse_head(long_target.as_bytes(), &limits, &mut Vec::new()).unwrap_err(),
            HttpError::UriTooLong
        );
        // Still arriving, no line end yet: the same.
        assert_eq!(
            parse_head(&long_target.as_bytes()[..310], &limits, &mut Vec::new()).unwrap_err(),
            HttpError::UriTooLong
        );
    }

    #[test]
    fn partial_until_blank_line() {
        assert!(matches!(
            head("GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(Status::Partial)
        ));
        assert!(matches!(head("GE"), Ok(Status::Partial)));
    }

    #[test]
    fn header_bytes_limit() {
        let limits = Limits {
            max_header_bytes: 300,
            ..Limits::default()
        };
        let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(400));
        assert_eq!(
            parse_head(long.as_bytes(), &limits, &mut Vec::new()).unwrap_err(),
            HttpError::HeaderTooLarge
        );
    }

    #[test]
    fn many_headers_within_the_limit_parse() {
        let limits = Limits {
            max_headers: 100,
            ..Limits::default()
        };
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..90 {
            raw.push_str(&format!("x-h{i}: {i}\r\n"));
        }
        raw.push_str("\r\n");
        let mut spans = Vec::new();
        assert!(matches!(
            parse_head(raw.as_bytes(), &limits, &mut spans),
            Ok(Status::Complete(_))
        ));
        assert_eq!(spans.len(), 91, "90 and Host");
        let tight = Limits {
            max_headers: 89,
            ..Limits::default()
        };
        assert_eq!(
            parse_head(raw.as_bytes(), &tight, &mut spans).unwrap_err(),
            HttpError::HeaderTooLarge
        );
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let raw = "GET / HTTP/1.1\r\nHost: x\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n";
        assert_eq!(
            parse_head(raw.as_bytes(), &limits, &mut Vec::new()).unwrap_err(),
            HttpError::HeaderTooLarge
        );
    }

    #[test]
    fn framing_and_connection_rules() {
        let h = complete(
            "POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n",
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), true));
        let h = complete(
            "POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\nConnection: close\r\n\r\n",
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(!complete("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            complete(
                "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
            )
            .expect_continue
        );
        assert!(
            !complete("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n").expect_continue
        );
    }

    #[test]
    fn request_view_reads_headers_and_path() {
        let raw = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: x\r\nAuthorization:  Bearer k \r\n\r\n";
        let mut spans = Vec::new();
        let Ok(Status::Complete(h)) = parse_head(raw, &Limits::default(), &mut spans) else {
            panic!()
        };
        let req = Request::new(raw, &h, &spans, b"", std::time::Instant::now());
        assert_eq!(req.method(), Method::Get);
        assert_eq!(req.method_str(), "GET");
        assert_eq!(req.target(), "/v1/models?x=1");
        assert_eq!(req.path(), "/v1/models");
        assert_eq!(req.header_str("authorization"), Some("Bearer k"));
        assert_eq!(req.header("missing"), None);
    }

    /// Lookups of `x-standin-*` skip the scan only when no such header came, in any case of its name.
    #[test]
    fn standin_headers_are_found_whatever_their_case() {
        let view = |raw: &'static [u8], name: &str, want: Option<&str>| {
            let mut spans = Vec::new();
            let Ok(Status::Complete(h)) = parse_head(raw, &Limits::default(), &mut spans) else {
                panic!()
            };
            let req = Request::new(raw, &h, &spans, b"", std::time::Instant::now());
            assert_eq!(req.header_str(name), want, "{name}");
            assert_eq!(req.path(), "/p");
        };
        view(
            b"GET /p HTTP/1.1\r\nHost: x\r\nX-Standin-TTFT-Ms: 5\r\n\r\n",
            "x-standin-ttft-ms",
            Some("5"),
        );
        view(
            b"GET /p HTTP/1.1\r\nHost: x\r\nx-standin-fail: 429\r\n\r\n",
            "x-standin-ttft-ms",
            None,
        );
        view(
            b"GET /p HTTP/1.1\r\nHost: x\r\nx-standin-fail: 429\r\n\r\n",
            "x-standin-fail",
            Some("429"),
        );
        view(
            b"GET /p HTTP/1.1\r\nHost: x\r\nx-standin: 1\r\n\r\n",
            "x-standin-fail",
            None,
        );
        view(
            b"GET /p? HTTP/1.1\r\nHost: x\r\nX-STANDIN-ITL-MS: 7\r\n\r\n",
            "x-standin-itl-ms",
            Some("7"),
        );
    }
}
