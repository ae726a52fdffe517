//! Connection persistence: HTTP/1.1 keep-alive, `Connection: close`, HTTP/1.0 defaults, idle timeout.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::{assert_echo, chat, chat_body, get, Server};

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for i in 0..5 {
        conn.send(&get("/health", &[]));
        let resp = conn.read_response();
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.version, "HTTP/1.1");
        assert!(
            !resp.connection_has("close"),
            "request {i}: {}",
            resp.raw_head
        );

        let text = format!("message number {i}");
        conn.send(&chat(&chat_body(&text), &[]));
        assert_echo(&conn.read_response(), &text);

        conn.send(&get("/v1/models", &[]));
        assert_eq!(conn.read_response().status, 200);
    }
}

#[test]
fn connection_close_is_honoured() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
    conn.send(&chat(&chat_body("bye"), &[("Connection", "close")]));
    let resp = conn.read_response();
    assert_echo(&resp, "bye");
    assert!(resp.connection_has("close"), "{}", resp.raw_head);
    conn.assert_closed();
}

#[test]
fn connection_close_token_is_case_insensitive() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(&get("/health", &[("Connection", "Close")]));
    let resp = conn.read_response();
    assert_eq!(resp.status, 200);
    assert!(resp.connection_has("close"), "{}", resp.raw_head);
    conn.assert_closed();
}

#[test]
fn http10_closes_by_default() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(b"GET /health HTTP/1.0\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(resp.status, 200);
    resp.assert_common_headers();
    assert_eq!(resp.json(), serde_json::json!({"status": "ok"}));
    conn.assert_closed();
}

#[test]
fn http10_keep_alive_is_honoured() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for _ in 0..3 {
        conn.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let resp = conn.read_response();
        assert_eq!(resp.status, 200);
        assert!(resp.connection_has("keep-alive"), "{}", resp.raw_head);
    }
    let body = chat_body("ten");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.send(req.as_bytes());
    assert_echo(&conn.read_response(), "ten");
    // Without keep-alive the next response ends the connection.
    conn.send(b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
    conn.assert_closed();
}

#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let server = Server::start(&["--idle-timeout-ms", "300"]);
    let mut conn = server.connect();
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
    let start = Instant::now();
    conn.assert_closed();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "closed after only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    server.assert_alive();
}

#[test]
fn idle_new_connection_is_closed_silently() {
    let server = Server::start(&["--idle-timeout-ms", "300"]);
    let mut conn = server.connect();
    let start = Instant::now();
    conn.assert_closed();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "closed after only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
}

#[test]
fn activity_resets_the_idle_timer() {
    let server = Server::start(&["--idle-timeout-ms", "400"]);
    let mut conn = server.connect();
    // 6 requests 150 ms apart: the connection lives ~900 ms, always idle < 400 ms.
    for i in 0..6 {
        conn.send(&get("/health", &[]));
        assert_eq!(conn.read_response().status, 200, "request {i}");
        thread::sleep(Duration::from_millis(150));
    }
}
