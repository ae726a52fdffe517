//! Every configurable limit and timeout, with small values so the tests stay fast.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    assert_echo, chat, chat_body, get, get_with_numbered_headers, Client, Server, MODEL,
};

#[test]
fn header_bytes_over_limit_is_431() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    let pad = "p".repeat(500);
    let resp = server.send(&get("/health", &[("X-Pad", &pad)]));
    assert_eq!(resp.status, 200, "a 600-byte head is under 1024");

    let pad = "p".repeat(2000);
    let mut conn = server.connect();
    conn.send(&get("/health", &[("X-Pad", &pad)]));
    conn.read_response()
        .assert_error(431, Some("request_header_fields_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn unterminated_head_over_limit_is_431_without_waiting_for_the_end() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    let mut conn = server.connect();
    let mut head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    head.extend(vec![b'p'; 1500]);
    conn.send(&head);
    conn.read_response()
        .assert_error(431, Some("request_header_fields_too_large"));
    conn.assert_closed();
}

#[test]
fn header_count_over_limit_is_431() {
    let server = Server::start(&["--max-headers", "8"]);
    let few = get_with_numbered_headers("/health", 5);
    assert_eq!(server.send(&few).status, 200);

    let mut conn = server.connect();
    conn.send(&get_with_numbered_headers("/health", 20));
    conn.read_response()
        .assert_error(431, Some("request_header_fields_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

/// A valid chat body padded with trailing spaces to exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let mut body = chat_body("sized");
    assert!(body.len() <= len);
    body.extend(std::iter::repeat_n(' ', len - body.len()));
    body
}

#[test]
fn body_at_the_limit_is_accepted() {
    let server = Server::start(&["--max-body-bytes", "1000"]);
    assert_echo(&server.send(&chat(&body_of_len(1000), &[])), "sized");
}

#[test]
fn content_length_over_limit_is_413_before_the_body() {
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let mut conn = server.connect();
    // No body is sent: the answer must come from the Content-Length alone.
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    conn.read_response()
        .assert_error(413, Some("request_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn chunked_body_over_limit_is_413_once_it_passes_the_limit() {
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let mut conn = server.connect();
    conn.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = format!("190\r\n{}\r\n", "a".repeat(400));
    // 1200 bytes of chunks and no terminating chunk: the server must not wait for the end.
    conn.send(chunk.repeat(3).as_bytes());
    conn.read_response()
        .assert_error(413, Some("request_too_large"));
    conn.assert_closed();
    server.assert_alive();
}

#[test]
fn chunked_body_under_limit_is_accepted() {
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let body = body_of_len(900);
    let mut conn = server.connect();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    conn.send(req.as_bytes());
    assert_echo(&conn.read_response(), "sized");
}

/// A chat body with an unknown field `"x"` holding `depth` nested arrays (document depth `depth + 1`).
fn nested_body(depth: usize) -> String {
    let nest = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"deep"}}],"x":{nest}}}"#)
}

#[test]
fn json_depth_over_small_limit_is_400() {
    let server = Server::start(&["--max-json-depth", "5"]);
    // Document depth 4 (object > "x" arrays x3) is well under 5.
    assert_echo(&server.send(&chat(&nested_body(3), &[])), "deep");
    // Document depth 7.
    let err = server
        .send(&chat(&nested_body(6), &[]))
        .assert_error(400, Some("json_too_deep"));
    assert_eq!(err["param"], json!(null));
    // Depth inside messages counts too: object > messages > object > content array > part object.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "t", "y": [[[]]]}]}]});
    let err = server
        .send(&chat(&body.to_string(), &[]))
        .assert_error(400, Some("json_too_deep"));
    assert_eq!(err["param"], json!(null));
}

#[test]
fn json_depth_equal_to_limit_is_accepted() {
    // Depth counts containers, the top-level object being 1: `{"x":[[[[]]]]}` has depth 5.
    let server = Server::start(&["--max-json-depth", "5"]);
    assert_echo(&server.send(&chat(&nested_body(4), &[])), "deep");
    server
        .send(&chat(&nested_body(5), &[]))
        .assert_error(400, Some("json_too_deep"));
}

