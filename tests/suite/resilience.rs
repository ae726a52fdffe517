//! The server survives clients that vanish mid-stream, handlers that panic, and many connections at once.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{assert_echo, chat, chat_body, get, post, stream_body, Client, Server};

#[test]
fn client_disconnect_mid_stream_50_times() {
    let server = Server::start(&[]);
    server.assert_alive();
    let mut bystander = server.connect();
    bystander.send(&get("/health", &[]));
    assert_eq!(bystander.read_response().status, 200);
    let baseline_fds = server.open_fds();
    // 512 KiB of words: ~100k tokens, ~19 MB of events, far more than the socket buffers hold, so
    // the server is mid-stream when the client vanishes. (2 MB costs ~0.7 s per round in a debug
    // build; this size keeps 50 rounds near 10 s.)
    let words = "lorem ipsum dolor sit amet ".repeat(512 * 1024 / 27);
    let request = chat(&stream_body(&words), &[]);
    for round in 0..50 {
        let mut conn = server.connect();
        conn.send(&request);
        let mut received = 0;
        while received < 4096 {
            match conn.read_some() {
                Ok(0) => panic!("round {round}: closed after {received} bytes"),
                Ok(n) => received += n,
                Err(e) => panic!("round {round}: {e} after {received} bytes"),
            }
        }
        assert!(conn.pending().starts_with(b"HTTP/1.1 200"), "round {round}");
        drop(conn);

        if round == 0 || round == 49 {
            assert_stops_working(&server, round);
        }

        let start = Instant::now();
        server.assert_alive();
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "round {round}: health took {took:?}"
        );
    }

    // Every abandoned stream must release its socket (Linux only: counts /proc/PID/fd).
    if let Some(baseline) = baseline_fds {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = server.open_fds().unwrap_or(0);
            if now <= baseline + 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fd leak: {baseline} fds before, {now} after 50 disconnects"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let text = "still here";
    assert_echo(&server.send(&chat(&chat_body(text), &[])), text);
    bystander.send(&chat(&chat_body(text), &[]));
    assert_echo(&bystander.read_response(), text);
}

/// Asserts the server burns (almost) no CPU in the 300 ms after a client abandoned its stream, i.e.
/// it stopped generating events instead of writing them into a dead socket until the end.
fn assert_stops_working(server: &Server, round: usize) {
    let Some(before) = server.cpu_ticks() else {
        return;
    };
    thread::sleep(Duration::from_millis(300));
    let used = server.cpu_ticks().unwrap_or(before) - before;
    // Clock ticks are 10 ms on Linux; an idle server uses 0-1 here.
    assert!(
        used <= 8,
        "round {round}: {used} ticks of CPU after the client left"
    );
}

#[test]
fn stalled_stream_reader_does_not_block_other_clients() {
    // One worker: a coroutine blocked on a full socket must yield, not hold the thread.
    let server = Server::start(&["--workers", "1"]);
    let words = "lorem ipsum dolor sit amet ".repeat(512 * 1024 / 27);
    let mut stalled = server.connect();
    stalled.send(&chat(&stream_body(&words), &[]));
    assert!(stalled.read_some().expect("first bytes of the stream") > 0);
    for _ in 0..20 {
        let start = Instant::now();
        server.assert_alive();
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "health took {took:?} beside a stalled stream"
        );
    }
    let text = "beside the stall";
    assert_echo(&server.send(&chat(&chat_body(text), &[])), text);
}

#[test]
fn panic_in_handler_is_500_and_isolated() {
    let server = Server::start(&["--enable-panic-route"]);
    let mut before = server.connect();
    before.send(&get("/health", &[]));
    assert_eq!(before.read_response().status, 200);

    for round in 0..20 {
        let mut conn = server.connect();
        let mut batch = post("/debug/panic", b"", &[("x-request-id", "boom")]);
        // A pipelined request behind the panic is never answered: the connection closes.
        batch.extend(get("/health", &[("x-request-id", "behind")]));
        conn.send(&batch);
        let resp = conn.read_response();
        let err = resp.assert_error(500, Some("internal_error"));
        assert_eq!(resp.header("x-request-id"), Some("boom"), "round {round}");
        assert!(
            resp.connection_has("close"),
            "round {round}: {}",
            resp.raw_head
        );
        let message = err["message"].as_str().unwrap();
        assert!(
            !message.contains("panicked at"),
            "panic details leaked: {message}"
        );
        conn.assert_closed();
    }

    // The connection opened before the panics still works, and so do new ones.
    before.send(&chat(&chat_body("after panic"), &[]));
    assert_echo(&before.read_response(), "after panic");
    server.assert_alive();
}

#[test]
fn panic_route_is_absent_by_default() {
    let server = Server::start(&[]);
    server
        .send(&post("/debug/panic", b"", &[]))
        .assert_error(404, Some("unknown_url"));
}

#[test]
fn two_hundred_concurrent_connections() {
    const CLIENTS: usize = 200;
    let server = Server::start(&[]);
    let addr = server.addr;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                // All connections are open before any request is sent. A failed connect must still
                // reach the barrier, or the other threads would wait forever.
                let conn = std::panic::catch_unwind(|| Client::connect(addr));
                barrier.wait();
                let mut conn = conn.expect("connect");
                conn.set_read_timeout(Duration::from_secs(20));
                let text = format!("client {i}");
                let id = format!("c-{i}");
                conn.send(&chat(&chat_body(&text), &[("x-request-id", &id)]));
                let resp = conn.read_response();
                assert_eq!(resp.header("x-request-id"), Some(id.as_str()));
                assert_echo(&resp, &text);
            })
        })
        .collect();
    let failures = handles.into_iter().filter_map(|h| h.join().err()).count();
    assert_eq!(failures, 0, "{failures} of {CLIENTS} clients failed");
    server.assert_alive();
}
