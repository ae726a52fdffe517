//! Request framing: pipelining, requests split across writes, chunked bodies, `Expect: 100-continue`.

use crate::support::{assert_echo, chat, chat_body, get, post, sse_events, stream_body, Server};

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut batch = Vec::new();
    batch.extend(get("/health", &[("x-request-id", "pipe-1")]));
    batch.extend(chat(&chat_body("second"), &[("x-request-id", "pipe-2")]));
    batch.extend(get("/v1/models", &[("x-request-id", "pipe-3")]));
    batch.extend(chat(&chat_body("fourth"), &[("x-request-id", "pipe-4")]));
    batch.extend(get("/nope", &[("x-request-id", "pipe-5")]));
    conn.send(&batch);

    let first = conn.read_response();
    assert_eq!(first.header("x-request-id"), Some("pipe-1"));
    assert_eq!(first.json(), serde_json::json!({"status": "ok"}));
    let second = conn.read_response();
    assert_eq!(second.header("x-request-id"), Some("pipe-2"));
    assert_echo(&second, "second");
    let third = conn.read_response();
    assert_eq!(third.header("x-request-id"), Some("pipe-3"));
    assert_eq!(third.json()["object"], "list");
    let fourth = conn.read_response();
    assert_eq!(fourth.header("x-request-id"), Some("pipe-4"));
    assert_echo(&fourth, "fourth");
    let fifth = conn.read_response();
    assert_eq!(fifth.header("x-request-id"), Some("pipe-5"));
    fifth.assert_error(404, Some("unknown_url"));

    // The connection is still usable after the batch.
    conn.send(&get("/health", &[("x-request-id", "pipe-6")]));
    assert_eq!(conn.read_response().header("x-request-id"), Some("pipe-6"));
}

#[test]
fn pipelined_stream_then_request_keeps_order() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut batch = chat(&stream_body("streamed"), &[("x-request-id", "s-1")]);
    batch.extend(chat(&chat_body("after"), &[("x-request-id", "s-2")]));
    batch.extend(get(
        "/health",
        &[("x-request-id", "s-3"), ("Connection", "close")],
    ));
    conn.send(&batch);

    let stream = conn.read_response();
    assert_eq!(stream.header("x-request-id"), Some("s-1"));
    assert_eq!(
        sse_events(stream.text()).last().map(String::as_str),
        Some("[DONE]")
    );
    let after = conn.read_response();
    assert_eq!(after.header("x-request-id"), Some("s-2"));
    assert_echo(&after, "after");
    let last = conn.read_response();
    assert_eq!(last.header("x-request-id"), Some("s-3"));
    assert!(last.connection_has("close"));
    conn.assert_closed();
}

#[test]
fn request_head_split_across_many_writes() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let text = "split into many small writes";
    let req = chat(&chat_body(text), &[("x-request-id", "split-1")]);
    conn.send_in_pieces(&req, 3);
    let resp = conn.read_response();
    assert_eq!(resp.header("x-request-id"), Some("split-1"));
    assert_echo(&resp, text);

    // One byte at a time, including across the CRLFCRLF.
    conn.send_in_pieces(&get("/health", &[("x-request-id", "split-2")]), 1);
    let resp = conn.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-request-id"), Some("split-2"));
}

#[test]
fn split_exactly_at_the_end_of_the_head() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let req = chat(&chat_body("edge"), &[]);
    let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    conn.send_in_pieces(&req[..head_end + 1], 4096); // up to "\r"
    conn.send_in_pieces(&req[head_end + 1..head_end + 3], 4096); // "\n\r"
    conn.send_in_pieces(&req[head_end + 3..head_end + 4], 4096); // "\n"
    conn.send_in_pieces(&req[head_end + 4..], 5); // the body in 5-byte pieces
    assert_echo(&conn.read_response(), "edge");
}

#[test]
fn body_sent_in_pieces() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let text = "x".repeat(3000);
    let req = chat(&chat_body(&text), &[]);
    let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    conn.send(&req[..head_end]);
    conn.send_in_pieces(&req[head_end..], 700);
    assert_echo(&conn.read_response(), &text);
}

/// Encodes `body` as chunks of `size` bytes with an extension on each and a trailer at the end.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in body.chunks(size).enumerate() {
        let ext = if i % 2 == 0 {
            ";name=value"
        } else {
            ";quoted=\"a b\""
        };
        out.extend(format!("{:X}{ext}\r\n", part.len()).bytes());
        out.extend_from_slice(part);
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\nX-Trailer: yes\r\n\r\n");
    out
}

#[test]
fn chunked_body_matches_content_length_body() {
    let server = Server::start(&[]);
    let text = "chunked bodies carry the same request";
    let body = chat_body(text);

    let by_length = server.send(&chat(&body, &[])).assert_ok_json();

    let mut req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(chunked(body.as_bytes(), 16));
    let mut conn = server.connect();
    conn.send(&req);
    let by_chunks = conn.read_response().assert_ok_json();

    assert_eq!(by_chunks["choices"], by_length["choices"]);
    assert_eq!(by_chunks["usage"], by_length["usage"]);
    assert_eq!(
        by_chunks["choices"][0]["message"]["content"],
        crate::support::echo(text)
    );

    // The trailer was consumed: the connection serves the next request.
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
}

#[test]
fn chunked_body_in_separate_writes() {
    let server = Server::start(&[]);
    let text = "one chunk per write";
    let mut conn = server.connect();
    conn.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    conn.send_in_pieces(&chunked(chat_body(text).as_bytes(), 7), 9);
    assert_echo(&conn.read_response(), text);
}

#[test]
fn expect_100_continue_before_body() {
    let server = Server::start(&[]);
    let body = chat_body("expected");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = server.connect();
    conn.send(head.as_bytes());
    let interim = conn.read_response();
    assert_eq!(interim.raw_head, "HTTP/1.1 100 Continue\r\n\r\n");
    conn.send(body.as_bytes());
    assert_echo(&conn.read_response(), "expected");
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
}

#[test]
fn expect_100_continue_over_limit_gets_413_without_continue() {
    let server = Server::start(&["--max-body-bytes", "100"]);
    let mut conn = server.connect();
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n");
    let resp = conn.read_response();
    resp.assert_error(413, Some("request_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn empty_body_post_with_zero_length() {
    let server = Server::start(&[]);
    let resp = server.send(&post("/v1/chat/completions", b"", &[]));
    resp.assert_error(400, Some("invalid_json"));
}
