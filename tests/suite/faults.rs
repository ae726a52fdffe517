//! Stream failures on the wire, for chat and legacy completions alike: what bytes a client sees before the
//! break. (The SDK's reaction to each is in `tests/python/test_failures.py` and `test_legacy_faults.py`.)

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::support::{post, Server};

fn bodies() -> [(&'static str, String); 2] {
    [
        (
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a b c d e f"}]})
                .to_string(),
        ),
        (
            "/v1/completions",
            json!({"model": "m", "stream": true, "prompt": "a b c d e f"}).to_string(),
        ),
    ]
}

/// Everything the server sends until it closes the connection.
fn raw(server: &Server, path: &str, body: &str, fault: &str) -> String {
    let mut client = TcpStream::connect(server.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut client,
        &post(
            path,
            body.as_bytes(),
            &[("x-standin-fail", fault), ("connection", "close")],
        ),
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn content_events(raw: &str) -> usize {
    raw.matches("data: {").count()
}

#[test]
fn stream_cut_drops_the_connection_after_k_chunks() {
    let server = Server::start(&[]);
    for (path, body) in bodies() {
        let text = raw(&server, path, &body, "stream-cut:3");
        assert!(!text.contains("[DONE]"), "{path}: {text}");
        // Chunked framing is never terminated: no `0\r\n\r\n`.
        assert!(!text.ends_with("0\r\n\r\n"), "{path}: {text}");
        // Chat's first chunk also carries the role; legacy has one event per token.
        let events = content_events(&text);
        assert!((3..=4).contains(&events), "{path}: {events} events: {text}");
        assert!(
            !text.contains("\"finish_reason\":\"stop\""),
            "{path}: {text}"
        );
    }
    server.assert_alive();
}

#[test]
fn stream_error_sends_an_error_event_and_no_done() {
    let server = Server::start(&[]);
    for (path, body) in bodies() {
        let text = raw(&server, path, &body, "stream-error");
        assert!(
            text.contains(r#"data: {"error":{"message""#),
            "{path}: {text}"
        );
        assert!(!text.contains("[DONE]"), "{path}: {text}");
        assert!(
            text.ends_with("0\r\n\r\n"),
            "{path}: the body ends cleanly: {text}"
        );
    }
}

#[test]
fn no_done_completes_everything_but_the_done_marker() {
    let server = Server::start(&[]);
    for (path, body) in bodies() {
        let text = raw(&server, path, &body, "no-done");
        // The finish chunk went out (legacy's default max_tokens makes it `length`).
        assert!(text.contains("\"finish_reason\":\""), "{path}: {text}");
        assert!(!text.contains("[DONE]"), "{path}: {text}");
        assert!(text.ends_with("0\r\n\r\n"), "{path}: {text}");
    }
}
