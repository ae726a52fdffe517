//! Token pacing: `--ttft-ms` / `--itl-ms` and the per-request headers `x-standin-ttft-ms` /
//! `x-standin-itl-ms`. Timing bounds are one-sided (never earlier than asked), so a busy machine can only
//! make a test slower, not flaky.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{chat, chat_body, echo, stream_body, Server};

/// One SSE event and when the read that completed it returned.
struct Event {
    at: Duration,
    read: usize,
    data: String,
}

/// Sends a streaming request and timestamps the head and every event as they arrive.
fn timed_stream(server: &Server, headers: &[(&str, &str)]) -> (Duration, Vec<Event>) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    stream
        .write_all(&chat(&stream_body("Hello"), headers))
        .unwrap();
    let mut raw = Vec::new();
    let mut head_at = None;
    let mut events = Vec::new();
    let mut parsed = 0;
    let mut buf = [0u8; 65536];
    for read in 0.. {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream closed early: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
        let at = start.elapsed();
        let text = String::from_utf8_lossy(&raw).into_owned();
        if head_at.is_none() && text.contains("\r\n\r\n") {
            head_at = Some(at);
        }
        while let Some(i) = text[parsed..].find("data: ") {
            let begin = parsed + i + 6;
            let Some(len) = text[begin..].find("\n\n") else {
                break;
            };
            let data = text[begin..begin + len].to_string();
            parsed = begin + len + 2;
            events.push(Event { at, read, data });
        }
        if events.last().is_some_and(|e| e.data == "[DONE]") {
            break;
        }
    }
    (head_at.unwrap(), events)
}

fn content_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.data.contains("\"content\":\"") && !e.data.contains("\"content\":\"\""))
        .collect()
}

#[test]
fn headers_pace_the_stream() {
    let server = Server::start(&[]);
    let (head, events) = timed_stream(
        &server,
        &[("x-standin-ttft-ms", "300"), ("x-standin-itl-ms", "40")],
    );
    let content = content_events(&events);
    assert_eq!(content.len(), 13, "13 echo tokens");
    // The head goes out at once; the first token only after the TTFT.
    assert!(head < Duration::from_millis(250), "head at {head:?}");
    assert!(
        content[0].at >= Duration::from_millis(300),
        "first token at {:?}",
        content[0].at
    );
    // The role chunk travels with the first content chunk, never ahead of it.
    let role = events
        .iter()
        .find(|e| e.data.contains("\"role\":\"assistant\""))
        .unwrap();
    assert_eq!(
        role.read, content[0].read,
        "role chunk and first content in one read"
    );
    // Tokens are spread by the ITL: 12 gaps of at least 40 ms in total (timers never fire early).
    let spread = content[12].at - content[0].at;
    assert!(
        spread >= Duration::from_millis(12 * 40 - 5),
        "12 gaps took {spread:?}"
    );
    let distinct_reads = content
        .iter()
        .map(|e| e.read)
        .collect::<std::collections::BTreeSet<_>>();
    assert!(
        distinct_reads.len() >= 10,
        "tokens arrived in {} reads",
        distinct_reads.len()
    );
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[test]
fn several_pacer_threads_share_the_streams_and_keep_their_pace() {
    let server = Server::start(&["--pacer-threads", "2", "--workers", "2"]);
    let results: Vec<_> = std::thread::scope(|s| {
        let streams: Vec<_> = (0..6)
            .map(|_| s.spawn(|| timed_stream(&server, &[("x-standin-itl-ms", "30")])))
            .collect();
        streams.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (_, events) in results {
        let content = content_events(&events);
        assert_eq!(content.len(), 13, "13 echo tokens");
        let spread = content[12].at - content[0].at;
        assert!(
            spread >= Duration::from_millis(12 * 30 - 5),
            "12 gaps took {spread:?}"
        );
        assert_eq!(events.last().unwrap().data, "[DONE]");
    }
    let pacers: Vec<String> = server
        .thread_names()
        .into_iter()
        .filter(|n| n.starts_with("standin-pacer"))
        .collect();
    assert_eq!(
        pacers.len(),
        2,
        "6 streams dealt to 2 pacers start both: {pacers:?}"
    );
}

#[test]
fn flags_set_the_default_pace_for_json_replies() {
    let server = Server::start(&["--ttft-ms", "100", "--itl-ms", "20"]);
    let start = Instant::now();
    let resp = server.send(&chat(&chat_body("Hello"), &[]));
    let took = start.elapsed();
    assert_eq!(resp.status, 200);
    // A JSON reply leaves when its last token is ready: 100 + 12 * 20 ms.
    assert!(took >= Duration::from_millis(340), "took {took:?}");
    // A header overrides the flag for one request.
    let start = Instant::now();
    let resp = server.send(&chat(
        &chat_body("Hello"),
        &[("x-standin-ttft-ms", "0"), ("x-standin-itl-ms", "0")],
    ));
    assert_eq!(resp.status, 200);
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "override ignored"
    );
}

#[test]
fn bad_pace_headers_are_400() {
    let server = Server::start(&[]);
    for value in ["-1", "abc", "600001", "1.5"] {
        let resp = server.send(&chat(&chat_body("x"), &[("x-standin-itl-ms", value)]));
        let body = resp.assert_error(400, Some("invalid_value"));
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("x-standin-itl-ms"), "{message}");
    }
}

#[test]
fn paced_stream_abandoned_by_client_frees_the_server() {
    let server = Server::start(&["--workers", "1"]);
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(&chat(&stream_body("Hello"), &[("x-standin-itl-ms", "50")]))
            .unwrap();
        drop(stream);
    }
    std::thread::sleep(Duration::from_millis(100));
    server.assert_alive();
    let start = Instant::now();
    let resp = server.send(&chat(&chat_body("after"), &[]));
    assert_eq!(resp.status, 200);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_paced_stream_to_a_reader_that_falls_behind_arrives_whole() {
    // 2,000 words of 3 KB, 1 ms apart, to a client with a small receive buffer that reads nothing for the
    // first 1.8 s: about 5 MB are due by then, more than loopback's socket buffers take (2 MB did not fill
    // them here; 5 MB did, checked by marking the hand-back), so the server's socket fills while the pacer
    // writes; it hands the stream back to its coroutine, which waits for room. Every byte must still arrive,
    // in order, and the server keep serving.
    let server = Server::start(&["--workers", "1"]);
    let words: Vec<String> = (0..2000)
        .map(|i| format!("w{i:04}{}", "x".repeat(3000)))
        .collect();
    let text = words.join(" ");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(&chat(&stream_body(&text), &[("x-standin-itl-ms", "1")]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1800));
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    while !raw.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the end");
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8(raw).unwrap();
    let mut content = String::new();
    let mut events = 0;
    for line in body.split('\n').filter_map(|l| l.strip_prefix("data: ")) {
        events += 1;
        if line == "[DONE]" {
            continue;
        }
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
            content += piece;
        }
    }
    assert!(events > 2000, "{events} events");
    assert!(body.contains("data: [DONE]"));
    assert!(content == echo(&text), "content lost or reordered");
    server.assert_alive();
    assert_eq!(server.send(&chat(&chat_body("after"), &[])).status, 200);
}
