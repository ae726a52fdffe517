//! Hostile input: a catalogue of malformed, ambiguous and abusive requests, each with the answer the README
//! documents (or, where it is silent, what RFC 9112 allows and standin does), and the server alive after all
//! of them. Builds on `malformed.rs` (basic 400s), `limits.rs`, `framing.rs` and `validation.rs` without
//! repeating their cases.
//!
//! Every smuggling-shaped row carries a complete second request (`x-request-id: smuggled`) behind the first:
//! a refused row must answer once and close, an accepted row must answer once and then serve the next
//! request on the connection, never the smuggled one.
//!
//! Where the RFCs leave a choice, the row's note says which one standin makes. The tests at the end assert
//! three RFC 9112 MUSTs the server once missed (Host, absolute-form, 414).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    assert_echo, chat, chat_body, get, post, Client, Response, Server, MODEL, READ_TIMEOUT,
};

/// The head of a chat POST; rows add framing headers, the blank line and a body.
const CHAT: &str = "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n";

/// A whole request that must never be answered when it hides behind another one.
const SMUGGLED: &str = "GET /health HTTP/1.1\r\nHost: t\r\nx-request-id: smuggled\r\n\r\n";

/// What a row must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The HTTP layer refuses: this status and code in the envelope, `Connection: close`, then the connection
    /// closes with nothing more on it (so nothing smuggled was answered).
    Fatal(u16, &'static str),
    /// An ordinary answer (an error envelope with this code when >= 400); the connection stays usable and
    /// its next response answers the next request sent, not anything hidden in the row.
    Kept(u16, Option<&'static str>),
    /// As `Kept`, and the error's `param` is this.
    KeptParam(u16, &'static str, &'static str),
}

use Expect::{Fatal, Kept, KeptParam};

/// One catalogue row.
struct Case {
    name: &'static str,
    raw: Vec<u8>,
    expect: Expect,
    /// Why this answer, when it is not obvious (printed on failure).
    note: &'static str,
}

fn case(name: &'static str, raw: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        raw: raw.into(),
        expect,
        note: "",
    }
}

fn noted(name: &'static str, raw: impl Into<Vec<u8>>, expect: Expect, note: &'static str) -> Case {
    Case {
        name,
        raw: raw.into(),
        expect,
        note,
    }
}

/// `CHAT` plus extra header lines (each ending in CRLF), the blank line and `body`.
fn chat_raw(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{CHAT}{headers}\r\n").into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// `body` as one chunk and the last chunk.
fn one_chunk(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A request on which the server keeps going, to show what the next response on a connection answers.
fn probe(id: &str) -> Vec<u8> {
    get("/health", &[("x-request-id", id)])
}

/// Reads a response, panicking with the row's name on failure.
fn read(conn: &mut Client, name: &str) -> Response {
    conn.try_read_response()
        .unwrap_or_else(|e| panic!("{name}: no response ({e})"))
}

/// Sends one row on a fresh connection and checks everything its `Expect` promises.
fn run_case(server: &Server, case: &Case, index: usize) {
    let Case {
        name, raw, expect, ..
    } = case;
    let mut conn = server.connect();
    // Rows larger than the server reads before refusing may see the write fail; the answer decides.
    let _ = conn.try_send(raw);
    let resp = read(&mut conn, name);
    assert_ne!(
        resp.header("x-request-id"),
        Some("smuggled"),
        "{name}: a smuggled request was answered"
    );
    match *expect {
        Fatal(status, code) => {
            resp.assert_error(status, Some(code));
            assert!(
                resp.connection_has("close"),
                "{name}: no Connection: close on a {status}: {}",
                resp.raw_head
            );
            conn.assert_closed();
        }
        Kept(status, code) => {
            check_kept(&resp, name, status, code, None);
            check_next_is_probe(&mut conn, name, index);
        }
        KeptParam(status, code, param) => {
            check_kept(&resp, name, status, Some(code), Some(param));
            check_next_is_probe(&mut conn, name, index);
        }
    }
}

fn check_kept(resp: &Response, name: &str, status: u16, code: Option<&str>, param: Option<&str>) {
    if status >= 400 {
        let err = resp.assert_error(status, code);
        if let Some(param) = param {
            assert_eq!(err["param"], param, "{name}: {err}");
        }
    } else {
        assert_eq!(
            resp.status,
            status,
            "{name}: {} {}",
            resp.raw_head,
            String::from_utf8_lossy(&resp.body)
        );
        resp.assert_common_headers();
    }
    assert!(
        !resp.connection_has("close"),
        "{name}: closed after an ordinary answer: {}",
        resp.raw_head
    );
}

/// The next response on `conn` must answer the next request, proving nothing else was queued.
fn check_next_is_probe(conn: &mut Client, name: &str, index: usize) {
    let id = format!("probe-{index}");
    conn.send(&probe(&id));
    let next = read(conn, name);
    assert_eq!(
        next.header("x-request-id"),
        Some(id.as_str()),
        "{name}: the response after the row is not the probe's: {}",
        next.raw_head
    );
    assert_eq!(next.status, 200, "{name}: {}", next.raw_head);
}

/// Runs every row, each isolated so one failure does not hide the others; checks the server is alive every
/// few rows and at the end; panics listing every row that failed.
fn run_table(server: &Server, cases: &[Case]) {
    let mut failed = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(server, case, i)));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!(
                "{} (expected {:?}{}{}): {why}",
                case.name,
                case.expect,
                if case.note.is_empty() { "" } else { "; " },
                case.note
            ));
        }
        if i % 5 == 4 {
            server.assert_alive();
        }
    }
    server.assert_alive();
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

