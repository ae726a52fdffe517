//! Malformed and smuggling-style requests: 400 with the error envelope, then close; the server lives on.

use crate::support::{get, Server};

/// Sends `raw` on a fresh connection and asserts 400 + envelope + close, then that the server still
/// answers a new connection.
fn assert_rejected(server: &Server, name: &str, raw: &[u8]) {
    let mut conn = server.connect();
    conn.send(raw);
    let resp = match conn.try_read_response() {
        Ok(resp) => resp,
        Err(e) => panic!("{name}: no response ({e})"),
    };
    assert_eq!(
        resp.status,
        400,
        "{name}: {} {}",
        resp.raw_head,
        String::from_utf8_lossy(&resp.body)
    );
    resp.assert_error(400, None);
    conn.assert_closed();
    server.assert_alive();
}

const CHAT: &str = "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n";

#[test]
fn bad_request_lines_are_400() {
    let server = Server::start(&[]);
    let cases: &[(&str, &str)] = &[
        ("garbage", "GARBAGE\r\n\r\n"),
        ("missing version", "GET /health\r\nHost: t\r\n\r\n"),
        ("bad version", "GET /health HTTP/x.y\r\nHost: t\r\n\r\n"),
        (
            "space in target",
            "GET /hea lth HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "control byte in method",
            "G\x01T /health HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
    ];
    for (name, raw) in cases {
        assert_rejected(&server, name, raw.as_bytes());
    }
}

#[test]
fn bad_header_lines_are_400() {
    let server = Server::start(&[]);
    let cases: &[(&str, &str)] = &[
        (
            "no colon",
            "GET /health HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n",
        ),
        (
            "space before colon",
            "GET /health HTTP/1.1\r\nHost : t\r\n\r\n",
        ),
        ("empty name", "GET /health HTTP/1.1\r\n: value\r\n\r\n"),
        ("NUL in value", "GET /health HTTP/1.1\r\nX-A: a\0b\r\n\r\n"),
    ];
    for (name, raw) in cases {
        assert_rejected(&server, name, raw.as_bytes());
    }
}

#[test]
fn bad_content_length_is_400() {
    let server = Server::start(&[]);
    let cases = [
        ("non-numeric", "Content-Length: abc\r\n"),
        ("negative", "Content-Length: -5\r\n"),
        ("plus sign", "Content-Length: +5\r\n"),
        ("hex", "Content-Length: 0x10\r\n"),
        ("two numbers in one", "Content-Length: 5, 6\r\n"),
        (
            "two different",
            "Content-Length: 10\r\nContent-Length: 11\r\n",
        ),
    ];
    for (name, header) in cases {
        let raw = format!("{CHAT}{header}\r\n{{\"model\":\"m\"}}");
        assert_rejected(&server, name, raw.as_bytes());
    }
}

#[test]
fn ambiguous_or_unsupported_transfer_encoding_is_400() {
    let server = Server::start(&[]);
    let cases = [
        (
            "CL and TE",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE and CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        ("gzip", "Transfer-Encoding: gzip\r\n"),
        ("gzip then chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        ("unknown coding", "Transfer-Encoding: identity\r\n"),
    ];
    for (name, header) in cases {
        let raw = format!("{CHAT}{header}\r\n0\r\n\r\n");
        assert_rejected(&server, name, raw.as_bytes());
    }
}

#[test]
fn bad_chunk_size_is_400() {
    let server = Server::start(&[]);
    let cases = [
        ("non-hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("negative", "-1\r\nhello\r\n0\r\n\r\n"),
        ("empty size line", "\r\nhello\r\n0\r\n\r\n"),
    ];
    for (name, body) in cases {
        let raw = format!("{CHAT}Transfer-Encoding: chunked\r\n\r\n{body}");
        assert_rejected(&server, name, raw.as_bytes());
    }
}

#[test]
fn bytes_after_rejected_request_are_not_parsed() {
    // A smuggled second request behind an ambiguous one must not be answered.
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut raw = format!("{CHAT}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .into_bytes();
    raw.extend(get("/health", &[("x-request-id", "smuggled")]));
    conn.send(&raw);
    let resp = conn.read_response();
    resp.assert_error(400, None);
    assert_ne!(resp.header("x-request-id"), Some("smuggled"));
    conn.assert_closed();
}
