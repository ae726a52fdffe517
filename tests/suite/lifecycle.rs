//! Lifecycle and overload: SIGTERM/SIGINT drain in-flight work and exit 0, `/health` turns not-ready while
//! draining, `--shutdown-timeout-ms` bounds the drain, and `--max-connections` / `--max-in-flight` refuse
//! new work fast with a 503 envelope and recover when load drops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{chat, chat_body, get, stream_body, Client, Server};

/// Starts a paced stream (13 tokens, `itl` ms apart) on its own connection; returns the socket.
fn paced_stream(server: &Server, itl_ms: u32) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let itl = itl_ms.to_string();
    stream
        .write_all(&chat(
            &stream_body("hi"),
            &[("x-standin-itl-ms", &itl), ("connection", "close")],
        ))
        .unwrap();
    // Wait for the head, so the request is surely in flight before the signal.
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    stream
}

fn read_rest(mut stream: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn sigterm_lets_streams_finish_refuses_new_connections_and_exits_0() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(&[]);
        let mut idle = server.connect();
        // A keep-alive connection made before the drain: it may still ask, and hears "draining".
        idle.send(&get("/health", &[]));
        assert_eq!(idle.read_response().status, 200);
        let stream = paced_stream(&server, 100);
        server.signal(signal);
        // The listener closes: new connections are refused.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(server.addr).is_ok() {
            assert!(
                Instant::now() < deadline,
                "still accepting after SIG{signal}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        idle.send(&get("/health", &[]));
        let health = idle.read_response();
        assert_eq!(health.status, 503, "{health:?}");
        assert_eq!(health.json()["status"], "draining");
        assert!(health.connection_has("close"), "{health:?}");
        // The stream in flight runs to its end.
        let rest = read_rest(stream);
        assert!(rest.contains("data: [DONE]"), "{signal}: {rest}");
        assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    }
}

#[test]
fn a_drained_server_on_a_shared_port_leaves_and_the_other_takes_every_connection() {
    let mut leaving = Server::start(&["--reuse-port", "--models", "leaving"]);
    let addr = leaving.addr.to_string();
    let staying = Server::start(&["--reuse-port", "--listen", &addr, "--models", "staying"]);
    // Two keep-alive connections that reached the one that leaves: one watches for the drain, one streams.
    let on_leaving = || loop {
        let mut client = leaving.connect();
        client.send(&get("/v1/models", &[]));
        if client.read_response().json()["data"][0]["id"] == "leaving" {
            break client;
        }
    };
    let (mut watch, mut stream) = (on_leaving(), on_leaving());
    stream.send(&chat(&stream_body("hi"), &[("x-standin-itl-ms", "50")]));
    stream.read_some().unwrap();
    leaving.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        watch.send(&get("/health", &[]));
        if watch.read_response().status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "no drain after SIGTERM");
        thread::sleep(Duration::from_millis(5));
    }
    // Once it drains it has left the port, though no connection of its own woke its accept loop (one to
    // the shared address may land on the other server): every new connection reaches the one that stays.
    for _ in 0..64 {
        assert_eq!(model_id(&staying), "staying");
    }
    // The stream in flight still finishes, then the drained server exits 0.
    let rest = stream.read_response();
    assert_eq!(rest.status, 200);
    assert!(rest.text().ends_with("data: [DONE]\n\n"), "{rest:?}");
    assert_eq!(leaving.wait_exit(Duration::from_secs(10)), Some(0));
    staying.assert_alive();
}

/// The one model a server lists, asked on a new connection.
fn model_id(server: &Server) -> String {
    let body = server.send(&get("/v1/models", &[])).assert_ok_json();
    body["data"][0]["id"].as_str().expect("id").to_string()
}

#[test]
fn the_drain_stops_waiting_at_the_shutdown_timeout() {
    let mut server = Server::start(&["--shutdown-timeout-ms", "300"]);
    // 13 tokens 1 s apart: far longer than the drain allows.
    let stream = paced_stream(&server, 1000);
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    let rest = read_rest(stream);
    assert!(!rest.contains("[DONE]"), "{rest}");
}

#[test]
fn an_idle_server_exits_at_once_with_its_access_log_flushed() {
    let mut server = Server::builder().with_access_log().start();
    server.send(&get("/health", &[]));
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        server.stderr().contains("path=/health status=200"),
        "{}",
        server.stderr()
    );
}

#[test]
fn past_max_connections_new_ones_get_503_and_the_server_recovers() {
    let server = Server::start(&["--max-connections", "2"]);
    let mut a = server.connect();
    let mut b = server.connect();
    a.send(&get("/health", &[]));
    b.send(&get("/health", &[]));
    assert_eq!(
        (a.read_response().status, b.read_response().status),
        (200, 200)
    );
    let mut third = server.connect();
    third.send(&chat(&chat_body("hi"), &[]));
    let resp = third.read_response();
    let error = resp.assert_error(503, Some("overloaded"));
    assert_eq!(error["type"], "server_error");
    assert_eq!(resp.header("retry-after"), Some("1"));
    third.assert_closed();
    // The two open connections still work.
    a.send(&get("/health", &[]));
    assert_eq!(a.read_response().status, 200);
    drop(a);
    drop(b);
    // Once load drops, new connections are served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = server.send(&chat(&chat_body("hi"), &[]));
        if resp.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refusing: {resp:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn past_max_in_flight_requests_get_503_and_the_server_recovers() {
    let server = Server::start(&["--max-in-flight", "1"]);
    let stream = paced_stream(&server, 50);
    let resp = server.send(&chat(&chat_body("hi"), &[]));
    resp.assert_error(503, Some("overloaded"));
    assert!(read_rest(stream).contains("[DONE]"));
    let mut client = Client::connect(server.addr);
    client.send(&chat(&chat_body("hi"), &[]));
    assert_eq!(client.read_response().status, 200);
}