/// Waits until only the scrape's own connection is open.
fn assert_connections_drain(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = server.open_connections();
        if open == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} connections still open (want just the scrape's)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Request-line, header, framing, smuggling and method rows.
fn http_rows() -> Vec<Case> {
    let ok_body = chat_body("framed");
    let ok = ok_body.as_bytes();
    let len = ok.len();
    let smuggled = SMUGGLED.as_bytes();
    let mut rows = vec![
        // Request lines.
        noted(
            "HTTP/2.0 request line",
            "GET /health HTTP/2.0\r\nHost: t\r\n\r\n",
            Fatal(505, "http_version_not_supported"),
            "RFC 9110 15.6.6: a well-formed version standin does not speak",
        ),
        noted(
            "HTTP/1.2 request line",
            "GET /health HTTP/1.2\r\nHost: t\r\n\r\n",
            Fatal(505, "http_version_not_supported"),
            "RFC 9112 2.3: SHOULD be served as HTTP/1.1; standin answers 505 (httparse reads 1.0 and 1.1 only)",
        ),
        case(
            "HTTP/0.9 simple request",
            "GET /health\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "HTTP/0.9 version",
            "GET /health HTTP/0.9\r\nHost: t\r\n\r\n",
            Fatal(505, "http_version_not_supported"),
        ),
        case(
            "lowercase protocol name",
            "GET /health http/1.1\r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        noted(
            "lowercase method",
            "get /health HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(405, Some("method_not_allowed")),
            "methods are case-sensitive (RFC 9110 9.1): `get` is an unknown method",
        ),
        noted(
            "absurd 2000-character method",
            format!("{} /health HTTP/1.1\r\nHost: t\r\n\r\n", "X".repeat(2000)),
            Kept(405, Some("method_not_allowed")),
            "RFC 9112 3 / RFC 9110 9.1 say SHOULD 501 for unknown or over-long methods",
        ),
        case(
            "unknown method on an unknown path",
            "BREW /coffee HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        case(
            "missing method",
            "/health HTTP/1.1\r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "two spaces after the method",
            "GET  /health HTTP/1.1\r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "space before the method",
            " GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "space after the version",
            "GET /health HTTP/1.1 \r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "tabs as request-line separators",
            "GET\t/health\tHTTP/1.1\r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        noted(
            "empty line before the request line",
            "\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(200, None),
            "RFC 9112 2.2: SHOULD ignore at least one empty line before the request line",
        ),
        noted(
            "absolute-form target",
            "GET http://t/health HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(200, None),
            "RFC 9112 3.2.2: a server MUST accept absolute-form; it routes by its path",
        ),
        case(
            "authority-form CONNECT",
            "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "asterisk-form OPTIONS",
            "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        case(
            "asterisk-form GET",
            "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        noted(
            "20 KB request target",
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000)),
            Fatal(414, "uri_too_long"),
            "RFC 9112 3: a request line past the head limit is 414",
        ),
        case(
            "NUL in the path",
            "GET /health\0 HTTP/1.1\r\nHost: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "non-UTF-8 bytes in the path",
            b"GET /health\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            Fatal(400, "bad_request"),
        ),
        case(
            "UTF-8 path",
            "GET /h\u{e9}alth HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        case(
            "fragment in the target",
            "GET /health#top HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        case(
            "dot segments are not normalised",
            "GET /v1/../health HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        case(
            "percent-encoding is not decoded",
            "GET /%68ealth HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(404, Some("unknown_url")),
        ),
        // Header syntax.
        noted(
            "obs-fold continuation line",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
            Fatal(400, "bad_request"),
            "RFC 9112 5.2: reject with 400 or unfold",
        ),
        case(
            "obs-fold with a tab",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        noted(
            "whitespace before the first header",
            "GET /health HTTP/1.1\r\n Host: t\r\n\r\n",
            Fatal(400, "bad_request"),
            "RFC 9112 2.2: MUST reject or ignore the line",
        ),
        case(
            "tab before the colon",
            "GET /health HTTP/1.1\r\nHost\t: t\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "space inside a header name",
            "GET /health HTTP/1.1\r\nHost: t\r\nX Y: z\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "non-token byte in a header name",
            "GET /health HTTP/1.1\r\nHost: t\r\nX@Y: z\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "NUL in a header name",
            "GET /health HTTP/1.1\r\nHost: t\r\nX\0A: a\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "0x01 in a header value",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "ESC sequence in a header value",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: \x1b[31mred\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        case(
            "DEL in a header value",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n",
            Fatal(400, "bad_request"),
        ),
        noted(
            "bare CR inside a header value",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
            Fatal(400, "bad_request"),
            "RFC 9112 2.2: a bare CR MUST be treated as invalid or replaced by SP",
        ),
        case(
            "bare CR line endings",
            "GET /health HTTP/1.1\rHost: t\r\r",
            Fatal(400, "bad_request"),
        ),
        noted(
            "bare LF line endings",
            "GET /health HTTP/1.1\nHost: t\n\n",
            Kept(200, None),
            "RFC 9112 2.2: a recipient MAY accept a lone LF as a line terminator",
        ),
        noted(
            "non-UTF-8 bytes in a header value",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: caf\xe9 \xff\xfe\r\n\r\n".to_vec(),
            Kept(200, None),
            "obs-text is allowed in field values (RFC 9110 5.5)",
        ),
        noted(
            "missing Host on HTTP/1.1",
            "GET /health HTTP/1.1\r\n\r\n",
            Fatal(400, "bad_request"),
            "RFC 9112 3.2: MUST 400",
        ),
        noted(
            "two Host headers",
            "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            Fatal(400, "bad_request"),
            "RFC 9112 3.2: MUST 400",
        ),
        // Content-Length.
        noted(
            "the same Content-Length twice",
            chat_raw(&format!("Content-Length: {len}\r\nContent-Length: {len}\r\n"), ok),
            Kept(200, None),
            "identical values may be accepted (RFC 9110 8.6)",
        ),
        case(
            "different Content-Lengths with a request in the gap",
            cat(&[
                &chat_raw(
                    &format!("Content-Length: {len}\r\nContent-Length: {}\r\n", len + smuggled.len()),
                    ok,
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "Content-Length list of equal values",
            chat_raw(&format!("Content-Length: {len}, {len}\r\n"), ok),
            Fatal(400, "bad_request"),
        ),
        case(
            "Content-Length with leading zeros",
            chat_raw(&format!("Content-Length: 000{len}\r\n"), ok),
            Kept(200, None),
        ),
        case(
            "Content-Length padded with tabs",
            chat_raw(&format!("Content-Length:\t{len}\t\r\n"), ok),
            Kept(200, None),
        ),
        case(
            "Content-Length -0",
            chat_raw("Content-Length: -0\r\n", b"{}"),
            Fatal(400, "bad_request"),
        ),
        case(
            "Content-Length with a space inside",
            chat_raw("Content-Length: 1 0\r\n", b"{}"),
            Fatal(400, "bad_request"),
        ),
        case(
            "empty Content-Length",
            chat_raw("Content-Length: \r\n", b"{}"),
            Fatal(400, "bad_request"),
        ),
        noted(
            "Content-Length 99999999999999999999",
            chat_raw("Content-Length: 99999999999999999999\r\n", b"{}"),
            Fatal(400, "bad_request"),
            "plain digits but past 18 of them: refused as invalid, not 413",
        ),
        case(
            "Content-Length u64::MAX",
            chat_raw("Content-Length: 18446744073709551615\r\n", b"{}"),
            Fatal(400, "bad_request"),
        ),
        case(
            "Content-Length of 18 nines",
            chat_raw("Content-Length: 999999999999999999\r\n", b"{}"),
            Fatal(413, "request_too_large"),
        ),
        noted(
            "GET whose Content-Length body is a request",
            cat(&[
                format!("GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", smuggled.len())
                    .as_bytes(),
                smuggled,
            ]),
            Kept(200, None),
            "the body is read and dropped, never parsed as a request",
        ),
        case(
            "PUT whose body is a request",
            cat(&[
                format!("PUT /health HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", smuggled.len())
                    .as_bytes(),
                smuggled,
            ]),
            Kept(405, Some("method_not_allowed")),
        ),
        // Transfer-Encoding.
        case(
            "Transfer-Encoding: chunked, identity",
            chat_raw("Transfer-Encoding: chunked, identity\r\n", &one_chunk(ok)),
            Fatal(400, "bad_request"),
        ),
        case(
            "Transfer-Encoding: xchunked",
            chat_raw("Transfer-Encoding: xchunked\r\n", &one_chunk(ok)),
            Fatal(400, "bad_request"),
        ),
        case(
            "empty Transfer-Encoding",
            chat_raw("Transfer-Encoding: \r\n", &one_chunk(ok)),
            Fatal(400, "bad_request"),
        ),
        case(
            "Transfer-Encoding: chunked twice",
            chat_raw(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &one_chunk(ok),
            ),
            Fatal(400, "bad_request"),
        ),
        case(
            "Transfer-Encoding: chunked then identity",
            chat_raw(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                &one_chunk(ok),
            ),
            Fatal(400, "bad_request"),
        ),
        case(
            "Transfer-Encoding: CHUNKED",
            chat_raw("Transfer-Encoding: CHUNKED\r\n", &one_chunk(ok)),
            Kept(200, None),
        ),
        case(
            "Transfer-Encoding with a tab before chunked",
            chat_raw("Transfer-Encoding:\tchunked\r\n", &one_chunk(ok)),
            Kept(200, None),
        ),
        case(
            "chunked on HTTP/1.0",
            cat(&[
                b"POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                &one_chunk(ok),
            ]),
            Fatal(400, "bad_request"),
        ),
        // Smuggling shapes: a request hides behind each; none may be answered.
        case(
            "CL.TE",
            cat(&[
                &chat_raw(
                    &format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", 5),
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "TE.CL",
            cat(&[
                &chat_raw(
                    "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                    format!("{:x}\r\n", smuggled.len()).as_bytes(),
                ),
                smuggled,
                b"\r\n0\r\n\r\n",
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "TE.TE: chunked plus an obfuscated second TE",
            cat(&[
                &chat_raw(
                    "Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\nContent-Length: 5\r\n",
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "CL with `Transfer-Encoding : chunked` (space before colon)",
            cat(&[
                &chat_raw(
                    "Content-Length: 5\r\nTransfer-Encoding : chunked\r\n",
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "CL with `Transfer-Encoding:\\tchunked`",
            cat(&[
                &chat_raw(
                    "Content-Length: 5\r\nTransfer-Encoding:\tchunked\r\n",
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "CL with a vertical tab before chunked",
            cat(&[
                &chat_raw(
                    "Content-Length: 5\r\nTransfer-Encoding: \x0bchunked\r\n",
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "CL with TE hidden in an obs-fold",
            cat(&[
                &chat_raw(
                    "Content-Length: 5\r\nX-A: y\r\n Transfer-Encoding: chunked\r\n",
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "CL with TE behind a bare LF",
            cat(&[
                &chat_raw(
                    "X-A: a\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                    b"0\r\n\r\n",
                ),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "CL and TE on HTTP/1.0",
            cat(&[
                b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        case(
            "Content-Length with a NUL",
            chat_raw(&format!("Content-Length: {len}\0\r\n"), ok),
            Fatal(400, "bad_request"),
        ),
        noted(
            "Transfer_Encoding lookalike is just another header",
            chat_raw(
                &format!("Transfer_Encoding: chunked\r\nContent-Length: {len}\r\n"),
                ok,
            ),
            Kept(200, None),
            "`_` makes a different field name; Content-Length frames the body",
        ),
        noted(
            "chunk data that is a request",
            chat_raw("Transfer-Encoding: chunked\r\n", &one_chunk(smuggled)),
            Kept(400, Some("invalid_json")),
            "the request is body bytes: invalid JSON, never a second request",
        ),
        noted(
            "a request where the trailers go",
            cat(&[
                &chat_raw(
                    "Transfer-Encoding: chunked\r\n",
                    format!("{:x}\r\n{}\r\n0\r\n", len, ok_body).as_bytes(),
                ),
                smuggled,
            ]),
            Kept(200, None),
            "its lines are swallowed as trailer fields (trailer syntax is not checked)",
        ),
        // Chunk sizes.
        case(
            "chunk size of 16 hex digits",
            chat_raw(
                "Transfer-Encoding: chunked\r\n",
                b"ffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            ),
            Fatal(400, "bad_request"),
        ),
        case(
            "chunk size 10000000000000002 (overflows to 2 in 64 bits)",
            chat_raw(
                "Transfer-Encoding: chunked\r\n",
                b"10000000000000002\r\n{}\r\n0\r\n\r\n",
            ),
            Fatal(400, "bad_request"),
        ),
        case(
            "chunk size of 15 hex digits",
            chat_raw(
                "Transfer-Encoding: chunked\r\n",
                b"fffffffffffffff\r\n{}\r\n0\r\n\r\n",
            ),
            Fatal(413, "request_too_large"),
        ),
        case(
            "chunk size with a 0x prefix",
            chat_raw("Transfer-Encoding: chunked\r\n", b"0x2\r\n{}\r\n0\r\n\r\n"),
            Fatal(400, "bad_request"),
        ),
        case(
            "chunk size with extensions",
            chat_raw(
                "Transfer-Encoding: chunked\r\n",
                format!("{len:x};a=b;c;d=\"e f\"\r\n{ok_body}\r\n0;end\r\n\r\n").as_bytes(),
            ),
            Kept(200, None),
        ),
        case(
            "70 KB chunk extension",
            chat_raw(
                "Transfer-Encoding: chunked\r\n",
                format!("{len:x};{}\r\n{ok_body}\r\n0\r\n\r\n", "e".repeat(70_000)).as_bytes(),
            ),
            Fatal(400, "bad_request"),
        ),
        case(
            "chunk data not followed by CRLF",
            cat(&[
                &chat_raw("Transfer-Encoding: chunked\r\n", b"2\r\n{}XX0\r\n\r\n"),
                smuggled,
            ]),
            Fatal(400, "bad_request"),
        ),
        noted(
            "chunk lines ended by bare LF",
            chat_raw("Transfer-Encoding: chunked\r\n", b"2\n{}\n0\n\n"),
            Fatal(400, "bad_request"),
            "a bare LF in a chunk line is refused at once (proxies disagree on it: a smuggling shape)",
        ),
        // Header floods.
        case(
            "1000 headers",
            crate::support::get_with_numbered_headers("/health", 1000),
            Fatal(431, "request_header_fields_too_large"),
        ),
        case(
            "one 64 KB header",
            get("/health", &[("X-Big", &"b".repeat(64 * 1024))]),
            Fatal(431, "request_header_fields_too_large"),
        ),
        case(
            "20 KB of empty lines",
            cat(&[&b"\r\n".repeat(10_000), &probe("late")]),
            Fatal(431, "request_header_fields_too_large"),
        ),
        // Methods.
        noted(
            "OPTIONS without CORS",
            "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(405, Some("method_not_allowed")),
            "README, CORS: `OPTIONS` is a 405 while CORS is off",
        ),
        case(
            "TRACE",
            "TRACE /health HTTP/1.1\r\nHost: t\r\nMax-Forwards: 0\r\n\r\n",
            Kept(405, Some("method_not_allowed")),
        ),
        case(
            "CONNECT with an origin-form target",
            "CONNECT /health HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(405, Some("method_not_allowed")),
        ),
        case(
            "DELETE",
            "DELETE /v1/chat/completions HTTP/1.1\r\nHost: t\r\n\r\n",
            Kept(405, Some("method_not_allowed")),
        ),
        noted(
            "unknown expectation",
            "GET /health HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n",
            Kept(200, None),
            "RFC 9110 10.1.1: a server MAY answer 417; standin ignores it",
        ),
    ];
    // Garbage bytes of every kind in place of a request line.
    rows.push(case(
        "binary garbage",
        (0u8..=255).rev().chain(*b"\r\n\r\n").collect::<Vec<u8>>(),
        Fatal(400, "bad_request"),
    ));
    rows.push(noted(
        "TLS ClientHello on the plain port",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
        Fatal(400, "bad_request"),
        "a client speaking TLS gets a 400, not a hang",
    ));
    rows
}

#[test]
fn http_catalogue() {
    // Short body timeout for the row that waits on it; everything else answers at once.
    let server = Server::start(&["--body-timeout-ms", "1000"]);
    let rows = http_rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    run_table(&server, &rows);
    // Every row's connection is gone: the server closed refused ones and noticed the others' EOF.
    assert_connections_drain(&server);
}

/// Chat body text with `tail` spliced in as raw JSON after the messages (for numbers serde_json would
/// normalise).
fn raw_field(tail: &str) -> Vec<u8> {
    format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"hi"}}],{tail}}}"#)
        .into_bytes()
}

/// A chat body whose only message's content is the raw bytes `content` inside quotes.
fn raw_content(content: &[u8]) -> Vec<u8> {
    cat(&[
        format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":""#).as_bytes(),
        content,
        br#""}]}"#,
    ])
}

fn chat_post(body: impl AsRef<[u8]>) -> Vec<u8> {
    post("/v1/chat/completions", body.as_ref(), &[])
}

/// Request bodies that frame correctly: answered by the API, and the connection lives on.
fn body_rows() -> Vec<Case> {
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    vec![
        // Depth past the limit on the endpoints limits.rs does not cover (server runs with depth 8).
        case(
            "embeddings input nested past --max-json-depth",
            post(
                "/v1/embeddings",
                format!(r#"{{"model":"{MODEL}","input":{}}}"#, deep(20)).as_bytes(),
                &[],
            ),
            Kept(400, Some("json_too_deep")),
        ),
        case(
            "completions prompt nested past --max-json-depth",
            post(
                "/v1/completions",
                format!(r#"{{"model":"{MODEL}","prompt":{}}}"#, deep(20)).as_bytes(),
                &[],
            ),
            Kept(400, Some("json_too_deep")),
        ),
        case(
            "objects nested past --max-json-depth in metadata",
            chat_post(raw_field(&format!(
                r#""metadata":{}1{}"#,
                r#"{"k":"#.repeat(10),
                "}".repeat(10)
            ))),
            Kept(400, Some("json_too_deep")),
        ),
        case(
            "unclosed brackets past --max-json-depth",
            chat_post("[".repeat(5000)),
            Kept(400, Some("json_too_deep")),
        ),
        // Bytes that are not UTF-8 or not JSON.
        case(
            "invalid UTF-8 in the model string",
            chat_post(cat(&[
                b"{\"model\":\"gpt\xc3\x28\",",
                br#""messages":[{"role":"user","content":"x"}]}"#,
            ])),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "invalid UTF-8 in an object key",
            chat_post(cat(&[
                br#"{"model":"m","#,
                b"\"\xff\":1,",
                br#""messages":[{"role":"user","content":"x"}]}"#,
            ])),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "overlong UTF-8 encoding of '/'",
            chat_post(raw_content(b"\xc0\xaf")),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "UTF-8-encoded surrogate (CESU)",
            chat_post(raw_content(b"\xed\xa0\x80")),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "truncated multi-byte sequence at the end",
            chat_post(b"{\"model\":\"m\",\"messages\":[]}\xe2\x82"),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "UTF-8 byte-order mark",
            chat_post(cat(&[b"\xef\xbb\xbf", chat_body("bom").as_bytes()])),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "raw NUL inside a string",
            chat_post(raw_content(b"a\0b")),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "raw NUL between members",
            chat_post(b"{\"model\":\"m\",\0\"messages\":[]}"),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "NaN",
            chat_post(raw_field(r#""temperature":NaN"#)),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "Infinity",
            chat_post(raw_field(r#""temperature":Infinity"#)),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "duplicate key",
            chat_post(raw_field(r#""model":"other""#)),
            Kept(400, Some("invalid_json")),
        ),
        case(
            "comment",
            chat_post(raw_field(r#""n":1/* c */"#)),
            Kept(400, Some("invalid_json")),
        ),
        // Lone surrogates: valid JSON text, but not a Unicode string.
        noted(
            "lone high surrogate in content",
            chat_post(raw_content(br"\ud800")),
            KeptParam(400, "invalid_type", "messages[0].content"),
            "message reads 'expected a string, but got a string'",
        ),
        case(
            "lone low surrogate in content",
            chat_post(raw_content(br"x\udc00y")),
            KeptParam(400, "invalid_type", "messages[0].content"),
        ),
        case(
            "high surrogate followed by a non-surrogate",
            chat_post(raw_content(br"\ud800\u0041")),
            KeptParam(400, "invalid_type", "messages[0].content"),
        ),
        case(
            "lone surrogate in the model",
            chat_post(r#"{"model":"\ud800","messages":[{"role":"user","content":"x"}]}"#),
            KeptParam(400, "invalid_type", "model"),
        ),
        // Absurd numbers.
        case(
            "max_tokens 1e309",
            chat_post(raw_field(r#""max_tokens":1e309"#)),
            KeptParam(400, "invalid_type", "max_tokens"),
        ),
        case(
            "max_tokens 1e999999999999",
            chat_post(raw_field(r#""max_tokens":1e999999999999"#)),
            KeptParam(400, "invalid_type", "max_tokens"),
        ),
        noted(
            "max_tokens -0",
            chat_post(raw_field(r#""max_tokens":-0"#)),
            KeptParam(400, "invalid_type", "max_tokens"),
            "serde_json reads -0 as a float, so it is a type error rather than a range error",
        ),
        case(
            "max_tokens 1.0",
            chat_post(raw_field(r#""max_tokens":1.0"#)),
            KeptParam(400, "invalid_type", "max_tokens"),
        ),
        case(
            "max_tokens 1e2",
            chat_post(raw_field(r#""max_tokens":1e2"#)),
            KeptParam(400, "invalid_type", "max_tokens"),
        ),
        case(
            "max_tokens 99999999999999999999999",
            chat_post(raw_field(r#""max_tokens":99999999999999999999999"#)),
            KeptParam(400, "invalid_type", "max_tokens"),
        ),
        case(
            "max_tokens 4294967296",
            chat_post(raw_field(r#""max_tokens":4294967296"#)),
            KeptParam(400, "invalid_value", "max_tokens"),
        ),
        case(
            "max_tokens 4294967295",
            chat_post(raw_field(r#""max_tokens":4294967295"#)),
            Kept(200, None),
        ),
        case(
            "max_tokens -1",
            chat_post(raw_field(r#""max_tokens":-1"#)),
            KeptParam(400, "invalid_value", "max_tokens"),
        ),
        case(
            "n 1e9",
            chat_post(raw_field(r#""n":1e9"#)),
            KeptParam(400, "invalid_type", "n"),
        ),
        case(
            "n 1000000000",
            chat_post(raw_field(r#""n":1000000000"#)),
            KeptParam(400, "invalid_value", "n"),
        ),
        case(
            "n -9223372036854775809",
            chat_post(raw_field(r#""n":-9223372036854775809"#)),
            KeptParam(400, "invalid_type", "n"),
        ),
        noted(
            "temperature 1e309",
            chat_post(raw_field(r#""temperature":1e309"#)),
            KeptParam(400, "invalid_type", "temperature"),
            "message reads 'expected a number, but got a number'",
        ),
        case(
            "temperature -0",
            chat_post(raw_field(r#""temperature":-0"#)),
            Kept(200, None),
        ),
        case(
            "temperature 1e-400 (underflows to 0)",
            chat_post(raw_field(r#""temperature":1e-400"#)),
            Kept(200, None),
        ),
        case(
            "temperature with 100,000 digits",
            chat_post(raw_field(&format!(
                r#""temperature":0.{}"#,
                "1".repeat(100_000)
            ))),
            Kept(200, None),
        ),
        case(
            "top_p -1e309",
            chat_post(raw_field(r#""top_p":-1e309"#)),
            KeptParam(400, "invalid_type", "top_p"),
        ),
        case(
            "seed i64::MIN",
            chat_post(raw_field(r#""seed":-9223372036854775808"#)),
            Kept(200, None),
        ),
        case(
            "seed 2^64",
            chat_post(raw_field(r#""seed":18446744073709551616"#)),
            KeptParam(400, "invalid_type", "seed"),
        ),
        case(
            "logit_bias value 1e309",
            chat_post(raw_field(r#""logit_bias":{"1":1e309}"#)),
            KeptParam(400, "invalid_type", "logit_bias"),
        ),
        case(
            "completions max_tokens 1e309",
            post(
                "/v1/completions",
                format!(r#"{{"model":"{MODEL}","prompt":"x","max_tokens":1e309}}"#).as_bytes(),
                &[],
            ),
            KeptParam(400, "invalid_type", "max_tokens"),
        ),
        case(
            "embeddings dimensions 1e309",
            post(
                "/v1/embeddings",
                format!(r#"{{"model":"{MODEL}","input":"x","dimensions":1e309}}"#).as_bytes(),
                &[],
            ),
            KeptParam(400, "invalid_type", "dimensions"),
        ),
    ]
}

#[test]
fn body_catalogue() {
    let server = Server::start(&["--max-json-depth", "8"]);
    let rows = body_rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    run_table(&server, &rows);
}

/// Values of every JSON kind, to send where another kind is wanted.
const KINDS: [(&str, &str); 6] = [
    ("bool", "true"),
    ("int", "1"),
    ("float", "1.5"),
    ("string", r#""s""#),
    ("array", "[]"),
    ("object", "{}"),
];

#[test]
fn every_major_field_rejects_every_wrong_type() {
    // (field, kinds the field accepts, extra fields the check needs).
    let fields: &[(&str, &[&str], &str)] = &[
        ("model", &["string"], ""),
        ("messages", &["array"], ""),
        ("max_tokens", &["int"], ""),
        ("max_completion_tokens", &["int"], ""),
        ("n", &["int"], ""),
        ("seed", &["int"], ""),
        ("top_logprobs", &["int"], r#","logprobs":true"#),
        ("stop", &["string", "array"], ""),
        ("stream", &["bool"], ""),
        ("logprobs", &["bool"], ""),
        ("parallel_tool_calls", &["bool"], ""),
        ("store", &["bool"], ""),
        ("temperature", &["int", "float"], ""),
        ("top_p", &["int", "float"], ""),
        ("frequency_penalty", &["int", "float"], ""),
        ("presence_penalty", &["int", "float"], ""),
        ("user", &["string"], ""),
        ("service_tier", &["string"], ""),
        ("reasoning_effort", &["string"], ""),
        ("logit_bias", &["object"], ""),
        ("metadata", &["object"], ""),
        ("response_format", &["object"], ""),
        ("stream_options", &["object"], r#","stream":true"#),
        ("tools", &["array"], ""),
        ("tool_choice", &["string", "object"], ""),
        ("modalities", &["array"], ""),
    ];
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (field, accepted, extra) in fields {
        for (kind, value) in KINDS {
            if accepted.contains(&kind) {
                continue;
            }
            let base = r#""messages":[{"role":"user","content":"hi"}]"#;
            let body = if *field == "model" || *field == "messages" {
                let other = if *field == "model" {
                    base.to_string()
                } else {
                    format!(r#""model":"{MODEL}""#)
                };
                format!(r#"{{{other},"{field}":{value}{extra}}}"#)
            } else {
                format!(r#"{{"model":"{MODEL}",{base},"{field}":{value}{extra}}}"#)
            };
            // One keep-alive connection for all of them: a body error must never close it.
            conn.send(&chat(&body, &[]));
            sent += 1;
            let resp = conn.read_response();
            let err = resp.assert_error(400, None);
            if err["code"] != "invalid_type" || err["param"] != *field {
                failures.push(format!("{body} -> {err}"));
            }
            assert!(!resp.connection_has("close"), "{body}: {}", resp.raw_head);
        }
    }
    assert!(sent > 100, "{sent} combinations");
    assert!(
        failures.is_empty(),
        "want invalid_type naming the field:\n{}",
        failures.join("\n")
    );
    // The same for message members.
    for (member, accepted) in [("role", &["string"][..]), ("content", &["string", "array"])] {
        for (kind, value) in KINDS {
            if accepted.contains(&kind) {
                continue;
            }
            let msg = if member == "role" {
                format!(r#"{{"role":{value},"content":"x"}}"#)
            } else {
                format!(r#"{{"role":"user","content":{value}}}"#)
            };
            let body = format!(r#"{{"model":"{MODEL}","messages":[{msg}]}}"#);
            conn.send(&chat(&body, &[]));
            let err = conn.read_response().assert_error(400, Some("invalid_type"));
            assert_eq!(err["param"], format!("messages[0].{member}"), "{body}");
        }
    }
    server.assert_alive();
}

#[test]
fn escaped_nul_and_surrogate_pairs_are_echoed_exactly() {
    let server = Server::start(&[]);
    for (escaped, text) in [
        (r"a\u0000b", "a\0b"),
        (r"\ud83d\ude00 ok", "\u{1F600} ok"),
        (r"tab\tand\u001fus", "tab\tand\u{1f}us"),
    ] {
        let resp = server.send(&chat_post(raw_content(escaped.as_bytes())));
        assert_echo(&resp, text);
    }
}

#[test]
fn ten_thousand_messages() {
    let server = Server::start(&[]);
    let mut messages: Vec<Value> = (0..10_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    messages.push(json!({"role": "user", "content": "the last one"}));
    let body = json!({"model": MODEL, "messages": messages}).to_string();
    let resp = server.send(&chat(&body, &[]));
    assert_echo(&resp, "the last one");
    // One token per earlier message, three for the last.
    assert_eq!(resp.json()["usage"]["prompt_tokens"], 10_003);

    // A bad message deep in the array is named by its index.
    messages[9_999] = json!({"role": "wizard", "content": "x"});
    let body = json!({"model": MODEL, "messages": messages}).to_string();
    let err = server
        .send(&chat(&body, &[]))
        .assert_error(400, Some("invalid_value"));
    assert_eq!(err["param"], "messages[9999].role");
    server.assert_alive();
}

#[test]
fn head_gets_the_get_headers_and_no_body() {
    // HEAD and a GET pipelined: if HEAD sent a body, the GET's status line would not follow its head.
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut batch = b"HEAD /health HTTP/1.1\r\nHost: t\r\nx-request-id: head\r\n\r\n".to_vec();
    batch.extend(probe("after-head"));
    conn.send(&batch);
    // The shared reader would wait for Content-Length bytes after the HEAD head; read by hand.
    let deadline = Instant::now() + READ_TIMEOUT;
    while !conn.pending().ends_with(br#"{"status":"ok"}"#) {
        assert!(
            Instant::now() < deadline,
            "incomplete: {:?}",
            String::from_utf8_lossy(conn.pending())
        );
        assert!(conn.read_some().expect("read") > 0, "closed after HEAD");
    }
    let text = String::from_utf8(conn.pending().to_vec()).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let head = format!("{head}\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.contains("\r\nContent-Length: 15\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: head\r\n"), "{head}");
    assert!(
        rest.starts_with("HTTP/1.1 200 "),
        "HEAD sent a body: {rest:?}"
    );
    assert!(rest.contains("\r\nx-request-id: after-head\r\n"), "{rest}");
}

#[test]
fn pipelined_garbage_after_valid_requests() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut batch = probe("first");
    batch.extend(chat(&chat_body("second"), &[("x-request-id", "second")]));
    batch.extend(b"\x00\x01GARBAGE \xff\r\n\r\n");
    batch.extend(probe("never"));
    conn.send(&batch);
    let first = conn.read_response();
    assert_eq!(first.header("x-request-id"), Some("first"));
    assert_eq!(first.status, 200);
    let second = conn.read_response();
    assert_eq!(second.header("x-request-id"), Some("second"));
    assert_echo(&second, "second");
    let third = conn.read_response();
    third.assert_error(400, Some("bad_request"));
    assert_ne!(third.header("x-request-id"), Some("never"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn smuggled_request_sent_later_is_not_answered() {
    // The ambiguous request first; the hidden one a moment later, as a separate segment.
    let server = Server::start(&[]);
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ] {
        let mut conn = server.connect();
        conn.send(&chat_raw(framing, b"0\r\n\r\n"));
        std::thread::sleep(Duration::from_millis(50));
        // The server may have closed already; a failed write is fine.
        let _ = conn.try_send(SMUGGLED.as_bytes());
        let resp = conn.read_response();
        resp.assert_error(400, Some("bad_request"));
        conn.assert_closed();
    }
    server.assert_alive();
}

#[test]
fn chunked_body_cut_off_by_a_half_close_gets_no_answer() {
    let server = Server::start(&[]);
    let baseline = server.open_connections();
    assert_eq!(baseline, 1);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let body = chat_body("never finished");
    let mut req = format!("{CHAT}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    req.extend(format!("{:x}\r\n{body}\r\n", body.len()).bytes()); // no last chunk
    stream.write_all(&req).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => assert!(
            got.is_empty(),
            "answered a cut-off body: {:?}",
            String::from_utf8_lossy(&got)
        ),
        Err(e) => assert!(crate::support::is_reset(&e), "{e}"),
    }
    assert_connections_drain(&server);
    server.assert_alive();
}

#[test]
fn expect_continue_with_chunked_body_over_limit() {
    // No length to refuse up front: 100 Continue, then 413 once the chunks pass the limit.
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let mut conn = server.connect();
    conn.send(
        format!("{CHAT}Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
    );
    let interim = conn.read_response();
    assert_eq!(interim.raw_head, "HTTP/1.1 100 Continue\r\n\r\n");
    let _ = conn.try_send(format!("800\r\n{}\r\n", "a".repeat(0x800)).as_bytes());
    conn.read_response()
        .assert_error(413, Some("request_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn expect_continue_is_not_sent_to_http10() {
    let server = Server::start(&[]);
    let body = chat_body("ten");
    let mut conn = server.connect();
    conn.send(
        format!(
            "POST /v1/chat/completions HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    conn.set_read_timeout(Duration::from_millis(300));
    assert!(
        conn.read_some().is_err(),
        "an HTTP/1.0 client got an interim response: {:?}",
        String::from_utf8_lossy(conn.pending())
    );
    conn.set_read_timeout(READ_TIMEOUT);
    conn.send(body.as_bytes());
    assert_echo(&conn.read_response(), "ten");
}

#[test]
fn one_byte_chunks_past_the_limit_are_413() {
    // Framing overhead is 5x the data here; the limit counts decoded bytes and still trips.
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let mut conn = server.connect();
    conn.send(format!("{CHAT}Transfer-Encoding: chunked\r\n\r\n").as_bytes());
    let _ = conn.try_send(&b"1\r\na\r\n".repeat(1500));
    conn.read_response()
        .assert_error(413, Some("request_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn non_utf8_request_id_is_replaced() {
    let server = Server::start(&[]);
    let resp = server.send(b"GET /health HTTP/1.1\r\nHost: t\r\nx-request-id: id-\xff\xfe\r\n\r\n");
    assert_eq!(resp.status, 200);
    let id = resp.header("x-request-id").expect("x-request-id");
    assert!(id.starts_with("req_"), "{id}");
}

#[test]
fn non_utf8_authorization_is_401() {
    let server = Server::start(&["--api-key", "k1"]);
    let mut req =
        b"GET /v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k1\xff\r\n\r\n".to_vec();
    server.send(&req).assert_error(401, Some("invalid_api_key"));
    req = b"GET /v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xffk1\r\n\r\n".to_vec();
    server.send(&req).assert_error(401, Some("invalid_api_key"));
    // The right key still works.
    assert_eq!(
        server
            .send(&get("/v1/models", &[("Authorization", "Bearer k1")]))
            .status,
        200
    );
}

#[test]
fn echo_of_a_long_method_in_errors_is_valid_json() {
    // The 405 message quotes the method; a 10 KB method must still give a well-formed envelope.
    let server = Server::start(&[]);
    let method = "M".repeat(10_000);
    let resp = server.send(format!("{method} /health HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let err = resp.assert_error(405, Some("method_not_allowed"));
    assert!(err["message"].as_str().unwrap().contains(&method));
    assert_eq!(resp.header("allow"), Some("GET"));
}

// RFC 9112 MUSTs standin once missed, each asserting the RFC's answer.

#[test]
fn rfc9112_missing_or_repeated_host_is_400() {
    let server = Server::start(&[]);
    for raw in [
        "GET /health HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
    ] {
        server.send(raw.as_bytes()).assert_error(400, None);
    }
}

#[test]
fn rfc9112_absolute_form_is_accepted() {
    let server = Server::start(&[]);
    let resp = server.send(b"GET http://t/health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
}

#[test]
fn rfc9112_long_target_is_414() {
    let server = Server::start(&[]);
    let resp =
        server.send(format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000)).as_bytes());
    assert_eq!(resp.status, 414, "{}", resp.raw_head);
}
