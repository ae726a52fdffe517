//! Test support: a hand-rolled upstream on a std `TcpListener` at `127.0.0.1:0`, each connection handled
//! by a test-supplied script on its own thread, so client and pool tests control every byte and every close.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Starts a server; `script(n, stream)` handles the `n`th accepted connection (from 0). Returns the address
/// and the count of accepted connections. The accept thread lives until the test process ends.
pub fn serve(
    script: impl Fn(usize, TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let script = Arc::clone(&script);
            std::thread::spawn(move || script(n, stream));
        }
    });
    (addr, accepted)
}

/// Reads one request (head, then a `content-length` body); `None` once the client closes first.
pub fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    raw.extend_from_slice(&body);
    Some(raw)
}

/// Runs `f` in a may coroutine, where production code runs (socket waits yield to the scheduler instead
/// of parking a thread), and returns its result.
#[allow(unsafe_code)]
pub fn in_coroutine<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // Debug builds need more than may's default stack; this is in machine words (512 KiB).
    let builder = may::coroutine::Builder::new()
        .name("test".into())
        .stack_size(0x10000);
    // SAFETY: may marks spawning unsafe because a coroutine must not hold thread-locals across a yield nor
    // block its worker. `f` is client code that waits only through may's sockets.
    let handle = unsafe { builder.spawn(f) }.expect("spawn a coroutine");
    handle.join().expect("coroutine panicked")
}