#[test]
fn json_depth_default_limit_is_64() {
    let server = Server::start(&[]);
    assert_echo(&server.send(&chat(&nested_body(62), &[])), "deep");
    let err = server
        .send(&chat(&nested_body(64), &[]))
        .assert_error(400, Some("json_too_deep"));
    assert_eq!(err["param"], json!(null));
}

#[test]
fn very_deep_json_is_rejected_without_crashing() {
    // Far deeper than any recursive parser survives on a 128 KiB coroutine stack.
    let server = Server::start(&[]);
    for depth in [1_000, 100_000] {
        server
            .send(&chat(&nested_body(depth), &[]))
            .assert_error(400, Some("json_too_deep"));
        let objects = format!(
            r#"{{"model":"{MODEL}","messages":[],"x":{}1{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        server
            .send(&chat(&objects, &[]))
            .assert_error(400, Some("json_too_deep"));
    }
    server.assert_alive();
}

#[test]
fn brackets_inside_strings_do_not_count_as_depth() {
    let server = Server::start(&["--max-json-depth", "5"]);
    for text in [
        "[[[[[[[[[[[[",
        "{{{{{{{{{{{{",
        "\"[[[[[[[[[[\\\"[[[[[[{{{{{{",
    ] {
        assert_echo(&server.send(&chat(&chat_body(text), &[])), text);
    }
}

/// Asserts a 408 arrives between `min` and `max` after `start`, then the connection closes.
fn assert_timeout_408(conn: &mut Client, start: Instant, min: Duration, max: Duration) {
    conn.read_response()
        .assert_error(408, Some("request_timeout"));
    let waited = start.elapsed();
    assert!(waited >= min, "408 after only {waited:?}");
    assert!(waited < max, "408 after {waited:?}");
    conn.assert_closed();
}

#[test]
fn partial_head_times_out_with_408() {
    let server = Server::start(&["--header-timeout-ms", "300"]);
    let mut conn = server.connect();
    let start = Instant::now();
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n");
    assert_timeout_408(
        &mut conn,
        start,
        Duration::from_millis(250),
        Duration::from_secs(3),
    );
    server.assert_alive();
}

#[test]
fn slowly_dripped_head_times_out_with_408() {
    // Each byte arrives well within 300 ms, but the head as a whole takes longer.
    let server = Server::start(&["--header-timeout-ms", "300"]);
    let mut conn = server.connect();
    conn.set_read_timeout(Duration::from_millis(50));
    let start = Instant::now();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(100)
    );
    let mut answered = false;
    for byte in head.as_bytes() {
        if conn.try_send(std::slice::from_ref(byte)).is_err() {
            break;
        }
        // Stop writing as soon as anything arrives, so no write races the server's close.
        if conn.read_some().is_ok() {
            answered = true;
            break;
        }
    }
    assert!(
        answered,
        "no answer while dripping the head for {:?}",
        start.elapsed()
    );
    conn.set_read_timeout(crate::support::READ_TIMEOUT);
    assert_timeout_408(
        &mut conn,
        start,
        Duration::from_millis(250),
        Duration::from_secs(3),
    );
}

#[test]
fn header_timer_starts_with_the_first_byte() {
    let server = Server::start(&["--header-timeout-ms", "300"]);
    let mut conn = server.connect();
    thread::sleep(Duration::from_millis(500));
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
    // And again between keep-alive requests.
    thread::sleep(Duration::from_millis(500));
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
}

#[test]
fn partial_body_times_out_with_408() {
    let server = Server::start(&["--body-timeout-ms", "300"]);
    let mut conn = server.connect();
    let start = Instant::now();
    conn.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"model\":",
    );
    assert_timeout_408(
        &mut conn,
        start,
        Duration::from_millis(250),
        Duration::from_secs(3),
    );
    server.assert_alive();
}

#[test]
fn partial_chunked_body_times_out_with_408() {
    let server = Server::start(&["--body-timeout-ms", "300"]);
    let mut conn = server.connect();
    let start = Instant::now();
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n");
    assert_timeout_408(
        &mut conn,
        start,
        Duration::from_millis(250),
        Duration::from_secs(3),
    );
}
